//! The simulated world's names: what the DNS server answers and what the
//! proxy resolves.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// A shared map from lowercase host name (no trailing dot) to address.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    names: Arc<RwLock<HashMap<String, IpAddr>>>,
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Zone {
    /// An empty zone.
    pub fn new() -> Zone {
        Zone::default()
    }

    /// Adds or replaces a name.
    pub fn insert(&self, name: &str, addr: IpAddr) {
        if let Ok(mut m) = self.names.write() {
            m.insert(normalize(name), addr);
        }
    }

    /// Looks a name up; IP literals resolve to themselves.
    pub fn resolve(&self, name: &str) -> Option<IpAddr> {
        let name = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Some(ip);
        }
        self.names.read().ok()?.get(&normalize(name)).copied()
    }
}
