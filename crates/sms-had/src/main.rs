//! `sms-had`: the HA daemon's entry point, and `sms-had witness`.

use anyhow::{Context, Result};
use sms_core::daemon::DaemonArgs;
use sms_had::roles::{self, Roles, WitnessLink};
use sms_had::{epoch::Epoch, relay, replica, vip, witness, HaConfig, Role};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinSet;

/// Command line: the daemon's shared options and `--identity`, or the
/// witness mode.
#[derive(Debug, clap::Parser)]
#[command(
    name = "sms-had",
    about = "SMS HA daemon: replicates the stores to the peer appliance"
)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    daemon: DaemonArgs,
    /// Print this node's identity fingerprint (made on first use) and exit.
    #[arg(long)]
    identity: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// Run as the witness of a pair (on a third host): grants the lease a
    /// node needs for automatic promotion.
    Witness(WitnessArgs),
    /// Send one blob to the peer: the forced command of the blob account's
    /// SSH key; the request (`get <sha256> <offset>`) is in
    /// SSH_ORIGINAL_COMMAND.
    BlobServe(BlobServeArgs),
}

#[derive(Debug, clap::Args)]
struct BlobServeArgs {
    /// A blob store to serve from (repeat; default: those of had.toml).
    #[arg(long = "dir")]
    dirs: Vec<PathBuf>,
}

/// `sms-had blob-serve`: one blob to standard output, errors to standard
/// error and exit status 1 (the peer's ssh reports them).
fn run_blob_serve(args: BlobServeArgs, config: &Path) -> Result<()> {
    let dirs = if args.dirs.is_empty() {
        let cfg: HaConfig = sms_core::config::load(config)?;
        cfg.blob_dirs
    } else {
        args.dirs
    };
    let line = std::env::var("SSH_ORIGINAL_COMMAND")
        .context("SSH_ORIGINAL_COMMAND is not set: blob-serve runs as the forced command of the blob account's key")?;
    // Unbuffered: a file copied to the standard output pipe goes by
    // splice/sendfile, without passing through this process.
    let mut out = std::io::stdout().lock();
    sms_had::blobs::serve(&dirs, &line, &mut out).map_err(anyhow::Error::msg)?;
    std::io::Write::flush(&mut out).context("sending the blob")?;
    Ok(())
}

#[derive(Debug, clap::Args)]
struct WitnessArgs {
    /// Address to listen on.
    #[arg(long, default_value_t = witness::default_listen())]
    listen: SocketAddr,
    /// Identity and lease state.
    #[arg(long, default_value = "/var/lib/sms/witness")]
    state_dir: PathBuf,
    /// Fingerprint of a node of the pair (`show ha identity`), twice.
    #[arg(long = "node")]
    nodes: Vec<String>,
    /// Print the witness's fingerprint (made on first use) and exit.
    #[arg(long)]
    identity: bool,
}

/// A certificate and key (made on first use) and the certificate's
/// fingerprint.
struct Identity {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    fingerprint: String,
}

fn identity(cert: &Path, key: &Path, name: &str) -> Result<Identity> {
    sms_core::identity::ensure_identity(cert, key, name)
        .with_context(|| format!("making the identity in {}", cert.display()))?;
    let cert_pem = std::fs::read(cert).with_context(|| format!("{}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("{}", key.display()))?;
    let ders = sms_core::tls::certs_from_pem(&cert_pem, "HA certificate")?;
    let Some(own) = ders.first() else {
        anyhow::bail!("{}: no certificate", cert.display());
    };
    let fingerprint = sms_core::identity::fingerprint(own.as_ref());
    Ok(Identity {
        cert_pem,
        key_pem,
        fingerprint,
    })
}

fn pin(fp: &str, what: &str) -> Result<sms_core::blob::Digest> {
    sms_core::identity::parse_fingerprint(fp)
        .map_err(anyhow::Error::msg)
        .with_context(|| what.to_string())
}

async fn run_witness(args: WitnessArgs) -> Result<()> {
    let id = identity(
        &args.state_dir.join("identity/cert.pem"),
        &args.state_dir.join("identity/key.pem"),
        "sms-ha-witness",
    )?;
    if args.identity {
        println!("{}", id.fingerprint);
        return Ok(());
    }
    sms_core::logging::init("sms-had-witness");
    if args.nodes.len() != 2 {
        anyhow::bail!(
            "a witness serves exactly the two nodes of a pair: give --node <fingerprint> twice ({} given)",
            args.nodes.len()
        );
    }
    let pins = args
        .nodes
        .iter()
        .map(|n| pin(n, "--node"))
        .collect::<Result<Vec<_>>>()?;
    let tls = sms_core::tls::server_config_pinned_clients(&id.cert_pem, &id.key_pem, &pins)?;
    let state = Arc::new(witness::Witness::load(&args.state_dir).context("reading the lease")?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, fingerprint = %id.fingerprint, "sms-had witness ready");
    let task = tokio::spawn(witness::serve(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        state,
    ));
    sms_core::daemon::serve_until_stopped(async move {
        format!("the witness task ended: {:?}", task.await)
    })
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let config = args.daemon.config_or("/etc/sms/had.toml");
    match args.mode {
        Some(Mode::Witness(w)) => return run_witness(w).await,
        Some(Mode::BlobServe(b)) => return run_blob_serve(b, &config),
        None => {}
    }
    let cfg: HaConfig = sms_core::daemon::start("sms-had", &config, &args.daemon.settings)?;
    let id = identity(&cfg.cert_path(), &cfg.key_path(), "sms-ha")?;
    if args.identity {
        println!("{}", id.fingerprint);
        return Ok(());
    }
    let epoch = Arc::new(Epoch::load(&cfg.state_dir).context("reading the epoch")?);
    let peer_pin = match (&cfg.role, &cfg.peer_fingerprint) {
        (Role::Standalone, _) => None,
        (_, Some(fp)) => Some(pin(fp, &format!("{}: peer_fingerprint", config.display()))?),
        (_, None) => anyhow::bail!(
            "{}: a {:?} node needs the peer's fingerprint (peer_fingerprint); nothing is exchanged with an unpinned peer",
            config.display(),
            cfg.role
        ),
    };
    let vip = match &cfg.virtual_address {
        None => None,
        Some(v) => Some(
            v.parse::<vip::VirtualAddress>()
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{}: virtual_address", config.display()))?,
        ),
    };
    let mut tasks: JoinSet<&'static str> = JoinSet::new();
    let roles = match peer_pin {
        None => {
            tracing::info!(fingerprint = %id.fingerprint, "sms-had ready, standalone: nothing replicated");
            None
        }
        Some(peer_pin) => {
            Some(start_paired(&cfg, &config, &id, epoch.clone(), peer_pin, &mut tasks).await?)
        }
    };
    // The virtual address follows the role; a standalone node has no
    // pair to hand it to and holds it while it runs.
    let holder = match vip {
        None => None,
        Some(v) => Some(Arc::new(
            vip::VipHolder::new(v).context("opening netlink for the virtual address")?,
        )),
    };
    if let Some(h) = &holder {
        let gate = roles
            .clone()
            .unwrap_or_else(|| Arc::new(Roles::standalone(epoch.clone())));
        let h = h.clone();
        tasks.spawn(async move {
            vip::follow_role(h, gate).await;
            "the virtual address"
        });
    }
    let _bus = if args.daemon.no_dbus {
        None
    } else {
        let base = sms_core::bus::HaStatus {
            configured_role: format!("{:?}", cfg.role).to_lowercase(),
            epoch: epoch.current(),
            fingerprint: id.fingerprint.clone(),
            peer: cfg.peer.map(|p| p.to_string()),
            peer_fingerprint: cfg.peer_fingerprint.clone(),
            witness: cfg.witness.map(|w| w.to_string()),
            virtual_address: vip.map(|v| v.to_string()),
            ..Default::default()
        };
        Some(
            sms_had::dbus::serve(sms_had::dbus::HaIface { roles, base })
                .await
                .context("serving org.smsos.Ha1 on the system bus")?,
        )
    };
    let ended = async move {
        match tasks.join_next().await {
            Some(Ok(what)) => format!("{what} ended"),
            Some(Err(e)) => format!("a task failed: {e}"),
            None => std::future::pending().await,
        }
    };
    let served = sms_core::daemon::serve_until_stopped(ended).await;
    if let Some(h) = holder {
        match h.release().await {
            Ok(true) => {
                tracing::warn!(vip = %h.address(), "VIRTUAL ADDRESS released: sms-had stops")
            }
            Ok(false) => {}
            Err(e) => tracing::error!(vip = %h.address(), "releasing the virtual address: {e}"),
        }
    }
    served?;
    Ok(())
}

async fn start_paired(
    cfg: &HaConfig,
    config: &Path,
    id: &Identity,
    epoch: Arc<Epoch>,
    peer_pin: sms_core::blob::Digest,
    tasks: &mut JoinSet<&'static str>,
) -> Result<Arc<Roles>> {
    let client = sms_core::tls::ClientIdentity::from_pem(&id.cert_pem, &id.key_pem)?;
    let to_peer = tokio_rustls::TlsConnector::from(Arc::new(client.trusting_pin(peer_pin)?));
    let from_peer = tokio_rustls::TlsAcceptor::from(Arc::new(
        sms_core::tls::server_config_pinned_client(&id.cert_pem, &id.key_pem, peer_pin)?,
    ));
    let witness = match (cfg.witness, &cfg.witness_fingerprint) {
        (None, _) => None,
        (Some(addr), Some(fp)) => {
            let p = pin(fp, &format!("{}: witness_fingerprint", config.display()))?;
            Some(WitnessLink {
                addr,
                connector: tokio_rustls::TlsConnector::from(Arc::new(client.trusting_pin(p)?)),
            })
        }
        (Some(_), None) => anyhow::bail!(
            "{}: a witness needs its fingerprint (witness_fingerprint)",
            config.display()
        ),
    };
    let primary = cfg.role == Role::Primary;
    let roles = Arc::new(Roles::new(
        epoch.clone(),
        witness.is_some(),
        cfg.lease(),
        primary,
    ));

    let control = tokio::net::TcpListener::bind(cfg.control_listen)
        .await
        .with_context(|| format!("listening on {} (control)", cfg.control_listen))?;
    let r = roles.clone();
    let a = from_peer.clone();
    tasks.spawn(async move {
        roles::take_heartbeats(control, a, r).await;
        "the control listener"
    });
    if let Some(peer) = cfg.peer_control() {
        let (r, c) = (roles.clone(), to_peer.clone());
        tasks.spawn(async move {
            roles::send_heartbeats(r, peer, c).await;
            "the heartbeat sender"
        });
    }
    if let Some(w) = witness.clone() {
        let r = roles.clone();
        tasks.spawn(async move {
            roles::lease_loop(r, w, primary).await;
            "the lease loop"
        });
    }

    let link = if primary {
        let Some(peer) = cfg.peer else {
            anyhow::bail!(
                "{}: a primary needs the peer's address (peer)",
                config.display()
            );
        };
        Some(relay::PeerLink::new(
            peer,
            to_peer,
            cfg.sync_timeout(),
            epoch.clone(),
            roles.clone(),
        ))
    } else {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("listening on {}", cfg.listen))?;
        let replicas = Arc::new(replica::Replicas::new(
            &cfg.state_dir.join("replica"),
            &sms_had::blobs::replica_blobs(&cfg.state_dir),
            cfg.blob_source.clone(),
        ));
        let e = epoch.clone();
        tasks.spawn(async move {
            replica::serve(listener, from_peer, replicas, e).await;
            "the replication listener"
        });
        None
    };

    let _ = std::fs::remove_file(&cfg.local_socket);
    if let Some(dir) = cfg.local_socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    let local = tokio::net::UnixListener::bind(&cfg.local_socket)
        .with_context(|| format!("listening on {}", cfg.local_socket.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.local_socket, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("{}", cfg.local_socket.display()))?;
    }
    let r = roles.clone();
    tasks.spawn(async move {
        relay::serve_local(local, link, r).await;
        "the local socket"
    });
    tracing::info!(
        role = ?cfg.role,
        peer = ?cfg.peer,
        epoch = epoch.current(),
        witness = ?cfg.witness,
        fingerprint = %id.fingerprint,
        "sms-had ready, {}",
        if primary { "primary" } else { "secondary" }
    );
    Ok(roles)
}
