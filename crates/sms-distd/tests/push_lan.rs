//! The appliance's distribution daemon on its own LAN: sms-distd runs in a
//! network namespace whose only link is a tap on a virtual Ethernet
//! segment; the devices are smoltcp hosts on that segment (their own MAC
//! and address each, ARP, mutual TLS over smoltcp TCP), which loses 1 % of
//! its frames. One device is never plugged in. A DV job completes on every
//! other device, the absent one fails with a reason, and the devices
//! report the new version.

mod common;

use common::Harness;
use sms_distd::job::JobState;
use sms_lan::netns::KernelHost;
use sms_lan::{Buffers, Faults, Lan};
use sms_sim::fleet::{DeviceFault, FleetFaults, LanPlacement};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

const DEVICES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dv_reaches_every_device_on_the_appliances_lan() {
    let mut h = Harness::new().await;
    let dv = h.new_dv(2 << 20).await;
    let lan = Arc::new(Lan::start(17, Buffers::default()));
    let appliance = KernelHost::join(&lan, "192.0.2.1/24")
        .expect("a namespace with a tap on the segment (the tests run as root)");
    lan.set_faults(Faults {
        loss: 0.01,
        ..Faults::default()
    });
    h.lan = Some(LanPlacement {
        lan: lan.clone(),
        prefix: 24,
        gateway: None,
    });
    h.netns = Some(appliance.ns.clone());
    h.start_fleet(
        DEVICES,
        Ipv4Addr::new(192, 0, 2, 10),
        443,
        FleetFaults {
            unreachable: 0.05,
            ..FleetFaults::default()
        },
        Duration::from_millis(200),
    )
    .await;
    h.config.push.max_parallel = 8;
    h.start().await;
    h.import_fleet(|_| "lan").await;

    let id = h.distribute("dv", &dv.version, "all").await;
    let r = h.wait_job(id, Duration::from_secs(300)).await;
    let fleet = h.fleet.as_ref().unwrap();
    let devices = fleet.devices();
    let absent: Vec<&str> = devices
        .iter()
        .filter(|d| d.fault == Some(DeviceFault::Unreachable))
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(absent.len(), 1, "{devices:?}");
    assert_eq!(r.job.state, JobState::Completed, "{r:?}");
    assert_eq!(
        r.counts.get("done").copied(),
        Some(DEVICES - 1),
        "{:?}",
        r.counts
    );
    assert_eq!(r.counts.get("failed").copied(), Some(1), "{:?}", r.counts);
    let (who, why) = r.failures.first().unwrap();
    assert_eq!(who, absent[0]);
    eprintln!("the absent device: {why}");

    // The devices report the version (installs take 200 ms).
    let want = dv.version.to_string();
    let mut installed = 0;
    for _ in 0..50 {
        installed = fleet
            .statuses()
            .iter()
            .filter(|s| s.dv.as_deref() == Some(want.as_str()))
            .count();
        if installed == DEVICES - 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(installed, DEVICES - 1);
    let c = lan.counters();
    eprintln!("segment: {c:?}");
    assert!(c.lost > 0, "the segment lost frames on the way: {c:?}");
}
