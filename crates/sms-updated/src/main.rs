//! `sms-updated`: the update daemon's entry point.

#![forbid(unsafe_code)]

use anyhow::Context;
use sms_core::daemon::DaemonArgs;
use sms_updated::config::UpdaterConfig;
use sms_updated::updater::Updater;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = DaemonArgs::parse_for(
        "sms-updated",
        "SMS update daemon: DV and TOS packages from the update centre",
        "/etc/sms/updated.toml",
    );
    let config = args.config_or("/etc/sms/updated.toml");
    let cfg: UpdaterConfig = sms_core::daemon::start("sms-updated", &config, &args.settings)?;
    let up = Updater::open(cfg).context("starting the update daemon")?;
    let _bus = if args.no_dbus {
        None
    } else {
        Some(
            sms_updated::dbus::serve(up.clone())
                .await
                .context("serving org.smsos.Updater1 on the system bus")?,
        )
    };
    let status = up.status();
    tracing::info!(
        active_dv = status.active_dv.as_deref().unwrap_or("none"),
        active_tos = status.active_tos.as_deref().unwrap_or("none"),
        "sms-updated ready"
    );
    let scheduler = tokio::spawn(up.clone().run_scheduler());
    sms_core::daemon::serve_until_stopped(async move {
        format!("the scheduler ended unexpectedly: {:?}", scheduler.await)
    })
    .await?;
    Ok(())
}
