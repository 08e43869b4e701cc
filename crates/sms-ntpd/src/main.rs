//! `sms-ntpd`: the NTP relay's entry point.

use anyhow::{Context, Result};
use sms_core::daemon::DaemonArgs;
use sms_ntpd::access::{AllowList, RateLimiter};
use sms_ntpd::clock::{Clock, OffsetClock, SystemClock};
use sms_ntpd::config::{ClockMode, NtpConfig};
use sms_ntpd::state::Shared;
use sms_ntpd::upstream::Engine;
use std::sync::{Arc, Mutex};

#[tokio::main]
async fn main() -> Result<()> {
    let args = DaemonArgs::parse_for(
        "sms-ntpd",
        "SMS NTP relay: time from upstream servers, served to the managed devices",
        "/etc/sms/ntpd.toml",
    );
    let config = args.config_or("/etc/sms/ntpd.toml");
    let cfg: NtpConfig = sms_core::daemon::start("sms-ntpd", &config, &args.settings)?;
    let allow = Arc::new(
        AllowList::parse(&cfg.server.allow)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{}: server.allow", config.display()))?,
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
    .with_context(|| format!("{}", config.display()))?;
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
    sms_core::daemon::serve_until_stopped(sms_core::daemon::never()).await?;
    Ok(())
}
