//! `sms-ntpd`: the NTP relay's entry point.

use anyhow::{Context, Result};
use clap::Parser;
use sms_ntpd::access::{AllowList, RateLimiter};
use sms_ntpd::clock::{Clock, OffsetClock, SystemClock};
use sms_ntpd::config::{ClockMode, NtpConfig};
use sms_ntpd::state::Shared;
use sms_ntpd::upstream::Engine;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Parser)]
#[command(
    name = "sms-ntpd",
    about = "SMS NTP relay: time from upstream servers, served to the managed devices"
)]
struct Args {
    /// Configuration file.
    #[arg(long, short, default_value = "/etc/sms/ntpd.toml")]
    config: PathBuf,
    /// Run without the D-Bus control plane.
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
    sms_core::logging::init("sms-ntpd");
    let mut cfg: NtpConfig = sms_core::config::load(&args.config)?;
    let settings = sms_core::settings::Settings::load(&args.settings)?;
    cfg.apply_settings(&settings);
    let allow = Arc::new(
        AllowList::parse(&cfg.server.allow)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{}: server.allow", args.config.display()))?,
    );
    let clock: Arc<dyn Clock> = match cfg.clock.mode {
        ClockMode::System => Arc::new(SystemClock::new(
            cfg.clock.step_threshold_ms as f64 / 1000.0,
        )),
        ClockMode::Offset => Arc::new(OffsetClock::default()),
    };
    let shared = Arc::new(Shared::new());
    let engine = Engine::new(
        cfg.upstream.clone(),
        cfg.clock.clone(),
        clock.clone(),
        shared.clone(),
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("{}", args.config.display()))?;
    let limiter = Arc::new(Mutex::new(RateLimiter::new(cfg.server.rate_limit.clone())));
    let listening = sms_ntpd::server::start(
        &cfg.server.listen,
        cfg.server.threads,
        shared,
        allow,
        limiter,
    )
    .context("starting the NTP server")?;
    engine.spawn();
    let _bus = if args.no_dbus {
        None
    } else {
        Some(
            sms_ntpd::dbus::serve(engine.clone(), listening.clone())
                .await
                .context("serving org.smsos.Ntp1 on the system bus")?,
        )
    };
    tracing::info!(
        listening = ?listening,
        upstream = ?cfg.upstream.servers,
        clock = clock.name(),
        "sms-ntpd ready"
    );
    sms_core::notify::ready();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
    }
    sms_core::notify::stopping();
    Ok(())
}
