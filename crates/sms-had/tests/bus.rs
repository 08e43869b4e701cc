//! `org.smsos.Ha1` on a real dbus-daemon with the appliance's policy:
//! sms-had owns the name and shows its identity and state; the roles read
//! them, a stranger reads nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Node;
use sms_testkit::bus_calls::{account, allowed, call, denied, primary_group};
use sms_testkit::DbusDaemon;
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn the_ha_daemon_shows_its_identity_and_state_to_the_roles_only() {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../rootfs-overlay/etc/dbus-1/system.d/org.smsos.conf");
    let (auditor, stranger) = (account("man"), account("nobody"));
    // sms-had runs as root here: root stands for sms-had.
    let bus = DbusDaemon::start_system_like(
        &policy,
        &[("sms-had", 0), ("sms-auditor", primary_group("man"))],
    )
    .unwrap();
    let addr = bus.address().to_string();
    let root = tempfile::tempdir().unwrap();
    let mut node = Node::new(root.path(), "a");
    let fingerprint = node.fingerprint();
    node.start_on_bus(&addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.log().contains("sms-had ready") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ha = "org.smsos.Ha1";
    let mut identity = call(&addr, auditor, ha, "Identity", &[]);
    while !identity.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        identity = call(&addr, auditor, ha, "Identity", &[]);
    }
    allowed(identity.clone(), "the auditor's Identity");
    assert!(identity.1.contains(&fingerprint), "{}", identity.1);
    let status = call(&addr, auditor, ha, "Status", &[]);
    allowed(status.clone(), "the auditor's Status");
    assert!(
        status.1.contains(r#"\"state\":\"standalone\""#)
            || status.1.contains(r#""state":"standalone""#),
        "{}",
        status.1
    );
    assert!(status.1.contains(&fingerprint), "{}", status.1);
    denied(
        call(&addr, stranger, ha, "Status", &[]),
        "a stranger's Status",
    );
    denied(
        call(&addr, stranger, ha, "Identity", &[]),
        "a stranger's Identity",
    );
}
