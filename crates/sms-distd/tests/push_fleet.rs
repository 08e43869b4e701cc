//! A DV pushed to 1,000 simulated devices, 5 % of them faulty in each way
//! a fleet fails; then a second job whose canary wave crosses a stricter
//! failure threshold and stops.

mod common;

use common::Harness;
use sms_distd::inventory::DeviceState;
use sms_distd::job::JobState;
use sms_sim::fleet::{DeviceFault, FleetFaults};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

const DEVICES: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dv_to_a_thousand_devices_with_faults_then_a_wave_stops() {
    let mut h = Harness::new().await;
    let dv1 = h.new_dv(256 << 10).await;
    let faults = FleetFaults {
        unreachable: 0.05,
        slow_link: 0.05,
        slow_link_bps: 512 << 10,
        reset_mid_upload: 0.05,
        reset_times: 1,
        install_failure: 0.05,
        wrong_certificate: 0.05,
    };
    h.start_fleet(
        DEVICES,
        Ipv4Addr::new(127, 31, 0, 1),
        18443,
        faults,
        Duration::from_millis(200),
    )
    .await;
    h.config.push.max_parallel = 100;
    h.start().await;
    h.import_fleet(|i| if i % 2 == 0 { "even" } else { "odd" })
        .await;

    let id = h.distribute("dv", &dv1.version, "all").await;
    let r = h.wait_job(id, Duration::from_secs(300)).await;
    let fleet = h.fleet.as_ref().unwrap();
    let devices = fleet.devices();
    let statuses = fleet.statuses();
    assert_eq!(r.job.state, JobState::Completed, "{r:?}");
    let count = |f: DeviceFault| devices.iter().filter(|d| d.fault == Some(f)).count();
    for f in DeviceFault::ALL {
        assert_eq!(count(f), DEVICES / 20, "{f:?}");
    }
    let failing = count(DeviceFault::Unreachable)
        + count(DeviceFault::InstallFailure)
        + count(DeviceFault::WrongCertificate);
    assert_eq!(
        r.counts.get("done").copied(),
        Some(DEVICES - failing),
        "{:?}",
        r.counts
    );
    assert_eq!(
        r.counts.get("failed").copied(),
        Some(failing),
        "{:?}",
        r.counts
    );

    let reasons: BTreeMap<&str, &str> = r
        .failures
        .iter()
        .map(|(d, why)| (d.as_str(), why.as_str()))
        .collect();
    let inventory: BTreeMap<String, _> = h
        .devices()
        .await
        .into_iter()
        .map(|d| (d.name.clone(), d))
        .collect();
    let key = format!("dv/{}", dv1.version);
    for (d, st) in devices.iter().zip(&statuses) {
        let inv = &inventory[&d.name];
        match d.fault {
            Some(DeviceFault::Unreachable) => {
                assert!(
                    reasons[d.name.as_str()].starts_with("unreachable"),
                    "{}",
                    reasons[d.name.as_str()]
                );
                assert_eq!(inv.state, DeviceState::Unreachable);
            }
            Some(DeviceFault::InstallFailure) => {
                assert!(
                    reasons[d.name.as_str()].contains("install failed on the device"),
                    "{}",
                    reasons[d.name.as_str()]
                );
                assert_eq!(st.uploads.get(&key), Some(&1));
                assert_eq!(inv.state, DeviceState::Failed);
            }
            Some(DeviceFault::WrongCertificate) => {
                assert!(
                    reasons[d.name.as_str()].starts_with("certificate refused"),
                    "{}",
                    reasons[d.name.as_str()]
                );
                assert!(
                    st.uploads.is_empty(),
                    "nothing may be sent to an untrusted device"
                );
            }
            _ => {
                // Healthy, slow, and reset-once devices all end done, each
                // with exactly one complete upload.
                assert_eq!(
                    st.dv.as_deref(),
                    Some(dv1.version.to_string().as_str()),
                    "{}",
                    d.name
                );
                assert_eq!(st.uploads.get(&key), Some(&1), "{}", d.name);
                assert_eq!(inv.dv.as_deref(), Some(dv1.version.to_string().as_str()));
                assert_eq!(inv.state, DeviceState::Ok);
                assert!(inv.last_contact.is_some());
            }
        }
    }
    let log = h.log_text();
    assert!(
        log.contains("connection reset") || log.contains("transfer failed"),
        "retries of reset uploads are logged"
    );

    // A second job with a 5 % threshold: the canary wave (5 % of the
    // devices) has about 15 % permanent failures, so later waves never start.
    h.stop();
    h.config.push.max_failure_rate = 0.05;
    h.start().await;
    let dv2 = h.new_dv(256 << 10).await;
    let id2 = h.distribute("dv", &dv2.version, "all").await;
    assert_ne!(id2, id);
    let r2 = h.wait_job(id2, Duration::from_secs(300)).await;
    assert_eq!(r2.job.state, JobState::Stopped, "{r2:?}");
    let reason = r2.job.reason.clone().unwrap_or_default();
    assert!(reason.starts_with("wave 1 of"), "{reason}");
    let canary: std::collections::BTreeSet<&String> = r2.job.waves[0].iter().collect();
    assert_eq!(canary.len(), DEVICES / 20);
    let key2 = format!("dv/{}", dv2.version);
    for (d, st) in devices.iter().zip(h.fleet.as_ref().unwrap().statuses()) {
        if !canary.contains(&d.name) {
            assert!(
                !st.uploads.contains_key(&key2),
                "{} got the package from a stopped job",
                d.name
            );
        }
    }
    assert_eq!(
        r2.counts.get("queued").copied(),
        Some(DEVICES - DEVICES / 20),
        "{:?}",
        r2.counts
    );

    // The first job's report survived the restart.
    let again = h.job(id).await;
    assert_eq!(again.counts, r.counts);

    // A group target reaches only its group.
    let id3 = h.distribute("dv", &dv2.version, "group:even").await;
    let r3 = h.job(id3).await;
    assert_eq!(
        r3.job.waves.iter().map(Vec::len).sum::<usize>(),
        DEVICES / 2
    );
    let _ = h.wait_job(id3, Duration::from_secs(300)).await;
}
