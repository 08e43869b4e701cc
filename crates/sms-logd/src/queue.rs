//! A bounded queue of messages on disk, one per TCP/TLS server.
//!
//! Messages wait here until the server took them, so a server that is
//! down, or a restart of the appliance, loses nothing that fits. When the
//! queue is full the oldest messages go first and are counted: the newest
//! events are what an administrator reading the server after an outage
//! needs, and the counter says how much is missing.

use std::collections::VecDeque;

/// Why the queue could not be used.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database refused an operation.
    #[error("log queue {name}: {source}")]
    Db {
        /// The queue.
        name: String,
        /// What the database said.
        source: sled::Error,
    },
}

/// The messages waiting for one server.
pub struct DiskQueue {
    name: String,
    tree: sled::Tree,
    meta: sled::Tree,
    max_bytes: u64,
    bytes: u64,
    /// (key, length) of each waiting message, oldest first.
    index: VecDeque<(u64, u64)>,
    next: u64,
    dropped: u64,
}

impl DiskQueue {
    /// Opens (or creates) the queue `name` in `db`, holding at most
    /// `max_bytes` of messages.
    pub fn open(db: &sled::Db, name: &str, max_bytes: u64) -> Result<DiskQueue, QueueError> {
        let err = |source| QueueError::Db {
            name: name.to_string(),
            source,
        };
        let tree = db.open_tree(format!("q:{name}")).map_err(err)?;
        let meta = db.open_tree("meta").map_err(err)?;
        let mut index = VecDeque::new();
        let mut bytes = 0;
        for item in tree.iter() {
            let (k, v) = item.map_err(err)?;
            let Ok(k) = <[u8; 8]>::try_from(k.as_ref()) else {
                continue;
            };
            index.push_back((u64::from_be_bytes(k), v.len() as u64));
            bytes += v.len() as u64;
        }
        let next = index.back().map_or(0, |(k, _)| k + 1);
        let dropped = meta
            .get(format!("dropped:{name}"))
            .map_err(err)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        let mut q = DiskQueue {
            name: name.to_string(),
            tree,
            meta,
            max_bytes,
            bytes,
            index,
            next,
            dropped,
        };
        q.trim()?;
        Ok(q)
    }

    fn err(&self, source: sled::Error) -> QueueError {
        QueueError::Db {
            name: self.name.clone(),
            source,
        }
    }

    /// Adds a message at the end, dropping the oldest ones if it does not
    /// fit otherwise (a message larger than the whole queue is dropped).
    pub fn push(&mut self, msg: &[u8]) -> Result<(), QueueError> {
        let len = msg.len() as u64;
        if len > self.max_bytes {
            self.dropped += 1;
            return self.save_dropped();
        }
        let key = self.next;
        self.next += 1;
        self.tree
            .insert(key.to_be_bytes(), msg)
            .map_err(|e| self.err(e))?;
        self.index.push_back((key, len));
        self.bytes += len;
        self.trim()
    }

    fn trim(&mut self) -> Result<(), QueueError> {
        let mut dropped = 0;
        while self.bytes > self.max_bytes {
            let Some((key, len)) = self.index.pop_front() else {
                break;
            };
            self.tree
                .remove(key.to_be_bytes())
                .map_err(|e| self.err(e))?;
            self.bytes -= len;
            dropped += 1;
        }
        if dropped > 0 {
            self.dropped += dropped;
            self.save_dropped()?;
        }
        Ok(())
    }

    fn save_dropped(&self) -> Result<(), QueueError> {
        self.meta
            .insert(
                format!("dropped:{}", self.name),
                &self.dropped.to_be_bytes(),
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Up to `n` of the oldest messages with their keys, left in the queue
    /// until [`DiskQueue::remove_through`].
    pub fn peek(&self, n: usize) -> Result<Vec<(u64, Vec<u8>)>, QueueError> {
        let mut out = Vec::new();
        for (key, _) in self.index.iter().take(n) {
            if let Some(v) = self.tree.get(key.to_be_bytes()).map_err(|e| self.err(e))? {
                out.push((*key, v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Removes every message up to and including key `last` (they were
    /// sent).
    pub fn remove_through(&mut self, last: u64) -> Result<(), QueueError> {
        while let Some(&(key, len)) = self.index.front() {
            if key > last {
                break;
            }
            self.tree
                .remove(key.to_be_bytes())
                .map_err(|e| self.err(e))?;
            self.index.pop_front();
            self.bytes -= len;
        }
        Ok(())
    }

    /// Writes what is queued to disk.
    pub fn flush(&self) -> Result<(), QueueError> {
        self.tree.flush().map(|_| ()).map_err(|e| self.err(e))
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Octets waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Messages dropped because the queue was full, since it was created.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn oldest_go_first_when_full_and_the_queue_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let mut q = DiskQueue::open(&db, "tls:a:6514", 30).unwrap();
            for i in 0..5 {
                q.push(format!("message {i}").as_bytes()).unwrap(); // 9 octets each
            }
            assert_eq!(q.len(), 3);
            assert_eq!(q.dropped(), 2);
            let head = q.peek(2).unwrap();
            assert_eq!(head[0].1, b"message 2");
            q.remove_through(head[0].0).unwrap();
            assert_eq!(q.len(), 2);
            q.push(&[b'x'; 31]).unwrap();
            assert_eq!(q.dropped(), 3);
            q.flush().unwrap();
        }
        let db = sled::open(dir.path()).unwrap();
        let mut q = DiskQueue::open(&db, "tls:a:6514", 30).unwrap();
        assert_eq!((q.len(), q.bytes(), q.dropped()), (2, 18, 3));
        q.push(b"message 5").unwrap();
        let all: Vec<_> = q.peek(10).unwrap().into_iter().map(|(_, v)| v).collect();
        assert_eq!(all, [b"message 3", b"message 4", b"message 5"]);
        // Another server's queue in the same database is its own.
        let other = DiskQueue::open(&db, "tcp:b:514", 30).unwrap();
        assert!(other.is_empty());
        assert_eq!(other.dropped(), 0);
    }
}
