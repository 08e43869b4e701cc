//! A DHCP server on the gateway, so that an appliance booted from the
//! factory image (management interface on DHCP until the administrator
//! sets an address) comes up on the segment as it would on a lab LAN.
//! Leases are fixed per MAC address for the life of the segment.

use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress, Ipv4Address};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

/// The server's port.
pub const SERVER_PORT: u16 = 67;
/// The clients' port.
pub const CLIENT_PORT: u16 = 68;

/// What the server hands out.
#[derive(Clone, Debug)]
pub struct DhcpPool {
    /// First address of the pool.
    pub first: Ipv4Addr,
    /// Last address of the pool.
    pub last: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// The router (and server identifier).
    pub router: Ipv4Addr,
    /// Lease time, seconds.
    pub lease_secs: u32,
}

/// The server's memory: the address each client got.
#[derive(Default)]
pub struct Leases {
    by_mac: HashMap<[u8; 6], Ipv4Addr>,
}

impl Leases {
    /// The address of `mac`, leased now if it had none; `None` when the
    /// pool is exhausted.
    fn address_for(&mut self, pool: &DhcpPool, mac: [u8; 6]) -> Option<Ipv4Addr> {
        if let Some(a) = self.by_mac.get(&mac) {
            return Some(*a);
        }
        let used: Vec<Ipv4Addr> = self.by_mac.values().copied().collect();
        let a = (u32::from(pool.first)..=u32::from(pool.last))
            .map(Ipv4Addr::from)
            .find(|a| !used.contains(a))?;
        self.by_mac.insert(mac, a);
        Some(a)
    }

    /// The address leased to `mac`, if any.
    pub fn get(&self, mac: [u8; 6]) -> Option<Ipv4Addr> {
        self.by_mac.get(&mac).copied()
    }
}

fn mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(prefix.min(32)))
            .unwrap_or(0),
    )
}

/// The server's answer to one client message: an OFFER to a DISCOVER, an
/// ACK (or a NAK for an address not leased to it) to a REQUEST; nothing
/// to anything else or to a malformed packet.
pub fn answer(leases: &mut Leases, pool: &DhcpPool, request: &[u8]) -> Option<Vec<u8>> {
    let packet = DhcpPacket::new_checked(request).ok()?;
    let req = DhcpRepr::parse(&packet).ok()?;
    let mac = req.client_hardware_address.0;
    let (kind, yours) = match req.message_type {
        DhcpMessageType::Discover => (DhcpMessageType::Offer, leases.address_for(pool, mac)?),
        DhcpMessageType::Request => {
            let wanted = req
                .requested_ip
                .or((!req.client_ip.is_unspecified()).then_some(req.client_ip));
            if let Some(server) = req.server_identifier {
                if server != pool.router {
                    // The client took another server's offer.
                    return None;
                }
            }
            let mine = leases.address_for(pool, mac)?;
            if wanted.is_some_and(|w| w != mine) {
                (DhcpMessageType::Nak, Ipv4Addr::UNSPECIFIED)
            } else {
                (DhcpMessageType::Ack, mine)
            }
        }
        _ => return None,
    };
    let nak = kind == DhcpMessageType::Nak;
    let reply = DhcpRepr {
        message_type: kind,
        transaction_id: req.transaction_id,
        secs: 0,
        client_hardware_address: EthernetAddress(mac),
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: yours,
        server_ip: pool.router,
        router: (!nak).then_some(pool.router),
        subnet_mask: (!nak).then(|| mask(pool.prefix)),
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: true,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(pool.router),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: (!nak).then_some(pool.lease_secs),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let mut out = vec![0u8; reply.buffer_len()];
    let mut p = DhcpPacket::new_unchecked(&mut out[..]);
    reply.emit(&mut p).ok()?;
    Some(out)
}

/// Serves DHCP on `sock` (port 67 of the gateway) until the task stops;
/// answers are broadcast, as clients without an address need.
pub(crate) async fn serve(
    sock: crate::UdpSocket,
    pool: DhcpPool,
    leases: Arc<std::sync::Mutex<Leases>>,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, _from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let reply = {
            let mut l = leases.lock().unwrap_or_else(|p| p.into_inner());
            answer(&mut l, &pool, &buf[..n])
        };
        if let Some(r) = reply {
            let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
            if let Err(e) = sock.send_from_to(&r, Some(pool.router), to).await {
                tracing::warn!("dhcp: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn pool() -> DhcpPool {
        DhcpPool {
            first: Ipv4Addr::new(192, 0, 2, 2),
            last: Ipv4Addr::new(192, 0, 2, 3),
            prefix: 24,
            router: Ipv4Addr::new(192, 0, 2, 1),
            lease_secs: 86400,
        }
    }

    fn client(kind: DhcpMessageType, mac: u8, requested: Option<Ipv4Addr>) -> Vec<u8> {
        let r = DhcpRepr {
            message_type: kind,
            transaction_id: 0x1234,
            secs: 0,
            client_hardware_address: EthernetAddress([2, 0, 0, 0, 0, mac]),
            client_ip: Ipv4Address::UNSPECIFIED,
            your_ip: Ipv4Address::UNSPECIFIED,
            server_ip: Ipv4Address::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Address::UNSPECIFIED,
            broadcast: false,
            requested_ip: requested,
            client_identifier: None,
            server_identifier: None,
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut DhcpPacket::new_unchecked(&mut out[..]))
            .unwrap();
        out
    }

    fn parse(b: &[u8]) -> (DhcpMessageType, Ipv4Addr, Option<Ipv4Addr>) {
        let p = DhcpPacket::new_checked(b).unwrap();
        let r = DhcpRepr::parse(&p).unwrap();
        (r.message_type, r.your_ip, r.router)
    }

    #[test]
    fn discover_request_ack_and_the_same_address_again() {
        let mut l = Leases::default();
        let offer = answer(&mut l, &pool(), &client(DhcpMessageType::Discover, 1, None)).unwrap();
        assert_eq!(
            parse(&offer),
            (
                DhcpMessageType::Offer,
                Ipv4Addr::new(192, 0, 2, 2),
                Some(Ipv4Addr::new(192, 0, 2, 1))
            )
        );
        let ack = answer(
            &mut l,
            &pool(),
            &client(
                DhcpMessageType::Request,
                1,
                Some(Ipv4Addr::new(192, 0, 2, 2)),
            ),
        )
        .unwrap();
        assert_eq!(parse(&ack).0, DhcpMessageType::Ack);
        let again = answer(&mut l, &pool(), &client(DhcpMessageType::Discover, 1, None)).unwrap();
        assert_eq!(parse(&again).1, Ipv4Addr::new(192, 0, 2, 2));
    }

    #[test]
    fn a_foreign_address_is_refused_and_an_exhausted_pool_stays_silent() {
        let mut l = Leases::default();
        let nak = answer(
            &mut l,
            &pool(),
            &client(
                DhcpMessageType::Request,
                1,
                Some(Ipv4Addr::new(192, 0, 2, 77)),
            ),
        )
        .unwrap();
        assert_eq!(parse(&nak).0, DhcpMessageType::Nak);
        answer(&mut l, &pool(), &client(DhcpMessageType::Discover, 2, None)).unwrap();
        assert!(answer(&mut l, &pool(), &client(DhcpMessageType::Discover, 3, None)).is_none());
    }

    proptest! {
        #[test]
        fn any_bytes_get_an_answer_or_nothing_without_panic(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut l = Leases::default();
            let _ = answer(&mut l, &pool(), &b);
        }
    }
}
