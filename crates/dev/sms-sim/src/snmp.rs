//! A managed device's SNMP side: a small v1/v2c agent (system group and one
//! interface) and traps sent from the device's own address, built on the
//! appliance's protocol crate so that the appliance's poller and receiver
//! meet a real peer on the wire.

use crate::datagram::Datagram;
use sms_snmp::message::CommunityMessage;
use sms_snmp::value::VarBind;
use sms_snmp::{AnyPdu, Message, Oid, Pdu, PduType, Value, Version};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;

/// Community the simulated devices answer to.
pub const COMMUNITY: &str = "public";

pub(crate) fn oid(a: &[u32]) -> Oid {
    Oid::new(a.to_vec())
}

/// The objects of one device.
pub fn device_mib(name: &str, family: &str) -> BTreeMap<Oid, Value> {
    let mut m = BTreeMap::new();
    m.insert(
        oid(&[1, 3, 6, 1, 2, 1, 1, 1, 0]),
        Value::text(format!("Simulated IPS {family} device {name}")),
    );
    m.insert(
        oid(&[1, 3, 6, 1, 2, 1, 1, 2, 0]),
        Value::Oid(oid(&[1, 3, 6, 1, 4, 1, 32473, 2, 1])),
    );
    m.insert(oid(&[1, 3, 6, 1, 2, 1, 1, 3, 0]), Value::TimeTicks(0));
    m.insert(oid(&[1, 3, 6, 1, 2, 1, 1, 5, 0]), Value::text(name));
    m.insert(oid(&[1, 3, 6, 1, 2, 1, 2, 1, 0]), Value::Integer(1));
    m.insert(oid(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 1]), Value::Integer(1));
    m.insert(
        oid(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 1]),
        Value::text("mgmt0"),
    );
    m.insert(oid(&[1, 3, 6, 1, 2, 1, 2, 2, 1, 8, 1]), Value::Integer(1));
    m
}

fn answer(mib: &BTreeMap<Oid, Value>, started: Instant, packet: &[u8]) -> Option<Vec<u8>> {
    let Ok(Message::Community(m)) = sms_snmp::decode(packet) else {
        return None;
    };
    if m.community != COMMUNITY.as_bytes() {
        return None;
    }
    let AnyPdu::Pdu(req) = &m.pdu else {
        return None;
    };
    let uptime = (started.elapsed().as_millis() / 10) as u32;
    let value = |o: &Oid, v: &Value| {
        if o.arcs() == [1, 3, 6, 1, 2, 1, 1, 3, 0] {
            Value::TimeTicks(uptime)
        } else {
            v.clone()
        }
    };
    let next = |o: &Oid| {
        mib.range((Bound::Excluded(o), Bound::Unbounded))
            .next()
            .map(|(k, v)| VarBind::new(k.clone(), value(k, v)))
            .unwrap_or_else(|| VarBind::new(o.clone(), Value::EndOfMibView))
    };
    let mut resp = Pdu::new(PduType::Response, req.request_id, Vec::new());
    match req.kind {
        PduType::Get => {
            for vb in &req.varbinds {
                let v = mib
                    .get(&vb.oid)
                    .map(|v| value(&vb.oid, v))
                    .unwrap_or(Value::NoSuchObject);
                resp.varbinds.push(VarBind::new(vb.oid.clone(), v));
            }
        }
        PduType::GetNext => {
            for vb in &req.varbinds {
                resp.varbinds.push(next(&vb.oid));
            }
        }
        PduType::GetBulk => {
            let reps = req.error_index.clamp(0, 50);
            for vb in &req.varbinds {
                let mut cur = vb.oid.clone();
                for _ in 0..reps {
                    let n = next(&cur);
                    cur = n.oid.clone();
                    let end = n.value == Value::EndOfMibView;
                    resp.varbinds.push(n);
                    if end {
                        break;
                    }
                }
            }
        }
        _ => return None,
    }
    if m.version == Version::V1 && resp.varbinds.iter().any(|v| v.value.is_exception()) {
        resp.error_status = 2;
        resp.error_index = 1;
        resp.varbinds = req.varbinds.clone();
    }
    Some(
        CommunityMessage {
            version: m.version,
            community: m.community.clone(),
            pdu: AnyPdu::Pdu(resp),
        }
        .encode(),
    )
}

/// Serves a device's agent on `sock` until the task is dropped.
pub async fn serve_agent(sock: impl Datagram, mib: Arc<BTreeMap<Oid, Value>>) {
    let started = Instant::now();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, src)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(out) = answer(&mib, started, &buf[..n]) {
            let _ = sock.send_to(&out, src).await;
        }
    }
}

/// Sends a v2c trap from `from` (the device's address, port 0) to `to`.
pub async fn send_trap(
    from: std::net::IpAddr,
    to: SocketAddr,
    community: &str,
    trap_oid: Oid,
    uptime: u32,
    extra: Vec<VarBind>,
) -> std::io::Result<()> {
    let sock = UdpSocket::bind(SocketAddr::new(from, 0)).await?;
    send_trap_on(&sock, to, community, trap_oid, uptime, extra).await
}

/// coldStart: the device (re)started.
pub const COLD_START: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 1];

/// warmStart: the device restarted its engine (after a package install).
pub const WARM_START: &[u32] = &[1, 3, 6, 1, 6, 3, 1, 1, 5, 2];

/// Sends a v2c trap on `sock` (a device's own socket) to `to`.
pub async fn send_trap_on(
    sock: &impl Datagram,
    to: SocketAddr,
    community: &str,
    trap_oid: Oid,
    uptime: u32,
    extra: Vec<VarBind>,
) -> std::io::Result<()> {
    let mut vbs = vec![
        VarBind::new(oid(&[1, 3, 6, 1, 2, 1, 1, 3, 0]), Value::TimeTicks(uptime)),
        VarBind::new(
            oid(&[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0]),
            Value::Oid(trap_oid),
        ),
    ];
    vbs.extend(extra);
    let msg = CommunityMessage {
        version: Version::V2c,
        community: community.as_bytes().to_vec(),
        pdu: AnyPdu::Pdu(Pdu::new(
            PduType::TrapV2,
            rand::random::<i32>() & 0x7fff_ffff,
            vbs,
        )),
    };
    sock.send_to(&msg.encode(), to).await?;
    Ok(())
}
