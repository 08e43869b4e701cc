//! `sms-updated`: the update daemon's entry point.

use anyhow::Context;
use clap::Parser;
use sms_updated::config::UpdaterConfig;
use sms_updated::updater::Updater;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sms-updated",
    about = "SMS update daemon: DV and TOS packages from the update centre"
)]
struct Args {
    /// Configuration file.
    #[arg(long, short, default_value = "/etc/sms/updated.toml")]
    config: PathBuf,
    /// Run without the D-Bus control plane (for hosts without a bus).
    #[arg(long)]
    no_dbus: bool,
    /// The administrator's settings (written by the CLI's commit), put over
    /// the configuration file; a missing file means none.
    #[arg(long, default_value = sms_core::settings::DEFAULT_SETTINGS)]
    settings: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sms_core::logging::init("sms-updated");
    let mut cfg: UpdaterConfig = sms_core::config::load(&args.config)?;
    let settings = sms_core::settings::Settings::load(&args.settings)?;
    cfg.apply_settings(&settings);
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
    sms_core::notify::ready();
    let scheduler = tokio::spawn(up.clone().run_scheduler());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
        r = scheduler => tracing::error!("scheduler ended unexpectedly: {r:?}"),
    }
    sms_core::notify::stopping();
    Ok(())
}
