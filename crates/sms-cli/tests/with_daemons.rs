#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The CLI against a real private dbus-daemon with the real SNMP daemon
//! behind it: `show snmp`, `show events` with hostile trap contents, the
//! JSON form, and a clear message for a daemon that is not running.

use std::process::Command;
use std::time::{Duration, Instant};

fn cli(dir: &std::path::Path, bus: &str, line: &str) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_sms-cli"))
        .arg("--state-dir")
        .arg(dir)
        .args(["--bus", bus])
        .arg("-c")
        .arg(line)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_commands_read_the_daemons_and_neutralise_what_came_from_outside() {
    let dir = tempfile::tempdir().unwrap();
    let bus = sms_testkit::DbusDaemon::start().unwrap();
    let trap_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg: sms_snmpd::config::SnmpConfig = toml::from_str(&format!(
        r#"state_dir = "{}"
[agent]
listen = ["127.0.0.1:0"]
[receiver]
listen = ["127.0.0.1:{trap_port}"]
communities = ["public"]
[poller]
enabled = false
"#,
        dir.path().join("snmpd").display()
    ))
    .unwrap();
    let d = sms_snmpd::daemon::Daemon::start(cfg).unwrap();
    let _conn = sms_snmpd::dbus::serve_with(
        d.clone(),
        zbus::connection::Builder::address(bus.address()).unwrap(),
    )
    .await
    .unwrap();
    let state = dir.path().join("cli");
    let addr = bus.address().to_string();

    let (ok, out) = tokio::task::spawn_blocking({
        let (s, a) = (state.clone(), addr.clone());
        move || cli(&s, &a, "sh snmp")
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("engine id") && out.contains(&format!("127.0.0.1:{trap_port}")),
        "{out}"
    );

    // A trap whose contents try to drive the terminal.
    sms_sim::snmp::send_trap(
        "127.0.0.1".parse().unwrap(),
        format!("127.0.0.1:{trap_port}").parse().unwrap(),
        "public",
        "1.3.6.1.6.3.1.1.5.3".parse().unwrap(),
        7,
        vec![sms_snmp::VarBind::new(
            "1.3.6.1.2.1.1.5.0".parse().unwrap(),
            sms_snmp::Value::text("\u{1b}]0;owned\u{7}\u{1b}[2Jevil"),
        )],
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.receiver.log().stored() < 1 {
        assert!(Instant::now() < deadline, "trap not stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in ["show events", "show events | json"] {
        let (ok, out) = tokio::task::spawn_blocking({
            let (s, a) = (state.clone(), addr.clone());
            move || cli(&s, &a, line)
        })
        .await
        .unwrap();
        assert!(ok, "{line}: {out}");
        assert!(out.contains("1.3.6.1.6.3.1.1.5.3"), "{line}: {out}");
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "{line}: {out:?}"
        );
    }
    // A daemon that is not on the bus: a clear message, status 1.
    let (ok, out) = tokio::task::spawn_blocking({
        let (s, a) = (state.clone(), addr.clone());
        move || cli(&s, &a, "show devices")
    })
    .await
    .unwrap();
    assert!(
        !ok && out.starts_with("% ") && out.contains("Distributor1"),
        "{out}"
    );
}

/// The inventory commands against the real distribution daemon: add with
/// a group and a port, edit, groups, remove; a device name with escape
/// sequences never reaches the daemon; every change is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_add_edit_group_and_remove_through_the_distribution_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let bus = sms_testkit::DbusDaemon::start().unwrap();
    sms_sim::tmc::load_or_create_keys(&dir.path().join("world")).unwrap();
    let mut dc = sms_distd::config::DistdConfig::default();
    dc.paths.state_dir = dir.path().join("distd/state");
    dc.paths.blob_dir = dir.path().join("blobs");
    dc.paths.cache_dir = dir.path().join("distd/cache");
    dc.tls.trust_root = dir.path().join("world/trust-root.json");
    dc.push.auto_distribute_dv = false;
    dc.pull.http_listen = vec![];
    dc.pull.https_listen = vec![];
    let (dist, _db) = sms_testkit::world::distributor_on_bus(dc, &bus)
        .await
        .unwrap();
    let state = dir.path().join("cli");
    let addr = bus.address().to_string();
    let run = |line: &'static str| {
        let (s, a) = (state.clone(), addr.clone());
        tokio::task::spawn_blocking(move || cli(&s, &a, line))
    };
    let (ok, out) = run("devices add ips-1 address 192.0.2.21 platform 5000e group lab port 8443")
        .await
        .unwrap();
    assert!(
        ok && out.contains("device ips-1 added to group lab"),
        "{out}"
    );
    let (ok, out) = run("dev add ips-2 address 192.0.2.22 plat 200")
        .await
        .unwrap();
    assert!(ok, "{out}");
    let d = dist.inventory().get("ips-1").unwrap().unwrap();
    assert_eq!(
        (d.port, d.group.as_str(), d.family.id()),
        (8443, "lab", "5000E")
    );
    let d = dist.inventory().get("ips-2").unwrap().unwrap();
    assert_eq!(
        (d.port, d.group.as_str(), d.family.id()),
        (443, "default", "200-2400")
    );
    // A duplicate is refused with the daemon's reason.
    let (ok, out) = run("devices add ips-2 address 192.0.2.23 platform 5000e")
        .await
        .unwrap();
    assert!(!ok && out.starts_with("% "), "{out}");
    let (ok, out) = run("devices edit ips-2 group lab").await.unwrap();
    assert!(ok, "{out}");
    let (ok, out) = run("devices edit ips-2 address 192.0.2.99").await.unwrap();
    assert!(ok, "{out}");
    let d = dist.inventory().get("ips-2").unwrap().unwrap();
    assert_eq!(
        (d.group.as_str(), d.address.to_string().as_str()),
        ("lab", "192.0.2.99")
    );
    let (ok, out) = run("devices groups").await.unwrap();
    assert!(ok && out.contains("lab") && out.contains('2'), "{out}");
    let (ok, out) = run("devices edit nosuch group lab").await.unwrap();
    assert!(!ok && out.contains("nosuch"), "{out}");
    let (ok, out) = run("devices add \u{1b}]0;pwned\u{7} address 192.0.2.30 platform 5000e")
        .await
        .unwrap();
    assert!(!ok && !out.contains('\u{1b}'), "{out:?}");
    let (ok, out) = run("devices remove ips-1").await.unwrap();
    assert!(ok, "{out}");
    assert!(dist.inventory().get("ips-1").unwrap().is_none());
    assert_eq!(dist.inventory().list().unwrap().len(), 1);
    let audit = std::fs::read_to_string(state.join("audit.log")).unwrap();
    for what in [
        "devices add ips-1",
        "devices edit ips-2 group lab",
        "devices remove ips-1",
    ] {
        assert!(audit.contains(what), "{what} not in {audit}");
    }
}
