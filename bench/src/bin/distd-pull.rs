//! Pull serving of sms-distd side by side with nginx serving the same
//! files on the same machine, loaded by the same wrk, in alternating short
//! runs: requests/s for the small metadata file (index.json, keep-alive)
//! and MB/s for a 20 MB full archive, over HTTP and HTTPS. Both servers
//! get one worker (nginx `worker_processes 1`; our server one tokio
//! worker thread).

use anyhow::{bail, Context, Result};
use sms_bench::{median, rounds, Child};
use sms_core::blob::BlobStore;
use sms_core::bus::InstalledPackage;
use sms_core::store::Store;
use sms_distd::config::PullConfig;
use sms_distd::pull::PullServer;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs wrk; returns (requests/s, bytes/s).
fn wrk(url: &str, conns: u32, secs: u32) -> Result<(f64, f64)> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--timeout",
            "10s",
            url,
        ])
        .output()
        .context("running wrk (make bench installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed against {url}: {}\n{text}", out.status);
    }
    sms_bench::parse_wrk(&text).with_context(|| format!("wrk against {url}"))
}

fn nginx_conf(root: &std::path::Path, http: u16, https: u16, cert: &str, key: &str) -> String {
    format!(
        r#"daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    default_type application/octet-stream;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{http};
        listen 127.0.0.1:{https} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {root}/www;
        etag on;
    }}
}}
"#,
        root = root.display()
    )
}

fn main() -> Result<()> {
    let n = rounds(3);
    let secs: u32 = std::env::var("SMS_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    // One DV payload of 20 MB that does not compress: its archive is ~20 MB.
    let payload = sms_sim::content::tos_image(7, 20 << 20);
    let blobs = BlobStore::open(&root.join("blobs"))?;
    let digest = blobs.put_bytes(&payload)?;
    let listing = vec![InstalledPackage {
        key: "dv/4.0.0.1".into(),
        channel: "dv".into(),
        version: "4.0.0.1".into(),
        family: None,
        length: payload.len() as u64,
        sha256: digest.to_hex(),
        downloaded: 0,
        active: true,
        envelope_sha256: None,
    }];
    let cfg = PullConfig {
        best_level: 1,
        inline_level: 1,
        max_large_downloads: 1000,
        ..PullConfig::default()
    };
    let store = Store::open(&root.join("state"))?;
    let ca = sms_sim::pki::TestCa::generate("bench CA")?;
    let cert = ca.issue(&["localhost"], &["127.0.0.1".parse()?])?;
    let (cert_file, key_file) = (root.join("cert.pem"), root.join("key.pem"));
    std::fs::write(&cert_file, &cert.chain_pem)?;
    std::fs::write(&key_file, &cert.key_pem)?;
    let (ours_http, ours_https) = (free_port()?, free_port()?);

    // Our server on a runtime with one worker thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let server = rt.block_on(async {
        let s = PullServer::open(cfg, store, &root.join("blobs"), &root.join("cache"))?;
        s.set_offer(&listing, &[]);
        s.builds_settled().await;
        let tls = Arc::new(sms_core::tls::server_config_from_pem(
            cert.chain_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )?);
        let l =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], ours_http))).await?;
        tokio::spawn(s.clone().serve_http(l));
        let l =
            tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], ours_https))).await?;
        tokio::spawn(s.clone().serve_https(l, tls));
        anyhow::Ok(s)
    })?;

    // The same bytes for nginx.
    let fetch = |path: &str| -> Result<Vec<u8>> {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{ours_http}{path}")])
            .output()?;
        if !out.status.success() {
            bail!("fetching {path} from our server failed");
        }
        Ok(out.stdout)
    };
    let index = fetch("/dv/index.json")?;
    let archive = fetch("/dv/4.0.0.1")?;
    std::fs::create_dir_all(root.join("www/dv"))?;
    std::fs::create_dir_all(root.join("tmp"))?;
    std::fs::write(root.join("www/dv/index.json"), &index)?;
    std::fs::write(root.join("www/dv/4.0.0.1"), &archive)?;
    let (ng_http, ng_https) = (free_port()?, free_port()?);
    std::fs::write(
        root.join("nginx.conf"),
        nginx_conf(
            root,
            ng_http,
            ng_https,
            &cert_file.display().to_string(),
            &key_file.display().to_string(),
        ),
    )?;
    let _nginx = Child(
        sms_bench::own_group(&mut Command::new("nginx"))
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .arg("-p")
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nginx (make bench installs it)")?,
    );
    std::thread::sleep(Duration::from_millis(500));

    println!(
        "distd-pull: index.json {} bytes, archive {} bytes; wrk -t1, {secs} s runs, {n} alternating rounds; one worker each",
        index.len(),
        archive.len()
    );
    println!(
        "{:<34} {:>14} {:>14} {:>7}",
        "case", "sms-distd", "nginx", "ratio"
    );
    let cases: [(&str, &str, &str, u32, bool); 4] = [
        (
            "metadata 1 KB, HTTP, 16 conns",
            "http",
            "/dv/index.json",
            16,
            false,
        ),
        (
            "metadata 1 KB, HTTPS, 16 conns",
            "https",
            "/dv/index.json",
            16,
            false,
        ),
        (
            "archive 20 MB, HTTP, 4 conns",
            "http",
            "/dv/4.0.0.1",
            4,
            true,
        ),
        (
            "archive 20 MB, HTTPS, 4 conns",
            "https",
            "/dv/4.0.0.1",
            4,
            true,
        ),
    ];
    for (name, scheme, path, conns, bytes) in cases {
        let (op, np) = if scheme == "http" {
            (ours_http, ng_http)
        } else {
            (ours_https, ng_https)
        };
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..n {
            let (r, b) = wrk(&format!("{scheme}://127.0.0.1:{op}{path}"), conns, secs)?;
            ours.push(if bytes { b } else { r });
            let (r, b) = wrk(&format!("{scheme}://127.0.0.1:{np}{path}"), conns, secs)?;
            theirs.push(if bytes { b } else { r });
        }
        let (o, t) = (median(ours), median(theirs));
        let fmt = |v: f64| {
            if bytes {
                format!("{:.0} MiB/s", v / (1u64 << 20) as f64)
            } else {
                format!("{v:.0} req/s")
            }
        };
        println!("{name:<34} {:>14} {:>14} {:>7.2}", fmt(o), fmt(t), o / t);
    }
    let st = server.status();
    println!(
        "sms-distd answered {} requests, {} MiB",
        st.requests,
        st.bytes >> 20
    );
    drop(rt);
    Ok(())
}
