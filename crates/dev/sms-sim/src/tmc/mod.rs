//! The simulated update centre (TMC), its CDN, DNS zone and proxy.
//!
//! Protocol, as the appliance sees it:
//! - `GET  https://<tmc>/api/v1/catalog/{dv|tos}`: the signed catalog (DSSE
//!   envelope, see `sms_core::metadata`);
//! - `POST https://<tmc>/api/v1/download` with `{"channel","version","family"}`:
//!   `{"url": "http://<cdn host>:<port>/packages/<file>"}`;
//! - `GET  http://<cdn>/packages/<file>`: the file, with Range support;
//! - `POST https://<tmc>/api/v1/confirm` with the package's identity: 204.
//!
//! The TMC listens on a main port (443 semantics) and a legacy port (4043
//! semantics) with the same API. An admin API on plain HTTP (loopback)
//! publishes versions and sets faults; tests may call the same methods
//! directly.

mod serve;
use serve::{admin_handler, cdn_handler, tmc_handler};

use crate::content;
use crate::dns::DnsServer;
use crate::http::{self, full, json, text, Body};
use crate::pki::TestCa;
use crate::proxy::{Proxy, ProxyControl};
use crate::zone::Zone;
use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use serde::{Deserialize, Serialize};
use sms_core::blob::Digest;
use sms_core::metadata::{Catalog, CatalogSigner, TrustRoot};
use sms_core::package::{Channel, Family, PackageEntry, Version};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// How to start the simulated update centre.
#[derive(Debug, Clone)]
pub struct TmcSimConfig {
    /// Address every server binds to (a loopback address).
    pub bind: IpAddr,
    /// TMC HTTPS port with 443 semantics (0: any free port).
    pub tmc_port: u16,
    /// TMC HTTPS port with legacy 4043 semantics (0: any free port).
    pub legacy_port: u16,
    /// CDN HTTP port (0: any free port).
    pub cdn_port: u16,
    /// DNS UDP port (0: any free port).
    pub dns_port: u16,
    /// Admin API port, if the admin API is wanted.
    pub admin_port: Option<u16>,
    /// Proxy port, if a proxy is wanted.
    pub proxy_port: Option<u16>,
    /// Credentials the proxy demands, if any.
    pub proxy_credentials: Option<(String, String)>,
    /// Directory for `ca.pem`, `trust-root.json` and `sim.json`.
    pub dir: PathBuf,
    /// Name of the TMC.
    pub tmc_host: String,
    /// Name of the CDN host given in download answers.
    pub cdn_host: String,
    /// Lifetime of signed catalogs.
    pub metadata_lifetime: Duration,
    /// Address the DNS server gives for the TMC and CDN names, when it is
    /// not `bind` (10.0.2.2 for an appliance in QEMU user networking).
    pub advertise: Option<IpAddr>,
}

impl TmcSimConfig {
    /// Defaults: 127.0.0.1, free ports, no proxy, no admin API.
    pub fn new(dir: PathBuf) -> TmcSimConfig {
        TmcSimConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tmc_port: 0,
            legacy_port: 0,
            cdn_port: 0,
            dns_port: 0,
            admin_port: None,
            proxy_port: None,
            proxy_credentials: None,
            dir,
            tmc_host: "tmc.sim.test".into(),
            cdn_host: "cdn.sim.test".into(),
            metadata_lifetime: Duration::from_secs(7 * 86400),
            advertise: None,
        }
    }
}

/// Where the simulated world can be reached; written to `sim.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimInfo {
    /// TMC host name.
    pub tmc_host: String,
    /// TMC port (443 semantics).
    pub tmc_port: u16,
    /// TMC legacy port (4043 semantics).
    pub tmc_legacy_port: u16,
    /// CDN host name.
    pub cdn_host: String,
    /// Port of the CDN's plain-HTTP downloads.
    pub cdn_port: u16,
    /// DNS server address.
    pub dns: SocketAddr,
    /// Proxy address, if one runs.
    pub proxy: Option<SocketAddr>,
    /// Admin API address, if it runs.
    pub admin: Option<SocketAddr>,
    /// PEM file of the CA that signed the TMC's certificate.
    pub ca_file: PathBuf,
    /// JSON trust root of the catalog signing keys.
    pub trust_root_file: PathBuf,
}

/// Misbehaviour on request. Every field off is normal service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The CDN flips one byte in the middle of every package.
    pub tamper: bool,
    /// With `tamper`: only files whose name contains this text (for
    /// example one TOS platform family's image) are tampered with.
    pub tamper_only: Option<String>,
    /// The CDN serves only the first half of every package, as if complete.
    pub truncate: bool,
    /// The CDN closes the connection after this many body bytes...
    pub cut_after: Option<u64>,
    /// ...for this many responses (then serves normally).
    pub cuts: u32,
    /// The CDN sends headers and then nothing.
    pub stall: bool,
    /// The CDN limits each response to this many bytes per second.
    pub rate_bps: Option<u64>,
    /// The TMC answers every request with this HTTP status.
    pub tmc_status: Option<u16>,
    /// Catalogs are served expired.
    pub expired: bool,
    /// The previous catalog is served instead of the current one.
    pub rollback: bool,
    /// Catalogs are signed with a key outside the trust root.
    pub wrong_key: bool,
    /// Download answers name this CDN host instead of the real one.
    pub cdn_host: Option<String>,
}

/// A confirmation received from an appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// Which feed it comes from (`dv` or `tos`).
    pub channel: Channel,
    /// The package version it concerns.
    pub version: Version,
    /// Family (TOS).
    #[serde(default)]
    pub family: Option<Family>,
    /// Digest the appliance verified.
    pub sha256: Digest,
    /// Appliance identity, if given.
    #[serde(default)]
    pub appliance: Option<String>,
}

/// Counters of the simulators.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Body bytes the CDN sent, per file.
    pub cdn_bytes: BTreeMap<String, u64>,
    /// Download requests the CDN answered.
    pub cdn_requests: u64,
    /// TMC requests (both ports).
    pub tmc_requests: u64,
    /// TMC requests on the legacy port.
    pub legacy_requests: u64,
    /// Confirmations received.
    pub confirmations: Vec<Confirmation>,
}

struct Published {
    entry: PackageEntry,
    data: Bytes,
}

#[derive(Default)]
struct ChannelState {
    packages: Vec<Published>,
    catalog_version: u64,
    current: Option<Catalog>,
    current_signed: Option<Bytes>,
    previous_signed: Option<Bytes>,
}

#[derive(Default)]
struct State {
    dv: ChannelState,
    tos: ChannelState,
    next_dv: u32,
    next_tos: u32,
}

impl State {
    fn channel(&mut self, c: Channel) -> &mut ChannelState {
        match c {
            Channel::Dv => &mut self.dv,
            Channel::Tos => &mut self.tos,
        }
    }
}

struct Shared {
    info: Mutex<Option<SimInfo>>,
    cfg: TmcSimConfig,
    signer: CatalogSigner,
    rogue: CatalogSigner,
    state: Mutex<State>,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
    seed: AtomicU64,
}

/// The running simulated update centre.
pub struct TmcSim {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dns: DnsServer,
    proxy: Option<Proxy>,
    /// Where everything listens.
    pub info: SimInfo,
    /// The simulated names (TMC, CDN).
    pub zone: Zone,
}

impl Drop for TmcSim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

use sms_core::daemon::unix_now as now_unix;

use sms_core::daemon::lock;

impl TmcSim {
    /// Starts every server and writes `ca.pem`, `trust-root.json` and
    /// `sim.json` into the configured directory.
    pub async fn start(cfg: TmcSimConfig) -> Result<TmcSim> {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
        let (ca, signer) = load_or_create_keys(&cfg.dir)?;
        let cert = ca.issue(&[&cfg.tmc_host, "localhost"], &[cfg.bind])?;
        let tls = Arc::new(
            sms_core::tls::server_config_from_pem(
                cert.chain_pem.as_bytes(),
                cert.key_pem.as_bytes(),
            )
            .context("TMC TLS configuration")?,
        );
        let ca_file = cfg.dir.join("ca.pem");
        let trust_root_file = cfg.dir.join("trust-root.json");

        let zone = Zone::new();
        let advertised = cfg.advertise.unwrap_or(cfg.bind);
        zone.insert(&cfg.tmc_host, advertised);
        zone.insert(&cfg.cdn_host, advertised);

        let bind = |port| SocketAddr::new(cfg.bind, port);
        let tmc_l = TcpListener::bind(bind(cfg.tmc_port))
            .await
            .context("binding TMC port")?;
        let legacy_l = TcpListener::bind(bind(cfg.legacy_port))
            .await
            .context("binding TMC legacy port")?;
        let cdn_l = TcpListener::bind(bind(cfg.cdn_port))
            .await
            .context("binding CDN port")?;
        let dns = DnsServer::start(bind(cfg.dns_port), zone.clone()).await?;
        let proxy = match cfg.proxy_port {
            Some(p) => {
                Some(Proxy::start(bind(p), zone.clone(), cfg.proxy_credentials.clone()).await?)
            }
            None => None,
        };
        let admin_l = match cfg.admin_port {
            Some(p) => Some(
                TcpListener::bind(bind(p))
                    .await
                    .context("binding admin port")?,
            ),
            None => None,
        };

        let info = SimInfo {
            tmc_host: cfg.tmc_host.clone(),
            tmc_port: tmc_l.local_addr()?.port(),
            tmc_legacy_port: legacy_l.local_addr()?.port(),
            cdn_host: cfg.cdn_host.clone(),
            cdn_port: cdn_l.local_addr()?.port(),
            dns: dns.addr,
            proxy: proxy.as_ref().map(|p| p.addr),
            admin: match &admin_l {
                Some(l) => Some(l.local_addr()?),
                None => None,
            },
            ca_file,
            trust_root_file,
        };
        let info_file = cfg.dir.join("sim.json");
        std::fs::write(&info_file, serde_json::to_vec_pretty(&info)?)
            .with_context(|| format!("writing {}", info_file.display()))?;

        let shared = Arc::new(Shared {
            info: Mutex::new(Some(info.clone())),
            cfg,
            signer,
            rogue: CatalogSigner::generate(1),
            state: Mutex::new(State::default()),
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(Stats::default()),
            seed: AtomicU64::new(rand::random()),
        });
        let mut tasks = Vec::new();
        for (listener, legacy) in [(tmc_l, false), (legacy_l, true)] {
            let s = shared.clone();
            tasks.push(tokio::spawn(http::serve(
                listener,
                Some(tls.clone()),
                move |req, _| {
                    let s = s.clone();
                    async move { tmc_handler(s, req, legacy).await }
                },
            )));
        }
        let s = shared.clone();
        tasks.push(tokio::spawn(http::serve(cdn_l, None, move |req, _| {
            let s = s.clone();
            async move { cdn_handler(s, req) }
        })));
        if let Some(l) = admin_l {
            let s = shared.clone();
            tasks.push(tokio::spawn(http::serve(l, None, move |req, _| {
                let s = s.clone();
                async move { admin_handler(s, req).await }
            })));
        }
        Ok(TmcSim {
            shared,
            tasks,
            _dns: dns,
            proxy,
            info,
            zone,
        })
    }

    /// Publishes a new DV of about `size` bytes and re-signs the DV catalog.
    pub fn publish_dv(&self, size: usize) -> PackageEntry {
        publish_dv(&self.shared, size)
    }

    /// Publishes a new TOS version, one image of `size` bytes per family.
    pub fn publish_tos(&self, size: usize) -> Vec<PackageEntry> {
        publish_tos(&self.shared, size)
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// The proxy's switches and counters, when a proxy runs.
    pub fn proxy_control(&self) -> Option<Arc<ProxyControl>> {
        self.proxy.as_ref().map(|p| p.control.clone())
    }

    /// The bytes of a published file (to compare with what the appliance stored).
    pub fn file(&self, name: &str) -> Option<Bytes> {
        find_file(&self.shared, name)
    }
}

/// Loads the CA and the catalog signing key from `dir`, or creates and
/// stores them: a simulated world keeps its identity across restarts, so an
/// image built to trust it goes on trusting it. Also (re)writes `ca.pem` and
/// `trust-root.json`, what the appliance needs to trust this world.
pub fn load_or_create_keys(dir: &std::path::Path) -> Result<(TestCa, CatalogSigner)> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
    let (ca_cert, ca_key, signing) = (
        keys.join("ca.pem"),
        keys.join("ca-key.pem"),
        keys.join("catalog-signing.key"),
    );
    const CA_NAME: &str = "SMS simulated update centre CA";
    let ca = match (ca_cert.exists(), std::fs::read_to_string(&ca_key)) {
        (true, Ok(k)) => TestCa::load(CA_NAME, &k)?,
        _ => {
            let ca = TestCa::generate(CA_NAME)?;
            std::fs::write(&ca_cert, ca.cert_pem())?;
            std::fs::write(&ca_key, ca.key_pem())?;
            ca
        }
    };
    let signer = match std::fs::read_to_string(&signing) {
        Ok(hex_key) => {
            let mut raw = [0u8; 32];
            hex::decode_to_slice(hex_key.trim(), &mut raw).context("catalog signing key")?;
            CatalogSigner::from_secret_keys(&[raw])
        }
        Err(_) => {
            let s = CatalogSigner::generate(1);
            std::fs::write(&signing, hex::encode(s.secret_keys()[0]))?;
            s
        }
    };
    // Clients trust the stored CA certificate (same key and name).
    std::fs::copy(&ca_cert, dir.join("ca.pem"))?;
    let trust = TrustRoot::new(&signer.verifying_keys(), 1)?;
    std::fs::write(dir.join("trust-root.json"), trust.to_json())?;
    Ok((ca, signer))
}

/// Loads the fleet's CA from `dir` (`keys/fleet-ca*.pem`), or creates and
/// stores it, and (re)writes `fleet-ca.pem`: the CA that signs the
/// simulated devices' certificates, which a development image trusts for
/// its managed devices as a customer's appliance trusts their vendor's.
pub fn load_or_create_fleet_ca(dir: &std::path::Path) -> Result<TestCa> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
    let (cert, key) = (keys.join("fleet-ca.pem"), keys.join("fleet-ca-key.pem"));
    let ca = match (cert.exists(), std::fs::read_to_string(&key)) {
        (true, Ok(k)) => TestCa::load(FLEET_CA_NAME, &k)?,
        _ => {
            let ca = TestCa::generate(FLEET_CA_NAME)?;
            std::fs::write(&cert, ca.cert_pem())?;
            std::fs::write(&key, ca.key_pem())?;
            ca
        }
    };
    std::fs::copy(&cert, dir.join("fleet-ca.pem"))?;
    Ok(ca)
}

/// Name of the fleet CA (fresh or stored).
pub const FLEET_CA_NAME: &str = "SMS fleet CA";

fn sign_channel(shared: &Shared, ch: &mut ChannelState, channel: Channel) {
    ch.catalog_version += 1;
    let now = now_unix();
    let catalog = Catalog {
        channel,
        version: ch.catalog_version,
        issued: now,
        expires: now + shared.cfg.metadata_lifetime.as_secs() as i64,
        packages: ch.packages.iter().map(|p| p.entry.clone()).collect(),
    };
    let env = shared.signer.sign_catalog(&catalog);
    ch.previous_signed = ch.current_signed.take();
    ch.current_signed = Some(Bytes::from(serde_json::to_vec(&env).unwrap_or_default()));
    ch.current = Some(catalog);
}

fn publish_dv(shared: &Shared, size: usize) -> PackageEntry {
    let seed = shared.seed.fetch_add(1, Ordering::Relaxed);
    let prev = {
        let st = lock(&shared.state);
        st.dv.packages.last().map(|p| p.data.clone())
    };
    let data = match prev {
        Some(prev) if prev.len() + prev.len() / 10 >= size && size + size / 10 >= prev.len() => {
            content::next_dv(&prev, seed)
        }
        _ => content::first_dv(seed, size),
    };
    let mut st = lock(&shared.state);
    st.next_dv += 1;
    let version: Version = format!("4.0.0.{}", 9000 + st.next_dv)
        .parse()
        .unwrap_or_else(|_| unreachable!());
    let entry = PackageEntry {
        channel: Channel::Dv,
        version: version.clone(),
        family: None,
        file: format!("dv-{version}.pkg"),
        length: data.len() as u64,
        sha256: Digest::of(&data),
    };
    st.dv.packages.push(Published {
        entry: entry.clone(),
        data: Bytes::from(data),
    });
    // The catalog lists the newest 20 DVs, as the update centre does.
    let excess = st.dv.packages.len().saturating_sub(20);
    st.dv.packages.drain(..excess);
    sign_channel(shared, &mut st.dv, Channel::Dv);
    tracing::info!(version = %entry.version, bytes = entry.length, "published DV");
    entry
}

fn publish_tos(shared: &Shared, size: usize) -> Vec<PackageEntry> {
    let version: Version = {
        let mut st = lock(&shared.state);
        st.next_tos += 1;
        format!("5.5.{}", st.next_tos)
            .parse()
            .unwrap_or_else(|_| unreachable!())
    };
    let mut made = Vec::new();
    for family in Family::ALL {
        let seed = shared.seed.fetch_add(1, Ordering::Relaxed);
        let data = content::tos_image(seed, size);
        let entry = PackageEntry {
            channel: Channel::Tos,
            version: version.clone(),
            family: Some(family),
            file: format!("tos-{version}-{}.img", family.id()),
            length: data.len() as u64,
            sha256: Digest::of(&data),
        };
        made.push(Published {
            entry,
            data: Bytes::from(data),
        });
    }
    let entries: Vec<_> = made.iter().map(|p| p.entry.clone()).collect();
    let mut st = lock(&shared.state);
    st.tos.packages.extend(made);
    sign_channel(shared, &mut st.tos, Channel::Tos);
    tracing::info!(%version, families = entries.len(), bytes_each = size, "published TOS");
    entries
}

fn find_file(shared: &Shared, name: &str) -> Option<Bytes> {
    let st = lock(&shared.state);
    st.dv
        .packages
        .iter()
        .chain(st.tos.packages.iter())
        .find(|p| p.entry.file == name)
        .map(|p| p.data.clone())
}

fn catalog_bytes(shared: &Shared, channel: Channel) -> Option<Bytes> {
    let faults = lock(&shared.faults).clone();
    let mut st = lock(&shared.state);
    let ch = st.channel(channel);
    if faults.rollback {
        return ch.previous_signed.clone();
    }
    if faults.expired || faults.wrong_key {
        let mut catalog = ch.current.clone()?;
        catalog.version += 1;
        if faults.expired {
            catalog.expires = now_unix() - 3600;
        }
        let signer = if faults.wrong_key {
            &shared.rogue
        } else {
            &shared.signer
        };
        let env = signer.sign_catalog(&catalog);
        return Some(Bytes::from(serde_json::to_vec(&env).unwrap_or_default()));
    }
    ch.current_signed.clone()
}
