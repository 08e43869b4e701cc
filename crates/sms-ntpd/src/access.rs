//! Who may ask for time, and how often.

use std::net::IpAddr;

pub use sms_core::ratelimit::RateLimiter;

pub use sms_core::net::Network;

/// The allow list.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    nets: Vec<Network>,
}

impl AllowList {
    /// Parses every entry; an error names the bad one.
    pub fn parse(entries: &[String]) -> Result<AllowList, String> {
        Ok(AllowList {
            nets: entries
                .iter()
                .map(|e| Network::parse(e))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether `ip` may be served.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = Network::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Network::parse("fe80::/10")
            .unwrap()
            .contains("fe80::1".parse().unwrap()));
        assert!(Network::parse("1.2.3.4/33").is_err());
        assert!(Network::parse("nonsense").is_err());
        assert!(Network::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}
