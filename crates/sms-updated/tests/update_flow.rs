//! The update flow end to end against the simulated update centre.

mod common;

use common::Harness;
use sms_sim::Faults;
use std::time::Duration;

const MB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_dv_cycle_ends_with_newest_active_and_confirmed() {
    let mut h = Harness::new().await;
    let first = h.sim.publish_dv(2 * MB);
    let mut cfg = h.config();
    cfg.dv.check_interval = Duration::from_secs(1);
    h.start(&cfg).await;
    let v1 = first.version.to_string();
    h.wait_status("first DV active", 60, |s| {
        s.active_dv.as_deref() == Some(v1.as_str())
    })
    .await;

    // Two newer versions appear between checks: the newest wins.
    let second = h.sim.publish_dv(2 * MB);
    let third = h.sim.publish_dv(2 * MB);
    let v3 = third.version.to_string();
    let st = h
        .wait_status("newest DV active", 60, |s| {
            s.active_dv.as_deref() == Some(v3.as_str()) && s.pending_confirmations == 0
        })
        .await;
    assert!(!st.last_error, "{st:?}");

    let dv = h.list("dv").await;
    let versions: Vec<&str> = dv.iter().map(|p| p.version.as_str()).collect();
    assert!(
        versions.contains(&v1.as_str()) && versions.contains(&v3.as_str()),
        "{versions:?}"
    );
    assert!(
        !versions.contains(&second.version.to_string().as_str()),
        "skipped version was downloaded: {versions:?}"
    );
    assert!(dv.iter().find(|p| p.version == v3).unwrap().active);

    // The stored file is byte for byte what the update centre published.
    let stored = std::fs::read(h.blob_dir().join("sha256").join(third.sha256.to_hex())).unwrap();
    assert_eq!(&stored[..], &h.sim.file(&third.file).unwrap()[..]);

    let confirmed = h.confirmed_versions();
    assert!(
        confirmed.contains(&v1) && confirmed.contains(&v3),
        "{confirmed:?}"
    );
    let log = h.log_text();
    assert!(log.contains("MiB/s"), "no progress in the log:\n{log}");
    assert!(h.temp_files().is_empty());
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tos_is_manual_and_downloads_every_platform_family() {
    let mut h = Harness::new().await;
    let tos = h.sim.publish_tos(MB);
    h.sim.publish_dv(MB);
    h.start(&h.config()).await;
    h.check_now().await;
    assert!(
        h.list("tos").await.is_empty(),
        "TOS was downloaded without being asked for"
    );

    let avail = h.call("Refresh", &("tos",)).await.unwrap();
    let avail: Vec<sms_core::bus::AvailableVersion> = serde_json::from_str(&avail).unwrap();
    let version = tos[0].version.to_string();
    let entry = avail
        .iter()
        .find(|a| a.version == version)
        .expect("version listed");
    assert_eq!(entry.families.len(), 3);
    assert!(!entry.downloaded);

    let started = h
        .call("Download", &("tos", version.as_str()))
        .await
        .unwrap();
    assert!(started.contains("started"), "{started}");
    h.wait_status("TOS downloaded", 60, |s| {
        s.last_result
            .as_deref()
            .is_some_and(|r| r.contains("TOS") && r.contains("downloaded"))
    })
    .await;
    let list = h.list("tos").await;
    let mut families: Vec<String> = list.iter().filter_map(|p| p.family.clone()).collect();
    families.sort();
    assert_eq!(families, vec!["200-2400", "50-100E", "5000E"]);
    for e in &tos {
        let stored = std::fs::read(h.blob_dir().join("sha256").join(e.sha256.to_hex())).unwrap();
        assert_eq!(stored.len() as u64, e.length);
    }
    let confirmed = h
        .sim
        .stats()
        .confirmations
        .iter()
        .filter(|c| c.channel == sms_core::package::Channel::Tos)
        .count();
    assert_eq!(confirmed, 3);

    // Activation is explicit and refused for versions not downloaded.
    assert!(h.call("Activate", &("tos", "9.9.9")).await.is_err());
    h.call("Activate", &("tos", version.as_str()))
        .await
        .unwrap();
    assert_eq!(
        h.status().await.active_tos.as_deref(),
        Some(version.as_str())
    );
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_port_4043_semantics_work_too() {
    let mut h = Harness::new().await;
    let dv = h.sim.publish_dv(MB);
    let mut cfg = h.config();
    cfg.tmc.port = h.sim.info.tmc_legacy_port;
    h.start(&cfg).await;
    let v = dv.version.to_string();
    h.wait_status("DV active via legacy port", 60, |s| {
        s.active_dv.as_deref() == Some(v.as_str())
    })
    .await;
    let stats = h.sim.stats();
    assert!(stats.legacy_requests >= 3, "{stats:?}");
    assert_eq!(stats.legacy_requests, stats.tmc_requests);
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_proxy_carries_all_traffic() {
    let mut h = Harness::with_sim(|c| c.proxy_port = Some(0)).await;
    let dv = h.sim.publish_dv(MB);
    let mut cfg = h.config();
    cfg.proxy.url = format!("http://{}", h.sim.info.proxy.unwrap());
    // Through a proxy the appliance resolves nothing itself: a dead DNS
    // server must not matter.
    cfg.dns.servers = vec!["127.0.0.1:9".parse().unwrap()];
    h.start(&cfg).await;
    let v = dv.version.to_string();
    h.wait_status("DV active through proxy", 60, |s| {
        s.active_dv.as_deref() == Some(v.as_str())
    })
    .await;
    let ctl = h.sim.proxy_control().unwrap();
    assert!(ctl.tunnels.load(std::sync::atomic::Ordering::Relaxed) >= 3);
    assert!(ctl.forwards.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_with_credentials_refuses_wrong_ones_and_accepts_right_ones() {
    let mut h = Harness::with_sim(|c| {
        c.proxy_port = Some(0);
        c.proxy_credentials = Some(("sms".into(), "s3cret".into()));
    })
    .await;
    let dv = h.sim.publish_dv(MB);
    let mut cfg = h.config();
    cfg.proxy.url = format!("http://{}", h.sim.info.proxy.unwrap());
    cfg.proxy.username = "sms".into();
    cfg.proxy.password = "wrong".into();
    h.start(&cfg).await;
    let st = h.check_now().await;
    assert!(st.last_error);
    assert!(
        st.last_result
            .as_deref()
            .unwrap_or_default()
            .contains("requires authentication"),
        "{st:?}"
    );
    assert!(h.running());
    h.stop();

    cfg.proxy.password = "s3cret".into();
    h.start(&cfg).await;
    let v = dv.version.to_string();
    h.wait_status("DV active through authenticated proxy", 60, |s| {
        s.active_dv.as_deref() == Some(v.as_str())
    })
    .await;
    h.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_download_resumes_with_range() {
    let mut h = Harness::new().await;
    let size = 8 * MB;
    let dv = h.sim.publish_dv(size);
    h.sim.set_faults(Faults {
        cut_after: Some(3 * MB as u64),
        cuts: 2,
        ..Default::default()
    });
    h.start(&h.config()).await;
    let v = dv.version.to_string();
    h.wait_status("DV active after cuts", 60, |s| {
        s.active_dv.as_deref() == Some(v.as_str())
    })
    .await;
    let stats = h.sim.stats();
    let sent = stats.cdn_bytes.get(&dv.file).copied().unwrap_or(0);
    assert!(sent >= dv.length, "{sent}");
    assert!(
        (sent as f64) < 1.2 * dv.length as f64,
        "fetched {sent} bytes for a {} byte file",
        dv.length
    );
    assert!(stats.cdn_requests >= 3, "{stats:?}");
    let log = h.log_text();
    assert!(log.contains("resuming dv/"), "{log}");
    h.stop();
}

/// The signed envelope that vouched for a package is what the distributor
/// hands devices and what the pull server serves as catalog.json; start-up
/// recovery once removed it, so distribution failed after any restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_envelopes_survive_a_restart() {
    let mut h = Harness::new().await;
    let dv = h.sim.publish_dv(MB);
    let v = dv.version.to_string();
    let cfg = h.config();
    h.start(&cfg).await;
    h.wait_status("DV active", 60, |s| {
        s.active_dv.as_deref() == Some(v.as_str())
    })
    .await;
    let before = h.list("dv").await;
    let envelope = before[0]
        .envelope_sha256
        .clone()
        .expect("the package names its envelope");
    let path = h.blob_dir().join("sha256").join(&envelope);
    assert!(path.exists(), "envelope blob missing before the restart");
    h.stop();
    // No check after the restart: a fresh catalog would put the same
    // envelope back and hide what recovery did.
    let mut quiet = cfg.clone();
    quiet.dv.auto_check = false;
    h.start(&quiet).await;
    let after = h.list("dv").await;
    assert_eq!(after[0].envelope_sha256.as_deref(), Some(envelope.as_str()));
    assert!(
        path.exists(),
        "start-up recovery removed the envelope of an active package:\n{}",
        h.log_text()
    );
    h.stop();
}

/// A TOS version is one image per platform family: with one family's image
/// refused (tampered at the CDN) the others are on the appliance, and
/// activation must wait until every family is verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tos_with_a_family_missing_is_not_activated() {
    let mut h = Harness::new().await;
    let tos = h.sim.publish_tos(MB);
    h.sim.publish_dv(MB);
    let mut cfg = h.config();
    cfg.download.attempts = 1;
    h.start(&cfg).await;
    h.check_now().await;
    h.sim.set_faults(Faults {
        tamper: true,
        tamper_only: Some("5000E".into()),
        ..Default::default()
    });
    let version = tos[0].version.to_string();
    h.call("Refresh", &("tos",)).await.unwrap();
    let before = h.status().await.completed_operations;
    h.call("Download", &("tos", version.as_str()))
        .await
        .unwrap();
    let st = h
        .wait_status("TOS download ended", 60, |s| {
            s.completed_operations > before && s.state == "idle"
        })
        .await;
    assert!(st.last_error, "one family was tampered with: {st:?}");
    let mut families: Vec<String> = h
        .list("tos")
        .await
        .into_iter()
        .filter_map(|p| p.family)
        .collect();
    families.sort();
    assert_eq!(families, vec!["200-2400", "50-100E"]);
    let refused = h
        .call("Activate", &("tos", version.as_str()))
        .await
        .expect_err("an incomplete TOS version was activated");
    assert!(
        refused.to_string().contains("no verified image for 5000E"),
        "{refused}"
    );
    assert_eq!(h.status().await.active_tos, None);

    // Once the CDN serves the image intact, the version downloads whole
    // and activates.
    h.sim.set_faults(Faults::default());
    let before = h.status().await.completed_operations;
    h.call("Download", &("tos", version.as_str()))
        .await
        .unwrap();
    let st = h
        .wait_status("TOS complete", 60, |s| {
            s.completed_operations > before && s.state == "idle"
        })
        .await;
    assert!(!st.last_error, "{st:?}");
    h.call("Activate", &("tos", version.as_str()))
        .await
        .unwrap();
    assert_eq!(
        h.status().await.active_tos.as_deref(),
        Some(version.as_str())
    );
    h.stop();
}
