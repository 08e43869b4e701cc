//! `sms-distd`: the distribution daemon.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use sms_core::daemon::DaemonArgs;
use sms_distd::config::DistdConfig;
use sms_distd::identity::ensure_identity;
use sms_distd::pull::PullServer;
use sms_distd::Distributor;

#[derive(Parser)]
#[command(name = "sms-distd", about = "SMS distribution daemon", version)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// Create this appliance's pull server certificate and device client
    /// identity (self-signed) where the configuration expects them, when
    /// missing, then exit.
    #[arg(long)]
    init_tls: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.daemon.config_or("/etc/sms/distd.toml");
    let cfg: DistdConfig = sms_core::daemon::start("sms-distd", &config, &args.daemon.settings)?;
    if args.init_tls {
        let host = match sms_core::daemon::host_name() {
            h if h.is_empty() => "sms".to_string(),
            h => h,
        };
        let host = host.as_str();
        ensure_identity(&cfg.pull.tls_cert_file, &cfg.pull.tls_key_file, host)?;
        ensure_identity(
            &cfg.tls.cert_file,
            &cfg.tls.key_file,
            &format!("{host} distribution"),
        )?;
        return Ok(());
    }
    for key in [&cfg.tls.key_file, &cfg.pull.tls_key_file] {
        if key.exists() {
            if let Err(e) = sms_distd::identity::narrow_key_mode(key) {
                tracing::warn!("checking the mode of a private key: {e}");
            }
        }
    }
    let dist = Distributor::open(cfg.clone()).context("starting the distribution daemon")?;
    let pull = PullServer::new(&dist).context("opening the pull cache")?;
    let mut servers = Vec::new();
    for addr in &cfg.pull.http_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("pull.http_listen {addr}"))?;
        servers.push(tokio::spawn(pull.clone().serve_http(l)));
    }
    if !cfg.pull.https_listen.is_empty() {
        let chain = std::fs::read(&cfg.pull.tls_cert_file)
            .with_context(|| format!("pull.tls_cert_file {}", cfg.pull.tls_cert_file.display()))?;
        let key = std::fs::read(&cfg.pull.tls_key_file)
            .with_context(|| format!("pull.tls_key_file {}", cfg.pull.tls_key_file.display()))?;
        let tls = std::sync::Arc::new(
            sms_core::tls::server_config_from_pem(&chain, &key).context("pull server TLS")?,
        );
        for addr in &cfg.pull.https_listen {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("pull.https_listen {addr}"))?;
            servers.push(tokio::spawn(pull.clone().serve_https(l, tls.clone())));
        }
    }
    if args.daemon.no_dbus {
        tracing::warn!("without the system bus: no packages to offer or push, no control");
    } else {
        let conn = sms_distd::dbus::serve_with(
            dist.clone(),
            Some(pull.clone()),
            zbus::connection::Builder::system()?,
        )
        .await
        .context("serving org.smsos.Distributor1 on the system bus")?;
        dist.set_bus(conn.clone());
        tokio::spawn(dist.clone().follow_activations());
        tokio::spawn(pull.clone().refresh_forever(conn));
    }
    let resumer = dist.clone();
    tokio::spawn(async move { resumer.resume().await });
    tracing::info!(
        devices = dist.inventory().list().map(|l| l.len()).unwrap_or(0),
        http = ?cfg.pull.http_listen,
        https = ?cfg.pull.https_listen,
        "sms-distd ready"
    );
    sms_core::daemon::serve_until_stopped(sms_core::daemon::never()).await?;
    Ok(())
}
