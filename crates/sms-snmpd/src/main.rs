//! `sms-snmpd`: the SNMP daemon's entry point.

use anyhow::{Context, Result};
use clap::Parser;
use sms_snmpd::config::SnmpConfig;
use sms_snmpd::daemon::Daemon;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sms-snmpd",
    about = "SMS SNMP daemon: agent, trap receiver, device poller, trap sender"
)]
struct Args {
    /// Configuration file.
    #[arg(long, short, default_value = "/etc/sms/snmpd.toml")]
    config: PathBuf,
    /// Run without the D-Bus control plane (no daemon values, no signals).
    #[arg(long)]
    no_dbus: bool,
    /// The administrator's settings (written by the CLI's commit), put over
    /// the configuration file; a missing file means none.
    #[arg(long, default_value = sms_core::settings::DEFAULT_SETTINGS)]
    settings: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    sms_core::logging::init("sms-snmpd");
    let mut cfg: SnmpConfig = sms_core::config::load(&args.config)?;
    let settings = sms_core::settings::Settings::load(&args.settings)?;
    cfg.apply_settings(&settings);
    let d = Daemon::start(cfg).with_context(|| format!("{}", args.config.display()))?;
    let conn = if args.no_dbus {
        None
    } else {
        Some(
            sms_snmpd::dbus::serve(d.clone())
                .await
                .context("serving org.smsos.Snmp1 on the system bus")?,
        )
    };
    tokio::spawn(d.clone().refresh_loop(conn.clone()));
    tokio::spawn(d.clone().poll_loop());
    tokio::spawn(d.clone().save_clocks_loop());
    if let Some(c) = &conn {
        tokio::spawn(d.clone().follow_signals(c.clone()));
    }
    tracing::info!(
        agent = ?d.agent_addrs,
        receiver = ?d.receiver_addrs,
        engine_id = %hex::encode(&d.identity.engine_id),
        boots = d.identity.engine_boots,
        trap_destinations = d.sender.destinations(),
        "sms-snmpd ready"
    );
    sms_core::notify::ready();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
    }
    sms_core::notify::stopping();
    d.save_clocks(&[]);
    Ok(())
}
