#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The trap receiver against net-snmp's snmptrap and snmpinform: every
//! version, informs acknowledged, every notification stored and visible over
//! D-Bus, v3 replays and wrong keys refused.

mod common;

use common::*;
use sms_snmpd::events::TrapEvent;
use std::time::{Duration, Instant};

async fn events(bus: &zbus::Connection) -> Vec<TrapEvent> {
    serde_json::from_str(&snmp_events(bus, 0, 1000).await).unwrap()
}

async fn wait_events(bus: &zbus::Connection, n: usize) -> Vec<TrapEvent> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = events(bus).await;
        if e.len() >= n || Instant::now() > deadline {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn v3_trap(to: &str, engine: &str, boots_time: Option<&str>, trap_oid: &str, auth_pw: &str) -> Out {
    let mut a = vec!["-v3", "-e", engine];
    if let Some(z) = boots_time {
        a.extend_from_slice(&["-Z", z]);
    }
    a.extend_from_slice(&[
        "-l",
        "authPriv",
        "-u",
        USER,
        "-a",
        "SHA-256",
        "-A",
        auth_pw,
        "-x",
        "AES",
        "-X",
        PRIV_PW,
        to,
        "",
        trap_oid,
        "1.3.6.1.2.1.1.5.0",
        "s",
        "ips-7",
    ]);
    tool("snmptrap", &a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn net_snmp_traps_and_informs_of_every_version_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (_bus, d, conn) = on_bus(dir.path(), |c| c).await;
    let (t0, t1) = (d.trap_addr(0), d.trap_addr(1));

    let v1 = tool(
        "snmptrap",
        &[
            "-v1",
            "-c",
            "public",
            &t0,
            "1.3.6.1.4.1.32473.2",
            "127.0.0.9",
            "6",
            "17",
            "1234",
            "1.3.6.1.2.1.1.5.0",
            "s",
            "ips-1",
        ],
    );
    assert!(v1.ok, "{v1:?}");
    let v1g = tool(
        "snmptrap",
        &[
            "-v1",
            "-c",
            "public",
            &t1,
            "1.3.6.1.4.1.32473.2",
            "127.0.0.9",
            "2",
            "0",
            "99",
        ],
    );
    assert!(v1g.ok, "{v1g:?}");
    let v2 = tool(
        "snmptrap",
        &[
            "-v2c",
            "-c",
            "public",
            &t0,
            "4321",
            "1.3.6.1.6.3.1.1.5.3",
            "1.3.6.1.2.1.2.2.1.1.2",
            "i",
            "2",
        ],
    );
    assert!(v2.ok, "{v2:?}");
    // snmpinform exits 0 only when the inform was acknowledged.
    let inf = tool(
        "snmpinform",
        &[
            "-v2c",
            "-c",
            "public",
            "-t",
            "2",
            "-r",
            "0",
            &t1,
            "",
            "1.3.6.1.6.3.1.1.5.4",
            "1.3.6.1.2.1.2.2.1.1.2",
            "i",
            "2",
        ],
    );
    assert!(inf.ok, "v2c inform not acknowledged: {inf:?}");
    let v3 = v3_trap(
        &t0,
        "0x8000000001020304",
        None,
        "1.3.6.1.6.3.1.1.5.1",
        AUTH_PW,
    );
    assert!(v3.ok, "{v3:?}");
    let mut a = vec!["-t", "2", "-r", "1"];
    a.extend(v3_args());
    a.extend_from_slice(&[
        &t1,
        "",
        "1.3.6.1.6.3.1.1.5.2",
        "1.3.6.1.2.1.1.5.0",
        "s",
        "ips-8",
    ]);
    let v3i = tool("snmpinform", &a);
    assert!(v3i.ok, "v3 inform not acknowledged: {v3i:?}");

    let ev = wait_events(&conn, 6).await;
    assert_eq!(ev.len(), 6, "{ev:#?}\n{}", d.log_text());
    let by_oid = |oid: &str| {
        ev.iter()
            .find(|e| e.trap_oid == oid)
            .unwrap_or_else(|| panic!("{oid} not stored: {ev:#?}"))
    };
    let e = by_oid("1.3.6.1.4.1.32473.2.0.17");
    assert_eq!(
        (e.version.as_str(), e.kind.as_str(), e.uptime),
        ("v1", "trap", Some(1234))
    );
    assert!(e.varbinds.iter().any(|v| v.value == "ips-1"));
    assert!(e
        .varbinds
        .iter()
        .any(|v| v.oid == "agent-addr" && v.value == "127.0.0.9"));
    assert_eq!(
        by_oid("1.3.6.1.6.3.1.1.5.3").version,
        "v1",
        "generic linkDown translated (RFC 3584)"
    );
    let e = ev
        .iter()
        .find(|e| e.version == "v2c" && e.kind == "trap")
        .unwrap();
    assert_eq!(
        (e.trap_oid.as_str(), e.uptime),
        ("1.3.6.1.6.3.1.1.5.3", Some(4321))
    );
    assert_eq!(e.port, d.traps[0]);
    let e = by_oid("1.3.6.1.6.3.1.1.5.4");
    assert_eq!(
        (e.version.as_str(), e.kind.as_str(), e.port),
        ("v2c", "inform", d.traps[1])
    );
    let e = by_oid("1.3.6.1.6.3.1.1.5.1");
    assert_eq!(
        (e.version.as_str(), e.kind.as_str(), e.principal.as_str()),
        ("v3", "trap", USER)
    );
    let e = by_oid("1.3.6.1.6.3.1.1.5.2");
    assert_eq!((e.version.as_str(), e.kind.as_str()), ("v3", "inform"));
    assert!(e.varbinds.iter().any(|v| v.value == "ips-8"));
    let seqs: Vec<u64> = ev.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // Refused: wrong community, wrong key; neither is stored.
    assert!(
        tool(
            "snmptrap",
            &["-v2c", "-c", "guess", &t0, "", "1.3.6.1.6.3.1.1.5.3"]
        )
        .ok
    );
    assert!(
        v3_trap(
            &t0,
            "0x8000000001020304",
            None,
            "1.3.6.1.6.3.1.1.5.5",
            "wrongpass123"
        )
        .ok
    );
    // The user must send authPriv: authNoPriv and noAuthNoPriv are refused.
    for level in [
        vec!["-l", "authNoPriv", "-a", "SHA-256", "-A", AUTH_PW],
        vec!["-l", "noAuthNoPriv"],
    ] {
        let mut a = vec!["-v3", "-e", "0x8000000001020304", "-u", USER];
        a.extend(level);
        a.extend_from_slice(&[t0.as_str(), "", "1.3.6.1.6.3.1.1.5.5"]);
        assert!(tool("snmptrap", &a).ok);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events(&conn).await.len(), 6);
    let st: serde_json::Value = serde_json::from_str(&snmp_status(&conn).await).unwrap();
    assert_eq!(
        st["bad_community"].as_u64(),
        Some(0),
        "agent counter untouched"
    );
    assert!(st["usm_refused"].as_u64().unwrap() >= 3, "{st}");
    assert_eq!(st["traps_received"].as_u64(), Some(6));
    assert_eq!(st["informs_acknowledged"].as_u64(), Some(2));
    // smsTrapsReceived follows.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let g = d.get_v2c("public", &["1.3.6.1.4.1.32473.1.1.6.1.0"]);
    assert!(g.stdout.contains("Counter32: 6"), "{g:?}");
}

/// The window itself (RFC 3414: 150 s behind the latest time seen from an
/// engine), with 10 s of margin either side; and the engines' clocks are
/// kept across a restart, so a captured trap is not accepted again after
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_window_is_150_seconds_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_bus, mut d, conn) = on_bus(dir.path(), |c| c).await;
    let t0 = d.trap_addr(0);
    let engine = "0x80000000010a0b0c0e";
    let trap = |bt: &str, oid: &str| v3_trap(&t0, engine, Some(bt), oid, AUTH_PW);
    assert!(trap("5,1000", "1.3.6.1.6.3.1.1.5.3").ok);
    assert_eq!(wait_events(&conn, 1).await.len(), 1);
    assert!(trap("5,860", "1.3.6.1.6.3.1.1.5.3").ok, "140 s behind");
    assert_eq!(wait_events(&conn, 2).await.len(), 2);
    assert!(trap("5,840", "1.3.6.1.6.3.1.1.5.4").ok, "160 s behind");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events(&conn).await.len(),
        2,
        "a trap 160 s behind was stored"
    );

    d.stop();
    d.spawn();
    let conn = zbus::connection::Builder::address(d.bus.clone().unwrap().as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    assert!(trap("5,840", "1.3.6.1.6.3.1.1.5.4").ok);
    assert!(
        trap("5,1000", "1.3.6.1.6.3.1.1.5.3").ok,
        "the latest moment"
    );
    let ev = wait_events(&conn, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ev = if ev.len() >= 3 {
        events(&conn).await
    } else {
        ev
    };
    assert_eq!(ev.len(), 3, "{ev:#?}");
    assert!(
        ev.iter().all(|e| e.trap_oid != "1.3.6.1.6.3.1.1.5.4"),
        "after a restart a trap 160 s behind was stored: {ev:#?}\n{}",
        d.log_text()
    );
    assert!(d
        .log_text()
        .contains("restored the clocks of 1 remote engine"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_v3_traps_from_the_past_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_bus, d, conn) = on_bus(dir.path(), |c| c).await;
    let t0 = d.trap_addr(0);
    let engine = "0x80000000010a0b0c0d";
    // A device at boot 5, time 1000 s.
    assert!(v3_trap(&t0, engine, Some("5,1000"), "1.3.6.1.6.3.1.1.5.3", AUTH_PW).ok);
    assert_eq!(wait_events(&conn, 1).await.len(), 1);
    // Within the 150 s window of the latest: accepted.
    assert!(v3_trap(&t0, engine, Some("5,900"), "1.3.6.1.6.3.1.1.5.3", AUTH_PW).ok);
    assert_eq!(wait_events(&conn, 2).await.len(), 2);
    // From the past (time 100 of the same boot, or an earlier boot): refused.
    assert!(v3_trap(&t0, engine, Some("5,100"), "1.3.6.1.6.3.1.1.5.4", AUTH_PW).ok);
    assert!(v3_trap(&t0, engine, Some("4,5000"), "1.3.6.1.6.3.1.1.5.4", AUTH_PW).ok);
    // A later boot moves the clock forward.
    assert!(v3_trap(&t0, engine, Some("6,3"), "1.3.6.1.6.3.1.1.5.1", AUTH_PW).ok);
    let ev = wait_events(&conn, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ev2 = events(&conn).await;
    assert_eq!(ev.len(), 3, "{ev:#?}");
    assert_eq!(ev2.len(), 3);
    assert!(
        ev2.iter().all(|e| e.trap_oid != "1.3.6.1.6.3.1.1.5.4"),
        "a replay was stored"
    );
    let st: serde_json::Value = serde_json::from_str(&snmp_status(&conn).await).unwrap();
    assert_eq!(st["replays_refused"].as_u64(), Some(2), "{st}");
    assert!(d.log_text().contains("outside the time window"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_and_syslog_gets_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The standard configuration with retention and syslog added to its
    // [receiver].
    let to = syslog.local_addr().unwrap();
    let (_bus, d, conn) = on_bus(dir.path(), |c| {
        c.replace(
            "communities = [\"public\"]",
            &format!("communities = [\"public\"]\nretention = 10\nsyslog = \"{to}\""),
        )
    })
    .await;
    let t0 = d.trap_addr(0);
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    for i in 1..=30u32 {
        let up = i.to_string();
        let o = tool(
            "snmptrap",
            &[
                "-v2c",
                "-c",
                "public",
                &t0,
                &up,
                "1.3.6.1.6.3.1.1.5.3",
                "1.3.6.1.2.1.1.5.0",
                "s",
                "ips\u{1b}[31m-red",
            ],
        );
        assert!(o.ok, "{o:?}");
        let (n, _) = syslog.recv_from(&mut buf).expect("a syslog line per event");
        lines.push(String::from_utf8_lossy(&buf[..n]).to_string());
        // One at a time: each event is stored on its own.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let st: serde_json::Value = serde_json::from_str(&snmp_status(&conn).await).unwrap();
            if st["events_stored"].as_u64() == Some(i as u64) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let ev = events(&conn).await;
    assert_eq!(ev.len(), 10, "retention 10: {ev:#?}");
    let ups: Vec<u32> = ev.iter().map(|e| e.uptime.unwrap()).collect();
    assert_eq!(
        ups,
        (21..=30).collect::<Vec<_>>(),
        "the newest are kept, in order"
    );
    assert_eq!(lines.len(), 30);
    for l in &lines {
        assert!(l.starts_with("<133>1 "), "{l}");
        assert!(
            l.contains("sms-snmpd - snmptrap - v2c trap from 127.0.0.1:"),
            "{l}"
        );
        assert!(l.contains("1.3.6.1.6.3.1.1.5.3"), "{l}");
        assert!(
            !l.chars().any(|c| c.is_control()),
            "control characters reach syslog: {l:?}"
        );
    }
    // A value with an escape sequence is stored as hex, never as raw text.
    assert!(
        ev[0]
            .varbinds
            .iter()
            .any(|v| v.value.starts_with("69:70:73:1b:5b")),
        "{:?}",
        ev[0].varbinds
    );
}
