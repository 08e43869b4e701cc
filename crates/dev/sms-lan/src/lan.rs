//! The segment at run time: the switch, the simulated hosts (one smoltcp
//! interface each) and the external ports, driven by one task.

use crate::switch::{Counters, Faults, Mac, Port, Switch};
use crate::LanError;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Ethernet payload size of the segment (a standard 1500-byte MTU).
pub const MTU: usize = 1500;

/// Largest frame the segment carries: MTU plus the Ethernet header.
const MAX_FRAME: usize = MTU + 14;

/// Frames waiting in a host's receive queue beyond which new ones are
/// dropped, as a NIC with a full ring would.
const HOST_RX_LIMIT: usize = 4096;

/// Identifies a simulated host of a [`Lan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostId(pub(crate) usize);

impl HostId {
    /// The host's index, in the order hosts were added.
    pub fn index(&self) -> usize {
        self.0
    }

    /// The host added `index`-th (hosts are numbered from 0 in the order
    /// they were added).
    pub fn from_index(index: usize) -> HostId {
        HostId(index)
    }
}

/// How a simulated host is addressed.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Its Ethernet address.
    pub mac: Mac,
    /// Its IPv4 address.
    pub address: Ipv4Addr,
    /// Prefix length of its subnet.
    pub prefix: u8,
    /// Its default gateway, if it talks beyond the subnet.
    pub gateway: Option<Ipv4Addr>,
}

/// Sizes of the TCP buffers of the hosts' sockets.
#[derive(Clone, Copy, Debug)]
pub struct Buffers {
    /// Receive buffer (also the largest window the host advertises).
    pub rx: usize,
    /// Send buffer.
    pub tx: usize,
}

impl Default for Buffers {
    fn default() -> Buffers {
        Buffers {
            rx: 64 * 1024,
            tx: 64 * 1024,
        }
    }
}

/// The frames between one host's smoltcp interface and the switch.
#[derive(Default)]
pub(crate) struct Queue {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

pub(crate) struct RxFrame(Vec<u8>);
pub(crate) struct TxFrame<'a>(&'a mut Vec<Vec<u8>>);

impl RxToken for RxFrame {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for TxFrame<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0.push(frame);
        r
    }
}

impl Device for Queue {
    type RxToken<'a> = RxFrame;
    type TxToken<'a> = TxFrame<'a>;

    fn receive(
        &mut self,
        _now: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let f = self.rx.pop_front()?;
        Some((RxFrame(f), TxFrame(&mut self.tx)))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxFrame(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = MAX_FRAME;
        c
    }
}

/// How long a dropped socket may linger to finish what it queued.
const ORPHAN_LIFETIME: Duration = Duration::from_secs(120);

/// A socket its owner dropped.
struct Orphan {
    handle: SocketHandle,
    udp: bool,
    until: Instant,
}

/// One simulated host.
pub(crate) struct Host {
    pub(crate) config: HostConfig,
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) dev: Queue,
    poll_at: Option<Instant>,
    dirty: bool,
    next_port: u16,
    /// On a gateway, its own address: it answers for any address (AnyIP)
    /// but must not claim other hosts' addresses in ARP.
    pub(crate) gateway_for: Option<Ipv4Addr>,
    /// Sockets whose owner dropped them; removed once closed (TCP) or
    /// once their queued datagrams are out (UDP), or at the deadline.
    orphans: Vec<Orphan>,
}

impl Host {
    /// A local port for an outgoing connection (49152..65535, wrapping).
    pub(crate) fn ephemeral_port(&mut self) -> u16 {
        let p = self.next_port;
        self.next_port = if p == u16::MAX { 49152 } else { p + 1 };
        p
    }

    pub(crate) fn orphan(&mut self, handle: SocketHandle, udp: bool) {
        self.orphans.push(Orphan {
            handle,
            udp,
            until: Instant::now() + ORPHAN_LIFETIME,
        });
    }

    fn reap(&mut self, now: Instant) {
        let sockets = &mut self.sockets;
        self.orphans.retain(|o| {
            let done = if o.udp {
                sockets
                    .get::<smoltcp::socket::udp::Socket>(o.handle)
                    .send_queue()
                    == 0
            } else {
                matches!(
                    sockets.get::<tcp::Socket>(o.handle).state(),
                    tcp::State::Closed | tcp::State::TimeWait
                )
            };
            let gone = done || now >= o.until;
            if gone {
                sockets.remove(o.handle);
            }
            !gone
        });
    }
}

/// Frames waiting for an external port (a switch's egress buffer); more
/// are dropped, as a switch does.
const EGRESS_QUEUE: usize = 1024;

/// A peer outside the process: frames go to a writer task of its own, so
/// a slow peer (QEMU under TCG; unix datagram queues hold 10 datagrams by
/// default) makes frames wait instead of vanishing.
enum External {
    /// Frames for the writer task.
    Queue(tokio::sync::mpsc::Sender<Vec<u8>>),
    /// A tap device of the kernel (its own queue is long).
    Tap {
        fd: Arc<tokio::io::unix::AsyncFd<std::fs::File>>,
    },
}

impl External {
    fn send(&self, frame: Vec<u8>) -> bool {
        match self {
            External::Queue(tx) => tx.try_send(frame).is_ok(),
            External::Tap { fd } => {
                use std::io::Write;
                fd.get_ref().write(&frame).is_ok()
            }
        }
    }

    /// A QEMU peer at `peer`: a socket of our own connected to it, so that
    /// sending waits while its queue is full.
    fn dgram(peer: &Path, fallback: Arc<tokio::net::UnixDatagram>) -> External {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(EGRESS_QUEUE);
        let peer = peer.to_path_buf();
        tokio::spawn(async move {
            let own = tokio::net::UnixDatagram::unbound().and_then(|s| {
                s.connect(&peer)?;
                Ok(s)
            });
            while let Some(f) = rx.recv().await {
                let sent = match &own {
                    Ok(s) => s.send(&f).await,
                    Err(_) => fallback.send_to(&f, &peer).await,
                };
                if let Err(e) = sent {
                    tracing::debug!("segment: to {}: {e}", peer.display());
                }
            }
        });
        External::Queue(tx)
    }
}

pub(crate) struct Inner {
    pub(crate) hosts: Vec<Host>,
    switch: Switch,
    externals: Vec<External>,
    dgram_peers: HashMap<PathBuf, usize>,
    ingress: Vec<(Port, Vec<u8>)>,
    pub(crate) buffers: Buffers,
    epoch: Instant,
    send_failures: u64,
}

impl Inner {
    pub(crate) fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    pub(crate) fn touch(&mut self, host: usize) {
        if let Some(h) = self.hosts.get_mut(host) {
            h.dirty = true;
        }
    }

    pub(crate) fn host(&mut self, id: HostId) -> Result<&mut Host, LanError> {
        self.hosts.get_mut(id.0).ok_or(LanError::NoSuchHost(id.0))
    }

    pub(crate) fn new_tcp_socket(&self) -> tcp::Socket<'static> {
        tcp_socket(self.buffers)
    }

    fn deliver(&mut self, to: Port, frame: Vec<u8>) {
        match to {
            Port::Host(i) => {
                if let Some(h) = self.hosts.get_mut(i) {
                    if h.dev.rx.len() < HOST_RX_LIMIT {
                        h.dev.rx.push_back(frame);
                        h.dirty = true;
                    }
                }
            }
            Port::External(k) => {
                if let Some(e) = self.externals.get(k) {
                    if !e.send(frame) {
                        self.send_failures += 1;
                    }
                }
            }
        }
    }

    /// Runs the segment until nothing moves; returns when it must run
    /// again at the latest.
    fn run(&mut self, now_std: Instant) -> Option<Instant> {
        let ingress = std::mem::take(&mut self.ingress);
        for (from, frame) in ingress {
            for (to, f) in self.switch.forward(from, frame, now_std) {
                self.deliver(to, f);
            }
        }
        for (to, f) in self.switch.due(now_std) {
            self.deliver(to, f);
        }
        let now = self.now();
        // Hosts hand frames to each other in the same process; go round
        // until no host has anything new (bounded: each round either
        // empties queues or stops).
        for _ in 0..64 {
            let mut sent = Vec::new();
            for (i, h) in self.hosts.iter_mut().enumerate() {
                let due = h.poll_at.is_some_and(|t| t <= now_std);
                if !(h.dirty || due) {
                    continue;
                }
                h.dirty = false;
                h.iface.poll(now, &mut h.dev, &mut h.sockets);
                h.reap(now_std);
                h.poll_at = h
                    .iface
                    .poll_delay(now, &h.sockets)
                    .map(|d| now_std + Duration::from_micros(d.total_micros()));
                for f in h.dev.tx.drain(..) {
                    if h.gateway_for
                        .is_some_and(|own| claims_other_address(&f, own))
                    {
                        continue;
                    }
                    sent.push((Port::Host(i), f));
                }
            }
            if sent.is_empty() {
                break;
            }
            for (from, frame) in sent {
                for (to, f) in self.switch.forward(from, frame, now_std) {
                    self.deliver(to, f);
                }
            }
        }
        if self.hosts.iter().any(|h| h.dirty) {
            return Some(now_std);
        }
        let hosts_next = self.hosts.iter().filter_map(|h| h.poll_at).min();
        match (hosts_next, self.switch.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A TCP socket of a simulated host: `buffers` sized, no Nagle, a minute
/// without acknowledgement ends it.
pub(crate) fn tcp_socket(buffers: Buffers) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; buffers.rx]),
        tcp::SocketBuffer::new(vec![0u8; buffers.tx]),
    );
    s.set_nagle_enabled(false);
    s.set_timeout(Some(smoltcp::time::Duration::from_secs(60)));
    s
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub(crate) wake: Notify,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A virtual Ethernet segment with its simulated hosts. Dropping it stops
/// the segment; sockets of its hosts then see no more traffic.
pub struct Lan {
    pub(crate) shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Lan {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            t.abort();
        }
    }
}

impl Lan {
    /// Starts an empty segment on the current tokio runtime. `seed` makes
    /// frame loss reproducible.
    pub fn start(seed: u64, buffers: Buffers) -> Lan {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                hosts: Vec::new(),
                switch: Switch::new(seed),
                externals: Vec::new(),
                dgram_peers: HashMap::new(),
                ingress: Vec::new(),
                buffers,
                epoch: Instant::now(),
                send_failures: 0,
            }),
            wake: Notify::new(),
        });
        let driver = tokio::spawn(drive(shared.clone()));
        Lan {
            shared,
            tasks: Mutex::new(vec![driver]),
        }
    }

    /// Adds a simulated host with its own MAC and IPv4 address.
    pub fn add_host(&self, config: HostConfig) -> Result<HostId, LanError> {
        let mut inner = self.shared.lock();
        let now = inner.now();
        let mut dev = Queue::default();
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(config.mac.0)));
        cfg.random_seed = u64::from(u32::from(config.address)) << 16 ^ inner.hosts.len() as u64;
        let mut iface = Interface::new(cfg, &mut dev, now);
        let addr = config.address;
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::Ipv4(Ipv4Cidr::new(addr, config.prefix)));
        });
        if let Some(gw) = config.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .map_err(|_| LanError::Config("no room for the default route".into()))?;
        }
        let id = inner.hosts.len();
        inner.switch.add_port(Port::Host(id), Some(config.mac));
        inner.hosts.push(Host {
            config,
            iface,
            sockets: SocketSet::new(Vec::new()),
            dev,
            poll_at: None,
            dirty: true,
            gateway_for: None,
            next_port: 49152 + (id as u16 % 1000),
            orphans: Vec::new(),
        });
        drop(inner);
        self.shared.wake.notify_one();
        Ok(HostId(id))
    }

    /// How host `id` is addressed.
    pub fn host_config(&self, id: HostId) -> Result<HostConfig, LanError> {
        Ok(self.shared.lock().host(id)?.config.clone())
    }

    /// Plugs a host's cable in or out.
    pub fn set_host_up(&self, id: HostId, up: bool) {
        self.shared.lock().switch.set_up(Port::Host(id.0), up);
        self.shared.wake.notify_one();
    }

    /// Replaces the fault knobs (loss, delay, partition).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().switch.set_faults(faults);
        self.shared.wake.notify_one();
    }

    /// A partition between two sets of MAC addresses (hosts in neither set
    /// reach both); loss and delay stay as they are.
    pub fn partition(&self, a: &[Mac], b: &[Mac]) {
        let mut inner = self.shared.lock();
        let mut f = inner.switch.faults().clone();
        f.partition = Some((
            a.iter().copied().collect::<HashSet<_>>(),
            b.iter().copied().collect::<HashSet<_>>(),
        ));
        inner.switch.set_faults(f);
    }

    /// Ends the partition.
    pub fn heal(&self) {
        let mut inner = self.shared.lock();
        let mut f = inner.switch.faults().clone();
        f.partition = None;
        inner.switch.set_faults(f);
    }

    /// What the switch did so far.
    pub fn counters(&self) -> Counters {
        self.shared.lock().switch.counters()
    }

    /// Frames an external port could not take (its socket buffer was full
    /// or the peer was gone); a real switch drops those too.
    pub fn send_failures(&self) -> u64 {
        self.shared.lock().send_failures
    }

    /// Binds a unix datagram socket at `path` that QEMU appliances join
    /// with `-netdev dgram,local.type=unix,local.path=VM,remote.type=unix,
    /// remote.path=PATH`. Each sending address becomes a port of its own.
    pub fn attach_dgram(&self, path: &Path) -> Result<(), LanError> {
        let _ = std::fs::remove_file(path);
        let sock = tokio::net::UnixDatagram::bind(path)
            .map_err(|e| LanError::Io(format!("binding {}", path.display()), e))?;
        let sock = Arc::new(sock);
        let shared = self.shared.clone();
        self.spawn(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, from) = match sock.recv_from(&mut buf).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!("segment socket: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(peer) = from.as_pathname().map(Path::to_path_buf) else {
                    tracing::warn!(
                        "a frame from an unnamed socket was ignored (bind the peer's local.path)"
                    );
                    continue;
                };
                {
                    let mut inner = shared.lock();
                    let port = match inner.dgram_peers.get(&peer) {
                        Some(k) => *k,
                        None => {
                            let k = inner.externals.len();
                            tracing::info!("segment: {} joined as port {k}", peer.display());
                            inner.externals.push(External::dgram(&peer, sock.clone()));
                            inner.dgram_peers.insert(peer, k);
                            inner.switch.add_port(Port::External(k), None);
                            k
                        }
                    };
                    inner
                        .ingress
                        .push((Port::External(port), buf[..n].to_vec()));
                }
                shared.wake.notify_one();
            }
        }));
        Ok(())
    }

    /// Creates tap device `name` in the current network namespace and makes
    /// it a port: the kernel becomes a host on the segment. Needs
    /// CAP_NET_ADMIN; tests move the device into a namespace they made.
    pub fn attach_tap(&self, name: &str) -> Result<(), LanError> {
        let file = crate::tap::open(name)?;
        // SAFETY: the File owns its descriptor and is moved into the
        // AsyncFd, so the descriptor stays open and the same until the
        // AsyncFd is dropped.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(file, tokio::io::Interest::READABLE)
        }
        .map_err(|e| LanError::Io(format!("polling tap {name}"), e.into()))?;
        let fd = Arc::new(fd);
        let k = {
            let mut inner = self.shared.lock();
            let k = inner.externals.len();
            inner.externals.push(External::Tap { fd: fd.clone() });
            inner.switch.add_port(Port::External(k), None);
            k
        };
        let shared = self.shared.clone();
        let name = name.to_string();
        self.spawn(tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok(mut ready) = fd.readable().await else {
                    return;
                };
                use std::io::Read;
                match ready.try_io(|f| f.get_ref().read(&mut buf)) {
                    Ok(Ok(n)) => {
                        shared
                            .lock()
                            .ingress
                            .push((Port::External(k), buf[..n].to_vec()));
                        shared.wake.notify_one();
                    }
                    Ok(Err(e)) => {
                        tracing::warn!("tap {name}: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_would_block) => {}
                }
            }
        }));
        Ok(())
    }
}

/// True for an ARP reply that claims an address other than `own`.
fn claims_other_address(frame: &[u8], own: Ipv4Addr) -> bool {
    use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol};
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != EthernetProtocol::Arp {
        return false;
    }
    let Ok(arp) = ArpPacket::new_checked(eth.payload()) else {
        return false;
    };
    match ArpRepr::parse(&arp) {
        Ok(ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_protocol_addr,
            ..
        }) => source_protocol_addr != own,
        _ => false,
    }
}

impl Lan {
    /// A second handle on the same segment for tasks of the segment's own
    /// (it owns no tasks: dropping it stops nothing).
    pub(crate) fn handle(&self) -> Lan {
        Lan {
            shared: self.shared.clone(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn spawn(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }
}

async fn drive(shared: Arc<Shared>) {
    loop {
        let next = shared.lock().run(Instant::now());
        let sleep = match next {
            Some(t) => tokio::time::sleep_until(t.into()),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = sleep => {}
        }
    }
}
