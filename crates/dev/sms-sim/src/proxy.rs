//! An HTTP proxy: CONNECT tunnels for HTTPS and absolute-form requests for
//! plain HTTP, anonymous or with Basic credentials, and a refusing mode.

use crate::zone::Zone;
use anyhow::{Context, Result};
use base64::Engine as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Counters and switches of a running proxy, shared with tests.
#[derive(Debug, Default)]
pub struct ProxyControl {
    /// When set, every request gets 403.
    pub refuse: AtomicBool,
    /// CONNECT tunnels opened.
    pub tunnels: AtomicU64,
    /// Absolute-form requests forwarded.
    pub forwards: AtomicU64,
    /// Requests refused for missing or wrong credentials.
    pub auth_failures: AtomicU64,
}

/// A running proxy.
pub struct Proxy {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Its switches and counters.
    pub control: Arc<ProxyControl>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy on `bind`; with `credentials` (user, password) it
    /// demands Basic authentication.
    pub async fn start(
        bind: SocketAddr,
        zone: Zone,
        credentials: Option<(String, String)>,
    ) -> Result<Proxy> {
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("binding proxy to {bind}"))?;
        let addr = listener.local_addr()?;
        let control = Arc::new(ProxyControl::default());
        let expected = credentials.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let ctl = control.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let zone = zone.clone();
                let ctl = ctl.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    let _ = handle(stream, zone, ctl, expected).await;
                });
            }
        });
        Ok(Proxy {
            addr,
            control,
            task,
        })
    }
}

async fn handle(
    mut client: TcpStream,
    zone: Zone,
    ctl: Arc<ProxyControl>,
    expected: Option<String>,
) -> Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > 64 * 1024 {
            client
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n")
                .await?;
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let rest = buf[head_end..].to_vec();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    if ctl.refuse.load(Ordering::Relaxed) {
        client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    }
    if let Some(expected) = &expected {
        let given = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization"))
            .map(|(_, v)| v.as_str());
        if given != Some(expected.as_str()) {
            ctl.auth_failures.fetch_add(1, Ordering::Relaxed);
            client
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"sms-sim\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let Some(mut upstream) = connect(&zone, target).await else {
            client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                .await?;
            return Ok(());
        };
        ctl.tunnels.fetch_add(1, Ordering::Relaxed);
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        if !rest.is_empty() {
            upstream.write_all(&rest).await?;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return Ok(());
    }
    // Absolute-form: http://host[:port]/path
    let Some(after) = target.strip_prefix("http://") else {
        client
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let (authority, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    let authority_with_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let Some(mut upstream) = connect(&zone, &authority_with_port).await else {
        client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    ctl.forwards.fetch_add(1, Ordering::Relaxed);
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in &headers {
        let lower = k.to_ascii_lowercase();
        if lower == "proxy-authorization" || lower == "proxy-connection" || lower == "connection" {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes()).await?;
    if !rest.is_empty() {
        upstream.write_all(&rest).await?;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    Ok(())
}

async fn connect(zone: &Zone, authority: &str) -> Option<TcpStream> {
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip = zone.resolve(host)?;
    TcpStream::connect(SocketAddr::new(ip, port)).await.ok()
}
