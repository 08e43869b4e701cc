//! NTP packet format (RFC 5905 §7.3), the 48-byte header.
//!
//! Parsing accepts any datagram of at least 48 bytes (extension fields and
//! MACs that follow are ignored) and never panics; the fuzz target and the
//! property tests hold it to that.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP era 0 epoch (1900) to the Unix epoch (1970).
pub const UNIX_OFFSET: u64 = 2_208_988_800;

/// Length of the NTP header.
pub const HEADER_LEN: usize = 48;

/// A 64-bit NTP timestamp: seconds since 1900 (era 0) and a 32-bit fraction.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// The timestamp of a system time.
    pub fn from_system(t: SystemTime) -> NtpTimestamp {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let secs = d.as_secs() + UNIX_OFFSET;
        let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
        NtpTimestamp((secs << 32) | frac)
    }

    /// Seconds since the Unix epoch as a float (for offset arithmetic).
    pub fn to_unix_f64(self) -> f64 {
        let secs = (self.0 >> 32) as f64 - UNIX_OFFSET as f64;
        secs + (self.0 & 0xffff_ffff) as f64 / 4_294_967_296.0
    }

    /// The timestamp of Unix seconds as a float.
    pub fn from_unix_f64(t: f64) -> NtpTimestamp {
        let ntp = t + UNIX_OFFSET as f64;
        if ntp <= 0.0 {
            return NtpTimestamp(0);
        }
        let secs = ntp.floor();
        let frac = ((ntp - secs) * 4_294_967_296.0) as u64;
        NtpTimestamp(((secs as u64) << 32) | frac.min(0xffff_ffff))
    }

    /// Difference `self - other` in seconds, correct across wrap-around as
    /// long as the two are within 68 years of each other.
    pub fn diff(self, other: NtpTimestamp) -> f64 {
        (self.0.wrapping_sub(other.0) as i64) as f64 / 4_294_967_296.0
    }
}

impl fmt::Debug for NtpTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.to_unix_f64())
    }
}

/// Leap indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leap {
    /// No warning.
    None = 0,
    /// Last minute of the day has 61 seconds.
    AddSecond = 1,
    /// Last minute of the day has 59 seconds.
    DelSecond = 2,
    /// Clock not synchronised.
    Unsynchronized = 3,
}

impl Leap {
    fn from_bits(b: u8) -> Leap {
        match b & 3 {
            0 => Leap::None,
            1 => Leap::AddSecond,
            2 => Leap::DelSecond,
            _ => Leap::Unsynchronized,
        }
    }
}

/// Association mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reserved (0).
    Reserved,
    /// Symmetric active (1).
    SymmetricActive,
    /// Symmetric passive (2).
    SymmetricPassive,
    /// Client (3).
    Client,
    /// Server (4).
    Server,
    /// Broadcast (5).
    Broadcast,
    /// NTP control message (6).
    Control,
    /// Private (7).
    Private,
}

impl Mode {
    fn from_bits(b: u8) -> Mode {
        match b & 7 {
            0 => Mode::Reserved,
            1 => Mode::SymmetricActive,
            2 => Mode::SymmetricPassive,
            3 => Mode::Client,
            4 => Mode::Server,
            5 => Mode::Broadcast,
            6 => Mode::Control,
            _ => Mode::Private,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Mode::Reserved => 0,
            Mode::SymmetricActive => 1,
            Mode::SymmetricPassive => 2,
            Mode::Client => 3,
            Mode::Server => 4,
            Mode::Broadcast => 5,
            Mode::Control => 6,
            Mode::Private => 7,
        }
    }
}

/// The NTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Leap indicator.
    pub leap: Leap,
    /// Version (3 or 4 in practice).
    pub version: u8,
    /// Association mode (client, server, broadcast...).
    pub mode: Mode,
    /// Stratum (0: kiss-o'-death, 1: primary, 16: unsynchronised).
    pub stratum: u8,
    /// Poll interval, log2 seconds.
    pub poll: i8,
    /// Precision, log2 seconds.
    pub precision: i8,
    /// Root delay, NTP short format (16.16 seconds).
    pub root_delay: u32,
    /// Root dispersion, NTP short format.
    pub root_dispersion: u32,
    /// Reference id (an IPv4 address, a kiss code, or a clock name).
    pub reference_id: [u8; 4],
    /// When the clock was last set.
    pub reference_ts: NtpTimestamp,
    /// Origin timestamp (the client's transmit time, echoed).
    pub origin_ts: NtpTimestamp,
    /// Receive timestamp.
    pub receive_ts: NtpTimestamp,
    /// Transmit timestamp.
    pub transmit_ts: NtpTimestamp,
}

/// Why a datagram is not an NTP packet we handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the 48-byte header.
    #[error("packet of {0} bytes is shorter than the 48-byte NTP header")]
    TooShort(usize),
    /// Version outside 1–4.
    #[error("unsupported NTP version {0}")]
    Version(u8),
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl Packet {
    /// Parses the header of a datagram.
    pub fn parse(buf: &[u8]) -> Result<Packet, PacketError> {
        if buf.len() < HEADER_LEN {
            return Err(PacketError::TooShort(buf.len()));
        }
        let version = (buf[0] >> 3) & 7;
        if !(1..=4).contains(&version) {
            return Err(PacketError::Version(version));
        }
        Ok(Packet {
            leap: Leap::from_bits(buf[0] >> 6),
            version,
            mode: Mode::from_bits(buf[0]),
            stratum: buf[1],
            poll: buf[2] as i8,
            precision: buf[3] as i8,
            root_delay: be32(&buf[4..8]),
            root_dispersion: be32(&buf[8..12]),
            reference_id: [buf[12], buf[13], buf[14], buf[15]],
            reference_ts: NtpTimestamp(be64(&buf[16..24])),
            origin_ts: NtpTimestamp(be64(&buf[24..32])),
            receive_ts: NtpTimestamp(be64(&buf[32..40])),
            transmit_ts: NtpTimestamp(be64(&buf[40..48])),
        })
    }

    /// Serializes the header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = ((self.leap as u8) << 6) | ((self.version & 7) << 3) | self.mode.bits();
        b[1] = self.stratum;
        b[2] = self.poll as u8;
        b[3] = self.precision as u8;
        b[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id);
        b[16..24].copy_from_slice(&self.reference_ts.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.origin_ts.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.receive_ts.0.to_be_bytes());
        b[40..48].copy_from_slice(&self.transmit_ts.0.to_be_bytes());
        b
    }

    /// A client request (mode 3, version 4) with `transmit` as its transmit
    /// timestamp.
    pub fn client_request(transmit: NtpTimestamp, poll: i8) -> Packet {
        Packet {
            leap: Leap::Unsynchronized,
            version: 4,
            mode: Mode::Client,
            stratum: 0,
            poll,
            precision: -20,
            root_delay: 0,
            root_dispersion: 0,
            reference_id: [0; 4],
            reference_ts: NtpTimestamp(0),
            origin_ts: NtpTimestamp(0),
            receive_ts: NtpTimestamp(0),
            transmit_ts: transmit,
        }
    }

    /// The kiss code of a kiss-o'-death packet (stratum 0), if it is one.
    pub fn kiss_code(&self) -> Option<[u8; 4]> {
        (self.stratum == 0 && self.mode == Mode::Server).then_some(self.reference_id)
    }
}

/// Seconds to NTP short format (16.16), saturating.
pub fn to_short(secs: f64) -> u32 {
    if secs <= 0.0 {
        0
    } else {
        (secs * 65536.0).min(u32::MAX as f64) as u32
    }
}

/// NTP short format (16.16) to seconds.
pub fn from_short(v: u32) -> f64 {
    v as f64 / 65536.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_fields() {
        let p = Packet::client_request(NtpTimestamp::from_unix_f64(1_700_000_000.25), 6);
        let b = p.to_bytes();
        assert_eq!(b[0], 0b11_100_011);
        let q = Packet::parse(&b).unwrap();
        assert_eq!(p, q);
        assert!((q.transmit_ts.to_unix_f64() - 1_700_000_000.25).abs() < 1e-6);
    }

    #[test]
    fn short_and_bad_versions_are_refused() {
        assert_eq!(Packet::parse(&[0u8; 47]), Err(PacketError::TooShort(47)));
        let mut b = [0u8; 48];
        b[0] = 0b00_000_011;
        assert_eq!(Packet::parse(&b), Err(PacketError::Version(0)));
    }

    #[test]
    fn timestamp_difference_crosses_wraparound() {
        let a = NtpTimestamp(u64::MAX - (1 << 32) + 1);
        let b = NtpTimestamp(1 << 32);
        assert!((b.diff(a) - 2.0).abs() < 1e-9);
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Packet::parse(&data);
        }

        #[test]
        fn parse_serialize_round_trips(data in proptest::collection::vec(any::<u8>(), 48..49)) {
            if let Ok(p) = Packet::parse(&data) {
                prop_assert_eq!(&p.to_bytes()[..], &data[..]);
            }
        }
    }
}
