//! Remote logging for the SMS appliance.
//!
//! journald hands every log line to the syslog socket
//! (`ForwardToSyslog=yes`); this daemon reads those lines ([`line`]), keeps
//! the appliance's own (the CLI's audit trail, the daemons' events,
//! received traps), rewrites them as RFC 5424 messages and forwards them to
//! up to four servers ([`forwarder`]): over UDP as they come, over TCP and
//! TLS (RFC 5425, octet counting) through a bounded queue on the data
//! partition ([`queue`]) so that a server that is down for a while gets
//! what it missed when it is back, and what did not fit is counted.
//! Warnings, failures and audit records also go to the administrators by
//! e-mail as rate-limited digests ([`mail`], over [`smtp`]).

pub mod config;
pub mod forwarder;
pub mod line;
pub mod mail;
pub mod queue;
pub mod smtp;
pub mod transport;
