//! Token buckets per client address, bounded in memory: how a daemon that
//! answers strangers over UDP (the NTP relay, the SNMP agent) keeps one
//! source from taking all of it, and keeps a spoofed flood from growing its
//! memory.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// A token bucket per client address (`rate_limit` sections).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether rate limiting is on.
    pub enabled: bool,
    /// Average interval allowed between requests, milliseconds.
    pub interval_ms: u64,
    /// Requests allowed in a burst.
    pub burst: u32,
    /// Client addresses tracked at most (memory bound).
    pub max_clients: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            interval_ms: 1000,
            burst: 16,
            max_clients: 65536,
        }
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
