//! A small authoritative DNS server (UDP) for the simulated names.
//!
//! The appliance resolves the TMC's and CDN's names with its own resolver
//! against manually configured servers; this answers those queries for real,
//! and answers NXDOMAIN for names outside the zone.

use crate::zone::Zone;
use anyhow::{Context, Result};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata, RData, Record, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;

/// A running DNS server.
pub struct DnsServer {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Queries answered so far.
    pub queries: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds the answer to one query packet, or `None` for garbage.
pub fn answer(zone: &Zone, packet: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(packet).ok()?;
    if req.message_type() != MessageType::Query {
        return None;
    }
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(false)
        .set_authoritative(true);
    let mut code = ResponseCode::NoError;
    for q in req.queries() {
        resp.add_query(q.clone());
        let name = q.name().to_ascii();
        match zone.resolve(&name) {
            None => code = ResponseCode::NXDomain,
            Some(IpAddr::V4(v4)) if q.query_type() == RecordType::A => {
                resp.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(rdata::A(v4)),
                ));
            }
            Some(IpAddr::V6(v6)) if q.query_type() == RecordType::AAAA => {
                resp.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::AAAA(rdata::AAAA(v6)),
                ));
            }
            Some(_) => {}
        }
    }
    resp.set_response_code(code);
    resp.to_vec().ok()
}

impl DnsServer {
    /// Starts serving `zone` on `bind`.
    pub async fn start(bind: SocketAddr, zone: Zone) -> Result<DnsServer> {
        let sock = UdpSocket::bind(bind)
            .await
            .with_context(|| format!("binding DNS server to {bind}"))?;
        let addr = sock.local_addr()?;
        let queries = Arc::new(AtomicU64::new(0));
        let counter = queries.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if let Some(out) = answer(&zone, &buf[..n]) {
                    let _ = sock.send_to(&out, peer).await;
                }
            }
        });
        Ok(DnsServer {
            addr,
            queries,
            task,
        })
    }
}
