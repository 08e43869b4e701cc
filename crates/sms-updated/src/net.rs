//! The appliance's outbound network path for update traffic.
//!
//! Names are resolved with hickory-resolver against the name servers of the
//! daemon's own configuration (the appliance has no DHCP and needs no
//! /etc/resolv.conf). Connections go direct or through an HTTP proxy
//! (CONNECT for HTTPS, absolute-form for HTTP, optionally with Basic
//! credentials). TLS is rustls with the configured CA file. HTTP/1.1 is
//! hyper's client connection, one connection per request.

use crate::config::{DnsConfig, ProxyConfig};
use crate::url::Url;
use base64::Engine as _;
use bytes::Bytes;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No name server is configured.
    #[error("cannot resolve {host}: no DNS servers configured (set dns.servers)")]
    NoDnsServers {
        /// The name.
        host: String,
    },
    /// The name did not resolve.
    #[error("cannot resolve {host} with DNS servers {servers}: {reason}")]
    Dns {
        /// The name.
        host: String,
        /// The servers asked.
        servers: String,
        /// The resolver's reason.
        reason: String,
    },
    /// The TCP connection failed.
    #[error("cannot connect to {target} ({addr}): {source}")]
    Connect {
        /// Host:port asked for.
        target: String,
        /// Address tried.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// A step took longer than allowed.
    #[error("timed out after {secs:.1} s: {what}")]
    Timeout {
        /// What was being done.
        what: String,
        /// The limit.
        secs: f64,
    },
    /// The proxy wants credentials (none or wrong ones were given).
    #[error(
        "proxy {proxy} requires authentication (407); check proxy.username and proxy.password"
    )]
    ProxyAuth {
        /// The proxy.
        proxy: String,
    },
    /// The proxy refused the request.
    #[error("proxy {proxy} refused {target}: {status}")]
    ProxyRefused {
        /// The proxy.
        proxy: String,
        /// What was asked of it.
        target: String,
        /// Its status line.
        status: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        /// The server name.
        host: String,
        /// The error.
        source: io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP request to {url} failed: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The configuration is not usable.
    #[error("invalid network configuration: {0}")]
    Config(String),
}

/// A byte stream: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone)]
struct Proxy {
    url: Url,
    auth: Option<String>,
}

/// Everything needed to make requests: resolver, proxy, TLS.
#[derive(Clone)]
pub struct Net {
    resolver: Option<TokioResolver>,
    servers: String,
    proxy: Option<Proxy>,
    tls: tokio_rustls::TlsConnector,
    connect_timeout: Duration,
}

impl Net {
    /// Builds the network path from configuration.
    pub fn new(
        dns: &DnsConfig,
        proxy: &ProxyConfig,
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
    ) -> Result<Net, NetError> {
        let resolver = if dns.servers.is_empty() {
            None
        } else {
            let mut rc = ResolverConfig::new();
            for s in &dns.servers {
                rc.add_name_server(NameServerConfig::new(*s, Protocol::Udp));
                rc.add_name_server(NameServerConfig::new(*s, Protocol::Tcp));
            }
            let mut opts = ResolverOpts::default();
            opts.timeout = dns.timeout_ms;
            opts.attempts = dns.attempts.max(1);
            opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
            opts.cache_size = 64;
            Some(
                TokioResolver::builder_with_config(rc, TokioConnectionProvider::default())
                    .with_options(opts)
                    .build(),
            )
        };
        let proxy = if proxy.url.trim().is_empty() {
            None
        } else {
            let url = Url::parse(proxy.url.trim())
                .map_err(|e| NetError::Config(format!("proxy.url: {e}")))?;
            if url.tls {
                return Err(NetError::Config(
                    "proxy.url: only http:// proxies are supported".into(),
                ));
            }
            let auth = (!proxy.username.is_empty()).then(|| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", proxy.username, proxy.password))
                )
            });
            Some(Proxy { url, auth })
        };
        Ok(Net {
            resolver,
            servers: dns
                .servers
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            proxy,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            connect_timeout,
        })
    }

    /// Resolves a host name (IP literals pass through).
    pub async fn resolve(&self, host: &str) -> Result<IpAddr, NetError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ip);
        }
        let Some(resolver) = &self.resolver else {
            return Err(NetError::NoDnsServers {
                host: host.to_string(),
            });
        };
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let lookup = resolver
            .lookup_ip(fqdn.as_str())
            .await
            .map_err(|e| NetError::Dns {
                host: host.to_string(),
                servers: self.servers.clone(),
                reason: e.to_string(),
            })?;
        lookup.iter().next().ok_or_else(|| NetError::Dns {
            host: host.to_string(),
            servers: self.servers.clone(),
            reason: "no address records".into(),
        })
    }

    async fn tcp(&self, host: &str, port: u16) -> Result<TcpStream, NetError> {
        let ip = self.resolve(host).await?;
        let addr = SocketAddr::new(ip, port);
        let target = format!("{host}:{port}");
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| NetError::Timeout {
                what: format!("connecting to {target} ({addr})"),
                secs: self.connect_timeout.as_secs_f64(),
            })?
            .map_err(|source| NetError::Connect {
                target,
                addr,
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Opens a stream to `url`'s origin (through the proxy if one is set;
    /// for plain HTTP through a proxy the stream goes to the proxy and the
    /// request must be in absolute form, which [`Net::request`] does).
    async fn open(&self, url: &Url) -> Result<Box<dyn Io>, NetError> {
        let stream = match &self.proxy {
            None => self.tcp(&url.host, url.port).await?,
            Some(p) => {
                let mut s = self.tcp(&p.url.host, p.url.port).await?;
                if url.tls {
                    self.connect_tunnel(&mut s, p, url).await?;
                }
                s
            }
        };
        if !url.tls {
            return Ok(Box::new(stream));
        }
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| NetError::Config(format!("bad server name {}: {e}", url.host)))?;
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, stream))
            .await
            .map_err(|_| NetError::Timeout {
                what: format!("TLS handshake with {}", url.host),
                secs: self.connect_timeout.as_secs_f64(),
            })?
            .map_err(|source| NetError::Tls {
                host: url.host.clone(),
                source,
            })?;
        Ok(Box::new(tls))
    }

    async fn connect_tunnel(
        &self,
        s: &mut TcpStream,
        p: &Proxy,
        url: &Url,
    ) -> Result<(), NetError> {
        let target = url.authority();
        let proxy_name = p.url.authority();
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &p.auth {
            req.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        req.push_str("\r\n");
        let io_err = |e: io::Error| NetError::ProxyRefused {
            proxy: proxy_name.clone(),
            target: target.clone(),
            status: format!("connection failed: {e}"),
        };
        s.write_all(req.as_bytes()).await.map_err(io_err)?;
        // Read the reply head byte by byte: nothing after it may be consumed,
        // it belongs to the tunnel.
        let mut head = Vec::with_capacity(256);
        let read = async {
            while !head.ends_with(b"\r\n\r\n") {
                if head.len() > 16 * 1024 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "reply head too long",
                    ));
                }
                let b = s.read_u8().await?;
                head.push(b);
            }
            Ok(())
        };
        tokio::time::timeout(self.connect_timeout, read)
            .await
            .map_err(|_| NetError::Timeout {
                what: format!("proxy {proxy_name} answering CONNECT {target}"),
                secs: self.connect_timeout.as_secs_f64(),
            })?
            .map_err(io_err)?;
        let status_line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let code = status_line.split_whitespace().nth(1).unwrap_or_default();
        match code {
            "200" => Ok(()),
            "407" => Err(NetError::ProxyAuth { proxy: proxy_name }),
            _ => Err(NetError::ProxyRefused {
                proxy: proxy_name,
                target,
                status: status_line,
            }),
        }
    }

    /// Sends one request and returns the response head; the body is read by
    /// the caller. `timeout` bounds connecting and receiving the head.
    pub async fn request(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response<Incoming>, NetError> {
        let work = async {
            let io = self.open(url).await?;
            let http_err = |reason: String| NetError::Http {
                url: url.to_string(),
                reason,
            };
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| http_err(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let absolute = self.proxy.is_some() && !url.tls;
            let uri = if absolute {
                url.to_string()
            } else {
                url.path.clone()
            };
            let mut builder = Request::builder()
                .method(method)
                .uri(uri)
                .header(hyper::header::HOST, url.authority())
                .header(
                    hyper::header::USER_AGENT,
                    concat!("sms-updated/", env!("CARGO_PKG_VERSION")),
                );
            if absolute {
                if let Some(auth) = self.proxy.as_ref().and_then(|p| p.auth.as_ref()) {
                    builder = builder.header("proxy-authorization", auth.as_str());
                }
            }
            for (k, v) in headers {
                builder = builder.header(*k, v.as_str());
            }
            let req = builder
                .body(Full::new(body))
                .map_err(|e| http_err(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| http_err(e.to_string()))?;
            if absolute {
                let proxy = self
                    .proxy
                    .as_ref()
                    .map(|p| p.url.authority())
                    .unwrap_or_default();
                match resp.status().as_u16() {
                    407 => return Err(NetError::ProxyAuth { proxy }),
                    403 => {
                        return Err(NetError::ProxyRefused {
                            proxy,
                            target: url.to_string(),
                            status: "403 Forbidden".into(),
                        })
                    }
                    _ => {}
                }
            }
            Ok(resp)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| NetError::Timeout {
                what: format!("request to {url}"),
                secs: timeout.as_secs_f64(),
            })?
    }
}
