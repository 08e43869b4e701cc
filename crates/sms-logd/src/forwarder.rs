//! The forwarder: takes log lines, keeps the appliance's own, and hands
//! each as an RFC 5424 message to every configured server's sender.
//!
//! A TCP/TLS server's sender works through the server's disk queue: it
//! connects (retrying with a growing pause while the server is down),
//! checks before each batch that the server did not close the connection,
//! writes the batch and only then removes it from the queue. A UDP
//! server's sender takes messages from a bounded channel (UDP has no
//! delivery to wait for). What each server got, what waits and what was
//! dropped is in [`ServerStatus`], written to `status.json`.

use crate::config::{LogdConfig, Protocol, ServerConfig};
use crate::line::LogLine;
use crate::queue::{DiskQueue, QueueError};
use crate::transport::Connection;
use sms_core::daemon::lock;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// Messages a sender writes at once.
const BATCH: usize = 256;
/// Messages a UDP server's channel holds before new ones are dropped.
const UDP_BACKLOG: usize = 4096;
/// The largest UDP message sent, octets (RFC 5426 asks receivers for 2048
/// at least; longer messages are cut).
pub const MAX_UDP: usize = 8192;
/// The first pause after a failed connection attempt.
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// Why the forwarder could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwarderError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The queue database could not be opened.
    #[error("opening the log queues in {path}: {source}")]
    Db {
        /// Its directory.
        path: String,
        /// What sled said.
        source: sled::Error,
    },
    /// A queue could not be opened.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A TLS server's CA could not be read.
    #[error("log server {server}: {source}")]
    Tls {
        /// The server.
        server: String,
        /// What is wrong with its CA.
        source: sms_core::tls::TlsError,
    },
}

/// What one server got and what waits for it (the status file's rows,
/// which `show logging` reads).
pub use sms_core::settings::LogServerStatus as ServerStatus;

enum Sender {
    Queued {
        queue: Mutex<DiskQueue>,
        wake: Notify,
        tls: Option<Arc<rustls::ClientConfig>>,
    },
    Udp {
        tx: mpsc::Sender<Vec<u8>>,
        rx: Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    },
}

struct Server {
    cfg: ServerConfig,
    label: String,
    sender: Sender,
    status: Mutex<ServerStatus>,
    changed: Arc<Notify>,
    /// The queue is dropping messages (said once, until it empties: this
    /// daemon's own warnings are forwarded too).
    dropping: AtomicBool,
}

/// The forwarder of one appliance.
pub struct Forwarder {
    hostname: String,
    identifiers: HashSet<String>,
    max_severity: u8,
    retry_max: Duration,
    servers: Vec<Arc<Server>>,
    db: sled::Db,
    status_path: PathBuf,
    changed: Arc<Notify>,
}

impl Forwarder {
    /// Opens the queues of the configured servers and reads the TLS
    /// servers' CAs; nothing is sent before [`Forwarder::spawn`].
    pub fn open(cfg: &LogdConfig) -> Result<Arc<Forwarder>, ForwarderError> {
        cfg.validate()?;
        let qdir = cfg.state_dir.join("queue");
        let db = sled::Config::new()
            .path(&qdir)
            .flush_every_ms(Some(200))
            .cache_capacity(8 << 20)
            .open()
            .map_err(|source| ForwarderError::Db {
                path: qdir.display().to_string(),
                source,
            })?;
        let changed = Arc::new(Notify::new());
        let mut servers = Vec::new();
        for s in &cfg.servers {
            let label = s.label();
            let mut status = ServerStatus {
                server: label.clone(),
                ..ServerStatus::default()
            };
            let sender = match s.protocol {
                Protocol::Udp => {
                    let (tx, rx) = mpsc::channel(UDP_BACKLOG);
                    Sender::Udp {
                        tx,
                        rx: Mutex::new(Some(rx)),
                    }
                }
                Protocol::Tcp | Protocol::Tls => {
                    let tls = match (&s.protocol, &s.ca_pem, &s.ca_file) {
                        (Protocol::Tls, Some(pem), _) => Some(
                            sms_core::tls::client_config_from_pem(pem.as_bytes(), &label),
                        ),
                        (Protocol::Tls, None, Some(ca)) => Some(sms_core::tls::client_config(ca)),
                        _ => None,
                    }
                    .transpose()
                    .map_err(|source| ForwarderError::Tls {
                        server: label.clone(),
                        source,
                    })?
                    .map(Arc::new);
                    let queue = DiskQueue::open(&db, &label, cfg.queue_max_bytes)?;
                    status.queued = queue.len() as u64;
                    status.queued_bytes = queue.bytes();
                    status.dropped = queue.dropped();
                    if !queue.is_empty() {
                        tracing::info!(
                            "log server {label}: {} messages from before the restart wait",
                            queue.len()
                        );
                    }
                    Sender::Queued {
                        queue: Mutex::new(queue),
                        wake: Notify::new(),
                        tls,
                    }
                }
            };
            servers.push(Arc::new(Server {
                cfg: s.clone(),
                label,
                sender,
                status: Mutex::new(status),
                changed: changed.clone(),
                dropping: AtomicBool::new(false),
            }));
        }
        // The kernel's answer (uname), not /proc/sys: the unit's ProcSubset=pid
        // hides the latter.
        let hostname = if cfg.hostname.is_empty() {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        } else {
            cfg.hostname.clone()
        };
        Ok(Arc::new(Forwarder {
            hostname,
            identifiers: cfg.identifiers.iter().cloned().collect(),
            max_severity: cfg.max_severity,
            retry_max: cfg.retry_max_ms.max(FIRST_RETRY),
            servers,
            db,
            status_path: cfg.state_dir.join("status.json"),
            changed,
        }))
    }

    /// Starts one sender per server and the status writer.
    pub fn spawn(self: &Arc<Self>) {
        for s in &self.servers {
            let s = s.clone();
            let retry_max = self.retry_max;
            match &s.sender {
                Sender::Queued { .. } => {
                    tokio::spawn(async move { s.run_queued(retry_max).await });
                }
                Sender::Udp { rx, .. } => {
                    let rx = lock(rx).take();
                    if let Some(rx) = rx {
                        let s = s.clone();
                        tokio::spawn(async move { s.run_udp(rx).await });
                    }
                }
            }
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.write_status();
                me.changed.notified().await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// The host name the messages carry.
    pub fn hostname(&self) -> String {
        self.hostname.clone()
    }

    /// Whether `line` is one of the appliance's own that is forwarded.
    pub fn wanted(&self, line: &LogLine) -> bool {
        line.severity <= self.max_severity
            && line
                .app
                .as_deref()
                .is_some_and(|a| self.identifiers.contains(a))
    }

    /// Parses a datagram of the syslog socket and forwards it if wanted;
    /// a datagram that is not a log line is logged at debug level.
    pub fn submit_datagram(&self, data: &[u8]) {
        match LogLine::parse(data) {
            Ok(line) => {
                if self.wanted(&line) {
                    self.submit(&line);
                }
            }
            Err(e) => tracing::debug!("ignored a datagram on the syslog socket: {e}"),
        }
    }

    /// Forwards `line` to every server, stamped now.
    pub fn submit(&self, line: &LogLine) {
        let msg = line.to_rfc5424(&self.hostname, time::OffsetDateTime::now_utc());
        for s in &self.servers {
            s.push(msg.as_bytes());
        }
    }

    /// Each server's status.
    pub fn status(&self) -> Vec<ServerStatus> {
        self.servers
            .iter()
            .map(|s| lock(&s.status).clone())
            .collect()
    }

    /// Writes what is queued to disk (at shutdown).
    pub fn flush(&self) {
        if let Err(e) = self.db.flush() {
            tracing::warn!("writing the log queues: {e}");
        }
    }

    fn write_status(&self) {
        let Ok(json) = serde_json::to_vec_pretty(&self.status()) else {
            return;
        };
        if let Err(e) = sms_core::files::write_atomic(&self.status_path, &json, 0o644) {
            tracing::warn!("writing {}: {e}", self.status_path.display());
        }
    }
}

impl Server {
    fn update(&self, f: impl FnOnce(&mut ServerStatus)) {
        f(&mut lock(&self.status));
        self.changed.notify_one();
    }

    fn push(&self, msg: &[u8]) {
        match &self.sender {
            Sender::Queued { queue, wake, .. } => {
                let mut q = lock(queue);
                let before = q.dropped();
                if let Err(e) = q.push(msg) {
                    tracing::warn!("{e}; message for {} lost", self.label);
                }
                let (len, bytes, dropped) = (q.len(), q.bytes(), q.dropped());
                drop(q);
                if dropped > before && !self.dropping.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "log server {}: queue full, the oldest messages are dropped (counted in show logging)",
                        self.label
                    );
                }
                self.update(|s| {
                    s.queued = len as u64;
                    s.queued_bytes = bytes;
                    s.dropped = dropped;
                });
                wake.notify_one();
            }
            Sender::Udp { tx, .. } => {
                let mut m = msg.to_vec();
                if m.len() > MAX_UDP {
                    m.truncate(MAX_UDP);
                }
                if tx.try_send(m).is_err() {
                    self.update(|s| s.dropped += 1);
                }
            }
        }
    }

    fn went_down(&self, why: String) {
        let (was_up, queued, first) = {
            let s = lock(&self.status);
            (
                s.connected,
                s.queued,
                s.last_error.as_deref() != Some(why.as_str()),
            )
        };
        if was_up || first {
            tracing::warn!(
                "log server {} unreachable: {why}; {queued} messages wait",
                self.label
            );
        }
        self.update(|s| {
            s.connected = false;
            s.last_error = Some(why);
        });
    }

    async fn run_queued(self: Arc<Self>, retry_max: Duration) {
        let Sender::Queued { queue, wake, tls } = &self.sender else {
            return;
        };
        let mut conn: Option<Connection> = None;
        let mut pause = FIRST_RETRY;
        loop {
            let peeked = lock(queue).peek(BATCH);
            let batch = match peeked {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("{e}");
                    tokio::time::sleep(retry_max).await;
                    continue;
                }
            };
            let Some(&(last, _)) = batch.last() else {
                wake.notified().await;
                continue;
            };
            if let Some(c) = conn.as_mut() {
                if c.check_open().await.is_err() {
                    conn = None;
                    tracing::info!("log server {} closed the connection", self.label);
                    self.update(|s| s.connected = false);
                }
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match Connection::open(&self.cfg, tls.as_ref()).await {
                    Ok(c) => {
                        let queued = lock(&self.status).queued;
                        tracing::info!(
                            "log server {} connected; sending {queued} waiting messages",
                            self.label
                        );
                        self.update(|s| s.connected = true);
                        pause = FIRST_RETRY;
                        conn.insert(c)
                    }
                    Err(e) => {
                        self.went_down(e.to_string());
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(retry_max);
                        continue;
                    }
                },
            };
            let msgs: Vec<Vec<u8>> = batch.into_iter().map(|(_, m)| m).collect();
            match c.send(&msgs).await {
                Ok(()) => {
                    let mut q = lock(queue);
                    if let Err(e) = q.remove_through(last) {
                        tracing::warn!("{e}");
                    }
                    let (len, bytes) = (q.len(), q.bytes());
                    drop(q);
                    if len == 0 {
                        self.dropping.store(false, Ordering::Relaxed);
                    }
                    self.update(|s| {
                        s.sent += msgs.len() as u64;
                        s.queued = len as u64;
                        s.queued_bytes = bytes;
                    });
                }
                Err(e) => {
                    conn = None;
                    self.went_down(e.to_string());
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    async fn run_udp(self: Arc<Self>, mut rx: mpsc::Receiver<Vec<u8>>) {
        let mut socket: Option<(tokio::net::UdpSocket, std::net::SocketAddr)> = None;
        while let Some(msg) = rx.recv().await {
            if socket.is_none() {
                match udp_socket(&self.cfg).await {
                    Ok(s) => socket = Some(s),
                    Err(e) => {
                        self.went_down(e);
                        continue;
                    }
                }
            }
            let Some((sock, to)) = socket.as_ref() else {
                continue;
            };
            match sock.send_to(&msg, to).await {
                Ok(_) => self.update(|s| {
                    s.sent += 1;
                    s.connected = true;
                }),
                Err(e) => {
                    self.went_down(format!("sending: {e}"));
                    socket = None;
                }
            }
        }
    }
}

async fn udp_socket(
    cfg: &ServerConfig,
) -> Result<(tokio::net::UdpSocket, std::net::SocketAddr), String> {
    let to = tokio::net::lookup_host((cfg.host.as_str(), cfg.port()))
        .await
        .map_err(|e| format!("resolving {}: {e}", cfg.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", cfg.host))?;
    let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("opening a UDP socket: {e}"))?;
    Ok((sock, to))
}
