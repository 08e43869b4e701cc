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

/// A dbus-daemon with the appliance's policy, the accounts in `ids`
/// standing for the appliance's; and its address.
fn appliance_bus(ids: &[(&str, u32)]) -> (DbusDaemon, String) {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../rootfs-overlay/etc/dbus-1/system.d/org.smsos.conf");
    let bus = DbusDaemon::start_system_like(&policy, ids).unwrap();
    let addr = bus.address().to_string();
    (bus, addr)
}

#[test]
fn the_ha_daemon_shows_its_identity_and_state_to_the_roles_only() {
    let (auditor, stranger) = (account("man"), account("nobody"));
    // sms-had runs as root here: root stands for sms-had.
    let (_bus, addr) = appliance_bus(&[("sms-had", 0), ("sms-auditor", primary_group("man"))]);
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

/// Tries a one-key write; Ok(SYNC or not) or the refusal's reason.
fn try_write(store: &sms_core::store::Store, key: &str) -> Result<bool, String> {
    let mut b = sms_core::store::Batch::new();
    b.put("data", key, b"v".to_vec());
    match store.commit(&b) {
        Ok(c) => Ok(c.replication == sms_core::store::Replication::Sync),
        Err(sms_core::store::StoreError::NotActive { reason, .. }) => Err(reason),
        Err(e) => panic!("{key}: {e}"),
    }
}

fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn without_a_witness_the_admin_fails_over_and_a_returning_primary_stands_by() {
    let (_bus, addr) = appliance_bus(&[("sms-had", 0)]);
    let mut pair = common::Pair::new();
    pair.b.start_on_bus(&addr);
    eventually("b ready", || {
        pair.b.log().contains("sms-had ready").then_some(())
    });
    pair.a.restart();
    let (store_a, store_b) = (
        pair.store_of(&pair.a, "jobs"),
        pair.store_of(&pair.b, "jobs"),
    );
    // a heard b standing by: active, in SYNC.
    eventually("a in SYNC", || {
        try_write(&store_a, "a1").ok().filter(|s| *s)
    });
    let refused = try_write(&store_b, "b1").unwrap_err();
    assert!(refused.contains("standby"), "{refused}");

    // a dies; b does nothing by itself (no witness) until the admin says.
    pair.a.kill();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        try_write(&store_b, "b2").is_err(),
        "b took writes by itself"
    );
    let out = call(&addr, 0, "org.smsos.Ha1", "Failover", &[]);
    allowed(out.clone(), "root's Failover");
    assert!(out.1.contains("active at epoch 2"), "{}", out.1);
    try_write(&store_b, "b3").expect("b takes writes after the failover");
    let again = call(&addr, 0, "org.smsos.Ha1", "Failover", &[]);
    assert!(
        !again.0 && again.1.contains("already active"),
        "{}",
        again.1
    );

    // a returns: it hears b active at epoch 2 and stands by.
    pair.a.restart();
    let why = eventually("a standing by", || {
        try_write(&store_a, "a2")
            .err()
            .filter(|w| w.contains("standby"))
    });
    assert!(why.contains("epoch 2"), "{why}");
    assert!(
        pair.a.log().contains("the peer is active"),
        "{}",
        pair.a.log()
    );
    assert_eq!(
        std::fs::read_to_string(pair.a.dir.join("state/epoch"))
            .unwrap()
            .trim(),
        "2"
    );

    // A primary that restarts alone waits for its peer.
    pair.b.kill();
    pair.a.kill();
    pair.a.restart();
    let why = eventually("a refusing", || try_write(&store_a, "a3").err());
    assert!(why.contains("waits to hear its peer"), "{why}");
}

#[test]
fn a_planned_swap_hands_the_active_role_over_without_two_writers() {
    swap_without_two_writers(false);
}

/// The same with a witness: the active node releases its lease (length
/// 0) once its daemons' permissions ran out, the witness grants the peer
/// epoch + 1, and the old node steps down on the witness's word.
#[test]
fn with_a_witness_a_planned_swap_releases_the_lease_to_the_peer() {
    swap_without_two_writers(true);
}

fn swap_without_two_writers(with_witness: bool) {
    let (_bus, addr) = appliance_bus(&[("sms-had", 0)]);
    let mut pair = common::Pair::new();
    let _witness = with_witness.then(|| common::witness_for(&pair));
    pair.b.restart();
    pair.a.start_on_bus(&addr);
    eventually("a ready", || {
        pair.a.log().contains("sms-had ready").then_some(())
    });
    let (store_a, store_b) = (
        pair.store_of(&pair.a, "jobs"),
        pair.store_of(&pair.b, "jobs"),
    );
    eventually("a in SYNC", || {
        try_write(&store_a, "a1").ok().filter(|s| *s)
    });
    // b heard a in SYNC (its next heartbeat after the write).
    std::thread::sleep(Duration::from_millis(700));
    // A store whose daemon just got its permission to write (held for up
    // to 1 s): the swap must outlast it.
    let fresh_a = pair.store_of(&pair.a, "fresh");
    try_write(&fresh_a, "f1").unwrap();

    let t = Instant::now();
    let out = call(&addr, 0, "org.smsos.Ha1", "Swap", &[]);
    allowed(out.clone(), "root's Swap");
    assert!(out.1.contains("handing over"), "{}", out.1);
    // a's daemons may still use a permission given before the swap (at
    // most 1 s); b takes over only after that: never two writers.
    let mut b_first = None;
    let mut a_after = Vec::new();
    // Sampled until 1.5 s after b's first write (any permission a's
    // daemons held has run out by then), bounded at 15 s.
    while t.elapsed() < Duration::from_secs(15)
        && b_first.is_none_or(|f| t.elapsed() < f + Duration::from_millis(1500))
    {
        let at = t.elapsed();
        if try_write(&store_a, "a3").is_ok() || try_write(&fresh_a, "f2").is_ok() {
            a_after.push(at);
        }
        if b_first.is_none() && try_write(&store_b, "b1").is_ok() {
            b_first = Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let b_first = b_first.expect("b never took over");
    println!(
        "planned swap: b took its first write {} ms after ha swap; a's last write at {:?}",
        b_first.as_millis(),
        a_after.last()
    );
    assert!(
        a_after.iter().all(|t| *t < b_first),
        "a took writes after b took over: {a_after:?}, b from {b_first:?}"
    );
    eventually("a standing by", || {
        try_write(&store_a, "a4")
            .err()
            .filter(|w| w.contains("standby"))
    });
    assert_eq!(
        std::fs::read_to_string(pair.b.dir.join("state/epoch"))
            .unwrap()
            .trim(),
        "2"
    );
    if with_witness {
        let w = std::fs::read_to_string(pair.root.path().join("witness.log")).unwrap();
        assert!(w.contains("lease of epoch 2 granted"), "{w}");
    }
    // A swap on the standby is refused with the reason.
    let again = call(&addr, 0, "org.smsos.Ha1", "Swap", &[]);
    assert!(
        !again.0 && again.1.contains("not the active one"),
        "{}",
        again.1
    );
}
