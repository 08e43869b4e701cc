//! Traps per second received without loss by the sms-snmpd trap receiver
//! against net-snmp's snmptrapd, on the same machine in the same run: the
//! same sender paces v2c traps at rising rates (one second each, so every
//! load is bounded), and a rate counts as lossless when the receiver has
//! stored (sms-snmpd: smsTrapsReceived, which counts stored events) or
//! logged (snmptrapd: one line per trap) every trap sent.

use anyhow::{Context, Result};
use sms_bench::Child;
use sms_snmp::message::CommunityMessage;
use sms_snmp::{AnyPdu, Message, Oid, Pdu, PduType, Value, VarBind, Version};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn traps(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let vbs = vec![
                VarBind::new(
                    "1.3.6.1.2.1.1.3.0".parse().unwrap_or_default(),
                    Value::TimeTicks(i as u32),
                ),
                VarBind::new(
                    "1.3.6.1.6.3.1.1.4.1.0".parse().unwrap_or_default(),
                    Value::Oid("1.3.6.1.6.3.1.1.5.3".parse().unwrap_or_default()),
                ),
                VarBind::new(
                    "1.3.6.1.2.1.2.2.1.1.2".parse().unwrap_or_default(),
                    Value::Integer(2),
                ),
                VarBind::new(
                    Oid::new(vec![1, 3, 6, 1, 2, 1, 1, 5, 0]),
                    Value::text(format!("ips-{:05}", i % 1000)),
                ),
            ];
            CommunityMessage {
                version: Version::V2c,
                community: b"public".to_vec(),
                pdu: AnyPdu::Pdu(Pdu::new(PduType::TrapV2, i as i32 + 1, vbs)),
            }
            .encode()
        })
        .collect()
}

/// Sends `batch` datagrams of `pool` starting at `from` with one `sendmmsg`
/// on the connected socket; returns how many the kernel took.
fn send_batch(fd: i32, pool: &[Vec<u8>], from: usize, batch: usize) -> Result<usize> {
    let mut iovs: Vec<libc::iovec> = (0..batch)
        .map(|k| {
            let m = &pool[(from + k) % pool.len()];
            libc::iovec {
                iov_base: m.as_ptr() as *mut libc::c_void,
                iov_len: m.len(),
            }
        })
        .collect();
    // SAFETY: zeroed headers are valid; each points at one iovec of `iovs`,
    // which outlives the call; the socket is connected (no address needed).
    let mut hdrs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: as above.
    let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), batch as u32, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(n as usize)
}

/// Sends `rate` traps spread over one second, in 1 ms slices (one
/// `sendmmsg` per slice, so the sender costs little CPU); returns how many
/// were sent and the rate actually reached (the sender may fall behind).
fn send(to: SocketAddr, pool: &[Vec<u8>], rate: usize) -> Result<(usize, f64)> {
    use std::os::fd::AsRawFd;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(to)?;
    let fd = sock.as_raw_fd();
    let start = Instant::now();
    let mut sent = 0usize;
    for slice in 0..1000usize {
        let due = rate * (slice + 1) / 1000;
        while sent < due {
            sent += send_batch(fd, pool, sent, (due - sent).min(64))?;
        }
        let next = start + Duration::from_millis(slice as u64 + 1);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    Ok((sent, sent as f64 / start.elapsed().as_secs_f64()))
}

/// A receiver and how to read how many traps it has taken so far.
struct Receiver {
    addr: SocketAddr,
    count: Box<dyn Fn() -> Result<u64>>,
}

/// Reads the count until it stops moving (at most 15 s).
fn settle(r: &Receiver) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = (r.count)()?;
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = (r.count)()?;
        if now == last || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

fn snmp_get_counter(agent: SocketAddr) -> Result<u64> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let req = CommunityMessage {
        version: Version::V2c,
        community: b"public".to_vec(),
        pdu: AnyPdu::Pdu(Pdu::new(
            PduType::Get,
            1,
            vec![VarBind::new(
                "1.3.6.1.4.1.32473.1.1.6.1.0"
                    .parse()
                    .map_err(anyhow::Error::msg)?,
                Value::Null,
            )],
        )),
    }
    .encode();
    let mut buf = [0u8; 2048];
    for _ in 0..10 {
        sock.send_to(&req, agent)?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Ok(Message::Community(m)) = sms_snmp::decode(&buf[..n]) {
                if let AnyPdu::Pdu(p) = m.pdu {
                    if let Some(VarBind {
                        value: Value::Counter32(c),
                        ..
                    }) = p.varbinds.first()
                    {
                        return Ok(*c as u64);
                    }
                }
            }
        }
    }
    anyhow::bail!("sms-snmpd agent does not answer")
}

/// The receive buffer both receivers ask for.
const RCVBUF: usize = 8 << 20;

/// Raises net.core.rmem_max to `RCVBUF` for the run (so that snmptrapd's
/// plain SO_RCVBUF gets what sms-snmpd's SO_RCVBUFFORCE gets) and puts the
/// old value back at the end.
struct RmemMax(Option<String>);

impl RmemMax {
    fn raise() -> RmemMax {
        let path = "/proc/sys/net/core/rmem_max";
        let old = std::fs::read_to_string(path).ok();
        let below = old
            .as_deref()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .is_some_and(|v| v < RCVBUF);
        if below && std::fs::write(path, RCVBUF.to_string()).is_ok() {
            RmemMax(old)
        } else {
            RmemMax(None)
        }
    }
}

impl Drop for RmemMax {
    fn drop(&mut self) {
        if let Some(v) = &self.0 {
            let _ = std::fs::write("/proc/sys/net/core/rmem_max", v.trim());
        }
    }
}

/// The receive buffer of the UDP socket bound to `port`, as `ss` reports
/// it (rb, bytes).
fn receive_buffer(port: u16) -> Result<u64> {
    let out = Command::new("ss")
        .args(["-uamnH", &format!("sport = :{port}")])
        .output()
        .context("ss (package iproute2)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("rb")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no receive buffer for port {port} in:\n{text}"))
}

fn main() -> Result<()> {
    let _rmem = RmemMax::raise();
    let dir = tempfile::tempdir()?;
    let (agent_port, ours_port, net_port) = (free_port()?, free_port()?, free_port()?);
    let cfg = dir.path().join("snmpd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"state_dir = "{}"
[agent]
listen = ["127.0.0.1:{agent_port}"]
refresh_secs = 1
[[community]]
name = "public"
sources = ["127.0.0.1"]
view = "all"
[receiver]
listen = ["127.0.0.1:{ours_port}"]
communities = ["public"]
retention = 2000000
[poller]
enabled = false
"#,
            dir.path().join("state").display()
        ),
    )?;
    let _ours = sms_bench::snmp::spawn_snmpd(&cfg)?;
    let tconf = dir.path().join("snmptrapd.conf");
    std::fs::write(
        &tconf,
        format!("authCommunity log public\n[snmp] serverRecvBuf {RCVBUF}\n"),
    )?;
    let tlog = dir.path().join("snmptrapd.log");
    let persist = dir.path().join("trapd");
    std::fs::create_dir_all(&persist)?;
    let _net = Child(
        sms_bench::own_group(&mut Command::new("snmptrapd"))
            .args(["-f", "-C", "-n", "-t", "-X", "-c"])
            .arg(&tconf)
            .arg("-Lf")
            .arg(&tlog)
            .args(["-F", "T\n", &format!("udp:127.0.0.1:{net_port}")])
            .env("MIBS", "")
            .env("SNMP_PERSISTENT_DIR", &persist)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("snmptrapd (apt-get install snmptrapd)")?,
    );
    let agent: SocketAddr = format!("127.0.0.1:{agent_port}").parse()?;
    // Wait for both.
    let deadline = Instant::now() + Duration::from_secs(20);
    while snmp_get_counter(agent).is_err() || !tlog.exists() {
        anyhow::ensure!(Instant::now() < deadline, "receivers did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Equal buffers, or the comparison measures the buffers.
    let (rb_ours, rb_net) = (receive_buffer(ours_port)?, receive_buffer(net_port)?);
    println!("receive buffers: sms-snmpd {rb_ours} bytes, snmptrapd {rb_net} bytes");
    anyhow::ensure!(
        rb_ours == rb_net,
        "the receivers' buffers differ ({rb_ours} vs {rb_net}): the run would compare buffers"
    );
    let tries: usize = std::env::var("SMS_BENCH_TRAP_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);
    let tlog2 = tlog.clone();
    let receivers = [
        Receiver {
            addr: format!("127.0.0.1:{ours_port}").parse()?,
            count: Box::new(move || snmp_get_counter(agent)),
        },
        Receiver {
            addr: format!("127.0.0.1:{net_port}").parse()?,
            count: Box::new(move || {
                Ok(std::fs::read(&tlog2)?
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count() as u64)
            }),
        },
    ];
    let pool = traps(4096);
    let rates: Vec<usize> = std::env::var("SMS_BENCH_TRAP_RATES")
        .ok()
        .map(|s| s.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            vec![
                5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000, 50_000, 75_000,
                100_000, 150_000, 200_000, 250_000, 300_000, 400_000, 500_000,
            ]
        });
    println!(
        "SNMP traps: sms-snmpd receiver vs net-snmp snmptrapd, v2c traps paced over 1 s per rate, {tries} tries per rate (all lossless to count)"
    );
    println!(
        "{:<10} {:>10} {:>12} {:>12}",
        "rate/s", "sent", "sms-snmpd", "snmptrapd"
    );
    let mut best = [0usize; 2];
    let mut done = [false; 2];
    for &rate in &rates {
        let mut cells = Vec::new();
        let mut sent_n = 0;
        let mut achieved = [0f64; 2];
        for (i, r) in receivers.iter().enumerate() {
            if done[i] {
                cells.push("-".to_string());
                continue;
            }
            // A rate counts when every try of it was lossless.
            let mut lost_total = 0u64;
            let mut got_total = 0u64;
            let mut lowest_reached = f64::MAX;
            for _ in 0..tries {
                let before = settle(r)?;
                let (sent, reached) = send(r.addr, &pool, rate)?;
                let got = settle(r)? - before;
                anyhow::ensure!(got > 0, "{} received nothing: a silent peer", r.addr);
                sent_n = sent;
                lowest_reached = lowest_reached.min(reached);
                got_total += got;
                lost_total += sent as u64 - got.min(sent as u64);
            }
            achieved[i] = lowest_reached;
            if lost_total == 0 {
                best[i] = best[i].max(lowest_reached as usize);
                cells.push(format!("{got_total} ok"));
            } else {
                done[i] = true;
                cells.push(format!("{got_total} lost {lost_total}"));
            }
        }
        let reached = achieved.iter().cloned().fold(0.0, f64::max);
        println!(
            "{rate:<10} {sent_n:>10} {:>12} {:>12}   (sender reached {reached:.0}/s)",
            cells[0], cells[1]
        );
        if done.iter().all(|d| *d) {
            break;
        }
    }
    println!(
        "highest lossless rate reached: sms-snmpd {} traps/s, snmptrapd {} traps/s, ratio {:.2}{}",
        best[0],
        best[1],
        best[0] as f64 / best[1].max(1) as f64,
        if !done[0] {
            " (sms-snmpd lossless at every rate tried)"
        } else {
            ""
        }
    );
    Ok(())
}
