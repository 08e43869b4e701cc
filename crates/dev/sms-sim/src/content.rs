//! Generated package content of realistic shape and size.
//!
//! A DV package is a file of fixed-width rule records; each new DV changes
//! about 2 % of the records of the previous one and adds a few, as real
//! signature updates do (which is what makes deltas worthwhile). A TOS image
//! is incompressible bytes, like a compressed OS image.

use rand::{RngCore, SeedableRng};

/// Width of one DV rule record in bytes, newline included.
pub const RECORD_LEN: usize = 128;

fn record(id: u64, rng: &mut impl RngCore, out: &mut Vec<u8>) {
    let mut raw = [0u8; 48];
    rng.fill_bytes(&mut raw);
    let head = format!("{id:010} block tcp any any sid={:08x} pat=", rng.next_u32());
    let mut line = head.into_bytes();
    line.extend_from_slice(hex::encode(raw).as_bytes());
    line.resize(RECORD_LEN - 1, b'0');
    line.push(b'\n');
    out.extend_from_slice(&line);
}

/// The first DV of a series: `size` bytes (rounded down to whole records,
/// at least one).
pub fn first_dv(seed: u64, size: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = (size / RECORD_LEN).max(1);
    let mut out = Vec::with_capacity(n * RECORD_LEN);
    for id in 0..n as u64 {
        record(id, &mut rng, &mut out);
    }
    out
}

/// The DV after `prev`: about 2 % of records rewritten, 0.5 % appended.
pub fn next_dv(prev: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = prev.len() / RECORD_LEN;
    let mut out = Vec::with_capacity(prev.len() + prev.len() / 100);
    let mut scratch = Vec::with_capacity(RECORD_LEN);
    for (id, chunk) in prev.chunks(RECORD_LEN).enumerate() {
        if rng.next_u32() % 50 == 0 {
            scratch.clear();
            record(id as u64, &mut rng, &mut scratch);
            out.extend_from_slice(&scratch);
        } else {
            out.extend_from_slice(chunk);
        }
    }
    let extra = (n / 200).max(1);
    for id in n..n + extra {
        record(id as u64, &mut rng, &mut out);
    }
    out
}

/// A TOS image of `size` bytes.
pub fn tos_image(seed: u64, size: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; size];
    rng.fill_bytes(&mut out);
    out
}

/// Parses a size such as `8M`, `512K`, `1G` or plain bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1usize << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .map(|n| n * mult)
        .map_err(|_| format!("invalid size {s:?} (e.g. 8M, 512K, 1048576)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_dv_changes_a_small_fraction() {
        let a = first_dv(1, 1 << 20);
        let b = next_dv(&a, 2);
        assert!(b.len() > a.len());
        let changed = a
            .chunks(RECORD_LEN)
            .zip(b.chunks(RECORD_LEN))
            .filter(|(x, y)| x != y)
            .count();
        let n = a.len() / RECORD_LEN;
        assert!(changed > n / 100 && changed < n / 25, "{changed} of {n}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("8M").unwrap(), 8 << 20);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("x").is_err());
    }
}
