//! Test support for the daemons' integration tests.
//!
//! Tests talk to real peers: a private `dbus-daemon` (never a mock bus) and
//! the daemons as real child processes, whose logs are kept in files so
//! that assertions can read the reasons they gave.

#![forbid(unsafe_code)]

pub mod bus_calls;
pub mod sftp_server;
pub mod world;

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private D-Bus daemon on a socket in a temporary directory.
pub struct DbusDaemon {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl DbusDaemon {
    /// Starts `dbus-daemon` with a permissive policy (tests only; the
    /// appliance's policy is in rootfs-overlay).
    pub fn start() -> Result<DbusDaemon> {
        Self::start_with(
            r#"  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
"#,
        )
    }

    /// Starts `dbus-daemon` the way a system bus is configured (Debian's
    /// system.conf defaults: nobody owns names or calls methods unless a
    /// policy says so; signals and requested replies pass), with the
    /// appliance's policy file `policy` included after them. Account and
    /// group names in the file are replaced by the numeric IDs of `ids`, so
    /// that test processes running under those IDs stand for the
    /// appliance's accounts. The socket is reachable by every account.
    pub fn start_system_like(policy: &Path, ids: &[(&str, u32)]) -> Result<DbusDaemon> {
        let mut text = std::fs::read_to_string(policy)
            .with_context(|| format!("reading {}", policy.display()))?;
        for (name, id) in ids {
            for attr in ["user", "group"] {
                text = text.replace(&format!("{attr}=\"{name}\""), &format!("{attr}=\"{id}\""));
            }
        }
        let body = text
            .split_once("<busconfig>")
            .and_then(|(_, rest)| rest.rsplit_once("</busconfig>"))
            .map(|(inner, _)| inner.to_string())
            .context("the policy file has no <busconfig> element")?;
        Self::start_with(&format!(
            r#"  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
{body}"#
        ))
    }

    fn start_with(policy: &str) -> Result<DbusDaemon> {
        let dir = tempfile::tempdir()?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        }
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
{policy}</busconfig>
"#,
                socket.display()
            ),
        )?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .arg("--print-address=1")
            .stdout(Stdio::piped())
            // It complains on stderr that it cannot raise its fd limit in
            // a sandbox; that is harmless and only noise in test output.
            .stderr(Stdio::null())
            .spawn()
            .context("starting dbus-daemon (is the dbus-daemon package installed?)")?;
        let stdout = child.stdout.take().context("dbus-daemon stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let address = line.trim().to_string();
        if address.is_empty() {
            let _ = child.kill();
            bail!("dbus-daemon printed no address");
        }
        Ok(DbusDaemon {
            child,
            address,
            _dir: dir,
        })
    }

    /// The bus address (`unix:path=…,guid=…`).
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A daemon running as a child process with its stderr in a log file.
pub struct DaemonProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl DaemonProcess {
    /// Spawns `cmd` with stderr (and stdout) appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<DaemonProcess> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        Ok(DaemonProcess {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the process with SIGKILL, as a crash or power loss would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM and waits (SIGKILL after 10 s).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Strips ANSI colour sequences from log text.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A TCP port on 127.0.0.1 nothing listens on (bound and released), for a
/// test server's address.
#[allow(clippy::expect_used)] // test support: without a loopback port no test runs
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a port on 127.0.0.1")
        .port()
}
