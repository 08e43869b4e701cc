//! The SMS SNMP daemon.
//!
//! Network operations centres watch the appliance over SNMP and the
//! appliance watches its devices the same way. This crate is the agent
//! ([`agent`]: v1/v2c communities bound to source networks, v3 USM with
//! VACM-style views, Get/GetNext/GetBulk/Set over the [`mib`] snapshot),
//! the trap and inform receiver ([`receiver`], events in [`events`]), the
//! device poller ([`poller`]) and the trap sender ([`sender`]), put
//! together in [`daemon`]. The protocol itself is in `sms-snmp`.

pub mod access;
pub mod agent;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod events;
pub mod mib;
pub mod poller;
pub mod receiver;
pub mod sender;
pub mod server;
pub mod sources;
