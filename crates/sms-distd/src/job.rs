//! Distribution jobs: one package version to many devices, in waves.
//!
//! A job is stored before it starts, and so is every per-device step
//! (queued, transferring, installing, then done, skipped or failed with a
//! reason), so a restart resumes exactly: done devices are left alone, and
//! a device that was being served is asked for its status first, so a
//! package it already received is never sent twice.
//!
//! Waves follow hawkBit's rollouts: a small canary wave first, then the
//! rest in equal waves; when the failed fraction of a wave passes the
//! threshold, the job stops before the next wave.

use crate::client::{self, DeviceError, DeviceTls};
use crate::config::PushConfig;
use crate::inventory::{Device, DeviceState, Inventory, Target};
use crate::source::Package;
use bytes::Bytes;
use futures_util::StreamExt;

use sms_core::package::{Channel, Family, Version};
use sms_core::store::{Batch, Store, StoreError};

pub use sms_core::bus::{JobRecord, JobReport, JobState, TaskRecord, TaskState};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Store tree of jobs, keyed by zero-padded id.
pub const JOBS: &str = "jobs";
/// Store tree of per-device tasks, keyed `<job id>/<device>`.
pub const TASKS: &str = "tasks";
/// Store tree of counters.
pub const META: &str = "meta";

/// Why a job could not be created or run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Bad request.
    #[error("{0}")]
    Invalid(String),
    /// Inventory problem.
    #[error(transparent)]
    Inventory(#[from] crate::inventory::InventoryError),
    /// Package problem.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn job_key(id: u64) -> String {
    format!("{id:016}")
}

fn task_key(id: u64, device: &str) -> String {
    format!("{id:016}/{device}")
}

pub use sms_core::daemon::unix_now as now;

/// Splits devices into waves: `canary` of them first, then waves of
/// `wave` devices (both at least one).
pub fn plan_waves(
    names: Vec<String>,
    canary_fraction: f64,
    wave_fraction: f64,
) -> Vec<Vec<String>> {
    let n = names.len();
    if n == 0 {
        return Vec::new();
    }
    let canary = ((n as f64 * canary_fraction).ceil() as usize).clamp(1, n);
    let size = ((n as f64 * wave_fraction).ceil() as usize).max(1);
    let mut waves = vec![names[..canary].to_vec()];
    for chunk in names[canary..].chunks(size) {
        waves.push(chunk.to_vec());
    }
    waves
}

/// Creates and persists a job (state running). The caller runs it.
pub fn create(
    store: &Store,
    inventory: &Inventory,
    cfg: &PushConfig,
    channel: Channel,
    version: &Version,
    target: &Target,
    files: &[Package],
) -> Result<JobRecord, JobError> {
    let devices = inventory.resolve(target)?;
    if devices.is_empty() {
        return Err(JobError::Invalid(format!("no devices in {target}")));
    }
    let mut excluded = Vec::new();
    let mut included: Vec<(String, String)> = Vec::new();
    for d in &devices {
        match file_for(files, channel, d.family) {
            Some(p) => included.push((d.name.clone(), p.key.clone())),
            None => excluded.push((
                d.name.clone(),
                format!(
                    "no {channel} {version} image for platform family {}",
                    d.family
                ),
            )),
        }
    }
    if included.is_empty() {
        return Err(JobError::Invalid(format!(
            "{channel} {version} has no file for any device in {target}"
        )));
    }
    let id = store
        .get_json::<u64>(META, "next_job_id")?
        .unwrap_or(1)
        .max(1);
    let names: Vec<String> = included.iter().map(|(n, _)| n.clone()).collect();
    let waves = plan_waves(names, cfg.canary_fraction, cfg.wave_fraction);
    let job = JobRecord {
        id,
        channel,
        version: version.clone(),
        target: target.clone(),
        state: JobState::Running,
        reason: None,
        created: now(),
        finished: None,
        waves: waves.clone(),
        wave: 0,
        max_failure_rate: cfg.max_failure_rate,
        excluded,
    };
    let keys: BTreeMap<&str, &str> = included
        .iter()
        .map(|(n, k)| (n.as_str(), k.as_str()))
        .collect();
    let mut b = Batch::new();
    b.put_json(META, "next_job_id", &(id + 1))
        .put_json(JOBS, job_key(id), &job);
    for (w, wave) in waves.iter().enumerate() {
        for name in wave {
            b.put_json(
                TASKS,
                task_key(id, name),
                &TaskRecord {
                    device: name.clone(),
                    key: keys
                        .get(name.as_str())
                        .copied()
                        .unwrap_or_default()
                        .to_string(),
                    wave: w,
                    state: TaskState::Queued,
                    attempts: 0,
                    reason: None,
                    updated: now(),
                },
            );
        }
    }
    store.apply(&b)?;
    Ok(job)
}

fn file_for(files: &[Package], channel: Channel, family: Family) -> Option<&Package> {
    match channel {
        Channel::Dv => files.first(),
        Channel::Tos => files.iter().find(|p| p.family == Some(family)),
    }
}

/// Reads a job.
pub fn load(store: &Store, id: u64) -> Result<Option<JobRecord>, StoreError> {
    store.get_json(JOBS, job_key(id))
}

/// Stores a job record.
pub fn save(store: &Store, job: &JobRecord) -> Result<(), StoreError> {
    let mut b = Batch::new();
    b.put_json(JOBS, job_key(job.id), job);
    store.apply(&b).map(|_| ())
}

/// Every job, oldest first.
pub fn list(store: &Store) -> Result<Vec<JobRecord>, StoreError> {
    store.scan_json(JOBS, [])
}

/// The tasks of job `id`.
pub fn tasks(store: &Store, id: u64) -> Result<Vec<TaskRecord>, StoreError> {
    store.scan_json(TASKS, format!("{id:016}/"))
}

/// Builds the report of job `id`.
pub fn report(store: &Store, id: u64, bytes_sent: u64) -> Result<Option<JobReport>, StoreError> {
    let Some(job) = load(store, id)? else {
        return Ok(None);
    };
    let mut counts = BTreeMap::new();
    let mut failures = Vec::new();
    for t in tasks(store, id)? {
        let name = serde_json::to_value(t.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *counts.entry(name).or_insert(0) += 1;
        if t.state == TaskState::Failed {
            failures.push((t.device, t.reason.unwrap_or_default()));
        }
    }
    Ok(Some(JobReport {
        job,
        counts,
        bytes_sent,
        failures,
    }))
}

/// What a running job needs.
pub struct Runner {
    /// The daemon's store.
    pub store: Store,
    /// Device inventory.
    pub inventory: Inventory,
    /// Push settings.
    pub cfg: PushConfig,
    /// TLS towards devices (none: pushing is disabled).
    pub tls: Option<DeviceTls>,
    /// Package bytes sent (all jobs, this run).
    pub bytes_sent: AtomicU64,
}

/// Cancels a running job when set.
pub type CancelFlag = Arc<AtomicBool>;

fn backoff(cfg: &PushConfig, attempt: u32) -> Duration {
    let base = cfg.backoff_initial_ms.as_millis() as u64;
    let cap = cfg.backoff_max_ms.as_millis() as u64;
    let exp = base
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(16))
        .min(cap);
    let jitter = rand::random::<u64>() % (exp / 2 + 1);
    Duration::from_millis(exp / 2 + jitter)
}

/// How a device ended: its final state and the reason.
type Outcome = (TaskState, Option<String>);

impl Runner {
    fn save_task(
        &self,
        job: u64,
        t: &TaskRecord,
        device: Option<&Device>,
    ) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.put_json(TASKS, task_key(job, &t.device), t);
        if let Some(d) = device {
            b.put_json(crate::inventory::DEVICES, &d.name, d);
        }
        self.store.apply(&b).map(|_| ())
    }

    /// Runs (or resumes) job `id` to its end. `files` are its verified
    /// package files; their bytes are read once and shared by all uploads.
    pub async fn run(
        &self,
        id: u64,
        files: &[Package],
        cancel: CancelFlag,
    ) -> Result<JobRecord, JobError> {
        let mut job =
            load(&self.store, id)?.ok_or_else(|| JobError::Invalid(format!("no job {id}")))?;
        let mut bodies: BTreeMap<String, (Package, Bytes)> = BTreeMap::new();
        for p in files {
            bodies.insert(p.key.clone(), (p.clone(), p.read_verified()?));
        }
        let bodies = Arc::new(bodies);
        while job.state == JobState::Running && job.wave < job.waves.len() {
            let w = job.wave;
            let pending: Vec<TaskRecord> = tasks(&self.store, id)?
                .into_iter()
                .filter(|t| t.wave == w && !t.state.is_final())
                .collect();
            tracing::info!(
                job = id,
                "wave {}/{}: {} device(s) to serve",
                w + 1,
                job.waves.len(),
                pending.len()
            );
            futures_util::stream::iter(pending)
                .map(|t| {
                    let bodies = bodies.clone();
                    let cancel = cancel.clone();
                    async move { self.serve_device(id, t, &bodies, &cancel).await }
                })
                .buffer_unordered(self.cfg.max_parallel.max(1))
                .collect::<Vec<()>>()
                .await;
            if cancel.load(Ordering::SeqCst) {
                job.state = JobState::Cancelled;
                job.reason = Some("cancelled".into());
                break;
            }
            let wave_tasks: Vec<TaskRecord> = tasks(&self.store, id)?
                .into_iter()
                .filter(|t| t.wave == w)
                .collect();
            let attempted = wave_tasks
                .iter()
                .filter(|t| t.state != TaskState::Skipped)
                .count();
            let failed = wave_tasks
                .iter()
                .filter(|t| t.state == TaskState::Failed)
                .count();
            let rate = if attempted == 0 {
                0.0
            } else {
                failed as f64 / attempted as f64
            };
            job.wave = w + 1;
            if rate > job.max_failure_rate && job.wave < job.waves.len() {
                job.state = JobState::Stopped;
                job.reason = Some(format!(
                    "wave {} of {}: {failed} of {attempted} device(s) failed ({:.1} % > {:.1} % allowed); later waves not started",
                    w + 1,
                    job.waves.len(),
                    rate * 100.0,
                    job.max_failure_rate * 100.0
                ));
                tracing::warn!(job = id, "{}", job.reason.as_deref().unwrap_or_default());
            }
            save(&self.store, &job)?;
        }
        if job.state == JobState::Running {
            job.state = JobState::Completed;
        }
        job.finished = Some(now());
        save(&self.store, &job)?;
        tracing::info!(job = id, state = ?job.state, "job ended");
        Ok(job)
    }

    async fn serve_device(
        &self,
        job: u64,
        mut task: TaskRecord,
        bodies: &BTreeMap<String, (Package, Bytes)>,
        cancel: &CancelFlag,
    ) {
        if cancel.load(Ordering::SeqCst) {
            return;
        }
        let device = match self.inventory.get(&task.device) {
            Ok(Some(d)) => d,
            Ok(None) => {
                task.state = TaskState::Failed;
                task.reason = Some("device was removed from the inventory".into());
                task.updated = now();
                let _ = self.save_task(job, &task, None);
                return;
            }
            Err(e) => {
                tracing::error!(job, device = task.device, "inventory: {e}");
                return;
            }
        };
        let Some((pkg, body)) = bodies.get(&task.key) else {
            task.state = TaskState::Failed;
            task.reason = Some(format!(
                "package {} is no longer on the appliance",
                task.key
            ));
            let _ = self.save_task(job, &task, None);
            return;
        };
        let (state, reason) = match &self.tls {
            Some(tls) => {
                self.device_steps(job, &mut task, &device, pkg, body, tls)
                    .await
            }
            None => (
                TaskState::Failed,
                Some("no TLS identity for devices is configured".into()),
            ),
        };
        task.state = state;
        task.reason = reason.clone();
        task.updated = now();
        let mut d = device;
        match state {
            TaskState::Done | TaskState::Skipped => {
                let v = Some(pkg.version.to_string());
                match pkg.channel {
                    Channel::Dv => d.dv = v,
                    Channel::Tos => d.tos = v,
                }
                d.state = DeviceState::Ok;
                d.last_contact = Some(now());
                d.last_error = None;
            }
            _ => {
                d.state = match reason.as_deref() {
                    Some(r) if r.starts_with("unreachable") => DeviceState::Unreachable,
                    _ => DeviceState::Failed,
                };
                d.last_error = reason;
            }
        }
        if let Err(e) = self.save_task(job, &task, Some(&d)) {
            tracing::error!(job, device = d.name, "recording the result: {e}");
        }
        match state {
            TaskState::Failed => tracing::warn!(
                job,
                device = d.name,
                "failed: {}",
                task.reason.as_deref().unwrap_or_default()
            ),
            _ => tracing::debug!(job, device = d.name, ?state, "finished"),
        }
    }

    fn installed<'a>(
        &self,
        pkg: &Package,
        st: &'a sms_core::device::DeviceStatus,
    ) -> Option<&'a str> {
        match pkg.channel {
            Channel::Dv => st.dv.as_deref(),
            Channel::Tos => st.tos.as_deref(),
        }
    }

    async fn device_steps(
        &self,
        job: u64,
        task: &mut TaskRecord,
        device: &Device,
        pkg: &Package,
        body: &Bytes,
        tls: &DeviceTls,
    ) -> Outcome {
        let cfg = &self.cfg;
        let target = pkg.version.to_string();
        let mut last: Option<DeviceError> = None;
        let mut tries: u32 = 0;
        loop {
            if tries >= cfg.attempts.max(1) {
                let e = last.map(|e| e.to_string()).unwrap_or_default();
                return (
                    TaskState::Failed,
                    Some(format!("{e} (after {tries} attempt(s))")),
                );
            }
            if tries > 0 {
                tokio::time::sleep(backoff(cfg, tries)).await;
            }
            tries += 1;
            // Ask first: a device that already has the version (or got it
            // before a restart) is not sent it again.
            let st = match client::status(device, tls, cfg.connect_timeout).await {
                Ok(st) => st,
                Err(e) if e.is_transient() => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return (TaskState::Failed, Some(e.to_string())),
            };
            if self.installed(pkg, &st) == Some(target.as_str()) {
                return if task.state == TaskState::Queued && task.attempts == 0 {
                    (
                        TaskState::Skipped,
                        Some(format!("already at {} {target}", pkg.channel)),
                    )
                } else {
                    (TaskState::Done, None)
                };
            }
            let resumed_install = st.installing.as_deref() == Some(task.key.as_str());
            if !resumed_install {
                task.state = TaskState::Transferring;
                task.attempts += 1;
                task.updated = now();
                if let Err(e) = self.save_task(job, task, None) {
                    return (TaskState::Failed, Some(format!("store: {e}")));
                }
                let sent = client::upload(
                    device,
                    tls,
                    cfg.connect_timeout,
                    cfg.transfer_timeout,
                    &pkg.key,
                    &pkg.sha256,
                    &pkg.envelope,
                    body.clone(),
                )
                .await;
                match sent {
                    Ok(()) => {
                        self.bytes_sent
                            .fetch_add(body.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.is_transient() => {
                        tracing::info!(job, device = device.name, "attempt {tries}: {e}");
                        last = Some(e);
                        continue;
                    }
                    Err(e) => return (TaskState::Failed, Some(e.to_string())),
                }
            }
            task.state = TaskState::Installing;
            task.updated = now();
            if let Err(e) = self.save_task(job, task, None) {
                return (TaskState::Failed, Some(format!("store: {e}")));
            }
            return self.await_install(device, pkg, &target, tls).await;
        }
    }

    async fn await_install(
        &self,
        device: &Device,
        pkg: &Package,
        target: &str,
        tls: &DeviceTls,
    ) -> Outcome {
        let cfg = &self.cfg;
        let deadline = tokio::time::Instant::now() + cfg.install_timeout;
        let mut errors = 0u32;
        loop {
            tokio::time::sleep(cfg.poll_interval_ms).await;
            if tokio::time::Instant::now() > deadline {
                return (
                    TaskState::Failed,
                    Some(format!(
                        "install did not finish within {} s",
                        cfg.install_timeout.as_secs()
                    )),
                );
            }
            match client::status(device, tls, cfg.connect_timeout).await {
                Ok(st) => {
                    errors = 0;
                    if self.installed(pkg, &st) == Some(target) {
                        return (TaskState::Done, None);
                    }
                    if st.installing.is_none() {
                        let why = st
                            .last_error
                            .unwrap_or_else(|| "install ended without the new version".into());
                        return (
                            TaskState::Failed,
                            Some(format!("install failed on the device: {why}")),
                        );
                    }
                }
                // A device may reboot while it installs: tolerate a few misses.
                Err(e) if e.is_transient() && errors < 30 => errors += 1,
                Err(e) => return (TaskState::Failed, Some(e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_cover_every_device_once_canary_first() {
        let names: Vec<String> = (0..1000).map(|i| format!("d{i}")).collect();
        let w = plan_waves(names.clone(), 0.05, 0.25);
        assert_eq!(w[0].len(), 50);
        assert_eq!(w.len(), 5);
        let flat: Vec<String> = w.concat();
        assert_eq!(flat, names);
        let one = plan_waves(vec!["x".into()], 0.05, 0.25);
        assert_eq!(one, vec![vec!["x".to_string()]]);
        assert!(plan_waves(Vec::new(), 0.1, 0.1).is_empty());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = PushConfig {
            backoff_initial_ms: Duration::from_millis(100),
            backoff_max_ms: Duration::from_millis(1000),
            ..PushConfig::default()
        };
        for attempt in 1..20 {
            let d = backoff(&cfg, attempt);
            assert!(d <= Duration::from_millis(1000), "{d:?}");
            assert!(d >= Duration::from_millis(50), "{d:?}");
        }
    }
}
