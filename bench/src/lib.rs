//! Shared helpers of the benchmarks: timing, medians, ratio tables.

use std::time::{Duration, Instant};

/// Median of a set of samples.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

/// Times a future.
pub async fn time<F: std::future::Future>(f: F) -> (F::Output, Duration) {
    let t = Instant::now();
    let out = f.await;
    (out, t.elapsed())
}

/// Number of rounds, from `SMS_BENCH_ROUNDS` (default `default`).
pub fn rounds(default: usize) -> usize {
    std::env::var("SMS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(1, 100)
}

/// A peer process (simulator, nginx, chronyd) killed when the benchmark
/// ends, however it ends.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
pub mod snmp;
