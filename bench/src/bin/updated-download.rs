//! Download throughput of sms-updated from the simulated CDN, side by side
//! with curl fetching the same file in the same run, in alternating rounds.
//! The simulator runs as its own process (as the CDN would be elsewhere).
//! Both clients write the file to the same file system; sms-updated also
//! hashes it, verifies it against the signed digest and fsyncs it into the
//! blob store, which is part of what it must do.

use anyhow::{bail, Context, Result};
use sms_bench::{median, rounds, time, Child};
use sms_core::blob::BlobStore;
use sms_core::metadata::{verify_catalog, TrustRoot};
use sms_core::package::Channel;
use sms_sim::SimInfo;
use sms_updated::config::{DnsConfig, DownloadConfig, ProxyConfig};
use sms_updated::download::fetch_verified;
use sms_updated::net::Net;
use sms_updated::tmc::TmcClient;
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<()> {
    let size_mb: usize = std::env::var("SMS_BENCH_SIZE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let n = rounds(15);
    let dir = tempfile::tempdir()?;
    let sim_bin = std::env::current_exe()?.with_file_name("sms-sim");
    let sim_dir = dir.path().join("sim");
    let _sim = Child(
        sms_bench::own_group(&mut Command::new(&sim_bin))
            .args([
                "tmc",
                "--tos-size",
                "1K",
                "--dv-size",
                &format!("{size_mb}M"),
                "--dir",
            ])
            .arg(&sim_dir)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with cargo build --release -p sms-sim)",
                    sim_bin.display()
                )
            })?,
    );
    let info_file = sim_dir.join("sim.json");
    let mut info: Option<SimInfo> = None;
    for _ in 0..200 {
        if let Ok(bytes) = std::fs::read(&info_file) {
            if let Ok(i) = serde_json::from_slice(&bytes) {
                info = Some(i);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info = info.context("simulator did not start")?;
    let tls = sms_core::tls::client_config(&info.ca_file)?;
    let net = Net::new(
        &DnsConfig {
            servers: vec![info.dns],
            ..Default::default()
        },
        &ProxyConfig::default(),
        tls,
        Duration::from_secs(10),
    )?;
    // The real flow: signed catalog, then the CDN URL from the update centre.
    let tmc = TmcClient::new(
        net.clone(),
        &info.tmc_host,
        info.tmc_port,
        Duration::from_secs(10),
        "bench",
    )?;
    let mut catalog = None;
    for _ in 0..100 {
        if let Ok(c) = tmc.catalog(Channel::Dv).await {
            catalog = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let trust = TrustRoot::load(&info.trust_root_file)?;
    let now = time_now();
    let catalog = verify_catalog(
        &catalog.context("no catalog")?,
        &trust,
        Channel::Dv,
        now,
        None,
    )?
    .catalog;
    let entry = catalog.packages.last().context("no DV")?.clone();
    let url = tmc.download_url(&entry).await?;
    let curl_url = format!("http://127.0.0.1:{}{}", url.port, url.path);

    let blobs = BlobStore::open(&dir.path().join("blobs"))?;
    let cfg = DownloadConfig {
        reserve_bytes: 0,
        ..Default::default()
    };
    let curl_out = dir.path().join("curl.out");
    let mut ours = Vec::new();
    let mut curl = Vec::new();
    let mb = entry.length as f64 / (1 << 20) as f64;
    println!(
        "file: {} ({mb:.1} MiB) from {url}, {n} alternating rounds",
        entry.file
    );
    for round in 0..n {
        let (res, took) = time(fetch_verified(&net, &url, &entry, &blobs, &cfg, &|_| {})).await;
        res.context("sms-updated download")?;
        blobs.remove(&entry.sha256)?;
        ours.push(mb / took.as_secs_f64());

        let out = curl_out.clone();
        let u = curl_url.clone();
        let (st, took) = time(tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["-s", "-f", "-o"])
                .arg(&out)
                .arg(&u)
                .status()
        }))
        .await;
        let st = st?.context("running curl")?;
        if !st.success() {
            bail!("curl failed: {st}");
        }
        std::fs::remove_file(&curl_out)?;
        curl.push(mb / took.as_secs_f64());
        println!(
            "round {round}: sms-updated {:.0} MiB/s, curl {:.0} MiB/s",
            ours[round], curl[round]
        );
    }
    let (o, c) = (median(ours), median(curl));
    println!();
    println!("| client                          | median MiB/s |");
    println!("|---------------------------------|-------------:|");
    println!("| sms-updated (verify + fsync)    | {o:>12.0} |");
    println!("| curl -o file                    | {c:>12.0} |");
    println!("ratio sms-updated / curl = {:.2} (goal >= 0.95)", o / c);
    Ok(())
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
