#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! E-mail notifications set in configuration mode: values are checked as
//! they are typed, the password is asked and kept apart (never in the
//! shared settings, never shown), and what is committed makes sms-logd
//! mail a real SMTP server (aiosmtpd with STARTTLS and AUTH required).

mod common;
use common::command_file as cli;
use sms_core::daemon::WithSettings;
use sms_core::settings::{Settings, KEPT_APART, LOGD_SECRETS};
use sms_logd::line::LogLine;
use sms_sim::pki::TestCa;
use sms_testkit::DaemonProcess;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn mail_set_in_configuration_mode_reaches_the_mail_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate("Customer Mail CA").unwrap();
    let ca_b64: String = ca
        .cert_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = cli(
        dir.path(),
        &format!(
            "configure\n\
             set notification mail from sms@lab.example\n\
             set notification mail server 127.0.0.1 port {port} security starttls\n\
             commit\n\
             set notification mail ca-certificate aGVsbG8=\n\
             set notification mail ca-certificate {ca_b64}\n\
             set notification mail from sms@lab.example\n\
             set notification mail recipient ops@lab.example>x\n\
             set notification mail recipient ops@lab.example\n\
             set notification mail class distribution\n\
             set notification mail class everything\n\
             set notification mail min-interval 5\n\
             set notification mail min-interval 60\n\
             set notification mail user sms\n\
             s3cret-pass\n\
             compare\n\
             commit\n\
             exit\n"
        ),
    );
    assert!(out.contains("no mail server yet"), "{out}");
    assert!(
        out.contains("needs a sender (from) and a recipient before commit"),
        "{out}"
    );
    assert!(
        out.contains("not committed: notification mail: no sender"),
        "{out}"
    );
    assert!(
        out.contains("notification mail ca-certificate: not an X.509"),
        "{out}"
    );
    assert!(out.contains("outside 60..86400"), "{out}");
    assert!(
        out.contains("+ set notification mail server 127.0.0.1 port"),
        "{out}"
    );
    assert!(
        out.contains("+ set notification mail recipient ops@lab.example\n"),
        "{out}"
    );
    assert!(
        out.contains("+ set notification mail user sms (password ********)"),
        "{out}"
    );
    assert!(!out.contains("s3cret"), "the password was shown:\n{out}");
    let config = dir.path().join("config");
    let shared = std::fs::read_to_string(config.join("settings.toml")).unwrap();
    assert!(
        !shared.contains("s3cret") && shared.contains(KEPT_APART),
        "{shared}"
    );
    let secrets = std::fs::read_to_string(config.join(LOGD_SECRETS).join("secrets.toml")).unwrap();
    assert!(secrets.contains("s3cret-pass"), "{secrets}");

    // What sms-logd makes of the committed settings mails the server.
    let settings = Settings::load(&config.join("settings.toml")).unwrap();
    let mut cfg = sms_logd::config::LogdConfig::default();
    cfg.apply_settings(&settings);
    let mut mail = cfg.mail.expect("no mail configuration");
    mail.hold_secs = 0;

    let cert = ca
        .issue(&["mail.lab.example"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .unwrap();
    let srv = dir.path().join("smtp");
    std::fs::create_dir_all(&srv).unwrap();
    std::fs::write(srv.join("chain.pem"), &cert.chain_pem).unwrap();
    std::fs::write(srv.join("key.pem"), &cert.key_pem).unwrap();
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sms-logd/tests/fixtures/smtp_server.py"
    ))
    .args(["--port", &port.to_string(), "--user", "sms"])
    .args(["--password", "s3cret-pass", "--dir"])
    .arg(srv.join("mails"))
    .arg("--cert")
    .arg(srv.join("chain.pem"))
    .arg("--key")
    .arg(srv.join("key.pem"));
    let mut smtp = DaemonProcess::spawn(cmd, &srv.join("smtp.log")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(smtp.is_running(), "{}", smtp.log());
        assert!(Instant::now() < deadline, "the SMTP server does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let n = sms_logd::mail::Notifier::start(&mail, "sms-lab").unwrap();
        for (app, text) in [
            ("sms-distd", "distribution of DV 4.0.0.9001 to ips-1 failed"),
            ("sms-snmpd", "device ips-2 unreachable"),
        ] {
            n.submit(&LogLine::parse(format!("<27>{app}[7]: {text}").as_bytes()).unwrap());
        }
        n.flush().await;
        n.status()
    });
    assert_eq!(status.sent, 1, "{status:?}");
    let mails: Vec<String> = std::fs::read_dir(srv.join("mails"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert!(m.contains("X-Envelope-To: ops@lab.example"), "{m}");
    assert!(m.contains("1 event: 1 distribution"), "{m}");
    assert!(!m.contains("ips-2"), "a class not chosen was mailed:\n{m}");
    smtp.stop();

    // `show logging` tells what sms-logd reported (its status file).
    std::fs::create_dir_all(dir.path().join("logd")).unwrap();
    std::fs::write(
        dir.path().join("logd/mail-status.json"),
        serde_json::to_vec(&status).unwrap(),
    )
    .unwrap();
    let out = cli(dir.path(), "show logging\n");
    assert!(
        out.contains(&format!(
            "mail notification: 127.0.0.1:{port} to ops@lab.example; 1 sent, 0 event(s) pending, last sent 20"
        )),
        "{out}"
    );
}
