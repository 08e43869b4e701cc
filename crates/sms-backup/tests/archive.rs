#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! Backups taken from a populated data partition and restored onto fresh
//! and changed ones; damaged, foreign and newer archives refused with
//! nothing changed.

mod common;

use common::{files, populate, records, refused, PASS, ROUNDS};
use sms_backup::archive::{ArchiveError, ArchiveWriter, EntryKind, Ownership};
use sms_backup::capture::{capture, CaptureOptions, StoreAccess};
use sms_backup::layout::Layout;
use sms_backup::restore::verify;
use std::path::Path;

fn opts(packages: bool) -> CaptureOptions {
    CaptureOptions {
        packages,
        firmware: sms_backup::FIRMWARE_VERSION.into(),
        hostname: "sms-lab".into(),
        rounds: ROUNDS,
    }
}

fn take(root: &Path, out: &Path, packages: bool) -> sms_backup::archive::Manifest {
    let layout = Layout {
        root: root.to_path_buf(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut lines = Vec::new();
    let (m, size) = rt
        .block_on(capture(
            &layout,
            PASS,
            &opts(packages),
            StoreAccess::Direct,
            out,
            &mut |s| lines.push(s.to_string()),
        ))
        .unwrap();
    assert_eq!(std::fs::metadata(out).unwrap().len(), size);
    assert!(
        lines.iter().any(|l| l == "store snmpd: 200 records"),
        "{lines:?}"
    );
    m
}

#[test]
fn a_backup_restored_onto_a_fresh_data_partition_is_the_same() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let archive = a.path().join("backup.smsbak");
    populate(a.path());
    let m = take(a.path(), &archive, true);
    assert!(m.entries.iter().any(|e| e.kind == EntryKind::Package));
    // Secrets and keys are sealed: no plaintext of them in the file.
    let raw = std::fs::read(&archive).unwrap();
    for secret in [&b"s3cret"[..], b"PRIVATE KEY", b"hostname = "] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret),
            "{} in clear",
            String::from_utf8_lossy(secret)
        );
    }

    let target = Layout {
        root: b.path().to_path_buf(),
    };
    let v = verify(&archive, PASS, sms_backup::FIRMWARE_VERSION).unwrap();
    let plan = v.plan(&target);
    assert!(
        plan.contains(&"add      config/settings.toml".to_string()),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|l| l.starts_with("add      store/distd (50 records)")),
        "{plan:?}"
    );
    v.apply(&target, false, &mut |_| {}).unwrap();

    assert_eq!(files(a.path()), files(b.path()));
    assert_eq!(records(a.path()), records(b.path()));
    let blobs: Vec<_> = std::fs::read_dir(b.path().join("blobs/sha256"))
        .unwrap()
        .collect();
    assert_eq!(blobs.len(), 1);
}

#[test]
fn a_restore_over_changed_settings_says_what_it_replaces_and_keeps_the_old_aside() {
    let a = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap().keep().join("backup.smsbak");
    populate(a.path());
    let before = files(a.path());
    let stores = records(a.path());
    take(a.path(), &archive, false);

    std::fs::write(
        a.path().join("config/settings.toml"),
        "[system]\nhostname = \"x\"\n",
    )
    .unwrap();
    std::fs::write(a.path().join("config/rollback/2.toml"), "later").unwrap();
    let audit = a.path().join("cli/audit.log");
    let mut trail = std::fs::read_to_string(&audit).unwrap();
    trail.push_str("admin: set system hostname x\n");
    std::fs::write(&audit, &trail).unwrap();
    {
        let s = sms_core::store::Store::open(&a.path().join("distd/state")).unwrap();
        let mut bt = sms_core::store::Batch::new();
        bt.put("devices", "zzz", b"added after the backup".to_vec());
        s.apply(&bt).unwrap();
    }
    let layout = Layout {
        root: a.path().to_path_buf(),
    };
    let v = verify(&archive, PASS, sms_backup::FIRMWARE_VERSION).unwrap();
    let plan = v.plan(&layout);
    assert!(
        plan.contains(&"replace  config/settings.toml".to_string()),
        "{plan:?}"
    );
    assert!(
        plan.contains(&"remove   config/rollback/2.toml (not in the backup)".to_string()),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|l| l.contains("config/rollback/1.toml")),
        "{plan:?}"
    );
    assert!(
        plan.contains(
            &"keep     cli/audit.log (this appliance's own audit trail is kept)".to_string()
        ),
        "{plan:?}"
    );
    v.apply(&layout, false, &mut |_| {}).unwrap();

    // The audit trail is never rolled back; everything else is as it was.
    assert_eq!(std::fs::read_to_string(&audit).unwrap(), trail);
    let mut now = files(a.path());
    let mut was = before.clone();
    now.remove("cli/audit.log");
    was.remove("cli/audit.log");
    assert_eq!(now, was);
    assert_eq!(records(a.path()), stores);
    assert_eq!(
        std::fs::read_to_string(a.path().join(".before-restore/config/rollback/2.toml")).unwrap(),
        "later"
    );
    assert_eq!(
        std::fs::read_to_string(a.path().join("updated/time-floor")).unwrap(),
        "1700000000"
    );
}

#[test]
fn damaged_foreign_and_newer_backups_are_refused_and_change_nothing() {
    let a = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    populate(a.path());
    let good = work.path().join("good.smsbak");
    take(a.path(), &good, false);
    let bytes = std::fs::read(&good).unwrap();
    let header_len = 12 + u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;

    // A restore target that must stay as it is.
    let t = tempfile::tempdir().unwrap();
    populate(t.path());
    std::fs::write(t.path().join("config/settings.toml"), "target's own").unwrap();
    let (files_before, records_before) = (files(t.path()), records(t.path()));

    let file = |name: &str, content: &[u8]| {
        let p = work.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    };
    let mut flipped = bytes.clone();
    flipped[header_len + 40] ^= 0x01;
    let e = refused(&file("flipped", &flipped), PASS);
    assert!(matches!(e, ArchiveError::Altered), "{e}");
    assert!(e.to_string().contains("altered"), "{e}");

    let e = refused(&file("truncated", &bytes[..bytes.len() - 100]), PASS);
    assert!(matches!(e, ArchiveError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");

    let mut longer = bytes.clone();
    longer.extend_from_slice(b"junk");
    let e = refused(&file("longer", &longer), PASS);
    assert!(matches!(e, ArchiveError::TrailingData { extra: 4 }), "{e}");

    let e = refused(&good, "not the pass phrase at all");
    assert!(matches!(e, ArchiveError::WrongPassphrase), "{e}");
    assert_eq!(e.to_string(), "wrong pass phrase for this backup");

    let e = refused(&file("nothing", b"PK\x03\x04 a zip file"), PASS);
    assert!(matches!(e, ArchiveError::NotABackup), "{e}");

    // A signed manifest edited by hand: its signature no longer matches.
    let text = String::from_utf8_lossy(&bytes[12..header_len]).replace("sms-lab", "sms-lbb");
    let mut edited = bytes[..12].to_vec();
    edited.extend_from_slice(text.as_bytes());
    edited.extend_from_slice(&bytes[header_len..]);
    let e = refused(&file("edited", &edited), PASS);
    assert!(matches!(e, ArchiveError::Altered), "{e}");

    // Made by a newer firmware (properly signed).
    let newer = work.path().join("newer.smsbak");
    let mut w = ArchiveWriter::with_rounds(PASS, "99.1.0", "sms-lab", ROUNDS).unwrap();
    let own = Ownership {
        mode: 0o640,
        owner: "root".into(),
        group: "root".into(),
    };
    w.add_sealed("config/settings.toml", EntryKind::File, b"x", own, None)
        .unwrap();
    w.write(&newer, "2030-01-01T00:00:00Z", &mut |_, _| {})
        .unwrap();
    let e = refused(&newer, PASS);
    assert!(matches!(e, ArchiveError::NewerFirmware { .. }), "{e}");
    assert!(e.to_string().contains("made by firmware 99.1.0"), "{e}");

    // A newer archive format is named as such.
    let text =
        String::from_utf8_lossy(&bytes[12..header_len]).replace("\"format\":1", "\"format\":7");
    let mut future = bytes[..8].to_vec();
    future.extend_from_slice(&(text.len() as u32).to_be_bytes());
    future.extend_from_slice(text.as_bytes());
    future.extend_from_slice(&bytes[header_len..]);
    let e = refused(&file("future", &future), PASS);
    assert!(matches!(e, ArchiveError::NewerFormat(7)), "{e}");

    // A manifest naming a path outside the data partition.
    let text = String::from_utf8_lossy(&bytes[12..header_len])
        .replace("\"config/settings.toml\"", "\"../../etc/shadow\"");
    let mut escape = bytes[..8].to_vec();
    escape.extend_from_slice(&(text.len() as u32).to_be_bytes());
    escape.extend_from_slice(text.as_bytes());
    escape.extend_from_slice(&bytes[header_len..]);
    let e = refused(&file("escape", &escape), PASS);
    assert!(matches!(e, ArchiveError::Manifest(_)), "{e}");

    assert_eq!(
        files(t.path()),
        files_before,
        "a refused backup changed files"
    );
    assert_eq!(
        records(t.path()),
        records_before,
        "a refused backup changed stores"
    );
}

#[test]
fn a_short_pass_phrase_is_refused_when_taking_a_backup() {
    let e = ArchiveWriter::new("short", "0.1.0", "sms-lab")
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "the pass phrase must have at least 12 characters"
    );
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any byte of an archive changed: it is refused (never restored
        /// with other content).
        #[test]
        fn any_changed_byte_is_refused(at in 0.0f64..1.0, flip in 1u8..=255) {
            let dir = tempfile::tempdir().unwrap();
            let good = dir.path().join("good.smsbak");
            let mut w = ArchiveWriter::with_rounds(PASS, "0.1.0", "sms-lab", ROUNDS).unwrap();
            let own = Ownership { mode: 0o640, owner: "root".into(), group: "root".into() };
            w.add_dir("config", own.clone());
            w.add_sealed("config/settings.toml", EntryKind::File, b"[system]\nhostname = \"a\"\n", own.clone(), None).unwrap();
            w.add_sealed("store/snmpd", EntryKind::Store, &[7u8; 300], own, Some(3)).unwrap();
            w.write(&good, "2026-12-04T00:00:00Z", &mut |_, _| {}).unwrap();
            let mut bytes = std::fs::read(&good).unwrap();
            let i = ((bytes.len() as f64) * at) as usize % bytes.len();
            bytes[i] ^= flip;
            let bad = dir.path().join("bad.smsbak");
            std::fs::write(&bad, &bytes).unwrap();
            prop_assert!(verify(&bad, PASS, "0.1.0").is_err(), "byte {} changed and accepted", i);
        }
    }
}
