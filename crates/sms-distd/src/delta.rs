//! Binary deltas between package payloads, and full archives.
//!
//! A delta is a zstd frame compressed with the old payload as reference
//! prefix and long-distance matching over a window that spans both files:
//! exactly what `zstd --patch-from=OLD --long=W` makes, so the stock zstd
//! tool applies it too. Deltas are taken on the uncompressed payload (a
//! delta between two compressed files is nearly as large as the file);
//! transport compression is separate: a full archive is the payload in one
//! zstd frame. Both carry zstd's content checksum, and the receiver checks
//! the result against the signed digest of the target.

use std::io::{self, Read, Write};

/// Window log that lets a delta reach back over the whole old payload.
pub fn window_log(old_len: usize, new_len: usize) -> u32 {
    let span = (old_len + new_len).max(1 << 20) as u64;
    (64 - (span - 1).leading_zeros()).clamp(20, 31)
}

/// Makes the delta that turns `old` into `new` at zstd `level`
/// (1..=19; 9 is fast, 19 is smallest).
pub fn make(old: &[u8], new: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let mut enc = zstd::stream::Encoder::with_ref_prefix(Vec::new(), level, old)?;
    enc.long_distance_matching(true)?;
    enc.window_log(window_log(old.len(), new.len()))?;
    enc.include_checksum(true)?;
    enc.include_contentsize(true)?;
    enc.set_pledged_src_size(Some(new.len() as u64))?;
    enc.write_all(new)?;
    enc.finish()
}

/// Applies `delta` to `old`; refuses output longer than `max_len`.
pub fn apply(old: &[u8], delta: &[u8], max_len: u64) -> io::Result<Vec<u8>> {
    let mut dec = zstd::stream::read::Decoder::with_ref_prefix(delta, old)?;
    dec.window_log_max(31)?;
    read_bounded(dec, max_len)
}

/// Compresses a full payload for transport.
pub fn archive(payload: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let mut enc = zstd::stream::Encoder::new(Vec::new(), level)?;
    enc.long_distance_matching(true)?;
    enc.window_log(window_log(0, payload.len()).min(27))?;
    enc.include_checksum(true)?;
    enc.include_contentsize(true)?;
    enc.set_pledged_src_size(Some(payload.len() as u64))?;
    enc.write_all(payload)?;
    enc.finish()
}

/// Decompresses a full archive; refuses output longer than `max_len`.
pub fn unarchive(archive: &[u8], max_len: u64) -> io::Result<Vec<u8>> {
    let mut dec = zstd::stream::read::Decoder::new(archive)?;
    dec.window_log_max(31)?;
    read_bounded(dec, max_len)
}

fn read_bounded(r: impl Read, max_len: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(max_len + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("output exceeds {max_len} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair() -> (Vec<u8>, Vec<u8>) {
        let old: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        let mut new = old.clone();
        for i in (0..new.len()).step_by(9973) {
            new[i] ^= 0x5a;
        }
        new.extend_from_slice(b"appended records");
        (old, new)
    }

    #[test]
    fn delta_round_trips_and_is_small() {
        let (old, new) = pair();
        let d = make(&old, &new, 9).unwrap();
        assert!(
            d.len() < new.len() / 20,
            "delta {} of {}",
            d.len(),
            new.len()
        );
        assert_eq!(apply(&old, &d, new.len() as u64).unwrap(), new);
        assert!(apply(&old, &d, new.len() as u64 - 1).is_err());
    }

    #[test]
    fn delta_against_the_wrong_base_fails_its_checksum_or_differs() {
        let (old, new) = pair();
        let d = make(&old, &new, 3).unwrap();
        let mut wrong = old.clone();
        wrong[100] ^= 1;
        if let Ok(out) = apply(&wrong, &d, 1 << 30) {
            assert_ne!(out, new);
        }
    }

    #[test]
    fn stock_zstd_applies_our_delta() {
        if std::process::Command::new("zstd")
            .arg("-V")
            .output()
            .is_err()
        {
            panic!("zstd is required (make test installs it)");
        }
        let (old, new) = pair();
        let dir = tempfile::tempdir().unwrap();
        let (o, d, n) = (
            dir.path().join("old"),
            dir.path().join("delta.zst"),
            dir.path().join("new"),
        );
        std::fs::write(&o, &old).unwrap();
        std::fs::write(&d, make(&old, &new, 9).unwrap()).unwrap();
        let st = std::process::Command::new("zstd")
            .args(["-q", "-d", "--long=31", "--patch-from"])
            .arg(&o)
            .arg(&d)
            .arg("-o")
            .arg(&n)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read(&n).unwrap(), new);
    }

    #[test]
    fn archive_round_trips() {
        let (_, new) = pair();
        let a = archive(&new, 3).unwrap();
        assert_eq!(unarchive(&a, new.len() as u64).unwrap(), new);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn garbage_deltas_never_panic(old in proptest::collection::vec(any::<u8>(), 0..512),
                                      junk in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = apply(&old, &junk, 1 << 20);
            let _ = unarchive(&junk, 1 << 20);
        }
    }
}
