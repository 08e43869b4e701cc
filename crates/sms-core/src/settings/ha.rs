//! The HA pairing in the settings (`set ha peer ... fingerprint ... role
//! ...`, `set ha witness ... fingerprint ...`): nothing is exchanged with
//! a peer or a witness until its fingerprint was set here, on both nodes.

use super::{invalid, SettingsError};
use serde::{Deserialize, Serialize};

/// This node's role when the pair is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HaRole {
    /// Starts active: takes the writes and ships them.
    Primary,
    /// Starts as the standby: applies the primary's writes.
    Secondary,
}

impl HaRole {
    /// The word in the CLI and the settings file.
    pub fn word(self) -> &'static str {
        match self {
            HaRole::Primary => "primary",
            HaRole::Secondary => "secondary",
        }
    }
}

/// Checks a fingerprint as `show ha identity` prints it.
pub fn check_fingerprint(setting: &str, fp: &str) -> Result<(), SettingsError> {
    crate::identity::parse_fingerprint(fp)
        .map(|_| ())
        .map_err(|e| invalid(setting, e))
}

/// Checks a virtual address as `set ha virtual-address` takes it: an IPv4
/// host address with its prefix length (`192.0.2.100/24`).
pub fn check_virtual_address(v: &str) -> Result<std::net::Ipv4Addr, SettingsError> {
    let setting = "ha virtual-address";
    let (a, p) = v
        .split_once('/')
        .ok_or_else(|| invalid(setting, "give the address with its prefix length: ADDR/LEN"))?;
    let addr: std::net::Ipv4Addr = a
        .parse()
        .map_err(|_| invalid(setting, "not an IPv4 address"))?;
    match p.parse::<u8>() {
        Ok(1..=32) => {}
        _ => return Err(invalid(setting, "a prefix length is 1 to 32")),
    }
    if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() || addr.is_loopback() {
        return Err(invalid(setting, "not a host address"));
    }
    Ok(addr)
}

impl super::Settings {
    /// Checks the HA values: fingerprints well formed, a role and a
    /// fingerprint only with a peer, and both or neither.
    pub fn validate_ha(&self) -> Result<(), SettingsError> {
        if let Some(fp) = &self.ha_peer_fingerprint {
            check_fingerprint("ha peer fingerprint", fp)?;
        }
        if let Some(fp) = &self.ha_witness_fingerprint {
            check_fingerprint("ha witness fingerprint", fp)?;
        }
        if self.ha_peer_fingerprint.is_some() != self.ha_role.is_some() {
            return Err(invalid(
                "ha peer",
                "the peer's fingerprint and this node's role go together",
            ));
        }
        if self.ha_peer.is_none() && self.ha_role.is_some() {
            return Err(invalid("ha peer", "a role needs the peer's address"));
        }
        if self.ha_witness.is_some() != self.ha_witness_fingerprint.is_some() {
            return Err(invalid(
                "ha witness",
                "the witness's address and fingerprint go together",
            ));
        }
        if let Some(v) = &self.ha_virtual_address {
            let addr = check_virtual_address(v)?;
            for (what, other) in [("the peer", self.ha_peer), ("the witness", self.ha_witness)] {
                if other == Some(std::net::IpAddr::V4(addr)) {
                    return Err(invalid(
                        "ha virtual-address",
                        format!("{addr} is {what}'s own address"),
                    ));
                }
            }
        }
        if let (Some(w), Some(p)) = (self.ha_witness, self.ha_peer) {
            if w == p {
                return Err(invalid("ha witness", "the witness cannot be the peer"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_virtual_address_is_an_ipv4_host_with_a_prefix_and_not_a_nodes_own() {
        assert_eq!(
            check_virtual_address("192.0.2.100/24").unwrap().to_string(),
            "192.0.2.100"
        );
        for bad in [
            "192.0.2.100",
            "192.0.2.100/0",
            "192.0.2.100/33",
            "2001:db8::1/64",
            "127.0.0.1/8",
            "0.0.0.0/0",
            "192.0.2.100/24\nx",
        ] {
            assert!(check_virtual_address(bad).is_err(), "{bad}");
        }
        let mut s = crate::settings::Settings::example();
        s.validate().unwrap();
        s.ha_virtual_address = Some("192.0.2.11/24".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("the peer's own address"), "{e}");
    }
}
