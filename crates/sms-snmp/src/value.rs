//! Object identifiers, values and variable bindings.

use crate::ber::{decode_signed, decode_unsigned, tag, BerError, Reader, Writer};
use std::fmt;
use std::str::FromStr;

/// An OBJECT IDENTIFIER. Ordering is SNMP's lexicographic order, which is
/// what GetNext walks.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(Vec<u32>);

/// Most sub-identifiers an OID may have (RFC 2578: 128).
pub const MAX_OID_LEN: usize = 128;

impl Oid {
    /// An OID from its sub-identifiers.
    pub fn new(arcs: impl Into<Vec<u32>>) -> Oid {
        Oid(arcs.into())
    }

    /// The sub-identifiers.
    pub fn arcs(&self) -> &[u32] {
        &self.0
    }

    /// This OID with more sub-identifiers appended.
    pub fn child(&self, more: &[u32]) -> Oid {
        let mut v = Vec::with_capacity(self.0.len() + more.len());
        v.extend_from_slice(&self.0);
        v.extend_from_slice(more);
        Oid(v)
    }

    /// Whether `self` lies in the subtree rooted at `root` (or is it).
    pub fn starts_with(&self, root: &Oid) -> bool {
        self.0.starts_with(&root.0)
    }

    /// Number of sub-identifiers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the OID has no sub-identifiers (only valid as "start of MIB").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes the content octets of an OBJECT IDENTIFIER.
    pub fn decode(c: &[u8]) -> Result<Oid, BerError> {
        if c.is_empty() {
            return Err(BerError::BadOid);
        }
        let mut arcs = Vec::with_capacity(c.len() + 1);
        let mut v: u64 = 0;
        let mut first = true;
        for (i, &b) in c.iter().enumerate() {
            if v == 0 && b == 0x80 {
                return Err(BerError::BadOid); // non-minimal encoding
            }
            v = (v << 7) | (b & 0x7f) as u64;
            if v > u32::MAX as u64 {
                return Err(BerError::BadOid);
            }
            if b & 0x80 == 0 {
                if first {
                    let (a, b) = if v < 40 {
                        (0, v)
                    } else if v < 80 {
                        (1, v - 40)
                    } else {
                        (2, v - 80)
                    };
                    arcs.push(a as u32);
                    arcs.push(b as u32);
                    first = false;
                } else {
                    arcs.push(v as u32);
                }
                v = 0;
                if arcs.len() > MAX_OID_LEN {
                    return Err(BerError::BadOid);
                }
            } else if i == c.len() - 1 {
                return Err(BerError::BadOid);
            }
        }
        Ok(Oid(arcs))
    }

    /// Writes the OID as a BER OBJECT IDENTIFIER.
    pub fn encode(&self, w: &mut Writer) {
        let mut out = [0u8; 5 * (MAX_OID_LEN + 1)];
        let mut n = 0;
        let arcs = &self.0;
        let push = |v: u64, out: &mut [u8], n: &mut usize| {
            let mut tmp = [0u8; 10];
            let mut k = 0;
            let mut v = v;
            loop {
                tmp[k] = (v & 0x7f) as u8;
                v >>= 7;
                k += 1;
                if v == 0 {
                    break;
                }
            }
            for j in (0..k).rev() {
                if *n < out.len() {
                    out[*n] = tmp[j] | if j > 0 { 0x80 } else { 0 };
                    *n += 1;
                }
            }
        };
        match arcs.len() {
            0 => push(0, &mut out, &mut n),
            1 => push(arcs[0] as u64 * 40, &mut out, &mut n),
            _ => {
                push(arcs[0] as u64 * 40 + arcs[1] as u64, &mut out, &mut n);
                for &a in &arcs[2..arcs.len().min(MAX_OID_LEN)] {
                    push(a as u64, &mut out, &mut n);
                }
            }
        }
        w.primitive(tag::OID, &out[..n]);
    }
}

/// Text that is not a dotted object identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidError {
    /// Nothing given.
    #[error("empty object identifier")]
    Empty,
    /// Not numbers separated by dots, or a first arc pair X.690 forbids.
    #[error("invalid object identifier {0:?}")]
    Invalid(String),
    /// More arcs than an SNMP message may carry.
    #[error("object identifier too long: {0:?}")]
    TooLong(String),
}

impl FromStr for Oid {
    type Err = OidError;
    fn from_str(s: &str) -> Result<Oid, OidError> {
        let s = s.trim().trim_start_matches('.');
        if s.is_empty() {
            return Err(OidError::Empty);
        }
        let arcs = s
            .split('.')
            .map(|p| p.parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| OidError::Invalid(s.to_string()))?;
        if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] >= 40) {
            return Err(OidError::Invalid(s.to_string()));
        }
        if arcs.len() > MAX_OID_LEN {
            return Err(OidError::TooLong(s.to_string()));
        }
        Ok(Oid(arcs))
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

/// A variable's value, including the SNMPv2 exception values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// INTEGER (Integer32).
    Integer(i32),
    /// OCTET STRING.
    OctetString(Vec<u8>),
    /// NULL (the value in requests).
    Null,
    /// OBJECT IDENTIFIER.
    Oid(Oid),
    /// IpAddress.
    IpAddress([u8; 4]),
    /// Counter32.
    Counter32(u32),
    /// Gauge32 / Unsigned32.
    Gauge32(u32),
    /// TimeTicks (hundredths of a second).
    TimeTicks(u32),
    /// Opaque.
    Opaque(Vec<u8>),
    /// Counter64.
    Counter64(u64),
    /// noSuchObject.
    NoSuchObject,
    /// noSuchInstance.
    NoSuchInstance,
    /// endOfMibView.
    EndOfMibView,
}

impl Value {
    /// An OCTET STRING from text.
    pub fn text(s: impl AsRef<str>) -> Value {
        Value::OctetString(s.as_ref().as_bytes().to_vec())
    }

    /// The BER tag of the value.
    pub fn tag(&self) -> u8 {
        match self {
            Value::Integer(_) => tag::INTEGER,
            Value::OctetString(_) => tag::OCTET_STRING,
            Value::Null => tag::NULL,
            Value::Oid(_) => tag::OID,
            Value::IpAddress(_) => tag::IP_ADDRESS,
            Value::Counter32(_) => tag::COUNTER32,
            Value::Gauge32(_) => tag::GAUGE32,
            Value::TimeTicks(_) => tag::TIMETICKS,
            Value::Opaque(_) => tag::OPAQUE,
            Value::Counter64(_) => tag::COUNTER64,
            Value::NoSuchObject => tag::NO_SUCH_OBJECT,
            Value::NoSuchInstance => tag::NO_SUCH_INSTANCE,
            Value::EndOfMibView => tag::END_OF_MIB_VIEW,
        }
    }

    /// Whether this is one of the three exception values.
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
        )
    }

    /// Writes the value.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Value::Integer(v) => w.integer(*v as i64),
            Value::OctetString(v) => w.octets(v),
            Value::Null => w.null(),
            Value::Oid(o) => o.encode(w),
            Value::IpAddress(a) => w.primitive(tag::IP_ADDRESS, a),
            Value::Counter32(v) => w.unsigned(tag::COUNTER32, *v as u64),
            Value::Gauge32(v) => w.unsigned(tag::GAUGE32, *v as u64),
            Value::TimeTicks(v) => w.unsigned(tag::TIMETICKS, *v as u64),
            Value::Opaque(v) => w.primitive(tag::OPAQUE, v),
            Value::Counter64(v) => w.unsigned(tag::COUNTER64, *v),
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => {
                w.primitive(self.tag(), &[])
            }
        }
    }

    /// Reads a value.
    pub fn decode(r: &mut Reader<'_>) -> Result<Value, BerError> {
        let (t, c) = r.read_any("value")?;
        let b = c.bytes();
        Ok(match t {
            tag::INTEGER => Value::Integer(
                i32::try_from(decode_signed(b, "INTEGER")?)
                    .map_err(|_| BerError::IntegerRange("INTEGER"))?,
            ),
            tag::OCTET_STRING => Value::OctetString(b.to_vec()),
            tag::NULL if b.is_empty() => Value::Null,
            tag::OID => Value::Oid(Oid::decode(b)?),
            tag::IP_ADDRESS => Value::IpAddress(
                b.try_into()
                    .map_err(|_| BerError::Malformed("IpAddress is not 4 octets"))?,
            ),
            tag::COUNTER32 => Value::Counter32(decode_unsigned(b, 32, "Counter32")? as u32),
            tag::GAUGE32 => Value::Gauge32(decode_unsigned(b, 32, "Gauge32")? as u32),
            tag::TIMETICKS => Value::TimeTicks(decode_unsigned(b, 32, "TimeTicks")? as u32),
            tag::OPAQUE => Value::Opaque(b.to_vec()),
            tag::COUNTER64 => Value::Counter64(decode_unsigned(b, 64, "Counter64")?),
            tag::NO_SUCH_OBJECT if b.is_empty() => Value::NoSuchObject,
            tag::NO_SUCH_INSTANCE if b.is_empty() => Value::NoSuchInstance,
            tag::END_OF_MIB_VIEW if b.is_empty() => Value::EndOfMibView,
            _ => return Err(BerError::Malformed("unknown value type")),
        })
    }

    /// The value as text for logs and event records (non-printable octet
    /// strings as hex).
    pub fn display(&self) -> String {
        match self {
            Value::Integer(v) => v.to_string(),
            Value::OctetString(v) | Value::Opaque(v) => match std::str::from_utf8(v) {
                Ok(s) if !s.chars().any(|c| c.is_control()) => s.to_string(),
                _ => v
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            },
            Value::Null => "NULL".into(),
            Value::Oid(o) => o.to_string(),
            Value::IpAddress(a) => format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]),
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => v.to_string(),
            Value::Counter64(v) => v.to_string(),
            Value::NoSuchObject => "noSuchObject".into(),
            Value::NoSuchInstance => "noSuchInstance".into(),
            Value::EndOfMibView => "endOfMibView".into(),
        }
    }

    /// The SMI type name, for event records.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Integer(_) => "INTEGER",
            Value::OctetString(_) => "OCTET STRING",
            Value::Null => "NULL",
            Value::Oid(_) => "OBJECT IDENTIFIER",
            Value::IpAddress(_) => "IpAddress",
            Value::Counter32(_) => "Counter32",
            Value::Gauge32(_) => "Gauge32",
            Value::TimeTicks(_) => "TimeTicks",
            Value::Opaque(_) => "Opaque",
            Value::Counter64(_) => "Counter64",
            Value::NoSuchObject => "noSuchObject",
            Value::NoSuchInstance => "noSuchInstance",
            Value::EndOfMibView => "endOfMibView",
        }
    }
}

/// A variable binding: a name and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarBind {
    /// The variable's name.
    pub oid: Oid,
    /// Its value (NULL in requests).
    pub value: Value,
}

impl VarBind {
    /// A binding.
    pub fn new(oid: Oid, value: Value) -> VarBind {
        VarBind { oid, value }
    }

    /// Writes the binding.
    pub fn encode(&self, w: &mut Writer) {
        w.sequence(|w| {
            self.oid.encode(w);
            self.value.encode(w);
        });
    }
}

/// Most bindings accepted in one PDU.
pub const MAX_VARBINDS: usize = 2048;

/// Reads a VarBindList.
pub fn decode_varbinds(r: &mut Reader<'_>) -> Result<Vec<VarBind>, BerError> {
    let mut list = r.read(tag::SEQUENCE, "variable-bindings")?;
    let mut out = Vec::new();
    while !list.is_empty() {
        if out.len() >= MAX_VARBINDS {
            return Err(BerError::Malformed("too many variable bindings"));
        }
        let mut vb = list.read(tag::SEQUENCE, "VarBind")?;
        let oid = Oid::decode(vb.read(tag::OID, "name")?.bytes())?;
        let value = Value::decode(&mut vb)?;
        vb.finish("VarBind")?;
        out.push(VarBind { oid, value });
    }
    Ok(out)
}

/// Writes a VarBindList.
pub fn encode_varbinds(w: &mut Writer, list: &[VarBind]) {
    w.sequence(|w| {
        for vb in list {
            vb.encode(w);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn oid_known_encoding() {
        let o: Oid = "1.3.6.1.2.1.1.1.0".parse().unwrap();
        let mut w = Writer::new();
        o.encode(&mut w);
        assert_eq!(w.as_bytes(), &[6, 8, 0x2b, 6, 1, 2, 1, 1, 1, 0]);
        let big: Oid = "1.3.6.1.4.1.4294967295".parse().unwrap();
        let mut w = Writer::new();
        big.encode(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(Oid::decode(&bytes[2..]).unwrap(), big);
    }

    #[test]
    fn bad_oids_are_refused() {
        assert!(Oid::decode(&[]).is_err());
        assert!(Oid::decode(&[0x2b, 0x80, 0x01]).is_err());
        assert!(Oid::decode(&[0x2b, 0x86]).is_err());
        assert!(Oid::decode(&[0x2b, 0x9f, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!("1.3.x".parse::<Oid>().is_err());
        assert!("1".parse::<Oid>().is_err());
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i32>().prop_map(Value::Integer),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::OctetString),
            Just(Value::Null),
            any::<[u8; 4]>().prop_map(Value::IpAddress),
            any::<u32>().prop_map(Value::Counter32),
            any::<u32>().prop_map(Value::Gauge32),
            any::<u32>().prop_map(Value::TimeTicks),
            any::<u64>().prop_map(Value::Counter64),
            Just(Value::NoSuchObject),
            Just(Value::EndOfMibView),
        ]
    }

    proptest! {
        #[test]
        fn oids_round_trip(first in 0u32..3, second in 0u32..40, rest in proptest::collection::vec(any::<u32>(), 0..40)) {
            let mut arcs = vec![first, second];
            arcs.extend(rest);
            let o = Oid::new(arcs);
            let mut w = Writer::new();
            o.encode(&mut w);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            let c = r.read(tag::OID, "oid").unwrap();
            prop_assert_eq!(Oid::decode(c.bytes()).unwrap(), o.clone());
            prop_assert_eq!(o.to_string().parse::<Oid>().unwrap(), o);
        }

        #[test]
        fn values_round_trip(v in value_strategy()) {
            let mut w = Writer::new();
            v.encode(&mut w);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(Value::decode(&mut r).unwrap(), v);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut r = Reader::new(&bytes);
            let _ = decode_varbinds(&mut r);
            let _ = Oid::decode(&bytes);
        }
    }
}
