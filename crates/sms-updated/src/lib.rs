//! The SMS update daemon.
//!
//! Fetches security content from the vendor's update centre (TMC): Digital
//! Vaccine (DV) packages automatically on an interval, TOS images on demand.
//! Every catalog is signature-checked ([`sms_core::metadata`]) and every file
//! checked against its signed length and digest before it enters the blob
//! store, and nothing unverified is ever activated.
//!
//! Layers, outermost first: [`dbus`] (control plane) → [`updater`]
//! (scheduling, activation, retention, confirmation) → [`tmc`] (the update
//! centre's API) and [`download`] (resumable verified transfers) →
//! [`net`] (DNS with the configured servers, proxy, TLS, HTTP/1.1).

#![forbid(unsafe_code)]

pub mod config;
pub mod dbus;
pub mod download;
pub mod error;
pub mod net;
pub mod tmc;
pub mod updater;
pub mod url;
