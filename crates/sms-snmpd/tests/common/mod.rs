// Test helpers: a failed unwrap is a failed test; items are shared, not an API.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(unreachable_pub, missing_docs)]
//! Harness for sms-snmpd's integration tests: the daemon as a real child
//! process on loopback ports, net-snmp's command-line tools as its peers,
//! and (for the D-Bus tests) a private dbus-daemon.
#![allow(dead_code)]

use sms_testkit::{plain, DaemonProcess, DbusDaemon};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The v3 user every test configuration has.
pub const USER: &str = "noc";
/// Its authentication password.
pub const AUTH_PW: &str = "authpass123";
/// Its privacy password.
pub const PRIV_PW: &str = "privpass123";
/// Engine ID the test configurations set.
pub const ENGINE_ID: &str = "80007ed905736d732d74657374";

/// A free UDP port on 127.0.0.1 (bound and released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Directories of the shipped MIB and the base modules it imports.
pub fn mib_dirs() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mibs");
    format!("{}:{}", root.display(), root.join("base").display())
}

/// The result of a net-snmp command.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a net-snmp tool with `args` (no configuration files, no MIBs
/// unless asked for).
pub fn tool(name: &str, args: &[&str]) -> Out {
    let o = Command::new(name)
        .args(args)
        .env("MIBS", "")
        .env("SNMPCONFPATH", "/nonexistent")
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e} (is net-snmp installed? make deps)"));
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).to_string(),
        stderr: String::from_utf8_lossy(&o.stderr).to_string(),
    }
}

/// v3 authPriv arguments for `user` with these protocols and passwords.
pub fn v3_with<'a>(
    user: &'a str,
    auth: &'a str,
    auth_pw: &'a str,
    priv_pw: &'a str,
) -> Vec<&'a str> {
    vec![
        "-v3", "-l", "authPriv", "-u", user, "-a", auth, "-A", auth_pw, "-x", "AES", "-X", priv_pw,
    ]
}

/// v3 authPriv arguments for the test user.
pub fn v3_args() -> Vec<&'static str> {
    v3_with(USER, "SHA-256", AUTH_PW, PRIV_PW)
}

/// The standard test configuration with the agent on `agent_port` and the
/// receiver on `trap_ports`.
pub fn config(dir: &Path, agent_port: u16, trap_ports: [u16; 2], extra: &str) -> String {
    format!(
        r#"state_dir = "{state}"
{extra}
[agent]
listen = ["127.0.0.1:{agent_port}"]
engine_id = "{ENGINE_ID}"
contact = "noc@example.net"
location = "rack 4"
name = "sms-test"
refresh_secs = 1
[[view]]
name = "all"
include = ["1.3.6.1"]
[[view]]
name = "system"
include = ["1.3.6.1.2.1.1"]
[[view]]
name = "no-sms"
include = ["1.3.6.1"]
exclude = ["1.3.6.1.4.1.32473"]
[[community]]
name = "public"
sources = ["127.0.0.0/8"]
view = "all"
[[community]]
name = "private"
sources = ["127.0.0.0/8"]
view = "system"
access = "rw"
[[community]]
name = "remote-only"
sources = ["10.0.0.0/8"]
view = "all"
[[community]]
name = "limited"
sources = ["127.0.0.1"]
view = "no-sms"
[[user]]
name = "{USER}"
auth = "SHA-256"
auth_password = "{AUTH_PW}"
privacy = "AES"
privacy_password = "{PRIV_PW}"
read_view = "all"
write_view = "system"
[[user]]
name = "sha1user"
auth = "SHA"
auth_password = "sha1pass123"
privacy = "AES"
privacy_password = "sha1priv123"
read_view = "all"
[receiver]
listen = ["127.0.0.1:{t0}", "127.0.0.1:{t1}"]
communities = ["public"]
users = ["{USER}"]
"#,
        state = dir.join("state").display(),
        t0 = trap_ports[0],
        t1 = trap_ports[1],
    )
}

/// sms-snmpd as a child process.
pub struct Snmpd {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub agent: String,
    pub traps: [u16; 2],
    pub process: Option<DaemonProcess>,
    pub bus: Option<String>,
}

impl Snmpd {
    /// Writes the configuration and starts the daemon (without D-Bus unless
    /// `bus` is given); waits until the agent answers. `extra` is TOML put
    /// before the first table (top-level keys and whole tables).
    pub fn start(dir: &Path, extra: &str, bus: Option<&DbusDaemon>) -> Snmpd {
        Snmpd::start_edited(dir, extra, bus, |c| c)
    }

    /// Like [`Snmpd::start`], with the configuration text passed through
    /// `edit` first (to add keys inside a table).
    pub fn start_edited(
        dir: &Path,
        extra: &str,
        bus: Option<&DbusDaemon>,
        edit: impl FnOnce(String) -> String,
    ) -> Snmpd {
        let port = free_udp_port();
        let traps = [free_udp_port(), free_udp_port()];
        let config = dir.join("snmpd.toml");
        std::fs::write(&config, edit(self::config(dir, port, traps, extra))).unwrap();
        let mut s = Snmpd {
            dir: dir.to_path_buf(),
            config,
            log: dir.join("snmpd.log"),
            agent: format!("127.0.0.1:{port}"),
            traps,
            process: None,
            bus: bus.map(|b| b.address().to_string()),
        };
        s.spawn();
        s
    }

    /// (Re)starts the process and waits for the agent.
    pub fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sms-snmpd"));
        cmd.arg("--config").arg(&self.config);
        // The administrator's settings (none unless a test writes them).
        cmd.arg("--settings").arg(self.dir.join("settings.toml"));
        match &self.bus {
            Some(a) => {
                cmd.env("DBUS_SYSTEM_BUS_ADDRESS", a);
            }
            None => {
                cmd.arg("--no-dbus");
            }
        }
        cmd.env("RUST_LOG", "info,sms_snmpd=debug");
        self.process = Some(DaemonProcess::spawn(cmd, &self.log).unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = self.get_v2c("public", &["1.3.6.1.2.1.1.5.0"]);
            if o.ok {
                return;
            }
            assert!(
                self.process.as_mut().unwrap().is_running(),
                "sms-snmpd exited:\n{}",
                self.log_text()
            );
            assert!(Instant::now() < deadline, "sms-snmpd did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the process (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    pub fn log_text(&self) -> String {
        plain(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// snmpget v2c with a short timeout, numeric OIDs.
    pub fn get_v2c(&self, community: &str, oids: &[&str]) -> Out {
        let mut a = vec![
            "-v2c",
            "-c",
            community,
            "-t",
            "1",
            "-r",
            "1",
            "-On",
            &self.agent,
        ];
        a.extend_from_slice(oids);
        tool("snmpget", &a)
    }

    /// A net-snmp tool against the agent: `pre` options, then the agent,
    /// then `post`.
    pub fn run(&self, name: &str, pre: &[&str], post: &[&str]) -> Out {
        let mut a: Vec<&str> = vec!["-t", "1", "-r", "1"];
        a.extend_from_slice(pre);
        a.push(&self.agent);
        a.extend_from_slice(post);
        tool(name, &a)
    }

    /// The address of trap port `i`.
    pub fn trap_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.traps[i])
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A private bus, the daemon on it (poller off) and a connection to the bus.
pub async fn on_bus(
    dir: &Path,
    edit: impl FnOnce(String) -> String,
) -> (DbusDaemon, Snmpd, zbus::Connection) {
    let bus = DbusDaemon::start().unwrap();
    let d = Snmpd::start_edited(dir, "[poller]\nenabled = false", Some(&bus), edit);
    let conn = zbus::connection::Builder::address(bus.address())
        .unwrap()
        .build()
        .await
        .unwrap();
    (bus, d, conn)
}

async fn snmp(bus: &zbus::Connection) -> sms_core::bus::Snmp1Proxy<'_> {
    sms_core::bus::Snmp1Proxy::new(bus).await.unwrap()
}

/// `Status()` of org.smsos.Snmp1 as JSON text.
pub async fn snmp_status(bus: &zbus::Connection) -> String {
    serde_json::to_string(&snmp(bus).await.status().await.unwrap().0).unwrap()
}

/// `Events(after, limit)` of org.smsos.Snmp1 as JSON text.
pub async fn snmp_events(bus: &zbus::Connection, after: u64, limit: u32) -> String {
    serde_json::to_string(&snmp(bus).await.events(after, limit).await.unwrap().0).unwrap()
}

/// `LatestEvents(limit)` of org.smsos.Snmp1 as JSON text.
pub async fn snmp_latest(bus: &zbus::Connection, limit: u32) -> String {
    serde_json::to_string(&snmp(bus).await.latest_events(limit).await.unwrap().0).unwrap()
}

/// `PollStatus()` of org.smsos.Snmp1 as JSON text.
pub async fn snmp_polls(bus: &zbus::Connection) -> String {
    serde_json::to_string(&snmp(bus).await.poll_status().await.unwrap().0).unwrap()
}

/// Lines of `text` that hold `needle`.
pub fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}
