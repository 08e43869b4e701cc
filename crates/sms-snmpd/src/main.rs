//! `sms-snmpd`: the SNMP daemon's entry point.

use anyhow::{Context, Result};
use sms_core::daemon::DaemonArgs;
use sms_snmpd::config::SnmpConfig;
use sms_snmpd::daemon::Daemon;

#[tokio::main]
async fn main() -> Result<()> {
    let args = DaemonArgs::parse_for(
        "sms-snmpd",
        "SMS SNMP daemon: agent, trap receiver, device poller, trap sender",
        "/etc/sms/snmpd.toml",
    );
    let config = args.config_or("/etc/sms/snmpd.toml");
    let cfg: SnmpConfig = sms_core::daemon::start("sms-snmpd", &config, &args.settings)?;
    let d = Daemon::start(cfg).with_context(|| format!("{}", config.display()))?;
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
    sms_core::daemon::serve_until_stopped(sms_core::daemon::never()).await?;
    d.save_clocks(&[]);
    Ok(())
}
