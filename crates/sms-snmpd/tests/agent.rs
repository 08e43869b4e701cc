#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The agent against net-snmp's command-line tools: every request kind in
//! v1, v2c and v3 authPriv, Set, refusals, the SMS-MIB walked with the MIB
//! loaded, bad datagrams, and replayed v3 requests.

mod common;

use common::*;
use sms_snmp::{Message, PduType, Value};
use std::net::UdpSocket;
use std::time::Duration;

fn sys_interfaces() -> usize {
    std::fs::read_dir("/sys/class/net").unwrap().count()
}

#[test]
fn get_getnext_walk_bulkwalk_in_v1_v2c_and_v3_authpriv() {
    let dir = tempfile::tempdir().unwrap();
    let d = Snmpd::start(dir.path(), "[poller]\nenabled = false", None);
    let v3 = v3_args();
    let versions: Vec<(&str, Vec<&str>)> = vec![
        ("v1", vec!["-v1", "-c", "public"]),
        ("v2c", vec!["-v2c", "-c", "public"]),
        ("v3", v3.clone()),
    ];
    for (name, auth) in &versions {
        let mut pre = auth.clone();
        pre.push("-On");
        let g = d.run("snmpget", &pre, &["1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.3.0"]);
        assert!(g.ok, "{name} get: {g:?}");
        assert!(
            g.stdout
                .contains(".1.3.6.1.2.1.1.5.0 = STRING: \"sms-test\""),
            "{name}: {}",
            g.stdout
        );
        assert!(g.stdout.contains("Timeticks"), "{name}: {}", g.stdout);

        let n = d.run("snmpgetnext", &pre, &["1.3.6.1.2.1.1.4"]);
        assert!(n.ok, "{name} getnext: {n:?}");
        assert!(
            n.stdout
                .contains(".1.3.6.1.2.1.1.4.0 = STRING: \"noc@example.net\""),
            "{name}: {}",
            n.stdout
        );

        let w = d.run("snmpwalk", &pre, &["1.3.6.1.2.1.1"]);
        assert!(w.ok, "{name} walk: {w:?}");
        assert_eq!(
            w.stdout.lines().count(),
            7,
            "{name}: system group\n{}",
            w.stdout
        );

        // IF-MIB from the live system: one row per interface.
        let w = d.run("snmpwalk", &pre, &["1.3.6.1.2.1.2.2.1.2"]);
        assert!(w.ok, "{name} ifDescr walk: {w:?}");
        assert_eq!(
            w.stdout.lines().count(),
            sys_interfaces(),
            "{name}: {}",
            w.stdout
        );
        assert!(w.stdout.contains("STRING: \"lo\""), "{name}: {}", w.stdout);

        if *name != "v1" {
            let b = d.run(
                "snmpbulkwalk",
                &[pre.as_slice(), &["-Cr25"]].concat(),
                &["1.3.6.1.2.1"],
            );
            assert!(b.ok, "{name} bulkwalk: {b:?}");
            let plain = d.run("snmpwalk", &pre, &["1.3.6.1.2.1"]);
            // Same objects either way (counters may move between the walks).
            let names = |s: &str| {
                s.lines()
                    .map(|l| l.split(" = ").next().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                names(&b.stdout),
                names(&plain.stdout),
                "{name}: bulkwalk and walk differ"
            );
            assert!(b.stdout.lines().count() > 7 + 16 * sys_interfaces() / 2);
        }
    }
    // A GetBulk with a large max-repetitions is cut to fit, not refused.
    let b = d.run(
        "snmpbulkget",
        &["-v2c", "-c", "public", "-On", "-Cn0", "-Cr5000"],
        &["1.3.6.1"],
    );
    assert!(b.ok, "{b:?}");
    assert!(b.stdout.lines().count() > 20, "{}", b.stdout);
    // SNMPv1 has no Counter64 (RFC 3584 4.2.2.1): a v1 walk of ifXTable
    // skips ifHCInOctets and ifHCOutOctets, a v1 Get of one is noSuchName;
    // v2c sees them.
    let hc_in = "1.3.6.1.2.1.31.1.1.1.6.1";
    let w1 = d.run(
        "snmpwalk",
        &["-v1", "-c", "public", "-On"],
        &["1.3.6.1.2.1.31.1.1.1"],
    );
    let w2 = d.run(
        "snmpwalk",
        &["-v2c", "-c", "public", "-On"],
        &["1.3.6.1.2.1.31.1.1.1"],
    );
    assert!(w1.ok && w2.ok, "{w1:?} {w2:?}");
    assert!(w2.stdout.contains("Counter64"), "{}", w2.stdout);
    assert!(!w1.stdout.contains("Counter64"), "{}", w1.stdout);
    assert!(
        w1.stdout.contains(".1.3.6.1.2.1.31.1.1.1.15."),
        "{}",
        w1.stdout
    );
    let g1 = d.run("snmpget", &["-v1", "-c", "public"], &[hc_in]);
    assert!(
        !g1.ok && (g1.stderr.contains("noSuchName") || g1.stdout.contains("noSuchName")),
        "{g1:?}"
    );
    let g2 = d.run("snmpget", &["-v2c", "-c", "public"], &[hc_in]);
    assert!(g2.ok && g2.stdout.contains("Counter64"), "{g2:?}");
    // A v1 Get of a missing object is noSuchName; in v2c, noSuchObject.
    let m = d.run("snmpget", &["-v1", "-c", "public"], &["1.3.6.1.2.1.1.99.0"]);
    assert!(
        m.stderr.contains("noSuchName") || m.stdout.contains("noSuchName"),
        "{m:?}"
    );
    let m = d.run(
        "snmpget",
        &["-v2c", "-c", "public"],
        &["1.3.6.1.2.1.1.99.0", "1.3.6.1.2.1.1.5.1"],
    );
    assert!(m.stdout.contains("No Such Object"), "{m:?}");
    assert!(m.stdout.contains("No Such Instance"), "{m:?}");
    // A view without the SMS subtree hides it.
    let l = d.run(
        "snmpget",
        &["-v2c", "-c", "limited", "-On"],
        &["1.3.6.1.4.1.32473.1.1.1.1.0", "1.3.6.1.2.1.1.5.0"],
    );
    assert!(l.stdout.contains("No Such Object"), "{l:?}");
    assert!(l.stdout.contains("sms-test"), "{l:?}");
    // SHA-1 keys work as well as SHA-256.
    let s = d.run(
        "snmpget",
        &v3_with("sha1user", "SHA", "sha1pass123", "sha1priv123"),
        &["1.3.6.1.2.1.1.5.0"],
    );
    assert!(s.ok && s.stdout.contains("sms-test"), "{s:?}");
}

#[test]
fn set_changes_writable_objects_only_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Snmpd::start(dir.path(), "[poller]\nenabled = false", None);
    let ok = d.run(
        "snmpset",
        &["-v2c", "-c", "private"],
        &["1.3.6.1.2.1.1.6.0", "s", "hall 2, rack 7"],
    );
    assert!(ok.ok, "{ok:?}");
    let v3 = v3_args();
    let ok = d.run(
        "snmpset",
        &v3,
        &["1.3.6.1.2.1.1.4.0", "s", "ops@example.net"],
    );
    assert!(ok.ok, "{ok:?}");
    let ro = d.run(
        "snmpset",
        &["-v2c", "-c", "private"],
        &["1.3.6.1.2.1.1.1.0", "s", "x"],
    );
    assert!(!ro.ok && ro.stderr.contains("notWritable"), "{ro:?}");
    let no = d.run(
        "snmpset",
        &["-v2c", "-c", "public"],
        &["1.3.6.1.2.1.1.6.0", "s", "x"],
    );
    assert!(!no.ok && no.stderr.contains("noAccess"), "{no:?}");
    let ty = d.run(
        "snmpset",
        &["-v2c", "-c", "private"],
        &["1.3.6.1.2.1.1.6.0", "i", "5"],
    );
    assert!(!ty.ok && ty.stderr.contains("wrongType"), "{ty:?}");
    let long = "x".repeat(300);
    let ln = d.run(
        "snmpset",
        &["-v2c", "-c", "private"],
        &["1.3.6.1.2.1.1.6.0", "s", &long],
    );
    assert!(!ln.ok && ln.stderr.contains("wrongLength"), "{ln:?}");
    let v1 = d.run(
        "snmpset",
        &["-v1", "-c", "private"],
        &["1.3.6.1.2.1.1.1.0", "s", "x"],
    );
    assert!(!v1.ok && v1.stderr.contains("noSuchName"), "{v1:?}");
    // Nothing of the refused sets happened; the accepted ones stay after a restart.
    d.stop();
    d.spawn();
    let g = d.get_v2c(
        "public",
        &[
            "1.3.6.1.2.1.1.6.0",
            "1.3.6.1.2.1.1.4.0",
            "1.3.6.1.2.1.1.1.0",
        ],
    );
    assert!(g.stdout.contains("\"hall 2, rack 7\""), "{g:?}");
    assert!(g.stdout.contains("\"ops@example.net\""), "{g:?}");
    assert!(g.stdout.contains("SMS OS"), "{g:?}");
}

#[test]
fn wrong_credentials_get_no_answer_or_the_proper_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = Snmpd::start(dir.path(), "[poller]\nenabled = false", None);
    for c in ["wrong", "remote-only"] {
        let o = d.get_v2c(c, &["1.3.6.1.2.1.1.5.0"]);
        assert!(!o.ok && o.stderr.contains("Timeout"), "{c}: {o:?}");
    }
    let unknown = d.run(
        "snmpget",
        &v3_with("mallory", "SHA-256", AUTH_PW, PRIV_PW),
        &["1.3.6.1.2.1.1.5.0"],
    );
    assert!(
        !unknown.ok && unknown.stderr.contains("Unknown user name"),
        "{unknown:?}"
    );
    let wrong_auth = d.run(
        "snmpget",
        &v3_with(USER, "SHA-256", "wrongpass123", PRIV_PW),
        &["1.3.6.1.2.1.1.5.0"],
    );
    assert!(
        !wrong_auth.ok && wrong_auth.stderr.contains("Authentication failure"),
        "{wrong_auth:?}"
    );
    let wrong_proto = d.run(
        "snmpget",
        &v3_with(USER, "SHA-512", AUTH_PW, PRIV_PW),
        &["1.3.6.1.2.1.1.5.0"],
    );
    assert!(!wrong_proto.ok, "{wrong_proto:?}");
    let wrong_priv = d.run(
        "snmpget",
        &v3_with(USER, "SHA-256", AUTH_PW, "wrongpriv123"),
        &["1.3.6.1.2.1.1.5.0"],
    );
    assert!(
        !wrong_priv.ok && wrong_priv.stderr.to_lowercase().contains("decrypt"),
        "{wrong_priv:?}"
    );
    // The user must use authPriv: authNoPriv is refused by the access rules.
    let weak = d.run(
        "snmpget",
        &[
            "-v3",
            "-l",
            "authNoPriv",
            "-u",
            USER,
            "-a",
            "SHA-256",
            "-A",
            AUTH_PW,
        ],
        &["1.3.6.1.2.1.1.5.0"],
    );
    assert!(
        !weak.ok && weak.stderr.contains("authorizationError"),
        "{weak:?}"
    );
    // None of it stopped the agent.
    let v3 = v3_args();
    assert!(d.run("snmpget", &v3, &["1.3.6.1.2.1.1.5.0"]).ok);
}

#[test]
fn the_sms_mib_loads_and_walks_with_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = Snmpd::start(dir.path(), "[poller]\nenabled = false", None);
    let dirs = mib_dirs();
    let t = tool(
        "snmptranslate",
        &[
            "-M",
            &format!("+{dirs}"),
            "-m",
            "+SMS-MIB",
            "-On",
            "SMS-MIB::smsDeviceDvVersion",
        ],
    );
    assert!(t.ok, "{t:?}");
    assert_eq!(t.stdout.trim(), ".1.3.6.1.4.1.32473.1.1.3.2.1.4");
    let strict = tool(
        "snmptranslate",
        &["-M", &dirs, "-m", "SMS-MIB", "-Tp", "-IR", "smsMIB"],
    );
    assert!(
        strict.ok && strict.stderr.is_empty(),
        "MIB parse warnings: {}",
        strict.stderr
    );
    let v3 = v3_args();
    let mut pre = vec!["-M", &dirs, "-m", "SMS-MIB"];
    pre.extend_from_slice(&v3);
    let w = d.run("snmpwalk", &pre, &["SMS-MIB::smsMIB"]);
    assert!(w.ok, "{w:?}");
    assert!(w.stderr.is_empty(), "{}", w.stderr);
    for name in [
        "smsFirmwareVersion.0",
        "smsDvVersion.0",
        "smsTosVersion.0",
        "smsLastCheck.0",
        "smsDeviceCount.0 = Gauge32: 0",
        "smsHaRole.0 = INTEGER: standalone(1)",
        "smsHaPeerState.0 = INTEGER: none(1)",
        "smsNtpSyncState.0 = INTEGER: unknown(3)",
        "smsTrapsReceived.0",
    ] {
        assert!(
            w.stdout.contains(&format!("SMS-MIB::{name}")),
            "{name} missing:\n{}",
            w.stdout
        );
    }
    for l in w.stdout.lines() {
        assert!(
            l.starts_with("SMS-MIB::"),
            "object outside the MIB or unnamed: {l}"
        );
        assert!(!l.contains("Wrong Type"), "type differs from the MIB: {l}");
    }
}

fn v2c_get(request_id: i32) -> Vec<u8> {
    use sms_snmp::message::CommunityMessage;
    CommunityMessage {
        version: sms_snmp::Version::V2c,
        community: b"public".to_vec(),
        pdu: sms_snmp::AnyPdu::Pdu(sms_snmp::Pdu::new(
            PduType::Get,
            request_id,
            vec![sms_snmp::VarBind::new(
                "1.3.6.1.2.1.1.5.0".parse().unwrap(),
                Value::Null,
            )],
        )),
    }
    .encode()
}

#[test]
fn malformed_truncated_and_oversized_datagrams_leave_it_answering() {
    let dir = tempfile::tempdir().unwrap();
    let d = Snmpd::start(dir.path(), "[poller]\nenabled = false", None);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let good = v2c_get(7);
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x30],
        vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        vec![0x30, 0x80, 0, 0],
        vec![0xff; 1000],
        vec![0x30; 65000],
    ];
    for cut in 1..good.len() {
        bad.push(good[..cut].to_vec());
    }
    // Every single-byte change of a valid request.
    for i in 0..good.len() {
        for x in [0x00u8, 0x7f, 0x80, 0xff] {
            let mut m = good.clone();
            m[i] = x;
            if m != good {
                bad.push(m);
            }
        }
    }
    let mut seed = 0x2545f4914f6cdd1du64;
    for _ in 0..300 {
        let n = (seed % 200) as usize;
        let mut m = Vec::with_capacity(n);
        for _ in 0..n {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            m.push(seed as u8);
        }
        bad.push(m);
    }
    let count = bad.len();
    for m in &bad {
        sock.send_to(m, &d.agent).unwrap();
    }
    // Whatever the mutations produced, it still answers a good request
    // (drain the answers to the mutations that happened to be valid).
    let mut buf = [0u8; 65536];
    while sock.recv_from(&mut buf).is_ok() {}
    sock.send_to(&v2c_get(424242), &d.agent).unwrap();
    let mut answered = false;
    for _ in 0..20 {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Ok(Message::Community(m)) = sms_snmp::decode(&buf[..n]) {
            if let sms_snmp::AnyPdu::Pdu(p) = m.pdu {
                if p.request_id == 424242 {
                    assert_eq!(p.varbinds[0].value, Value::text("sms-test"));
                    answered = true;
                    break;
                }
            }
        }
    }
    assert!(
        answered,
        "no answer after {count} bad datagrams:\n{}",
        d.log_text()
    );
    assert!(d.get_v2c("public", &["1.3.6.1.2.1.1.5.0"]).ok);
}

/// A UDP relay between a net-snmp tool and the agent that records every
/// datagram the tool sends.
fn relay(agent: &str) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = front.local_addr().unwrap().to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let agent: std::net::SocketAddr = agent.parse().unwrap();
    let s = seen.clone();
    front
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    back.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    std::thread::spawn(move || {
        let mut client = None;
        let mut buf = [0u8; 65536];
        // Bounded: the relay lives for at most 60 s.
        let end = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < end {
            if let Ok((n, from)) = front.recv_from(&mut buf) {
                client = Some(from);
                s.lock().unwrap().push(buf[..n].to_vec());
                let _ = back.send_to(&buf[..n], agent);
            }
            if let Ok((n, _)) = back.recv_from(&mut buf) {
                if let Some(c) = client {
                    let _ = front.send_to(&buf[..n], c);
                }
            }
        }
    });
    (addr, seen)
}

fn ask(agent: &str, packet: &[u8]) -> Option<sms_snmp::message::V3Message> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(packet, agent).unwrap();
    let mut buf = [0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    match sms_snmp::decode(&buf[..n]).unwrap() {
        Message::V3(m) => Some(m),
        _ => None,
    }
}

#[test]
fn replayed_v3_requests_outside_the_time_window_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Snmpd::start(dir.path(), "[poller]\nenabled = false", None);
    let (front, seen) = relay(&d.agent);
    let mut a: Vec<&str> = vec!["-t", "2", "-r", "0"];
    a.extend(v3_args());
    a.push(&front);
    a.push("1.3.6.1.2.1.1.5.0");
    let o = tool("snmpget", &a);
    assert!(o.ok, "{o:?}");
    // The last datagram net-snmp sent is the authenticated, encrypted Get.
    let captured = seen.lock().unwrap().last().cloned().unwrap();
    let m = match sms_snmp::decode(&captured).unwrap() {
        Message::V3(m) => m,
        _ => panic!("not v3"),
    };
    assert_eq!(m.flags & 3, 3, "authPriv");
    // Replayed at once (inside the window): the engine answers, encrypted.
    let now = ask(&d.agent, &captured).expect("answer to an in-window replay");
    assert_eq!(now.flags & 3, 3);
    // After a restart the engine boots once more: the same datagram is stale.
    d.stop();
    d.spawn();
    let r = ask(&d.agent, &captured).expect("a report");
    let sms_snmp::message::ScopedPduData::Plain(s) = r.data else {
        panic!("the report is not encrypted")
    };
    assert_eq!(s.pdu.kind, PduType::Report);
    assert_eq!(
        s.pdu.varbinds[0].oid.to_string(),
        "1.3.6.1.6.3.15.1.1.2.0",
        "usmStatsNotInTimeWindows"
    );
    assert_eq!(r.flags & 1, 1, "the time-window report is authenticated");
    assert!(r.usm.boots > m.usm.boots);
}

/// What the CLI commits reaches the agent: a community and a v3 user from
/// the settings file answer net-snmp after a restart; a community bound to
/// another network does not; a damaged settings file stops the daemon with
/// the file and key named.
#[test]
fn communities_and_users_from_the_settings_file_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Snmpd::start(dir.path(), "[poller]\nenabled = false", None);
    assert!(!d.get_v2c("ops", &["1.3.6.1.2.1.1.5.0"]).ok);
    let store = sms_core::settings::SettingsStore::new(dir.path());
    let settings = sms_core::settings::Settings {
        snmp_communities: vec![
            sms_core::settings::SnmpCommunity {
                name: "ops".into(),
                networks: vec!["127.0.0.0/8".into()],
                write: false,
            },
            sms_core::settings::SnmpCommunity {
                name: "elsewhere".into(),
                networks: vec!["192.0.2.0/24".into()],
                write: false,
            },
        ],
        snmp_users: vec![sms_core::settings::SnmpUser {
            name: "ops-user".into(),
            auth: "SHA-512".into(),
            auth_password: "ops-auth-pass".into(),
            privacy_password: "ops-priv-pass".into(),
            write: false,
        }],
        ..Default::default()
    };
    store.commit(&settings).unwrap();
    d.stop();
    d.spawn();
    let g = d.get_v2c("ops", &["1.3.6.1.2.1.1.5.0"]);
    assert!(g.ok && g.stdout.contains("sms-test"), "{g:?}");
    assert!(!d.get_v2c("elsewhere", &["1.3.6.1.2.1.1.5.0"]).ok);
    // The shipped file's community still answers.
    assert!(d.get_v2c("public", &["1.3.6.1.2.1.1.5.0"]).ok);
    let ops = v3_with("ops-user", "SHA-512", "ops-auth-pass", "ops-priv-pass");
    let v3 = d.run(
        "snmpget",
        &[ops.as_slice(), &["-On"]].concat(),
        &["1.3.6.1.2.1.1.5.0"],
    );
    assert!(v3.ok && v3.stdout.contains("sms-test"), "{v3:?}");
    // A settings user is read-only unless it was given read-write.
    let set = d.run("snmpset", &ops, &["1.3.6.1.2.1.1.6.0", "s", "x"]);
    assert!(!set.ok, "{set:?}");
    d.stop();
    std::fs::write(store.path(), "snmp_communities = 5\n").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sms-snmpd"))
        .arg("--config")
        .arg(&d.config)
        .arg("--settings")
        .arg(store.path())
        .arg("--no-dbus")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("settings.toml") && err.contains("snmp_communities"),
        "{err}"
    );
}

fn v2c_bulk(request_id: i32, max_repetitions: i32) -> Vec<u8> {
    use sms_snmp::message::CommunityMessage;
    let mut pdu = sms_snmp::Pdu::new(
        PduType::GetBulk,
        request_id,
        vec![sms_snmp::VarBind::new(
            "1.3.6.1".parse().unwrap(),
            Value::Null,
        )],
    );
    pdu.error_status = 0;
    pdu.error_index = max_repetitions;
    CommunityMessage {
        version: sms_snmp::Version::V2c,
        community: b"public".to_vec(),
        pdu: sms_snmp::AnyPdu::Pdu(pdu),
    }
    .encode()
}

/// A community's source address can be forged: a small v2c request gets
/// at most one Ethernet frame back (a GetBulk is cut to fit), while a v3
/// user still gets large answers.
#[test]
fn community_answers_are_capped_at_one_frame() {
    let dir = tempfile::tempdir().unwrap();
    let d = Snmpd::start(dir.path(), "[poller]\nenabled = false", None);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let request = v2c_bulk(99, 5000);
    sock.send_to(&request, &d.agent).unwrap();
    let mut buf = [0u8; 65536];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    println!("GetBulk of {} bytes answered with {n} bytes", request.len());
    assert!(request.len() < 50, "{}", request.len());
    assert!(n <= 1472, "a {}-byte request got {n} bytes", request.len());
    let Ok(Message::Community(m)) = sms_snmp::decode(&buf[..n]) else {
        panic!("not a community message");
    };
    let sms_snmp::AnyPdu::Pdu(p) = m.pdu else {
        panic!("not a PDU")
    };
    assert_eq!(p.error_status, 0, "cut to fit, not refused");
    assert!(p.varbinds.len() > 10, "{}", p.varbinds.len());
    // v3 (authenticated) is not held to the frame.
    let b = d.run(
        "snmpbulkget",
        &[v3_args().as_slice(), &["-On", "-Cn0", "-Cr5000"]].concat(),
        &["1.3.6.1"],
    );
    assert!(b.ok, "{b:?}");
    assert!(b.stdout.lines().count() > p.varbinds.len(), "{}", b.stdout);
}

/// One source over its rate is dropped (and counted) until its bucket
/// refills; then it is answered again.
#[test]
fn a_source_over_its_rate_is_dropped_then_answered_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = Snmpd::start(
        dir.path(),
        "[agent.rate_limit]\ninterval_ms = 100\nburst = 20\n[poller]\nenabled = false",
        None,
    );
    // A source of its own (the start-up probes came from 127.0.0.1).
    let sock = UdpSocket::bind("127.0.0.77:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = std::time::Instant::now();
    for i in 0..200 {
        sock.send_to(&v2c_get(i), &d.agent).unwrap();
    }
    let sent_in = started.elapsed().as_secs_f64();
    let mut buf = [0u8; 65536];
    let mut answers = 0;
    while sock.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    let allowed = 20 + (sent_in / 0.1).ceil() as usize + 1;
    println!("200 requests in {sent_in:.3} s: {answers} answered (at most {allowed})");
    assert!(answers >= 20, "{answers}");
    assert!(
        answers <= allowed,
        "{answers} answers, at most {allowed} allowed"
    );
    // Other sources are not affected...
    let g = d.run(
        "snmpget",
        &["-v2c", "-c", "public", "-r", "0"],
        &["1.3.6.1.2.1.1.5.0"],
    );
    assert!(g.ok && g.stdout.contains("sms-test"), "{g:?}");
    // ...and the limited one is answered again once its bucket refilled.
    std::thread::sleep(Duration::from_millis(500));
    sock.send_to(&v2c_get(4242), &d.agent).unwrap();
    let (n, _) = sock.recv_from(&mut buf).expect("answered after the refill");
    assert!(n > 0);
}
