//! What a stranger or a replaced primary gets from the secondary: refused
//! before a payload byte is parsed or with a reason, nothing applied, and
//! the secondary still serving its pinned primary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{dump, Node, Pair};
use sms_core::replication::wire::{self, Message};
use sms_core::store::{Batch, Change, Replication, Store};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// A TLS client showing node `who`'s identity, trusting the pinned `pin`.
fn tls_client(
    who: &Node,
    pin: &str,
    addr: std::net::SocketAddr,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let mut s = pinned_stream(who, pin, addr);
    // Completes the handshake (TLS 1.3 reports a refused client on the first read).
    s.write_all(&wire::encode(
        1,
        &Message::Where {
            store: "updated".into(),
        },
    ))
    .map_err(|e| e.to_string())?;
    match wire::read_frame(&mut s) {
        Ok((_, Message::Position { .. })) => Ok(s),
        Ok((_, other)) => Err(format!("{other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn strangers_garbage_gaps_and_old_epochs_are_refused_and_the_secondary_goes_on() {
    let mut pair = Pair::start();
    let store = pair.store("updated");
    let mut b = Batch::new();
    b.put("data", "k1", b"v1".to_vec());
    assert_eq!(store.commit(&b).unwrap().replication, Replication::Sync);
    let fb = pair.b.fingerprint();

    // A node with another certificate: refused in the handshake.
    let stranger = Node::new(pair.root.path(), "c");
    let _ = stranger.fingerprint();
    let err = tls_client(&stranger, &fb, pair.listen).unwrap_err();
    println!("stranger: {err}");
    // Bytes that are no TLS at all.
    let mut raw = TcpStream::connect(pair.listen).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: sms\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    let _ = raw.read(&mut buf);

    // The pinned primary's identity, but bad frames.
    let mut s = tls_client(&pair.a, &fb, pair.listen).unwrap();
    s.write_all(b"SMHA\x01\x04garbage that is no frame")
        .unwrap();
    assert!(wire::read_frame(&mut s).is_err(), "garbage was answered");
    // A batch that does not follow the replica's last change.
    let mut s = tls_client(&pair.a, &fb, pair.listen).unwrap();
    let gap = Message::Changes {
        store: "updated".into(),
        changes: vec![Change {
            seq: 40,
            tree: "data".into(),
            key: b"evil".to_vec(),
            value: Some(b"x".to_vec()),
        }],
    };
    wire::write_frame(&mut s, 1, &gap).unwrap();
    let (_, reply) = wire::read_frame(&mut s).unwrap();
    assert!(
        matches!(&reply, Message::Refused { reason, .. } if reason.contains("does not follow")),
        "{reply:?}"
    );
    // A frame of a later epoch raises the secondary's; the old one is then refused.
    wire::write_frame(
        &mut s,
        5,
        &Message::Where {
            store: "updated".into(),
        },
    )
    .unwrap();
    assert!(matches!(
        wire::read_frame(&mut s).unwrap(),
        (5, Message::Position { seq: 1, .. })
    ));
    let old = Message::Changes {
        store: "updated".into(),
        changes: vec![Change {
            seq: 2,
            tree: "data".into(),
            key: b"stale".to_vec(),
            value: Some(b"x".to_vec()),
        }],
    };
    wire::write_frame(&mut s, 1, &old).unwrap();
    let (_, reply) = wire::read_frame(&mut s).unwrap();
    assert!(
        matches!(&reply, Message::Refused { reason, .. } if reason.contains("epoch 1")),
        "{reply:?}"
    );

    let log = pair.b.log();
    for needle in [
        "is not the pinned peer's",
        "replication connection refused",
        "malformed frame",
        "does not follow",
        "already saw replaced",
    ] {
        assert!(
            log.contains(needle),
            "no `{needle}` in the secondary's log:\n{log}"
        );
    }
    // Nothing of it applied; the secondary still serves: it holds k1 only.
    pair.b.stop();
    let replica = Store::open(&pair.b.replica("updated")).unwrap();
    assert_eq!(
        dump(&replica, "data"),
        vec![(b"k1".to_vec(), b"v1".to_vec())]
    );
    assert_eq!(replica.last_seq().unwrap(), 1);
}

/// A TLS connection showing node `who`'s identity to `addr`, trusting the
/// pinned `pin`; nothing sent yet.
fn pinned_stream(
    who: &Node,
    pin: &str,
    addr: std::net::SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let cert = std::fs::read(who.dir.join("state/identity/cert.pem")).unwrap();
    let key = std::fs::read(who.dir.join("state/identity/key.pem")).unwrap();
    let id = sms_core::tls::ClientIdentity::from_pem(&cert, &key).unwrap();
    let cfg = id
        .trusting_pin(sms_core::identity::parse_fingerprint(pin).unwrap())
        .unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// The value of `key = "..."` in a node's configuration file.
fn config_value(node: &Node, key: &str) -> String {
    let text = std::fs::read_to_string(&node.config).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .to_string()
}

#[test]
fn with_a_witness_a_peers_claim_of_a_higher_epoch_is_not_believed_without_it() {
    let mut pair = Pair::new();
    let fa = pair.a.fingerprint();
    let _witness = common::witness_for(&pair);
    // The primary alone: the witness grants it the lease at its epoch.
    pair.a.restart();
    let store = pair.store("updated");
    let write = |key: &str| {
        let mut b = Batch::new();
        b.put("data", key, b"v".to_vec());
        store.commit(&b)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while write("before").is_err() {
        assert!(std::time::Instant::now() < deadline, "{}", pair.a.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let epoch_file = pair.a.dir.join("state/epoch");
    let epoch_before = std::fs::read_to_string(&epoch_file).unwrap_or_default();

    // The pinned secondary's identity (its key is on this host) claims,
    // in its heartbeats, an epoch the witness never granted.
    let control: std::net::SocketAddr = config_value(&pair.a, "control_listen").parse().unwrap();
    let mut s = pinned_stream(&pair.b, &fa, control);
    for _ in 0..6 {
        let beat = Message::Heartbeat {
            active: true,
            degraded: false,
            handover: false,
        };
        s.write_all(&wire::encode(99, &beat)).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    // The primary checked the claim with the witness: it keeps its lease,
    // its epoch and its writes.
    let log = pair.a.log();
    assert!(
        log.contains("claims epoch 99") && log.contains("not confirmed by the witness"),
        "{log}"
    );
    assert!(!log.contains("stepping down"), "{log}");
    assert_eq!(
        std::fs::read_to_string(&epoch_file).unwrap_or_default(),
        epoch_before
    );
    write("after").unwrap_or_else(|e| panic!("{e}\n{log}"));
}
