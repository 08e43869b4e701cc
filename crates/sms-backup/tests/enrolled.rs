#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! Format 2, what scheduled backups write: sealed to the public key of an
//! enrolled pass phrase and signed by the appliance's key the pass phrase
//! approved, with nobody typing the pass phrase. Restored with the pass
//! phrase; a wrong one, a signer it never approved, and any changed byte
//! refused with nothing changed.

mod common;

use common::{files, populate, records, refused, PASS, ROUNDS};
use sms_backup::archive::{
    ArchiveError, ArchiveWriter, Enrolment, EntryKind, Ownership, FORMAT_ENROLLED,
};
use sms_backup::capture::{capture, CaptureOptions, Sealing, StoreAccess};
use sms_backup::layout::Layout;
use sms_backup::restore::verify;
use std::path::Path;

fn take(root: &Path, out: &Path, enrolment: &Enrolment, key: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let opts = CaptureOptions {
        packages: false,
        firmware: sms_backup::FIRMWARE_VERSION.into(),
        hostname: "sms-lab".into(),
        rounds: ROUNDS,
    };
    rt.block_on(capture(
        &Layout {
            root: root.to_path_buf(),
        },
        Sealing::Enrolled {
            enrolment,
            signing_key: key,
        },
        &opts,
        StoreAccess::Direct,
        out,
        &mut |_| {},
    ))
    .unwrap();
}

#[test]
fn a_backup_sealed_to_the_enrolment_restores_with_the_pass_phrase() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    populate(a.path());
    let (enrolment, key) = Enrolment::create(PASS, ROUNDS, "2026-12-04T00:00:00Z").unwrap();
    // Nothing on the appliance holds the pass phrase or a key to open an
    // archive with.
    let json = serde_json::to_string(&enrolment).unwrap();
    assert!(!json.contains("horse"), "{json}");
    let archive = a.path().join("../scheduled.smsbak");
    take(a.path(), &archive, &enrolment, &key);

    let raw = std::fs::read(&archive).unwrap();
    for secret in [&b"s3cret"[..], b"PRIVATE KEY", b"hostname = "] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret),
            "{} in clear",
            String::from_utf8_lossy(secret)
        );
    }
    let v = verify(&archive, PASS, sms_backup::FIRMWARE_VERSION).unwrap();
    assert_eq!(v.manifest().format, FORMAT_ENROLLED);
    v.apply(
        &Layout {
            root: b.path().to_path_buf(),
        },
        false,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(files(a.path()), files(b.path()));
    assert_eq!(records(a.path()), records(b.path()));
}

#[test]
fn wrong_pass_phrases_unapproved_signers_and_changed_bytes_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    populate(&a);
    let (enrolment, key) = Enrolment::create(PASS, ROUNDS, "2026-12-04T00:00:00Z").unwrap();
    let good = work.path().join("good.smsbak");
    take(&a, &good, &enrolment, &key);

    let t = tempfile::tempdir().unwrap();
    populate(t.path());
    let (files_before, records_before) = (files(t.path()), records(t.path()));

    let e = refused(&good, "not the pass phrase at all");
    assert!(matches!(e, ArchiveError::WrongPassphrase), "{e}");

    // Someone who has the enrolment (public keys only) and a key of their
    // own cannot make an archive the pass phrase accepts.
    let (_, other_key) = Enrolment::create("another pass phrase", ROUNDS, "x").unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&other_key).unwrap();
    let forged_enrolment = Enrolment {
        signer: hex::encode(ring::signature::KeyPair::public_key(&pair).as_ref()),
        ..enrolment.clone()
    };
    let forged = work.path().join("forged.smsbak");
    take(&a, &forged, &forged_enrolment, &other_key);
    let e = refused(&forged, PASS);
    assert!(matches!(e, ArchiveError::UnapprovedSigner), "{e}");
    assert!(e.to_string().contains("never approved"), "{e}");

    // The appliance refuses to sign with a key the enrolment does not name.
    let Err(e) = ArchiveWriter::enrolled(&enrolment, &other_key, "0.1.0", "sms-lab") else {
        panic!("signed with a key that is not the enrolled one")
    };
    assert!(e.to_string().contains("not the enrolled one"), "{e}");

    let bytes = std::fs::read(&good).unwrap();
    let header_len = 12 + u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let file = |name: &str, content: &[u8]| {
        let p = work.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    };
    let mut flipped = bytes.clone();
    flipped[header_len + 40] ^= 0x01;
    assert!(matches!(
        refused(&file("flipped", &flipped), PASS),
        ArchiveError::Altered
    ));
    let mut sig = bytes.clone();
    let n = sig.len();
    sig[n - 1] ^= 0x80;
    assert!(matches!(
        refused(&file("signature", &sig), PASS),
        ArchiveError::Altered
    ));
    assert!(matches!(
        refused(&file("truncated", &bytes[..bytes.len() - 32]), PASS),
        ArchiveError::Truncated { .. }
    ));
    // The recipient keys removed: format 2 without them is refused.
    let text = String::from_utf8_lossy(&bytes[12..header_len]).to_string();
    let cut = text.find(",\"recipient\"").unwrap();
    let stripped = format!("{}}}", &text[..cut]);
    let mut edited = bytes[..8].to_vec();
    edited.extend_from_slice(&(stripped.len() as u32).to_be_bytes());
    edited.extend_from_slice(stripped.as_bytes());
    edited.extend_from_slice(&bytes[header_len..]);
    assert!(matches!(
        refused(&file("stripped", &edited), PASS),
        ArchiveError::Manifest(_)
    ));

    assert_eq!(files(t.path()), files_before);
    assert_eq!(records(t.path()), records_before);
}

mod mutations {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Any byte of a format 2 archive changed: it is refused.
        #[test]
        fn any_changed_byte_is_refused(at in 0.0f64..1.0, flip in 1u8..=255) {
            let dir = tempfile::tempdir().unwrap();
            let (enrolment, key) = Enrolment::create(PASS, ROUNDS, "2026-12-04T00:00:00Z").unwrap();
            let good = dir.path().join("good.smsbak");
            let mut w = ArchiveWriter::enrolled(&enrolment, &key, "0.1.0", "sms-lab").unwrap();
            let own = Ownership { mode: 0o640, owner: "root".into(), group: "root".into() };
            w.add_dir("config", own.clone());
            w.add_sealed("config/settings.toml", EntryKind::File, b"[system]\nhostname = \"a\"\n", own.clone(), None).unwrap();
            w.add_sealed("store/snmpd", EntryKind::Store, &[7u8; 300], own, Some(3)).unwrap();
            w.write(&good, "2026-12-04T00:00:00Z", &mut |_, _| {}).unwrap();
            prop_assert!(verify(&good, PASS, "0.1.0").is_ok());
            let mut bytes = std::fs::read(&good).unwrap();
            let i = ((bytes.len() as f64) * at) as usize % bytes.len();
            bytes[i] ^= flip;
            let bad = dir.path().join("bad.smsbak");
            std::fs::write(&bad, &bytes).unwrap();
            prop_assert!(verify(&bad, PASS, "0.1.0").is_err(), "byte {} changed and accepted", i);
        }
    }
}
