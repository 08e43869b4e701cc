//! `sms-logd`: the remote logging daemon's entry point.

use anyhow::{Context, Result};
use sms_core::daemon::DaemonArgs;
use sms_logd::config::LogdConfig;
use sms_logd::forwarder::Forwarder;
use sms_logd::line::LogLine;
use sms_logd::mail::Notifier;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;

/// The socket systemd hands over (`syslog.socket`), if it does.
fn socket_from_systemd() -> Option<UnixDatagram> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    // SAFETY: systemd passes the listening socket as descriptor 3 and no
    // other part of this process uses it.
    Some(unsafe { UnixDatagram::from_raw_fd(3) })
}

/// Keeps the mail status file (`show logging`) current.
async fn write_mail_status(n: Arc<Notifier>, path: PathBuf) {
    let mut last = None;
    loop {
        let st = n.status();
        if last.as_ref() != Some(&st) {
            save_mail_status(&st, &path);
            last = Some(st);
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn save_mail_status(st: &sms_logd::mail::MailStatus, path: &std::path::Path) {
    match serde_json::to_vec_pretty(st) {
        Ok(json) => {
            if let Err(e) = sms_core::files::write_atomic(path, &json, 0o644) {
                tracing::warn!("writing {}: {e}", path.display());
            }
        }
        Err(e) => tracing::warn!("mail status: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = DaemonArgs::parse_for(
        "sms-logd",
        "SMS remote logging: the appliance's audit trail and events to the syslog servers",
        "/etc/sms/logd.toml",
    );
    let config = args.config_or("/etc/sms/logd.toml");
    let cfg: LogdConfig = sms_core::daemon::start("sms-logd", &config, &args.settings)?;
    let forwarder = Forwarder::open(&cfg).with_context(|| format!("{}", config.display()))?;
    let socket = match socket_from_systemd() {
        Some(s) => s,
        None => {
            let _ = std::fs::remove_file(&cfg.listen);
            UnixDatagram::bind(&cfg.listen)
                .with_context(|| format!("binding {}", cfg.listen.display()))?
        }
    };
    socket.set_nonblocking(true)?;
    let socket = tokio::net::UnixDatagram::from_std(socket)?;
    forwarder.spawn();
    let notifier = match &cfg.mail {
        Some(m) => match Notifier::start(m, &forwarder.hostname()) {
            Err(e) => {
                // A mistake in the mail settings must not stop the audit
                // trail from reaching the syslog servers.
                let why = format!("{}: [mail]: {e}", config.display());
                tracing::error!("{why}; mail notifications are off, log forwarding goes on");
                let st = sms_logd::mail::MailStatus {
                    server: format!("{}:{}", m.server, m.port()),
                    last_error: Some(why),
                    ..Default::default()
                };
                let path = cfg.state_dir.join("mail-status.json");
                if let Err(e) = serde_json::to_vec_pretty(&st)
                    .map_err(std::io::Error::other)
                    .and_then(|j| sms_core::files::write_atomic(&path, &j, 0o644))
                {
                    tracing::warn!("writing {}: {e}", path.display());
                }
                None
            }
            Ok(n) => {
                tracing::info!(
                    "mailing {} to {} via {}",
                    m.classes
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    m.recipients.join(", "),
                    n.status().server
                );
                // What an earlier run mailed still counts (show logging).
                let path = cfg.state_dir.join("mail-status.json");
                if let Some(earlier) = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                {
                    n.carry_over(&earlier);
                }
                let n = Arc::new(n);
                tokio::spawn(write_mail_status(
                    n.clone(),
                    cfg.state_dir.join("mail-status.json"),
                ));
                Some(n)
            }
        },
        None => None,
    };
    tracing::info!(
        "forwarding to {} log servers: {}",
        cfg.servers.len(),
        cfg.servers
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", ")
    );
    sms_core::notify::ready();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut buf = vec![0u8; sms_logd::line::MAX_LINE];
    loop {
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => match LogLine::parse(&buf[..n]) {
                    Ok(line) => {
                        if forwarder.wanted(&line) {
                            forwarder.submit(&line);
                        }
                        if let Some(m) = &notifier {
                            m.submit(&line);
                        }
                    }
                    Err(e) => tracing::debug!("ignored a datagram on the syslog socket: {e}"),
                },
                Err(e) => tracing::warn!("reading the syslog socket: {e}"),
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    sms_core::notify::stopping();
    forwarder.flush();
    if let Some(n) = &notifier {
        // A digest waiting for its interval goes now; a mail server that
        // does not answer gets 20 s, not the client's per-step timeouts.
        if tokio::time::timeout(std::time::Duration::from_secs(20), n.flush())
            .await
            .is_err()
        {
            tracing::warn!("pending mail given up at shutdown: the mail server did not answer");
        }
        // The mail sent at shutdown is counted for the next run.
        save_mail_status(&n.status(), &cfg.state_dir.join("mail-status.json"));
    }
    Ok(())
}
