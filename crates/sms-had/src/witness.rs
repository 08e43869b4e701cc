//! The witness: the third vote of a pair (`sms-had witness`, runnable on
//! any Linux host). It grants one lease at a time, keyed by epoch, to one
//! of the two pinned nodes; a node takes writes only while it holds the
//! lease, so the other one can be granted a lease (and be promoted) only
//! after the first one's ran out and it fenced itself (ADR 21).

use sms_core::replication::wire::{self, Message};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The longest lease granted; also how long a restarted witness treats
/// the last holder's lease as running, since it lost the expiry time.
pub const MAX_LEASE: Duration = Duration::from_secs(10);

/// The lease as the witness holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The epoch it was granted at.
    pub epoch: u64,
    /// The holder's certificate fingerprint.
    pub holder: String,
    /// When it runs out.
    pub until: Instant,
}

/// The witness's state: the current lease, persisted (epoch and holder)
/// before a grant to a new holder or at a new epoch is answered.
#[derive(Debug)]
pub struct Witness {
    path: PathBuf,
    lease: Mutex<Option<Lease>>,
}

/// Short form of a fingerprint for log lines.
fn short(fp: &str) -> &str {
    &fp[..fp.len().min(11)]
}

impl Witness {
    /// Loads `state_dir/lease` (epoch and holder); a lease found there is
    /// taken as running for [`MAX_LEASE`] from now.
    pub fn load(state_dir: &Path) -> std::io::Result<Witness> {
        let path = state_dir.join("lease");
        let lease = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut parts = text.split_whitespace();
                let epoch = parts.next().and_then(|e| e.parse::<u64>().ok());
                match (epoch, parts.next()) {
                    (Some(epoch), Some(holder)) => Some(Lease {
                        epoch,
                        holder: holder.to_string(),
                        until: Instant::now() + MAX_LEASE,
                    }),
                    _ => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: not `<epoch> <fingerprint>`", path.display()),
                        ))
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Witness {
            path,
            lease: Mutex::new(lease),
        })
    }

    /// The current lease.
    pub fn lease(&self) -> Option<Lease> {
        sms_core::daemon::lock(&self.lease).clone()
    }

    /// Decides a request of `holder` for the lease at `epoch` for `ttl`,
    /// received at `now`. Granted when it renews the holder's own lease at
    /// its epoch, or when the lease ran out (or there is none) and `epoch`
    /// is not older than the last one granted. Refusals say why and carry
    /// the witness's epoch.
    pub fn decide(
        &self,
        holder: &str,
        epoch: u64,
        ttl: Duration,
        now: Instant,
    ) -> Result<(), (u64, String)> {
        let ttl = ttl.min(MAX_LEASE);
        let mut lease = sms_core::daemon::lock(&self.lease);
        if let Some(l) = lease.as_ref() {
            if epoch < l.epoch {
                return Err((
                    l.epoch,
                    format!(
                        "epoch {epoch} is older than the lease's {}: a newer active node exists",
                        l.epoch
                    ),
                ));
            }
            let same = l.holder == holder && l.epoch == epoch;
            if l.holder != holder && now < l.until {
                return Err((
                    l.epoch,
                    format!(
                        "the lease of epoch {} is held by {} for {} ms more",
                        l.epoch,
                        short(&l.holder),
                        (l.until - now).as_millis()
                    ),
                ));
            }
            if same {
                lease.replace(Lease {
                    epoch,
                    holder: holder.to_string(),
                    until: now + ttl,
                });
                return Ok(());
            }
        }
        sms_core::files::write_atomic(&self.path, format!("{epoch} {holder}\n").as_bytes(), 0o644)
            .map_err(|e| (epoch, format!("persisting the lease: {e}")))?;
        match lease.as_ref() {
            Some(l) => tracing::info!(
                "lease of epoch {epoch} granted to {} (the lease of epoch {} held by {} ran out {} ms ago)",
                short(holder),
                l.epoch,
                short(&l.holder),
                now.saturating_duration_since(l.until).as_millis()
            ),
            None => tracing::info!("lease of epoch {epoch} granted to {}", short(holder)),
        }
        *lease = Some(Lease {
            epoch,
            holder: holder.to_string(),
            until: now + ttl,
        });
        Ok(())
    }
}

/// Serves lease requests on `listener` until the task is dropped; only
/// the pinned nodes pass the TLS handshake.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, witness: Arc<Witness>) {
    crate::link::accept_pinned(listener, acceptor, "witness", move |mut tls, addr| {
        let witness = witness.clone();
        async move {
            let holder = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                Some(cert) => sms_core::identity::fingerprint(cert.as_ref()),
                None => return,
            };
            let why = session(&mut tls, &holder, &witness).await;
            tracing::debug!(peer = %addr, "witness connection closed: {why}");
        }
    })
    .await
}

async fn session<S>(conn: &mut S, holder: &str, witness: &Witness) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let (epoch, msg) = match wire::read_frame_async(conn).await {
            Ok(f) => f,
            Err(wire::WireError::Io(e)) => return e.to_string(),
            Err(e) => {
                tracing::warn!(node = %short(holder), "{e}; closed");
                return e.to_string();
            }
        };
        let Message::LeaseRequest { ttl_ms } = msg else {
            tracing::warn!(node = %short(holder), "a witness takes lease requests only, got {msg:?}; closed");
            return "unexpected message".into();
        };
        let ttl = Duration::from_millis(u64::from(ttl_ms));
        let (frame_epoch, reply) = match witness.decide(holder, epoch, ttl, Instant::now()) {
            Ok(()) => (
                epoch,
                Message::LeaseGranted {
                    ttl_ms: ttl.min(MAX_LEASE).as_millis() as u32,
                },
            ),
            Err((at, reason)) => (
                at,
                Message::Refused {
                    store: String::new(),
                    reason,
                },
            ),
        };
        if let Err(e) = wire::write_frame_async(conn, frame_epoch, &reply).await {
            return e.to_string();
        }
    }
}

/// The address the witness listens on by default.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], crate::config::CONTROL_PORT))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const T: Duration = Duration::from_secs(3);

    #[test]
    fn one_holder_at_a_time_and_never_an_older_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let w = Witness::load(dir.path()).unwrap();
        let t0 = Instant::now();
        w.decide("A", 1, T, t0).unwrap();
        // B cannot take it while A's runs, whatever epoch it claims.
        let (at, why) = w
            .decide("B", 2, T, t0 + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(at, 1);
        assert!(why.contains("held by A"), "{why}");
        // A renews.
        w.decide("A", 1, T, t0 + Duration::from_secs(2)).unwrap();
        assert!(w
            .decide("B", 2, T, t0 + Duration::from_millis(4900))
            .is_err());
        // Once A's ran out, B gets epoch 2; A is refused at 1 from then on.
        w.decide("B", 2, T, t0 + Duration::from_millis(5001))
            .unwrap();
        let (at, why) = w
            .decide("A", 1, T, t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(at, 2);
        assert!(why.contains("older"), "{why}");
        // Persisted: a restarted witness keeps the epoch and the holder,
        // and holds the lease for MAX_LEASE.
        let w = Witness::load(dir.path()).unwrap();
        let l = w.lease().unwrap();
        assert_eq!((l.epoch, l.holder.as_str()), (2, "B"));
        assert!(w.decide("A", 3, T, Instant::now()).is_err());
        w.decide("B", 2, T, Instant::now()).unwrap();
        // B asking for a higher epoch while holding is a new lease for it.
        w.decide("B", 3, T, Instant::now()).unwrap();
        assert_eq!(w.lease().unwrap().epoch, 3);
    }

    #[test]
    fn a_lease_is_never_longer_than_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let w = Witness::load(dir.path()).unwrap();
        let t0 = Instant::now();
        w.decide("A", 1, Duration::from_secs(3600), t0).unwrap();
        assert!(w.decide("B", 2, T, t0 + MAX_LEASE).is_ok());
    }
}
