//! The update centre's and the CDN's HTTP handlers: catalogs, download
//! requests and package files, with the faults a test switches on.

use super::*;

#[derive(Deserialize)]
struct DownloadRequest {
    channel: Channel,
    version: Version,
    #[serde(default)]
    family: Option<Family>,
}

pub(super) async fn tmc_handler(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    legacy: bool,
) -> Response<Body> {
    {
        let mut stats = lock(&shared.stats);
        stats.tmc_requests += 1;
        if legacy {
            stats.legacy_requests += 1;
        }
    }
    if let Some(status) = lock(&shared.faults).tmc_status {
        return text(status, "simulated update centre failure\n");
    }
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, p) if p.starts_with("/api/v1/catalog/") => {
            let Ok(channel) = p["/api/v1/catalog/".len()..].parse::<Channel>() else {
                return text(404, "unknown channel\n");
            };
            match catalog_bytes(&shared, channel) {
                Some(b) => {
                    let mut r = Response::new(full(b));
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    r
                }
                None => text(404, "nothing published on this channel yet\n"),
            }
        }
        (Method::POST, "/api/v1/download") => {
            let body = match http::read_body(req, 64 * 1024).await {
                Ok(b) => b,
                Err(e) => return text(400, e),
            };
            let Ok(dl) = serde_json::from_slice::<DownloadRequest>(&body) else {
                return text(400, "malformed download request\n");
            };
            let file = {
                let st = lock(&shared.state);
                let ch = match dl.channel {
                    Channel::Dv => &st.dv,
                    Channel::Tos => &st.tos,
                };
                ch.packages
                    .iter()
                    .find(|p| p.entry.version == dl.version && p.entry.family == dl.family)
                    .map(|p| p.entry.file.clone())
            };
            let Some(file) = file else {
                return text(404, "no such package\n");
            };
            let host = lock(&shared.faults)
                .cdn_host
                .clone()
                .unwrap_or_else(|| shared.cfg.cdn_host.clone());
            let port = lock(&shared.info)
                .as_ref()
                .map(|i| i.cdn_port)
                .unwrap_or(80);
            json(&serde_json::json!({ "url": format!("http://{host}:{port}/packages/{file}") }))
        }
        (Method::POST, "/api/v1/confirm") => {
            let body = match http::read_body(req, 64 * 1024).await {
                Ok(b) => b,
                Err(e) => return text(400, e),
            };
            match serde_json::from_slice::<Confirmation>(&body) {
                Ok(c) => {
                    tracing::info!(channel = %c.channel, version = %c.version, "confirmation received");
                    lock(&shared.stats).confirmations.push(c);
                    let mut r = Response::new(full(Bytes::new()));
                    *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                    r
                }
                Err(e) => text(400, format!("malformed confirmation: {e}\n")),
            }
        }
        _ => text(404, "not found\n"),
    }
}

fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse::<u64>().ok()?.min(len.checked_sub(1)?)
    };
    (start <= end && start < len).then_some((start, end))
}

pub(super) fn cdn_handler(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    lock(&shared.stats).cdn_requests += 1;
    let path = req.uri().path();
    let Some(name) = path.strip_prefix("/packages/") else {
        return text(404, "not found\n");
    };
    let name = name.to_string();
    let Some(mut data) = find_file(&shared, &name) else {
        return text(404, "no such file\n");
    };
    let faults = {
        let mut f = lock(&shared.faults);
        let snapshot = f.clone();
        if f.cuts > 0 {
            f.cuts -= 1;
        }
        snapshot
    };
    if faults.truncate {
        data = data.slice(..data.len() / 2);
    }
    let tamper_this = faults
        .tamper_only
        .as_deref()
        .is_none_or(|only| name.contains(only));
    if faults.tamper && tamper_this && !data.is_empty() {
        let mut v = data.to_vec();
        let mid = v.len() / 2;
        v[mid] ^= 0x20;
        data = Bytes::from(v);
    }
    let len = data.len() as u64;
    let mut status = hyper::StatusCode::OK;
    let mut content_range = None;
    if let Some(range) = req
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        match parse_range(range, len) {
            Some((start, end)) => {
                status = hyper::StatusCode::PARTIAL_CONTENT;
                content_range = Some(format!("bytes {start}-{end}/{len}"));
                data = data.slice(start as usize..=end as usize);
            }
            None => {
                let mut r = text(416, "range not satisfiable\n");
                if let Ok(v) = format!("bytes */{len}").parse() {
                    r.headers_mut().insert(hyper::header::CONTENT_RANGE, v);
                }
                return r;
            }
        }
    }
    let body_len = data.len();
    let head_only = req.method() == Method::HEAD;
    let cut = if faults.cuts > 0 {
        faults.cut_after
    } else {
        None
    };
    let body: Body = if head_only {
        full(Bytes::new())
    } else {
        // Rate-limited responses go out in small pieces (about four a
        // second), so that a slow CDN trickles instead of stalling.
        let chunk = match faults.rate_bps {
            Some(rate) => (rate as usize / 4).clamp(1, 256 * 1024),
            None => 256 * 1024usize,
        };
        let stats_shared = shared.clone();
        let name2 = name.clone();
        let stream = futures_util::stream::unfold(0usize, move |pos| {
            let data = data.clone();
            let shared = stats_shared.clone();
            let name = name2.clone();
            let faults = faults.clone();
            async move {
                if pos >= data.len() {
                    return None;
                }
                if faults.stall {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let mut end = (pos + chunk).min(data.len());
                if let Some(limit) = cut {
                    let limit = limit as usize;
                    if pos >= limit {
                        return Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "simulated cut",
                            )),
                            usize::MAX,
                        ));
                    }
                    end = end.min(limit);
                }
                if let Some(rate) = faults.rate_bps {
                    let secs = (end - pos) as f64 / rate.max(1) as f64;
                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                }
                *lock(&shared.stats).cdn_bytes.entry(name).or_default() += (end - pos) as u64;
                Some((Ok(Frame::data(data.slice(pos..end))), end))
            }
        });
        BodyExt::boxed(StreamBody::new(stream.fuse()))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        hyper::header::ACCEPT_RANGES,
        hyper::header::HeaderValue::from_static("bytes"),
    );
    if let Ok(v) = body_len.to_string().parse() {
        h.insert(hyper::header::CONTENT_LENGTH, v);
    }
    if let Some(cr) = content_range.and_then(|c| c.parse().ok()) {
        h.insert(hyper::header::CONTENT_RANGE, cr);
    }
    r
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

pub(super) async fn admin_handler(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/admin/publish/dv") | (Method::POST, "/admin/publish/tos") => {
            let default = if path.ends_with("dv") { "8M" } else { "16M" };
            let size = match content::parse_size(
                &query_param(&req, "size").unwrap_or_else(|| default.into()),
            ) {
                Ok(s) => s,
                Err(e) => return text(400, e),
            };
            let s = shared.clone();
            let dv = path.ends_with("dv");
            let made = tokio::task::spawn_blocking(move || {
                if dv {
                    vec![publish_dv(&s, size)]
                } else {
                    publish_tos(&s, size)
                }
            })
            .await;
            match made {
                Ok(entries) => json(&entries),
                Err(e) => text(500, format!("publishing failed: {e}")),
            }
        }
        (Method::GET, "/admin/faults") => json(&*lock(&shared.faults)),
        (Method::PUT, "/admin/faults") => {
            let body = match http::read_body(req, 64 * 1024).await {
                Ok(b) => b,
                Err(e) => return text(400, e),
            };
            match serde_json::from_slice::<Faults>(&body) {
                Ok(f) => {
                    tracing::info!(?f, "faults set");
                    *lock(&shared.faults) = f;
                    text(200, "ok\n")
                }
                Err(e) => text(400, format!("bad faults: {e}\n")),
            }
        }
        (Method::GET, "/admin/stats") => json(&*lock(&shared.stats)),
        (Method::GET, "/admin/info") => json(&*lock(&shared.info)),
        _ => text(404, "not found\n"),
    }
}
