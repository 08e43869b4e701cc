//! State shared between the upstream engine, the serving threads and the
//! D-Bus interface.

use crate::packet::{Leap, NtpTimestamp};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

/// What the server puts in its answers; written by the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServeInfo {
    /// Leap indicator (Unsynchronized when not synchronised).
    pub leap: Leap,
    /// Stratum (16 when not synchronised).
    pub stratum: u8,
    /// Reference identifier served (the system peer, or a kiss code).
    pub reference_id: [u8; 4],
    /// When the clock was last updated.
    pub reference_ts: NtpTimestamp,
    /// Root delay to the primary reference, seconds.
    pub root_delay: f64,
    /// Root dispersion, seconds.
    pub root_dispersion: f64,
    /// Seconds added to the system clock when serving.
    pub offset: f64,
}

impl ServeInfo {
    /// The answer of a relay that has no time to give.
    pub fn unsynchronised(offset: f64) -> ServeInfo {
        ServeInfo {
            leap: Leap::Unsynchronized,
            stratum: 16,
            reference_id: *b"INIT",
            reference_ts: NtpTimestamp(0),
            root_delay: 0.0,
            root_dispersion: 0.0,
            offset,
        }
    }

    /// True when the answers carry usable time.
    pub fn synchronised(&self) -> bool {
        self.leap != Leap::Unsynchronized
    }
}

/// Server counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Answers sent (time or KoD).
    pub served: AtomicU64,
    /// Datagrams that are not NTP client requests.
    pub malformed: AtomicU64,
    /// Requests from outside the allow list (dropped).
    pub denied: AtomicU64,
    /// Requests over the rate (answered with KoD RATE).
    pub rate_limited: AtomicU64,
}

impl Counters {
    /// Adds one to a counter.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything shared.
#[derive(Debug)]
pub struct Shared {
    /// What to serve.
    pub serve: RwLock<ServeInfo>,
    /// Server counters.
    pub counters: Counters,
}

impl Shared {
    /// Fresh state: unsynchronised.
    pub fn new() -> Shared {
        Shared {
            serve: RwLock::new(ServeInfo::unsynchronised(0.0)),
            counters: Counters::default(),
        }
    }

    /// A copy of what to serve.
    pub fn serve_info(&self) -> ServeInfo {
        *sms_core::daemon::read(&self.serve)
    }

    /// Replaces what to serve.
    pub fn set_serve_info(&self, info: ServeInfo) {
        *sms_core::daemon::write(&self.serve) = info;
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}
