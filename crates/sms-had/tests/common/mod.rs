//! Two sms-had processes on loopback, paired by fingerprint, and a store
//! replicating through the primary, as a daemon's would.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use sms_core::replication::ReplicationClient;
use sms_core::store::Store;
use sms_testkit::DaemonProcess;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The sync timeout the tests run with (the shipped default is 2 s).
pub const SYNC_TIMEOUT: Duration = Duration::from_millis(500);

/// One node: its directory, config and, while it runs, its process.
pub struct Node {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub process: Option<DaemonProcess>,
    pub name: &'static str,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sms-had")
}

/// What an `--identity` command prints: a fingerprint.
pub fn identity_of(mut cmd: Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The fingerprint of the witness whose state is in `state_dir` (made on
/// first use).
pub fn witness_fingerprint(state_dir: &Path) -> String {
    let mut cmd = Command::new(bin());
    cmd.args(["witness", "--identity", "--state-dir"])
        .arg(state_dir);
    identity_of(cmd)
}

/// A witness on loopback for `pair`'s two nodes (state and log under the
/// pair's root), written into both nodes' configuration; running until
/// dropped. Its log is `witness.log` in the pair's root.
pub fn witness_for(pair: &Pair) -> DaemonProcess {
    let (fa, fb) = (pair.a.fingerprint(), pair.b.fingerprint());
    let dir = pair.root.path().join("witness");
    let fw = witness_fingerprint(&dir);
    let port = sms_testkit::free_port();
    let mut cmd = Command::new(bin());
    cmd.args(["witness", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--state-dir")
        .arg(&dir)
        .args(["--node", &fa, "--node", &fb])
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM");
    let w = DaemonProcess::spawn(cmd, &pair.root.path().join("witness.log")).unwrap();
    for node in [&pair.a, &pair.b] {
        let mut text = std::fs::read_to_string(&node.config).unwrap();
        text.push_str(&format!(
            "witness = \"127.0.0.1:{port}\"\nwitness_fingerprint = \"{fw}\"\n"
        ));
        std::fs::write(&node.config, text).unwrap();
    }
    w
}

impl Node {
    pub fn new(root: &Path, name: &'static str) -> Node {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("had.toml");
        std::fs::write(
            &config,
            format!(
                "role = \"standalone\"\nstate_dir = \"{}\"\n",
                dir.join("state").display()
            ),
        )
        .unwrap();
        Node {
            dir,
            config,
            process: None,
            name,
        }
    }

    /// The fingerprint `sms-had --identity` prints (made on first use).
    pub fn fingerprint(&self) -> String {
        let mut cmd = Command::new(bin());
        cmd.args(["--identity", "--config"])
            .arg(&self.config)
            .arg("--settings")
            .arg(self.dir.join("no-settings.json"));
        identity_of(cmd)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("ha.sock")
    }

    pub fn replica(&self, store: &str) -> PathBuf {
        self.dir.join("state/replica").join(store)
    }

    pub fn configure(&self, body: &str) {
        std::fs::write(
            &self.config,
            format!(
                "state_dir = \"{}\"\nlocal_socket = \"{}\"\nsync_timeout_ms = {}\n{body}",
                self.dir.join("state").display(),
                self.socket().display(),
                SYNC_TIMEOUT.as_millis()
            ),
        )
        .unwrap();
    }

    pub fn start(&mut self) {
        self.start_in(None)
    }

    /// Starts the node with its D-Bus interface on the bus at `address`.
    pub fn start_on_bus(&mut self, address: &str) {
        let mut cmd = Command::new(bin());
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--settings")
            .arg(self.dir.join("no-settings.json"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", address)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM");
        self.process = Some(DaemonProcess::spawn(cmd, &self.dir.join("log")).unwrap());
    }

    /// Starts the node inside network namespace `netns` (or here).
    pub fn start_in(&mut self, netns: Option<&str>) {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin()]);
                c
            }
            None => Command::new(bin()),
        };
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--settings")
            .arg(self.dir.join("no-settings.json"))
            .arg("--no-dbus")
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM");
        self.process = Some(DaemonProcess::spawn(cmd, &self.dir.join("log")).unwrap());
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    pub fn log(&self) -> String {
        sms_testkit::plain(&std::fs::read_to_string(self.dir.join("log")).unwrap_or_default())
    }

    /// Starts the node and waits (bounded) until its log says it is ready.
    pub fn restart(&mut self) {
        self.restart_in(None)
    }

    /// [`Node::restart`] inside network namespace `netns`.
    pub fn restart_in(&mut self, netns: Option<&str>) {
        let before = self.log().matches("sms-had ready").count();
        self.start_in(netns);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.log().matches("sms-had ready").count() > before {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} not ready:\n{}", self.name, self.log());
    }
}

/// A primary `a` and a secondary `b` pinned to each other, running.
pub struct Pair {
    pub root: tempfile::TempDir,
    pub a: Node,
    pub b: Node,
    pub listen: SocketAddr,
}

impl Pair {
    /// A primary `a` and a secondary `b` configured, not started.
    pub fn new() -> Pair {
        let root = tempfile::tempdir().unwrap();
        let a = Node::new(root.path(), "a");
        let b = Node::new(root.path(), "b");
        let (fa, fb) = (a.fingerprint(), b.fingerprint());
        assert_ne!(fa, fb);
        let listen: SocketAddr = format!("127.0.0.1:{}", sms_testkit::free_port())
            .parse()
            .unwrap();
        let (ca, cb) = (sms_testkit::free_port(), sms_testkit::free_port());
        b.configure(&format!(
            "role = \"secondary\"\nlisten = \"{listen}\"\npeer_fingerprint = \"{fa}\"\n\
             control_listen = \"127.0.0.1:{cb}\"\npeer_control = \"127.0.0.1:{ca}\"\n"
        ));
        a.configure(&format!(
            "role = \"primary\"\npeer = \"{listen}\"\npeer_fingerprint = \"{fb}\"\n\
             control_listen = \"127.0.0.1:{ca}\"\npeer_control = \"127.0.0.1:{cb}\"\n"
        ));
        Pair { root, a, b, listen }
    }

    /// [`Pair::new`], both nodes running and the primary active (it
    /// heard its peer standing by).
    pub fn start() -> Pair {
        let mut pair = Pair::new();
        pair.b.restart();
        pair.a.restart();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pair.a.log().contains("ACTIVE") {
            assert!(
                Instant::now() < deadline,
                "a never active:\n{}",
                pair.a.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        pair
    }

    /// A store of node a replicating through its sms-had as `name`.
    pub fn store(&self, name: &str) -> Store {
        self.store_of(&self.a, name)
    }

    /// A store of `node` replicating through its sms-had as `name`.
    pub fn store_of(&self, node: &Node, name: &str) -> Store {
        let path = self.root.path().join(format!("{}-{name}", node.name));
        let store = Store::open(&path).unwrap();
        assert!(store.replicate_through(ReplicationClient::new(
            name,
            &node.socket(),
            SYNC_TIMEOUT
        )));
        store
    }

    /// True when b accepts TCP on its replication port.
    pub fn b_listening(&self) -> bool {
        TcpStream::connect_timeout(&self.listen, Duration::from_millis(200)).is_ok()
    }
}

/// Every key and value of `tree` in `store`.
pub fn dump(store: &Store, tree: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    store.scan(tree, b"").unwrap()
}
