//! Shared helpers of the benchmarks: timing, medians, ratio tables.

use std::time::{Duration, Instant};

/// Median of a set of samples.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

/// Times a future.
pub async fn time<F: std::future::Future>(f: F) -> (F::Output, Duration) {
    let t = Instant::now();
    let out = f.await;
    (out, t.elapsed())
}

/// Number of rounds, from `SMS_BENCH_ROUNDS` (default `default`).
pub fn rounds(default: usize) -> usize {
    std::env::var("SMS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(1, 100)
}

/// A peer process (simulator, nginx, chronyd) killed when the benchmark
/// ends, however it ends. Spawn it with [`own_group`], so that the whole
/// process group goes (nginx's workers once outlived a run holding its
/// ports).
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let pid = self.0.id() as i32;
        // The group the child leads (see `own_group`); then the child
        // itself, in case it was spawned without one.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes a command start its own process group, which [`Child`] kills
/// whole.
pub fn own_group(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
}

/// Keeps `window` requests in flight against `server` for `secs`: `send`
/// puts one request on the connected socket; every answer received is
/// checked by `valid` (it must answer one of the requests sent, and be no
/// error, report or kiss-o'-death), counted and replaced by a new request;
/// a silence of 50 ms (a lost datagram) refills the window. Returns valid
/// answers per second; a peer that answers nothing valid, or more than 1 %
/// invalid answers, is an error, never a figure.
pub fn udp_window_load(
    server: std::net::SocketAddr,
    window: usize,
    secs: f64,
    mut send: impl FnMut(&std::net::UdpSocket) -> std::io::Result<()>,
    mut valid: impl FnMut(&[u8]) -> bool,
) -> anyhow::Result<f64> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    for _ in 0..window {
        send(&sock)?;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let (mut answers, mut bad) = (0u64, 0u64);
    let mut buf = [0u8; 65536];
    while Instant::now() < end {
        match sock.recv(&mut buf) {
            Ok(n) => {
                if valid(&buf[..n]) {
                    answers += 1;
                } else {
                    bad += 1;
                }
                send(&sock)?;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                for _ in 0..window {
                    send(&sock)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::ensure!(
        answers > 0,
        "{server} gave no valid answer in {secs} s ({bad} invalid)"
    );
    anyhow::ensure!(
        bad * 100 <= answers,
        "{server} gave {bad} invalid answers against {answers} valid ones"
    );
    Ok(answers as f64 / start.elapsed().as_secs_f64())
}

pub mod snmp;
