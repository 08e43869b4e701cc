//! Plumbing every daemon's `main` and library repeats otherwise.
//!
//! A daemon's `main` parses [`DaemonArgs`], calls [`start`] to get logging
//! and its configuration with the administrator's settings over it, builds
//! its parts, and ends in [`serve_until_stopped`] (readiness, watchdog,
//! SIGTERM). The small helpers (poison-tolerant locks, the clock, the host
//! name, UDP serving sockets) live here so that each daemon uses one
//! definition of each.

use crate::config::ConfigError;
use crate::settings::{Settings, SettingsError, DEFAULT_SETTINGS};
use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The command-line options every daemon shares (flatten it into the
/// daemon's own `clap` arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Configuration file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Run without the D-Bus control plane (for hosts without a bus).
    #[arg(long)]
    pub no_dbus: bool,
    /// The administrator's settings (written by the CLI's commit), put over
    /// the configuration file; a missing file means none.
    #[arg(long, default_value = DEFAULT_SETTINGS)]
    pub settings: PathBuf,
}

impl DaemonArgs {
    /// The shared options of daemon `name` (for `--help`: what it is,
    /// `about`, and its shipped configuration file `config`), from the
    /// process's command line; exits with clap's message on a bad one.
    pub fn parse_for(name: &'static str, about: &'static str, config: &'static str) -> DaemonArgs {
        use clap::{Args, FromArgMatches};
        let cmd = DaemonArgs::augment_args(clap::Command::new(name))
            .about(about)
            .mut_arg("config", |a| a.default_value(config));
        DaemonArgs::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
    }

    /// The configuration file given, or the daemon's shipped one.
    pub fn config_or(&self, shipped: &str) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(shipped))
    }
}

/// A daemon configuration the administrator's settings can be put over.
pub trait WithSettings {
    /// Puts the parts of `settings` this daemon uses over the file's values.
    fn apply_settings(&mut self, settings: &Settings);
}

/// Why a daemon could not start with its files.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The settings file is unreadable or invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// Starts logging as `name`, then loads the configuration `config` and puts
/// the settings file over it.
pub fn start<C: DeserializeOwned + WithSettings>(
    name: &str,
    config: &Path,
    settings: &Path,
) -> Result<C, StartError> {
    crate::logging::init(name);
    let mut cfg: C = crate::config::load(config)?;
    cfg.apply_settings(&Settings::load(settings)?);
    Ok(cfg)
}

/// Tells systemd the daemon is ready, then waits for SIGTERM or Ctrl-C, or
/// for `ended` to finish (a task the daemon cannot live without), and tells
/// systemd it is stopping.
pub async fn serve_until_stopped(ended: impl Future<Output = String>) -> io::Result<()> {
    crate::notify::ready();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
        why = ended => tracing::error!("{why}: stopping"),
    }
    crate::notify::stopping();
    Ok(())
}

/// A future that never finishes: for [`serve_until_stopped`] when no task
/// ends the daemon.
pub async fn never() -> String {
    std::future::pending().await
}

/// Locks `m`, going on with the data when another thread panicked while
/// holding it (every critical section leaves the data consistent).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read-locks `l` (see [`lock`]).
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Write-locks `l` (see [`lock`]).
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Seconds since the Unix epoch, with fractions (0 before 1970).
pub fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whole seconds since the Unix epoch (0 before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The host name as the kernel has it now (settings may change it while a
/// daemon runs), empty when unreadable.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// How a UDP serving socket is set up by [`open_udp`].
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpOptions {
    /// Kernel receive buffer wanted, octets (0: the kernel's default).
    /// `SO_RCVBUFFORCE` is tried first (needs CAP_NET_ADMIN), then
    /// `SO_RCVBUF` (capped by `net.core.rmem_max`).
    pub receive_buffer: usize,
    /// Ask for kernel receive timestamps (`SO_TIMESTAMPNS`).
    pub timestamps: bool,
}

/// Opens a UDP serving socket on `addr` with `SO_REUSEPORT` (several
/// threads each with their own socket), IPv6 sockets IPv6 only.
pub fn open_udp(addr: SocketAddr, options: UdpOptions) -> io::Result<UdpSocket> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    if options.timestamps {
        setsockopt(&fd, sockopt::ReceiveTimestampns, &true)?;
    }
    let size = options.receive_buffer;
    if size > 0 && setsockopt(&fd, sockopt::RcvBufForce, &size).is_err() {
        let _ = setsockopt(&fd, sockopt::RcvBuf, &size);
    }
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(UdpSocket::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_sockets_share_a_port_and_get_their_buffer() {
        let options = UdpOptions {
            receive_buffer: 1 << 20,
            timestamps: true,
        };
        let a = open_udp("127.0.0.1:0".parse().unwrap(), options).unwrap();
        let port = a.local_addr().unwrap();
        let b = open_udp(port, options).unwrap();
        assert_eq!(b.local_addr().unwrap(), port);
        // The kernel reports twice what it granted; without CAP_NET_ADMIN
        // the grant is capped by rmem_max.
        let granted: usize = nix::sys::socket::getsockopt(&a, sockopt::RcvBuf).unwrap() / 2;
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(granted >= cap.min(1 << 20), "granted {granted}, cap {cap}");
    }

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = std::sync::Arc::new(Mutex::new(5));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), 5);
    }
}
