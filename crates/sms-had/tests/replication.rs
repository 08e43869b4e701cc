//! What the pair promises: a commit reported SYNC is on the secondary,
//! whatever was killed when; a silent secondary turns commits DEGRADED,
//! never SYNC; the backlog is shipped, gap-free, when it is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{dump, Pair};
use rand::{Rng, SeedableRng};
use sms_core::store::{Batch, Replication, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Puts a unique key with a random value; records what the commit said.
fn writer(
    store: Store,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<u64, Vec<u8>>>>,
    counts: Arc<Mutex<(u64, u64)>>,
    seed: u64,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut n = 0u64;
    // Bounded: stops when told, and in any case after 200,000 writes.
    while !stop.load(Ordering::Relaxed) && n < 200_000 {
        n += 1;
        let len = rng.gen_range(1..200);
        let value: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let mut b = Batch::new();
        b.put("data", n.to_be_bytes(), value.clone());
        let commit = match store.commit(&b) {
            Ok(c) => c,
            // A primary restarted alone waits to hear its peer: refused,
            // nothing written (the key is tried again: keys follow the
            // store's sequence numbers).
            Err(StoreError::NotActive { .. }) => {
                n -= 1;
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => panic!("write {n}: {e}"),
        };
        let mut c = counts.lock().unwrap();
        match commit.replication {
            Replication::Sync => {
                c.0 += 1;
                acked.lock().unwrap().insert(n, value);
            }
            Replication::Degraded(_) => c.1 += 1,
            Replication::Standalone => panic!("the store is not replicating"),
        }
    }
}

#[test]
fn every_write_acknowledged_as_sync_survives_kills_of_either_node() {
    let seed: u64 = std::env::var("SMS_HA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("seed {seed} (SMS_HA_SEED={seed} repeats this run)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pair = Pair::start();
    let store = pair.store("updated");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let w = {
        let (store, stop, acked, counts) =
            (store.clone(), stop.clone(), acked.clone(), counts.clone());
        std::thread::spawn(move || writer(store, stop, acked, counts, seed))
    };
    let (mut primary_kills, mut secondary_kills) = (0, 0);
    let sync_count = || counts.lock().unwrap().0;
    for round in 0..32 {
        // Each kill lands on a stream in SYNC: wait (bounded) until the
        // pair acknowledged new writes since the last restart.
        let since = sync_count();
        let deadline = Instant::now() + Duration::from_secs(20);
        while sync_count() < since + 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            sync_count() >= since + 3,
            "round {round}: the pair never got back in SYNC"
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..150)));
        let secondary = rng.gen_bool(0.4);
        if secondary {
            pair.b.kill();
            secondary_kills += 1;
        } else {
            pair.a.kill();
            primary_kills += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..100)));
        if secondary {
            pair.b.restart();
        } else {
            pair.a.restart();
        }
        let c = *counts.lock().unwrap();
        println!(
            "round {round}: killed the {}; {} SYNC, {} DEGRADED so far",
            if secondary { "secondary" } else { "primary" },
            c.0,
            c.1
        );
    }
    // Wait (bounded) until the pair is in SYNC again, then stop writing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = sync_count();
    while sync_count() < before + 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    let (sync, degraded) = *counts.lock().unwrap();
    println!("{primary_kills} primary kills, {secondary_kills} secondary kills; {sync} writes SYNC, {degraded} DEGRADED");
    assert!(
        primary_kills >= 10 && secondary_kills >= 5,
        "seed gave too few kills of a kind"
    );
    assert!(
        sync > 100 && degraded > 0,
        "{sync} SYNC, {degraded} DEGRADED"
    );

    // Promote: the secondary's replica is what a new primary serves.
    pair.b.stop();
    let replica = Store::open(&pair.b.replica("updated")).unwrap();
    let on_b: BTreeMap<Vec<u8>, Vec<u8>> = dump(&replica, "data").into_iter().collect();
    let acked = acked.lock().unwrap();
    let mut missing = 0;
    for (n, value) in acked.iter() {
        match on_b.get(n.to_be_bytes().as_slice()) {
            Some(v) if v == value => {}
            Some(_) => panic!("write {n} is on the secondary with another value"),
            None => missing += 1,
        }
    }
    assert_eq!(
        missing, 0,
        "{missing} writes acknowledged as SYNC are not on the secondary"
    );
    // The last SYNC write was acknowledged after everything before it was
    // shipped: the replica is the primary's history up to there, exactly.
    let last = replica.last_seq().unwrap();
    assert!(last >= *acked.keys().last().unwrap());
    let on_a: BTreeMap<Vec<u8>, Vec<u8>> = dump(&store, "data")
        .into_iter()
        .filter(|(k, _)| u64::from_be_bytes(k.as_slice().try_into().unwrap()) <= last)
        .collect();
    assert_eq!(
        on_a, on_b,
        "the replica differs from the primary's first {last} changes"
    );
}

#[test]
fn a_silent_secondary_makes_commits_degraded_and_they_are_shipped_when_it_is_back() {
    let mut pair = Pair::start();
    let store = pair.store("distd");
    let put = |k: &str, v: &str| {
        let mut b = Batch::new();
        b.put("jobs", k, v.as_bytes().to_vec());
        store.commit(&b).unwrap()
    };
    assert_eq!(put("j1", "one").replication, Replication::Sync);
    let mut del = Batch::new();
    del.delete("jobs", "j1").put("jobs", "j2", b"two".to_vec());
    assert_eq!(store.commit(&del).unwrap().replication, Replication::Sync);

    pair.b.kill();
    let t = Instant::now();
    let c = put("j3", "three");
    println!("DEGRADED reported after {} ms", t.elapsed().as_millis());
    let Replication::Degraded(reason) = c.replication else {
        panic!("a commit with the secondary dead was {:?}", c.replication)
    };
    assert!(reason.contains("peer"), "{reason}");
    // The next ones do not wait for the dead peer again and again.
    for i in 0..5 {
        assert!(matches!(
            put(&format!("d{i}"), "x").replication,
            Replication::Degraded(_)
        ));
    }
    // The primary says the peer went silent (its heartbeats fail).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pair.a.log().contains("heartbeat:") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(pair.a.log().contains("heartbeat:"), "{}", pair.a.log());

    // What the secondary holds: only what was SYNC.
    let replica = Store::open(&pair.b.replica("distd")).unwrap();
    assert_eq!(
        dump(&replica, "jobs"),
        vec![(b"j2".to_vec(), b"two".to_vec())]
    );
    drop(replica);

    pair.b.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = put("j4", "four");
    while last.replication != Replication::Sync && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        last = put("j4", "four");
    }
    assert_eq!(last.replication, Replication::Sync, "never in SYNC again");
    pair.b.stop();
    let replica = Store::open(&pair.b.replica("distd")).unwrap();
    assert_eq!(dump(&replica, "jobs"), dump(&store, "jobs"));
    assert_eq!(replica.last_seq().unwrap(), store.last_seq().unwrap());
}

#[test]
fn a_peer_the_outbox_no_longer_covers_gets_a_snapshot_then_the_changes() {
    let mut pair = Pair::start();
    // A store that ran unpaired for a while: its outbox was trimmed.
    let path = pair.root.path().join("a-late");
    let store = Store::open(&path).unwrap();
    let n = sms_core::store::OUTBOX_KEEP + 3000;
    for i in 0..n {
        let mut b = Batch::new();
        b.put("data", i.to_be_bytes(), vec![(i % 251) as u8; 256]);
        if i % 7 == 0 && i > 0 {
            b.delete("data", (i - 1).to_be_bytes());
        }
        store.apply(&b).unwrap();
    }
    let first = store.first_outbox_seq().unwrap().unwrap();
    assert!(first > 1, "the outbox was not trimmed");
    // Paired now: the first commit sends a snapshot (several chunks of
    // 1 MiB), then what follows it, and is SYNC.
    assert!(
        store.replicate_through(sms_core::replication::ReplicationClient::new(
            "late",
            &pair.a.socket(),
            std::time::Duration::from_secs(5),
        ))
    );
    let mut b = Batch::new();
    b.put("data", "after-1", b"x".to_vec());
    assert_eq!(store.commit(&b).unwrap().replication, Replication::Sync);
    for i in 0..20u32 {
        let mut b = Batch::new();
        b.put("data", format!("after-{i}"), i.to_be_bytes().to_vec());
        assert_eq!(store.commit(&b).unwrap().replication, Replication::Sync);
    }
    assert!(
        pair.b
            .log()
            .contains("replica replaced by the primary's snapshot"),
        "{}",
        pair.b.log()
    );
    pair.b.stop();
    let replica = Store::open(&pair.b.replica("late")).unwrap();
    assert_eq!(replica.last_seq().unwrap(), store.last_seq().unwrap());
    assert!(
        dump(&replica, "data") == dump(&store, "data"),
        "the replica differs from the primary"
    );
}
