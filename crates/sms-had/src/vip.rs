//! The virtual address: the one IPv4 address devices, managers and NTP
//! clients use for the pair, held by whichever node takes writes (ADR 22).
//!
//! [`follow_role`] checks every [`TICK`] whether this node takes writes
//! ([`Roles::accepting_writes`]: active and, with a witness, within its
//! lease) and adds the address (netlink) with gratuitous ARP, or removes
//! it. A fenced node removes it within a tick of its lease running out,
//! and the witness grants the peer a lease only after that: the address
//! is never on both nodes. The interface is the one that already has an
//! address in the virtual address's subnet, so nothing else is configured.

use crate::roles::Roles;
use futures_util::stream::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How often the address is matched to the role.
pub const TICK: Duration = Duration::from_millis(100);
/// Gratuitous ARP announcements after taking the address, this far apart:
/// a switch or a neighbour that missed the first still learns the move.
pub const ANNOUNCEMENTS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(500),
    Duration::from_millis(1500),
];

/// An IPv4 address with its prefix length, as `set ha virtual-address`
/// takes it (`192.0.2.100/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualAddress {
    /// The address devices use.
    pub addr: Ipv4Addr,
    /// Its prefix length: the subnet it shares with the interface.
    pub prefix: u8,
}

impl FromStr for VirtualAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s}: give the address with its prefix length, ADDR/LEN"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{a}: not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| format!("{p}: a prefix length is 1 to 32"))?;
        if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
            return Err(format!("{addr}: not a host address"));
        }
        Ok(VirtualAddress { addr, prefix })
    }
}

impl std::fmt::Display for VirtualAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl VirtualAddress {
    /// True if `other` lies in this address's subnet.
    pub fn covers(&self, other: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(self.addr) & mask == u32::from(other) & mask
    }
}

/// Why the address could not be taken or given up.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// The kernel refused a netlink request.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// The netlink socket could not be opened.
    #[error("opening the netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// No interface has an address in the virtual address's subnet.
    #[error("no interface has an IPv4 address in {0}'s subnet: give the management interface an address there")]
    NoInterface(VirtualAddress),
    /// The gratuitous ARP could not be sent.
    #[error("sending gratuitous ARP on {interface}: {source}")]
    Arp {
        /// The interface.
        interface: String,
        /// The error of the raw socket.
        #[source]
        source: std::io::Error,
    },
}

/// The interface the address goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its index.
    pub index: u32,
    /// Its name (for the logs).
    pub name: String,
    /// Its MAC address: the sender of the gratuitous ARP.
    pub mac: [u8; 6],
}

/// Adds and removes the virtual address through netlink.
pub struct VipHolder {
    vip: VirtualAddress,
    handle: rtnetlink::Handle,
}

impl VipHolder {
    /// Opens the netlink connection (its task runs on the current runtime).
    pub fn new(vip: VirtualAddress) -> Result<VipHolder, VipError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(VipError::Socket)?;
        tokio::spawn(connection);
        Ok(VipHolder { vip, handle })
    }

    /// The address this holder moves.
    pub fn address(&self) -> VirtualAddress {
        self.vip
    }

    async fn addresses(&self) -> Result<Vec<(u32, u8, Ipv4Addr)>, VipError> {
        let mut out = Vec::new();
        let mut dump = self.handle.address().get().execute();
        while let Some(msg) = dump.try_next().await? {
            if let Some(a) = ipv4_of(&msg) {
                out.push((msg.header.index, msg.header.prefix_len, a));
            }
        }
        Ok(out)
    }

    /// The interface with an address of its own in the virtual address's
    /// subnet, among `addresses`.
    async fn interface(&self, addresses: &[(u32, u8, Ipv4Addr)]) -> Result<Interface, VipError> {
        let index = addresses
            .iter()
            .find(|(_, _, a)| *a != self.vip.addr && self.vip.covers(*a))
            .map(|(i, _, _)| *i)
            .ok_or(VipError::NoInterface(self.vip))?;
        let mut links = self.handle.link().get().match_index(index).execute();
        let mut iface = Interface {
            index,
            name: format!("#{index}"),
            mac: [0; 6],
        };
        if let Some(link) = links.try_next().await? {
            for attr in link.attributes {
                match attr {
                    LinkAttribute::IfName(n) => iface.name = n,
                    LinkAttribute::Address(m) if m.len() == 6 => {
                        iface.mac.copy_from_slice(&m);
                    }
                    _ => {}
                }
            }
        }
        Ok(iface)
    }

    /// The interfaces the virtual address is on now.
    pub async fn held_on(&self) -> Result<Vec<u32>, VipError> {
        Ok(self
            .addresses()
            .await?
            .into_iter()
            .filter(|(_, _, a)| *a == self.vip.addr)
            .map(|(i, _, _)| i)
            .collect())
    }

    /// Adds the address (if it is not there) and announces it.
    pub async fn take(&self) -> Result<Interface, VipError> {
        let addresses = self.addresses().await?;
        let iface = self.interface(&addresses).await?;
        let held = addresses
            .iter()
            .any(|(i, _, a)| *i == iface.index && *a == self.vip.addr);
        if !held {
            self.handle
                .address()
                .add(iface.index, IpAddr::V4(self.vip.addr), self.vip.prefix)
                .execute()
                .await?;
        }
        let (i, addr) = (iface.clone(), self.vip.addr);
        tokio::spawn(async move {
            let mut waited = Duration::ZERO;
            for at in ANNOUNCEMENTS {
                tokio::time::sleep(at.saturating_sub(waited)).await;
                waited = at;
                if let Err(e) = gratuitous_arp(&i, addr) {
                    tracing::warn!("{e}");
                }
            }
        });
        Ok(iface)
    }

    /// Removes the address from every interface that has it.
    pub async fn release(&self) -> Result<bool, VipError> {
        let mut dump = self.handle.address().get().execute();
        let mut found = Vec::new();
        while let Some(msg) = dump.try_next().await? {
            if ipv4_of(&msg) == Some(self.vip.addr) {
                found.push(msg);
            }
        }
        let removed = !found.is_empty();
        for msg in found {
            self.handle.address().del(msg).execute().await?;
        }
        Ok(removed)
    }
}

fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Addr> {
    // On a point-to-point link Address is the peer's: Local is this end.
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(IpAddr::V4(a)) => return Some(*a),
            AddressAttribute::Address(IpAddr::V4(a)) => address = Some(*a),
            _ => {}
        }
    }
    address
}

/// The frame of a gratuitous ARP request for `addr` from `mac`: sender
/// and target address both `addr`, to the broadcast address.
pub fn gratuitous_arp_frame(mac: [u8; 6], addr: Ipv4Addr) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: EthernetAddress(mac),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: addr,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: addr,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

/// Sends one gratuitous ARP request on `iface` (needs CAP_NET_RAW).
pub fn gratuitous_arp(iface: &Interface, addr: Ipv4Addr) -> Result<(), VipError> {
    let frame = gratuitous_arp_frame(iface.mac, addr);
    send_frame(iface.index, &frame).map_err(|source| VipError::Arp {
        interface: iface.name.clone(),
        source,
    })
}

/// Sends one Ethernet frame to the broadcast address of interface `index`
/// through a packet socket.
fn send_frame(index: u32, frame: &[u8]) -> std::io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = proto;
    to.sll_ifindex = i32::try_from(index).map_err(std::io::Error::other)?;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    use std::os::fd::AsRawFd;
    // SAFETY: the buffer and the address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Keeps the virtual address on this node exactly while it takes writes,
/// until the task is dropped; the caller releases it at shutdown.
pub async fn follow_role(holder: Arc<VipHolder>, roles: Arc<Roles>) {
    let vip = holder.address();
    // Left over from a run that ended without releasing it.
    match holder.release().await {
        Ok(true) => tracing::info!(%vip, "removed the virtual address left from an earlier run"),
        Ok(false) => {}
        Err(e) => tracing::error!(%vip, "checking for the virtual address: {e}"),
    }
    let mut held = false;
    let mut last_error = String::new();
    let mut ticks = 0u64;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        ticks += 1;
        let want = roles.accepting_writes();
        // Once a second while held: put it back if someone removed it.
        let verify = held && ticks.is_multiple_of(10);
        let result = if want && (!held || verify) {
            let present = if verify {
                holder
                    .held_on()
                    .await
                    .map(|v| !v.is_empty())
                    .unwrap_or(true)
            } else {
                false
            };
            if present {
                Ok(())
            } else {
                holder.take().await.map(|iface| {
                    if verify {
                        tracing::warn!(%vip, interface = %iface.name, "the virtual address was removed by someone else: added again");
                    } else {
                        tracing::warn!(%vip, interface = %iface.name, epoch = roles.epoch(), "VIRTUAL ADDRESS taken: {vip} on {}, announced by gratuitous ARP", iface.name);
                    }
                    held = true;
                })
            }
        } else if !want && held {
            holder.release().await.map(|_| {
                tracing::warn!(%vip, "VIRTUAL ADDRESS released: this node no longer takes writes");
                held = false;
            })
        } else {
            Ok(())
        };
        match result {
            Ok(()) => last_error.clear(),
            Err(e) => {
                let msg = e.to_string();
                if msg != last_error {
                    tracing::error!(%vip, "the virtual address: {msg}; retrying");
                    last_error = msg;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let v: VirtualAddress = "192.0.2.100/24".parse().unwrap();
        assert_eq!(v.to_string(), "192.0.2.100/24");
        assert!(v.covers("192.0.2.7".parse().unwrap()));
        assert!(!v.covers("192.0.3.7".parse().unwrap()));
        let all: VirtualAddress = "10.0.0.1/32".parse().unwrap();
        assert!(!all.covers("10.0.0.2".parse().unwrap()));
        for bad in [
            "192.0.2.100",
            "192.0.2.100/0",
            "192.0.2.100/33",
            "2001:db8::1/64",
            "0.0.0.0/8",
            "224.0.0.1/4",
            "x/24",
        ] {
            assert!(bad.parse::<VirtualAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_gratuitous_arp_names_the_address_as_sender_and_target() {
        let mac = [0x02, 0, 0, 0, 0, 0x2a];
        let frame = gratuitous_arp_frame(mac, "192.0.2.100".parse().unwrap());
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = arp
        else {
            panic!("{arp:?}");
        };
        assert_eq!(operation, ArpOperation::Request);
        assert_eq!(source_hardware_addr, EthernetAddress(mac));
        assert_eq!(source_protocol_addr, target_protocol_addr);
        assert_eq!(source_protocol_addr.to_string(), "192.0.2.100");
    }
}
