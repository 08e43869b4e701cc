//! The package model: channels, platform families, versions, entries.
//!
//! Two kinds of content come from the update centre: Digital Vaccine (DV)
//! signature packages, one stream for all devices, and TOS operating system
//! images, one file per platform family. A version is a dotted list of
//! numbers compared numerically (`4.0.0.10001 > 4.0.0.9999`).

use crate::blob::Digest;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A content channel of the update centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Digital Vaccine signature packages: fetched automatically.
    Dv,
    /// TippingPoint OS images per platform family: fetched on demand.
    Tos,
}

impl Channel {
    /// Short lowercase name (`dv`, `tos`), used in URLs, keys and D-Bus.
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Dv => "dv",
            Channel::Tos => "tos",
        }
    }

    /// Both channels.
    pub const ALL: [Channel; 2] = [Channel::Dv, Channel::Tos];
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "dv" => Ok(Channel::Dv),
            "tos" => Ok(Channel::Tos),
            _ => Err(format!("unknown channel {s:?} (expected dv or tos)")),
        }
    }
}

/// An IPS platform family: TOS images are built per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    /// IPS 200, 400, 1200 and 2400.
    #[serde(rename = "200-2400")]
    F200To2400,
    /// IPS 50 and 100E.
    #[serde(rename = "50-100E")]
    F50To100E,
    /// IPS 5000E.
    #[serde(rename = "5000E")]
    F5000E,
}

impl Family {
    /// Every platform family, in catalog order.
    pub const ALL: [Family; 3] = [Family::F200To2400, Family::F50To100E, Family::F5000E];

    /// Identifier used in keys, URLs and configuration.
    pub fn id(&self) -> &'static str {
        match self {
            Family::F200To2400 => "200-2400",
            Family::F50To100E => "50-100E",
            Family::F5000E => "5000E",
        }
    }

    /// The models of the family, as shown to administrators.
    pub fn models(&self) -> &'static str {
        match self {
            Family::F200To2400 => "200/400/1200/2400",
            Family::F50To100E => "50/100E",
            Family::F5000E => "5000E",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Family::ALL
            .into_iter()
            .find(|f| f.id().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown platform family {s:?} (expected 200-2400, 50-100E or 5000E)")
            })
    }
}

/// A package version: dot-separated non-negative integers, compared
/// numerically component by component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(Vec<u32>);

impl Version {
    /// Builds a version from its numbers.
    pub fn new(parts: Vec<u32>) -> Result<Version, String> {
        if parts.is_empty() || parts.len() > 8 {
            return Err("a version has 1 to 8 numbers".into());
        }
        Ok(Version(parts))
    }

    /// The numbers of the version.
    pub fn parts(&self) -> &[u32] {
        &self.0
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.0.len().max(other.0.len());
        for i in 0..n {
            let a = self.0.get(i).copied().unwrap_or(0);
            let b = other.0.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 64 {
            return Err(format!("invalid version {s:?}"));
        }
        let parts = s
            .split('.')
            .map(|p| {
                if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    Err(format!(
                        "invalid version {s:?}: expected numbers separated by dots"
                    ))
                } else {
                    p.parse::<u32>()
                        .map_err(|e| format!("invalid version {s:?}: {e}"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Version::new(parts).map_err(|e| format!("invalid version {s:?}: {e}"))
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One downloadable file of a catalog, as the signed metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageEntry {
    /// Channel of the package.
    pub channel: Channel,
    /// Version of the package.
    pub version: Version,
    /// Platform family (TOS only; `None` for DV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    /// File name at the update centre (informational).
    pub file: String,
    /// Exact length in bytes.
    pub length: u64,
    /// SHA-256 of the file.
    pub sha256: Digest,
}

impl PackageEntry {
    /// Key that identifies the file within the appliance's stores:
    /// `dv/<version>` or `tos/<version>/<family>`.
    pub fn key(&self) -> String {
        match self.family {
            Some(f) => format!("{}/{}/{}", self.channel, self.version, f),
            None => format!("{}/{}", self.channel, self.version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions_compare_numerically() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        assert!(v("4.0.0.10001") > v("4.0.0.9999"));
        assert!(v("5.1") > v("5.0.9"));
        assert!(v("5.0.0") > v("5.0"));
        assert_eq!(v("5.0.1").to_string(), "5.0.1");
        for bad in ["", ".", "1..2", "1.a", "-1", "1.2.", "99999999999"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }

    #[test]
    fn families_parse() {
        for f in Family::ALL {
            assert_eq!(f.id().parse::<Family>().unwrap(), f);
        }
        assert!("3000".parse::<Family>().is_err());
    }

    proptest! {
        #[test]
        fn version_display_round_trips(parts in proptest::collection::vec(0u32..1_000_000, 1..6)) {
            let v = Version::new(parts).unwrap();
            prop_assert_eq!(v.to_string().parse::<Version>().unwrap(), v);
        }

        #[test]
        fn version_parse_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Version>();
        }
    }
}
