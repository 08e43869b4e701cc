//! Who may see and change what: VACM-style views, communities bound to
//! source networks, and USM users with their least level and views.

use crate::config::{AccessMode, SnmpConfig, UserConfig};
use sms_core::net::Network;
use sms_snmp::usm::{AuthProtocol, PrivProtocol, SecurityLevel, UserCredentials, UserKeys};
use sms_snmp::Oid;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// A view: subtrees included or excluded; the longest matching one decides.
#[derive(Debug, Clone, Default)]
pub struct View {
    name: String,
    /// (subtree, included), longest first.
    entries: Vec<(Oid, bool)>,
}

impl View {
    /// A view from included and excluded subtrees.
    pub fn new(name: &str, include: &[Oid], exclude: &[Oid]) -> View {
        let mut entries: Vec<(Oid, bool)> = include
            .iter()
            .map(|o| (o.clone(), true))
            .chain(exclude.iter().map(|o| (o.clone(), false)))
            .collect();
        entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        View {
            name: name.to_string(),
            entries,
        }
    }

    /// The view's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `oid` is in the view.
    pub fn contains(&self, oid: &Oid) -> bool {
        self.entries
            .iter()
            .find(|(root, _)| oid.starts_with(root))
            .is_some_and(|(_, inc)| *inc)
    }
}

/// A v1/v2c community.
#[derive(Debug, Clone)]
pub struct Community {
    name: Vec<u8>,
    sources: Vec<Network>,
    /// Readable view.
    pub view: Arc<View>,
    /// Whether Set is allowed (on writable objects in the view).
    pub write: bool,
}

/// An SNMPv3 user of the agent.
#[derive(Debug, Clone)]
pub struct User {
    /// Master keys (for the receiver, which localizes to other engines).
    pub credentials: UserCredentials,
    /// Keys localized to this agent's engine.
    pub keys: UserKeys,
    /// Least level accepted.
    pub min_level: SecurityLevel,
    /// Readable view.
    pub read: Arc<View>,
    /// Writable view, if any.
    pub write: Option<Arc<View>>,
}

/// Every access rule of the agent.
#[derive(Debug, Clone, Default)]
pub struct Access {
    communities: Vec<Community>,
    users: HashMap<Vec<u8>, User>,
}

fn parse_oids(list: &[String], what: &str) -> Result<Vec<Oid>, String> {
    list.iter()
        .map(|s| s.parse::<Oid>().map_err(|e| format!("{what}: {e}")))
        .collect()
}

/// Turns a configured user into credentials (the slow password hashing).
pub fn credentials(u: &UserConfig) -> Result<UserCredentials, String> {
    let auth = if u.auth.is_empty() {
        None
    } else {
        Some((
            AuthProtocol::parse(&u.auth).map_err(|e| e.to_string())?,
            u.auth_password.as_str(),
        ))
    };
    let privacy = if u.privacy.is_empty() {
        None
    } else {
        Some((
            PrivProtocol::parse(&u.privacy).map_err(|e| e.to_string())?,
            u.privacy_password.as_str(),
        ))
    };
    UserCredentials::from_passwords(&u.name, auth, privacy).map_err(|e| e.to_string())
}

impl Access {
    /// Builds the rules from the configuration; keys are localized to
    /// `engine_id`. Errors name the bad entry.
    pub fn build(cfg: &SnmpConfig, engine_id: &[u8]) -> Result<Access, String> {
        let mut views: HashMap<String, Arc<View>> = HashMap::new();
        for v in &cfg.view {
            let inc = parse_oids(&v.include, &format!("view {:?}", v.name))?;
            let exc = parse_oids(&v.exclude, &format!("view {:?}", v.name))?;
            views.insert(v.name.clone(), Arc::new(View::new(&v.name, &inc, &exc)));
        }
        let view = |name: &str, who: &str| {
            views
                .get(name)
                .cloned()
                .ok_or_else(|| format!("{who}: no view named {name:?}"))
        };
        let mut communities = Vec::new();
        for c in &cfg.community {
            let who = format!("community {:?}", c.name);
            if c.name.is_empty() || c.name.len() > 64 || c.name.chars().any(|ch| ch.is_control()) {
                return Err(format!(
                    "{who}: must be 1 to 64 characters without control characters"
                ));
            }
            let sources = c
                .sources
                .iter()
                .map(|s| Network::parse(s).map_err(|e| format!("{who}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if sources.iter().any(|n| n.is_everything()) {
                // A community is a password sent in clear from an address
                // anyone can forge: open to the whole Internet, it is
                // guessable by everyone.
                if c.access == AccessMode::Rw {
                    return Err(format!(
                        "{who}: a write community may not be open to every address (0.0.0.0/0 or ::/0); name the managers' networks"
                    ));
                }
                tracing::warn!(
                    "{who} answers every address (0.0.0.0/0 or ::/0): name the managers' networks instead"
                );
            }
            communities.push(Community {
                name: c.name.as_bytes().to_vec(),
                sources,
                view: view(&c.view, &who)?,
                write: c.access == AccessMode::Rw,
            });
        }
        let mut users = HashMap::new();
        for u in &cfg.user {
            let who = format!("user {:?}", u.name);
            let credentials = credentials(u).map_err(|e| format!("{who}: {e}"))?;
            let min_level =
                SecurityLevel::parse(&u.min_level).map_err(|e| format!("{who}: {e}"))?;
            if min_level > credentials.max_level() {
                return Err(format!(
                    "{who}: min_level {} needs keys the user does not have",
                    u.min_level
                ));
            }
            let read = if u.read_view.is_empty() {
                Arc::new(View::default())
            } else {
                view(&u.read_view, &who)?
            };
            let write = if u.write_view.is_empty() {
                None
            } else {
                Some(view(&u.write_view, &who)?)
            };
            let keys = credentials.localize(engine_id);
            if users
                .insert(
                    u.name.as_bytes().to_vec(),
                    User {
                        credentials,
                        keys,
                        min_level,
                        read,
                        write,
                    },
                )
                .is_some()
            {
                return Err(format!("{who}: defined twice"));
            }
        }
        Ok(Access { communities, users })
    }

    /// The community's rules when `community` may be used from `ip`.
    pub fn community(&self, community: &[u8], ip: IpAddr) -> Option<&Community> {
        self.communities
            .iter()
            .find(|c| c.name == community && c.sources.iter().any(|n| n.contains(ip)))
    }

    /// A user by name.
    pub fn user(&self, name: &[u8]) -> Option<&User> {
        self.users.get(name)
    }

    /// A user's keys localized to this engine.
    pub fn keys(&self, name: &[u8]) -> Option<&UserKeys> {
        self.users.get(name).map(|u| &u.keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_community_open_to_every_address_is_refused() {
        let cfg = |access: &str, net: &str| -> SnmpConfig {
            toml::from_str(&format!(
                "state_dir = \"/x\"\n[[view]]\nname = \"all\"\ninclude = [\"1.3.6.1\"]\n[[community]]\nname = \"c\"\nsources = [\"{net}\"]\nview = \"all\"\naccess = \"{access}\"\n"
            ))
            .unwrap()
        };
        assert!(Access::build(&cfg("ro", "0.0.0.0/0"), b"e").is_ok());
        assert!(Access::build(&cfg("rw", "10.0.0.0/8"), b"e").is_ok());
        let e = Access::build(&cfg("rw", "0.0.0.0/0"), b"e").unwrap_err();
        assert!(e.contains("may not be open to every address"), "{e}");
        assert!(Access::build(&cfg("rw", "::/0"), b"e").is_err());
    }

    #[test]
    fn longest_subtree_decides() {
        let v = View::new(
            "v",
            &[
                "1.3.6.1".parse().unwrap(),
                "1.3.6.1.4.1.9.1".parse().unwrap(),
            ],
            &["1.3.6.1.4.1.9".parse().unwrap()],
        );
        assert!(v.contains(&"1.3.6.1.2.1.1.1.0".parse().unwrap()));
        assert!(!v.contains(&"1.3.6.1.4.1.9.2.1".parse().unwrap()));
        assert!(v.contains(&"1.3.6.1.4.1.9.1.5".parse().unwrap()));
        assert!(!v.contains(&"1.3.6.2".parse().unwrap()));
        assert!(!View::default().contains(&"1.3".parse().unwrap()));
    }
}
