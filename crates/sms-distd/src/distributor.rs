//! The distribution daemon's state and operations: inventory, jobs, and
//! the link to the update daemon (package list, activation signal).

use crate::client::DeviceTls;
use crate::config::DistdConfig;
use crate::inventory::{Device, Inventory, InventoryError, Target};
use crate::job::{self, CancelFlag, JobError, JobRecord, JobReport, JobState, Runner};
use crate::source::{self, Package};
use sms_core::metadata::TrustRoot;
use sms_core::package::{Channel, Version};
use sms_core::store::Store;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// Something other parts (D-Bus signals) announce.
#[derive(Debug, Clone, PartialEq)]
pub enum DistEvent {
    /// A job ended.
    JobFinished {
        /// Job id.
        id: u64,
        /// End state.
        state: JobState,
        /// Summary in words.
        summary: String,
    },
}

/// The daemon.
pub struct Distributor {
    /// Configuration.
    pub cfg: DistdConfig,
    store: Store,
    inventory: Inventory,
    runner: Arc<Runner>,
    trust: TrustRoot,
    bus: OnceLock<zbus::Connection>,
    running: Mutex<BTreeMap<u64, CancelFlag>>,
    events: broadcast::Sender<DistEvent>,
}

use sms_core::daemon::lock;

/// The format of this daemon's store: raised with a migration when its
/// data layout changes, so an older firmware refuses a newer store
/// instead of misreading it.
pub const STORE_SCHEMA: sms_core::store::Schema = sms_core::store::Schema {
    owner: "sms-distd",
    version: 1,
    migrations: &[],
};

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, JobError> {
    std::fs::read(path).map_err(|e| JobError::Invalid(format!("{what} {}: {e}", path.display())))
}

impl Distributor {
    /// Opens the store and loads the TLS material and the trust root.
    pub fn open(cfg: DistdConfig) -> Result<Arc<Distributor>, JobError> {
        let store = Store::open_with_schema(&cfg.paths.state_dir, &STORE_SCHEMA)?;
        let trust = TrustRoot::load(&cfg.tls.trust_root)
            .map_err(|e| JobError::Invalid(format!("tls.trust_root: {e}")))?;
        // Without the fleet CA or the client identity the daemon still
        // serves pull and its inventory; pushing says why it cannot.
        let tls = (|| {
            DeviceTls::from_pem(
                &read(&cfg.tls.ca_file, "tls.ca_file")?,
                &read(&cfg.tls.cert_file, "tls.cert_file")?,
                &read(&cfg.tls.key_file, "tls.key_file")?,
            )
            .map_err(|e| JobError::Invalid(e.to_string()))
        })();
        let tls = match tls {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("pushing to devices is disabled: {e}");
                None
            }
        };
        let inventory = Inventory::new(store.clone());
        let runner = Arc::new(Runner {
            store: store.clone(),
            inventory: inventory.clone(),
            cfg: cfg.push.clone(),
            tls,
            bytes_sent: Default::default(),
        });
        let (events, _) = broadcast::channel(64);
        Ok(Arc::new(Distributor {
            cfg,
            store,
            inventory,
            runner,
            trust,
            bus: OnceLock::new(),
            running: Mutex::new(BTreeMap::new()),
            events,
        }))
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The store (for the pull cache index).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The vendor trust root.
    pub fn trust(&self) -> &TrustRoot {
        &self.trust
    }

    /// Events for D-Bus signals.
    pub fn subscribe(&self) -> broadcast::Receiver<DistEvent> {
        self.events.subscribe()
    }

    /// Gives the daemon its bus connection (to reach the update daemon).
    pub fn set_bus(&self, conn: zbus::Connection) {
        let _ = self.bus.set(conn);
    }

    /// The bus connection.
    pub fn bus(&self) -> Result<&zbus::Connection, JobError> {
        self.bus
            .get()
            .ok_or_else(|| JobError::Invalid("not connected to the system bus".into()))
    }

    /// Verified files of a version, from the update daemon.
    pub async fn files(
        &self,
        channel: Channel,
        version: &Version,
    ) -> Result<Vec<Package>, JobError> {
        Ok(source::version_files(
            self.bus()?,
            channel,
            version,
            &self.cfg.paths.blob_dir,
            &self.trust,
        )
        .await?)
    }

    /// Adds devices to the inventory.
    pub fn add_devices(&self, devices: &[Device]) -> Result<(), InventoryError> {
        self.inventory.add(devices)
    }

    /// Starts distributing `version` of `channel` to `target`.
    pub async fn distribute(
        self: &Arc<Self>,
        channel: Channel,
        version: &Version,
        target: &Target,
    ) -> Result<JobRecord, JobError> {
        if self.runner.tls.is_none() {
            return Err(JobError::Invalid(format!(
                "pushing needs the fleet CA ({}) and this appliance's client certificate ({}); see the log",
                self.cfg.tls.ca_file.display(),
                self.cfg.tls.cert_file.display()
            )));
        }
        let files = self.files(channel, version).await?;
        let job = job::create(
            &self.store,
            &self.inventory,
            &self.cfg.push,
            channel,
            version,
            target,
            &files,
        )?;
        tracing::info!(
            job = job.id,
            "distributing {channel} {version} to {target}: {} device(s) in {} wave(s), {} excluded",
            job.waves.iter().map(Vec::len).sum::<usize>(),
            job.waves.len(),
            job.excluded.len()
        );
        self.spawn(job.id, files);
        Ok(job)
    }

    fn spawn(self: &Arc<Self>, id: u64, files: Vec<Package>) {
        let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
        lock(&self.running).insert(id, cancel.clone());
        let me = self.clone();
        tokio::spawn(async move {
            let result = me.runner.run(id, &files, cancel).await;
            lock(&me.running).remove(&id);
            let ev = match result {
                Ok(job) => {
                    let summary = me
                        .report(id)
                        .ok()
                        .flatten()
                        .map(|r| summary(&r))
                        .unwrap_or_default();
                    tracing::info!(job = id, "{summary}");
                    DistEvent::JobFinished {
                        id,
                        state: job.state,
                        summary,
                    }
                }
                Err(e) => {
                    tracing::error!(job = id, "job failed to run: {e}");
                    DistEvent::JobFinished {
                        id,
                        state: JobState::Stopped,
                        summary: e.to_string(),
                    }
                }
            };
            let _ = me.events.send(ev);
        });
    }

    /// Resumes jobs that were running when the daemon stopped. Retries
    /// until the update daemon can name the packages.
    pub async fn resume(self: &Arc<Self>) {
        let jobs = match job::list(&self.store) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!("reading jobs: {e}");
                return;
            }
        };
        for j in jobs.into_iter().filter(|j| j.state == JobState::Running) {
            let mut delay = Duration::from_millis(200);
            loop {
                match self.files(j.channel, &j.version).await {
                    Ok(files) => {
                        tracing::info!(job = j.id, "resuming {} {}", j.channel, j.version);
                        self.spawn(j.id, files);
                        break;
                    }
                    Err(JobError::Source(crate::source::SourceError::Bus(e))) => {
                        tracing::warn!(job = j.id, "cannot resume yet: {e}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                    Err(e) => {
                        tracing::error!(job = j.id, "cannot resume: {e}");
                        let mut j = j.clone();
                        j.state = JobState::Stopped;
                        j.reason = Some(format!("could not resume after restart: {e}"));
                        j.finished = Some(job::now());
                        if let Err(e) = job::save(&self.store, &j) {
                            tracing::error!(job = j.id, "{e}");
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Cancels a running job: no further device is started.
    pub fn cancel(&self, id: u64) -> Result<(), JobError> {
        match lock(&self.running).get(&id) {
            Some(flag) => {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            }
            None => Err(JobError::Invalid(format!("job {id} is not running"))),
        }
    }

    /// Progress and report of a job.
    pub fn report(&self, id: u64) -> Result<Option<JobReport>, JobError> {
        Ok(job::report(
            &self.store,
            id,
            self.runner.bytes_sent.load(Ordering::Relaxed),
        )?)
    }

    /// Every job.
    pub fn jobs(&self) -> Result<Vec<JobRecord>, JobError> {
        Ok(job::list(&self.store)?)
    }

    /// Follows the update daemon's `PackageActivated` signal and starts a
    /// job for every newly activated DV, when configured to.
    pub async fn follow_activations(self: Arc<Self>) {
        use futures_util::StreamExt;
        let Ok(conn) = self.bus().cloned() else {
            return;
        };
        // Through a proxy of the update daemon's well-known name: zbus
        // then delivers only signals whose sender is the name's current
        // owner and whose path is the updater's object, so another local
        // process cannot forge an activation and steer a push to the fleet.
        let proxy = match sms_core::bus::Updater1Proxy::new(&conn).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("update daemon proxy: {e}");
                return;
            }
        };
        let mut stream = match proxy.receive_package_activated().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("subscribing to PackageActivated: {e}");
                return;
            }
        };
        while let Some(msg) = stream.next().await {
            let Ok(args) = msg.args() else {
                continue;
            };
            if args.channel != "dv" || !self.cfg.push.auto_distribute_dv {
                continue;
            }
            let Ok(version) = args.version.parse::<Version>() else {
                continue;
            };
            if self.inventory.list().map(|l| l.is_empty()).unwrap_or(true) {
                continue;
            }
            for target in self.cfg.push.auto_targets() {
                match self.distribute(Channel::Dv, &version, &target).await {
                    Ok(j) => tracing::info!(
                        job = j.id,
                        "DV {version} activated: distributing to {}",
                        target_text(&target)
                    ),
                    Err(e) => tracing::error!(
                        "automatic distribution of DV {version} to {}: {e}",
                        target_text(&target)
                    ),
                }
            }
        }
    }
}

/// A target as people read it in the log.
fn target_text(t: &Target) -> String {
    match t {
        Target::All => "all devices".into(),
        Target::Group(g) => format!("group {g}"),
        Target::Device(d) => format!("device {d}"),
    }
}

/// One line on a job's result.
pub fn summary(r: &JobReport) -> String {
    let c = |k: &str| r.counts.get(k).copied().unwrap_or(0);
    let mut s = format!(
        "job {} ({} {} to {}): {:?}; done {}, skipped {}, failed {}, queued {}",
        r.job.id,
        r.job.channel,
        r.job.version,
        r.job.target,
        r.job.state,
        c("done"),
        c("skipped"),
        c("failed"),
        c("queued")
    );
    if let Some(reason) = &r.job.reason {
        s.push_str("; ");
        s.push_str(reason);
    }
    s
}
