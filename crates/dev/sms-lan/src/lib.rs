//! A virtual Ethernet segment for the appliance's LAN, without root, tap or
//! bridge: QEMU appliances join it with socket networking (`-netdev
//! dgram` over unix sockets), and simulated hosts (managed devices, the
//! gateway) are smoltcp interfaces in this process, each with its own MAC
//! and IPv4 address. The segment learns like a switch and has fault knobs
//! (loss, delay, partition between sets of MACs, unplugged hosts).
//!
//! Hosts speak TCP through [`TcpStream`] and [`TcpListener`], which
//! implement tokio's I/O traits: rustls, hyper and the loopback fleet's
//! device logic run over them unchanged. A tap port makes the kernel's own
//! stack a host on the segment, for tests against a real TCP/IP peer.

pub mod dhcp;
mod gateway;
mod lan;
pub mod netns;
mod switch;
mod tap;
mod tcp;
mod udp;

pub use gateway::{Forward, Proto};
pub use lan::{Buffers, HostConfig, HostId, Lan, MTU};
pub use switch::{Counters, Faults, Mac, Port, Switch};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

/// What can go wrong setting up the segment.
#[derive(Debug, thiserror::Error)]
pub enum LanError {
    /// An I/O operation failed; the string says which.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// A request the segment cannot carry out.
    #[error("{0}")]
    Config(String),
    /// A host index that was never added.
    #[error("no host {0} on the segment")]
    NoSuchHost(usize),
}
