//! sms-distd killed with SIGKILL in the middle of a 1,000-device job: after
//! a restart the job completes and no device receives the package twice.

mod common;

use common::Harness;
use sms_distd::job::JobState;
use sms_sim::fleet::FleetFaults;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const DEVICES: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_job_resumes_without_sending_twice() {
    let mut h = Harness::new().await;
    let dv = h.new_dv(512 << 10).await;
    h.start_fleet(
        DEVICES,
        Ipv4Addr::new(127, 32, 0, 1),
        18444,
        FleetFaults::default(),
        Duration::from_millis(300),
    )
    .await;
    h.config.push.max_parallel = 25;
    h.start().await;
    h.import_fleet(|_| "lab").await;
    let id = h.distribute("dv", &dv.version, "all").await;

    // Kill it once a good part (but not all) of the devices are done, with
    // others in transfer and install right now.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = h.job(id).await;
        let done = r.counts.get("done").copied().unwrap_or(0);
        let busy = r.counts.get("transferring").copied().unwrap_or(0)
            + r.counts.get("installing").copied().unwrap_or(0);
        if done >= 300 && busy > 0 {
            break;
        }
        assert!(
            r.job.state == JobState::Running,
            "job ended before the kill: {r:?}"
        );
        assert!(Instant::now() < deadline, "job too slow: {:?}", r.counts);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.kill();
    let before: Vec<_> = h.fleet.as_ref().unwrap().statuses();
    let key = format!("dv/{}", dv.version);
    let received_before = before
        .iter()
        .filter(|s| s.uploads.contains_key(&key))
        .count();
    assert!(
        (300..DEVICES).contains(&received_before),
        "{received_before}"
    );

    h.start().await;
    let r = h.wait_job(id, Duration::from_secs(300)).await;
    assert_eq!(r.job.state, JobState::Completed, "{r:?}");
    assert_eq!(
        r.counts.get("done").copied(),
        Some(DEVICES),
        "{:?}",
        r.counts
    );
    let log = h.log_text();
    assert!(log.contains("resuming dv"), "{}", common::tail(&log, 20));
    for s in h.fleet.as_ref().unwrap().statuses() {
        assert_eq!(
            s.uploads.get(&key),
            Some(&1),
            "{} received the package {:?} time(s)",
            s.name,
            s.uploads.get(&key)
        );
        assert_eq!(s.dv.as_deref(), Some(dv.version.to_string().as_str()));
    }
}
