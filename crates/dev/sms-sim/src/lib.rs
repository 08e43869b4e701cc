//! Simulators of the world around the SMS appliance.
//!
//! There is no internet here, so `sms-sim` plays the outside world with real
//! protocols on loopback: the vendor's update centre (an HTTPS TMC with
//! signed catalogs), its CDN (plain HTTP with Range), a DNS server for their
//! names, a fleet of managed IPS devices, and an HTTP proxy (CONNECT and absolute-form, with or without Basic
//! credentials). Each can misbehave on request, which is how the daemons'
//! handling of bad input is tested.

#![forbid(unsafe_code)]

pub mod content;
pub mod datagram;
pub mod dns;
pub mod fleet;
pub mod http;
pub mod lanworld;
pub mod ntp;
pub mod pki;
pub mod proxy;
pub mod snmp;
pub mod tmc;
pub mod zone;

pub use tmc::{Faults, SimInfo, TmcSim, TmcSimConfig};
