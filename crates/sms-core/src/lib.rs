//! Shared foundation of the SMS appliance daemons.
//!
//! Every daemon needs the same few things done the same way: read its TOML
//! configuration with errors that point at the file, line and key; keep its
//! state in a sled store whose every write is also an ordered change in an
//! outbox (what HA replication ships); keep package files in a
//! content-addressed blob store; verify signed metadata before anything is
//! trusted; and log through `tracing` to journald or stderr. This crate is
//! that common ground, so that the daemons only hold their own logic.

#![forbid(unsafe_code)]

pub mod backup;
pub mod blob;
pub mod bus;
pub mod config;
pub mod daemon;
pub mod device;
pub mod files;
pub mod identity;
pub mod logging;
pub mod metadata;
pub mod net;
pub mod notify;
pub mod package;
pub mod ratelimit;
pub mod replication;
pub mod settings;
pub mod store;
pub mod time_floor;
pub mod tls;
