//! Split brain cannot happen: two nodes and a witness, each in a network
//! namespace of its own on one bridge (made here; the tests run as root).
//! The primary's link is cut; sampled every 100 ms, at most one node takes
//! writes at any time; the old primary fences itself within its lease, the
//! secondary is granted the lease at epoch + 1, and when the link is back
//! the old primary steps down instead of taking writes again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{bin, Node};
use sms_core::replication::ReplicationClient;
use sms_core::store::{Batch, Replication, Store, StoreError};
use sms_had::roles::PEER_DEAD;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lease the nodes run with (the shipped default).
const LEASE: Duration = Duration::from_secs(3);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {} (this test makes network namespaces: it runs as root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Four namespaces: `lan` holds a bridge; `a`, `b` and `w` (the witness)
/// each have one veth on it. Removed when dropped.
struct Lan {
    names: Vec<String>,
}

impl Lan {
    fn new() -> Lan {
        let tag = std::process::id();
        let names: Vec<String> = ["lan", "a", "b", "w"]
            .iter()
            .map(|n| format!("smsha-{tag}-{n}"))
            .collect();
        let lan = Lan { names };
        for n in &lan.names {
            ip(&["netns", "add", n]);
        }
        let l = lan.ns("lan");
        ip(&["-n", &l, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &l, "link", "set", "br0", "up"]);
        for (host, addr) in [
            ("a", "10.77.0.1/24"),
            ("b", "10.77.0.2/24"),
            ("w", "10.77.0.3/24"),
        ] {
            let ns = lan.ns(host);
            let port = format!("p{host}");
            ip(&[
                "-n", &l, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &l, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &ns, "addr", "add", addr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    fn ns(&self, short: &str) -> String {
        format!("smsha-{}-{short}", std::process::id())
    }

    /// Cuts (or mends) the path between a and b only: both still reach
    /// the witness.
    fn split(&self, cut: bool) {
        let verb = if cut { "add" } else { "del" };
        ip(&[
            "-n",
            &self.ns("a"),
            "route",
            verb,
            "blackhole",
            "10.77.0.2/32",
        ]);
        ip(&[
            "-n",
            &self.ns("b"),
            "route",
            verb,
            "blackhole",
            "10.77.0.1/32",
        ]);
    }

    /// Takes `host`'s port on the bridge down or up.
    fn link(&self, host: &str, up: bool) {
        let port = format!("p{host}");
        ip(&[
            "-n",
            &self.ns("lan"),
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ]);
    }
}

/// The pair's virtual address in these tests.
const VIP: &str = "10.77.0.100";

impl Lan {
    fn output(&self, host: &str, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.ns(host)])
            .args(args)
            .output()
            .expect("running ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// True if `host`'s interface has the virtual address.
    fn has_vip(&self, host: &str) -> bool {
        self.output(host, &["-4", "addr", "show", "dev", "eth0"])
            .contains(&format!("inet {VIP}/24"))
    }

    /// The MAC address of `host`'s interface.
    fn mac(&self, host: &str) -> String {
        let out = self.output(host, &["link", "show", "dev", "eth0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .expect("a MAC address")
            .to_string()
    }

    /// The MAC address `host`'s neighbour table has for the virtual
    /// address (None: no entry).
    fn vip_neighbour(&self, host: &str) -> Option<String> {
        let out = self.output(host, &["neigh", "show", VIP, "dev", "eth0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string)
    }

    /// A TCP connection from `host` to the control port (4444) on the
    /// virtual address (bash's /dev/tcp: nothing to install).
    fn reach_vip(&self, host: &str) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(host),
                "timeout",
                "3",
                "bash",
                "-c",
            ])
            .arg(format!("exec 3<>/dev/tcp/{VIP}/4444"))
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// One sample: when the commit was started and ended, whether it was
/// taken, and what refused it.
#[derive(Debug, Clone)]
struct Sample {
    start: Instant,
    end: Instant,
    taken: bool,
    sync: bool,
    why: String,
}

/// Tries a write on `store` every 100 ms until `stop` (bounded: 1,200
/// samples, two minutes).
fn sampler(store: Store, stop: Arc<AtomicBool>, out: Arc<Mutex<Vec<Sample>>>) {
    for i in 0u64..1200 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut b = Batch::new();
        b.put("data", i.to_be_bytes(), vec![7u8; 32]);
        let start = Instant::now();
        let result = store.commit(&b);
        let end = Instant::now();
        let (taken, sync, why) = match result {
            Ok(c) => (true, c.replication == Replication::Sync, String::new()),
            Err(StoreError::NotActive { reason, .. }) => (false, false, reason),
            Err(e) => panic!("a write failed otherwise than refused: {e}"),
        };
        out.lock().unwrap().push(Sample {
            start,
            end,
            taken,
            sync,
            why,
        });
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: not within {secs} s");
}

#[test]
fn with_a_witness_at_most_one_node_takes_writes_across_a_partition() {
    let lan = Lan::new();
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new(root.path(), "a");
    let mut b = Node::new(root.path(), "b");
    let (fa, fb) = (a.fingerprint(), b.fingerprint());
    let wdir = root.path().join("witness");
    let fw = common::witness_fingerprint(&wdir);

    let mut witness_cmd = Command::new("ip");
    witness_cmd
        .args(["netns", "exec", &lan.ns("w"), bin(), "witness"])
        .args(["--listen", "10.77.0.3:4444", "--state-dir"])
        .arg(&wdir)
        .args(["--node", &fa, "--node", &fb])
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM");
    let wlog = root.path().join("witness.log");
    let _witness = sms_testkit::DaemonProcess::spawn(witness_cmd, &wlog).unwrap();
    let witness_log = || sms_testkit::plain(&std::fs::read_to_string(&wlog).unwrap_or_default());
    wait_for("the witness", 30, || {
        witness_log().contains("witness ready")
    });

    let common = format!(
        "witness = \"10.77.0.3:4444\"\nwitness_fingerprint = \"{fw}\"\nvirtual_address = \"{VIP}/24\"\n"
    );
    b.configure(&format!(
        "role = \"secondary\"\npeer = \"10.77.0.1:3306\"\npeer_fingerprint = \"{fa}\"\n{common}"
    ));
    a.configure(&format!(
        "role = \"primary\"\npeer = \"10.77.0.2:3306\"\npeer_fingerprint = \"{fb}\"\n{common}"
    ));
    b.restart_in(Some(&lan.ns("b")));
    a.restart_in(Some(&lan.ns("a")));

    let store = |node: &Node, name: &str| {
        let s = Store::open(&root.path().join(format!("store-{name}"))).unwrap();
        s.replicate_through(ReplicationClient::new(
            "updated",
            &node.socket(),
            common::SYNC_TIMEOUT,
        ));
        s
    };
    let (store_a, store_b) = (store(&a, "a"), store(&b, "b"));
    let stop = Arc::new(AtomicBool::new(false));
    let samples_a = Arc::new(Mutex::new(Vec::new()));
    let samples_b = Arc::new(Mutex::new(Vec::new()));
    let threads = [
        (store_a.clone(), samples_a.clone()),
        (store_b.clone(), samples_b.clone()),
    ]
    .map(|(s, out)| {
        let stop = stop.clone();
        std::thread::spawn(move || sampler(s, stop, out))
    });
    let taken = |s: &Arc<Mutex<Vec<Sample>>>| -> Vec<Sample> {
        s.lock()
            .unwrap()
            .iter()
            .filter(|x| x.taken)
            .cloned()
            .collect()
    };

    // The primary is granted the lease and takes writes; the secondary
    // refuses them as the standby.
    wait_for("the primary taking writes", 30, || {
        !taken(&samples_a).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        taken(&samples_b).is_empty(),
        "the standby took writes while the primary was healthy"
    );
    let why_b = samples_b.lock().unwrap().last().map(|s| s.why.clone());
    assert!(
        why_b.as_deref().is_some_and(|w| w.contains("standby")),
        "{why_b:?}"
    );
    // The virtual address is on the primary only, and answers from it.
    wait_for("the virtual address on the primary", 10, || {
        lan.has_vip("a")
    });
    assert!(!lan.has_vip("b"), "the standby holds the virtual address");
    assert!(lan.reach_vip("w"), "the virtual address does not answer");
    let (mac_a, mac_b) = (lan.mac("a"), lan.mac("b"));
    assert_eq!(lan.vip_neighbour("w").as_deref(), Some(mac_a.as_str()));

    // Split a from b while both reach the witness: b hears nothing from
    // a, asks for the lease, and is refused while a holds it; a goes on
    // (DEGRADED).
    let split = Instant::now();
    lan.split(true);
    std::thread::sleep(PEER_DEAD + LEASE + Duration::from_secs(1));
    assert!(
        lan.has_vip("a") && !lan.has_vip("b"),
        "the virtual address left the primary that kept its lease"
    );
    lan.split(false);
    assert!(
        taken(&samples_b).is_empty(),
        "the secondary took writes while the primary held the lease"
    );
    assert!(
        taken(&samples_a)
            .iter()
            .any(|s| s.start > split + PEER_DEAD + LEASE),
        "the primary stopped taking writes although it kept its lease"
    );
    assert!(
        b.log().contains("the witness refused the lease"),
        "{}",
        b.log()
    );
    // Back in SYNC, and the secondary heard it (eligible again).
    let mended = Instant::now();
    wait_for("the pair in SYNC again", 30, || {
        taken(&samples_a).iter().any(|s| s.start > mended && s.sync)
    });
    std::thread::sleep(Duration::from_secs(1));

    // Cut the primary off: from the secondary and from the witness.
    let cut = Instant::now();
    lan.link("a", false);
    wait_for("the secondary taking writes", 30, || {
        !taken(&samples_b).is_empty()
    });
    let first_b = taken(&samples_b)[0].clone();
    // The address moved with the role, and its gratuitous ARP told the
    // witness host (which sent nothing to it since the cut) where it is.
    wait_for("the virtual address on the new active node", 10, || {
        lan.has_vip("b")
    });
    let vip_b = cut.elapsed();
    assert!(
        !lan.has_vip("a"),
        "the fenced node kept the virtual address"
    );
    wait_for("the neighbours told of the move", 10, || {
        lan.vip_neighbour("w").as_deref() == Some(mac_b.as_str())
    });
    let told = cut.elapsed();
    assert!(
        lan.reach_vip("w"),
        "the virtual address does not answer from the new active node"
    );
    println!(
        "virtual address: on the new active node {} ms after the cut, its neighbours pointed there {} ms after it",
        vip_b.as_millis(),
        told.as_millis()
    );
    let failover = first_b.end.duration_since(cut);
    let last_a = taken(&samples_a).last().cloned().unwrap();
    println!(
        "failover: the secondary took its first write {} ms after the cut; the old primary took its last {} ms after it",
        failover.as_millis(),
        last_a.start.saturating_duration_since(cut).as_millis()
    );
    assert!(
        last_a.start < first_b.end,
        "both nodes took writes: the old primary at {:?}, the new one at {:?}",
        last_a.start.duration_since(cut),
        first_b.end.duration_since(cut)
    );
    assert!(
        last_a.start < cut + LEASE,
        "the old primary took writes {} ms after the cut, beyond its lease",
        last_a.start.duration_since(cut).as_millis()
    );
    std::thread::sleep(Duration::from_secs(1));
    let fenced = samples_a.lock().unwrap().last().cloned().unwrap();
    assert!(!fenced.taken && fenced.why.contains("fenced"), "{fenced:?}");
    assert!(a.log().contains("FENCED"), "{}", a.log());
    assert!(b.log().contains("ACTIVE"), "{}", b.log());
    assert!(
        witness_log().contains("lease of epoch 2 granted"),
        "{}",
        witness_log()
    );

    // The link is back: the old primary sees epoch 2 and stays standby.
    lan.link("a", true);
    wait_for("the old primary stepping down", 20, || {
        a.log().contains("stepping down")
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let last = samples_a.lock().unwrap().last().cloned().unwrap();
    assert!(!last.taken && last.why.contains("standby"), "{last:?}");
    assert!(
        !lan.has_vip("a") && lan.has_vip("b"),
        "the virtual address is not on the active node alone after the link came back"
    );
    let epoch_a = std::fs::read_to_string(a.dir.join("state/epoch")).unwrap();
    assert_eq!(epoch_a.trim(), "2");

    // Over the whole run, every write either node took lies on one side
    // of the switch: none of a's after b's first.
    let (all_a, all_b) = (taken(&samples_a), taken(&samples_b));
    let latest_a = all_a.iter().map(|s| s.start).max().unwrap();
    let earliest_b = all_b.iter().map(|s| s.end).min().unwrap();
    assert!(latest_a < earliest_b, "the two nodes' writes overlap");
    println!(
        "samples: a took {} writes, b took {}; the old primary refused {} after its lease",
        all_a.len(),
        all_b.len(),
        samples_a
            .lock()
            .unwrap()
            .iter()
            .filter(|s| !s.taken)
            .count()
    );
}
