//! `sms-had`: the HA daemon's entry point.

use anyhow::{Context, Result};
use sms_core::daemon::DaemonArgs;
use sms_had::{epoch::Epoch, relay, replica, HaConfig, Role};
use std::sync::Arc;

/// Command line: the daemon's shared options, and `--identity`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "sms-had",
    about = "SMS HA daemon: replicates the stores to the peer appliance"
)]
struct Args {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// Print this node's identity fingerprint (made on first use) and exit.
    #[arg(long)]
    identity: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let config = args.daemon.config_or("/etc/sms/had.toml");
    let cfg: HaConfig = sms_core::daemon::start("sms-had", &config, &args.daemon.settings)?;
    let (cert, key) = (cfg.cert_path(), cfg.key_path());
    sms_core::identity::ensure_identity(&cert, &key, "sms-ha")
        .context("making this node's HA identity")?;
    let cert_pem = std::fs::read(&cert).with_context(|| format!("{}", cert.display()))?;
    let key_pem = std::fs::read(&key).with_context(|| format!("{}", key.display()))?;
    let ders = sms_core::tls::certs_from_pem(&cert_pem, "HA certificate")?;
    let Some(own) = ders.first() else {
        anyhow::bail!("{}: no certificate", cert.display());
    };
    let own_fingerprint = sms_core::identity::fingerprint(own.as_ref());
    if args.identity {
        println!("{own_fingerprint}");
        return Ok(());
    }
    let epoch = Arc::new(Epoch::load(&cfg.state_dir).context("reading the epoch")?);
    let pin = match (&cfg.role, &cfg.peer_fingerprint) {
        (Role::Standalone, _) => None,
        (_, Some(fp)) => Some(
            sms_core::identity::parse_fingerprint(fp)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{}: peer_fingerprint", config.display()))?,
        ),
        (_, None) => anyhow::bail!(
            "{}: a {:?} node needs the peer's fingerprint (peer_fingerprint); nothing is exchanged with an unpinned peer",
            config.display(),
            cfg.role
        ),
    };
    let task: tokio::task::JoinHandle<()> = match (cfg.role, pin) {
        (Role::Standalone, _) | (_, None) => {
            tracing::info!(fingerprint = %own_fingerprint, "sms-had ready, standalone: nothing replicated");
            tokio::spawn(std::future::pending())
        }
        (Role::Secondary, Some(pin)) => {
            let tls = sms_core::tls::server_config_pinned_client(&cert_pem, &key_pem, pin)?;
            let listener = tokio::net::TcpListener::bind(cfg.listen)
                .await
                .with_context(|| format!("listening on {}", cfg.listen))?;
            let replicas = Arc::new(replica::Replicas::new(&cfg.state_dir.join("replica")));
            tracing::info!(listen = %cfg.listen, epoch = epoch.current(), fingerprint = %own_fingerprint, "sms-had ready, secondary");
            tokio::spawn(replica::serve(
                listener,
                tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
                replicas,
                epoch,
            ))
        }
        (Role::Primary, Some(pin)) => {
            let Some(peer) = cfg.peer else {
                anyhow::bail!(
                    "{}: a primary needs the peer's address (peer)",
                    config.display()
                );
            };
            let identity = sms_core::tls::ClientIdentity::from_pem(&cert_pem, &key_pem)?;
            let tls = identity.trusting_pin(pin)?;
            let link = relay::PeerLink::new(
                peer,
                tokio_rustls::TlsConnector::from(Arc::new(tls)),
                cfg.sync_timeout(),
                epoch.clone(),
            );
            let _ = std::fs::remove_file(&cfg.local_socket);
            if let Some(dir) = cfg.local_socket.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
            }
            let listener = tokio::net::UnixListener::bind(&cfg.local_socket)
                .with_context(|| format!("listening on {}", cfg.local_socket.display()))?;
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&cfg.local_socket, std::fs::Permissions::from_mode(0o660))
                    .with_context(|| format!("{}", cfg.local_socket.display()))?;
            }
            tracing::info!(peer = %peer, epoch = epoch.current(), fingerprint = %own_fingerprint, "sms-had ready, primary");
            tokio::spawn(relay::serve_local(listener, link))
        }
    };
    let ended = async move {
        match task.await {
            Ok(()) => "the replication task ended".to_string(),
            Err(e) => format!("the replication task failed: {e}"),
        }
    };
    sms_core::daemon::serve_until_stopped(ended).await?;
    Ok(())
}
