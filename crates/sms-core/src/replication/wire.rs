//! The HA wire format, the same on the local socket (daemon to sms-had)
//! and on the peer link (sms-had to sms-had, inside mutual TLS).
//!
//! A frame is `magic "SMHA" | version u8 | kind u8 | epoch u64 | length u32
//! | payload`, big-endian. The header is checked before a payload byte is
//! read and the payload is bounded by [`MAX_PAYLOAD`], so a stranger's bytes
//! cost one short read and a clear error.

use crate::store::Change;
use std::io::{Read, Write};

/// First bytes of every frame.
pub const MAGIC: &[u8; 4] = b"SMHA";
/// Version of the frame format.
pub const VERSION: u8 = 1;
/// Bytes of the frame header.
pub const HEADER_LEN: usize = 18;
/// Largest payload accepted (a batch of changes is cut well below it).
pub const MAX_PAYLOAD: usize = 8 << 20;
/// Most changes one [`Message::Changes`] carries.
pub const MAX_CHANGES: usize = 512;
/// Bytes of a snapshot one [`Message::SnapshotChunk`] carries.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// One message of the HA protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Daemon to sms-had: "I am store `store`, my last change is `last`".
    Hello {
        /// Store name.
        store: String,
        /// The store's last sequence number.
        last: u64,
    },
    /// sms-had to its peer: "what is the last change you hold of `store`?"
    Where {
        /// Store name.
        store: String,
    },
    /// The answer to [`Message::Hello`] and [`Message::Where`]: the peer
    /// holds `store` up to `seq`.
    Position {
        /// Store name.
        store: String,
        /// Last sequence number the peer applied.
        seq: u64,
    },
    /// Changes of `store` to apply, in order and without gaps.
    Changes {
        /// Store name.
        store: String,
        /// The changes.
        changes: Vec<Change>,
    },
    /// The peer durably applied `store` up to `seq`.
    Ack {
        /// Store name.
        store: String,
        /// Last sequence number applied and flushed.
        seq: u64,
    },
    /// The request was not carried out; `reason` says why.
    Refused {
        /// Store name.
        store: String,
        /// Why.
        reason: String,
    },
    /// Part of a snapshot of `store` (`Store::export`) for a peer the
    /// outbox no longer covers; `offset` is where `data` goes.
    SnapshotChunk {
        /// Store name.
        store: String,
        /// Byte offset of `data` in the snapshot.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The snapshot of `store` is complete; it ends at change `seq`. The
    /// peer replaces its replica with it and acknowledges `seq`.
    SnapshotEnd {
        /// Store name.
        store: String,
        /// The snapshot's last sequence number.
        seq: u64,
    },
    /// The secondary, while it fetches a blob a batch of `store` names
    /// (and before it acknowledges the batch): `bytes` of it are in. Sent
    /// every 100 ms; it tells sms-had and the daemon that the peer
    /// works on the commit, so they wait on instead of taking the silence
    /// of a long transfer for a dead peer.
    Progress {
        /// Store name.
        store: String,
        /// Bytes of the blob(s) received so far.
        bytes: u64,
    },
    /// sms-had to its peer, every heartbeat interval, on the control link:
    /// whether this node is active, and whether its commits are DEGRADED
    /// (a standby that heard `degraded` may be stale and is not promoted).
    Heartbeat {
        /// The sender holds the active role.
        active: bool,
        /// The sender's commits are not all on its peer.
        degraded: bool,
        /// The sender (active) hands the active role over (`ha swap`): it
        /// takes no more writes and its peer, in SYNC, takes over.
        handover: bool,
    },
    /// sms-had to the witness: "grant me the lease at the frame's epoch
    /// for `ttl_ms`".
    LeaseRequest {
        /// Lease length asked for.
        ttl_ms: u32,
    },
    /// The witness to sms-had: the lease at the frame's epoch is the
    /// sender's for `ttl_ms` from when it received the request.
    LeaseGranted {
        /// Lease length granted.
        ttl_ms: u32,
    },
    /// A daemon to sms-had: "may this node take writes?"
    MayWrite,
    /// sms-had to a daemon: writes may be taken for `ms` from when the
    /// question was sent (`u32::MAX`: until told otherwise, no witness).
    WriteFor {
        /// Milliseconds.
        ms: u32,
    },
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Message::Hello { .. } => 1,
            Message::Where { .. } => 2,
            Message::Position { .. } => 3,
            Message::Changes { .. } => 4,
            Message::Ack { .. } => 5,
            Message::Refused { .. } => 6,
            Message::Heartbeat { .. } => 7,
            Message::LeaseRequest { .. } => 8,
            Message::LeaseGranted { .. } => 9,
            Message::MayWrite => 10,
            Message::WriteFor { .. } => 11,
            Message::SnapshotChunk { .. } => 12,
            Message::SnapshotEnd { .. } => 13,
            Message::Progress { .. } => 14,
        }
    }

    /// The store the message is about.
    pub fn store(&self) -> &str {
        match self {
            Message::Hello { store, .. }
            | Message::Where { store }
            | Message::Position { store, .. }
            | Message::Changes { store, .. }
            | Message::Ack { store, .. }
            | Message::Refused { store, .. }
            | Message::SnapshotChunk { store, .. }
            | Message::SnapshotEnd { store, .. }
            | Message::Progress { store, .. } => store,
            Message::Heartbeat { .. }
            | Message::LeaseRequest { .. }
            | Message::LeaseGranted { .. }
            | Message::MayWrite
            | Message::WriteFor { .. } => "",
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or ended.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a frame of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

fn malformed(s: impl Into<String>) -> WireError {
    WireError::Malformed(s.into())
}

/// Checks a frame header; returns (kind, epoch, payload length).
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(u8, u64, usize), WireError> {
    if &h[..4] != MAGIC {
        return Err(malformed(format!(
            "not an SMS HA frame (first bytes {:02x?})",
            &h[..4]
        )));
    }
    if h[4] != VERSION {
        return Err(malformed(format!(
            "frame version {} (this node speaks {VERSION})",
            h[4]
        )));
    }
    let mut e = [0u8; 8];
    e.copy_from_slice(&h[6..14]);
    let mut l = [0u8; 4];
    l.copy_from_slice(&h[14..18]);
    let len = u32::from_be_bytes(l) as usize;
    if len > MAX_PAYLOAD {
        return Err(malformed(format!(
            "payload of {len} bytes announced (at most {MAX_PAYLOAD})"
        )));
    }
    Ok((h[5], u64::from_be_bytes(e), len))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Encodes `msg` as one frame of epoch `epoch`.
pub fn encode(epoch: u64, msg: &Message) -> Vec<u8> {
    let mut p = Vec::new();
    put_str(&mut p, msg.store());
    match msg {
        Message::Hello { last: n, .. }
        | Message::Position { seq: n, .. }
        | Message::Ack { seq: n, .. }
        | Message::SnapshotEnd { seq: n, .. }
        | Message::Progress { bytes: n, .. } => p.extend_from_slice(&n.to_be_bytes()),
        Message::SnapshotChunk { offset, data, .. } => {
            p.extend_from_slice(&offset.to_be_bytes());
            p.extend_from_slice(&(data.len() as u32).to_be_bytes());
            p.extend_from_slice(data);
        }
        Message::Where { .. } | Message::MayWrite => {}
        Message::Heartbeat {
            active,
            degraded,
            handover,
        } => {
            p.push(u8::from(*active) | u8::from(*degraded) << 1 | u8::from(*handover) << 2);
        }
        Message::LeaseRequest { ttl_ms: n }
        | Message::LeaseGranted { ttl_ms: n }
        | Message::WriteFor { ms: n } => p.extend_from_slice(&n.to_be_bytes()),
        Message::Refused { reason, .. } => put_str(&mut p, reason),
        Message::Changes { changes, .. } => {
            p.extend_from_slice(&(changes.len() as u32).to_be_bytes());
            for c in changes {
                let body = c.encode_body();
                p.extend_from_slice(&c.seq.to_be_bytes());
                p.extend_from_slice(&(body.len() as u32).to_be_bytes());
                p.extend_from_slice(&body);
            }
        }
    }
    let mut f = Vec::with_capacity(HEADER_LEN + p.len());
    f.extend_from_slice(MAGIC);
    f.push(VERSION);
    f.push(msg.kind());
    f.extend_from_slice(&epoch.to_be_bytes());
    f.extend_from_slice(&(p.len() as u32).to_be_bytes());
    f.extend_from_slice(&p);
    f
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(malformed(format!(
                "payload truncated: {n} bytes needed, {} left",
                self.0.len()
            )));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<String, WireError> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| malformed("string is not UTF-8"))
    }
}

/// Decodes the payload of a frame of kind `kind`.
pub fn decode(kind: u8, payload: &[u8]) -> Result<Message, WireError> {
    let mut c = Cursor(payload);
    let store = c.string()?;
    let msg = match kind {
        1 => Message::Hello {
            store,
            last: c.u64()?,
        },
        2 => Message::Where { store },
        3 => Message::Position {
            store,
            seq: c.u64()?,
        },
        4 => {
            let n = c.u32()? as usize;
            if n > MAX_CHANGES {
                return Err(malformed(format!(
                    "{n} changes in one frame (at most {MAX_CHANGES})"
                )));
            }
            let mut changes = Vec::with_capacity(n);
            for _ in 0..n {
                let seq = c.u64()?;
                let len = c.u32()? as usize;
                let body = c.take(len)?;
                changes.push(
                    Change::decode_body(seq, body)
                        .map_err(|e| malformed(format!("change {seq}: {e}")))?,
                );
            }
            Message::Changes { store, changes }
        }
        5 => Message::Ack {
            store,
            seq: c.u64()?,
        },
        6 => Message::Refused {
            store,
            reason: c.string()?,
        },
        7..=11 if !store.is_empty() => {
            return Err(malformed(format!(
                "a frame of kind {kind} names a store ({store})"
            )))
        }
        7 => {
            let flags = c.take(1)?[0];
            if flags > 7 {
                return Err(malformed(format!("heartbeat flags {flags:#x}")));
            }
            Message::Heartbeat {
                active: flags & 1 != 0,
                degraded: flags & 2 != 0,
                handover: flags & 4 != 0,
            }
        }
        8 => Message::LeaseRequest { ttl_ms: c.u32()? },
        9 => Message::LeaseGranted { ttl_ms: c.u32()? },
        10 => Message::MayWrite,
        11 => Message::WriteFor { ms: c.u32()? },
        12 => {
            let offset = c.u64()?;
            let n = c.u32()? as usize;
            Message::SnapshotChunk {
                store,
                offset,
                data: c.take(n)?.to_vec(),
            }
        }
        13 => Message::SnapshotEnd {
            store,
            seq: c.u64()?,
        },
        14 => Message::Progress {
            store,
            bytes: c.u64()?,
        },
        k => return Err(malformed(format!("unknown frame kind {k}"))),
    };
    if !c.0.is_empty() {
        return Err(malformed(format!("{} bytes after the message", c.0.len())));
    }
    Ok(msg)
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, epoch: u64, msg: &Message) -> std::io::Result<()> {
    w.write_all(&encode(epoch, msg))?;
    w.flush()
}

/// Reads one frame; returns its epoch and message.
pub fn read_frame(r: &mut impl Read) -> Result<(u64, Message), WireError> {
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h)?;
    let (kind, epoch, len) = parse_header(&h)?;
    let mut p = vec![0u8; len];
    r.read_exact(&mut p)?;
    Ok((epoch, decode(kind, &p)?))
}

/// Reads one frame from an async stream (sms-had's side).
pub async fn read_frame_async(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<(u64, Message), WireError> {
    use tokio::io::AsyncReadExt;
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h).await?;
    let (kind, epoch, len) = parse_header(&h)?;
    let mut p = vec![0u8; len];
    r.read_exact(&mut p).await?;
    Ok((epoch, decode(kind, &p)?))
}

/// Writes one frame to an async stream.
pub async fn write_frame_async(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    epoch: u64,
    msg: &Message,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    w.write_all(&encode(epoch, msg)).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn change() -> impl Strategy<Value = Change> {
        (
            1u64..1000,
            "[a-z]{1,8}",
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        )
            .prop_map(|(seq, tree, key, value)| Change {
                seq,
                tree,
                key,
                value,
            })
    }

    fn message() -> impl Strategy<Value = Message> {
        let store = "[a-z]{1,12}";
        prop_oneof![
            (store, any::<u64>()).prop_map(|(store, last)| Message::Hello { store, last }),
            store.prop_map(|store| Message::Where { store }),
            (store, any::<u64>()).prop_map(|(store, seq)| Message::Position { store, seq }),
            (store, proptest::collection::vec(change(), 0..8))
                .prop_map(|(store, changes)| Message::Changes { store, changes }),
            (store, any::<u64>()).prop_map(|(store, seq)| Message::Ack { store, seq }),
            (store, ".{0,40}").prop_map(|(store, reason)| Message::Refused { store, reason }),
            (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
                |(active, degraded, handover)| {
                    Message::Heartbeat {
                        active,
                        degraded,
                        handover,
                    }
                }
            ),
            any::<u32>().prop_map(|ttl_ms| Message::LeaseRequest { ttl_ms }),
            any::<u32>().prop_map(|ttl_ms| Message::LeaseGranted { ttl_ms }),
            Just(Message::MayWrite),
            (
                store,
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(store, offset, data)| Message::SnapshotChunk {
                    store,
                    offset,
                    data
                }),
            (store, any::<u64>()).prop_map(|(store, seq)| Message::SnapshotEnd { store, seq }),
            (store, any::<u64>()).prop_map(|(store, bytes)| Message::Progress { store, bytes }),
            any::<u32>().prop_map(|ms| Message::WriteFor { ms }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_reads_back_as_written(epoch in any::<u64>(), msg in message()) {
            let bytes = encode(epoch, &msg);
            let (e, m) = read_frame(&mut bytes.as_slice()).unwrap();
            prop_assert_eq!(e, epoch);
            prop_assert_eq!(m, msg);
        }

        #[test]
        fn a_cut_or_flipped_frame_is_an_error_never_a_panic(
            msg in message(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()
        ) {
            let bytes = encode(7, &msg);
            let n = cut.index(bytes.len());
            prop_assert!(read_frame(&mut &bytes[..n]).is_err());
            let mut bad = bytes.clone();
            let i = flip.index(bad.len());
            bad[i] ^= 0x5a;
            // A flipped byte may still decode (a value byte); it must not panic.
            let _ = read_frame(&mut bad.as_slice());
        }
    }

    #[test]
    fn strangers_bytes_are_refused_by_the_header() {
        let err = read_frame(&mut &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]).unwrap_err();
        assert!(err.to_string().contains("not an SMS HA frame"), "{err}");
        let mut h = encode(1, &Message::Where { store: "a".into() });
        h[14..18].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = read_frame(&mut h.as_slice()).unwrap_err();
        assert!(err.to_string().contains("announced"), "{err}");
        let mut v = encode(1, &Message::Where { store: "a".into() });
        v[4] = 9;
        assert!(read_frame(&mut v.as_slice())
            .unwrap_err()
            .to_string()
            .contains("version 9"));
    }
}
