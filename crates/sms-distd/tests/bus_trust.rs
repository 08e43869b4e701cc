#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! What the distributor believes on the bus: only the update daemon's own
//! `PackageActivated` (from the owner of its well-known name, on its object
//! path) starts an automatic distribution; the same signal emitted by any
//! other local process is ignored.

mod common;

use common::Harness;
use sms_core::bus::{UPDATER_INTERFACE, UPDATER_PATH};
use sms_core::package::Channel;
use sms_distd::job::JobRecord;
use sms_sim::fleet::FleetFaults;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

async fn jobs(h: &Harness) -> Vec<JobRecord> {
    h.distributor().await.jobs().await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_activation_signal_starts_no_distribution() {
    let mut h = Harness::new().await;
    let dv1 = h.new_dv(64 << 10).await;
    let dv2 = h.new_dv(64 << 10).await;
    h.start_fleet(
        2,
        Ipv4Addr::new(127, 33, 0, 1),
        sms_testkit::free_port(),
        FleetFaults::default(),
        Duration::ZERO,
    )
    .await;
    h.config.push.auto_distribute_dv = true;
    h.start().await;
    h.import_fleet(|_| "lab").await;

    // Another process on the bus emits the updater's signal, with the
    // updater's path and interface, naming an old DV.
    let forger = zbus::connection::Builder::address(h.bus.address())
        .unwrap()
        .build()
        .await
        .unwrap();
    for path in [UPDATER_PATH, "/org/smsos/Forged"] {
        forger
            .emit_signal(
                None::<&str>,
                path,
                UPDATER_INTERFACE,
                "PackageActivated",
                &("dv", dv1.version.to_string(), "00".repeat(32)),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        jobs(&h).await.is_empty(),
        "a forged signal started a distribution:\n{}",
        h.log_text()
    );

    // The real update daemon's activation does start one: the check above
    // can see a job when there is one.
    h.updater.activate(Channel::Dv, &dv2.version).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        if let Some(j) = jobs(&h).await.into_iter().next() {
            break j;
        }
        assert!(Instant::now() < deadline, "no job after a real activation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job.version, dv2.version);
    h.stop();
}
