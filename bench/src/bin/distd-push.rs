//! Push of a TOS image to a simulated fleet by sms-distd's job runner (mutual
//! TLS, one upload per device, devices hash and verify what they receive),
//! against the loopback limit: devices × size ÷ the measured throughput of
//! a plain TCP copy over loopback in the same run. Defaults: 1,000 devices,
//! 50 MB (SMS_BENCH_DEVICES, SMS_BENCH_SIZE_MB).

use anyhow::{Context, Result};
use sms_core::blob::BlobStore;
use sms_core::metadata::{Catalog, CatalogSigner, TrustRoot};
use sms_core::package::{Channel, Family, PackageEntry, Version};
use sms_core::store::Store;
use sms_distd::client::DeviceTls;
use sms_distd::config::PushConfig;
use sms_distd::inventory::{Device, Inventory, Target};
use sms_distd::job::{self, Runner};
use sms_distd::source::Package;
use sms_sim::fleet::{Fleet, FleetConfig, FleetFaults};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes per second of a plain TCP copy of `total` bytes over loopback.
async fn loopback_copy(total: usize) -> Result<f64> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = l.accept().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0usize;
        loop {
            let r = s.read(&mut buf).await?;
            if r == 0 {
                return anyhow::Ok(n);
            }
            n += r;
        }
    });
    let chunk = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut sent = 0;
    while sent < total {
        s.write_all(&chunk).await?;
        sent += chunk.len();
    }
    s.shutdown().await?;
    drop(s);
    let got = reader.await??;
    Ok(got as f64 / t.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let devices = env("SMS_BENCH_DEVICES", 1000);
    let size = env("SMS_BENCH_SIZE_MB", 50) << 20;
    let dir = tempfile::tempdir()?;
    let root = dir.path();

    // Vendor keys, one signed TOS version with an image per family.
    let signer = CatalogSigner::generate(1);
    let trust = TrustRoot::new(&signer.verifying_keys(), 1)?;
    let blobs = BlobStore::open(&root.join("blobs"))?;
    let version: Version = "6.0.0.1".parse().map_err(anyhow::Error::msg)?;
    let mut entries = Vec::new();
    for (i, f) in Family::ALL.iter().enumerate() {
        let image = sms_sim::content::tos_image(100 + i as u64, size);
        let sha256 = blobs.put_bytes(&image)?;
        entries.push(PackageEntry {
            channel: Channel::Tos,
            version: version.clone(),
            family: Some(*f),
            file: format!("tos-{}-{version}.img", f.id()),
            length: image.len() as u64,
            sha256,
        });
    }
    let env_json = serde_json::to_vec(&signer.sign_catalog(&Catalog {
        channel: Channel::Tos,
        version: 1,
        issued: 0,
        expires: i64::MAX / 2,
        packages: entries.clone(),
    }))?;
    let files: Vec<Package> = entries
        .iter()
        .map(|e| Package {
            key: e.key(),
            channel: e.channel,
            version: e.version.clone(),
            family: e.family,
            sha256: e.sha256,
            path: blobs.path(&e.sha256),
            envelope: env_json.clone().into(),
        })
        .collect();

    let fleet = Fleet::start(FleetConfig {
        dir: root.join("fleet"),
        devices,
        first_address: Ipv4Addr::new(127, 40, 0, 1),
        port: 18445,
        install_delay: Duration::from_millis(10),
        trust_root: trust.clone(),
        faults: FleetFaults::default(),
        seed: 1,
        initial_dv: None,
        snmp_port: None,
        trap_to: None,
        ntp_server: None,
        lan: None,
        world: None,
    })
    .await?;
    let store = Store::open(&root.join("state"))?;
    let inventory = Inventory::new(store.clone());
    let list: Vec<Device> = fleet
        .devices()
        .into_iter()
        .map(|d| Device::new(d.name, d.address, d.port, d.family, "bench".into()))
        .collect();
    inventory.add(&list)?;
    let cfg = PushConfig {
        max_parallel: 50,
        poll_interval_ms: Duration::from_millis(20),
        ..PushConfig::default()
    };
    let tls = DeviceTls::from_pem(
        &std::fs::read(&fleet.ca_file)?,
        &std::fs::read(&fleet.appliance_cert)?,
        &std::fs::read(&fleet.appliance_key)?,
    )
    .map_err(anyhow::Error::msg)?;

    let limit_bps = loopback_copy(2 << 30).await?;
    let job = job::create(
        &store,
        &inventory,
        &cfg,
        Channel::Tos,
        &version,
        &Target::All,
        &files,
    )?;
    let runner = Runner {
        store: store.clone(),
        inventory,
        cfg,
        tls: Some(tls),
        bytes_sent: Default::default(),
    };
    let t = Instant::now();
    let done = runner
        .run(job.id, &files, Arc::new(AtomicBool::new(false)))
        .await?;
    let secs = t.elapsed().as_secs_f64();
    let report = job::report(&store, job.id, runner.bytes_sent.load(Ordering::Relaxed))?
        .context("report")?;
    let total = devices as f64 * size as f64;
    let limit_secs = total / limit_bps;
    println!(
        "distd-push: {devices} devices x {} MiB TOS image, 50 in parallel, mutual TLS; job {:?}, done {}, failed {}",
        size >> 20,
        done.state,
        report.counts.get("done").copied().unwrap_or(0),
        report.counts.get("failed").copied().unwrap_or(0),
    );
    println!(
        "loopback copy {:.0} MiB/s -> limit {limit_secs:.1} s; push took {secs:.1} s ({:.0} MiB/s); time / limit = {:.2}",
        limit_bps / (1u64 << 20) as f64,
        total / secs / (1u64 << 20) as f64,
        secs / limit_secs
    );
    Ok(())
}
