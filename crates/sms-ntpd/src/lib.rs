//! The SMS NTP relay.
//!
//! Takes time from several upstream NTP servers (RFC 5905 client with clock
//! filter, falseticker rejection and combining, [`upstream`], [`select`]),
//! applies it ([`clock`]: the system clock on the appliance, an offset on
//! development hosts) and serves it to the managed devices ([`server`]) with
//! honest fields: stratum upstream + 1, leap 3 and stratum 16 when it has no
//! time to give, kiss-o'-death RATE for clients over their rate, nothing for
//! clients outside the allow list.

pub mod access;
pub mod clock;
pub mod config;
pub mod dbus;
pub mod packet;
pub mod select;
pub mod server;
pub mod source;
pub mod state;
pub mod upstream;
