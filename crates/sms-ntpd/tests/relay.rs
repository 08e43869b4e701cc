#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The relay on loopback against simulated upstream servers, measured by
//! chronyd (as a client that reports the offset without setting the clock)
//! and by our own client.

use sms_core::bus::NtpStatus;
use sms_ntpd::config::{ClockMode, NtpConfig};
use sms_ntpd::packet::{Leap, Mode, NtpTimestamp, Packet};
use sms_ntpd::upstream::{query_once, QueryError};
use sms_sim::ntp::{NtpSimConfig, NtpSimServer};
use sms_testkit::{plain, DaemonProcess, DbusDaemon};
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

struct Relay {
    _dir: tempfile::TempDir,
    bus: DbusDaemon,
    daemon: DaemonProcess,
    log: std::path::PathBuf,
    addr: SocketAddr,
}

impl Relay {
    async fn start(cfg: impl FnOnce(&mut NtpConfig)) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let mut c = NtpConfig::default();
        c.clock.mode = ClockMode::Offset;
        c.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
        c.upstream.iburst_spacing_ms = 100;
        c.upstream.min_poll = 1;
        c.upstream.max_poll = 2;
        c.upstream.timeout_ms = 300;
        c.clock.time_floor_file = dir.path().join("no-time-floor");
        cfg(&mut c);
        let path = dir.path().join("ntpd.toml");
        std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
        let bus = DbusDaemon::start().unwrap();
        let log = dir.path().join("ntpd.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sms-ntpd"));
        cmd.arg("--config")
            .arg(&path)
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info");
        let daemon = DaemonProcess::spawn(cmd, &log).unwrap();
        let mut relay = Relay {
            _dir: dir,
            bus,
            daemon,
            log,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let st = relay.wait("the relay on D-Bus", 20, |_| true).await;
        relay.addr = st.listening[0].parse().unwrap();
        relay
    }

    fn log(&self) -> String {
        plain(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    async fn status(&self) -> Option<NtpStatus> {
        let conn = zbus::connection::Builder::address(self.bus.address())
            .ok()?
            .build()
            .await
            .ok()?;
        let proxy = sms_core::bus::Ntp1Proxy::new(&conn).await.ok()?;
        proxy.status().await.ok().map(|s| s.0)
    }

    async fn wait(
        &mut self,
        what: &str,
        secs: u64,
        pred: impl Fn(&NtpStatus) -> bool,
    ) -> NtpStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            assert!(self.daemon.is_running(), "sms-ntpd exited:\n{}", self.log());
            if let Some(s) = self.status().await {
                if pred(&s) {
                    return s;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}: {s:#?}\n{}",
                    self.log()
                );
            } else {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn upstreams(offsets: &[f64]) -> Vec<NtpSimServer> {
    let mut v = Vec::new();
    for o in offsets {
        v.push(
            NtpSimServer::start(
                "127.0.0.1:0".parse().unwrap(),
                NtpSimConfig {
                    offset: *o,
                    jitter: 0.0002,
                    stratum: 1,
                    kiss: None,
                },
            )
            .await
            .unwrap(),
        );
    }
    v
}

/// Runs `chronyd -Q` against the relay: it measures and prints the offset
/// without touching the clock.
fn chrony_offset(relay: SocketAddr) -> f64 {
    let out = Command::new("chronyd")
        .args(["-Q", "-t", "20"])
        .arg(format!(
            "server {} port {} iburst",
            relay.ip(),
            relay.port()
        ))
        .output()
        .expect("running chronyd (package chrony)");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("System clock wrong by"))
        .unwrap_or_else(|| panic!("chronyd measured nothing:\n{text}"));
    line.split("wrong by ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_majority_time_and_rejects_the_falseticker() {
    let up = upstreams(&[3.25, 3.25, 3.25, -40.0]).await;
    let servers: Vec<String> = up.iter().map(|s| s.addr.to_string()).collect();
    let mut relay = Relay::start(|c| c.upstream.servers = servers.clone()).await;
    let st = relay
        .wait("synchronisation", 30, |s| {
            s.synchronised && s.sources.iter().all(|x| x.samples >= 2)
        })
        .await;
    assert_eq!(st.stratum, 2);
    assert_eq!(st.leap, 0);
    assert!((st.offset - 3.25).abs() < 0.005, "{st:#?}");
    let falseticker = st.sources.iter().find(|s| s.address == servers[3]).unwrap();
    assert_eq!(falseticker.state, "falseticker", "{st:#?}");
    assert_eq!(
        st.sources.iter().filter(|s| s.state == "selected").count(),
        1
    );

    // Our own client: offset of the served time from the host clock.
    let m = query_once(relay.addr, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        (m.offset - 3.25).abs() < 0.005,
        "served offset {}",
        m.offset
    );
    assert_eq!(m.response.stratum, 2);
    assert_eq!(m.response.leap, Leap::None);
    assert_eq!(m.response.reference_id, [127, 0, 0, 1]);

    // chronyd as the client.
    let addr = relay.addr;
    let offset = tokio::task::spawn_blocking(move || chrony_offset(addr))
        .await
        .unwrap();
    assert!((offset - 3.25).abs() < 0.005, "chronyd measured {offset}");
    println!(
        "chronyd measured {offset:.6} s, our client {:.6} s",
        m.offset
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsynchronised_relay_says_so_consistently() {
    // An upstream that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let servers = vec![silent.local_addr().unwrap().to_string()];
    let mut relay = Relay::start(|c| c.upstream.servers = servers.clone()).await;
    relay
        .wait("the source to be marked unreachable", 20, |s| {
            s.sources[0].state == "unreachable"
        })
        .await;
    // The answer carries leap 3 and stratum 16; a client refuses it.
    let err = query_once(relay.addr, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err, QueryError::Unsynchronised(16));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let req = Packet::client_request(NtpTimestamp(0x1234_5678_9abc_def0), 6);
    sock.send_to(&req.to_bytes(), relay.addr).unwrap();
    let mut buf = [0u8; 128];
    let n = sock.recv(&mut buf).unwrap();
    let p = Packet::parse(&buf[..n]).unwrap();
    assert_eq!(
        (p.leap, p.stratum, p.mode),
        (Leap::Unsynchronized, 16, Mode::Server)
    );
    assert_eq!(p.origin_ts, req.transmit_ts);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_stratum_is_served_only_when_configured() {
    let mut relay = Relay::start(|c| c.clock.local_stratum = 10).await;
    relay.wait("the relay", 10, |_| true).await;
    let m = query_once(relay.addr, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(m.response.stratum, 10);
    assert_eq!(m.response.leap, Leap::None);
    assert_eq!(&m.response.reference_id, b"LOCL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_over_its_rate_gets_kiss_o_death_rate() {
    let up = upstreams(&[0.0]).await;
    let servers = vec![up[0].addr.to_string()];
    let mut relay = Relay::start(|c| {
        c.upstream.servers = servers.clone();
        c.server.rate_limit.burst = 4;
        c.server.rate_limit.interval_ms = 10_000;
    })
    .await;
    relay.wait("synchronisation", 30, |s| s.synchronised).await;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut kisses = 0;
    let mut normal = 0;
    for i in 0..10u64 {
        let req = Packet::client_request(NtpTimestamp(1000 + i), 6);
        sock.send_to(&req.to_bytes(), relay.addr).unwrap();
        let mut buf = [0u8; 128];
        let n = sock
            .recv(&mut buf)
            .expect("every request gets an answer, time or KoD");
        let p = Packet::parse(&buf[..n]).unwrap();
        assert_eq!(p.origin_ts, req.transmit_ts);
        match p.kiss_code() {
            Some(code) => {
                assert_eq!(&code, b"RATE");
                assert_eq!(p.leap, Leap::Unsynchronized);
                kisses += 1;
            }
            None => normal += 1,
        }
    }
    assert_eq!((normal, kisses), (4, 6));
    let st = relay.wait("counters", 5, |s| s.rate_limited >= 6).await;
    assert_eq!(st.rate_limited, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_outside_the_allow_list_gets_nothing() {
    let mut relay = Relay::start(|c| {
        c.clock.local_stratum = 10;
        c.server.allow = vec!["10.0.0.0/8".into()];
    })
    .await;
    relay.wait("the relay", 10, |_| true).await;
    let err = query_once(relay.addr, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err:?}");
    let st = relay.wait("the denied counter", 5, |s| s.denied >= 1).await;
    assert_eq!(st.served, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_truncated_packets_leave_the_server_serving() {
    let mut relay = Relay::start(|c| c.clock.local_stratum = 10).await;
    relay.wait("the relay", 10, |_| true).await;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x23],
        vec![0u8; 47],
        vec![0xff; 48],
        vec![0x24; 48],
        vec![0x1b; 1000],
    ];
    // Server-mode, control-mode and version-0 headers.
    for first in [0x24u8, 0x26, 0x03, 0x3b] {
        let mut p = vec![0u8; 48];
        p[0] = first;
        junk.push(p);
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        let len = (seed % 100) as usize;
        let pkt: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        junk.push(pkt);
    }
    for j in &junk {
        sock.send_to(j, relay.addr).unwrap();
    }
    let m = query_once(relay.addr, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(m.response.stratum, 10);
    let st = relay
        .wait("the malformed counter", 5, |s| s.malformed >= 10)
        .await;
    assert!(st.received >= junk.len() as u64, "{st:#?}");
    assert!(relay.daemon.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_kiss_o_death_deny_stops_polling_that_source() {
    let good = upstreams(&[0.0]).await;
    let deny = NtpSimServer::start(
        "127.0.0.1:0".parse().unwrap(),
        NtpSimConfig {
            kiss: Some(*b"DENY"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let servers = vec![good[0].addr.to_string(), deny.addr.to_string()];
    let mut relay = Relay::start(|c| c.upstream.servers = servers.clone()).await;
    let st = relay
        .wait("the denying source to be dropped", 20, |s| {
            s.sources[1].state == "denied" && s.synchronised
        })
        .await;
    assert!(st.sources[1]
        .last_error
        .as_deref()
        .unwrap_or_default()
        .contains("DENY"));
    let asked = deny.answered.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        deny.answered.load(std::sync::atomic::Ordering::Relaxed),
        asked,
        "denied source polled again"
    );
    assert!(relay.log().contains("denies service (KoD DENY)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_falseticker_heard_first_is_outvoted_once_the_others_answer() {
    // The three good servers are not up yet: only the falseticker answers.
    let ports: Vec<SocketAddr> = (0..3)
        .map(|_| {
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        })
        .collect();
    let bad = upstreams(&[-40.0]).await;
    let mut servers: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    servers.push(bad[0].addr.to_string());
    let mut relay = Relay::start(|c| c.upstream.servers = servers.clone()).await;
    relay
        .wait("the falseticker alone", 20, |s| s.sources[3].samples >= 2)
        .await;

    // Now the majority comes up on the ports the relay polls.
    let mut good = Vec::new();
    for p in &ports {
        good.push(
            NtpSimServer::start(
                *p,
                NtpSimConfig {
                    offset: 3.25,
                    jitter: 0.0002,
                    ..Default::default()
                },
            )
            .await
            .unwrap(),
        );
    }
    let st = relay
        .wait("the majority to win", 60, |s| {
            s.synchronised && (s.offset - 3.25).abs() < 0.005 && s.sources[3].state == "falseticker"
        })
        .await;
    assert_eq!(st.stratum, 2);
    // What is served follows the selection, not the first source heard.
    let m = query_once(relay.addr, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        (m.offset - 3.25).abs() < 0.005,
        "served offset {}",
        m.offset
    );
}

/// Once synchronised, upstreams that all jump by an hour (a forged or
/// broken source set) move the served time at most by the panic threshold
/// (the filter may blend old and new samples into a smaller step first);
/// the rest is refused, counted and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_beyond_the_panic_threshold_is_refused_after_synchronisation() {
    let up = upstreams(&[0.5, 0.5, 0.5]).await;
    let servers: Vec<String> = up.iter().map(|s| s.addr.to_string()).collect();
    let mut relay = Relay::start(|c| {
        c.upstream.servers = servers.clone();
        c.clock.panic_threshold_s = 100;
    })
    .await;
    relay
        .wait("synchronisation", 30, |s| {
            s.synchronised && (s.offset - 0.5).abs() < 0.01
        })
        .await;
    for u in &up {
        u.set_offset(3600.5);
    }
    let st = relay.wait("the refusal", 60, |s| s.refused_steps > 0).await;
    let why = st.last_refusal.clone().unwrap_or_default();
    assert!(why.contains("beyond the panic threshold of 100 s"), "{why}");
    assert!(relay.log().contains("time not applied"), "{}", relay.log());
    // Whatever it serves now is within the threshold of the old time, or
    // nothing; never the jump.
    for _ in 0..10 {
        match query_once(relay.addr, Duration::from_secs(1)).await {
            Ok(m) => assert!(
                (m.offset - 0.5).abs() <= 101.0,
                "served offset {}",
                m.offset
            ),
            Err(QueryError::Unsynchronised(16)) => {}
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(relay.status().await.unwrap().offset < 101.0);
}

/// A signed catalog proves its issue time has passed: upstreams that put
/// the time ten days before it are refused even at the first
/// synchronisation, and the relay stays unsynchronised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_is_never_set_before_the_newest_catalog() {
    let floor_dir = tempfile::tempdir().unwrap();
    let floor = floor_dir.path().join("time-floor");
    let yesterday = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 86_400;
    sms_core::time_floor::raise(&floor, yesterday).unwrap();
    let up = upstreams(&[-10.0 * 86_400.0; 3]).await;
    let servers: Vec<String> = up.iter().map(|s| s.addr.to_string()).collect();
    let floor_path = floor.clone();
    let mut relay = Relay::start(|c| {
        c.upstream.servers = servers.clone();
        c.clock.time_floor_file = floor_path;
    })
    .await;
    let st = relay.wait("the refusal", 30, |s| s.refused_steps > 0).await;
    assert!(!st.synchronised, "{st:#?}");
    let why = st.last_refusal.clone().unwrap_or_default();
    assert!(
        why.contains("before") && why.contains("newest signed catalog"),
        "{why}"
    );
    let err = query_once(relay.addr, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err, QueryError::Unsynchronised(16));

    // The same upstreams at the right time are accepted.
    for u in &up {
        u.set_offset(0.25);
    }
    relay
        .wait("synchronisation", 60, |s| {
            s.synchronised && (s.offset - 0.25).abs() < 0.01
        })
        .await;
}
