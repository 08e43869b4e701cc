//! The inventory of managed devices, kept in the daemon's own store (so
//! that HA replication carries it to the standby).

use serde::{Deserialize, Serialize};
use sms_core::package::Family;
use sms_core::store::{Batch, Store, StoreError};
use std::net::IpAddr;

/// Store tree of the devices, keyed by name.
pub const DEVICES: &str = "devices";

/// Why an inventory change was refused.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A field does not have the required form.
    #[error("invalid {field} {value:?}: {why}")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// Value given (as received; shown escaped).
        value: String,
        /// Rule broken.
        why: &'static str,
    },
    /// A device of that name exists already.
    #[error("device {0} already exists")]
    Exists(String),
    /// No device of that name.
    #[error("no device named {0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the appliance last knew of a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceState {
    /// Never contacted.
    #[default]
    Unknown,
    /// Answered at the last contact.
    Ok,
    /// A package is being sent or installed.
    Updating,
    /// Could not be reached at the last attempt.
    Unreachable,
    /// The last distribution to it failed.
    Failed,
}

/// One managed IPS device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Unique name (letters, digits, `.`, `_`, `-`; 1 to 63 characters).
    pub name: String,
    /// Management address.
    pub address: IpAddr,
    /// HTTPS port of its management endpoint.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Platform family (which TOS images fit it).
    pub family: Family,
    /// Group name, for distributing to a group.
    #[serde(default = "default_group")]
    pub group: String,
    /// SHA-256 (hex) of its certificate, when pinned instead of checked
    /// against the fleet CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_sha256: Option<String>,
    /// Installed DV version, as last reported.
    #[serde(default)]
    pub dv: Option<String>,
    /// Installed TOS version, as last reported.
    #[serde(default)]
    pub tos: Option<String>,
    /// Unix time of the last successful contact.
    #[serde(default)]
    pub last_contact: Option<i64>,
    /// State at the last contact.
    #[serde(default)]
    pub state: DeviceState,
    /// Reason of the last failure.
    #[serde(default)]
    pub last_error: Option<String>,
}

fn default_port() -> u16 {
    443
}

fn default_group() -> String {
    "default".into()
}

/// Checks a device or group name: it ends up in logs, the CLI and SNMP.
pub fn check_name(field: &'static str, s: &str) -> Result<(), InventoryError> {
    let bad = |why| InventoryError::Invalid {
        field,
        value: s.escape_default().to_string(),
        why,
    };
    if s.is_empty() || s.len() > 63 {
        return Err(bad("must be 1 to 63 characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("only letters, digits, '.', '_' and '-' are allowed"));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("must start with a letter or digit"));
    }
    Ok(())
}

impl Device {
    /// A device not yet contacted, with the fields a person or an import sets.
    pub fn new(name: String, address: IpAddr, port: u16, family: Family, group: String) -> Device {
        Device {
            name,
            address,
            port,
            family,
            group,
            pin_sha256: None,
            dv: None,
            tos: None,
            last_contact: None,
            state: DeviceState::Unknown,
            last_error: None,
        }
    }

    /// Validates every field a person or an import can set.
    pub fn validate(&self) -> Result<(), InventoryError> {
        check_name("device name", &self.name)?;
        check_name("group", &self.group)?;
        if self.port == 0 {
            return Err(InventoryError::Invalid {
                field: "port",
                value: "0".into(),
                why: "must be 1 to 65535",
            });
        }
        if let Some(pin) = &self.pin_sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(InventoryError::Invalid {
                    field: "pin_sha256",
                    value: pin.escape_default().to_string(),
                    why: "must be 64 hex digits",
                });
            }
        }
        Ok(())
    }
}

/// Which devices a distribution is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "name")]
pub enum Target {
    /// Every device.
    All,
    /// The devices of a group.
    Group(String),
    /// One device.
    Device(String),
}

impl std::str::FromStr for Target {
    type Err = InventoryError;

    /// `all`, `group:NAME` or `device:NAME`.
    fn from_str(s: &str) -> Result<Target, InventoryError> {
        match s.split_once(':') {
            None if s == "all" => Ok(Target::All),
            Some(("group", g)) => check_name("group", g).map(|_| Target::Group(g.into())),
            Some(("device", d)) => check_name("device name", d).map(|_| Target::Device(d.into())),
            _ => Err(InventoryError::Invalid {
                field: "target",
                value: s.escape_default().to_string(),
                why: "use all, group:NAME or device:NAME",
            }),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::Group(g) => write!(f, "group:{g}"),
            Target::Device(d) => write!(f, "device:{d}"),
        }
    }
}

/// The inventory, over the daemon's store.
#[derive(Clone)]
pub struct Inventory {
    store: Store,
}

impl Inventory {
    /// An inventory over `store`.
    pub fn new(store: Store) -> Inventory {
        Inventory { store }
    }

    /// Adds devices (all or none). Names must be new and unique.
    pub fn add(&self, devices: &[Device]) -> Result<(), InventoryError> {
        let mut seen = std::collections::BTreeSet::new();
        let mut b = Batch::new();
        for d in devices {
            d.validate()?;
            if !seen.insert(d.name.as_str()) || self.get(&d.name)?.is_some() {
                return Err(InventoryError::Exists(d.name.clone()));
            }
            b.put_json(DEVICES, &d.name, d);
        }
        self.store.apply(&b)?;
        Ok(())
    }

    /// Replaces a device's record (edit, or a status update).
    pub fn put(&self, device: &Device) -> Result<(), InventoryError> {
        device.validate()?;
        let mut b = Batch::new();
        b.put_json(DEVICES, &device.name, device);
        self.store.apply(&b)?;
        Ok(())
    }

    /// Removes a device.
    pub fn remove(&self, name: &str) -> Result<(), InventoryError> {
        if self.get(name)?.is_none() {
            return Err(InventoryError::NotFound(name.into()));
        }
        let mut b = Batch::new();
        b.delete(DEVICES, name);
        self.store.apply(&b)?;
        Ok(())
    }

    /// One device.
    pub fn get(&self, name: &str) -> Result<Option<Device>, InventoryError> {
        Ok(self.store.get_json(DEVICES, name)?)
    }

    /// Every device, by name.
    pub fn list(&self) -> Result<Vec<Device>, InventoryError> {
        Ok(self.store.scan_json(DEVICES, [])?)
    }

    /// The devices `target` names, by name.
    pub fn resolve(&self, target: &Target) -> Result<Vec<Device>, InventoryError> {
        match target {
            Target::All => self.list(),
            Target::Group(g) => Ok(self.list()?.into_iter().filter(|d| &d.group == g).collect()),
            Target::Device(n) => Ok(vec![self
                .get(n)?
                .ok_or_else(|| InventoryError::NotFound(n.clone()))?]),
        }
    }

    /// Applies `f` to the stored record of `name`, if it still exists.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut Device)) -> Result<(), InventoryError> {
        if let Some(mut d) = self.get(name)? {
            f(&mut d);
            let mut b = Batch::new();
            b.put_json(DEVICES, &d.name, &d);
            self.store.apply(&b)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str) -> Device {
        Device::new(
            name.into(),
            "127.0.0.5".parse().unwrap(),
            443,
            Family::ALL[0],
            "lab".into(),
        )
    }

    #[test]
    fn names_are_checked() {
        for bad in [
            "",
            "a b",
            "x;reboot",
            "-x",
            "a\u{1b}[2J",
            &"a".repeat(64),
            "ä",
        ] {
            assert!(check_name("device name", bad).is_err(), "{bad:?}");
        }
        for good in ["ips-00001", "Core.Switch_2", "9a"] {
            check_name("device name", good).unwrap();
        }
    }

    #[test]
    fn add_is_all_or_nothing_and_targets_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::new(Store::open(dir.path()).unwrap());
        inv.add(&[device("a"), device("b")]).unwrap();
        assert!(matches!(
            inv.add(&[device("c"), device("a")]),
            Err(InventoryError::Exists(_))
        ));
        assert!(inv.get("c").unwrap().is_none());
        let mut other = device("d");
        other.group = "dmz".into();
        inv.add(&[other]).unwrap();
        assert_eq!(inv.resolve(&"group:lab".parse().unwrap()).unwrap().len(), 2);
        assert_eq!(inv.resolve(&Target::All).unwrap().len(), 3);
        assert!(inv.resolve(&"device:zz".parse().unwrap()).is_err());
        assert!("grp:x".parse::<Target>().is_err());
        inv.remove("a").unwrap();
        assert!(inv.remove("a").is_err());
    }
}
