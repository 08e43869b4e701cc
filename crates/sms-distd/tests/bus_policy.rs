#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The appliance's D-Bus policy (rootfs-overlay/etc/dbus-1/system.d/
//! org.smsos.conf) on a real dbus-daemon configured like a system bus, with
//! test processes running under the IDs that stand for the appliance's
//! accounts: a stranger calls nothing, a daemon calls only the methods on
//! its list, the administrator calls everything, and nobody but the
//! update daemon emits its signals.

mod common;

use common::Harness;
use sms_testkit::bus_calls::{account, allowed, call, dbus_send, denied, primary_group};
use sms_testkit::DbusDaemon;
use std::path::Path;
use std::time::Duration;

#[allow(non_snake_case)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_appliance_policy_lets_each_account_do_only_its_part() {
    let (DISTD, SNMPD, ADMIN, STRANGER) = (
        account("daemon"),
        account("bin"),
        account("sys"),
        account("nobody"),
    );
    // The roles: an operator and an auditor, by their groups.
    let (OPERATOR, AUDITOR) = (account("games"), account("man"));
    let policy = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../rootfs-overlay/etc/dbus-1/system.d/org.smsos.conf");
    // The update daemon runs in this process, as root: root stands for
    // sms-updated (root may call everything anyway).
    let bus = DbusDaemon::start_system_like(
        &policy,
        &[
            ("sms-updated", 0),
            ("sms-distd", DISTD),
            ("sms-snmpd", SNMPD),
            ("admin", ADMIN),
            ("sms-operator", primary_group("games")),
            ("sms-auditor", primary_group("man")),
        ],
    )
    .unwrap();
    let addr = bus.address().to_string();
    let mut h = Harness::new_on(bus).await;
    h.no_fleet().await;
    h.run_as = Some(DISTD);
    h.start().await;
    let up = "org.smsos.Updater1";
    let dist = "org.smsos.Distributor1";

    // A stranger calls nothing.
    denied(
        call(&addr, STRANGER, dist, "Jobs", &[]),
        "a stranger's Jobs",
    );
    denied(
        call(&addr, STRANGER, up, "Status", &[]),
        "a stranger's Status",
    );
    denied(
        call(&addr, STRANGER, up, "CheckNow", &[]),
        "a stranger's CheckNow",
    );
    // The administrator calls everything.
    allowed(call(&addr, ADMIN, dist, "Jobs", &[]), "admin's Jobs");
    allowed(call(&addr, ADMIN, up, "Status", &[]), "admin's Status");
    // Roles, enforced by the bus whatever a client program does: the
    // operator updates and distributes but changes no inventory; the
    // auditor reads only.
    allowed(
        call(&addr, OPERATOR, up, "Status", &[]),
        "operator's Status",
    );
    allowed(
        call(&addr, OPERATOR, up, "CheckNow", &[]),
        "operator's CheckNow",
    );
    allowed(call(&addr, OPERATOR, dist, "Jobs", &[]), "operator's Jobs");
    denied(
        call(&addr, OPERATOR, dist, "RemoveDevice", &["string:ips-1"]),
        "operator's RemoveDevice",
    );
    denied(
        call(&addr, OPERATOR, dist, "AddDevices", &["string:[]"]),
        "operator's AddDevices",
    );
    allowed(call(&addr, AUDITOR, up, "Status", &[]), "auditor's Status");
    allowed(call(&addr, AUDITOR, dist, "Jobs", &[]), "auditor's Jobs");
    denied(
        call(&addr, AUDITOR, up, "CheckNow", &[]),
        "auditor's CheckNow",
    );
    denied(
        call(
            &addr,
            AUDITOR,
            dist,
            "Distribute",
            &["string:dv", "string:4.0.0.1", "string:all"],
        ),
        "auditor's Distribute",
    );
    denied(
        call(
            &addr,
            AUDITOR,
            up,
            "Download",
            &["string:dv", "string:4.0.0.1"],
        ),
        "auditor's Download",
    );
    // The SNMP daemon reads what the MIB shows, and nothing else.
    allowed(call(&addr, SNMPD, up, "Status", &[]), "snmpd's Status");
    allowed(call(&addr, SNMPD, dist, "Devices", &[]), "snmpd's Devices");
    denied(
        call(
            &addr,
            SNMPD,
            dist,
            "Distribute",
            &["string:dv", "string:4.0.0.1", "string:all"],
        ),
        "snmpd's Distribute",
    );
    denied(
        call(
            &addr,
            SNMPD,
            up,
            "Activate",
            &["string:dv", "string:4.0.0.1"],
        ),
        "snmpd's Activate",
    );
    // The distributor lists packages and may not activate one.
    allowed(
        call(&addr, DISTD, up, "List", &["string:dv"]),
        "distd's List",
    );
    denied(
        call(
            &addr,
            DISTD,
            up,
            "Activate",
            &["string:dv", "string:4.0.0.1"],
        ),
        "distd's Activate",
    );
    denied(call(&addr, DISTD, up, "CheckNow", &[]), "distd's CheckNow");

    // Only the update daemon emits its signals: a listener (root) sees a
    // forged PackageActivated from no other account, and sees the real one.
    let listener = zbus::connection::Builder::address(addr.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(up)
        .unwrap()
        .member("PackageActivated")
        .unwrap()
        .build();
    let mut stream = zbus::MessageStream::for_match_rule(rule, &listener, None)
        .await
        .unwrap();
    for uid in [STRANGER, ADMIN, DISTD, SNMPD] {
        let r = dbus_send(
            &addr,
            uid,
            &[
                "--type=signal",
                "/org/smsos/Updater1",
                "org.smsos.Updater1.PackageActivated",
                "string:dv",
                "string:4.0.0.1",
                "string:00",
            ],
        );
        assert!(r.0 || r.1.contains("AccessDenied"), "{}", r.1);
    }
    use futures_util::StreamExt;
    let forged = tokio::time::timeout(Duration::from_secs(2), stream.next()).await;
    assert!(
        forged.is_err(),
        "a forged signal reached the listener: {forged:?}"
    );
    let dv = h.new_dv(64 << 10).await;
    h.updater
        .activate(sms_core::package::Channel::Dv, &dv.version)
        .await
        .unwrap();
    let real = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the update daemon's own signal")
        .unwrap()
        .unwrap();
    let (_, version, _): (String, String, String) = real.body().deserialize().unwrap();
    assert_eq!(version, dv.version.to_string());
    h.stop();
}
