//! The world beyond the segment, and the way in from the host.
//!
//! The gateway is a simulated host that the appliance uses as its default
//! route. It accepts traffic for any address (smoltcp's AnyIP) and carries
//! the connections and datagrams meant for a configured public address to
//! a service on the host's loopback: the update centre "on the internet"
//! at 203.0.113.10:443 is the simulator on 127.0.0.1:PORT. Addresses
//! without a forward get a reset (TCP) or nothing (UDP), as from a
//! firewall.
//!
//! The way in ([`Lan::forward_tcp_in`], [`Lan::forward_udp_in`]) is an
//! explicit forward: a port on the host's loopback whose connections a
//! host of the segment (the administrator's workstation) opens to an
//! address on the segment, so that SSH and an NMS reach the appliance
//! without root, tap or bridge.

use crate::lan::{HostConfig, HostId, Lan};
use crate::LanError;
use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// TCP or UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// One service beyond the gateway.
#[derive(Clone, Debug)]
pub struct Forward {
    /// TCP or UDP.
    pub proto: Proto,
    /// The address the appliance uses for it.
    pub public: SocketAddrV4,
    /// Where it really is (on the host's loopback).
    pub target: SocketAddr,
}

/// Peers of a UDP forward a gateway remembers at most; older ones are
/// forgotten (as a NAT table expires).
const UDP_PEERS: usize = 1024;

/// Connections a forward accepts at once before new ones wait.
const BACKLOG: usize = 8;

impl Lan {
    /// Adds the gateway: a host at `config` that answers for any address,
    /// carries `forwards` to the host's services and, with a `dhcp` pool,
    /// leases addresses (it is the router and the server identifier).
    pub fn add_gateway(
        &self,
        config: HostConfig,
        forwards: Vec<Forward>,
        dhcp: Option<crate::dhcp::DhcpPool>,
    ) -> Result<(HostId, Arc<Mutex<crate::dhcp::Leases>>), LanError> {
        let own = config.address;
        let id = self.add_host(config)?;
        {
            let mut inner = self.shared.lock();
            let h = inner.host(id)?;
            h.iface.set_any_ip(true);
            h.iface
                .routes_mut()
                .add_default_ipv4_route(own)
                .map_err(|_| LanError::Config("no room for the gateway's route".into()))?;
            h.gateway_for = Some(own);
        }
        let mut udp_ports: HashMap<u16, Vec<Forward>> = HashMap::new();
        for f in forwards {
            match f.proto {
                Proto::Udp => udp_ports.entry(f.public.port()).or_default().push(f),
                Proto::Tcp => {
                    // Bound to the public address: a SYN for any other
                    // address finds no listener and gets a reset.
                    let mut l =
                        self.listen_on(id, Some(*f.public.ip()), f.public.port(), BACKLOG)?;
                    let target = f.target;
                    self.spawn(tokio::spawn(async move {
                        loop {
                            match l.accept().await {
                                Ok(stream) => {
                                    tokio::spawn(splice(stream, target));
                                }
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                    }));
                }
            }
        }
        for (port, fwds) in udp_ports {
            let sock = Arc::new(self.bind_udp(id, port)?);
            self.spawn(tokio::spawn(udp_gateway(sock, fwds)));
        }
        let leases = Arc::new(Mutex::new(crate::dhcp::Leases::default()));
        if let Some(pool) = dhcp {
            let sock = self.bind_udp(id, crate::dhcp::SERVER_PORT)?;
            self.spawn(tokio::spawn(crate::dhcp::serve(sock, pool, leases.clone())));
        }
        Ok((id, leases))
    }

    /// Forwards connections to `listener` (on the host) to `to` on the
    /// segment, opened from host `from`.
    pub fn forward_tcp_in(
        &self,
        from: HostId,
        listener: tokio::net::TcpListener,
        to: SocketAddrV4,
    ) {
        let lan = self.handle();
        self.spawn(tokio::spawn(async move {
            loop {
                let Ok((outside, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let lan = lan.handle();
                tokio::spawn(async move {
                    match lan.connect(from, to).await {
                        Ok(mut inside) => {
                            let mut outside = outside;
                            let _ = tokio::io::copy_bidirectional(&mut outside, &mut inside).await;
                        }
                        Err(e) => tracing::info!("forward to {to}: {e}"),
                    }
                });
            }
        }));
    }

    /// Forwards datagrams to `sock` (on the host) to `to` on the segment,
    /// sent from host `from` (one port of its own per outside peer), and
    /// the answers back.
    pub fn forward_udp_in(
        &self,
        from: HostId,
        sock: tokio::net::UdpSocket,
        to: SocketAddrV4,
    ) -> Result<(), LanError> {
        let lan = self.handle();
        let outside = Arc::new(sock);
        self.spawn(tokio::spawn(async move {
            let peers: Mutex<HashMap<SocketAddr, Arc<crate::UdpSocket>>> =
                Mutex::new(HashMap::new());
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, peer)) = outside.recv_from(&mut buf).await else {
                    continue;
                };
                let inside = {
                    let mut map = peers.lock().unwrap_or_else(|p| p.into_inner());
                    if map.len() >= UDP_PEERS {
                        map.clear();
                    }
                    if let Some(s) = map.get(&peer) {
                        s.clone()
                    } else {
                        let Ok(s) = lan.bind_udp(from, 0) else {
                            continue;
                        };
                        let s = Arc::new(s);
                        map.insert(peer, s.clone());
                        let (back, outside) = (s.clone(), outside.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65536];
                            while let Ok((n, _)) = back.recv_from(&mut buf).await {
                                let _ = outside.send_to(&buf[..n], peer).await;
                            }
                        });
                        s
                    }
                };
                let _ = inside.send_to(&buf[..n], to).await;
            }
        }));
        Ok(())
    }
}

async fn splice(mut inside: crate::TcpStream, target: SocketAddr) {
    match tokio::net::TcpStream::connect(target).await {
        Ok(mut outside) => {
            let _ = outside.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
        }
        Err(e) => {
            tracing::info!("gateway: {target}: {e}");
            inside.abort();
        }
    }
}

async fn udp_gateway(sock: Arc<crate::UdpSocket>, fwds: Vec<Forward>) {
    let mut peers: HashMap<(SocketAddrV4, SocketAddrV4), Arc<tokio::net::UdpSocket>> =
        HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, peer, Some(dst))) = sock.recv_from_to(&mut buf).await else {
            continue;
        };
        let public = SocketAddrV4::new(dst, sock.port());
        let Some(f) = fwds.iter().find(|f| f.public == public) else {
            continue;
        };
        let key = (peer, public);
        if !peers.contains_key(&key) {
            if peers.len() >= UDP_PEERS {
                peers.clear();
            }
            let bind: SocketAddr = if f.target.is_ipv4() {
                "127.0.0.1:0".parse().unwrap_or(f.target)
            } else {
                "[::1]:0".parse().unwrap_or(f.target)
            };
            let Ok(out) = tokio::net::UdpSocket::bind(bind).await else {
                continue;
            };
            if out.connect(f.target).await.is_err() {
                continue;
            }
            let out = Arc::new(out);
            let (reader, back) = (out.clone(), sock.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = reader.recv(&mut buf).await {
                    let _ = back.send_from_to(&buf[..n], Some(*public.ip()), peer).await;
                }
            });
            peers.insert(key, out);
        }
        if let Some(out) = peers.get(&key) {
            let _ = out.send(&buf[..n]).await;
        }
    }
}
