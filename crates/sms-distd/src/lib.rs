//! sms-distd: gets verified content onto the managed IPS devices.
//!
//! Push: jobs that send one DV or TOS version to a device, a group or the
//! whole fleet, in waves with a failure threshold, bounded concurrency and
//! retries, resumable after a restart ([`job`]). Pull: an HTTP(S) server
//! from which devices fetch updates in the GUTS2 manner, with binary deltas
//! built on the appliance ([`pull`], [`delta`]). The device inventory lives
//! in the daemon's own store ([`inventory`]); D-Bus is the control plane
//! ([`dbus`]).

#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod dbus;
pub mod delta;
pub mod distributor;
pub mod identity;
pub mod inventory;
pub mod job;
pub mod pull;
pub mod source;

pub use distributor::Distributor;
