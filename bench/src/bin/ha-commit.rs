//! What HA replication costs a commit: two sms-had processes paired on
//! loopback, and side by side in one run the latency of
//!
//! - a bare sled transaction + flush (the floor every store commit pays),
//! - a store commit on an unpaired appliance (transaction, outbox, flush),
//! - a store commit in SYNC (the same, then shipped through sms-had to the
//!   secondary, applied, flushed there and acknowledged),
//!
//! and the replicated commits per second with many writers on one store
//! (their commits ride in one batch: group commit), against the same
//! writers unpaired. A commit that is not SYNC fails the run. Then the
//! resynchronisation of 100k keys, and a 1 GB package file named by a
//! commit, fetched by the secondary over a real sshd and verified before
//! the commit is SYNC, against `ssh cat` of the same file (the floor).

use anyhow::{bail, Context, Result};
use sms_bench::{own_group, Child};
use sms_core::replication::ReplicationClient;
use sms_core::store::{Batch, Replication, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Value size of each commit (a job-state record is about this size).
const VALUE: usize = 256;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p99 in milliseconds of `n` timed calls of `f`.
fn latencies(n: usize, mut f: impl FnMut(u64) -> Result<()>) -> Result<(f64, f64)> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        f(i)?;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok((percentile(&v, 0.5), percentile(&v, 0.99)))
}

fn batch(i: u64) -> Batch {
    let mut b = Batch::new();
    b.put("data", i.to_be_bytes(), vec![(i % 251) as u8; VALUE]);
    b
}

fn sync_commit(store: &Store, i: u64) -> Result<()> {
    match store.commit(&batch(i))?.replication {
        Replication::Sync => Ok(()),
        other => bail!("commit {i} was not SYNC: {other:?}"),
    }
}

/// `writers` threads committing `each` commits to one store: commits/s.
fn group(store: &Store, writers: u64, each: u64, replicated: bool) -> Result<f64> {
    let t = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || -> Result<()> {
                for i in 0..each {
                    let key = (1u64 << 40) + w * each + i;
                    if replicated {
                        sync_commit(&store, key)?;
                    } else {
                        store.commit(&batch(key))?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => bail!("a writer panicked"),
        }
    }
    Ok((writers * each) as f64 / t.elapsed().as_secs_f64())
}

struct Node {
    dir: PathBuf,
    config: PathBuf,
    settings: PathBuf,
}

impl Node {
    fn new(root: &Path, name: &str) -> Result<Node> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let node = Node {
            config: dir.join("had.toml"),
            settings: dir.join("settings.json"),
            dir,
        };
        node.configure("role = \"standalone\"\n")?;
        Ok(node)
    }

    fn configure(&self, body: &str) -> Result<()> {
        std::fs::write(
            &self.config,
            format!(
                "state_dir = \"{}\"\nlocal_socket = \"{}\"\n{body}",
                self.dir.join("state").display(),
                self.socket().display()
            ),
        )?;
        Ok(())
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("ha.sock")
    }

    fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--settings")
            .arg(&self.settings)
            .arg("--no-dbus");
        cmd
    }

    fn fingerprint(&self, bin: &Path) -> Result<String> {
        let out = self
            .command(bin)
            .arg("--identity")
            .output()
            .with_context(|| format!("running {} (make bench builds it)", bin.display()))?;
        if !out.status.success() {
            bail!(
                "sms-had --identity: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    fn start(&self, bin: &Path) -> Result<Child> {
        let log = std::fs::File::create(self.dir.join("log"))?;
        let mut cmd = self.command(bin);
        cmd.env("RUST_LOG", "warn")
            .env_remove("JOURNAL_STREAM")
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(Child(
            own_group(&mut cmd).spawn().context("starting sms-had")?,
        ))
    }
}

/// A TCP port free on loopback now.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Waits (bounded) until `ready` holds.
fn wait(what: &str, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} not ready after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn main() -> Result<()> {
    let n: usize = std::env::var("SMS_BENCH_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
        .clamp(100, 1_000_000);
    let writers: u64 = std::env::var("SMS_BENCH_WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
        .clamp(1, 256);
    let each = (n as u64 * 4 / writers).max(1);
    let bin = std::env::current_exe()?.with_file_name("sms-had");
    let root = tempfile::tempdir()?;
    let (a, b) = (Node::new(root.path(), "a")?, Node::new(root.path(), "b")?);
    let (fa, fb) = (a.fingerprint(&bin)?, b.fingerprint(&bin)?);
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let (ca, cb) = (free_port()?, free_port()?);
    b.configure(&format!(
        "role = \"secondary\"\nlisten = \"{listen}\"\npeer_fingerprint = \"{fa}\"\n\
         control_listen = \"127.0.0.1:{cb}\"\npeer_control = \"127.0.0.1:{ca}\"\n"
    ))?;
    a.configure(&format!(
        "role = \"primary\"\npeer = \"{listen}\"\npeer_fingerprint = \"{fb}\"\n\
         control_listen = \"127.0.0.1:{ca}\"\npeer_control = \"127.0.0.1:{cb}\"\n"
    ))?;
    // The primary's blob account on a real sshd: the secondary's key runs
    // `sms-had blob-serve` only.
    let ssh = sms_testkit::sftp_server::SftpServer::start()?;
    let served = root.path().join("a-blobs");
    let blobs = sms_core::blob::BlobStore::open(&served)?;
    let key = root.path().join("blob-key");
    sms_testkit::sftp_server::keygen(&key)?;
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    ssh.authorize(&format!(
        "restrict,command=\"{} blob-serve --dir {}\" {}",
        bin.display(),
        served.display(),
        public.trim()
    ))?;
    let known_hosts = root.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", ssh.port, ssh.host_key),
    )?;
    let mut text = std::fs::read_to_string(&b.config)?;
    text.push_str(&format!(
        "[blob_source]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nkey = \"{}\"\nknown_hosts = \"{}\"\n",
        ssh.port,
        ssh.user,
        key.display(),
        known_hosts.display()
    ));
    std::fs::write(&b.config, text)?;
    let _b = b.start(&bin)?;
    wait("the secondary", || {
        std::net::TcpStream::connect(listen.as_str()).is_ok()
    })?;
    let _a = a.start(&bin)?;
    // Active once it heard its peer standing by.
    wait("the primary", || {
        std::fs::read_to_string(a.dir.join("log")).is_ok_and(|l| l.contains("ACTIVE"))
    })?;

    println!(
        "ha-commit: {n} commits of {VALUE} bytes each, one writer; then {writers} writers x {each}"
    );
    let sled_db = sled::Config::new()
        .path(root.path().join("bare-sled"))
        .flush_every_ms(Some(500))
        .open()?;
    let tree = sled_db.open_tree("data")?;
    let bare = latencies(n, |i| {
        tree.transaction(|t| {
            t.insert(&i.to_be_bytes(), vec![(i % 251) as u8; VALUE])?;
            Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
        })
        .map_err(|e| anyhow::anyhow!("sled transaction: {e:?}"))?;
        sled_db.flush()?;
        Ok(())
    })?;

    let alone = Store::open(&root.path().join("standalone"))?;
    let local = latencies(n, |i| {
        alone.commit(&batch(i))?;
        Ok(())
    })?;

    let paired = Store::open(&root.path().join("paired"))?;
    paired.replicate_through(ReplicationClient::new(
        "bench",
        &a.socket(),
        sms_core::replication::SYNC_TIMEOUT,
    ));
    // The first commit connects and says hello; it is not timed.
    sync_commit(&paired, u64::MAX)?;
    let sync = latencies(n, |i| sync_commit(&paired, i))?;

    println!(
        "{:<34} {:>9} {:>9} {:>11}",
        "commit (one writer)", "p50 ms", "p99 ms", "p99 ratio"
    );
    for (name, (p50, p99)) in [
        ("bare sled transaction + flush", bare),
        ("store commit, unpaired", local),
        ("store commit, SYNC to the peer", sync),
    ] {
        println!(
            "{name:<34} {p50:>9.3} {p99:>9.3} {:>10.2}x",
            p99 / bare.1.max(1e-9)
        );
    }

    let grouped_local = group(&alone, writers, each, false)?;
    let grouped_sync = group(&paired, writers, each, true)?;
    println!(
        "{writers} writers on one store: unpaired {grouped_local:.0} commits/s, SYNC {grouped_sync:.0} commits/s ({:.2}x)",
        grouped_sync / grouped_local.max(1e-9)
    );
    // Resynchronisation of a peer the outbox no longer covers: a store of
    // 100k keys that ran unpaired, paired now; its first commit carries
    // the snapshot (export, chunks, the replica replaced) and the rest.
    let keys: u64 = std::env::var("SMS_BENCH_RESYNC_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
        .clamp(1000, 10_000_000);
    let big = Store::open(&root.path().join("resync"))?;
    for chunk in 0..keys / 100 {
        let mut b = Batch::new();
        for i in 0..100 {
            let k = chunk * 100 + i;
            b.put("data", k.to_be_bytes(), vec![(k % 251) as u8; 100]);
        }
        big.commit(&b)?;
    }
    big.replicate_through(ReplicationClient::new(
        "resync",
        &a.socket(),
        Duration::from_secs(30),
    ));
    let t = Instant::now();
    if let Err(e) = sync_commit(&big, u64::MAX - 1) {
        for n in [&a, &b] {
            eprintln!(
                "{}:\n{}",
                n.dir.display(),
                std::fs::read_to_string(n.dir.join("log")).unwrap_or_default()
            );
        }
        return Err(e.context("resynchronising"));
    }
    let resync = t.elapsed();
    println!(
        "resync of {keys} keys of 100 bytes (snapshot, replica replaced, then the tail): {:.2} s",
        resync.as_secs_f64()
    );

    // A package file named by a commit: SYNC once the secondary fetched
    // it over SSH and checked its SHA-256.
    let mb: usize = std::env::var("SMS_BENCH_BLOB_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .clamp(10, 10_000);
    let mut bytes = vec![0u8; mb * 1_000_000];
    for (i, chunk) in bytes.chunks_mut(4096).enumerate() {
        chunk.fill((i % 251) as u8);
    }
    let digest = blobs.put_bytes(&bytes)?;
    let len = bytes.len() as u64;
    drop(bytes);
    let floor = {
        let t = Instant::now();
        let out = Command::new("ssh")
            .arg("-i")
            .arg(&ssh.client_key)
            .args(["-p", &ssh.port.to_string()])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "BatchMode=yes", "-T"])
            .arg(format!("{}@127.0.0.1", ssh.user))
            .arg(format!("cat {}", blobs.path(&digest).display()))
            .stdout(std::process::Stdio::piped())
            .output()
            .context("ssh cat")?;
        if out.stdout.len() as u64 != len {
            bail!("ssh cat gave {} bytes of {len}", out.stdout.len());
        }
        t.elapsed()
    };
    let mut b1 = Batch::new();
    b1.put("packages", "tos-1", digest.to_hex().into_bytes());
    b1.name_blob(&digest, len);
    let t = Instant::now();
    match paired.commit(&b1)?.replication {
        Replication::Sync => {}
        other => bail!("the commit naming the blob was not SYNC: {other:?}"),
    }
    let fetched = t.elapsed();
    println!(
        "a {mb} MB package file named by a commit: SYNC after {:.2} s ({:.0} MB/s, fetched over SSH and verified); ssh cat of the file {:.2} s ({:.2}x)",
        fetched.as_secs_f64(),
        mb as f64 / fetched.as_secs_f64(),
        floor.as_secs_f64(),
        fetched.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
    let replica_blobs = sms_core::blob::BlobStore::at(&b.dir.join("state/blobs"));
    if replica_blobs.verify(&digest)? != len {
        bail!("the secondary's copy of the blob does not verify");
    }

    // The secondary's sled lock goes with its process: stopped, its
    // replica must end where the primary's store ends.
    drop(_a);
    drop(_b);
    let replica = Store::open(&b.dir.join("state/replica/bench"))
        .context("opening the secondary's replica")?;
    if replica.last_seq()? != paired.last_seq()? {
        bail!(
            "the replica ends at change {}, the primary at {}: a SYNC commit is missing",
            replica.last_seq()?,
            paired.last_seq()?
        );
    }
    println!(
        "replica checked: it ends at change {}, as the primary",
        replica.last_seq()?
    );
    let resynced = Store::open(&b.dir.join("state/replica/resync"))
        .context("opening the resynchronised replica")?;
    if resynced.scan("data", b"")?.len() as u64 != keys + 1 {
        bail!("the resynchronised replica does not hold the {keys} keys and the new one");
    }
    Ok(())
}
