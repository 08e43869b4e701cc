//! Basic Encoding Rules, the subset SNMP uses.
//!
//! The reader never trusts a length: every TLV is checked against what is
//! left of its enclosing value, lengths are at most four octets, tags one
//! octet, and nesting is bounded by the message structure (no recursion on
//! input). The writer emits minimal lengths for primitives and a fixed
//! three-octet long form for constructed values so they can be patched once
//! their content is known (BER allows it and every SNMP stack accepts it).

use thiserror::Error;

/// Universal and SNMP application tags.
pub mod tag {
    /// INTEGER.
    pub const INTEGER: u8 = 0x02;
    /// OCTET STRING.
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL.
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER.
    pub const OID: u8 = 0x06;
    /// SEQUENCE.
    pub const SEQUENCE: u8 = 0x30;
    /// IpAddress (APPLICATION 0).
    pub const IP_ADDRESS: u8 = 0x40;
    /// Counter32 (APPLICATION 1).
    pub const COUNTER32: u8 = 0x41;
    /// Gauge32 / Unsigned32 (APPLICATION 2).
    pub const GAUGE32: u8 = 0x42;
    /// TimeTicks (APPLICATION 3).
    pub const TIMETICKS: u8 = 0x43;
    /// Opaque (APPLICATION 4).
    pub const OPAQUE: u8 = 0x44;
    /// Counter64 (APPLICATION 6).
    pub const COUNTER64: u8 = 0x46;
    /// noSuchObject exception (context 0, primitive).
    pub const NO_SUCH_OBJECT: u8 = 0x80;
    /// noSuchInstance exception (context 1, primitive).
    pub const NO_SUCH_INSTANCE: u8 = 0x81;
    /// endOfMibView exception (context 2, primitive).
    pub const END_OF_MIB_VIEW: u8 = 0x82;
}

/// Why a BER value could not be read.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum BerError {
    /// The input ended inside a value.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// A length form SNMP never uses (indefinite, or more than four octets).
    #[error("unsupported length encoding")]
    BadLength,
    /// A different tag was found than the structure requires.
    #[error("expected tag 0x{expected:02x}, found 0x{found:02x} ({what})")]
    UnexpectedTag {
        /// The tag the structure requires.
        expected: u8,
        /// The tag in the input.
        found: u8,
        /// Which field was being read.
        what: &'static str,
    },
    /// An integer that does not fit its type.
    #[error("integer out of range: {0}")]
    IntegerRange(&'static str),
    /// An OBJECT IDENTIFIER that is not well formed.
    #[error("malformed object identifier")]
    BadOid,
    /// Bytes left over after a complete value.
    #[error("trailing bytes after {0}")]
    Trailing(&'static str),
    /// Any other structural violation.
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

/// A cursor over BER input.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    data: &'a [u8],
    /// Offset of `data[0]` in the outermost buffer (for patch positions).
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole buffer.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, base: 0 }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The offset of the next byte in the outermost buffer.
    pub fn offset(&self) -> usize {
        self.base
    }

    /// The next tag without consuming it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// Reads one TLV: its tag and a reader over its content.
    pub fn read_any(&mut self, what: &'static str) -> Result<(u8, Reader<'a>), BerError> {
        let (&tag, rest) = self.data.split_first().ok_or(BerError::Truncated(what))?;
        if tag & 0x1f == 0x1f {
            return Err(BerError::Malformed("multi-octet tag"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(BerError::Truncated(what))?;
        let mut header = 2;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(BerError::BadLength);
            }
            if rest.len() < n {
                return Err(BerError::Truncated(what));
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | b as usize;
            }
            rest = &rest[n..];
            header += n;
            len
        };
        if rest.len() < len {
            return Err(BerError::Truncated(what));
        }
        let content = Reader {
            data: &rest[..len],
            base: self.base + header,
        };
        self.data = &rest[len..];
        self.base += header + len;
        Ok((tag, content))
    }

    /// Reads one TLV that must carry `expected`.
    pub fn read(&mut self, expected: u8, what: &'static str) -> Result<Reader<'a>, BerError> {
        let (found, content) = self.read_any(what)?;
        if found != expected {
            return Err(BerError::UnexpectedTag {
                expected,
                found,
                what,
            });
        }
        Ok(content)
    }

    /// Reads one TLV that must carry `expected` and returns it whole
    /// (tag and length included).
    pub fn read_whole(&mut self, expected: u8, what: &'static str) -> Result<&'a [u8], BerError> {
        let before = self.data;
        self.read(expected, what)?;
        Ok(&before[..before.len() - self.data.len()])
    }

    /// The remaining bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Reads an INTEGER that must fit in `i32`.
    pub fn read_i32(&mut self, what: &'static str) -> Result<i32, BerError> {
        let c = self.read(tag::INTEGER, what)?;
        let v = decode_signed(c.data, what)?;
        i32::try_from(v).map_err(|_| BerError::IntegerRange(what))
    }

    /// Reads an OCTET STRING.
    pub fn read_octets(&mut self, what: &'static str) -> Result<&'a [u8], BerError> {
        Ok(self.read(tag::OCTET_STRING, what)?.data)
    }

    /// Fails when anything is left.
    pub fn finish(&self, what: &'static str) -> Result<(), BerError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(BerError::Trailing(what))
        }
    }
}

/// Decodes a two's-complement integer of at most 8 content octets.
pub fn decode_signed(c: &[u8], what: &'static str) -> Result<i64, BerError> {
    if c.is_empty() {
        return Err(BerError::Malformed("empty integer"));
    }
    if c.len() > 8 {
        return Err(BerError::IntegerRange(what));
    }
    let mut v: i64 = if c[0] & 0x80 != 0 { -1 } else { 0 };
    for &b in c {
        v = (v << 8) | b as i64;
    }
    Ok(v)
}

/// Decodes an unsigned application integer (Counter32, Gauge32, ...) that
/// must fit in `bits` bits; a leading zero octet is allowed.
pub fn decode_unsigned(c: &[u8], bits: u32, what: &'static str) -> Result<u64, BerError> {
    if c.is_empty() {
        return Err(BerError::Malformed("empty integer"));
    }
    if c[0] & 0x80 != 0 {
        return Err(BerError::IntegerRange(what));
    }
    let c = if c.len() > 1 && c[0] == 0 { &c[1..] } else { c };
    if c.len() > 8 {
        return Err(BerError::IntegerRange(what));
    }
    let mut v: u64 = 0;
    for &b in c {
        v = (v << 8) | b as u64;
    }
    if bits < 64 && v >> bits != 0 {
        return Err(BerError::IntegerRange(what));
    }
    Ok(v)
}

/// A BER output buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer with room for a typical message.
    pub fn new() -> Writer {
        Writer {
            buf: Vec::with_capacity(512),
        }
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Mutable access, for patching an authentication code in place.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Current length of the output.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn length(&mut self, len: usize) {
        if len < 0x80 {
            self.buf.push(len as u8);
        } else if len < 0x100 {
            self.buf.extend_from_slice(&[0x81, len as u8]);
        } else if len < 0x10000 {
            self.buf
                .extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
        } else {
            self.buf.push(0x84);
            self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    /// Writes a primitive TLV.
    pub fn primitive(&mut self, tag: u8, content: &[u8]) {
        self.buf.push(tag);
        self.length(content.len());
        self.buf.extend_from_slice(content);
    }

    /// Writes a constructed TLV whose content `f` writes.
    pub fn constructed(&mut self, tag: u8, f: impl FnOnce(&mut Writer)) {
        self.buf.extend_from_slice(&[tag, 0x82, 0, 0]);
        let start = self.buf.len();
        f(self);
        let len = self.buf.len() - start;
        if len < 0x10000 {
            self.buf[start - 2] = (len >> 8) as u8;
            self.buf[start - 1] = len as u8;
        } else {
            // Larger than any datagram: re-encode with a four-octet length.
            let content = self.buf.split_off(start);
            self.buf.truncate(start - 4);
            self.buf.push(tag);
            self.length(content.len());
            self.buf.extend_from_slice(&content);
        }
    }

    /// Appends bytes that are already encoded.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Writes a SEQUENCE.
    pub fn sequence(&mut self, f: impl FnOnce(&mut Writer)) {
        self.constructed(tag::SEQUENCE, f)
    }

    /// Writes a signed INTEGER (or an application type with a signed body).
    pub fn integer_tagged(&mut self, tag: u8, v: i64) {
        let bytes = v.to_be_bytes();
        let mut i = 0;
        while i < 7 {
            let (b, next) = (bytes[i], bytes[i + 1]);
            if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
                i += 1;
            } else {
                break;
            }
        }
        self.primitive(tag, &bytes[i..]);
    }

    /// Writes an INTEGER.
    pub fn integer(&mut self, v: i64) {
        self.integer_tagged(tag::INTEGER, v)
    }

    /// Writes an unsigned application integer (Counter32, Counter64, ...).
    pub fn unsigned(&mut self, tag: u8, v: u64) {
        let bytes = v.to_be_bytes();
        let mut i = 0;
        while i < 7 && bytes[i] == 0 {
            i += 1;
        }
        if bytes[i] & 0x80 != 0 {
            let mut content = [0u8; 9];
            content[1..1 + 8 - i].copy_from_slice(&bytes[i..]);
            self.primitive(tag, &content[..1 + 8 - i]);
        } else {
            self.primitive(tag, &bytes[i..]);
        }
    }

    /// Writes an OCTET STRING.
    pub fn octets(&mut self, v: &[u8]) {
        self.primitive(tag::OCTET_STRING, v)
    }

    /// Writes a NULL.
    pub fn null(&mut self) {
        self.primitive(tag::NULL, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_round_trip() {
        for v in [
            0i64,
            1,
            127,
            128,
            255,
            256,
            -1,
            -128,
            -129,
            i32::MAX as i64,
            i32::MIN as i64,
        ] {
            let mut w = Writer::new();
            w.integer(v);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            let c = r.read(tag::INTEGER, "v").unwrap();
            assert_eq!(decode_signed(c.bytes(), "v").unwrap(), v);
        }
        let mut w = Writer::new();
        w.integer(128);
        assert_eq!(w.as_bytes(), &[2, 2, 0, 128]);
    }

    #[test]
    fn counter64_near_the_top_round_trips() {
        for v in [u64::MAX, u64::MAX - 1, 1 << 63, 0x80, 0] {
            let mut w = Writer::new();
            w.unsigned(tag::COUNTER64, v);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            let c = r.read(tag::COUNTER64, "v").unwrap();
            assert_eq!(decode_unsigned(c.bytes(), 64, "v").unwrap(), v);
        }
    }

    #[test]
    fn lengths_are_checked() {
        assert!(Reader::new(&[0x30, 0x05, 1, 2]).read_any("x").is_err());
        assert!(Reader::new(&[0x30, 0x85, 0, 0, 0, 0, 1])
            .read_any("x")
            .is_err());
        assert!(Reader::new(&[0x30, 0x80]).read_any("x").is_err());
        assert!(Reader::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff])
            .read_any("x")
            .is_err());
        let big = [0x04, 0x82, 0x01, 0x00];
        assert_eq!(
            Reader::new(&big).read_any("x").unwrap_err(),
            BerError::Truncated("x")
        );
    }
}
