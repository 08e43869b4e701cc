//! The virtual segment (sms-lan: smoltcp hosts behind a learning switch)
//! against the kernel's loopback, side by side in one run:
//! - one TCP stream of SMS_BENCH_STREAM_MB (default 256) from one host to
//!   another: throughput, and frames per second through the switch;
//! - a push of SMS_BENCH_SIZE_MB (default 50) to each of SMS_BENCH_DEVICES
//!   (default 50) devices at once, as a TOS distribution does: aggregate
//!   throughput into the devices and the time it took.
//!
//! Goal: the segment is not what limits the tests (at least 100 MB/s
//! aggregate into the devices without TCG).

use anyhow::{Context, Result};
use sms_lan::{Buffers, HostConfig, HostId, Lan, Mac};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn send_all<S: AsyncWrite + Unpin>(s: &mut S, total: usize) -> Result<()> {
    let chunk = vec![0x5au8; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        let n = chunk.len().min(total - sent);
        s.write_all(&chunk[..n]).await?;
        sent += n;
    }
    s.shutdown().await?;
    Ok(())
}

async fn drain<S: AsyncRead + Unpin>(s: &mut S) -> Result<usize> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0;
    loop {
        let r = s.read(&mut buf).await?;
        if r == 0 {
            return Ok(n);
        }
        n += r;
    }
}

/// Kernel loopback: `devices` receivers, `size` bytes to each at once;
/// seconds.
async fn kernel_push(devices: usize, size: usize) -> Result<f64> {
    let mut addrs = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..devices {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(l.local_addr()?);
        receivers.push(tokio::spawn(async move {
            let (mut s, _) = l.accept().await?;
            drain(&mut s).await
        }));
    }
    let t = Instant::now();
    let mut senders = Vec::new();
    for a in addrs {
        senders.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(a).await?;
            send_all(&mut s, size).await
        }));
    }
    for s in senders {
        s.await??;
    }
    for r in receivers {
        let got = r.await??;
        anyhow::ensure!(got == size, "a kernel receiver got {got} of {size} bytes");
    }
    Ok(t.elapsed().as_secs_f64())
}

fn host(lan: &Lan, i: u32) -> Result<HostId> {
    Ok(lan.add_host(HostConfig {
        mac: Mac::local(i + 1),
        address: Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 10)) + i),
        prefix: 16,
        gateway: None,
    })?)
}

/// The segment: host 0 (the appliance) sends `size` bytes to each of
/// `devices` hosts at once; seconds and frames that crossed the switch.
/// The devices open the connections: a smoltcp host resolves one new
/// neighbour per second (smoltcp's ARP rate limit), and the appliance
/// learns every device's MAC from its ARP request instead.
async fn segment_push(devices: usize, size: usize) -> Result<(f64, u64)> {
    let lan = std::sync::Arc::new(Lan::start(1, Buffers::default()));
    let appliance = host(&lan, 0)?;
    let appliance_addr = SocketAddrV4::new(lan.host_config(appliance)?.address, 443);
    let mut l = lan.listen(appliance, 443, devices)?;
    let mut receivers = Vec::new();
    for i in 1..=devices as u32 {
        let d = host(&lan, i)?;
        let lan = lan.clone();
        receivers.push(tokio::spawn(async move {
            let mut s = lan.connect(d, appliance_addr).await?;
            drain(&mut s).await
        }));
    }
    let mut accepted = Vec::new();
    for _ in 0..devices {
        accepted.push(l.accept().await?);
    }
    let before = lan.counters().frames_in;
    let t = Instant::now();
    let mut senders = Vec::new();
    for mut s in accepted {
        senders.push(tokio::spawn(async move { send_all(&mut s, size).await }));
    }
    for s in senders {
        s.await??;
    }
    for r in receivers {
        let got = r.await??;
        anyhow::ensure!(got == size, "a device got {got} of {size} bytes");
    }
    let secs = t.elapsed().as_secs_f64();
    Ok((secs, lan.counters().frames_in - before))
}

#[tokio::main]
async fn main() -> Result<()> {
    let stream_mb = env("SMS_BENCH_STREAM_MB", 256);
    let devices = env("SMS_BENCH_DEVICES", 50);
    let size_mb = env("SMS_BENCH_SIZE_MB", 50);
    let mb = |b: usize, s: f64| b as f64 / s / 1e6;

    println!("lan-segment: one stream of {stream_mb} MB");
    let k = kernel_push(1, stream_mb << 20)
        .await
        .context("kernel stream")?;
    let (s, frames) = segment_push(1, stream_mb << 20)
        .await
        .context("segment stream")?;
    println!(
        "  kernel loopback : {:8.1} MB/s\n  segment (smoltcp): {:8.1} MB/s, {:.0} frames/s\n  ratio segment/kernel: {:.3}",
        mb(stream_mb << 20, k),
        mb(stream_mb << 20, s),
        frames as f64 / s,
        k / s
    );

    println!("lan-segment: {size_mb} MB to each of {devices} devices at once");
    let total = devices * (size_mb << 20);
    let k = kernel_push(devices, size_mb << 20)
        .await
        .context("kernel push")?;
    let (s, frames) = segment_push(devices, size_mb << 20)
        .await
        .context("segment push")?;
    println!(
        "  kernel loopback : {:6.2} s, {:8.1} MB/s aggregate\n  segment (smoltcp): {:6.2} s, {:8.1} MB/s aggregate, {:.0} frames/s\n  ratio segment/kernel: {:.3} (goal: segment >= 100 MB/s aggregate)",
        k,
        mb(total, k),
        s,
        mb(total, s),
        frames as f64 / s,
        k / s
    );
    Ok(())
}
