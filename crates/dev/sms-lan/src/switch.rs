//! The forwarding logic of the segment: a learning Ethernet switch with
//! fault knobs (frame loss, delay, a partition between two sets of MAC
//! addresses). It only decides where a frame goes and when; moving bytes
//! in and out of sockets is the job of [`crate::Lan`].

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// An Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The broadcast address.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// True for broadcast and multicast addresses (the group bit).
    pub fn is_group(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// A locally administered unicast address derived from `n`, so that
    /// simulated hosts never collide with a vendor's address space:
    /// 02:5e:xx:xx:xx:xx with the low 32 bits of `n`.
    pub fn local(n: u32) -> Mac {
        let b = n.to_be_bytes();
        Mac([0x02, 0x5e, b[0], b[1], b[2], b[3]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Mac, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!(
                "{s:?} is not a MAC address (six hex octets with ':')"
            ));
        }
        let mut m = [0u8; 6];
        for (o, p) in m.iter_mut().zip(parts) {
            *o = u8::from_str_radix(p, 16)
                .map_err(|_| format!("{s:?} is not a MAC address ({p:?} is not a hex octet)"))?;
        }
        Ok(Mac(m))
    }
}

/// Where a frame enters or leaves the segment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Port {
    /// A simulated host of this process (index into the host table).
    Host(usize),
    /// A peer outside the process: a QEMU appliance or a tap device.
    External(usize),
}

/// Counters of what the segment did with frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames that entered the segment.
    pub frames_in: u64,
    /// Frame copies handed to a port.
    pub frames_out: u64,
    /// Frames dropped by the loss knob.
    pub lost: u64,
    /// Frame copies dropped because of the partition.
    pub partitioned: u64,
    /// Frames too short to carry an Ethernet header.
    pub malformed: u64,
    /// Frame copies for a port that is down (an unplugged host).
    pub to_down_port: u64,
}

/// The fault knobs, as set by the tests and the operator of the segment.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Probability in [0, 1] that a frame is dropped on entry.
    pub loss: f64,
    /// Extra one-way latency of every frame.
    pub delay: Duration,
    /// Two sets of MAC addresses that cannot reach each other; hosts in
    /// neither set reach both.
    pub partition: Option<(HashSet<Mac>, HashSet<Mac>)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// The learning switch.
pub struct Switch {
    table: HashMap<Mac, Port>,
    macs_on: HashMap<Port, HashSet<Mac>>,
    ports: Vec<Port>,
    down: HashSet<Port>,
    faults: Faults,
    delayed: VecDeque<(Instant, Port, Vec<u8>)>,
    rng: StdRng,
    counters: Counters,
}

impl Switch {
    /// A switch without ports; `seed` makes frame loss reproducible.
    pub fn new(seed: u64) -> Switch {
        Switch {
            table: HashMap::new(),
            macs_on: HashMap::new(),
            ports: Vec::new(),
            down: HashSet::new(),
            faults: Faults::default(),
            delayed: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            counters: Counters::default(),
        }
    }

    /// Adds a port; `mac` is known in advance for simulated hosts, so that
    /// frames to them are never flooded.
    pub fn add_port(&mut self, port: Port, mac: Option<Mac>) {
        if !self.ports.contains(&port) {
            self.ports.push(port);
        }
        if let Some(m) = mac {
            self.learn(m, port);
        }
    }

    /// Plugs a port in or out: frames to an unplugged port are dropped and
    /// frames from it are ignored, as with a pulled cable.
    pub fn set_up(&mut self, port: Port, up: bool) {
        if up {
            self.down.remove(&port);
        } else {
            self.down.insert(port);
        }
    }

    /// Whether `port` is plugged in.
    pub fn is_up(&self, port: Port) -> bool {
        !self.down.contains(&port)
    }

    /// Replaces the fault knobs.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// The fault knobs in force.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// What the switch did so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The port a MAC address was last seen on.
    pub fn port_of(&self, mac: Mac) -> Option<Port> {
        self.table.get(&mac).copied()
    }

    fn learn(&mut self, mac: Mac, port: Port) {
        if mac.is_group() {
            return;
        }
        if let Some(old) = self.table.insert(mac, port) {
            if old != port {
                if let Some(set) = self.macs_on.get_mut(&old) {
                    set.remove(&mac);
                }
            }
        }
        self.macs_on.entry(port).or_default().insert(mac);
    }

    fn side_of_mac(&self, mac: Mac) -> Option<Side> {
        let (a, b) = self.faults.partition.as_ref()?;
        if a.contains(&mac) {
            Some(Side::A)
        } else if b.contains(&mac) {
            Some(Side::B)
        } else {
            None
        }
    }

    fn blocked(&self, src: Mac, dst: Mac, to: Port) -> bool {
        let Some(from_side) = self.side_of_mac(src) else {
            return false;
        };
        let other = |s: Option<Side>| s.is_some_and(|s| s != from_side);
        if !dst.is_group() {
            return other(self.side_of_mac(dst));
        }
        self.macs_on
            .get(&to)
            .is_some_and(|macs| macs.iter().any(|m| other(self.side_of_mac(*m))))
    }

    /// Takes a frame that entered on `from` at `now` and returns the copies
    /// to hand out now, each with its port. With a delay set, copies are
    /// held and come out of [`Switch::due`] later.
    pub fn forward(&mut self, from: Port, frame: Vec<u8>, now: Instant) -> Vec<(Port, Vec<u8>)> {
        if frame.len() < 14 {
            self.counters.malformed += 1;
            return Vec::new();
        }
        if self.down.contains(&from) {
            self.counters.to_down_port += 1;
            return Vec::new();
        }
        self.counters.frames_in += 1;
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[0..6]);
        let mut src = [0u8; 6];
        src.copy_from_slice(&frame[6..12]);
        let (dst, src) = (Mac(dst), Mac(src));
        self.learn(src, from);
        if self.faults.loss > 0.0 && self.rng.gen_bool(self.faults.loss.clamp(0.0, 1.0)) {
            self.counters.lost += 1;
            return Vec::new();
        }
        let targets: Vec<Port> = match (dst.is_group(), self.table.get(&dst)) {
            (false, Some(p)) => {
                if *p == from {
                    return Vec::new();
                }
                vec![*p]
            }
            _ => self.ports.iter().copied().filter(|p| *p != from).collect(),
        };
        let mut out = Vec::with_capacity(targets.len());
        for to in targets {
            if self.blocked(src, dst, to) {
                self.counters.partitioned += 1;
                continue;
            }
            if self.down.contains(&to) {
                self.counters.to_down_port += 1;
                continue;
            }
            self.counters.frames_out += 1;
            out.push((to, frame.clone()));
        }
        if self.faults.delay.is_zero() {
            return out;
        }
        let due = now + self.faults.delay;
        self.delayed
            .extend(out.into_iter().map(|(p, f)| (due, p, f)));
        Vec::new()
    }

    /// Delayed frames whose time has come.
    pub fn due(&mut self, now: Instant) -> Vec<(Port, Vec<u8>)> {
        let mut out = Vec::new();
        while self.delayed.front().is_some_and(|(t, _, _)| *t <= now) {
            if let Some((_, p, f)) = self.delayed.pop_front() {
                out.push((p, f));
            }
        }
        out
    }

    /// When the next delayed frame is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.front().map(|(t, _, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&src.0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    fn three_hosts() -> (Switch, [Mac; 3]) {
        let mut s = Switch::new(1);
        let m = [Mac::local(1), Mac::local(2), Mac::local(3)];
        for (i, mac) in m.iter().enumerate() {
            s.add_port(Port::Host(i), Some(*mac));
        }
        s.add_port(Port::External(0), None);
        (s, m)
    }

    #[test]
    fn unicast_to_a_known_host_goes_only_there_and_broadcast_floods() {
        let (mut s, m) = three_hosts();
        let now = Instant::now();
        let out = s.forward(Port::Host(0), frame(m[2], m[0]), now);
        assert_eq!(
            out.iter().map(|o| o.0).collect::<Vec<_>>(),
            vec![Port::Host(2)]
        );
        let out = s.forward(Port::Host(0), frame(Mac::BROADCAST, m[0]), now);
        let ports: Vec<Port> = out.iter().map(|o| o.0).collect();
        assert_eq!(ports, vec![Port::Host(1), Port::Host(2), Port::External(0)]);
    }

    #[test]
    fn an_external_mac_is_learned_and_no_longer_flooded() {
        let (mut s, m) = three_hosts();
        let now = Instant::now();
        let vm = Mac::local(99);
        assert_eq!(s.forward(Port::Host(0), frame(vm, m[0]), now).len(), 3);
        s.forward(Port::External(0), frame(m[0], vm), now);
        let out = s.forward(Port::Host(1), frame(vm, m[1]), now);
        assert_eq!(
            out.iter().map(|o| o.0).collect::<Vec<_>>(),
            vec![Port::External(0)]
        );
    }

    #[test]
    fn a_partition_cuts_unicast_and_broadcast_between_the_sides_only() {
        let (mut s, m) = three_hosts();
        let now = Instant::now();
        s.set_faults(Faults {
            partition: Some((HashSet::from([m[0]]), HashSet::from([m[1]]))),
            ..Faults::default()
        });
        assert!(s.forward(Port::Host(0), frame(m[1], m[0]), now).is_empty());
        assert_eq!(s.forward(Port::Host(0), frame(m[2], m[0]), now).len(), 1);
        let out = s.forward(Port::Host(0), frame(Mac::BROADCAST, m[0]), now);
        let ports: Vec<Port> = out.iter().map(|o| o.0).collect();
        assert_eq!(ports, vec![Port::Host(2), Port::External(0)]);
        assert_eq!(s.counters().partitioned, 2);
        s.set_faults(Faults::default());
        assert_eq!(s.forward(Port::Host(0), frame(m[1], m[0]), now).len(), 1);
    }

    #[test]
    fn an_unplugged_host_neither_sends_nor_receives() {
        let (mut s, m) = three_hosts();
        let now = Instant::now();
        s.set_up(Port::Host(1), false);
        assert!(s.forward(Port::Host(0), frame(m[1], m[0]), now).is_empty());
        assert!(s.forward(Port::Host(1), frame(m[0], m[1]), now).is_empty());
        assert_eq!(s.counters().to_down_port, 2);
        s.set_up(Port::Host(1), true);
        assert_eq!(s.forward(Port::Host(0), frame(m[1], m[0]), now).len(), 1);
    }

    #[test]
    fn delayed_frames_come_out_in_order_when_due() {
        let (mut s, m) = three_hosts();
        let t0 = Instant::now();
        s.set_faults(Faults {
            delay: Duration::from_millis(20),
            ..Faults::default()
        });
        assert!(s.forward(Port::Host(0), frame(m[1], m[0]), t0).is_empty());
        assert!(s
            .forward(
                Port::Host(0),
                frame(m[2], m[0]),
                t0 + Duration::from_millis(5)
            )
            .is_empty());
        assert!(s.due(t0 + Duration::from_millis(19)).is_empty());
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(20)));
        let out = s.due(t0 + Duration::from_millis(30));
        assert_eq!(
            out.iter().map(|o| o.0).collect::<Vec<_>>(),
            vec![Port::Host(1), Port::Host(2)]
        );
    }

    #[test]
    fn mac_addresses_parse_and_print() {
        let m: Mac = "02:5e:00:00:01:ff".parse().unwrap();
        assert_eq!(m, Mac::local(0x1ff));
        assert_eq!(m.to_string(), "02:5e:00:00:01:ff");
        assert!("02:5e:00:00:01".parse::<Mac>().is_err());
        assert!("02:5e:00:00:01:zz".parse::<Mac>().is_err());
    }

    proptest! {
        /// Whatever frames arrive, the switch never panics, never sends a
        /// frame back where it came from, and loss drops about the share asked.
        #[test]
        fn any_frame_is_forwarded_or_counted(frames in proptest::collection::vec(
            (0usize..4, proptest::collection::vec(any::<u8>(), 0..80)), 1..200)) {
            let (mut s, _) = three_hosts();
            let now = Instant::now();
            for (p, f) in frames {
                let from = if p == 3 { Port::External(0) } else { Port::Host(p) };
                for (to, out) in s.forward(from, f.clone(), now) {
                    prop_assert_ne!(to, from);
                    prop_assert_eq!(out, f.clone());
                }
            }
        }

        #[test]
        fn loss_drops_about_the_share_asked(loss in 0.0f64..0.5) {
            let (mut s, m) = three_hosts();
            s.set_faults(Faults { loss, ..Faults::default() });
            let now = Instant::now();
            for _ in 0..4000 {
                s.forward(Port::Host(0), frame(m[1], m[0]), now);
            }
            let share = s.counters().lost as f64 / 4000.0;
            prop_assert!((share - loss).abs() < 0.05, "lost {share} for {loss}");
        }
    }
}
