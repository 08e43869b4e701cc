#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! Bad input from the outside world: each case ends with a clear logged
//! reason, the previous version still active, no partial file left in the
//! blob store, and the daemon still running.

mod common;

use common::Harness;
use sms_sim::Faults;
use sms_updated::config::UpdaterConfig;
use std::time::Duration;

const MB: usize = 1 << 20;

/// Starts with one DV active; returns its version.
async fn with_active_dv(h: &mut Harness, cfg: &UpdaterConfig) -> String {
    let dv = h.sim.publish_dv(MB);
    h.start(cfg).await;
    let v = dv.version.to_string();
    h.wait_status("first DV active", 60, |s| {
        s.active_dv.as_deref() == Some(v.as_str())
    })
    .await;
    v
}

/// Publishes a newer DV, runs a check, and asserts the refusal.
async fn newer_dv_is_refused(h: &mut Harness, active: &str, reason: &str) {
    h.sim.publish_dv(MB);
    let st = h.check_now().await;
    assert!(st.last_error, "check did not fail: {st:?}");
    let result = st.last_result.clone().unwrap_or_default();
    assert!(result.contains(reason), "expected {reason:?} in {result:?}");
    assert!(
        h.log_text().contains(reason),
        "reason {reason:?} not logged:\n{}",
        h.log_text()
    );
    assert_eq!(
        st.active_dv.as_deref(),
        Some(active),
        "active version changed"
    );
    assert!(
        h.temp_files().is_empty(),
        "partial files left: {:?}",
        h.temp_files()
    );
    assert!(h.running(), "daemon died");
    // The refused version is not recorded as downloaded.
    let listed: Vec<String> = h.list("dv").await.into_iter().map(|p| p.version).collect();
    assert_eq!(listed, vec![active.to_string()]);
}

async fn fault_case(faults: Faults, reason: &str) {
    let mut h = Harness::new().await;
    let cfg = h.config();
    let active = with_active_dv(&mut h, &cfg).await;
    h.sim.set_faults(faults);
    newer_dv_is_refused(&mut h, &active, reason).await;
    // Service recovers once the world behaves again.
    h.sim.set_faults(Faults::default());
    let st = h.check_now().await;
    assert!(!st.last_error, "{st:?}");
    assert_ne!(st.active_dv.as_deref(), Some(active.as_str()));
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_package() {
    fault_case(
        Faults {
            tamper: true,
            ..Default::default()
        },
        "digest mismatch",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_signature() {
    fault_case(
        Faults {
            wrong_key: true,
            ..Default::default()
        },
        "signature check failed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_metadata() {
    fault_case(
        Faults {
            expired: true,
            ..Default::default()
        },
        "expired at",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_download() {
    fault_case(
        Faults {
            truncate: true,
            ..Default::default()
        },
        "truncated download",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_download() {
    fault_case(
        Faults {
            stall: true,
            ..Default::default()
        },
        "transfer stalled",
    )
    .await;
}

/// A CDN that never stalls but trickles (about 200 bytes/s, in pieces four
/// times a second) is ended by the minimum rate instead of holding the
/// updater's operation lock for hours; what arrived is kept, and the next
/// check resumes from it and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_download_is_ended_and_resumed_later() {
    let mut h = Harness::new().await;
    let mut cfg = h.config();
    cfg.download.min_rate_bps = 4096;
    cfg.download.min_rate_window = Duration::from_secs(2);
    cfg.download.attempts = 2;
    let active = with_active_dv(&mut h, &cfg).await;
    h.sim.set_faults(Faults {
        rate_bps: Some(200),
        ..Default::default()
    });
    h.sim.publish_dv(MB);
    let st = h.check_now().await;
    assert!(st.last_error, "check did not fail: {st:?}");
    let result = st.last_result.clone().unwrap_or_default();
    assert!(result.contains("transfer too slow"), "{result}");
    assert!(h.log_text().contains("below the minimum of 4096 bytes/s"));
    assert_eq!(st.active_dv.as_deref(), Some(active.as_str()));
    assert!(h.running(), "daemon died");

    h.sim.set_faults(Faults::default());
    let st = h.check_now().await;
    assert!(!st.last_error, "{st:?}");
    assert_ne!(st.active_dv.as_deref(), Some(active.as_str()));
    assert!(
        h.log_text().contains("resuming"),
        "the trickled bytes were not reused:\n{}",
        h.log_text()
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_centre_5xx() {
    fault_case(
        Faults {
            tmc_status: Some(503),
            ..Default::default()
        },
        "answered 503",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_name_that_does_not_resolve() {
    fault_case(
        Faults {
            cdn_host: Some("nowhere.sim.test".into()),
            ..Default::default()
        },
        "cannot resolve nowhere.sim.test",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_an_older_catalog() {
    let mut h = Harness::new().await;
    let cfg = h.config();
    let first = with_active_dv(&mut h, &cfg).await;
    let second = h.sim.publish_dv(MB).version.to_string();
    let st = h.check_now().await;
    assert_eq!(st.active_dv.as_deref(), Some(second.as_str()), "{st:?}");
    assert_ne!(first, second);
    // The update centre (or a man in the middle) now serves the old catalog.
    h.sim.set_faults(Faults {
        rollback: true,
        ..Default::default()
    });
    let st = h.check_now().await;
    assert!(st.last_error);
    let result = st.last_result.unwrap_or_default();
    assert!(
        result.contains("rollback refused: catalog version 1 is older than version 2"),
        "{result}"
    );
    assert_eq!(st.active_dv.as_deref(), Some(second.as_str()));
    assert!(h.running());
    // The refusal survives a restart: the seen version is persistent.
    h.stop();
    h.start(&cfg).await;
    let st = h.check_now().await;
    assert!(st
        .last_result
        .unwrap_or_default()
        .contains("rollback refused"));
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_server_down() {
    let mut h = Harness::new().await;
    let mut cfg = h.config();
    let active = with_active_dv(&mut h, &cfg).await;
    h.stop();
    // Nothing listens on this port: every query goes unanswered.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    cfg.dns.servers = vec![dead_addr];
    h.start(&cfg).await;
    newer_dv_is_refused(&mut h, &active, "cannot resolve tmc.sim.test").await;
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_refusing() {
    let mut h = Harness::with_sim(|c| c.proxy_port = Some(0)).await;
    let mut cfg = h.config();
    cfg.proxy.url = format!("http://{}", h.sim.info.proxy.unwrap());
    let active = with_active_dv(&mut h, &cfg).await;
    h.sim
        .proxy_control()
        .unwrap()
        .refuse
        .store(true, std::sync::atomic::Ordering::Relaxed);
    newer_dv_is_refused(&mut h, &active, "refused").await;
    assert!(h.log_text().contains("403 Forbidden"));
    h.stop();
}

/// Mounts a small tmpfs (needs root, as `make test` runs) for the blob store.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: std::path::PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir_all(&path).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(
            st.success(),
            "mounting a tmpfs failed: the disk-full test needs root"
        );
        SmallDisk { path }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full() {
    let mut h = Harness::new().await;
    let _disk = SmallDisk::mount(h.blob_dir(), "3m");
    let cfg = h.config();
    let active = with_active_dv(&mut h, &cfg).await;
    // An 8 MB package cannot fit on the 3 MB file system.
    h.sim.publish_dv(8 * MB);
    let st = h.check_now().await;
    assert!(st.last_error);
    let result = st.last_result.unwrap_or_default();
    assert!(result.contains("disk full"), "{result}");
    assert_eq!(st.active_dv.as_deref(), Some(active.as_str()));
    assert!(h.temp_files().is_empty(), "{:?}", h.temp_files());
    assert!(h.running());

    // Mid-transfer exhaustion: the space check passes, then the disk fills.
    h.stop();
    let mut cfg = cfg;
    cfg.download.stall_timeout = Duration::from_secs(5);
    h.start(&cfg).await;
    let filler = h.blob_dir().join("filler");
    let free = sms_updated::download::free_bytes(&h.blob_dir()).unwrap();
    // Leave room for the space check of a 1 MB package but not for a 2 MB one.
    std::fs::write(
        &filler,
        vec![0u8; (free as usize).saturating_sub(3 * MB / 2)],
    )
    .unwrap();
    h.sim.publish_dv(2 * MB);
    let st = h.check_now().await;
    assert!(st.last_error);
    assert!(
        st.last_result
            .clone()
            .unwrap_or_default()
            .contains("disk full"),
        "{st:?}"
    );
    assert_eq!(st.active_dv.as_deref(), Some(active.as_str()));
    assert!(h.temp_files().is_empty(), "{:?}", h.temp_files());
    assert!(h.running());
    std::fs::remove_file(&filler).unwrap();
    h.stop();
}
