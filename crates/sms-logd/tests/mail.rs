#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! sms-logd's e-mail notifications against a real SMTP submission server
//! (aiosmtpd, Debian's python3-aiosmtpd, run by the test with STARTTLS and
//! AUTH required): a burst of a thousand failures is one digest mail to
//! every recipient, the next mail waits the configured interval; a server
//! with a certificate of another CA, one without STARTTLS, and a wrong
//! password get no mail and the reason is in the status.

mod common;

use common::Logd;
use sms_sim::pki::TestCa;
use sms_testkit::free_port;
use sms_testkit::DaemonProcess;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The SMTP server, writing what it accepts to `dir/NNNN.eml`.
struct SmtpServer {
    dir: PathBuf,
    _process: DaemonProcess,
}

impl SmtpServer {
    /// With `tls` (chain, key): STARTTLS and AUTH required; without: plain.
    fn start(dir: &Path, port: u16, tls: Option<(&str, &str)>, password: &str) -> SmtpServer {
        std::fs::create_dir_all(dir).unwrap();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/smtp_server.py"
        ))
        .arg("--port")
        .arg(port.to_string())
        .arg("--dir")
        .arg(dir.join("mails"))
        .arg("--password")
        .arg(password);
        if let Some((chain, key)) = tls {
            std::fs::write(dir.join("chain.pem"), chain).unwrap();
            std::fs::write(dir.join("key.pem"), key).unwrap();
            cmd.arg("--cert")
                .arg(dir.join("chain.pem"))
                .arg("--key")
                .arg(dir.join("key.pem"));
        }
        let mut p = DaemonProcess::spawn(cmd, &dir.join("smtp.log")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(p.is_running(), "SMTP server exited:\n{}", p.log());
            assert!(Instant::now() < deadline, "SMTP server does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpServer {
            dir: dir.join("mails"),
            _process: p,
        }
    }

    fn mails(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    fn wait_mails(&self, n: usize, logd: &Logd) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let m = self.mails();
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} mails; sms-logd:\n{}",
                m.len(),
                logd.process.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn received_at(mail: &str) -> f64 {
    mail.lines()
        .find_map(|l| l.strip_prefix("X-Received-At: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn mail_config(port: u16, ca: &Path, password_file: &Path, min_interval: u64) -> String {
    mail_config_held(port, ca, password_file, 1, min_interval)
}

fn mail_config_held(
    port: u16,
    ca: &Path,
    password_file: &Path,
    hold: u64,
    min_interval: u64,
) -> String {
    format!(
        "[mail]\nserver = \"127.0.0.1\"\nport = {port}\nsecurity = \"starttls\"\n\
         ca_file = \"{}\"\nusername = \"sms\"\npassword_file = \"{}\"\n\
         from = \"sms@lab.example\"\nrecipients = [\"ops@lab.example\", \"noc@lab.example\"]\n\
         hold_secs = {hold}\nmin_interval_secs = {min_interval}\n",
        ca.display(),
        password_file.display()
    )
}

fn mail_status(logd: &Logd) -> serde_json::Value {
    let text = std::fs::read_to_string(logd.dir.join("state/mail-status.json")).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// The mail status once `pred` holds (the file is rewritten each second).
fn wait_mail_status(
    logd: &Logd,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = mail_status(logd);
        if pred(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: status {st}; log:\n{}",
            logd.process.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A directory, an SMTP server with STARTTLS and AUTH (its certificate
/// from a CA made here) and its port, that CA's file, and a file with the
/// password the server wants.
fn tls_server_and_password(
    password: &str,
) -> (tempfile::TempDir, SmtpServer, u16, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate("Customer Mail CA").unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let cert = ca.issue(&["mail.lab.example"], &[LOCAL]).unwrap();
    let port = free_port();
    let smtp = SmtpServer::start(
        &dir.path().join("smtp"),
        port,
        Some((&cert.chain_pem, &cert.key_pem)),
        password,
    );
    let pw = dir.path().join("mail-password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    (dir, smtp, port, ca_file, pw)
}

#[test]
fn a_burst_of_failures_is_one_digest_and_the_next_mail_waits_its_interval() {
    let (dir, smtp, port, ca_file, pw) = tls_server_and_password("s3cret pass");
    let logd = Logd::start(dir.path(), &mail_config(port, &ca_file, &pw, 4), "");

    logd.log(30, "sms-distd", 43, "distribution job 7 started");
    for i in 0..1000 {
        logd.log(
            27,
            "sms-distd",
            43,
            &format!("distribution of DV 4.0.0.9001 to ips-{i:04} failed: connection refused"),
        );
    }
    logd.log(86, "sms-audit", 41, "user=admin command=commit");
    let mails = smtp.wait_mails(1, &logd);
    let m = &mails[0];
    assert!(
        m.contains("Subject: [SMS sms-lab] 1000 events: 1000 distribution"),
        "{m}"
    );
    assert!(m.contains("X-Envelope-From: sms@lab.example"), "{m}");
    assert!(m.contains("X-Mail-Options: BODY=8BITMIME"), "{m}");
    assert!(m.contains("X-Envelope-To: ops@lab.example"), "{m}");
    assert!(m.contains("X-Envelope-To: noc@lab.example"), "{m}");
    assert!(
        m.contains("distribution err sms-distd: distribution of DV 4.0.0.9001 to ips-0099 failed"),
        "{m}"
    );
    assert!(!m.contains("ips-0100"), "{m}");
    assert!(m.contains("... and 900 more"), "{m}");
    assert!(
        !m.contains("job 7 started"),
        "an info line was mailed:\n{m}"
    );
    assert!(
        !m.contains("command=commit"),
        "audit is not a default class:\n{m}"
    );

    // Three more failures: one more mail, not before the interval.
    for i in 0..3 {
        logd.log(
            28,
            "sms-updated",
            42,
            &format!("DV check {i} failed: timeout"),
        );
    }
    let mails = smtp.wait_mails(2, &logd);
    assert!(
        mails[1].contains("Subject: [SMS sms-lab] 3 events: 3 update"),
        "{}",
        mails[1]
    );
    let gap = received_at(&mails[1]) - received_at(&mails[0]);
    assert!(gap >= 3.9, "second mail {gap:.3} s after the first");
    let st = wait_mail_status(&logd, "two mails sent", |s| s["sent"] == 2);
    assert!(st["last_error"].is_null(), "{st}");
    assert_eq!(st["pending"], 0, "{st}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(smtp.mails().len(), 2, "a mail without events");
}

#[test]
fn a_server_that_cannot_be_trusted_or_refuses_the_password_gets_no_mail() {
    let dir = tempfile::tempdir().unwrap();
    let ours = TestCa::generate("Customer Mail CA").unwrap();
    let rogue = TestCa::generate("Rogue CA").unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ours.cert_pem()).unwrap();
    let pw = dir.path().join("mail-password");
    std::fs::write(&pw, "s3cret").unwrap();

    let cases: [(&str, Option<&TestCa>, &str, &str); 3] = [
        ("rogue", Some(&rogue), "s3cret", "TLS handshake"),
        ("plain", None, "s3cret", "does not offer STARTTLS"),
        ("password", Some(&ours), "another", "refused AUTH: 535"),
    ];
    for (name, ca, server_password, reason) in cases {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let port = free_port();
        let cert = ca.map(|c| c.issue(&["mail.lab.example"], &[LOCAL]).unwrap());
        let smtp = SmtpServer::start(
            &d.join("smtp"),
            port,
            cert.as_ref()
                .map(|c| (c.chain_pem.as_str(), c.key_pem.as_str())),
            server_password,
        );
        let logd = Logd::start(&d, &mail_config(port, &ca_file, &pw, 60), "");
        logd.log(27, "sms-snmpd", 44, "device ips-0001 unreachable");
        let st = wait_mail_status(&logd, name, |s| !s["last_error"].is_null());
        let err = st["last_error"].as_str().unwrap();
        assert!(err.contains(reason), "{name}: {err}");
        assert!(smtp.mails().is_empty(), "{name}: a mail was accepted");
        assert_eq!(st["pending"], 1, "{name}: the event was lost: {st}");
        assert_eq!(st["sent"], 0, "{name}: {st}");
        assert!(
            logd.process.log().contains("not sent"),
            "{name}: {}",
            logd.process.log()
        );
    }
}

#[test]
fn a_digest_waiting_for_its_time_is_sent_when_the_daemon_stops() {
    let (dir, smtp, port, ca_file, pw) = tls_server_and_password("pw");
    let mut logd = Logd::start(
        dir.path(),
        &mail_config_held(port, &ca_file, &pw, 3600, 3600),
        "",
    );
    logd.log(
        26,
        "rauc",
        45,
        "installing bundle failed: signature invalid",
    );
    wait_mail_status(&logd, "the event pending", |s| s["pending"] == 1);
    assert!(smtp.mails().is_empty());
    logd.process.stop();
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "log:\n{}", logd.process.log());
    assert!(
        mails[0].contains("Subject: [SMS sms-lab] 1 event: 1 firmware"),
        "{}",
        mails[0]
    );
    assert!(mails[0].contains("firmware crit rauc: installing bundle failed"));

    // Started again, it still counts the mail it sent at the stop.
    let again = Logd::start(
        dir.path(),
        &mail_config_held(port, &ca_file, &pw, 3600, 3600),
        "",
    );
    again.log(26, "rauc", 45, "installing bundle failed again");
    // Only the new process can report this event pending.
    let st = wait_mail_status(&again, "the new event pending", |s| s["pending"] == 1);
    assert_eq!(st["sent"], 1, "{st}");
    assert!(st["last_sent"].is_string(), "{st}");
}

#[test]
fn wrong_mail_settings_turn_mail_off_and_forwarding_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let logd = Logd::start(
        dir.path(),
        "[mail]\nserver = \"127.0.0.1\"\nfrom = \"sms@lab.example\"\nrecipients = [\"ops@lab.example\", \"not an address\"]\n",
        "",
    );
    let st = wait_mail_status(&logd, "the settings error", |s| !s["last_error"].is_null());
    assert!(
        st["last_error"]
            .as_str()
            .unwrap()
            .contains("\"not an address\" is not a mail address"),
        "{st}"
    );
    let mut logd = logd;
    std::thread::sleep(Duration::from_millis(300));
    assert!(logd.process.is_running(), "{}", logd.process.log());
    assert!(logd.process.log().contains("mail notifications are off"));
}
