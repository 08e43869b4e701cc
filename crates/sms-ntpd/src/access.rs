//! Who may ask for time, and how often.

use crate::config::RateLimitConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// An IPv4 or IPv6 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a host network).
    pub fn parse(s: &str) -> Result<Network, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("invalid network {s:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .map_err(|_| format!("invalid prefix in {s:?}"))?,
            None => max,
        };
        if prefix > max {
            return Err(format!("prefix /{prefix} too long in {s:?}"));
        }
        Ok(Network { addr, prefix })
    }

    /// Whether `ip` is inside the network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

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

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per client address, bounded in memory.
#[derive(Debug)]
pub struct RateLimiter {
    cfg: RateLimitConfig,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// A limiter with the given settings.
    pub fn new(cfg: RateLimitConfig) -> RateLimiter {
        RateLimiter {
            cfg,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `ip` at `now`; false when the client is over its rate.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.cfg.enabled {
            return true;
        }
        let rate = 1000.0 / self.cfg.interval_ms.max(1) as f64;
        let burst = self.cfg.burst.max(1) as f64;
        if self.buckets.len() >= self.cfg.max_clients.max(16) && !self.buckets.contains_key(&ip) {
            // Forget clients whose bucket has refilled: they lose nothing.
            self.buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
            if self.buckets.len() >= self.cfg.max_clients.max(16) {
                self.buckets.clear();
            }
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether limiting is on at all (lets callers skip the lock).
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    #[test]
    fn bucket_limits_and_refills() {
        let mut r = RateLimiter::new(RateLimitConfig {
            enabled: true,
            interval_ms: 100,
            burst: 4,
            max_clients: 100,
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!((0..6).filter(|_| r.allow(ip, t0)).count(), 4);
        assert!(r.allow(ip, t0 + Duration::from_millis(150)));
        assert!(!r.allow(ip, t0 + Duration::from_millis(160)));
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = RateLimiter::new(RateLimitConfig {
            enabled: true,
            interval_ms: 1000,
            burst: 2,
            max_clients: 64,
        });
        let t = Instant::now();
        for i in 0..10_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            r.allow(ip, t);
            r.allow(ip, t);
            assert!(r.tracked() <= 64);
        }
    }
}
