//! The appliance's own commands: sessions (logind), the daemons' units
//! (systemd), reboot and power off, journal, uptime and resources.
//!
//! logind and systemd are called through the typed proxies below, like
//! the product's daemons are through `sms_core::bus`.

use super::{Cli, SERVICES};
use crate::grammar::clean;
use std::time::Duration;
use zbus::zvariant::OwnedObjectPath;

/// `org.freedesktop.login1.Manager`, the calls the CLI makes.
#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
trait Login1Manager {
    /// Reboots, every service stopped in order.
    fn reboot(&self, interactive: bool) -> zbus::Result<()>;
    /// Powers off, every service stopped in order.
    fn power_off(&self, interactive: bool) -> zbus::Result<()>;
    /// Sessions: id, uid, user, seat, object.
    #[allow(clippy::type_complexity)]
    fn list_sessions(&self) -> zbus::Result<Vec<(String, u32, String, String, OwnedObjectPath)>>;
}

/// `org.freedesktop.login1.Session`: where a session comes from.
#[zbus::proxy(
    interface = "org.freedesktop.login1.Session",
    default_service = "org.freedesktop.login1"
)]
trait Login1Session {
    /// The session's terminal.
    #[zbus(property, name = "TTY")]
    fn tty(&self) -> zbus::Result<String>;
    /// The remote host of an SSH session.
    #[zbus(property)]
    fn remote_host(&self) -> zbus::Result<String>;
}

/// `org.freedesktop.systemd1.Manager`, the calls the CLI makes.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Systemd1Manager {
    /// The object of a unit, loading it when needed.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    /// Asks systemd to send job signals.
    fn subscribe(&self) -> zbus::Result<()>;
    /// Queues a restart; answers the job.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// A job ended.
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.systemd1.Unit`: a unit's state.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Systemd1Unit {
    /// `active`, `failed`, `activating`...
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
}

impl Cli {
    /// `who`: the login sessions logind knows (user, terminal, from where).
    pub(super) fn who(&self) -> Result<String, String> {
        self.ask("logind", |conn| async move {
            let manager = Login1ManagerProxy::new(&conn).await?;
            let mut out = vec![format!(
                "{:<12} {:<8} {:<10} {}",
                "USER", "SESSION", "TTY", "FROM"
            )];
            for (id, _uid, user, _seat, path) in manager.list_sessions().await? {
                let session = Login1SessionProxy::builder(&conn)
                    .path(path)?
                    .cache_properties(zbus::proxy::CacheProperties::No)
                    .build()
                    .await?;
                let tty = session.tty().await.unwrap_or_default();
                let from = session.remote_host().await.unwrap_or_default();
                out.push(format!(
                    "{:<12} {:<8} {:<10} {}",
                    clean(&user),
                    clean(&id),
                    if tty.is_empty() {
                        "-".into()
                    } else {
                        clean(&tty)
                    },
                    if from.is_empty() {
                        "local".into()
                    } else {
                        clean(&from)
                    }
                ));
            }
            Ok(out.join("\n"))
        })
    }

    /// `show services`: each daemon's unit state.
    pub(super) fn services_text(&self) -> String {
        let mut out = format!("{:<14} {}\n", "SERVICE", "STATE");
        for s in SERVICES {
            let state = self
                .unit_state(s)
                .unwrap_or_else(|e| format!("unknown ({e})"));
            out.push_str(&format!("{:<14} {}\n", s, clean(&state)));
        }
        out.trim_end().to_string()
    }

    fn unit_state(&self, name: &str) -> Result<String, String> {
        let unit = format!("{name}.service");
        self.ask("systemd", |conn| async move {
            let path = Systemd1ManagerProxy::new(&conn)
                .await?
                .load_unit(&unit)
                .await?;
            Systemd1UnitProxy::builder(&conn)
                .path(path)?
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?
                .active_state()
                .await
        })
    }

    /// Restarts a unit through systemd and waits for its job to end
    /// (subscribed to `JobRemoved` before asking, so the end is never missed).
    pub(super) fn restart(&self, name: &str) -> Result<String, String> {
        if !SERVICES.contains(&name) {
            return Err(format!(
                "{name}: not a service of the appliance ({})",
                SERVICES.join(", ")
            ));
        }
        let unit = format!("{name}.service");
        let result = self.ask_within("systemd", Duration::from_secs(120), |conn| async move {
            use futures_util::StreamExt as _;
            let manager = Systemd1ManagerProxy::new(&conn).await?;
            let mut removed = manager.receive_job_removed().await?;
            let _ = manager.subscribe().await;
            let job = manager.restart_unit(&unit, "replace").await?;
            while let Some(signal) = removed.next().await {
                if let Ok(a) = signal.args() {
                    if a.job == job {
                        return Ok(a.result.clone());
                    }
                }
            }
            Err(zbus::Error::Failure(
                "systemd stopped sending job events".into(),
            ))
        });
        match result {
            Ok(r) if r == "done" => Ok(format!("{name} restarted")),
            Ok(r) => Err(format!("restarting {name}: {r} (see show services)")),
            Err(e) => Err(format!("restarting {name}: {e}")),
        }
    }

    /// `system reboot` / `system shutdown` through logind, which stops
    /// every service in order; no interactive authorization.
    pub(super) fn power(&self, reboot: bool) -> Result<String, String> {
        let what = if reboot { "reboot" } else { "power off" };
        self.ask("logind", |conn| async move {
            let manager = Login1ManagerProxy::new(&conn).await?;
            if reboot {
                manager.reboot(false).await
            } else {
                manager.power_off(false).await
            }
        })
        .map_err(|e| format!("{what}: {e}"))?;
        Ok(format!("{what} requested; the session will close"))
    }
}

/// The last 50 lines of a daemon's journal (journalctl with fixed
/// arguments; the unit name was checked against the appliance's list).
pub(super) fn journal(name: &str) -> Result<String, String> {
    if !SERVICES.contains(&name) {
        return Err(format!(
            "{name}: not a service of the appliance ({})",
            SERVICES.join(", ")
        ));
    }
    let o = std::process::Command::new("/usr/bin/journalctl")
        .args(["--no-pager", "-o", "short-iso", "-n", "50", "-u"])
        .arg(format!("{name}.service"))
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("reading the journal: {e}"))?;
    let text = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() && text.trim().is_empty() {
        // Never an empty answer: say what journalctl said (for example that
        // this account may not read the journal).
        let why = String::from_utf8_lossy(&o.stderr);
        let why = why
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("journalctl failed");
        return Err(format!(
            "the journal of {name} cannot be read: {}",
            clean(why.trim())
        ));
    }
    if text.trim().is_empty() {
        return Ok(format!("(no journal entries for {name} since boot)"));
    }
    Ok(text.lines().map(clean).collect::<Vec<_>>().join("\n"))
}

/// The A/B slot the running root file system is on (`A` or `B`): the
/// device mounted at `/` is partition 2 (A) or 3 (B) of the appliance's
/// disk (the initramfs chose it by partition UUID; no label is read).
pub(super) fn booted_slot() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mount-point ...
    let root_dev = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(4) == Some(&"/")).then(|| f.get(2).map(|d| d.to_string()))?
    })?;
    let n = std::fs::read_to_string(format!("/sys/dev/block/{root_dev}/partition")).ok()?;
    match n.trim() {
        "2" => Some("A".into()),
        "3" => Some("B".into()),
        _ => None,
    }
}

/// `show system`: uptime, load, memory and the data partition.
pub(super) fn system_text() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let up: f64 = read("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let load = read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let mem = read("/proc/meminfo");
    let kb = |k: &str| {
        mem.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let disk = nix::sys::statvfs::statvfs("/var/lib/sms")
        .or_else(|_| nix::sys::statvfs::statvfs("/"))
        .map(|s| {
            let total = s.blocks() * s.fragment_size();
            let free = s.blocks_available() * s.fragment_size();
            format!("{} MiB free of {} MiB", free >> 20, total >> 20)
        })
        .unwrap_or_else(|_| "-".into());
    let u = up as u64;
    format!(
        "uptime   {}d {:02}:{:02}:{:02}\nload     {load}\nmemory   {} MiB available of {} MiB\ndata     {disk}",
        u / 86400,
        u / 3600 % 24,
        u / 60 % 60,
        u % 60,
        kb("MemAvailable:") >> 10,
        kb("MemTotal:") >> 10
    )
}
