//! The appliance's TLS identities: made by sms-core (shared with the HA daemon).

pub use sms_core::identity::*;
