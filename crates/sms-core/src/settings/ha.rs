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
        if let (Some(w), Some(p)) = (self.ha_witness, self.ha_peer) {
            if w == p {
                return Err(invalid("ha witness", "the witness cannot be the peer"));
            }
        }
        Ok(())
    }
}
