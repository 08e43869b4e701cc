//! Package files between the nodes over a real OpenSSH server: a batch
//! that names a 100 MB blob is acknowledged only once the secondary has
//! the file and checked its SHA-256; killed in the middle of the transfer,
//! the secondary has neither the entry nor the file, and resumes the
//! transfer from its partial file when it is back; a file that does not
//! match its digest is refused and nothing of the batch applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, Pair};
use rand::{RngCore, SeedableRng};
use sms_core::blob::{BlobStore, Digest};
use sms_core::store::{Batch, Replication, Store};
use sms_testkit::sftp_server::{keygen, SftpServer};
use std::time::{Duration, Instant};

const MB: usize = 1_000_000;

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn entry(name: &str, digest: &Digest, len: u64) -> Batch {
    let mut b = Batch::new();
    b.put("packages", name, digest.to_hex().into_bytes());
    b.name_blob(digest, len);
    b
}

#[test]
fn an_entry_naming_a_blob_is_acknowledged_only_once_the_secondary_verified_the_file() {
    let ssh = SftpServer::start().unwrap();
    let mut pair = Pair::new();
    let root = pair.root.path().to_path_buf();
    let served = root.join("a-blobs");
    let primary_blobs = BlobStore::open(&served).unwrap();
    // The secondary's key for the primary's blob account: it runs
    // `sms-had blob-serve` and nothing else.
    let key = root.join("blob-key");
    keygen(&key).unwrap();
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    ssh.authorize(&format!(
        "restrict,command=\"{} blob-serve --dir {}\" {}",
        bin(),
        served.display(),
        public.trim()
    ))
    .unwrap();
    let known_hosts = root.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", ssh.port, ssh.host_key),
    )
    .unwrap();
    let mut config = std::fs::read_to_string(&pair.b.config).unwrap();
    config.push_str(&format!(
        "[blob_source]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nkey = \"{}\"\nknown_hosts = \"{}\"\n",
        ssh.port,
        ssh.user,
        key.display(),
        known_hosts.display()
    ));
    std::fs::write(&pair.b.config, config).unwrap();
    pair.b.restart();
    pair.a.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pair.a.log().contains("ACTIVE") {
        assert!(Instant::now() < deadline, "{}", pair.a.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let store = pair.store("updated");
    let replica_blobs = BlobStore::at(&pair.b.dir.join("state/blobs"));

    // 1. 100 MB: SYNC only once the secondary holds the verified file.
    let one = random_bytes(100 * MB, 1);
    let d1 = primary_blobs.put_bytes(&one).unwrap();
    let started = Instant::now();
    let c = store.commit(&entry("dv-1", &d1, one.len() as u64)).unwrap();
    let took = started.elapsed();
    assert_eq!(
        c.replication,
        Replication::Sync,
        "{}\n{}",
        pair.b.log(),
        ssh.log()
    );
    assert_eq!(replica_blobs.verify(&d1).unwrap(), one.len() as u64);
    println!(
        "a 100 MB blob named by a commit: SYNC after {} ms ({:.0} MB/s over SSH, verified on the secondary)",
        took.as_millis(),
        100.0 / took.as_secs_f64()
    );

    // 2. The secondary is killed in the middle of the next transfer: the
    // commit is not acknowledged as SYNC, the secondary has neither the
    // entry nor the file, only its partial file.
    let two = random_bytes(100 * MB, 2);
    let d2 = primary_blobs.put_bytes(&two).unwrap();
    let len2 = two.len() as u64;
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || store.commit(&entry("dv-2", &d2, len2)).unwrap())
    };
    let partial = replica_blobs.partial_path(&d2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 10 * MB as u64 {
        assert!(
            Instant::now() < deadline,
            "no transfer seen: {}",
            pair.b.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    pair.b.kill();
    let c2 = writer.join().unwrap();
    assert!(
        matches!(c2.replication, Replication::Degraded(_)),
        "a commit whose blob the killed secondary never verified was acknowledged: {:?}",
        c2.replication
    );
    let cut_at = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(cut_at < len2, "the transfer had finished before the kill");
    assert!(!replica_blobs.contains(&d2));
    {
        let replica = Store::open(&pair.b.replica("updated")).unwrap();
        assert_eq!(replica.get("packages", "dv-2").unwrap(), None);
        assert!(replica.get("packages", "dv-1").unwrap().is_some());
    }
    println!(
        "killed the secondary after {:.0} MB of 100: the entry was not acknowledged",
        cut_at as f64 / 1e6
    );

    // 3. Back: the pending batch is shipped again and the transfer goes on
    // from the partial file; then it is acknowledged.
    pair.b.restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut n = 0u32;
    loop {
        n += 1;
        let mut b = Batch::new();
        b.put("packages", format!("probe-{n}"), b"x".to_vec());
        if store.commit(&b).unwrap().replication == Replication::Sync {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never SYNC again:\n{}",
            pair.b.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        pair.b.log().contains("resuming the blob transfer"),
        "{}",
        pair.b.log()
    );
    assert_eq!(replica_blobs.verify(&d2).unwrap(), len2);

    // 4. A file that does not match the digest its entry names: refused,
    // nothing of the batch applied.
    let claimed = Digest::of(b"the file the entry names");
    let wrong = random_bytes(MB, 3);
    let path = primary_blobs.path(&claimed);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &wrong).unwrap();
    let c4 = store
        .commit(&entry("dv-bad", &claimed, wrong.len() as u64))
        .unwrap();
    let Replication::Degraded(why) = &c4.replication else {
        panic!("a blob that does not match its digest was acknowledged");
    };
    assert!(why.contains("digest mismatch"), "{why}");
    assert!(!replica_blobs.contains(&claimed));
    pair.b.stop();
    let replica = Store::open(&pair.b.replica("updated")).unwrap();
    assert_eq!(replica.get("packages", "dv-bad").unwrap(), None);
    assert!(replica.get("packages", "dv-2").unwrap().is_some());
}
