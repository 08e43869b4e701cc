//! NTP serving rate of sms-ntpd against chronyd on the same machine in the
//! same run (alternating rounds, same load generator, same in-flight
//! window), and the offset error of the relay against a simulated upstream.
//! Both servers serve their local clock at stratum 10 without rate limiting
//! (chrony's default); every load run is bounded in time.

use anyhow::{bail, Context, Result};
use sms_bench::{median, rounds, Child};
use sms_ntpd::packet::{Leap, Mode, NtpTimestamp, Packet};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Keeps `window` requests in flight for `secs`; returns answers per second.
fn load(server: SocketAddr, window: usize, secs: f64) -> Result<f64> {
    let seq = std::cell::Cell::new(1u64);
    sms_bench::udp_window_load(
        server,
        window,
        secs,
        |sock| {
            seq.set(seq.get() + 1);
            sock.send(&Packet::client_request(NtpTimestamp(seq.get()), 6).to_bytes())
                .map(|_| ())
        },
        // Time for one of the requests sent: a server packet with a
        // stratum (not a kiss-o'-death, not unsynchronised) whose origin
        // timestamp is a request's transmit timestamp.
        |answer| {
            Packet::parse(answer).is_ok_and(|p| {
                p.mode == Mode::Server
                    && (1..16).contains(&p.stratum)
                    && p.leap != Leap::Unsynchronized
                    && (2..=seq.get()).contains(&p.origin_ts.0)
            })
        },
    )
}

fn wait_answering(server: SocketAddr) -> Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    for _ in 0..100 {
        sock.send_to(
            &Packet::client_request(NtpTimestamp(7), 6).to_bytes(),
            server,
        )?;
        let mut buf = [0u8; 128];
        if sock.recv(&mut buf).is_ok() {
            return Ok(());
        }
    }
    bail!("{server} does not answer")
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let n = rounds(3);
    let secs = 2.0;
    let ours_port = free_port()?;
    let chrony_port = free_port()?;
    let cfg = dir.path().join("ntpd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[clock]\nmode = \"offset\"\nlocal_stratum = 10\n[server]\nlisten = [\"127.0.0.1:{ours_port}\"]\n[server.rate_limit]\nenabled = false\n"
        ),
    )?;
    let ntpd_bin = std::env::current_exe()?.with_file_name("sms-ntpd");
    let _ours = Child(
        sms_bench::own_group(&mut Command::new(&ntpd_bin))
            .args(["--no-dbus", "--config"])
            .arg(&cfg)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", ntpd_bin.display()))?,
    );
    let chrony_conf = dir.path().join("chrony.conf");
    std::fs::write(
        &chrony_conf,
        format!(
            "port {chrony_port}\nbindaddress 127.0.0.1\ncmdport 0\nlocal stratum 10\nallow 127.0.0.1\npidfile {}\n",
            dir.path().join("chronyd.pid").display()
        ),
    )?;
    let _chrony = Child(
        sms_bench::own_group(&mut Command::new("chronyd"))
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(&chrony_conf)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting chronyd (package chrony)")?,
    );
    let ours: SocketAddr = format!("127.0.0.1:{ours_port}").parse()?;
    let chrony: SocketAddr = format!("127.0.0.1:{chrony_port}").parse()?;
    wait_answering(ours)?;
    wait_answering(chrony)?;

    println!("| in flight | sms-ntpd req/s | chronyd req/s | ratio |");
    println!("|----------:|---------------:|--------------:|------:|");
    for window in [16, 64] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..n {
            a.push(load(ours, window, secs)?);
            b.push(load(chrony, window, secs)?);
        }
        let (a, b) = (median(a), median(b));
        println!("| {window:>9} | {a:>14.0} | {b:>13.0} | {:>5.2} |", a / b);
    }

    // Offset error: the relay against three simulated upstreams at +3.25 s.
    let sim = sms_sim::ntp::NtpSimServer::start(
        "127.0.0.1:0".parse()?,
        sms_sim::ntp::NtpSimConfig {
            offset: 3.25,
            ..Default::default()
        },
    )
    .await?;
    let relay_port = free_port()?;
    let cfg2 = dir.path().join("relay.toml");
    std::fs::write(
        &cfg2,
        format!(
            "[upstream]\nservers = [\"{}\"]\niburst_spacing_ms = 100\nmin_poll = 1\nmax_poll = 2\n[clock]\nmode = \"offset\"\n[server]\nlisten = [\"127.0.0.1:{relay_port}\"]\n[server.rate_limit]\nenabled = false\n",
            sim.addr
        ),
    )?;
    let _relay = Child(
        sms_bench::own_group(&mut Command::new(&ntpd_bin))
            .args(["--no-dbus", "--config"])
            .arg(&cfg2)
            .stderr(Stdio::null())
            .spawn()?,
    );
    let relay: SocketAddr = format!("127.0.0.1:{relay_port}").parse()?;
    let mut errors = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while errors.len() < 50 && Instant::now() < deadline {
        if let Ok(m) = sms_ntpd::upstream::query_once(relay, Duration::from_millis(200)).await {
            errors.push((m.offset - 3.25).abs() * 1e6);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    if errors.is_empty() {
        bail!("the relay never synchronised");
    }
    let max = errors.iter().cloned().fold(0.0, f64::max);
    println!();
    println!(
        "offset error of served time vs the simulated upstream (+3.25 s), {} queries: median {:.0} us, max {:.0} us",
        errors.len(),
        median(errors.clone()),
        max
    );
    Ok(())
}
