//! The CLI against a real private dbus-daemon with the real SNMP daemon
//! behind it: `show snmp`, `show events` with hostile trap contents, the
//! JSON form, and a clear message for a daemon that is not running.

use std::process::Command;
use std::time::{Duration, Instant};

fn cli(dir: &std::path::Path, bus: &str, line: &str) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_sms-cli"))
        .arg("--state-dir")
        .arg(dir)
        .arg("-c")
        .arg(line)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
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
        out.contains("engine_id") && out.contains(&format!("127.0.0.1:{trap_port}")),
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
