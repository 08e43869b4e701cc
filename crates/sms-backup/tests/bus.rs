#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! A store copied through its running daemon on a real dbus-daemon with
//! the appliance's bus policy, while the daemon keeps writing to it.

mod common;

use common::{populate, PASS, ROUNDS};
use sms_backup::capture::{capture, CaptureOptions, StoreAccess};
use sms_backup::layout::Layout;
use sms_core::store::{Batch, Store};
use sms_testkit::DbusDaemon;
use std::path::Path;

#[tokio::test(flavor = "multi_thread")]
async fn a_running_daemons_store_is_copied_over_the_bus() {
    let root = tempfile::tempdir().unwrap();
    populate(root.path());
    let policy = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../rootfs-overlay/etc/dbus-1/system.d/org.smsos.conf");
    let me = nix::unistd::getuid().as_raw();
    let bus = DbusDaemon::start_system_like(
        &policy,
        &[
            ("root", me),
            ("sms-snmpd", me),
            ("sms-updated", 65534),
            ("sms-distd", 65534),
            ("sms-ntpd", 65534),
            ("admin", 65534),
            ("sms-operator", 65534),
            ("sms-auditor", 65534),
        ],
    )
    .unwrap();
    // The SNMP daemon's side: its store open (so nobody else can open it)
    // and served as it is in sms-snmpd.
    let store = Store::open(&root.path().join("snmpd/store")).unwrap();
    let _conn = zbus::connection::Builder::address(bus.address())
        .unwrap()
        .name(sms_core::bus::SNMP_NAME)
        .unwrap()
        .serve_at(
            sms_core::bus::STORE_PATH,
            sms_core::bus::StoreIface::new(store.clone()),
        )
        .unwrap()
        .build()
        .await
        .unwrap();
    // It keeps receiving events while the backup runs.
    let writer = store.clone();
    let busy = tokio::task::spawn_blocking(move || {
        for i in 0..100u32 {
            let mut b = Batch::new();
            b.put("events", format!("new{i:04}"), b"trap".to_vec());
            writer.apply(&b).unwrap();
        }
    });

    // SAFETY of the test: this test binary has one test; nothing else
    // reads the environment concurrently.
    std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", bus.address());
    let layout = Layout {
        root: root.path().to_path_buf(),
    };
    let opts = CaptureOptions {
        packages: false,
        firmware: sms_backup::FIRMWARE_VERSION.into(),
        hostname: "sms-lab".into(),
        rounds: ROUNDS,
    };
    let out = root.path().join("b.smsbak");
    let mut lines = Vec::new();
    capture(&layout, PASS, &opts, StoreAccess::Bus, &out, &mut |s| {
        lines.push(s.to_string())
    })
    .await
    .unwrap();
    busy.await.unwrap();
    let snmpd = lines
        .iter()
        .find(|l| l.starts_with("store snmpd: "))
        .unwrap();
    let n: u64 = snmpd
        .trim_start_matches("store snmpd: ")
        .trim_end_matches(" records")
        .parse()
        .unwrap();
    assert!((200..=300).contains(&n), "{snmpd}");

    // Opened here instead, the busy store is refused with its reason.
    let err = capture(
        &layout,
        PASS,
        &opts,
        StoreAccess::Direct,
        &root.path().join("c.smsbak"),
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("store snmpd"), "{err:#}");

    // The archive restores the store the daemon had at the copy.
    let v = sms_backup::restore::verify(&out, PASS, sms_backup::FIRMWARE_VERSION).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    v.apply(
        &Layout {
            root: fresh.path().to_path_buf(),
        },
        false,
        &mut |_| {},
    )
    .unwrap();
    let copy = Store::open(&fresh.path().join("snmpd/store")).unwrap();
    assert_eq!(copy.scan("events", "").unwrap().len() as u64, n);
}
