//! The inventory of managed devices, kept in the daemon's own store (so
//! that HA replication carries it to the standby).

use sms_core::store::{Batch, Store, StoreError};

pub use sms_core::bus::{check_name, Device, DeviceState, NameError, Target};

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

impl From<NameError> for InventoryError {
    fn from(e: NameError) -> Self {
        InventoryError::Invalid {
            field: e.field,
            value: e.value,
            why: e.why,
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
    use sms_core::package::Family;

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
