#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The pull server with curl as the client: deltas (inline, background with
//! 503 + Retry-After, several versions back), 301 to the full archive,
//! Range, If-None-Match, HTTPS, the large-download limit, and every
//! traversal form refused.

mod common;

use common::Harness;
use sms_core::blob::Digest;
use sms_core::metadata::{self, TrustRoot};
use sms_core::package::Version;
use sms_distd::delta;
use sms_testkit::free_port;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

struct Curl {
    code: u16,
    headers: String,
    body: Vec<u8>,
}

fn curl(args: &[&str]) -> Curl {
    let (code, headers, body) = common::curl_from("127.0.0.1", args);
    Curl {
        code,
        headers,
        body,
    }
}

impl Curl {
    fn header(&self, name: &str) -> Option<String> {
        // The last header block (after redirects).
        let block = self
            .headers
            .rsplit("\r\n\r\n")
            .find(|b| !b.trim().is_empty())?;
        block.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    }
}

async fn pull_harness(
    inline_max: u64,
    versions: usize,
    size: usize,
) -> (Harness, Vec<Version>, u16) {
    let mut h = Harness::new().await;
    let mut vs = Vec::new();
    for _ in 0..versions {
        vs.push(h.new_dv(size).await.version);
    }
    h.no_fleet().await;
    let port = free_port();
    h.config.pull.http_listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    h.config.pull.inline_delta_max_bytes = inline_max;
    h.config.pull.inline_level = 3;
    h.config.pull.best_level = 12;
    h.config.pull.retry_after = 1;
    h.start().await;
    // Wait for the first refresh of the offer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl(&[&format!("http://127.0.0.1:{port}/dv/index.json")]).code != 200 {
        assert!(Instant::now() < deadline, "{}", h.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (h, vs, port)
}

/// Checks a reconstructed payload against the vendor-signed catalog served
/// by the appliance, as a device does.
fn verify(h: &Harness, port: u16, v: &Version, payload: &[u8]) {
    let cat = curl(&[&format!("http://127.0.0.1:{port}/dv/catalog.json")]);
    assert_eq!(cat.code, 200);
    let trust = TrustRoot::load(&h.sim.info.trust_root_file).unwrap();
    metadata::verify_package(
        &cat.body,
        &trust,
        &format!("dv/{v}"),
        &Digest::of(payload),
        payload.len() as u64,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_redirects_ranges_and_validators() {
    let (h, vs, port) = pull_harness(64 << 20, 7, 2 << 20).await;
    let base = format!("http://127.0.0.1:{port}");
    let newest = vs.last().unwrap();

    let idx = curl(&[&format!("{base}/dv/index.json")]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&idx.body).unwrap();
    assert_eq!(list.len(), 7);
    assert_eq!(list[0]["version"], newest.to_string());

    // The full archive: a zstd frame of the signed payload.
    let full = curl(&[&format!("{base}/dv/{newest}")]);
    assert_eq!(full.code, 200);
    assert_eq!(
        full.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert!(full.header("cache-control").unwrap().contains("immutable"));
    let payload = delta::unarchive(&full.body, 1 << 30).unwrap();
    verify(&h, port, newest, &payload);

    // N-1 -> N and N-5 -> N deltas, applied and verified against the signature.
    for back in [2usize, 6] {
        let from = &vs[vs.len() - back];
        let d = curl(&[&format!("{base}/dv/delta/{from}")]);
        assert_eq!(d.code, 200, "{}", String::from_utf8_lossy(&d.body));
        assert_eq!(d.header("x-sms-target-version"), Some(newest.to_string()));
        let rebuilt = delta::apply(&h.dv_payload(from), &d.body, 1 << 30).unwrap();
        verify(&h, port, newest, &rebuilt);
        // One step changes ~2 % of the records, five steps ~10 %.
        let limit = if back == 2 { 20 } else { 4 };
        assert!(
            d.body.len() * limit < full.body.len(),
            "delta {} vs full {}",
            d.body.len(),
            full.body.len()
        );
    }

    // Unknown base: 301 to the full archive, which curl -L follows.
    let r = curl(&[&format!("{base}/dv/delta/0.0.1")]);
    assert_eq!(r.code, 301);
    assert_eq!(r.header("location"), Some(format!("/dv/{newest}")));
    let followed = curl(&["-L", &format!("{base}/dv/delta/0.0.1")]);
    assert_eq!(followed.code, 200);
    assert_eq!(followed.body, full.body);
    // Up to date: nothing to send.
    assert_eq!(curl(&[&format!("{base}/dv/delta/{newest}")]).code, 204);

    // Range and If-None-Match.
    let part = curl(&["-r", "100-1123", &format!("{base}/dv/{newest}")]);
    assert_eq!(part.code, 206);
    assert_eq!(part.body, full.body[100..1124]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-1123/{}", full.body.len()))
    );
    let tail = curl(&["-r", "-10", &format!("{base}/dv/{newest}")]);
    assert_eq!(tail.body, full.body[full.body.len() - 10..]);
    let bad = curl(&[
        "-r",
        &format!("{}-", full.body.len()),
        &format!("{base}/dv/{newest}"),
    ]);
    assert_eq!(bad.code, 416);
    let etag = full.header("etag").unwrap();
    let inm = curl(&[
        "-H",
        &format!("If-None-Match: {etag}"),
        &format!("{base}/dv/{newest}"),
    ]);
    assert_eq!(inm.code, 304);
    assert!(inm.body.is_empty());
    let other = curl(&[
        "-H",
        "If-None-Match: \"abc\"",
        &format!("{base}/dv/{newest}"),
    ]);
    assert_eq!(other.code, 200);
    let head = curl(&["-I", &format!("{base}/dv/{newest}")]);
    assert_eq!(head.code, 200);
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string())
    );
    assert_eq!(
        curl(&["-X", "DELETE", &format!("{base}/dv/{newest}")]).code,
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_deltas_answer_503_then_the_delta_built_once() {
    // Nothing is built inside a request: every missing delta is a
    // background build, announced with 503 + Retry-After.
    let (h, vs, port) = pull_harness(0, 4, 1 << 20).await;
    let url = format!("http://127.0.0.1:{port}/dv/delta/{}", vs[0]);
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || curl(&[&url]))
        })
        .collect();
    let first: Vec<Curl> = handles.into_iter().map(|t| t.join().unwrap()).collect();
    let mut got_503 = false;
    for r in &first {
        if r.code == 503 {
            got_503 = true;
            assert_eq!(r.header("retry-after").as_deref(), Some("1"));
        } else {
            assert_eq!(r.code, 200);
        }
    }
    assert!(got_503, "the first requests must see the build under way");
    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        let r = curl(&[&url]);
        if r.code == 200 {
            break r;
        }
        assert_eq!(r.code, 503);
        assert!(Instant::now() < deadline, "delta never ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rebuilt = delta::apply(&h.dv_payload(&vs[0]), &d.body, 1 << 30).unwrap();
    assert_eq!(rebuilt, h.dv_payload(&vs[3]));
    let key = format!("built delta/dv/{}/{}", vs[0], vs[3]);
    assert_eq!(
        h.log_text().matches(&key).count(),
        1,
        "one build for all requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_limit_and_https() {
    let mut h = Harness::new().await;
    let v = h.new_dv(40 << 20).await.version;
    h.no_fleet().await;
    let (port, tls_port) = (free_port(), free_port());
    let ca = sms_sim::pki::TestCa::generate("pull test CA").unwrap();
    let cert = ca
        .issue(&["localhost"], &["127.0.0.1".parse().unwrap()])
        .unwrap();
    let dir = h.dir.path().to_path_buf();
    std::fs::write(dir.join("pull.pem"), &cert.chain_pem).unwrap();
    std::fs::write(dir.join("pull-key.pem"), &cert.key_pem).unwrap();
    std::fs::write(dir.join("pull-ca.pem"), ca.cert_pem()).unwrap();
    h.config.pull.http_listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    h.config.pull.https_listen = vec![format!("127.0.0.1:{tls_port}").parse().unwrap()];
    h.config.pull.tls_cert_file = dir.join("pull.pem");
    h.config.pull.tls_key_file = dir.join("pull-key.pem");
    h.config.pull.max_large_downloads = 1;
    h.config.pull.slot_wait_ms = Duration::from_millis(300);
    h.config.pull.inline_level = 1;
    h.config.pull.best_level = 1;
    h.start().await;
    let url = format!("http://127.0.0.1:{port}/dv/{v}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let full = loop {
        let r = curl(&[&url]);
        if r.code == 200 {
            break r;
        }
        assert!(Instant::now() < deadline, "{} {}", r.code, h.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // HTTPS serves the same bytes.
    let tls = curl(&[
        "--cacert",
        dir.join("pull-ca.pem").to_str().unwrap(),
        &format!("https://127.0.0.1:{tls_port}/dv/{v}"),
    ]);
    assert_eq!(tls.code, 200);
    assert_eq!(tls.body, full.body);

    // A slow client holds the only slot; the next large download gets 503.
    let mut slow = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--limit-rate", "500K", &url])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st: serde_json::Value = serde_json::from_str(&h.pull_status_json().await).unwrap();
        if st["large_active"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow download never took the slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = curl(&[&url]);
    let status = h.pull_status_json().await;
    assert_eq!(
        busy.code,
        503,
        "archive {} bytes, {status}",
        full.body.len()
    );
    assert!(busy.header("retry-after").is_some());
    // Small answers are not limited.
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{port}/dv/index.json")]).code,
        200
    );
    let _ = slow.kill();
    let _ = slow.wait();
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl(&["-r", "0-2000000", &url]).code != 206 {
        assert!(Instant::now() < deadline, "slot not released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_reaches_outside_the_store() {
    let (h, vs, port) = pull_harness(64 << 20, 1, 64 << 10).await;
    let secret = b"TOP-SECRET-OUTSIDE-THE-STORE";
    std::fs::write(h.dir.path().join("secret"), secret).unwrap();
    std::fs::write(h.dir.path().join("distd/secret"), secret).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for p in [
        "/dv/../../secret",
        "/dv/../../../../etc/passwd",
        "/dv/%2e%2e/%2e%2e/secret",
        "/dv/%252e%252e/%252e%252e/secret",
        "/dv/..%2f..%2fsecret",
        "/dv/..%5c..%5csecret",
        "/dv/%c0%ae%c0%ae/secret",
        "/dv/%c0%af/etc/passwd",
        "/dv/1.0%00",
        "/dv/./../secret",
        "/tos/../../secret",
        "/etc/passwd",
        "/secret",
        &format!("/dv/{}/../../secret", vs[0]),
    ] {
        let r = curl(&["--path-as-is", &format!("{base}{p}")]);
        assert!(r.code == 400 || r.code == 404, "{p}: {}", r.code);
        assert!(!r.body.windows(secret.len()).any(|w| w == secret), "{p}");
    }
    // Bytes curl will not send: raw backslashes, NUL, overlong UTF-8.
    for raw in [
        &b"GET /dv\\..\\..\\secret HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"GET /dv/1.0\x00 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"GET /dv/\xc0\xae\xc0\xae/secret HTTP/1.1\r\nHost: x\r\n\r\n"[..],
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "{:?}: {text}",
            String::from_utf8_lossy(raw)
        );
        assert!(!out.windows(secret.len()).any(|w| w == secret));
    }
    // Still serving.
    assert_eq!(curl(&[&format!("{base}/dv/index.json")]).code, 200);
}
