//! Who may ask for time, and how often.

use crate::config::RateLimitConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

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
