//! Content-addressed blob store for package files.
//!
//! Files live at `<root>/sha256/<hex digest>` and are written once: into
//! `<root>/tmp/`, fsynced, verified against the expected digest and length,
//! then renamed into place (and the directory fsynced). A file is therefore
//! either absent or complete and verified; readers (the distributor, the
//! pull server) never see a partial package.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A SHA-256 digest, shown and parsed as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!("not a lowercase hex SHA-256 digest: {s:?}"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| e.to_string())?;
        Ok(Digest(out))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A file system operation failed (including a full disk).
    #[error("blob store {path}: {op}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// The content has another length than the signed metadata says.
    #[error("length mismatch: expected {expected} bytes, got {actual}")]
    LengthMismatch {
        /// Length from the metadata.
        expected: u64,
        /// Length of what was received.
        actual: u64,
    },
    /// The content has another digest than the signed metadata says.
    #[error("digest mismatch: expected sha256 {expected}, got {actual}")]
    DigestMismatch {
        /// Digest from the metadata.
        expected: Digest,
        /// Digest of what was received.
        actual: Digest,
    },
}

impl BlobError {
    /// True when the error means the disk (or the store's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, BlobError::Io { source, .. } if source.raw_os_error() == Some(libc_enospc()) || source.kind() == io::ErrorKind::StorageFull)
    }
}

fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

/// Mode of a stored blob: the owner (the updater) writes once, group `sms`
/// (the distributor) reads, others nothing.
pub const BLOB_MODE: u32 = 0o640;

/// The blob store rooted at one directory (normally `/var/lib/sms/blobs`).
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl BlobStore {
    /// Opens the store, creating its directories when missing.
    ///
    /// The writer runs with a private umask (0077); the readers are other
    /// daemons of group `sms`, so the store sets its modes explicitly:
    /// directories 0750 (the temporary one 0700), blobs 0640.
    pub fn open(root: &Path) -> Result<BlobStore, BlobError> {
        use std::os::unix::fs::PermissionsExt;
        for (sub, mode) in [("", 0o750), ("sha256", 0o750), ("tmp", 0o700)] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(&dir, "create directory"))?;
            let current = fs::metadata(&dir)
                .map_err(io_err(&dir, "stat directory"))?
                .permissions()
                .mode()
                & 0o777;
            if current != mode {
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                    .map_err(io_err(&dir, "set directory mode"))?;
            }
        }
        Ok(BlobStore {
            root: root.to_path_buf(),
        })
    }

    /// A read-only view of the store at `root`, creating nothing: for the
    /// daemons that read packages the updater wrote.
    pub fn at(root: &Path) -> BlobStore {
        BlobStore {
            root: root.to_path_buf(),
        }
    }

    /// Root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("sha256").join(digest.to_hex())
    }

    /// True when a complete blob with `digest` is stored.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Where a partial download of `digest` is kept between attempts, so
    /// that an interrupted transfer resumes instead of starting over.
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{}.part", digest.to_hex()))
    }

    /// Removes the partial download of `digest`, if any.
    pub fn discard_partial(&self, digest: &Digest) -> Result<(), BlobError> {
        let p = self.partial_path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p, "remove partial file")(e)),
        }
    }

    /// Removes partial files other than those of `keep` (left by downloads
    /// that are no longer wanted).
    pub fn clean_partials(&self, keep: &[Digest]) -> Result<usize, BlobError> {
        let dir = self.root.join("tmp");
        let keep: Vec<String> = keep
            .iter()
            .map(|d| format!("{}.part", d.to_hex()))
            .collect();
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir, "list directory"))? {
            let entry = entry.map_err(io_err(&dir, "list directory"))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if !keep.contains(&name) {
                let p = entry.path();
                fs::remove_file(&p).map_err(io_err(&p, "remove stale temporary file"))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Verifies the partial file of `digest` (length and digest) and moves it
    /// into the store. On a mismatch the partial file is removed, so a bad
    /// download is never retried from a poisoned prefix.
    pub fn commit_partial(&self, digest: &Digest, expected_len: u64) -> Result<PathBuf, BlobError> {
        let (len, actual) = hash_file(&self.partial_path(digest))?;
        self.commit_measured(digest, expected_len, len, actual)
    }

    /// Like [`BlobStore::commit_partial`], for a caller that hashed the
    /// partial file while writing it (`len`, `actual`), which saves reading
    /// a large file twice.
    pub fn commit_measured(
        &self,
        digest: &Digest,
        expected_len: u64,
        len: u64,
        actual: Digest,
    ) -> Result<PathBuf, BlobError> {
        let part = self.partial_path(digest);
        if len != expected_len {
            self.discard_partial(digest)?;
            return Err(BlobError::LengthMismatch {
                expected: expected_len,
                actual: len,
            });
        }
        if actual != *digest {
            self.discard_partial(digest)?;
            return Err(BlobError::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        self.install(&part, digest)
    }

    /// Stores `bytes` and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let digest = Digest::of(bytes);
        if self.contains(&digest) {
            return Ok(digest);
        }
        let tmp =
            self.root
                .join("tmp")
                .join(format!("{}.put{}", digest.to_hex(), std::process::id()));
        let mut f = File::create(&tmp).map_err(io_err(&tmp, "create temporary file"))?;
        let written = f
            .write_all(bytes)
            .map_err(io_err(&tmp, "write temporary file"));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        drop(f);
        self.install(&tmp, &digest)?;
        Ok(digest)
    }

    fn install(&self, tmp: &Path, digest: &Digest) -> Result<PathBuf, BlobError> {
        let f = OpenOptions::new()
            .write(true)
            .open(tmp)
            .map_err(io_err(tmp, "open for fsync"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(BLOB_MODE))
                .map_err(io_err(tmp, "set file mode"))?;
        }
        f.sync_all().map_err(io_err(tmp, "fsync"))?;
        drop(f);
        let dest = self.path(digest);
        fs::rename(tmp, &dest).map_err(io_err(&dest, "rename into store"))?;
        let dir = self.root.join("sha256");
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir, "fsync directory"))?;
        Ok(dest)
    }

    /// Re-reads a stored blob and checks its digest (used at start-up and
    /// before distributing, so that bit rot is found before it spreads).
    pub fn verify(&self, digest: &Digest) -> Result<u64, BlobError> {
        let p = self.path(digest);
        let (len, actual) = hash_file(&p)?;
        if actual != *digest {
            return Err(BlobError::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        Ok(len)
    }

    /// Removes a stored blob (retention).
    pub fn remove(&self, digest: &Digest) -> Result<(), BlobError> {
        let p = self.path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&p, "remove blob")(e)),
        }
    }

    /// Digests of all stored blobs.
    pub fn list(&self) -> Result<Vec<Digest>, BlobError> {
        let dir = self.root.join("sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir, "list directory"))? {
            let entry = entry.map_err(io_err(&dir, "list directory"))?;
            if let Ok(d) = entry.file_name().to_string_lossy().parse() {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// A stored blob's bytes, read whole and checked against `digest`:
    /// a blob that changed on disk is an error, never served.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let p = self.path(digest);
        let data = fs::read(&p).map_err(io_err(&p, "read"))?;
        let actual = Digest::of(&data);
        if actual != *digest {
            return Err(BlobError::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        Ok(data)
    }

    /// Opens the partial file of `digest` to go on writing it after its
    /// first `resume_from` octets (hashed again, so that the digest covers
    /// the whole file); what lies beyond is cut off. Blocking: call it
    /// from a blocking thread.
    pub fn resume_partial(&self, digest: &Digest, resume_from: u64) -> io::Result<PartialWriter> {
        let path = self.partial_path(digest);
        let mut hasher = Sha256::new();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = resume_from;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "partial file shrank",
                ));
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        file.set_len(resume_from)?;
        // A helper thread flushes what is written every few MiB, so that
        // the fsync before the file enters the store has little left to do
        // and the disk works while the network does.
        let syncer_file = file.try_clone()?;
        let (sync_tx, sync_rx) = std::sync::mpsc::channel::<()>();
        let syncer = std::thread::spawn(move || {
            while sync_rx.recv().is_ok() {
                let _ = syncer_file.sync_data();
            }
        });
        Ok(PartialWriter {
            out: io::BufWriter::with_capacity(1 << 20, file),
            hasher,
            len: resume_from,
            since_sync: 0,
            sync_tx,
            syncer,
        })
    }

    /// Files in the temporary directory (for tests and diagnostics).
    pub fn temp_files(&self) -> Result<Vec<PathBuf>, BlobError> {
        let dir = self.root.join("tmp");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir, "list directory"))? {
            out.push(entry.map_err(io_err(&dir, "list directory"))?.path());
        }
        Ok(out)
    }
}

/// Octets written between two background flushes of a partial file.
const SYNC_EVERY: usize = 8 << 20;

/// A partial file of the store being written: hashed as it grows, flushed
/// in the background, committed with [`BlobStore::commit_measured`].
pub struct PartialWriter {
    out: io::BufWriter<File>,
    hasher: Sha256,
    len: u64,
    since_sync: usize,
    sync_tx: std::sync::mpsc::Sender<()>,
    syncer: std::thread::JoinHandle<()>,
}

impl PartialWriter {
    /// Appends `chunk`.
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.out.write_all(chunk)?;
        self.len += chunk.len() as u64;
        self.since_sync += chunk.len();
        if self.since_sync >= SYNC_EVERY {
            self.out.flush()?;
            let _ = self.sync_tx.send(());
            self.since_sync = 0;
        }
        Ok(())
    }

    /// Flushes and returns the file's length and digest so far.
    pub fn finish(self) -> io::Result<(u64, Digest)> {
        let PartialWriter {
            mut out,
            hasher,
            len,
            sync_tx,
            syncer,
            ..
        } = self;
        let flushed = out.flush();
        drop(sync_tx);
        let _ = syncer.join();
        flushed?;
        Ok((len, Digest(hasher.finalize().into())))
    }
}

/// Length and SHA-256 of a file.
pub fn hash_file(path: &Path) -> Result<(u64, Digest), BlobError> {
    let mut f = File::open(path).map_err(io_err(path, "open"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path, "read"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, Digest(h.finalize().into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = store.put_bytes(b"hello").unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert!(store.contains(&d));
        assert_eq!(store.verify(&d).unwrap(), 5);
        assert_eq!(store.list().unwrap(), vec![d]);
        assert!(store.temp_files().unwrap().is_empty());
    }

    #[test]
    fn tampered_partial_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let want = Digest::of(b"genuine content");
        fs::write(store.partial_path(&want), b"genuine c0ntent").unwrap();
        let err = store.commit_partial(&want, 15).unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }), "{err}");
        assert!(!store.contains(&want));
        assert!(store.temp_files().unwrap().is_empty());
    }

    #[test]
    fn short_partial_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let want = Digest::of(b"genuine content");
        fs::write(store.partial_path(&want), b"genuine").unwrap();
        let err = store.commit_partial(&want, 15).unwrap_err();
        assert!(
            matches!(
                err,
                BlobError::LengthMismatch {
                    expected: 15,
                    actual: 7
                }
            ),
            "{err}"
        );
        assert!(store.temp_files().unwrap().is_empty());
    }

    #[test]
    fn good_partial_is_installed() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let want = Digest::of(b"genuine content");
        fs::write(store.partial_path(&want), b"genuine content").unwrap();
        let p = store.commit_partial(&want, 15).unwrap();
        assert_eq!(fs::read(p).unwrap(), b"genuine content");
        assert!(store.temp_files().unwrap().is_empty());
    }

    #[test]
    fn digest_parsing_is_strict() {
        assert!("ABCD".parse::<Digest>().is_err());
        let d = Digest::of(b"x");
        assert_eq!(d.to_hex().parse::<Digest>().unwrap(), d);
        assert!(d.to_hex().to_uppercase().parse::<Digest>().is_err());
        assert!(format!("../{}", &d.to_hex()[3..])
            .parse::<Digest>()
            .is_err());
    }
}
