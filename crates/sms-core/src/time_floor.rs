//! The time floor: the issue time of the newest signed catalog the updater
//! accepted.
//!
//! Catalog expiry is judged by the system clock, and the clock is set from
//! unauthenticated upstream NTP servers. The floor closes that loop: a
//! vendor-signed catalog proves that its issue time has passed, so the NTP
//! relay never sets the clock before it (a forged NTP answer cannot roll the
//! appliance back into the validity window of an old, revoked catalog).
//! The updater raises the floor when it accepts a catalog; the relay reads
//! it. It is one decimal number of Unix seconds in a small file, mode 0640
//! (group `sms` reads it), replaced atomically.

use std::path::Path;

/// Name of the floor file in the updater's state directory.
pub const FILE_NAME: &str = "time-floor";

/// Reads the floor; `None` when there is none yet or the file is damaged
/// (a damaged floor is no reason to stop keeping time).
pub fn read(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse::<i64>().ok().filter(|t| *t > 0)
}

/// Raises the floor to `issued` (Unix seconds) if that is later than the
/// floor on file; never lowers it. Returns the floor now in force.
pub fn raise(path: &Path, issued: i64) -> std::io::Result<i64> {
    if let Some(current) = read(path) {
        if current >= issued {
            return Ok(current);
        }
    }
    crate::files::write_atomic(path, format!("{issued}\n").as_bytes(), 0o640)?;
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_only_rises() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        assert_eq!(read(&p), None);
        assert_eq!(raise(&p, 2000).unwrap(), 2000);
        assert_eq!(raise(&p, 1000).unwrap(), 2000);
        assert_eq!(read(&p), Some(2000));
        assert_eq!(raise(&p, 3000).unwrap(), 3000);
        std::fs::write(&p, "garbage").unwrap();
        assert_eq!(read(&p), None);
        use std::os::unix::fs::PermissionsExt;
        raise(&p, 4000).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}
