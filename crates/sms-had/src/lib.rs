//! sms-had, the HA daemon: it carries every commit of the appliance's
//! stores to the peer appliance and says, per commit, whether the peer
//! holds it (ADR 20).
//!
//! On the primary, [`relay`] takes the daemons' commits on a local Unix
//! socket and forwards them over mutual TLS with the peer's pinned
//! certificate; on the secondary, [`replica`] applies them to replica
//! stores and acknowledges each batch only after it was flushed. The frame
//! format is `sms_core::replication::wire`, the same on both hops.
//!
//! [`roles`] decides which node takes writes: heartbeats between the nodes
//! on the control port, and with a [`witness`] an epoch-keyed lease that a
//! node must hold to take writes (ADR 21); [`vip`] puts the virtual
//! address on the node that takes writes (ADR 22).

pub mod blobs;
pub mod config;
pub mod dbus;
pub mod epoch;
pub mod link;
pub mod relay;
pub mod replica;
pub mod roles;
pub mod vip;
pub mod witness;

pub use config::{HaConfig, Role};
