//! SMS backup and restore (ADR 17).
//!
//! A backup is one archive ([`archive`]) of what makes an appliance this
//! appliance: the settings with their rollbacks, the secrets kept apart per
//! daemon, the TLS identity devices pin and the SSH host key, the CLI's
//! audit trail, every daemon's store (packages metadata, inventory and jobs,
//! events) and, on request, the package files ([`layout`]). Taking one
//! ([`capture`]) copies each store through its running daemon, so nothing
//! stops; restoring one ([`restore`]) checks it whole first, shows what it
//! replaces, then swaps it in with the affected daemons stopped. Archives
//! travel to and from the customer's SFTP server ([`sftp`]).

pub mod archive;
pub mod capture;
pub mod layout;
pub mod restore;
pub mod service;
pub mod sftp;
pub mod transfer;

/// The firmware version this build is, recorded in every backup and
/// compared on restore.
pub const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
