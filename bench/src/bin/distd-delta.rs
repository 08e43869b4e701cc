//! Deltas of sms-distd side by side with the zstd tool on a realistic DV
//! version pair (fixed-width rule records, ~2 % rewritten, a few added):
//! size relative to the full download (the new payload at zstd -19
//! --long) and build/apply time, at the on-demand setting (level 9) and
//! the best one (level 19), against `zstd --patch-from --long` at the same
//! levels.

use anyhow::{bail, Context, Result};
use sms_distd::delta;
use std::process::Command;
use std::time::Instant;

fn zstd(args: &[&str]) -> Result<f64> {
    let t = Instant::now();
    let st = Command::new("zstd")
        .args(args)
        .status()
        .context("running zstd (make bench installs it)")?;
    if !st.success() {
        bail!("zstd {args:?} failed");
    }
    Ok(t.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let mb: usize = std::env::var("SMS_BENCH_SIZE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(37);
    let dir = tempfile::tempdir()?;
    let old = sms_sim::content::first_dv(11, mb << 20);
    let new = sms_sim::content::next_dv(&old, 12);
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(p("old"), &old)?;
    std::fs::write(p("new"), &new)?;
    let wl = delta::window_log(old.len(), new.len());
    let long = format!("--long={wl}");

    let t = Instant::now();
    let full = delta::archive(&new, 19)?;
    let full_secs = t.elapsed().as_secs_f64();
    println!(
        "distd-delta: DV pair {} -> {} bytes; full download (zstd -19 --long) {} bytes, built in {full_secs:.1} s",
        old.len(),
        new.len(),
        full.len()
    );
    println!(
        "{:<10} {:>12} {:>8} {:>9} {:>9} | {:>12} {:>8} {:>9} {:>9} | {:>6}",
        "setting",
        "ours bytes",
        "% full",
        "build s",
        "apply s",
        "zstd bytes",
        "% full",
        "build s",
        "apply s",
        "size"
    );
    for level in [9, 19] {
        let t = Instant::now();
        let ours = delta::make(&old, &new, level)?;
        let build = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let back = delta::apply(&old, &ours, 1 << 32)?;
        let apply = t.elapsed().as_secs_f64();
        if back != new {
            bail!("our delta at level {level} does not reproduce the payload");
        }
        let out = p(&format!("zstd-{level}.zst"));
        let zb = zstd(&[
            "-q",
            "-f",
            &format!("-{level}"),
            "--single-thread",
            &long,
            "--patch-from",
            &p("old"),
            &p("new"),
            "-o",
            &out,
        ])?;
        let za = zstd(&[
            "-q",
            "-f",
            "-d",
            &long,
            "--patch-from",
            &p("old"),
            &out,
            "-o",
            &p("back"),
        ])?;
        if std::fs::read(p("back"))? != new {
            bail!("zstd's delta does not reproduce the payload");
        }
        let zlen = std::fs::metadata(&out)?.len() as f64;
        let pct = |n: f64| n * 100.0 / full.len() as f64;
        println!(
            "{:<10} {:>12} {:>7.2}% {:>9.2} {:>9.2} | {:>12} {:>7.2}% {:>9.2} {:>9.2} | {:>6.3}",
            format!("level {level}"),
            ours.len(),
            pct(ours.len() as f64),
            build,
            apply,
            zlen as u64,
            pct(zlen),
            zb,
            za,
            ours.len() as f64 / zlen
        );
    }
    Ok(())
}
