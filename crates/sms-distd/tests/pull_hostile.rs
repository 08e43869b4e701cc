//! A hostile client on the management network against the pull server:
//! it asks for every pair of versions, holds a hundred connections open
//! with half a request line, and reads large downloads as slowly as it can,
//! while a legitimate device fetches its delta and the full archive. The
//! device must be served within a stated bound, and each defence must be
//! seen to act.

mod common;

use common::Harness;
use sms_distd::delta;
use sms_testkit::free_port;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the legitimate device may wait, from its first request to a
/// verified delta and a complete full archive (each a few MB), while the
/// attack runs.
const BOUND: Duration = Duration::from_secs(30);

fn curl(source: &str, args: &[&str]) -> (u16, String, Vec<u8>) {
    common::curl_from(source, args)
}

/// A connection from `source` with a tiny receive buffer, so that the
/// server's writes block as soon as the client stops reading.
fn slow_reader(source: &str, server: SocketAddr, request: &str) -> Option<TcpStream> {
    use nix::sys::socket::{
        bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .ok()?;
    setsockopt(&fd, sockopt::RcvBuf, &2048).ok()?;
    let src: std::net::SocketAddrV4 = format!("{source}:0").parse().ok()?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(src)).ok()?;
    let SocketAddr::V4(dst) = server else {
        return None;
    };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(dst)).ok()?;
    let mut s = TcpStream::from(fd);
    s.write_all(request.as_bytes()).ok()?;
    Some(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_client_does_not_starve_a_device() {
    let mut h = Harness::new().await;
    let mut vs = Vec::new();
    for _ in 0..6 {
        vs.push(h.new_dv(4 << 20).await.version);
    }
    h.no_fleet().await;
    let port = free_port();
    let p = &mut h.config.pull;
    p.http_listen = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    p.inline_delta_max_bytes = 0; // every client build in the background
    p.inline_level = 9;
    p.best_level = 9;
    p.retry_after = 1;
    p.max_builds = 1;
    p.build_queue = 2;
    p.builds_per_address = 1;
    p.max_connections_per_address = 40;
    p.header_timeout = Duration::from_secs(2);
    p.min_rate_bps = 64 << 10;
    p.rate_window = Duration::from_secs(2);
    p.max_large_downloads = 4;
    p.large_bytes = 32 << 10;
    p.slot_wait_ms = Duration::from_millis(500);
    h.start().await;
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let base = format!("http://{server}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl("127.0.0.1", &[&format!("{base}/dv/index.json")]).0 != 200 {
        assert!(Instant::now() < deadline, "{}", h.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let newest = vs.last().unwrap().clone();
    let oldest = vs[0].clone();

    // HEAD never starts a build.
    let (code, _, _) = curl(
        "127.0.0.1",
        &["-I", &format!("{base}/dv/delta/{}/{}", vs[1], vs[2])],
    );
    assert_eq!(code, 503, "HEAD of an unbuilt delta");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = h.pull_status_json().await;
    assert!(
        !st.contains(&format!("delta/dv/{}/{}", vs[1], vs[2])),
        "HEAD started a build: {st}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    // 1. Half a request line on a hundred connections from one address.
    let mut idle = Vec::new();
    for _ in 0..100 {
        if let Some(s) = slow_reader("127.0.0.66", server, "GET /dv/index.json HTTP/1.1\r\nHo") {
            idle.push(s);
        }
    }
    // 2. Large downloads read as slowly as possible, from another address.
    let mut readers = Vec::new();
    for _ in 0..8 {
        if let Some(s) = slow_reader(
            "127.0.0.67",
            server,
            &format!("GET /dv/{newest} HTTP/1.1\r\nHost: sms\r\n\r\n"),
        ) {
            readers.push(s);
        }
    }
    // 3. Every pair of versions, again and again, from a third address.
    let mut pairs = Vec::new();
    for (i, a) in vs.iter().enumerate() {
        for b in &vs[i + 1..] {
            pairs.push(format!("{base}/dv/delta/{a}/{b}"));
        }
    }
    let hammer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut answers = std::collections::BTreeMap::<u16, usize>::new();
            let until = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                for url in &pairs {
                    *answers.entry(curl("127.0.0.68", &[url]).0).or_default() += 1;
                }
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The device: its delta from the oldest version, retrying on 503 after
    // Retry-After, then the full archive.
    let started = Instant::now();
    let mut tries = 0;
    let delta = loop {
        tries += 1;
        let (code, headers, body) = curl("127.0.0.1", &[&format!("{base}/dv/delta/{oldest}")]);
        match code {
            200 => break body,
            503 => {
                assert!(headers.contains("retry-after"), "{headers}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => panic!("device got {other}: {}", String::from_utf8_lossy(&body)),
        }
        assert!(
            started.elapsed() < BOUND,
            "no delta after {tries} tries:\n{}",
            h.log_text()
        );
    };
    let rebuilt = delta::apply(&h.dv_payload(&oldest), &delta, 1 << 30).unwrap();
    assert_eq!(rebuilt, h.dv_payload(&newest));
    let delta_after = started.elapsed();
    let full = loop {
        let (code, _, body) = curl("127.0.0.1", &[&format!("{base}/dv/{newest}")]);
        if code == 200 {
            break body;
        }
        assert_eq!(code, 503);
        assert!(
            started.elapsed() < BOUND,
            "no full archive:\n{}",
            h.log_text()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(
        delta::unarchive(&full, 1 << 30).unwrap(),
        h.dv_payload(&newest)
    );
    let total = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let answers = hammer.join().unwrap();

    // Each defence acted.
    let st: serde_json::Value = serde_json::from_str(&h.pull_status_json().await).unwrap();
    println!(
        "device: delta after {:.1} s ({tries} tries), full archive after {:.1} s (bound {} s); \
         hostile pair answers {answers:?}; {st}",
        delta_after.as_secs_f64(),
        total.as_secs_f64(),
        BOUND.as_secs()
    );
    assert!(total < BOUND);
    assert!(st["builds_refused"].as_u64().unwrap() > 0, "{st}");
    assert!(answers.get(&503).copied().unwrap_or(0) > 0, "{answers:?}");
    assert!(
        st["connections_refused"].as_u64().unwrap() >= 60,
        "100 idle connections, 40 allowed: {st}"
    );
    // The half requests and the slow readers are closed within the header
    // timeout and the rate window.
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st: serde_json::Value = serde_json::from_str(&h.pull_status_json().await).unwrap();
        if st["connections_cut"].as_u64().unwrap() >= 40 || Instant::now() > deadline {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("after the attack: {st}");
    assert!(st["connections_cut"].as_u64().unwrap() >= 40, "{st}");
    assert_eq!(st["large_active"].as_u64(), Some(0), "{st}");
    drop(idle);
    drop(readers);
    h.stop();
}
