//! The store layer: one sled database per owning daemon, with an outbox.
//!
//! Every write goes through [`Store::apply`], which commits the data and an
//! ordered [`Change`] record per operation (sequence number, tree, key, value
//! or delete) in one sled transaction, then flushes before returning. The
//! outbox is therefore gap-free and never disagrees with the data, which is
//! what HA replication needs to ship it to the standby without losing
//! anything the primary acknowledged. sled's own `watch_prefix` events are not
//! durable; the outbox is.

use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// A key and its value, as returned by [`Store::scan`].
pub type KeyValue = (Vec<u8>, Vec<u8>);

const OUTBOX_TREE: &str = "__outbox";
const META_TREE: &str = "__meta";
const SEQ_KEY: &[u8] = b"outbox_seq";
/// Outbox records an unpaired store keeps.
pub const OUTBOX_KEEP: u64 = 8192;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an error (I/O, corruption, lock held by another process).
    #[error("store {path}: {source}")]
    Sled {
        /// Database directory.
        path: PathBuf,
        /// The sled error.
        source: sled::Error,
    },
    /// A record in the store could not be decoded.
    #[error("store {path}: corrupt record in tree `{tree}`: {reason}")]
    Corrupt {
        /// Database directory.
        path: PathBuf,
        /// The tree holding the record.
        tree: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A caller tried to write to one of the store's own trees.
    #[error("tree name `{0}` is reserved for the store layer")]
    ReservedTree(String),
    /// Replicated changes did not follow the replica's last one (the
    /// sender's position was wrong): nothing of them was applied.
    #[error("store {path}: replicated change {got} does not follow {last} (gap or replay)")]
    OutOfOrder {
        /// Database directory.
        path: PathBuf,
        /// The replica's last sequence number.
        last: u64,
        /// The first sequence number offered.
        got: u64,
    },
    /// The store was written by a newer firmware than this one (its data
    /// format is beyond what this build reads): it is not opened, so an
    /// older slot booted after a fallback cannot damage it.
    #[error("store {path}: {owner} data of format {found}, newer than the {supported} this firmware reads: it was written by a newer firmware (an older slot booted after an update?); not opened, nothing changed. Boot the newer firmware, or restore a backup taken with this one")]
    NewerFormat {
        /// Database directory.
        path: PathBuf,
        /// Whose format (a daemon, or `the store layer`).
        owner: String,
        /// The format found in the store.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// A migration of a store to this firmware's format failed: the store
    /// is left at its old format, unchanged.
    #[error("store {path}: migrating {owner} data to format {to} ({what}): {reason}")]
    Migration {
        /// Database directory.
        path: PathBuf,
        /// The daemon whose data it is.
        owner: String,
        /// The format being migrated to.
        to: u32,
        /// What the step does.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The HA daemon says this node may not take writes now (standby,
    /// fenced, or it cannot tell): nothing was written.
    #[error("store {path}: this node takes no writes: {reason}")]
    NotActive {
        /// Database directory.
        path: PathBuf,
        /// What sms-had said.
        reason: String,
    },
    /// A snapshot could not be written or read back.
    #[error("store snapshot for {path}: {reason}")]
    Snapshot {
        /// Database directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// One operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` in `tree` to `value`.
    Put {
        /// Tree name.
        tree: String,
        /// Key bytes.
        key: Vec<u8>,
        /// New value.
        value: Vec<u8>,
    },
    /// Remove `key` from `tree`.
    Delete {
        /// Tree name.
        tree: String,
        /// Key bytes.
        key: Vec<u8>,
    },
}

/// The format of the store layer itself (outbox and metadata layout),
/// kept in the store's metadata: a store of a newer layer is not opened.
pub const LAYER_FORMAT: u32 = 1;
const LAYER_KEY: &[u8] = b"layer_format";

/// The tree that holds each owner's data format (key: the owner's name,
/// value: the format, big-endian u32); an ordinary tree, so it is
/// replicated and backed up with the data it describes.
pub const FORMAT_TREE: &str = "store-format";

/// A daemon's data format: its number, and the steps that bring a store
/// of an older format to it (ISSUE: stores carry a format version).
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Whose data (the daemon's name).
    pub owner: &'static str,
    /// The format this build writes and reads.
    pub version: u32,
    /// The steps from older formats, in order of `to`.
    pub migrations: &'static [Migration],
}

/// One step of a store to format `to`: it returns the writes that convert
/// the data, committed in one batch with the new format number.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The format it brings the store to.
    pub to: u32,
    /// What it does (for the log).
    pub what: &'static str,
    /// Reads the store and returns the converting writes.
    pub step: fn(&Store) -> Result<Batch, String>,
}

/// The tree in which a batch names the blobs its entries refer to (key:
/// the SHA-256, value: the length, big-endian u64): [`Batch::name_blob`].
pub const BLOB_TREE: &str = "blobs";

/// The blobs `changes` name ([`Batch::name_blob`]), in order; a malformed
/// entry of [`BLOB_TREE`] is an error, not skipped.
pub fn named_blobs(changes: &[Change]) -> Result<Vec<(crate::blob::Digest, u64)>, String> {
    let mut out = Vec::new();
    for c in changes.iter().filter(|c| c.tree == BLOB_TREE) {
        let Some(v) = &c.value else { continue };
        let digest: [u8; 32] = c.key.as_slice().try_into().map_err(|_| {
            format!(
                "change {}: a blob name of {} bytes, not 32",
                c.seq,
                c.key.len()
            )
        })?;
        let len: [u8; 8] = v.as_slice().try_into().map_err(|_| {
            format!(
                "change {}: a blob length of {} bytes, not 8",
                c.seq,
                v.len()
            )
        })?;
        out.push((crate::blob::Digest(digest), u64::from_be_bytes(len)));
    }
    Ok(out)
}

/// A set of writes applied atomically by [`Store::apply`].
#[derive(Debug, Default, Clone)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of raw bytes.
    pub fn put(
        &mut self,
        tree: &str,
        key: impl AsRef<[u8]>,
        value: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push(Op::Put {
            tree: tree.to_string(),
            key: key.as_ref().to_vec(),
            value: value.into(),
        });
        self
    }

    /// Adds a put of a value serialized as JSON (readable with `busctl`-style
    /// tools and stable across versions of the daemons).
    pub fn put_json<T: Serialize>(
        &mut self,
        tree: &str,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> &mut Self {
        // Serializing our own plain data types to JSON cannot fail.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.put(tree, key, bytes)
    }

    /// Names a blob (a package file by its SHA-256) that an entry of this
    /// batch refers to: on a paired appliance the peer fetches the file
    /// and checks its digest before it acknowledges the batch, so an
    /// acknowledged entry never names a file the peer lacks (ADR 23).
    pub fn name_blob(&mut self, digest: &crate::blob::Digest, len: u64) -> &mut Self {
        self.put(BLOB_TREE, digest.0, len.to_be_bytes().to_vec())
    }

    /// Adds a delete.
    pub fn delete(&mut self, tree: &str, key: impl AsRef<[u8]>) -> &mut Self {
        self.ops.push(Op::Delete {
            tree: tree.to_string(),
            key: key.as_ref().to_vec(),
        });
        self
    }

    /// The operations in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// One ordered record of the outbox: what replication ships to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Gap-free sequence number, starting at 1.
    pub seq: u64,
    /// Tree that was written.
    pub tree: String,
    /// Key that was written.
    pub key: Vec<u8>,
    /// The new value, or `None` for a delete.
    pub value: Option<Vec<u8>>,
}

impl Change {
    /// Encodes the change (without its sequence number, which is the outbox
    /// key) as `tree_len u16 | tree | key_len u32 | key | tag u8 | [val_len u32 | val]`.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.tree.len() + self.key.len());
        out.extend_from_slice(&(self.tree.len() as u16).to_be_bytes());
        out.extend_from_slice(self.tree.as_bytes());
        out.extend_from_slice(&(self.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.key);
        match &self.value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
        out
    }

    /// Decodes what [`Change::encode_body`] wrote.
    pub fn decode_body(seq: u64, bytes: &[u8]) -> Result<Change, String> {
        let mut rd = Reader { buf: bytes };
        let tlen = u16::from_be_bytes(rd.take_array()?) as usize;
        let tree = String::from_utf8(rd.take(tlen)?.to_vec())
            .map_err(|_| "tree name is not UTF-8".to_string())?;
        let klen = u32::from_be_bytes(rd.take_array()?) as usize;
        let key = rd.take(klen)?.to_vec();
        let tag = rd.take(1)?[0];
        let value = match tag {
            0 => None,
            1 => {
                let vlen = u32::from_be_bytes(rd.take_array()?) as usize;
                Some(rd.take(vlen)?.to_vec())
            }
            t => return Err(format!("unknown change tag {t}")),
        };
        if !rd.buf.is_empty() {
            return Err(format!("{} trailing bytes", rd.buf.len()));
        }
        Ok(Change {
            seq,
            tree,
            key,
            value,
        })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "truncated: need {n} bytes, have {}",
                self.buf.len()
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

/// A daemon's database: data trees plus the outbox.
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    outbox: sled::Tree,
    meta: sled::Tree,
    /// Writers share it, [`Store::export`] takes it alone: a snapshot never
    /// sees half of a batch.
    gate: Arc<RwLock<()>>,
    /// Highest sequence number known flushed: concurrent commits share one
    /// flush (group commit) instead of queueing one flush each.
    durable: Arc<Mutex<u64>>,
    /// The HA replication client, when the appliance is paired: each
    /// commit waits for it (see [`Store::commit`]).
    replication: Arc<std::sync::OnceLock<crate::replication::ReplicationClient>>,
}

/// What became of a commit beyond the local disk, as [`Store::commit`]
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// The appliance is not paired: the local flush is the whole commit.
    Standalone,
    /// The HA peer durably applied the commit before it was acknowledged.
    Sync,
    /// Written here only: the peer or the HA daemon did not confirm within
    /// the sync timeout (the reason says which); it is shipped later.
    Degraded(String),
}

/// A commit's sequence number and how far it was replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Sequence number of the commit's last change.
    pub seq: u64,
    /// Whether the HA peer holds it too.
    pub replication: Replication,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the database in directory `path`.
    ///
    /// sled allows one process per database; a second opener gets an error
    /// naming the path, which is how "one owner per store" is enforced.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Sled {
            path: path.to_path_buf(),
            source,
        };
        // sled's background flusher holds the file lock for a moment after
        // the last handle of a store is dropped: a store reopened in the
        // same process (a restart of a component, tests) waits for it,
        // briefly, instead of failing.
        let mut tries = 0;
        let db = loop {
            match sled::Config::new()
                .path(path)
                .flush_every_ms(Some(500))
                .open()
            {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if tries < 40 && e.to_string().contains("could not acquire lock") =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(err(e)),
            }
        };
        let outbox = db.open_tree(OUTBOX_TREE).map_err(err)?;
        let meta = db.open_tree(META_TREE).map_err(err)?;
        match meta.get(LAYER_KEY).map_err(err)? {
            None => {
                meta.insert(LAYER_KEY, &LAYER_FORMAT.to_be_bytes())
                    .map_err(err)?;
            }
            Some(v) => {
                let found = v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found > LAYER_FORMAT {
                    return Err(StoreError::NewerFormat {
                        path: path.to_path_buf(),
                        owner: "the store layer".into(),
                        found,
                        supported: LAYER_FORMAT,
                    });
                }
            }
        }
        Ok(Store {
            path: path.to_path_buf(),
            db,
            outbox,
            meta,
            gate: Arc::new(RwLock::new(())),
            durable: Arc::new(Mutex::new(0)),
            replication: Arc::new(std::sync::OnceLock::new()),
        })
    }

    /// Opens the store of `schema.owner` and brings it to this build's
    /// format: a new store is stamped with it, an older one (a store from
    /// before formats counts as 1) is migrated step by step, each step
    /// one commit with its new format number; a newer one is refused
    /// with [`StoreError::NewerFormat`] and left untouched.
    pub fn open_with_schema(path: &Path, schema: &Schema) -> Result<Store, StoreError> {
        let store = Store::open(path)?;
        store.bring_to(schema)?;
        Ok(store)
    }

    /// The format of `owner`'s data in this store (None: never stamped).
    pub fn format_of(&self, owner: &str) -> Result<Option<u32>, StoreError> {
        Ok(match self.get(FORMAT_TREE, owner)? {
            None => None,
            Some(v) => Some(
                v.as_slice()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        path: self.path.clone(),
                        tree: FORMAT_TREE.into(),
                        reason: format!("the format of {owner} is {} bytes, not 4", v.len()),
                    })?,
            ),
        })
    }

    fn bring_to(&self, schema: &Schema) -> Result<(), StoreError> {
        let stamp = |b: &mut Batch, v: u32| {
            b.put(FORMAT_TREE, schema.owner, v.to_be_bytes().to_vec());
        };
        let found = match self.format_of(schema.owner)? {
            Some(v) => v,
            None if self.last_seq()? == 0 => {
                let mut b = Batch::new();
                stamp(&mut b, schema.version);
                self.commit(&b)?;
                return Ok(());
            }
            None => 1,
        };
        if found > schema.version {
            return Err(StoreError::NewerFormat {
                path: self.path.clone(),
                owner: schema.owner.into(),
                found,
                supported: schema.version,
            });
        }
        let mut at = found;
        for m in schema
            .migrations
            .iter()
            .filter(|m| m.to > found && m.to <= schema.version)
        {
            let failed = |reason: String| StoreError::Migration {
                path: self.path.clone(),
                owner: schema.owner.into(),
                to: m.to,
                what: m.what.into(),
                reason,
            };
            let mut b = (m.step)(self).map_err(failed)?;
            stamp(&mut b, m.to);
            self.commit(&b).map_err(|e| failed(e.to_string()))?;
            tracing::warn!(
                store = %self.path.display(),
                owner = schema.owner,
                "store migrated from format {at} to {}: {}",
                m.to,
                m.what
            );
            at = m.to;
        }
        if at != schema.version {
            let mut b = Batch::new();
            stamp(&mut b, schema.version);
            self.commit(&b)?;
        }
        Ok(())
    }

    fn sled_err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        if name.starts_with("__") {
            return Err(StoreError::ReservedTree(name.to_string()));
        }
        self.db.open_tree(name).map_err(|e| self.sled_err(e))
    }

    /// Reads one value.
    pub fn get(&self, tree: &str, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.tree(tree)?;
        t.get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.sled_err(e))
    }

    /// Reads one JSON value.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        tree: &str,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>, StoreError> {
        let key = key.as_ref();
        match self.get(tree, key)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        path: self.path.clone(),
                        tree: tree.to_string(),
                        reason: format!("key {}: {e}", String::from_utf8_lossy(key)),
                    })
            }
        }
    }

    /// All entries of `tree` whose key starts with `prefix`, in key order.
    pub fn scan(&self, tree: &str, prefix: impl AsRef<[u8]>) -> Result<Vec<KeyValue>, StoreError> {
        let t = self.tree(tree)?;
        t.scan_prefix(prefix)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| self.sled_err(e))
            })
            .collect()
    }

    /// All JSON values of `tree` whose key starts with `prefix`.
    pub fn scan_json<T: DeserializeOwned>(
        &self,
        tree: &str,
        prefix: impl AsRef<[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        self.scan(tree, prefix)?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    tree: tree.to_string(),
                    reason: format!("key {}: {e}", String::from_utf8_lossy(&k)),
                })
            })
            .collect()
    }

    /// Applies `batch` atomically with its outbox records, then flushes so
    /// that the write survives a crash once this returns; when the store
    /// replicates, it also waits for the HA peer (see [`Store::commit`]).
    /// Returns the sequence number of the last change (the previous last
    /// one for an empty batch).
    pub fn apply(&self, batch: &Batch) -> Result<u64, StoreError> {
        self.commit(batch).map(|c| c.seq)
    }

    /// Sends every commit from now on to the HA daemon through `client`
    /// before it is acknowledged. Set once, at start; a second call is
    /// refused (returns false).
    pub fn replicate_through(&self, client: crate::replication::ReplicationClient) -> bool {
        self.replication.set(client).is_ok()
    }

    /// Like [`Store::apply`], saying whether the HA peer holds the commit:
    /// with replication on, it returns once the peer durably applied it
    /// ([`Replication::Sync`]) or, when the peer or the HA daemon did not
    /// confirm within the sync timeout, as [`Replication::Degraded`] (the
    /// commit is local and shipped when the peer is back; never reported
    /// as Sync).
    pub fn commit(&self, batch: &Batch) -> Result<Commit, StoreError> {
        if let Some(client) = self.replication.get() {
            client.may_write().map_err(|reason| StoreError::NotActive {
                path: self.path.clone(),
                reason,
            })?;
        }
        let seq = self.apply_local(batch)?;
        let replication = match self.replication.get() {
            None => {
                self.trim_standalone(seq, batch.ops.len() as u64);
                Replication::Standalone
            }
            Some(client) => client.replicate(self, seq),
        };
        Ok(Commit { seq, replication })
    }

    /// An unpaired store keeps only the last [`OUTBOX_KEEP`] outbox
    /// records, trimmed whenever a commit (of `changes` changes ending at
    /// `seq`) crosses a multiple of 1,024: so the outbox does not grow
    /// without end, and the other commits do not even look. A peer paired
    /// later gets a snapshot first.
    fn trim_standalone(&self, seq: u64, changes: u64) {
        if seq.saturating_sub(changes) / 1024 == seq / 1024 {
            return;
        }
        match self.first_outbox_seq() {
            Ok(Some(first)) if seq > first.saturating_add(OUTBOX_KEEP) => {}
            _ => return,
        }
        if let Err(e) = self.trim_outbox(seq - OUTBOX_KEEP) {
            tracing::warn!(store = %self.path.display(), "trimming the outbox: {e}");
        }
    }

    fn apply_local(&self, batch: &Batch) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return self.last_seq();
        }
        // Distinct trees of the batch, in first-use order; each op refers to
        // its tree by index into the transaction's views.
        let mut names: Vec<&str> = Vec::new();
        let mut index = Vec::with_capacity(batch.ops.len());
        for op in &batch.ops {
            let name = match op {
                Op::Put { tree, .. } | Op::Delete { tree, .. } => tree.as_str(),
            };
            let i = match names.iter().position(|n| *n == name) {
                Some(i) => i,
                None => {
                    names.push(name);
                    names.len() - 1
                }
            };
            index.push(i);
        }
        let mut trees = Vec::with_capacity(names.len() + 2);
        for name in &names {
            trees.push(self.tree(name)?);
        }
        trees.push(self.outbox.clone());
        trees.push(self.meta.clone());
        let n = names.len();

        let _writer = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let result = trees.as_slice().transaction(|views| {
            let outbox = &views[n];
            let meta = &views[n + 1];
            let mut seq = decode_seq(meta.get(SEQ_KEY)?.as_deref())
                .map_err(ConflictableTransactionError::Abort)?;
            for (op, &i) in batch.ops.iter().zip(&index) {
                seq += 1;
                let change = match op {
                    Op::Put { tree, key, value } => {
                        views[i].insert(key.as_slice(), value.as_slice())?;
                        Change {
                            seq,
                            tree: tree.clone(),
                            key: key.clone(),
                            value: Some(value.clone()),
                        }
                    }
                    Op::Delete { tree, key } => {
                        views[i].remove(key.as_slice())?;
                        Change {
                            seq,
                            tree: tree.clone(),
                            key: key.clone(),
                            value: None,
                        }
                    }
                };
                outbox.insert(&seq.to_be_bytes(), change.encode_body())?;
            }
            meta.insert(SEQ_KEY, &seq.to_be_bytes())?;
            Ok(seq)
        });
        let seq = match result {
            Ok(seq) => seq,
            Err(TransactionError::Abort(reason)) => {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    tree: META_TREE.to_string(),
                    reason: reason.to_string(),
                })
            }
            Err(TransactionError::Storage(e)) => return Err(self.sled_err(e)),
        };
        self.flush_through(seq)?;
        Ok(seq)
    }

    /// Makes every change up to `seq` durable. Writers that committed
    /// while another one flushed find their change covered by that flush
    /// and return without one of their own: the flush covers everything
    /// committed before it started, which is read first.
    fn flush_through(&self, seq: u64) -> Result<(), StoreError> {
        let mut durable = crate::daemon::lock(&self.durable);
        if *durable >= seq {
            return Ok(());
        }
        let committed = self.last_seq()?;
        self.db.flush().map_err(|e| self.sled_err(e))?;
        *durable = committed.max(seq);
        Ok(())
    }

    /// Applies changes shipped by the HA primary, in one transaction with
    /// their outbox records (so this replica can serve them on after a
    /// promotion), then flushes. They must follow the last change here
    /// without a gap; otherwise nothing is applied. Returns the new last
    /// sequence number.
    pub fn apply_replicated(&self, changes: &[Change]) -> Result<u64, StoreError> {
        let last = self.last_seq()?;
        let Some(first) = changes.first() else {
            return Ok(last);
        };
        if changes
            .iter()
            .enumerate()
            .any(|(i, c)| c.seq != last + 1 + i as u64)
        {
            return Err(StoreError::OutOfOrder {
                path: self.path.clone(),
                last,
                got: first.seq,
            });
        }
        for c in changes {
            if c.tree.starts_with("__") {
                return Err(StoreError::ReservedTree(c.tree.clone()));
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for c in changes {
            if !names.contains(&c.tree.as_str()) {
                names.push(&c.tree);
            }
        }
        let mut trees = Vec::with_capacity(names.len() + 2);
        for name in &names {
            trees.push(self.tree(name)?);
        }
        trees.push(self.outbox.clone());
        trees.push(self.meta.clone());
        let n = names.len();
        let _writer = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let result = trees.as_slice().transaction(|views| {
            let (outbox, meta) = (&views[n], &views[n + 1]);
            // Checked again inside: a concurrent writer cannot slip between.
            let now = decode_seq(meta.get(SEQ_KEY)?.as_deref())
                .map_err(|e| ConflictableTransactionError::Abort(Err(e)))?;
            if now != last {
                return Err(ConflictableTransactionError::Abort(Ok(now)));
            }
            for c in changes {
                let i = names.iter().position(|t| *t == c.tree).unwrap_or(0);
                match &c.value {
                    Some(v) => views[i].insert(c.key.as_slice(), v.as_slice())?,
                    None => views[i].remove(c.key.as_slice())?,
                };
                outbox.insert(&c.seq.to_be_bytes(), c.encode_body())?;
            }
            let end = last + changes.len() as u64;
            meta.insert(SEQ_KEY, &end.to_be_bytes())?;
            Ok(end)
        });
        let end = match result {
            Ok(end) => end,
            Err(TransactionError::Abort(Ok(now))) => {
                return Err(StoreError::OutOfOrder {
                    path: self.path.clone(),
                    last: now,
                    got: first.seq,
                })
            }
            Err(TransactionError::Abort(Err(reason))) => {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    tree: META_TREE.to_string(),
                    reason: reason.to_string(),
                })
            }
            Err(TransactionError::Storage(e)) => return Err(self.sled_err(e)),
        };
        self.db.flush().map_err(|e| self.sled_err(e))?;
        Ok(end)
    }

    /// Sequence number of the oldest outbox record still kept, if any.
    pub fn first_outbox_seq(&self) -> Result<Option<u64>, StoreError> {
        match self.outbox.first().map_err(|e| self.sled_err(e))? {
            Some((k, _)) if k.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&k);
                Ok(Some(u64::from_be_bytes(a)))
            }
            Some(_) => Err(StoreError::Corrupt {
                path: self.path.clone(),
                tree: OUTBOX_TREE.to_string(),
                reason: "outbox key of a wrong size".into(),
            }),
            None => Ok(None),
        }
    }

    /// Sequence number of the newest outbox record (0 when none was written).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let v = self.meta.get(SEQ_KEY).map_err(|e| self.sled_err(e))?;
        decode_seq(v.as_deref()).map_err(|reason| StoreError::Corrupt {
            path: self.path.clone(),
            tree: META_TREE.to_string(),
            reason: reason.into(),
        })
    }

    /// Outbox records with a sequence number greater than `after`, in order,
    /// at most `limit` of them.
    pub fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.outbox.range(start..).take(limit) {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            let corrupt = |reason: String| StoreError::Corrupt {
                path: self.path.clone(),
                tree: OUTBOX_TREE.to_string(),
                reason,
            };
            if k.len() != 8 {
                return Err(corrupt(format!("outbox key of {} bytes", k.len())));
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&k);
            let seq = u64::from_be_bytes(a);
            out.push(
                Change::decode_body(seq, &v).map_err(|r| corrupt(format!("record {seq}: {r}")))?,
            );
        }
        Ok(out)
    }

    /// Forgets outbox records up to and including `upto` (after the peer
    /// acknowledged them). The sequence counter is not reset.
    pub fn trim_outbox(&self, upto: u64) -> Result<usize, StoreError> {
        let end = upto.saturating_add(1).to_be_bytes();
        let keys: Vec<_> = self
            .outbox
            .range(..end)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| self.sled_err(e))?;
        for k in &keys {
            self.outbox.remove(k).map_err(|e| self.sled_err(e))?;
        }
        self.db.flush().map_err(|e| self.sled_err(e))?;
        Ok(keys.len())
    }

    /// Directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a consistent copy of every data tree to `out` (for backups):
    /// writers wait while it runs, so the copy holds whole batches only.
    /// The outbox is not copied (a restored store starts a new history; its
    /// sequence counter goes on from the copied value).
    ///
    /// Format: `SMS-STORE-1\n | seq u64 | trees u32 | per tree: name_len u16 |
    /// name | entries u64 | per entry: key_len u32 | key | val_len u32 | val`,
    /// big-endian.
    pub fn export(&self, out: &mut dyn Write) -> Result<SnapshotSummary, StoreError> {
        let _alone = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let io = |e: std::io::Error| StoreError::Snapshot {
            path: self.path.clone(),
            reason: format!("writing: {e}"),
        };
        let mut names: Vec<Vec<u8>> = self
            .db
            .tree_names()
            .into_iter()
            .map(|n| n.to_vec())
            .filter(|n| !n.starts_with(b"__"))
            .collect();
        names.sort();
        let seq = self.last_seq()?;
        out.write_all(SNAPSHOT_MAGIC).map_err(io)?;
        out.write_all(&seq.to_be_bytes()).map_err(io)?;
        out.write_all(&(names.len() as u32).to_be_bytes())
            .map_err(io)?;
        let mut summary = SnapshotSummary {
            seq,
            ..Default::default()
        };
        for name in &names {
            let tree = self.db.open_tree(name).map_err(|e| self.sled_err(e))?;
            out.write_all(&(name.len() as u16).to_be_bytes())
                .map_err(io)?;
            out.write_all(name).map_err(io)?;
            out.write_all(&(tree.len() as u64).to_be_bytes())
                .map_err(io)?;
            let mut n = 0u64;
            for item in tree.iter() {
                let (k, v) = item.map_err(|e| self.sled_err(e))?;
                out.write_all(&(k.len() as u32).to_be_bytes()).map_err(io)?;
                out.write_all(&k).map_err(io)?;
                out.write_all(&(v.len() as u32).to_be_bytes()).map_err(io)?;
                out.write_all(&v).map_err(io)?;
                n += 1;
            }
            if n != tree.len() as u64 {
                return Err(StoreError::Snapshot {
                    path: self.path.clone(),
                    reason: format!(
                        "tree `{}` changed while copied",
                        String::from_utf8_lossy(name)
                    ),
                });
            }
            summary.trees += 1;
            summary.records += n;
        }
        out.flush().map_err(io)?;
        Ok(summary)
    }

    /// Makes a new store in `path` (absent or an empty directory) from what
    /// [`Store::export`] wrote, flushed before it returns. A snapshot that
    /// is truncated, malformed or has bytes after its end is refused; the
    /// half-made directory is then the caller's to remove.
    pub fn import(
        path: &Path,
        input: &mut dyn Read,
    ) -> Result<(Store, SnapshotSummary), StoreError> {
        let bad = |reason: String| StoreError::Snapshot {
            path: path.to_path_buf(),
            reason,
        };
        if std::fs::read_dir(path)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            return Err(bad("the directory is not empty".into()));
        }
        let mut rd = SnapshotReader { input, at: 0 };
        let magic = rd.bytes(SNAPSHOT_MAGIC.len()).map_err(&bad)?;
        if magic != SNAPSHOT_MAGIC {
            return Err(bad("not a store snapshot (wrong magic)".into()));
        }
        let seq = u64::from_be_bytes(rd.array().map_err(&bad)?);
        let trees = u32::from_be_bytes(rd.array().map_err(&bad)?);
        let store = Store::open(path)?;
        let mut summary = SnapshotSummary {
            seq,
            ..Default::default()
        };
        for _ in 0..trees {
            let len = u16::from_be_bytes(rd.array().map_err(&bad)?) as usize;
            let name = String::from_utf8(rd.bytes(len).map_err(&bad)?)
                .map_err(|_| bad("tree name is not UTF-8".into()))?;
            let tree = store.tree(&name)?;
            let entries = u64::from_be_bytes(rd.array().map_err(&bad)?);
            for _ in 0..entries {
                let klen = u32::from_be_bytes(rd.array().map_err(&bad)?) as usize;
                let key = rd.bytes(klen).map_err(&bad)?;
                let vlen = u32::from_be_bytes(rd.array().map_err(&bad)?) as usize;
                let value = rd.bytes(vlen).map_err(&bad)?;
                tree.insert(key, value).map_err(|e| store.sled_err(e))?;
            }
            summary.trees += 1;
            summary.records += entries;
        }
        let mut rest = [0u8; 1];
        match rd.input.read(&mut rest) {
            Ok(0) => {}
            Ok(_) => return Err(bad(format!("bytes after the end at offset {}", rd.at))),
            Err(e) => return Err(bad(format!("reading: {e}"))),
        }
        store
            .meta
            .insert(SEQ_KEY, &seq.to_be_bytes())
            .map_err(|e| store.sled_err(e))?;
        store.db.flush().map_err(|e| store.sled_err(e))?;
        Ok((store, summary))
    }
}

/// Replaces the store in directory `path` (its owner stopped) by the one
/// `input` holds, keeping the other files of that directory. The snapshot
/// is imported beside it first, so a damaged one changes nothing; the
/// replaced database files are kept in `.<name>.before-restore` next to
/// `path` until the next restore.
pub fn restore_store(path: &Path, input: &mut dyn Read) -> Result<SnapshotSummary, StoreError> {
    let fail = |reason: String| StoreError::Snapshot {
        path: path.to_path_buf(),
        reason,
    };
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p, n.to_string_lossy().to_string()),
        _ => return Err(fail("not a directory path".into())),
    };
    let staged = parent.join(format!(".{name}.restoring"));
    let kept = parent.join(format!(".{name}.before-restore"));
    for d in [&staged, &kept] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(|e| fail(format!("{}: {e}", d.display())))?;
        }
    }
    let summary = match Store::import(&staged, input) {
        Ok((store, summary)) => {
            drop(store);
            summary
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(e);
        }
    };
    std::fs::create_dir_all(path).map_err(|e| fail(format!("{e}")))?;
    std::fs::create_dir(&kept).map_err(|e| fail(format!("{}: {e}", kept.display())))?;
    // sled 0.34's own files: `conf`, `db`, `blobs/`, `snap.*`.
    let ours = |n: &str| matches!(n, "conf" | "db" | "blobs") || n.starts_with("snap.");
    let entries = std::fs::read_dir(path).map_err(|e| fail(format!("{e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("{e}")))?;
        let n = entry.file_name().to_string_lossy().to_string();
        if ours(&n) {
            std::fs::rename(entry.path(), kept.join(&n))
                .map_err(|e| fail(format!("moving {n} aside: {e}")))?;
        }
    }
    let entries = std::fs::read_dir(&staged).map_err(|e| fail(format!("{e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("{e}")))?;
        std::fs::rename(entry.path(), path.join(entry.file_name())).map_err(|e| {
            fail(format!(
                "moving the restored {} in (the replaced files are in {}): {e}",
                entry.file_name().to_string_lossy(),
                kept.display()
            ))
        })?;
    }
    std::fs::remove_dir(&staged).map_err(|e| fail(format!("{e}")))?;
    crate::files::sync_dir(path).map_err(|e| fail(format!("{e}")))?;
    Ok(summary)
}

const SNAPSHOT_MAGIC: &[u8] = b"SMS-STORE-1\n";

/// The outbox sequence record: 8 bytes big-endian, absent meaning 0.
fn decode_seq(v: Option<&[u8]>) -> Result<u64, &'static str> {
    match v {
        None => Ok(0),
        Some(v) => v
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| "outbox sequence record has a wrong size"),
    }
}

/// What a snapshot held: shown by backups and restores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The store's sequence counter when it was copied.
    pub seq: u64,
    /// Data trees copied.
    pub trees: u32,
    /// Records copied, all trees together.
    pub records: u64,
}

struct SnapshotReader<'a> {
    input: &'a mut dyn Read,
    at: u64,
}

impl SnapshotReader<'_> {
    /// Reads exactly `n` bytes without trusting `n` for an allocation.
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut buf = Vec::new();
        let got = (&mut self.input)
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|e| format!("reading at offset {}: {e}", self.at))?;
        if got != n {
            return Err(format!(
                "truncated at offset {}: need {n} bytes, have {got}",
                self.at
            ));
        }
        self.at += n as u64;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let v = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&v);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Format 2 of a test owner: values of tree `t` upper-cased.
    fn upper(store: &Store) -> Result<Batch, String> {
        let mut b = Batch::new();
        for (k, v) in store.scan("t", b"").map_err(|e| e.to_string())? {
            b.put("t", k, v.to_ascii_uppercase());
        }
        Ok(b)
    }

    fn refuse(_: &Store) -> Result<Batch, String> {
        Err("the disk said no".into())
    }

    const V1: Schema = Schema {
        owner: "sms-test",
        version: 1,
        migrations: &[],
    };
    const V2: Schema = Schema {
        owner: "sms-test",
        version: 2,
        migrations: &[Migration {
            to: 2,
            what: "values upper-cased",
            step: upper,
        }],
    };

    #[test]
    fn a_store_is_migrated_forward_once_and_an_older_build_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        // Format 1, with data.
        {
            let s = Store::open_with_schema(dir.path(), &V1).unwrap();
            assert_eq!(s.format_of("sms-test").unwrap(), Some(1));
            let mut b = Batch::new();
            b.put("t", "k", b"value".to_vec());
            s.commit(&b).unwrap();
        }
        // The newer build migrates it, once.
        {
            let s = Store::open_with_schema(dir.path(), &V2).unwrap();
            assert_eq!(s.get("t", "k").unwrap().unwrap(), b"VALUE");
            assert_eq!(s.format_of("sms-test").unwrap(), Some(2));
            let seq = s.last_seq().unwrap();
            drop(s);
            let s = Store::open_with_schema(dir.path(), &V2).unwrap();
            assert_eq!(s.last_seq().unwrap(), seq, "migrated twice");
        }
        // The older build (a fallback to the other slot) refuses it and
        // changes nothing.
        let err = Store::open_with_schema(dir.path(), &V1).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                StoreError::NewerFormat {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{text}"
        );
        assert!(
            text.contains("newer firmware") && text.contains("nothing changed"),
            "{text}"
        );
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.format_of("sms-test").unwrap(), Some(2));
        assert_eq!(s.get("t", "k").unwrap().unwrap(), b"VALUE");
    }

    #[test]
    fn a_store_from_before_formats_is_format_1_and_a_failed_step_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let mut b = Batch::new();
            b.put("t", "k", b"old".to_vec());
            s.commit(&b).unwrap();
        }
        const BROKEN: Schema = Schema {
            owner: "sms-test",
            version: 2,
            migrations: &[Migration {
                to: 2,
                what: "a step that fails",
                step: refuse,
            }],
        };
        let err = Store::open_with_schema(dir.path(), &BROKEN).unwrap_err();
        assert!(err.to_string().contains("the disk said no"), "{err}");
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.format_of("sms-test").unwrap(), None);
        assert_eq!(s.get("t", "k").unwrap().unwrap(), b"old");
        drop(s);
        let s = Store::open_with_schema(dir.path(), &V2).unwrap();
        assert_eq!(s.get("t", "k").unwrap().unwrap(), b"OLD");
    }

    #[test]
    fn a_store_of_a_newer_layer_is_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        {
            let db = sled::open(dir.path()).unwrap();
            let meta = db.open_tree(META_TREE).unwrap();
            meta.insert(LAYER_KEY, &(LAYER_FORMAT + 1).to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StoreError::NewerFormat { owner, .. } if owner == "the store layer"),
            "{err}"
        );
    }

    #[test]
    fn an_unpaired_store_keeps_a_bounded_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = OUTBOX_KEEP + 3000;
        for i in 0..n {
            let mut b = Batch::new();
            b.put("t", i.to_be_bytes(), vec![1]);
            store.apply(&b).unwrap();
        }
        let first = store.first_outbox_seq().unwrap().unwrap();
        assert!(first > 1, "nothing trimmed");
        let kept = n - first + 1;
        assert!(kept <= OUTBOX_KEEP + 1024, "outbox of {kept}");
        assert!(kept >= OUTBOX_KEEP, "trimmed too much: from {first}");
        assert_eq!(store.scan("t", b"").unwrap().len() as u64, n);
    }

    #[test]
    fn writes_are_recorded_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = Batch::new();
        b.put("active", "dv", b"1.0".to_vec())
            .put("packages", "dv/1.0", b"x".to_vec());
        assert_eq!(store.apply(&b).unwrap(), 2);
        let mut b = Batch::new();
        b.delete("packages", "dv/1.0");
        assert_eq!(store.apply(&b).unwrap(), 3);
        let out = store.outbox_after(0, 100).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].tree, "active");
        assert_eq!(out[2].value, None);
        assert_eq!(store.get("packages", "dv/1.0").unwrap(), None);
        assert_eq!(store.get("active", "dv").unwrap(), Some(b"1.0".to_vec()));
    }

    #[test]
    fn reserved_trees_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = Batch::new();
        b.put("ok", "k", b"v".to_vec())
            .put("__outbox", "k", b"v".to_vec());
        assert!(matches!(store.apply(&b), Err(StoreError::ReservedTree(_))));
        assert_eq!(store.last_seq().unwrap(), 0);
        assert_eq!(store.get("ok", "k").unwrap(), None);
    }

    #[test]
    fn a_snapshot_makes_an_equal_store_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        for i in 0..20u32 {
            let mut b = Batch::new();
            b.put("devices", i.to_be_bytes(), vec![i as u8; i as usize])
                .put("jobs", format!("j{i}"), b"done".to_vec());
            store.apply(&b).unwrap();
        }
        let mut b = Batch::new();
        b.delete("jobs", "j3");
        store.apply(&b).unwrap();
        let mut snap = Vec::new();
        let sum = store.export(&mut snap).unwrap();
        assert_eq!((sum.seq, sum.trees, sum.records), (41, 2, 39));

        let (copy, got) = Store::import(&dir.path().join("b"), &mut snap.as_slice()).unwrap();
        assert_eq!(got, sum);
        assert_eq!(
            copy.scan("devices", "").unwrap(),
            store.scan("devices", "").unwrap()
        );
        assert_eq!(
            copy.scan("jobs", "").unwrap(),
            store.scan("jobs", "").unwrap()
        );
        assert_eq!(copy.get("jobs", "j3").unwrap(), None);
        assert!(copy.outbox_after(0, 10).unwrap().is_empty());
        let mut b = Batch::new();
        b.put("jobs", "next", b"x".to_vec());
        assert_eq!(copy.apply(&b).unwrap(), 42, "the counter goes on");

        for cut in [0, 5, 20, snap.len() / 2, snap.len() - 1] {
            let err = Store::import(&dir.path().join(format!("cut{cut}")), &mut &snap[..cut])
                .unwrap_err()
                .to_string();
            assert!(err.contains("truncated") || err.contains("magic"), "{err}");
        }
        let mut longer = snap.clone();
        longer.push(0);
        let err = Store::import(&dir.path().join("long"), &mut longer.as_slice()).unwrap_err();
        assert!(err.to_string().contains("after the end"), "{err}");
        let err = Store::import(&dir.path().join("b"), &mut snap.as_slice()).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }

    #[test]
    fn a_snapshot_taken_during_writes_holds_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        let snaps = std::thread::scope(|s| {
            let writer = store.clone();
            let done = &done;
            s.spawn(move || {
                for i in 0..200u32 {
                    let mut b = Batch::new();
                    b.put("a", i.to_be_bytes(), vec![1; 64])
                        .put("b", i.to_be_bytes(), vec![2; 64]);
                    writer.apply(&b).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let mut snaps = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let mut v = Vec::new();
                store.export(&mut v).unwrap();
                snaps.push(v);
            }
            snaps
        });
        assert!(snaps.len() > 10, "only {} snapshots taken", snaps.len());
        for (i, snap) in snaps.iter().enumerate() {
            let (copy, sum) =
                Store::import(&dir.path().join(format!("s{i}")), &mut snap.as_slice()).unwrap();
            let a = copy.scan("a", "").unwrap().len();
            let b = copy.scan("b", "").unwrap().len();
            assert_eq!(a, b, "snapshot {i} split a batch");
            assert_eq!(sum.seq, 2 * a as u64);
        }
    }

    #[test]
    fn a_restore_replaces_the_database_and_keeps_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("updated");
        let snap = {
            let src = Store::open(&dir.path().join("src")).unwrap();
            let mut b = Batch::new();
            b.put("packages", "dv/2", b"from backup".to_vec());
            src.apply(&b).unwrap();
            let mut v = Vec::new();
            src.export(&mut v).unwrap();
            v
        };
        {
            let store = Store::open(&live).unwrap();
            let mut b = Batch::new();
            b.put("packages", "dv/9", b"current".to_vec());
            store.apply(&b).unwrap();
        }
        std::fs::write(live.join("time-floor"), b"1700000000").unwrap();

        let err = restore_store(&live, &mut &snap[..snap.len() - 3]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let store = Store::open(&live).unwrap();
        assert!(
            store.get("packages", "dv/9").unwrap().is_some(),
            "a damaged snapshot changed the store"
        );
        drop(store);

        let sum = restore_store(&live, &mut snap.as_slice()).unwrap();
        assert_eq!(sum.records, 1);
        let store = Store::open(&live).unwrap();
        assert_eq!(
            store.get("packages", "dv/2").unwrap(),
            Some(b"from backup".to_vec())
        );
        assert_eq!(store.get("packages", "dv/9").unwrap(), None);
        assert_eq!(
            std::fs::read(live.join("time-floor")).unwrap(),
            b"1700000000"
        );
        assert!(dir.path().join(".updated.before-restore/db").exists());
    }

    #[test]
    fn second_opener_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _store = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }

    #[test]
    fn outbox_survives_reopen_and_trim_keeps_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for i in 0..10u32 {
                let mut b = Batch::new();
                b.put("t", i.to_be_bytes(), vec![1]);
                store.apply(&b).unwrap();
            }
            assert_eq!(store.trim_outbox(4).unwrap(), 4);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.last_seq().unwrap(), 10);
        let rest = store.outbox_after(0, 100).unwrap();
        assert_eq!(rest.first().map(|c| c.seq), Some(5));
        let mut b = Batch::new();
        b.put("t", "x", vec![2]);
        assert_eq!(store.apply(&b).unwrap(), 11);
    }

    #[test]
    fn concurrent_writers_leave_a_gap_free_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..50u8 {
                        let mut b = Batch::new();
                        b.put("a", [t, i], vec![i]).put("b", [t, i], vec![t]);
                        store.apply(&b).unwrap();
                    }
                });
            }
        });
        let out = store.outbox_after(0, 10_000).unwrap();
        assert_eq!(out.len(), 400);
        for (i, c) in out.iter().enumerate() {
            assert_eq!(c.seq, i as u64 + 1);
        }
        // Both writes of each batch are adjacent: no other batch interleaved.
        for pair in out.chunks(2) {
            assert_eq!(pair[0].tree, "a");
            assert_eq!(pair[1].tree, "b");
            assert_eq!(pair[0].key, pair[1].key);
        }
    }

    #[derive(Debug, Clone)]
    enum TestOp {
        Put(u8, u8, Vec<u8>),
        Del(u8, u8),
    }

    fn op_strategy() -> impl Strategy<Value = TestOp> {
        prop_oneof![
            (
                0u8..3,
                0u8..8,
                proptest::collection::vec(any::<u8>(), 0..16)
            )
                .prop_map(|(t, k, v)| TestOp::Put(t, k, v)),
            (0u8..3, 0u8..8).prop_map(|(t, k)| TestOp::Del(t, k)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Replaying the outbox from nothing reproduces exactly the data.
        #[test]
        fn outbox_replay_reproduces_data(batches in proptest::collection::vec(proptest::collection::vec(op_strategy(), 1..6), 1..12)) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            for ops in &batches {
                let mut b = Batch::new();
                for op in ops {
                    match op {
                        TestOp::Put(t, k, v) => { b.put(&format!("t{t}"), [*k], v.clone()); }
                        TestOp::Del(t, k) => { b.delete(&format!("t{t}"), [*k]); }
                    }
                }
                store.apply(&b).unwrap();
            }
            let total: usize = batches.iter().map(|b| b.len()).sum();
            let out = store.outbox_after(0, usize::MAX).unwrap();
            prop_assert_eq!(out.len(), total);
            let mut replay: BTreeMap<(String, Vec<u8>), Vec<u8>> = BTreeMap::new();
            for (i, c) in out.iter().enumerate() {
                prop_assert_eq!(c.seq, i as u64 + 1);
                match &c.value {
                    Some(v) => { replay.insert((c.tree.clone(), c.key.clone()), v.clone()); }
                    None => { replay.remove(&(c.tree.clone(), c.key.clone())); }
                }
            }
            let mut actual = BTreeMap::new();
            for t in 0..3u8 {
                let name = format!("t{t}");
                for (k, v) in store.scan(&name, []).unwrap() {
                    actual.insert((name.clone(), k), v);
                }
            }
            prop_assert_eq!(replay, actual);
        }

        /// The change encoding round-trips and rejects truncation.
        #[test]
        fn change_encoding_round_trips(tree in "[a-z]{1,12}", key in proptest::collection::vec(any::<u8>(), 0..40), value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))) {
            let c = Change { seq: 7, tree, key, value };
            let bytes = c.encode_body();
            prop_assert_eq!(Change::decode_body(7, &bytes).unwrap(), c);
            for cut in 0..bytes.len() {
                prop_assert!(Change::decode_body(7, &bytes[..cut]).is_err());
            }
        }
    }
}
