#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! Remote log servers in configuration mode: a TLS server needs the CA of
//! its certificate, which must be a certificate; UDP and TCP servers take
//! none; the committed servers are what sms-logd is configured with.

mod common;
use sms_core::daemon::WithSettings;
use sms_core::settings::{LogProtocol, Settings, EXAMPLE_LOG_CA};

use common::command_file as cli;

#[test]
fn log_servers_are_checked_committed_and_given_to_the_forwarder() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(
        dir.path(),
        &format!(
            "configure\n\
             set logging server 192.0.2.14 protocol tls ca-certificate aGVsbG8gd29ybGQ=\n\
             set logging server 192.0.2.14 protocol tls ca-certificate {EXAMPLE_LOG_CA}\n\
             set logging server logs.example port 5514 protocol udp\n\
             set logging server 192.0.2.15 protocol tcp\n\
             set logging server 192.0.2.16 protocol tcp\n\
             set logging server 192.0.2.17 protocol tcp\n\
             set logging server bad_host! protocol udp\n\
             compare\n\
             commit\n\
             exit\n"
        ),
    );
    assert!(out.contains("not an X.509"), "{out}");
    assert!(out.contains("at most 4"), "{out}");
    assert!(
        out.contains(&format!(
            "+ set logging server 192.0.2.14 protocol tls ca-certificate {EXAMPLE_LOG_CA}"
        )),
        "{out}"
    );
    assert!(
        out.contains("+ set logging server logs.example port 5514 protocol udp"),
        "{out}"
    );
    let settings = Settings::load(&dir.path().join("config/settings.toml")).unwrap();
    let hosts: Vec<&str> = settings
        .log_servers
        .iter()
        .map(|s| s.host.as_str())
        .collect();
    assert_eq!(
        hosts,
        ["192.0.2.14", "logs.example", "192.0.2.15", "192.0.2.16"]
    );
    assert_eq!(settings.log_servers[0].protocol, LogProtocol::Tls);

    let mut cfg = sms_logd::config::LogdConfig::default();
    cfg.apply_settings(&settings);
    let labels: Vec<String> = cfg.servers.iter().map(|s| s.label()).collect();
    assert_eq!(
        labels,
        [
            "tls:192.0.2.14:6514",
            "udp:logs.example:5514",
            "tcp:192.0.2.15:514",
            "tcp:192.0.2.16:514"
        ]
    );
    assert!(cfg.validate().is_ok());

    // show logging: the servers, with what the forwarder reports.
    let out = cli(dir.path(), "show logging\n");
    assert!(out.contains("reports nothing yet"), "{out}");
    std::fs::create_dir_all(dir.path().join("logd")).unwrap();
    std::fs::write(
        dir.path().join("logd/status.json"),
        r#"[{"server":"tls:192.0.2.14:6514","connected":false,"sent":7,"queued":3,"queued_bytes":300,"dropped":2,"last_error":"TLS handshake failed: invalid peer certificate: UnknownIssuer"}]"#,
    )
    .unwrap();
    let out = cli(dir.path(), "show logging\n");
    let row = out
        .lines()
        .find(|l| l.starts_with("tls:192.0.2.14:6514"))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..5], ["no", "7", "3", "2"], "{out}");
    assert!(row.contains("UnknownIssuer"), "{out}");
    assert!(out.contains("udp:logs.example:5514"), "{out}");

    // One server deleted, then all.
    let out = cli(
        dir.path(),
        "configure\ndelete logging server 192.0.2.99\ndelete logging server logs.example\ncommit\nexit\n",
    );
    assert!(out.contains("192.0.2.99 is not configured"), "{out}");
    let settings = Settings::load(&dir.path().join("config/settings.toml")).unwrap();
    assert_eq!(settings.log_servers.len(), 3);
    cli(dir.path(), "configure\ndelete logging\ncommit\nexit\n");
    let settings = Settings::load(&dir.path().join("config/settings.toml")).unwrap();
    assert!(settings.log_servers.is_empty());
}
