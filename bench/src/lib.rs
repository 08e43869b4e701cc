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

/// Requests per second and bytes per second from wrk's report; an error
/// when either cannot be read, or wrk saw errors, so that a figure that
/// cannot be read fails the run instead of printing a zero or a huge ratio.
pub fn parse_wrk(text: &str) -> anyhow::Result<(f64, f64)> {
    use anyhow::Context;
    let field = |name: &str| -> Option<String> {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split_whitespace().last().map(str::to_string))
    };
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        anyhow::bail!("wrk saw errors:\n{text}");
    }
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let tps = field("Transfer/sec:")
        .with_context(|| format!("no Transfer/sec in wrk's output:\n{text}"))?;
    let (num, unit) = tps.split_at(
        tps.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(tps.len()),
    );
    let mult = match unit {
        "GB" => (1u64 << 30) as f64,
        "MB" => (1u64 << 20) as f64,
        "KB" => 1024.0,
        "B" => 1.0,
        other => anyhow::bail!("wrk's Transfer/sec unit {other:?} is unknown:\n{text}"),
    };
    let bytes: f64 = num
        .parse()
        .with_context(|| format!("wrk's Transfer/sec {tps:?} is not a number"))?;
    anyhow::ensure!(rps > 0.0 && bytes > 0.0, "wrk measured nothing:\n{text}");
    Ok((rps, bytes * mult))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// A peer on loopback that answers every datagram with `answer(request)`.
    fn peer(answer: fn(&[u8]) -> Option<Vec<u8>>) -> std::net::SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if let Some(a) = answer(&buf[..n]) {
                    let _ = sock.send_to(&a, from);
                }
            }
        });
        addr
    }

    fn load(addr: std::net::SocketAddr) -> anyhow::Result<f64> {
        udp_window_load(
            addr,
            4,
            0.3,
            |s| s.send(b"ask").map(|_| ()),
            |a| a == b"good",
        )
    }

    #[test]
    fn only_valid_answers_count_and_bad_or_silent_peers_fail() {
        assert!(load(peer(|_| Some(b"good".to_vec()))).unwrap() > 0.0);
        let e = load(peer(|_| Some(b"error".to_vec()))).unwrap_err();
        assert!(e.to_string().contains("no valid answer"), "{e}");
        let e = load(peer(|_| None)).unwrap_err();
        assert!(e.to_string().contains("no valid answer"), "{e}");
    }

    #[test]
    fn a_peer_goes_with_its_whole_process_group() {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "sleep 300 & echo $!; wait"])
            .stdout(std::process::Stdio::piped());
        own_group(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let worker: i32 = line.trim().parse().unwrap();
        let alive = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        };
        assert!(alive(worker));
        drop(Child(child));
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(worker) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(worker), "the peer's own child outlived it");
    }

    #[test]
    fn unreadable_wrk_figures_fail() {
        let good = "Running 2s test\n  Requests/sec:  90500.12\n  Transfer/sec:     12.50MB\n";
        let (rps, bps) = parse_wrk(good).unwrap();
        assert_eq!(rps, 90500.12);
        assert_eq!(bps, 12.5 * 1048576.0);
        for bad in [
            "",
            "Requests/sec: 10\n",
            "Requests/sec: 10\nTransfer/sec: 1.0XB\n",
            "Requests/sec: abc\nTransfer/sec: 1.0MB\n",
            "Requests/sec: 10\nTransfer/sec: 1.0MB\nNon-2xx or 3xx responses: 5\n",
            "Requests/sec: 0.00\nTransfer/sec: 0.00B\n",
        ] {
            assert!(parse_wrk(bad).is_err(), "{bad:?}");
        }
    }
}
