// Test helpers: a failed unwrap is a failed test; items are shared, not an API.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(unreachable_pub, missing_docs)]
//! Harness for sms-distd's integration tests: the simulated update centre
//! and fleet in this process (real sockets on loopback), the real update
//! daemon in this process on a private dbus-daemon, and sms-distd as a
//! real child process on the same bus.
#![allow(dead_code)]

use sms_core::package::{Channel, PackageEntry, Version};
use sms_distd::config::DistdConfig;
use sms_distd::inventory::Device;
use sms_distd::job::{JobReport, JobState};
use sms_sim::fleet::{Fleet, FleetConfig, FleetFaults};
use sms_sim::{TmcSim, TmcSimConfig};
use sms_testkit::{plain, DaemonProcess, DbusDaemon};
use sms_updated::updater::Updater;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub sim: TmcSim,
    pub bus: DbusDaemon,
    pub updater: Arc<Updater>,
    _updater_bus: zbus::Connection,
    pub fleet: Option<Fleet>,
    pub daemon: Option<DaemonProcess>,
    pub log: PathBuf,
    pub config: DistdConfig,
    conn: zbus::Connection,
    /// Runs sms-distd under this user ID (the test's files are handed to
    /// it first).
    pub run_as: Option<u32>,
    /// Runs sms-distd in this network namespace (the appliance on a
    /// virtual segment).
    pub netns: Option<String>,
    /// Puts the fleet on a virtual segment instead of loopback.
    pub lan: Option<sms_sim::fleet::LanPlacement>,
}

impl Harness {
    /// World, bus and updater; no fleet, no distd yet.
    pub async fn new() -> Harness {
        Harness::new_on(DbusDaemon::start().unwrap()).await
    }

    /// Like [`Harness::new`], on a bus of the caller's.
    pub async fn new_on(bus: DbusDaemon) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sim = TmcSim::start(TmcSimConfig::new(dir.path().join("sim")))
            .await
            .unwrap();
        let mut c = sms_testkit::world::updater_config(&sim.info, dir.path());
        c.retention.keep_versions = 20;
        let (updater, updater_bus) = sms_testkit::world::updater_on_bus(c, &bus).await.unwrap();
        let conn = zbus::connection::Builder::address(bus.address())
            .unwrap()
            .build()
            .await
            .unwrap();
        let mut config = DistdConfig::default();
        config.paths.state_dir = dir.path().join("distd/state");
        config.paths.blob_dir = dir.path().join("blobs");
        config.paths.cache_dir = dir.path().join("distd/cache");
        config.tls.trust_root = sim.info.trust_root_file.clone();
        config.push.connect_timeout = Duration::from_secs(3);
        config.push.transfer_timeout = Duration::from_secs(60);
        config.push.install_timeout = Duration::from_secs(60);
        config.push.poll_interval_ms = Duration::from_millis(100);
        config.push.backoff_initial_ms = Duration::from_millis(100);
        config.push.backoff_max_ms = Duration::from_millis(400);
        config.push.auto_distribute_dv = false;
        config.pull.http_listen = vec![];
        config.pull.https_listen = vec![];
        config.pull.refresh_interval = Duration::from_secs(1);
        Harness {
            log: dir.path().join("distd.log"),
            dir,
            sim,
            bus,
            updater,
            _updater_bus: updater_bus,
            fleet: None,
            daemon: None,
            config,
            conn,
            run_as: None,
            netns: None,
            lan: None,
        }
    }

    /// Publishes a DV of `size` bytes at the update centre and has the
    /// updater download it.
    pub async fn new_dv(&self, size: usize) -> PackageEntry {
        let e = self.sim.publish_dv(size);
        self.updater.refresh(Channel::Dv).await.unwrap();
        self.updater
            .download(Channel::Dv, &e.version)
            .await
            .unwrap();
        e
    }

    /// Publishes a TOS version (one image per family) and downloads it.
    pub async fn new_tos(&self, size: usize) -> Vec<PackageEntry> {
        let e = self.sim.publish_tos(size);
        self.updater.refresh(Channel::Tos).await.unwrap();
        self.updater
            .download(Channel::Tos, &e[0].version)
            .await
            .unwrap();
        e
    }

    /// Starts a fleet of `n` devices from `first`, port `port`.
    pub async fn start_fleet(
        &mut self,
        n: usize,
        first: Ipv4Addr,
        port: u16,
        faults: FleetFaults,
        install_delay: Duration,
    ) {
        let fleet = Fleet::start(FleetConfig {
            dir: self.dir.path().join("fleet"),
            devices: n,
            first_address: first,
            port,
            install_delay,
            trust_root: sms_core::metadata::TrustRoot::load(&self.sim.info.trust_root_file)
                .unwrap(),
            faults,
            seed: 7,
            initial_dv: None,
            snmp_port: None,
            trap_to: None,
            ntp_server: None,
            lan: self.lan.clone(),
            world: None,
        })
        .await
        .unwrap();
        self.config.tls.ca_file = fleet.ca_file.clone();
        self.config.tls.cert_file = fleet.appliance_cert.clone();
        self.config.tls.key_file = fleet.appliance_key.clone();
        self.fleet = Some(fleet);
    }

    /// TLS material without devices (for pull-only tests).
    pub async fn no_fleet(&mut self) {
        self.start_fleet(
            0,
            Ipv4Addr::new(127, 99, 0, 1),
            1,
            FleetFaults::default(),
            Duration::ZERO,
        )
        .await;
        self.fleet = None;
    }

    /// Writes the configuration and starts sms-distd; waits for D-Bus.
    pub async fn start(&mut self) {
        let path = self.dir.path().join("distd.toml");
        std::fs::write(&path, toml::to_string(&self.config).unwrap()).unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_sms-distd")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_sms-distd")),
        };
        if let Some(uid) = self.run_as {
            use std::os::unix::process::CommandExt;
            let st = Command::new("chown")
                .args(["-R", &format!("{uid}:{uid}")])
                .arg(self.dir.path())
                .status()
                .unwrap();
            assert!(st.success());
            cmd.uid(uid).gid(uid);
        }
        cmd.arg("--config")
            .arg(&path)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus.address())
            .env("RUST_LOG", "info,sms_distd=debug");
        self.daemon = Some(DaemonProcess::spawn(cmd, &self.log).unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.distributor().await.jobs().await.is_ok() {
                return;
            }
            assert!(
                self.daemon.as_mut().unwrap().is_running(),
                "sms-distd exited:\n{}",
                self.log_text()
            );
            assert!(Instant::now() < deadline, "sms-distd did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop();
        }
    }

    pub fn log_text(&self) -> String {
        plain(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// The distribution daemon's typed proxy on the test bus.
    pub async fn distributor(&self) -> sms_core::bus::Distributor1Proxy<'static> {
        sms_core::bus::Distributor1Proxy::new(&self.conn)
            .await
            .unwrap()
    }

    /// `PullStatus()` as JSON text.
    pub async fn pull_status_json(&self) -> String {
        let st = self.distributor().await.pull_status().await.unwrap();
        serde_json::to_string(&st.0).unwrap()
    }

    /// Adds every fleet device to the inventory over D-Bus.
    pub async fn import_fleet(&self, group_of: impl Fn(usize) -> &'static str) {
        let devices: Vec<Device> = self
            .fleet
            .as_ref()
            .unwrap()
            .devices()
            .into_iter()
            .enumerate()
            .map(|(i, d)| Device::new(d.name, d.address, d.port, d.family, group_of(i).into()))
            .collect();
        let n = self
            .distributor()
            .await
            .add_devices(sms_core::bus::Json(devices.clone()))
            .await
            .unwrap();
        assert_eq!(n as usize, devices.len());
    }

    pub async fn distribute(&self, channel: &str, version: &Version, target: &str) -> u64 {
        let job = self
            .distributor()
            .await
            .distribute(channel, &version.to_string(), target)
            .await
            .unwrap();
        job.0.id
    }

    pub async fn job(&self, id: u64) -> JobReport {
        self.distributor().await.job(id).await.unwrap().0
    }

    /// Polls the job until it is no longer running.
    pub async fn wait_job(&self, id: u64, limit: Duration) -> JobReport {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.job(id).await;
            if r.job.state != JobState::Running {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still running after {limit:?}: {:?}\n{}",
                r.counts,
                tail(&self.log_text(), 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn devices(&self) -> Vec<Device> {
        self.distributor().await.devices().await.unwrap().0
    }

    /// The payload the updater stored for a DV version.
    pub fn dv_payload(&self, v: &Version) -> Vec<u8> {
        let e = self
            .updater
            .list(Channel::Dv)
            .unwrap()
            .into_iter()
            .find(|p| p.version == v.to_string())
            .unwrap();
        std::fs::read(self.updater.blob_path(&e.sha256.parse().unwrap())).unwrap()
    }
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// curl from the source address `source` with `args`: (status, headers in
/// lower case, body).
pub fn curl_from(source: &str, args: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (h, b) = (dir.path().join("h"), dir.path().join("b"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--interface", source, "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl is required (make test installs it)");
    (
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        std::fs::read_to_string(&h)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        std::fs::read(&b).unwrap_or_default(),
    )
}
