#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! sms-logd against rsyslog, the receiver customers run: lines handed to
//! the syslog socket the way journald does arrive as RFC 5424 messages
//! over TLS (the server's certificate checked), TCP and UDP; a TLS server
//! that was down gets what it missed, in order; a full queue drops the
//! oldest and counts them; a server presenting a certificate of another
//! CA gets nothing and the reason is reported.

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

/// One rsyslogd in the foreground with its own configuration, writing
/// what it receives to `out.log`.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    process: Option<DaemonProcess>,
}

enum Listen {
    /// TLS on `port` with this certificate chain and key.
    Tls(String, String),
    /// Plain TCP and UDP on `port`.
    Plain,
}

impl Rsyslog {
    fn start(dir: &Path, port: u16, listen: &Listen) -> Rsyslog {
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        let inputs = match listen {
            Listen::Tls(chain, key) => {
                std::fs::write(dir.join("chain.pem"), chain).unwrap();
                std::fs::write(dir.join("key.pem"), key).unwrap();
                format!(
                    "global(DefaultNetstreamDriver=\"ossl\"\n\
                       DefaultNetstreamDriverCAFile=\"{d}/chain.pem\"\n\
                       DefaultNetstreamDriverCertFile=\"{d}/chain.pem\"\n\
                       DefaultNetstreamDriverKeyFile=\"{d}/key.pem\")\n\
                     module(load=\"imtcp\" StreamDriver.Name=\"ossl\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n\
                     input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n"
                )
            }
            Listen::Plain => format!(
                "module(load=\"imtcp\")\nmodule(load=\"imudp\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n\
                 input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"udp\")\n"
            ),
        };
        let conf = format!(
            "global(workDirectory=\"{d}\")\n{inputs}\
             template(name=\"seen\" type=\"string\" string=\"%inputname% %hostname% %app-name% %procid% %msg%\\n\")\n\
             ruleset(name=\"udp\") {{ action(type=\"omfile\" file=\"{d}/out.log\" template=\"seen\") }}\n\
             action(type=\"omfile\" file=\"{d}/out.log\" template=\"seen\")\n"
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            port,
            process: None,
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let mut cmd = Command::new("rsyslogd");
        cmd.arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"));
        let mut p = DaemonProcess::spawn(cmd, &self.dir.join("rsyslogd.log")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(p.is_running(), "rsyslogd exited:\n{}", p.log());
            assert!(Instant::now() < deadline, "rsyslogd does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(p);
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(self.dir.join("out.log")).unwrap_or_default()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: rsyslog received:\n{got}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tls_server(host: &str, port: u16, ca: &Path) -> String {
    format!(
        "[[servers]]\nhost = \"{host}\"\nport = {port}\nprotocol = \"tls\"\nca_file = \"{}\"\n",
        ca.display()
    )
}

#[test]
fn tls_delivers_the_appliance_lines_and_what_waited_while_the_server_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate("Customer Log CA").unwrap();
    let ca_file = dir.path().join("customer-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let cert = ca.issue(&["logs.example"], &[LOCAL]).unwrap();
    let port = free_port();
    let mut rsyslog = Rsyslog::start(
        &dir.path().join("rsyslog"),
        port,
        &Listen::Tls(cert.chain_pem, cert.key_pem),
    );
    let logd = Logd::start(dir.path(), &tls_server("127.0.0.1", port, &ca_file), "");

    logd.log(
        86,
        "sms-cli",
        41,
        "user=admin command=commit: set update dv auto-activate off",
    );
    logd.log(30, "cron", 7, "not the appliance's own");
    logd.log(31, "sms-updated", 42, "debug chatter is not forwarded");
    logd.log(30, "sms-updated", 42, "DV 4.0.0.9001 activated");
    let got = rsyslog.wait_for("audit line and DV event", |t| t.contains("DV 4.0.0.9001"));
    assert!(
        got.contains(
            "sms-lab sms-cli 41 user=admin command=commit: set update dv auto-activate off"
        ),
        "{got}"
    );
    assert!(
        got.contains("sms-lab sms-updated 42 DV 4.0.0.9001 activated"),
        "{got}"
    );
    assert!(
        !got.contains("not the appliance's own") && !got.contains("chatter"),
        "{got}"
    );

    // The server goes away; what is logged meanwhile waits on disk.
    rsyslog.stop();
    for i in 0..50 {
        logd.log(
            30,
            "sms-distd",
            43,
            &format!("distribution job {i} finished"),
        );
    }
    let st = logd.wait_status("50 queued while the server is down", |s| {
        s[0]["queued"] == 50 && s[0]["connected"] == false && !s[0]["last_error"].is_null()
    });
    assert!(
        st[0]["last_error"].as_str().unwrap().contains("connect"),
        "{st}"
    );
    rsyslog.restart();
    let got = rsyslog.wait_for("what waited", |t| {
        t.contains("distribution job 49 finished")
    });
    let order: Vec<usize> = got
        .lines()
        .filter_map(|l| l.split("distribution job ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(order, (0..50).collect::<Vec<_>>(), "{got}");
    let st = logd.wait_status("queue empty again", |s| s[0]["queued"] == 0);
    assert_eq!(st[0]["dropped"], 0, "{st}");
    assert!(
        logd.process.log().contains("unreachable"),
        "{}",
        logd.process.log()
    );
}

#[test]
fn a_server_with_a_certificate_of_another_ca_gets_nothing_and_it_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate("Customer Log CA").unwrap();
    let ca_file = dir.path().join("customer-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let rogue = TestCa::generate("Someone Else").unwrap();
    let cert = rogue.issue(&["logs.example"], &[LOCAL]).unwrap();
    let port = free_port();
    let rsyslog = Rsyslog::start(
        &dir.path().join("rsyslog"),
        port,
        &Listen::Tls(cert.chain_pem, cert.key_pem),
    );
    let logd = Logd::start(dir.path(), &tls_server("127.0.0.1", port, &ca_file), "");
    logd.log(86, "sms-cli", 41, "user=admin command=show audit");
    let st = logd.wait_status("the handshake refused", |s| {
        s[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate"))
    });
    assert_eq!(st[0]["queued"], 1, "{st}");
    assert_eq!(st[0]["sent"], 0, "{st}");
    assert!(
        logd.process.log().contains("TLS handshake failed"),
        "{}",
        logd.process.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !rsyslog.received().contains("show audit"),
        "{}",
        rsyslog.received()
    );
}

#[test]
fn tcp_and_udp_deliver_and_a_full_queue_drops_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), port, &Listen::Plain);
    let servers = format!(
        "[[servers]]\nhost = \"127.0.0.1\"\nport = {port}\nprotocol = \"tcp\"\n\
         [[servers]]\nhost = \"127.0.0.1\"\nport = {port}\nprotocol = \"udp\"\n"
    );
    let logd = Logd::start(dir.path(), &servers, "queue_max_bytes = 2000");
    logd.log(
        13,
        "sms-snmpd",
        44,
        "trap received from 192.0.2.7: linkDown",
    );
    let got = rsyslog.wait_for("over TCP and UDP", |t| t.matches("linkDown").count() == 2);
    assert!(
        got.contains("imtcp sms-lab sms-snmpd 44 trap received"),
        "{got}"
    );
    assert!(
        got.contains("imudp sms-lab sms-snmpd 44 trap received"),
        "{got}"
    );

    // With the server down, 100 lines of about 90 octets do not fit in
    // 2000: the oldest are dropped and counted, the newest arrive.
    rsyslog.stop();
    for i in 0..100 {
        logd.log(30, "sms-distd", 43, &format!("device {i:03} unreachable"));
    }
    let st = logd.wait_status("drops counted", |s| {
        s[0]["queued"].as_u64().is_some_and(|q| q > 0)
            && s[0]["dropped"].as_u64().is_some_and(|d| d > 0)
    });
    let (queued, dropped) = (
        st[0]["queued"].as_u64().unwrap(),
        st[0]["dropped"].as_u64().unwrap(),
    );
    assert_eq!(queued + dropped, 100, "{st}");
    rsyslog.restart();
    let got = rsyslog.wait_for("the newest after the outage", |t| {
        t.contains("imtcp sms-lab sms-distd 43 device 099 unreachable")
    });
    let tcp_devices = got
        .lines()
        .filter(|l| l.starts_with("imtcp") && l.contains("device "))
        .count() as u64;
    assert_eq!(tcp_devices, queued, "{got}");
    assert!(
        !got.contains("imtcp sms-lab sms-distd 43 device 000 "),
        "{got}"
    );
    // Said once, not once per dropped message (the daemon's own warnings
    // are forwarded too).
    let log = logd.process.log();
    assert_eq!(log.matches("queue full").count(), 1, "{log}");
}
