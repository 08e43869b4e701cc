//! HTTP and HTTPS serving: routing a request to an index, archive or
//! delta, conditional and ranged answers, download slots, and the limits
//! per connection and per client address.

use super::*;

/// Response body: bytes in chunks, holding a download slot until sent.
pub struct SlotBody {
    data: Bytes,
    _slot: Option<OwnedSemaphorePermit>,
}

const CHUNK: usize = 256 * 1024;

impl hyper::body::Body for SlotBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            self._slot = None;
            return Poll::Ready(None);
        }
        let n = self.data.len().min(CHUNK);
        let chunk = self.data.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.data.len() as u64)
    }
}

fn body(data: Bytes) -> SlotBody {
    SlotBody { data, _slot: None }
}

fn plain(status: StatusCode, msg: &str) -> Response<SlotBody> {
    let mut r = Response::new(body(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// How long a client or proxy may keep an answer.
enum Cache {
    Immutable,
    Short,
}

impl PullServer {
    fn unavailable(&self, what: &str) -> Response<SlotBody> {
        self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
        let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, what);
        if let Ok(v) = HeaderValue::from_str(&self.cfg.retry_after.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }

    fn redirect(&self, location: String) -> Response<SlotBody> {
        self.counters.redirects.fetch_add(1, Ordering::Relaxed);
        let mut r = plain(
            StatusCode::MOVED_PERMANENTLY,
            &format!("no delta path; full archive at {location}"),
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        r
    }

    fn refused(&self, status: StatusCode, msg: &str) -> Response<SlotBody> {
        self.counters.refused.fetch_add(1, Ordering::Relaxed);
        plain(status, msg)
    }

    /// Answers one request.
    pub async fn handle(
        self: &Arc<Self>,
        req: &Request<Incoming>,
        client: std::net::IpAddr,
    ) -> Response<SlotBody> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let head = match *req.method() {
            hyper::Method::GET => false,
            hyper::Method::HEAD => true,
            _ => {
                let mut r = self.refused(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return r;
            }
        };
        let route = match parse_path(req.uri().path()) {
            Ok(r) => r,
            Err(PathError::Bad(why)) => return self.refused(StatusCode::BAD_REQUEST, why),
            Err(PathError::NotFound) => return self.refused(StatusCode::NOT_FOUND, "not found"),
        };
        let mut resp = self.route(req, route, head, client).await;
        if head {
            let len = resp.body().data.len();
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            let b = resp.body_mut();
            b.data = Bytes::new();
            b._slot = None;
        }
        resp
    }

    async fn route(
        self: &Arc<Self>,
        req: &Request<Incoming>,
        route: Route,
        head: bool,
        client: std::net::IpAddr,
    ) -> Response<SlotBody> {
        match route {
            Route::Index(c) => {
                let data = {
                    let o = sms_core::daemon::read(&self.offer);
                    o.index.get(&c).cloned()
                };
                match data {
                    Some((d, digest)) => {
                        self.send(req, d, digest, "application/json", Cache::Short, false)
                            .await
                    }
                    None => self.refused(StatusCode::NOT_FOUND, "nothing on offer"),
                }
            }
            Route::Catalog(c) => {
                let digest = {
                    let o = sms_core::daemon::read(&self.offer);
                    o.catalog.get(&c).copied()
                };
                let data = digest.and_then(|d| Some((std::fs::read(self.blobs.path(&d)).ok()?, d)));
                match data {
                    Some((d, digest)) => {
                        self.send(
                            req,
                            Bytes::from(d),
                            digest,
                            "application/json",
                            Cache::Short,
                            false,
                        )
                        .await
                    }
                    None => self.refused(StatusCode::NOT_FOUND, "no signed catalog on offer"),
                }
            }
            Route::Full(s, v) => {
                let Some((_, len)) = self.payload(s, &v) else {
                    return self.refused(StatusCode::NOT_FOUND, "version not on offer");
                };
                let key = archive_key(s, &v);
                let art = match self.artifact(&key) {
                    Some(a) => Some(a),
                    // HEAD never starts work.
                    None if head => None,
                    None => {
                        let Some(rx) =
                            self.start_archive(s, &v, self.cfg.inline_level, Some(client))
                        else {
                            return self.unavailable("busy preparing other files; retry later");
                        };
                        match Self::wait_build(rx, self.inline_budget(&[len])).await {
                            Some(Ok(a)) => Some(a),
                            Some(Err(e)) => {
                                return self.refused(StatusCode::NOT_FOUND, &e.to_string());
                            }
                            None => None,
                        }
                    }
                };
                let Some(Artifact::File { sha256, .. }) = art else {
                    return self.unavailable("the full archive is being prepared; retry later");
                };
                let n = self.use_clock.fetch_add(1, Ordering::Relaxed) + 1;
                lock(&self.archive_used).insert(key, n);
                match self.bytes_of(&sha256) {
                    Some(d) => {
                        self.counters.fulls.fetch_add(1, Ordering::Relaxed);
                        self.send(
                            req,
                            d,
                            sha256,
                            "application/octet-stream",
                            Cache::Immutable,
                            true,
                        )
                        .await
                    }
                    None => {
                        let _ = self
                            .store
                            .apply(Batch::new().delete(PULL, archive_key(s, &v)));
                        self.unavailable("the full archive is being rebuilt; retry later")
                    }
                }
            }
            Route::Delta(s, from, to) => self.delta(req, s, from, to, head, client).await,
        }
    }

    async fn delta(
        self: &Arc<Self>,
        req: &Request<Incoming>,
        s: Stream,
        from: Version,
        to: Option<Version>,
        head: bool,
        client: std::net::IpAddr,
    ) -> Response<SlotBody> {
        let exact = to.is_some();
        let Some(to) = to.or_else(|| self.newest(s)) else {
            return self.refused(StatusCode::NOT_FOUND, "nothing on offer");
        };
        let Some((to_sha, to_len)) = self.payload(s, &to) else {
            return self.refused(StatusCode::NOT_FOUND, "target version not on offer");
        };
        let full = format!("/{s}/{to}");
        if from == to {
            let mut r = plain(StatusCode::NO_CONTENT, "");
            *r.body_mut() = body(Bytes::new());
            set_target(&mut r, &to, &to_sha);
            return r;
        }
        let Some((_, from_len)) = self.payload(s, &from) else {
            return self.redirect(full);
        };
        if from > to {
            return self.redirect(full);
        }
        let key = delta_key(s, &from, &to);
        let art = match self.artifact(&key) {
            Some(a) => Some(a),
            // HEAD never starts work.
            None if head => None,
            None => {
                let Some(rx) = self.start_delta(s, &from, &to, self.cfg.inline_level, Some(client))
                else {
                    return self.unavailable("busy building other deltas; retry later");
                };
                match Self::wait_build(rx, self.inline_budget(&[from_len, to_len])).await {
                    Some(Ok(a)) => Some(a),
                    Some(Err(_)) => return self.redirect(full),
                    None => None,
                }
            }
        };
        match art {
            None => self.unavailable("the delta is being built; retry later"),
            Some(Artifact::TooLarge { .. }) => self.redirect(full),
            Some(Artifact::File { sha256, .. }) => match self.bytes_of(&sha256) {
                None => {
                    let _ = self.store.apply(Batch::new().delete(PULL, &key));
                    self.unavailable("the delta is being rebuilt; retry later")
                }
                Some(d) => {
                    self.counters.deltas.fetch_add(1, Ordering::Relaxed);
                    let cache = if exact {
                        Cache::Immutable
                    } else {
                        Cache::Short
                    };
                    let mut r = self
                        .send(req, d, sha256, "application/octet-stream", cache, true)
                        .await;
                    set_target(&mut r, &to, &to_sha);
                    r
                }
            },
        }
    }

    async fn send(
        &self,
        req: &Request<Incoming>,
        data: Bytes,
        digest: Digest,
        content_type: &'static str,
        cache: Cache,
        large_ok: bool,
    ) -> Response<SlotBody> {
        let etag = format!("\"{digest}\"");
        let mut r = Response::new(body(Bytes::new()));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(match cache {
                Cache::Immutable => "public, max-age=31536000, immutable",
                Cache::Short => "public, max-age=60",
            }),
        );
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        let inm = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok());
        if let Some(inm) = inm {
            if inm.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t == etag || t.strip_prefix("W/") == Some(etag.as_str())
            }) {
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                return r;
            }
        }
        let len = data.len() as u64;
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok());
        // If-Range with another validator means: send it all.
        let if_range_ok = req
            .headers()
            .get(header::IF_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim() == etag);
        let (status, part) = match parse_range(range.filter(|_| if_range_ok), len) {
            RangeReq::Whole => (StatusCode::OK, data),
            RangeReq::Part(a, b) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                (
                    StatusCode::PARTIAL_CONTENT,
                    data.slice(a as usize..=b as usize),
                )
            }
            RangeReq::Unsatisfiable => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                return r;
            }
        };
        let mut slot = None;
        if large_ok
            && part.len() as u64 >= self.cfg.large_bytes
            && req.method() != hyper::Method::HEAD
        {
            let wait =
                tokio::time::timeout(self.cfg.slot_wait_ms, self.slots.clone().acquire_owned())
                    .await;
            match wait {
                Ok(Ok(p)) => slot = Some(p),
                _ => {
                    return self.unavailable(&format!(
                        "{} large downloads are running; retry later",
                        self.cfg.max_large_downloads
                    ))
                }
            }
        }
        self.counters
            .bytes
            .fetch_add(part.len() as u64, Ordering::Relaxed);
        *r.status_mut() = status;
        *r.body_mut() = SlotBody {
            data: part,
            _slot: slot,
        };
        r
    }

    /// Serves plain HTTP on `listener` until the task is dropped.
    pub async fn serve_http(self: Arc<Self>, listener: TcpListener) {
        self.serve(listener, None).await
    }

    /// Serves HTTPS on `listener` until the task is dropped.
    pub async fn serve_https(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) {
        self.serve(listener, Some(tokio_rustls::TlsAcceptor::from(tls)))
            .await
    }

    async fn serve(self: Arc<Self>, listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors and the like: pause, keep serving.
                    tracing::warn!("pull server accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(guard) = self.admit(peer.ip()) else {
                self.counters
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "pull server: too many connections from this address");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let me = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let _guard = guard;
                let progress = Arc::new(AtomicU64::new(0));
                let stream = CountingIo {
                    inner: stream,
                    progress: progress.clone(),
                };
                let handler = me.clone();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let me = handler.clone();
                    async move { Ok::<_, Infallible>(me.handle(&req, peer.ip()).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(me.cfg.header_timeout);
                let counters = &me.counters;
                let served = async {
                    let r = match tls {
                        Some(acc) => {
                            match tokio::time::timeout(me.cfg.header_timeout, acc.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => builder.serve_connection(TokioIo::new(s), svc).await,
                                Ok(Err(_)) => Ok(()),
                                Err(_) => {
                                    counters.connections_cut.fetch_add(1, Ordering::Relaxed);
                                    Ok(())
                                }
                            }
                        }
                        None => builder.serve_connection(TokioIo::new(stream), svc).await,
                    };
                    if r.is_err_and(|e| e.is_timeout()) {
                        // The request headers did not arrive in time.
                        counters.connections_cut.fetch_add(1, Ordering::Relaxed);
                    }
                };
                tokio::pin!(served);
                // A connection must move `min_rate_bps` over each window:
                // slow readers cannot hold a download slot, idle
                // keep-alives and trickled headers are closed.
                let window = me.cfg.rate_window.max(Duration::from_secs(1));
                let floor = me.cfg.min_rate_bps.saturating_mul(window.as_secs().max(1));
                let mut tick =
                    tokio::time::interval_at(tokio::time::Instant::now() + window, window);
                let mut last = 0u64;
                loop {
                    tokio::select! {
                        _ = &mut served => break,
                        _ = tick.tick() => {
                            let now = progress.load(Ordering::Relaxed);
                            if me.cfg.min_rate_bps > 0 && now - last < floor {
                                me.counters.connections_cut.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(%peer, bytes = now - last, "pull server: connection below the minimum rate; closed");
                                break;
                            }
                            last = now;
                        }
                    }
                }
            });
        }
    }

    /// Counts a connection from `ip`, unless it already has the most
    /// allowed; the guard gives the place back when dropped.
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressGuard> {
        self.per_address
            .take(ip, self.cfg.max_connections_per_address.max(1), None)
    }

    /// Refreshes the offer from the update daemon now.
    pub async fn refresh(self: &Arc<Self>, conn: &zbus::Connection) -> Result<(), String> {
        let dv = crate::source::installed(conn, Channel::Dv)
            .await
            .map_err(|e| e.to_string())?;
        let tos = crate::source::installed(conn, Channel::Tos)
            .await
            .map_err(|e| e.to_string())?;
        self.set_offer(&dv, &tos);
        Ok(())
    }

    /// Refreshes the offer every `refresh_interval` forever.
    pub async fn refresh_forever(self: Arc<Self>, conn: zbus::Connection) {
        loop {
            if let Err(e) = self.refresh(&conn).await {
                tracing::warn!("pull server: package list not refreshed: {e}");
            }
            tokio::time::sleep(self.cfg.refresh_interval).await;
        }
    }
}

fn set_target(r: &mut Response<SlotBody>, to: &Version, sha: &Digest) {
    if let Ok(v) = HeaderValue::from_str(&to.to_string()) {
        r.headers_mut().insert("x-sms-target-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&sha.to_hex()) {
        r.headers_mut().insert("x-sms-target-sha256", v);
    }
}

/// Places held per client address (open connections, queued builds),
/// with a limit per address and one for all together.
#[derive(Default)]
pub(super) struct AddressCounts {
    counts: Mutex<HashMap<std::net::IpAddr, usize>>,
}

impl AddressCounts {
    /// A place for `ip`, unless it holds `per_address` already or all
    /// addresses hold `total` (when given); given back when the guard is
    /// dropped.
    pub(super) fn take(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
        per_address: usize,
        total: Option<usize>,
    ) -> Option<AddressGuard> {
        let mut m = lock(&self.counts);
        let full = total.is_some_and(|t| m.values().sum::<usize>() >= t);
        let n = m.entry(ip).or_insert(0);
        if *n >= per_address || full {
            if *n == 0 {
                m.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(AddressGuard {
            counts: self.clone(),
            ip,
        })
    }
}

/// One place in an [`AddressCounts`].
pub(super) struct AddressGuard {
    counts: Arc<AddressCounts>,
    ip: std::net::IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut m = lock(&self.counts.counts);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A socket that counts the bytes it moves either way, for the minimum
/// rate watchdog.
struct CountingIo<T> {
    inner: T,
    progress: Arc<AtomicU64>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r {
            self.progress.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
