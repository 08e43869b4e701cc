//! A fleet of simulated IPS devices.
//!
//! Each device has its own loopback address (127.x.y.z), its own HTTPS
//! endpoint with its own certificate (IP SAN, signed by the fleet CA), and
//! accepts package uploads the way a managed device does: it demands the
//! appliance's client certificate (mutual TLS), checks the length and
//! SHA-256 of the body and the vendor signature over the catalog that lists
//! it, "installs" it after a delay and then reports the new version.
//!
//! A configurable fraction of devices misbehaves in each way a real fleet
//! does: unreachable, slow link, connection reset in the middle of an
//! upload (for the first few attempts), install failure, and a certificate
//! the appliance must not trust.

use crate::pki::TestCa;
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sms_core::blob::Digest;
pub use sms_core::device::DeviceStatus;
use sms_core::device::{HEADER_ENVELOPE, HEADER_KEY, HEADER_SHA256};
use sms_core::metadata::{self, TrustRoot};
use sms_core::package::{Channel, Family};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::http::{full, json, text, Body};

/// Largest package a simulated device accepts.
const MAX_UPLOAD: u64 = 4 << 30;

/// Ways a simulated device misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceFault {
    /// Nothing listens on its address.
    Unreachable,
    /// It reads uploads at a limited rate.
    SlowLink,
    /// It resets the connection half way through an upload (for the first
    /// `reset_times` uploads, then accepts).
    ResetMidUpload,
    /// The upload is accepted but the install fails.
    InstallFailure,
    /// It presents a certificate from a CA the appliance does not trust.
    WrongCertificate,
}

impl DeviceFault {
    /// Every fault, in the order fractions are assigned.
    pub const ALL: [DeviceFault; 5] = [
        DeviceFault::Unreachable,
        DeviceFault::SlowLink,
        DeviceFault::ResetMidUpload,
        DeviceFault::InstallFailure,
        DeviceFault::WrongCertificate,
    ];
}

/// Fractions of the fleet with each fault (disjoint sets of devices).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetFaults {
    /// Fraction unreachable.
    pub unreachable: f64,
    /// Fraction behind a slow link.
    pub slow_link: f64,
    /// Bytes per second of a slow link.
    pub slow_link_bps: u64,
    /// Fraction resetting uploads.
    pub reset_mid_upload: f64,
    /// Uploads a resetting device breaks before it accepts one.
    pub reset_times: u32,
    /// Fraction whose installs fail.
    pub install_failure: f64,
    /// Fraction with an untrusted certificate.
    pub wrong_certificate: f64,
}

impl FleetFaults {
    fn fraction(&self, f: DeviceFault) -> f64 {
        match f {
            DeviceFault::Unreachable => self.unreachable,
            DeviceFault::SlowLink => self.slow_link,
            DeviceFault::ResetMidUpload => self.reset_mid_upload,
            DeviceFault::InstallFailure => self.install_failure,
            DeviceFault::WrongCertificate => self.wrong_certificate,
        }
    }
}

/// How to build the fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Directory for ca.pem, appliance.pem, appliance-key.pem and
    /// devices.json.
    pub dir: PathBuf,
    /// Number of devices.
    pub devices: usize,
    /// Address of the first device; the others follow.
    pub first_address: Ipv4Addr,
    /// HTTPS port every device listens on (each on its own address).
    pub port: u16,
    /// Time an install takes.
    pub install_delay: Duration,
    /// Keys whose signatures devices accept.
    pub trust_root: TrustRoot,
    /// Misbehaviour.
    pub faults: FleetFaults,
    /// Seed that picks which devices misbehave.
    pub seed: u64,
    /// DV version every device starts with.
    pub initial_dv: Option<String>,
    /// UDP port of every device's SNMP agent (community
    /// [`crate::snmp::COMMUNITY`]); no agents when `None`. Unreachable
    /// devices have none either.
    pub snmp_port: Option<u16>,
    /// Where devices send their traps (coldStart when they come up,
    /// warmStart after each install); none when `None`.
    pub trap_to: Option<SocketAddr>,
    /// The time server devices synchronise with (the appliance's NTP),
    /// asked every [`NTP_EVERY`]; none when `None`.
    pub ntp_server: Option<SocketAddr>,
    /// Put the devices on a virtual Ethernet segment instead of loopback.
    pub lan: Option<LanPlacement>,
    /// Sign the devices' certificates with the stored fleet CA of this
    /// simulated world (`sms-sim keys`), which development images trust,
    /// instead of a fresh one.
    pub world: Option<PathBuf>,
}

/// How often a device asks its time server.
pub const NTP_EVERY: Duration = Duration::from_secs(16);

/// Devices as hosts of a virtual Ethernet segment (smoltcp), each with its
/// own MAC and IPv4 address, instead of loopback addresses.
#[derive(Clone)]
pub struct LanPlacement {
    /// The segment.
    pub lan: Arc<sms_lan::Lan>,
    /// Prefix length of the devices' subnet.
    pub prefix: u8,
    /// Their default gateway.
    pub gateway: Option<Ipv4Addr>,
}

impl std::fmt::Debug for LanPlacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanPlacement")
            .field("prefix", &self.prefix)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

/// One device as listed in devices.json (what an inventory import needs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimDevice {
    /// Device name.
    pub name: String,
    /// Its address.
    pub address: IpAddr,
    /// Its HTTPS port.
    pub port: u16,
    /// Platform family.
    pub family: Family,
    /// Its misbehaviour, if any.
    pub fault: Option<DeviceFault>,
}

struct DeviceState {
    info: SimDevice,
    status: Mutex<DeviceStatus>,
    resets_left: Mutex<u32>,
    /// Traps to send (their snmpTrapOID).
    traps: Option<tokio::sync::mpsc::UnboundedSender<&'static [u32]>>,
    /// The device's host on the segment, when it lives there.
    host: Option<sms_lan::HostId>,
}

use sms_core::daemon::lock;

struct Shared {
    trust: TrustRoot,
    install_delay: Duration,
    slow_bps: u64,
}

/// A running fleet. Dropping it stops every device.
pub struct Fleet {
    devices: Vec<Arc<DeviceState>>,
    tasks: Vec<JoinHandle<()>>,
    /// Client certificates (SHA-256 of the DER) enrolled with every device.
    trusted: Arc<Mutex<Vec<Digest>>>,
    lan: Option<Arc<sms_lan::Lan>>,
    /// The fleet CA (PEM file): devices' certificates, and the appliance's
    /// client certificate, chain to it.
    pub ca_file: PathBuf,
    /// Client certificate chain for the appliance (PEM file).
    pub appliance_cert: PathBuf,
    /// Its private key (PEM file).
    pub appliance_key: PathBuf,
    /// devices.json.
    pub devices_file: PathBuf,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Address of device `i`: `first` plus `i`, skipping host parts 0 and 255.
pub fn device_address(first: Ipv4Addr, i: usize) -> Result<Ipv4Addr> {
    let a = nth_address(first, i)?;
    if a.octets()[0] != 127 {
        bail!("device {i} would get {a}, outside 127.0.0.0/8");
    }
    Ok(a)
}

/// `first` plus `i`, skipping host parts 0 and 255.
fn nth_address(first: Ipv4Addr, i: usize) -> Result<Ipv4Addr> {
    let mut n = u32::from(first);
    let mut left = i;
    while left > 0 || matches!(n & 0xff, 0 | 255) {
        if !matches!(n & 0xff, 0 | 255) {
            left -= 1;
        }
        n = n.checked_add(1).context("address range exhausted")?;
    }
    Ok(Ipv4Addr::from(n))
}

impl Fleet {
    /// Generates certificates, binds every reachable device and serves.
    pub async fn start(cfg: FleetConfig) -> Result<Fleet> {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
        let ca = match &cfg.world {
            Some(w) => crate::tmc::load_or_create_fleet_ca(w)?,
            None => TestCa::generate(crate::tmc::FLEET_CA_NAME)?,
        };
        let rogue = TestCa::generate("Untrusted CA")?;
        let ca_file = cfg.dir.join("ca.pem");
        std::fs::write(&ca_file, ca.cert_pem())?;
        let appliance = ca.issue_client("sms-appliance")?;
        let appliance_cert = cfg.dir.join("appliance.pem");
        let appliance_key = cfg.dir.join("appliance-key.pem");
        std::fs::write(&appliance_cert, &appliance.chain_pem)?;
        sms_core::files::write_atomic(&appliance_key, appliance.key_pem.as_bytes(), 0o600)?;

        let mut faults: Vec<Option<DeviceFault>> = vec![None; cfg.devices];
        let mut order: Vec<usize> = (0..cfg.devices).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(cfg.seed));
        let mut next = order.into_iter();
        for f in DeviceFault::ALL {
            let n = (cfg.faults.fraction(f) * cfg.devices as f64).round() as usize;
            for i in next.by_ref().take(n) {
                faults[i] = Some(f);
            }
        }

        let mut roots = rustls::RootCertStore::empty();
        for c in sms_core::tls::certs_from_pem(ca.cert_pem().as_bytes(), "fleet CA")? {
            roots.add(c)?;
        }
        let by_ca = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            sms_core::tls::provider(),
        )
        .build()
        .context("client verifier")?;
        let trusted = Arc::new(Mutex::new(Vec::new()));
        let client_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> =
            Arc::new(EnrolledOrCa {
                by_ca,
                enrolled: trusted.clone(),
            });

        let shared = Arc::new(Shared {
            trust: cfg.trust_root.clone(),
            install_delay: cfg.install_delay,
            slow_bps: cfg.faults.slow_link_bps.max(1024),
        });
        let mut devices = Vec::with_capacity(cfg.devices);
        let mut tasks = Vec::new();
        for (i, fault) in faults.into_iter().enumerate() {
            let addr = match &cfg.lan {
                None => device_address(cfg.first_address, i)?,
                Some(_) => nth_address(cfg.first_address, i)?,
            };
            let reachable = fault != Some(DeviceFault::Unreachable);
            // An unreachable device on the segment is a host that is
            // never plugged in: nothing answers ARP for it.
            let host = match (&cfg.lan, reachable) {
                (Some(p), true) => Some(
                    p.lan
                        .add_host(sms_lan::HostConfig {
                            mac: sms_lan::Mac::local(u32::from(addr)),
                            address: addr,
                            prefix: p.prefix,
                            gateway: p.gateway,
                        })
                        .with_context(|| format!("adding device {i} to the segment"))?,
                ),
                _ => None,
            };
            let (trap_tx, trap_rx) = tokio::sync::mpsc::unbounded_channel();
            let family = Family::ALL[i % Family::ALL.len()];
            let info = SimDevice {
                name: format!("ips-{i:05}"),
                address: IpAddr::V4(addr),
                port: cfg.port,
                family,
                fault,
            };
            let state = Arc::new(DeviceState {
                status: Mutex::new(DeviceStatus {
                    name: info.name.clone(),
                    family: family.id().to_string(),
                    dv: cfg.initial_dv.clone(),
                    ..Default::default()
                }),
                resets_left: Mutex::new(cfg.faults.reset_times),
                traps: cfg.trap_to.map(|_| trap_tx),
                host,
                info,
            });
            devices.push(state.clone());
            if !reachable {
                continue;
            }
            if let Some(port) = cfg.snmp_port {
                let mib = Arc::new(crate::snmp::device_mib(&state.info.name, family.id()));
                let what = || format!("binding device {i}'s SNMP agent on {addr}:{port}");
                tasks.push(match (&cfg.lan, host) {
                    (Some(p), Some(h)) => {
                        let sock = p.lan.bind_udp(h, port).with_context(what)?;
                        tokio::spawn(crate::snmp::serve_agent(sock, mib))
                    }
                    _ => {
                        let sock =
                            tokio::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(addr), port))
                                .await
                                .with_context(what)?;
                        tokio::spawn(crate::snmp::serve_agent(sock, mib))
                    }
                });
            }
            if cfg.trap_to.is_some() || cfg.ntp_server.is_some() {
                let what = || format!("binding device {i}'s client socket on {addr}");
                tasks.push(match (&cfg.lan, host) {
                    (Some(p), Some(h)) => {
                        let sock = p.lan.bind_udp(h, 0).with_context(what)?;
                        tokio::spawn(device_client(
                            sock,
                            state.clone(),
                            cfg.trap_to,
                            cfg.ntp_server,
                            trap_rx,
                        ))
                    }
                    _ => {
                        let sock =
                            tokio::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(addr), 0))
                                .await
                                .with_context(what)?;
                        tokio::spawn(device_client(
                            sock,
                            state.clone(),
                            cfg.trap_to,
                            cfg.ntp_server,
                            trap_rx,
                        ))
                    }
                });
            }
            let issuer = if fault == Some(DeviceFault::WrongCertificate) {
                &rogue
            } else {
                &ca
            };
            let cert = issuer.issue(&[], &[IpAddr::V4(addr)])?;
            let chain = sms_core::tls::certs_from_pem(cert.chain_pem.as_bytes(), "device")?;
            let key = rustls_pemfile::private_key(&mut cert.key_pem.as_bytes())
                .context("device key")?
                .context("device key missing")?;
            let tls = rustls::ServerConfig::builder_with_provider(sms_core::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_client_cert_verifier(client_verifier.clone())
                .with_single_cert(chain, key)?;
            let acceptor = TlsAcceptor::from(Arc::new(tls));
            let what = || format!("binding device {i} on {addr}:{}", cfg.port);
            if let (Some(p), Some(h)) = (&cfg.lan, host) {
                let listener = p.lan.listen(h, cfg.port, 2).with_context(what)?;
                tasks.push(tokio::spawn(serve_lan_device(
                    listener,
                    acceptor,
                    state,
                    shared.clone(),
                )));
                continue;
            }
            let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(addr), cfg.port))
                .await
                .with_context(what)?;
            tasks.push(tokio::spawn(serve_device(
                listener,
                acceptor,
                state,
                shared.clone(),
            )));
        }
        let devices_file = cfg.dir.join("devices.json");
        let list: Vec<&SimDevice> = devices.iter().map(|d| &d.info).collect();
        std::fs::write(&devices_file, serde_json::to_vec_pretty(&list)?)?;
        Ok(Fleet {
            devices,
            tasks,
            trusted,
            lan: cfg.lan.as_ref().map(|p| p.lan.clone()),
            ca_file,
            appliance_cert,
            appliance_key,
            devices_file,
        })
    }

    /// The devices as configured.
    pub fn devices(&self) -> Vec<SimDevice> {
        self.devices.iter().map(|d| d.info.clone()).collect()
    }

    /// Enrols a management station's client certificate (PEM) with every
    /// device, as an administrator does when the appliance takes a device
    /// over: from then on the devices accept it besides the fleet CA's.
    pub fn enrol(&self, cert_pem: &[u8]) -> Result<Digest> {
        enrol(&self.trusted, cert_pem)
    }

    /// Plugs device `name`'s cable in or out (devices on a segment only).
    pub fn set_link(&self, name: &str, up: bool) -> Result<()> {
        let d = self
            .devices
            .iter()
            .find(|d| d.info.name == name)
            .with_context(|| format!("no device {name}"))?;
        let (Some(lan), Some(host)) = (&self.lan, d.host) else {
            bail!("{name} has no link to pull (not on a segment, or never reachable)");
        };
        lan.set_host_up(host, up);
        Ok(())
    }

    /// Every device's current status, in device order.
    pub fn statuses(&self) -> Vec<DeviceStatus> {
        self.devices
            .iter()
            .map(|d| lock(&d.status).clone())
            .collect()
    }

    /// Serves the fleet's admin API (`GET /devices`: info and status of
    /// every device) on `listener`, for a fleet run as its own process.
    pub fn serve_admin(&mut self, listener: TcpListener) {
        let devices = self.devices.clone();
        let trusted = self.trusted.clone();
        let lan = self.lan.clone();
        self.tasks.push(tokio::spawn(crate::http::serve(
            listener,
            None,
            move |req: Request<Incoming>, _| {
                let devices = devices.clone();
                let trusted = trusted.clone();
                let lan = lan.clone();
                async move { admin(req, devices, trusted, lan).await }
            },
        )));
    }
}

/// Adds the first certificate of `cert_pem` to the enrolled ones.
fn enrol(trusted: &Mutex<Vec<Digest>>, cert_pem: &[u8]) -> Result<Digest> {
    let certs = sms_core::tls::certs_from_pem(cert_pem, "appliance certificate")?;
    let first = certs.first().context("no certificate in the PEM")?;
    let d = Digest(Sha256::digest(first.as_ref()).into());
    let mut t = lock(trusted);
    if !t.contains(&d) {
        t.push(d);
    }
    Ok(d)
}

/// The fleet's admin API: `GET /devices` (info and status of every
/// device), `POST /enrol` (a management station's certificate, PEM),
/// `POST /devices/NAME/unplug` and `/plug` (devices on a segment).
async fn admin(
    req: Request<Incoming>,
    devices: Vec<Arc<DeviceState>>,
    trusted: Arc<Mutex<Vec<Digest>>>,
    lan: Option<Arc<sms_lan::Lan>>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method().as_str(), path.as_str()) {
        ("GET", "/devices") => {
            let all: Vec<serde_json::Value> = devices
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "device": d.info,
                        "status": *lock(&d.status),
                    })
                })
                .collect();
            json(&all)
        }
        ("POST", "/enrol") => {
            let Ok(body) = req.into_body().collect().await else {
                return text(400, "body unreadable");
            };
            let d = match enrol(&trusted, &body.to_bytes()) {
                Ok(d) => d,
                Err(e) => return text(400, format!("{e:#}")),
            };
            text(200, format!("enrolled {d}\n"))
        }
        ("POST", p) if p.starts_with("/devices/") => {
            let rest = &p["/devices/".len()..];
            let (name, up) = match rest.rsplit_once('/') {
                Some((n, "unplug")) => (n, false),
                Some((n, "plug")) => (n, true),
                _ => return text(404, "unknown path"),
            };
            let Some(d) = devices.iter().find(|d| d.info.name == name) else {
                return text(404, format!("no device {name}"));
            };
            let (Some(lan), Some(host)) = (&lan, d.host) else {
                return text(409, format!("{name} is not on a segment"));
            };
            lan.set_host_up(host, up);
            text(
                200,
                format!("{name} {}\n", if up { "plugged in" } else { "unplugged" }),
            )
        }
        _ => text(404, "unknown path"),
    }
}

/// Devices accept a client certificate that chains to the fleet CA or one
/// enrolled by hash ([`Fleet::enrol`]).
#[derive(Debug)]
struct EnrolledOrCa {
    by_ca: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    enrolled: Arc<Mutex<Vec<Digest>>>,
}

impl rustls::server::danger::ClientCertVerifier for EnrolledOrCa {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.by_ca.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let d = Digest(Sha256::digest(end_entity.as_ref()).into());
        if lock(&self.enrolled).contains(&d) {
            return Ok(rustls::server::danger::ClientCertVerified::assertion());
        }
        self.by_ca
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.by_ca.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.by_ca.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.by_ca.supported_verify_schemes()
    }
}

async fn serve_device(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<DeviceState>,
    shared: Arc<Shared>,
) {
    let resets = state.info.fault == Some(DeviceFault::ResetMidUpload);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        if resets {
            // A broken connection ends with RST, as a device crashing or a
            // middlebox cutting it would. A zero linger never blocks on drop
            // (the deprecation is about non-zero timeouts).
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
        }
        let acceptor = acceptor.clone();
        let state = state.clone();
        let shared = shared.clone();
        tokio::spawn(async move { serve_connection(stream, acceptor, state, shared).await });
    }
}

async fn serve_lan_device(
    mut listener: sms_lan::TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<DeviceState>,
    shared: Arc<Shared>,
) {
    let resets = state.info.fault == Some(DeviceFault::ResetMidUpload);
    loop {
        let Ok(mut stream) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        stream.set_reset_on_drop(resets);
        let acceptor = acceptor.clone();
        let state = state.clone();
        let shared = shared.clone();
        tokio::spawn(async move { serve_connection(stream, acceptor, state, shared).await });
    }
}

/// The device's own client side: its traps and its time synchronisation.
async fn device_client(
    sock: impl crate::datagram::Datagram,
    state: Arc<DeviceState>,
    trap_to: Option<SocketAddr>,
    ntp_server: Option<SocketAddr>,
    mut traps: tokio::sync::mpsc::UnboundedReceiver<&'static [u32]>,
) {
    let started = Instant::now();
    let uptime = || (started.elapsed().as_millis() / 10) as u32;
    let name = state.info.name.clone();
    if let Some(to) = trap_to {
        let _ = crate::snmp::send_trap_on(
            &sock,
            to,
            crate::snmp::COMMUNITY,
            crate::snmp::oid(crate::snmp::COLD_START),
            uptime(),
            Vec::new(),
        )
        .await;
    }
    let mut tick = tokio::time::interval(NTP_EVERY);
    loop {
        tokio::select! {
            Some(trap) = traps.recv(), if trap_to.is_some() => {
                if let Some(to) = trap_to {
                    let _ = crate::snmp::send_trap_on(
                        &sock, to, crate::snmp::COMMUNITY, crate::snmp::oid(trap), uptime(), Vec::new(),
                    ).await;
                }
            }
            _ = tick.tick(), if ntp_server.is_some() => {
                let Some(server) = ntp_server else { continue };
                match crate::ntp::query(&sock, server, Duration::from_secs(2)).await {
                    Ok(sample) => {
                        let mut st = lock(&state.status);
                        let exchanges = st.time.as_ref().map_or(0, |t| t.exchanges) + 1;
                        st.time = Some(sms_core::device::TimeSync {
                            server: server.to_string(),
                            offset_ms: sample.offset * 1000.0,
                            stratum: sample.stratum,
                            at_unix: sms_core::daemon::unix_now_f64() as u64,
                            exchanges,
                        });
                    }
                    Err(e) => tracing::debug!(device = %name, "time: {e:#}"),
                }
            }
        }
    }
}

async fn serve_connection<S>(
    stream: S,
    acceptor: TlsAcceptor,
    state: Arc<DeviceState>,
    shared: Arc<Shared>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let shared = shared.clone();
        async move { handle(req, state, shared).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), svc)
        .await;
}

/// The connection was deliberately broken (reset fault).
#[derive(Debug)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by simulated fault")
    }
}

impl std::error::Error for Broken {}

async fn handle(
    req: Request<Incoming>,
    state: Arc<DeviceState>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Broken> {
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/status") => Ok(json(&*lock(&state.status))),
        ("PUT", "/package") => upload(req, state, shared).await,
        _ => Ok(text(404, "unknown path")),
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn upload(
    req: Request<Incoming>,
    state: Arc<DeviceState>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Broken> {
    let (Some(key), Some(sha), Some(env)) = (
        header(&req, HEADER_KEY).map(str::to_string),
        header(&req, HEADER_SHA256).and_then(|s| s.parse::<Digest>().ok()),
        header(&req, HEADER_ENVELOPE)
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok()),
    ) else {
        return Ok(text(
            400,
            "x-sms-key, x-sms-sha256 and x-sms-envelope (base64) are required",
        ));
    };
    let Some(length) = header(&req, "content-length").and_then(|s| s.parse::<u64>().ok()) else {
        return Ok(text(411, "content-length required"));
    };
    if length > MAX_UPLOAD {
        return Ok(text(413, "package too large"));
    }
    let mut parts = key.split('/');
    let channel: Option<Channel> = parts.next().and_then(|c| c.parse().ok());
    let version = parts.next().map(str::to_string);
    let family = parts.next();
    let (Some(channel), Some(version)) = (channel, version) else {
        return Ok(text(400, format!("bad package key {key:?}")));
    };
    if channel == Channel::Tos && family != Some(state.info.family.id()) {
        return Ok(text(
            409,
            format!(
                "{key} is not for this device's platform family {}",
                state.info.family.id()
            ),
        ));
    }
    if let Some(busy) = lock(&state.status).installing.clone() {
        return Ok(text(409, format!("busy installing {busy}")));
    }

    let slow = state.info.fault == Some(DeviceFault::SlowLink);
    let reset_at = if state.info.fault == Some(DeviceFault::ResetMidUpload) {
        let mut left = lock(&state.resets_left);
        if *left > 0 {
            *left -= 1;
            Some(length / 2)
        } else {
            None
        }
    } else {
        None
    };
    let started = Instant::now();
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Ok(text(400, "upload interrupted"));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        hasher.update(&data);
        received += data.len() as u64;
        if reset_at.is_some_and(|at| received >= at) {
            return Err(Broken);
        }
        if slow {
            let due = Duration::from_secs_f64(received as f64 / shared.slow_bps as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        if received > length {
            return Ok(text(400, "body longer than content-length"));
        }
    }
    let got = Digest(hasher.finalize().into());
    if received != length || got != sha {
        return Ok(text(
            422,
            format!("received {received} bytes with sha256 {got}, announced {length} bytes {sha}"),
        ));
    }
    if let Err(e) = metadata::verify_package(&env, &shared.trust, &key, &got, received) {
        return Ok(text(422, format!("refused: {e}")));
    }
    {
        let mut st = lock(&state.status);
        *st.uploads.entry(key.clone()).or_default() += 1;
        st.installing = Some(key.clone());
        st.last_error = None;
    }
    let fails = state.info.fault == Some(DeviceFault::InstallFailure);
    let delay = shared.install_delay;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut st = lock(&state.status);
        st.installing = None;
        if fails {
            st.last_error = Some(format!(
                "install of {key} failed: simulated flash write error"
            ));
        } else {
            if channel == Channel::Dv {
                st.dv = Some(version);
            } else {
                st.tos = Some(version);
            }
            if let Some(t) = &state.traps {
                let _ = t.send(crate::snmp::WARM_START);
            }
        }
    });
    let mut r = Response::new(full(Bytes::from_static(b"accepted\n")));
    *r.status_mut() = hyper::StatusCode::ACCEPTED;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_and_broadcast_octets() {
        let first = Ipv4Addr::new(127, 20, 0, 1);
        assert_eq!(device_address(first, 0).unwrap(), first);
        assert_eq!(
            device_address(first, 253).unwrap(),
            Ipv4Addr::new(127, 20, 0, 254)
        );
        assert_eq!(
            device_address(first, 254).unwrap(),
            Ipv4Addr::new(127, 20, 1, 1)
        );
        let all: std::collections::BTreeSet<_> = (0..5000)
            .map(|i| device_address(first, i).unwrap())
            .collect();
        assert_eq!(all.len(), 5000);
        assert!(device_address(Ipv4Addr::new(127, 255, 255, 250), 10).is_err());
    }
}
