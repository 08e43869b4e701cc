// Test helpers: a failed unwrap is a failed test; items are shared, not an API.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(unreachable_pub, missing_docs)]
//! Harness for sms-updated's integration tests: the simulated update centre
//! in this process (real sockets on loopback), a private dbus-daemon, and
//! sms-updated as a real child process.
#![allow(dead_code)]

use sms_core::bus::{
    InstalledPackage, UpdaterStatus, UPDATER_INTERFACE, UPDATER_NAME, UPDATER_PATH,
};
use sms_core::store::Store;
use sms_sim::{TmcSim, TmcSimConfig};
use sms_testkit::{plain, DaemonProcess, DbusDaemon};
use sms_updated::config::UpdaterConfig;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub sim: TmcSim,
    pub bus: DbusDaemon,
    pub daemon: Option<DaemonProcess>,
    pub log: PathBuf,
    pub config_path: PathBuf,
    conn: Option<zbus::Connection>,
}

impl Harness {
    pub async fn new() -> Harness {
        Self::with_sim(|_| {}).await
    }

    pub async fn with_sim(f: impl FnOnce(&mut TmcSimConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = TmcSimConfig::new(dir.path().join("sim"));
        f(&mut cfg);
        let sim = TmcSim::start(cfg).await.unwrap();
        let bus = DbusDaemon::start().unwrap();
        Harness {
            log: dir.path().join("updated.log"),
            config_path: dir.path().join("updated.toml"),
            dir,
            sim,
            bus,
            daemon: None,
            conn: None,
        }
    }

    /// A configuration pointing at the simulator, with test-friendly timings.
    pub fn config(&self) -> UpdaterConfig {
        let mut c = sms_testkit::world::updater_config(&self.sim.info, self.dir.path());
        c.dv.auto_check = true;
        c.tmc.appliance_id = "sms-test".into();
        c.tmc.request_timeout = Duration::from_secs(5);
        c.dns.timeout_ms = Duration::from_millis(500);
        c.dns.attempts = 1;
        c.dv.initial_delay = Duration::from_secs(0);
        c.dv.check_interval = Duration::from_secs(3600);
        c.download.attempts = 3;
        c.download.backoff_initial_ms = Duration::from_millis(50);
        c.download.backoff_max_ms = Duration::from_millis(200);
        c.download.stall_timeout = Duration::from_secs(2);
        c.paths.state_dir = self.dir.path().join("state");
        c
    }

    pub fn blob_dir(&self) -> PathBuf {
        self.dir.path().join("blobs")
    }

    /// Writes `cfg` and starts sms-updated; waits until it answers on D-Bus.
    pub async fn start(&mut self, cfg: &UpdaterConfig) {
        std::fs::write(&self.config_path, toml::to_string(cfg).unwrap()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sms-updated"));
        cmd.arg("--config")
            .arg(&self.config_path)
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus.address())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        self.daemon = Some(DaemonProcess::spawn(cmd, &self.log).unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.try_status().await.is_ok() {
                return;
            }
            assert!(
                self.running(),
                "sms-updated exited at start:\n{}",
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "sms-updated did not appear on D-Bus:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(|d| d.is_running())
    }

    pub fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let st = d.stop();
            assert!(
                st.is_some_and(|s| s.success()),
                "sms-updated did not stop cleanly: {st:?}"
            );
        }
    }

    pub fn log_text(&self) -> String {
        plain(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    async fn conn(&mut self) -> zbus::Result<zbus::Connection> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let c = zbus::connection::Builder::address(self.bus.address())?
            .build()
            .await?;
        self.conn = Some(c.clone());
        Ok(c)
    }

    pub async fn proxy(&mut self) -> zbus::Result<zbus::Proxy<'static>> {
        let conn = self.conn().await?;
        zbus::Proxy::new(&conn, UPDATER_NAME, UPDATER_PATH, UPDATER_INTERFACE).await
    }

    pub async fn call<A>(&mut self, method: &str, args: &A) -> zbus::Result<String>
    where
        A: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let p = self.proxy().await?;
        p.call(method, args).await
    }

    async fn try_status(&mut self) -> zbus::Result<UpdaterStatus> {
        let s: String = self.call("Status", &()).await?;
        Ok(serde_json::from_str(&s).unwrap())
    }

    pub async fn status(&mut self) -> UpdaterStatus {
        self.try_status().await.unwrap()
    }

    pub async fn list(&mut self, channel: &str) -> Vec<InstalledPackage> {
        let s = self.call("List", &(channel,)).await.unwrap();
        serde_json::from_str(&s).unwrap()
    }

    /// Polls the status until `pred` holds; fails with the log after `secs`.
    pub async fn wait_status(
        &mut self,
        what: &str,
        secs: u64,
        pred: impl Fn(&UpdaterStatus) -> bool,
    ) -> UpdaterStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(s) = self.try_status().await {
                if pred(&s) {
                    return s;
                }
                if Instant::now() > deadline {
                    panic!(
                        "timed out waiting for {what}; status {s:?}\nlog:\n{}",
                        self.log_text()
                    );
                }
            } else if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; no status\nlog:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs one DV check through D-Bus and waits for its result.
    pub async fn check_now(&mut self) -> UpdaterStatus {
        let before = self.status().await.completed_operations;
        self.call("CheckNow", &()).await.unwrap();
        self.wait_status("the requested check", 60, |s| {
            s.completed_operations > before && s.state == "idle"
        })
        .await
    }

    /// Versions the update centre has received confirmations for.
    pub fn confirmed_versions(&self) -> Vec<String> {
        self.sim
            .stats()
            .confirmations
            .iter()
            .map(|c| c.version.to_string())
            .collect()
    }

    /// Opens the daemon's store (the daemon must not be running).
    pub fn open_store(&self) -> Store {
        Store::open(&self.dir.path().join("state")).unwrap()
    }

    /// Files in the blob store's temporary directory.
    pub fn temp_files(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.blob_dir().join("tmp")) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => Vec::new(),
        }
    }
}
