//! What the sms-logd tests share: a free port and the daemon itself,
//! started on a socket of its own in a temporary directory.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use sms_testkit::DaemonProcess;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One sms-logd.
pub struct Logd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub process: DaemonProcess,
}

impl Logd {
    pub fn start(dir: &Path, servers: &str, extra: &str) -> Logd {
        let socket = dir.join("syslog.sock");
        let config = format!(
            "listen = \"{}\"\nstate_dir = \"{}\"\nhostname = \"sms-lab\"\nretry_max_ms = 300\n{extra}\n{servers}",
            socket.display(),
            dir.join("state").display()
        );
        std::fs::write(dir.join("logd.toml"), config).unwrap();
        // A socket left by an earlier run is not this one's.
        let _ = std::fs::remove_file(&socket);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sms-logd"));
        cmd.arg("--config")
            .arg(dir.join("logd.toml"))
            .arg("--settings")
            .arg(dir.join("no-settings.toml"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let mut process = DaemonProcess::spawn(cmd, &dir.join("logd.log")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(process.is_running(), "sms-logd exited:\n{}", process.log());
            assert!(Instant::now() < deadline, "no syslog socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Logd {
            dir: dir.to_path_buf(),
            socket,
            process,
        }
    }

    /// Hands a line to the socket the way journald forwards it.
    pub fn log(&self, pri: u8, ident: &str, pid: u32, msg: &str) {
        let c = UnixDatagram::unbound().unwrap();
        c.send_to(
            format!("<{pri}>Dec  4 08:40:00 {ident}[{pid}]: {msg}").as_bytes(),
            &self.socket,
        )
        .unwrap();
    }

    pub fn status(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("state/status.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    pub fn wait_status(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: status {s}\nlog:\n{}",
                self.process.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
