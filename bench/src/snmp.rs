//! Helpers of the SNMP benchmarks: request pools and a bounded UDP load
//! generator with a fixed number of requests in flight.

use anyhow::{bail, Result};
use sms_snmp::message::CommunityMessage;
use sms_snmp::usm::{
    seal, AuthProtocol, PrivProtocol, Seal, SecurityLevel, UserCredentials, UserKeys,
};
use sms_snmp::{AnyPdu, Message, Oid, Pdu, PduType, ScopedPdu, Value, VarBind, Version};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The v3 user both agents know.
pub const USER: &str = "bench";
/// Its passwords.
pub const AUTH_PW: &str = "benchauth123";
/// Its privacy password.
pub const PRIV_PW: &str = "benchpriv123";

fn pdu(kind: PduType, id: i32, oid: &Oid, reps: i32) -> Pdu {
    let mut p = Pdu::new(kind, id, vec![VarBind::new(oid.clone(), Value::Null)]);
    if kind == PduType::GetBulk {
        p.error_index = reps;
    }
    p
}

/// Requests with distinct request IDs 1..=n, and the keys that open the
/// answers (v3).
#[derive(Clone)]
pub struct Pool {
    /// The encoded requests.
    pub requests: Vec<Vec<u8>>,
    /// The v3 user's localized keys.
    pub keys: Option<UserKeys>,
}

impl Pool {
    /// True for a Response to one of the requests, without error status
    /// or exception values; a Report or an error is not an answer.
    pub fn answered(&self, data: &[u8]) -> bool {
        let pdu = match sms_snmp::decode(data) {
            Ok(Message::Community(m)) => match m.pdu {
                AnyPdu::Pdu(p) => p,
                _ => return false,
            },
            Ok(Message::V3(m)) => {
                let Some(keys) = &self.keys else {
                    return false;
                };
                match sms_snmp::usm::unseal(&m, data, keys) {
                    Ok(s) => s.pdu,
                    Err(_) => return false,
                }
            }
            Err(_) => return false,
        };
        pdu.kind == PduType::Response
            && pdu.error_status == 0
            && (1..=self.requests.len() as i32).contains(&pdu.request_id)
            && !pdu.varbinds.is_empty()
            && !pdu
                .varbinds
                .iter()
                .any(|v| matches!(v.value, Value::NoSuchObject | Value::NoSuchInstance))
    }
}

/// `n` v2c requests of `kind` for `oid` with distinct request IDs.
pub fn v2c_pool(kind: PduType, oid: &str, reps: i32, n: usize) -> Pool {
    let oid: Oid = oid.parse().unwrap_or_default();
    let requests = (0..n)
        .map(|i| {
            CommunityMessage {
                version: Version::V2c,
                community: b"public".to_vec(),
                pdu: AnyPdu::Pdu(pdu(kind, i as i32 + 1, &oid, reps)),
            }
            .encode()
        })
        .collect();
    Pool {
        requests,
        keys: None,
    }
}

/// Asks `agent` for its engine ID, boots and time (USM discovery).
pub fn discover(agent: SocketAddr) -> Result<(Vec<u8>, u32, u32)> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let anon = UserKeys {
        name: Vec::new(),
        auth: None,
        privacy: None,
    };
    let probe = seal(
        &Seal {
            engine_id: b"",
            boots: 0,
            time: 0,
            msg_id: 1,
            reportable: true,
            level: SecurityLevel::NoAuthNoPriv,
            keys: &anon,
            salt: 0,
        },
        &ScopedPdu {
            context_engine_id: Vec::new(),
            context_name: Vec::new(),
            pdu: Pdu::new(PduType::Get, 1, Vec::new()),
        },
    );
    let mut buf = [0u8; 4096];
    for _ in 0..20 {
        sock.send_to(&probe, agent)?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Ok(Message::V3(m)) = sms_snmp::decode(&buf[..n]) {
                return Ok((m.usm.engine_id, m.usm.boots, m.usm.time));
            }
        }
    }
    bail!("{agent}: no answer to engine discovery")
}

/// `n` v3 authPriv (SHA-256, AES) requests for `agent`, timed from now.
pub fn v3_pool(agent: SocketAddr, kind: PduType, oid: &str, reps: i32, n: usize) -> Result<Pool> {
    let (engine, boots, time) = discover(agent)?;
    let creds = UserCredentials::from_passwords(
        USER,
        Some((AuthProtocol::Sha256, AUTH_PW)),
        Some((PrivProtocol::Aes128, PRIV_PW)),
    )
    .map_err(anyhow::Error::msg)?;
    let keys = creds.localize(&engine);
    let oid: Oid = oid.parse().map_err(anyhow::Error::msg)?;
    let requests = (0..n)
        .map(|i| {
            seal(
                &Seal {
                    engine_id: &engine,
                    boots,
                    time,
                    msg_id: i as i32 + 1,
                    reportable: true,
                    level: SecurityLevel::AuthPriv,
                    keys: &keys,
                    salt: i as u64 + 1,
                },
                &ScopedPdu {
                    context_engine_id: engine.clone(),
                    context_name: Vec::new(),
                    pdu: pdu(kind, i as i32 + 1, &oid, reps),
                },
            )
        })
        .collect();
    Ok(Pool {
        requests,
        keys: Some(keys),
    })
}

/// Keeps `window` requests from `pool` in flight against `server` for
/// `secs`; returns answers per second.
pub fn load(server: SocketAddr, pool: &Pool, window: usize, secs: f64) -> Result<f64> {
    let mut next = 0usize;
    let reqs = &pool.requests;
    crate::udp_window_load(
        server,
        window,
        secs,
        |sock| {
            next += 1;
            sock.send(&reqs[(next - 1) % reqs.len()]).map(|_| ())
        },
        |answer| pool.answered(answer),
    )
}

/// Starts the release sms-snmpd (next to this benchmark) with `config`,
/// without D-Bus, quiet.
pub fn spawn_snmpd(config: &std::path::Path) -> Result<crate::Child> {
    use anyhow::Context;
    let exe = std::env::current_exe()?.with_file_name("sms-snmpd");
    Ok(crate::Child(
        crate::own_group(&mut std::process::Command::new(&exe))
            .arg("--config")
            .arg(config)
            .arg("--no-dbus")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("{} (cargo build --release -p sms-snmpd)", exe.display()))?,
    ))
}

/// Checks that `server` answers one request of `pool` with a Response.
pub fn answers(server: SocketAddr, pool: &Pool) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 65536];
    for _ in 0..50 {
        let _ = sock.send_to(&pool.requests[0], server);
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return pool.answered(&buf[..n]);
        }
    }
    false
}
