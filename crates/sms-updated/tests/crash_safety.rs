#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The daemon is killed with SIGKILL at random points of the update flow
//! (during downloads, verification and activation); after every kill the
//! store is consistent, and after a restart the work completes.

mod common;

use common::Harness;
use rand::{Rng, SeedableRng};
use sms_core::blob::BlobStore;
use sms_core::package::Version;
use sms_sim::Faults;
use std::time::{Duration, Instant};

const MB: usize = 1 << 20;

#[derive(serde::Deserialize)]
struct Record {
    entry: sms_core::package::PackageEntry,
}

/// Opens the dead daemon's store and checks every invariant.
fn assert_consistent(h: &Harness, round: &str) {
    let store = h.open_store();
    let out = store.outbox_after(0, usize::MAX).unwrap();
    let last = store.last_seq().unwrap();
    for w in out.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "{round}: gap in the outbox");
    }
    assert_eq!(
        out.last().map(|c| c.seq).unwrap_or(0),
        last,
        "{round}: outbox end"
    );
    let blobs = BlobStore::open(&h.blob_dir()).unwrap();
    let records: Vec<Record> = store.scan_json("packages", "").unwrap();
    for r in &records {
        let len = blobs.verify(&r.entry.sha256).unwrap_or_else(|e| {
            panic!(
                "{round}: recorded package {} has no valid file: {e}",
                r.entry.key()
            )
        });
        assert_eq!(len, r.entry.length, "{round}");
    }
    if let Some(active) = store.get("active", "dv").unwrap() {
        let v: Version = String::from_utf8(active).unwrap().parse().unwrap();
        assert!(
            records.iter().any(|r| r.entry.version == v),
            "{round}: active DV {v} has no package record"
        );
    }
    // Every complete blob in the store matches its name.
    for d in blobs.list().unwrap() {
        blobs
            .verify(&d)
            .unwrap_or_else(|e| panic!("{round}: blob {d} is corrupt: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_never_corrupts_and_work_completes() {
    let seed: u64 = std::env::var("SMS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (set SMS_TEST_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut h = Harness::new().await;
    h.sim.publish_dv(8 * MB);
    // About 1.3 s per download, so that kills land inside transfers.
    h.sim.set_faults(Faults {
        rate_bps: Some(6 * MB as u64),
        ..Default::default()
    });
    let mut cfg = h.config();
    cfg.dv.check_interval = Duration::from_secs(1);

    for round in 0..8 {
        if round == 4 {
            h.sim.publish_dv(8 * MB);
        }
        h.start(&cfg).await;
        let wait = rng.gen_range(20..1600);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        h.kill();
        assert_consistent(&h, &format!("random kill {round} after {wait} ms"));
    }

    // Kill as soon as a verified package is reported: that lands in the
    // window of recording, confirming and activating.
    for round in 0..3 {
        h.sim.publish_dv(2 * MB);
        let marker = h.log_text().matches("verified (sha256").count();
        h.start(&cfg).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while h.log_text().matches("verified (sha256").count() == marker {
            assert!(
                Instant::now() < deadline,
                "no download finished:\n{}",
                h.log_text()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        h.kill();
        assert_consistent(&h, &format!("activation kill {round}"));
    }

    // Back to normal service: the newest DV ends active and confirmed.
    h.sim.set_faults(Faults::default());
    let newest = h.sim.publish_dv(2 * MB).version.to_string();
    h.start(&cfg).await;
    h.wait_status("newest DV active after the kills", 90, |s| {
        s.active_dv.as_deref() == Some(newest.as_str()) && s.pending_confirmations == 0
    })
    .await;
    h.stop();
    assert_consistent(&h, "final");
    let confirmed = h.confirmed_versions();
    assert!(confirmed.contains(&newest), "{confirmed:?}");
    assert!(h.temp_files().is_empty(), "{:?}", h.temp_files());
}

/// A restart in the middle of a DV download, then a newer DV published:
/// the automatic cycle fetches only the newest, so the older partial file
/// is removed rather than left on the data partition for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_of_a_superseded_dv_is_removed() {
    let mut h = Harness::new().await;
    h.sim.publish_dv(8 * MB);
    h.sim.set_faults(Faults {
        rate_bps: Some(MB as u64),
        ..Default::default()
    });
    let cfg = h.config();
    h.start(&cfg).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.temp_files().is_empty() {
        assert!(Instant::now() < deadline, "no download started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.kill();
    h.sim.set_faults(Faults::default());
    let newest = h.sim.publish_dv(MB).version.to_string();
    h.start(&cfg).await;
    h.wait_status("newest DV active", 60, |s| {
        s.active_dv.as_deref() == Some(newest.as_str())
    })
    .await;
    h.stop();
    assert!(h.temp_files().is_empty(), "{:?}", h.temp_files());
    assert_consistent(&h, "after the newer DV");
}
