//! SNMP for the SMS appliance.
//!
//! The appliance is an SNMP agent (authoritative engine), a trap receiver
//! and a trap sender; the manager-side libraries available do not cover the
//! agent side of SNMPv3, so this crate holds the protocol the daemon and the
//! simulated devices share: BER ([`ber`]), values and OIDs ([`value`]),
//! messages and PDUs ([`message`]) and the User-based Security Model
//! ([`usm`]). It does no I/O.

#![forbid(unsafe_code)]

pub mod ber;
pub mod message;
pub mod usm;
pub mod value;

pub use message::{decode, AnyPdu, CommunityMessage, Message, Pdu, PduType, ScopedPdu, Version};
pub use value::{Oid, Value, VarBind};
