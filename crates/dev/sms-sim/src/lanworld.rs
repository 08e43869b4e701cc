//! The appliance's LAN for QEMU: a virtual Ethernet segment (sms-lan) that
//! the appliance joins with `-netdev dgram`, with
//! - the gateway at .1: DHCP for the appliance (.2 to .9), and the rest of
//!   the simulated world (update centre, CDN, DNS, upstream NTP, which run
//!   on the host's loopback) "beyond the router" at the address the
//!   development image names for it (10.0.2.2, as under user networking,
//!   so one image configuration serves both networks);
//! - the managed devices from .10 on, smoltcp hosts with their HTTPS API,
//!   SNMP agent, traps to the appliance and NTP from the appliance;
//! - the administrator's workstation at .250, through which host ports
//!   reach the appliance (SSH, HTTP(S), SNMP, NTP, traps, the HA ports):
//!   the same port layout as qemu/boot.sh's user-network forwards.

use crate::fleet::{Fleet, FleetConfig, FleetFaults, LanPlacement};
use anyhow::{Context, Result};
use sms_core::metadata::TrustRoot;
use sms_lan::dhcp::DhcpPool;
use sms_lan::{Buffers, Faults, Forward, HostConfig, Lan, Mac, Proto};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// TCP ports of the appliance that host ports BASE+port reach.
pub const EXPOSED_TCP: [u16; 7] = [22, 80, 443, 1098, 1099, 3306, 4444];
/// UDP ports likewise.
pub const EXPOSED_UDP: [u16; 3] = [123, 161, 8162];
/// TCP ports of the world on the host (TMC, legacy TMC, CDN, DNS).
pub const WORLD_TCP: [u16; 4] = [15443, 15043, 15080, 15053];
/// UDP ports of the world on the host (DNS, three NTP servers).
pub const WORLD_UDP: [u16; 4] = [15053, 15123, 15124, 15125];

/// Devices that fit in the /24 between the first device and the
/// workstation.
pub const MAX_DEVICES: usize = 240;

/// How to build the LAN.
#[derive(Clone, Debug)]
pub struct LanWorldConfig {
    /// The segment's socket (QEMU's `remote.path`).
    pub socket: PathBuf,
    /// Directory for the fleet's certificates and devices.json.
    pub dir: PathBuf,
    /// The simulated world's directory (its stored fleet CA), if any.
    pub world: Option<PathBuf>,
    /// Keys whose signatures devices accept.
    pub trust_root: TrustRoot,
    /// Number of devices.
    pub devices: usize,
    /// Host ports BASE+port reach the appliance's ports; none when `None`.
    pub port_base: Option<u16>,
    /// Address of the world's services as the appliance knows it.
    pub world_host: Ipv4Addr,
    /// TCP ports of the world (same port on the host's 127.0.0.1).
    pub world_tcp: Vec<u16>,
    /// UDP ports of the world.
    pub world_udp: Vec<u16>,
    /// Frame loss on the segment.
    pub loss: f64,
    /// Extra latency on the segment.
    pub delay: Duration,
    /// Time an install takes on a device.
    pub install_delay: Duration,
}

/// The segment's addresses (192.0.2.0/24, which exists only inside it).
pub mod addr {
    use std::net::Ipv4Addr;
    /// The gateway.
    pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    /// The first appliance (the first DHCP lease).
    pub const APPLIANCE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    /// The last address of the appliances' DHCP pool.
    pub const POOL_LAST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
    /// The first device.
    pub const FIRST_DEVICE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    /// The administrator's workstation.
    pub const WORKSTATION: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
    /// Prefix length.
    pub const PREFIX: u8 = 24;
}

/// A running LAN. Dropping it stops everything on it.
pub struct LanWorld {
    /// The segment.
    pub lan: Arc<Lan>,
    /// The devices.
    pub fleet: Fleet,
}

impl LanWorld {
    /// Builds the segment, the gateway, the workstation's forwards and the
    /// fleet.
    pub async fn start(cfg: LanWorldConfig) -> Result<LanWorld> {
        if cfg.devices > MAX_DEVICES {
            anyhow::bail!(
                "{} devices do not fit between {} and the workstation {} (at most {MAX_DEVICES})",
                cfg.devices,
                addr::FIRST_DEVICE,
                addr::WORKSTATION
            );
        }
        let lan = Arc::new(Lan::start(1, Buffers::default()));
        lan.attach_dgram(&cfg.socket)
            .with_context(|| format!("segment socket {}", cfg.socket.display()))?;
        lan.set_faults(Faults {
            loss: cfg.loss,
            delay: cfg.delay,
            partition: None,
        });
        let loopback = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
        let mut forwards = Vec::new();
        for p in &cfg.world_tcp {
            forwards.push(Forward {
                proto: Proto::Tcp,
                public: SocketAddrV4::new(cfg.world_host, *p),
                target: loopback(*p),
            });
        }
        for p in &cfg.world_udp {
            forwards.push(Forward {
                proto: Proto::Udp,
                public: SocketAddrV4::new(cfg.world_host, *p),
                target: loopback(*p),
            });
        }
        lan.add_gateway(
            HostConfig {
                mac: Mac::local(u32::from(addr::GATEWAY)),
                address: addr::GATEWAY,
                prefix: addr::PREFIX,
                gateway: None,
            },
            forwards,
            Some(DhcpPool {
                first: addr::APPLIANCE,
                last: addr::POOL_LAST,
                prefix: addr::PREFIX,
                router: addr::GATEWAY,
                lease_secs: 86400,
            }),
        )?;
        if let Some(base) = cfg.port_base {
            let ws = lan.add_host(HostConfig {
                mac: Mac::local(u32::from(addr::WORKSTATION)),
                address: addr::WORKSTATION,
                prefix: addr::PREFIX,
                gateway: Some(addr::GATEWAY),
            })?;
            for p in EXPOSED_TCP {
                let host = base.checked_add(p).context("port base too high")?;
                let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, host))
                    .await
                    .with_context(|| {
                        format!("binding 127.0.0.1:{host} (forward to the appliance's {p})")
                    })?;
                lan.forward_tcp_in(ws, l, SocketAddrV4::new(addr::APPLIANCE, p));
            }
            for p in EXPOSED_UDP {
                let host = base.checked_add(p).context("port base too high")?;
                let s = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, host))
                    .await
                    .with_context(|| {
                        format!("binding udp 127.0.0.1:{host} (forward to the appliance's {p})")
                    })?;
                lan.forward_udp_in(ws, s, SocketAddrV4::new(addr::APPLIANCE, p))?;
            }
        }
        let fleet = Fleet::start(FleetConfig {
            dir: cfg.dir.clone(),
            devices: cfg.devices,
            first_address: addr::FIRST_DEVICE,
            port: 443,
            install_delay: cfg.install_delay,
            trust_root: cfg.trust_root.clone(),
            faults: FleetFaults::default(),
            seed: 1,
            initial_dv: None,
            snmp_port: Some(161),
            trap_to: Some(SocketAddr::from((addr::APPLIANCE, 8162))),
            ntp_server: Some(SocketAddr::from((addr::APPLIANCE, 123))),
            lan: Some(LanPlacement {
                lan: lan.clone(),
                prefix: addr::PREFIX,
                gateway: Some(addr::GATEWAY),
            }),
            world: cfg.world.clone(),
        })
        .await?;
        Ok(LanWorld { lan, fleet })
    }
}
