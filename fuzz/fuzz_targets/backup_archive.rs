//! A backup archive comes from the customer's SFTP server: whatever its
//! bytes, opening, unlocking, verifying and reading it must never panic,
//! and nothing in it is trusted unless the signature matches.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sms_backup::archive::Archive;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("a.smsbak");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(a) = Archive::open(&path) else { return };
    let _ = a.check_firmware("0.1.0");
    // Fuzzing speed: only cheap key derivations are tried.
    if a.manifest().kdf.rounds > 2_000 {
        return;
    }
    let Ok(keys) = a.unlock("fuzzing pass phrase") else { return };
    if a.verify(&keys).is_ok() {
        for i in 0..a.manifest().entries.len() {
            let _ = a.open_entry(&keys, i);
        }
    }
});
