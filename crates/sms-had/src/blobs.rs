//! Package files (blobs) between the two nodes, over SSH (ADR 23).
//!
//! A batch that names a blob ([`sms_core::store::Batch::name_blob`]) is
//! acknowledged by the secondary only once the file is on its disk and its
//! SHA-256 checked. The secondary fetches it with OpenSSH from a dedicated
//! account on the primary whose key is bound (`restrict,command=...`) to
//! `sms-had blob-serve`, which does one thing: send the blob of a digest
//! from an offset. A transfer cut off (a killed node, a broken link)
//! resumes from the partial file, whose prefix is hashed again.

use serde::Deserialize;
use sms_core::blob::{BlobStore, Digest};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where and how the secondary fetches blobs from the primary.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BlobSource {
    /// The primary's address (host name or IP).
    pub host: String,
    /// Its SSH port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The account whose key runs `sms-had blob-serve` only.
    #[serde(default = "default_user")]
    pub user: String,
    /// This node's private key for that account.
    pub key: PathBuf,
    /// The primary's host key (`known_hosts` format): no trust on first use.
    pub known_hosts: PathBuf,
}

fn default_port() -> u16 {
    22
}

fn default_user() -> String {
    "sms-ha-blob".into()
}

/// The command line the serving side takes: `get <sha256 hex> <offset>`.
pub fn request(digest: &Digest, offset: u64) -> String {
    format!("get {} {offset}", digest.to_hex())
}

/// Parses a request of [`request`]'s form; anything else is refused.
pub fn parse_request(line: &str) -> Result<(Digest, u64), String> {
    let mut words = line.split(' ');
    let (Some("get"), Some(hex), Some(offset), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(format!(
            "`{}`: the only request is `get <sha256> <offset>`",
            line.escape_debug()
        ));
    };
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "`{}`: not a SHA-256 in lower-case hex",
            hex.escape_debug()
        ));
    }
    let mut d = [0u8; 32];
    for (i, byte) in d.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("`{hex}`: not hex"))?;
    }
    let offset: u64 = offset
        .parse()
        .map_err(|_| format!("`{}`: not an offset", offset.escape_debug()))?;
    Ok((Digest(d), offset))
}

/// `sms-had blob-serve`: sends the blob `line` asks for from the first of
/// `dirs` (blob stores) that has it, from the offset on, to `out`.
pub fn serve(dirs: &[PathBuf], line: &str, out: &mut impl Write) -> Result<u64, String> {
    let (digest, offset) = parse_request(line)?;
    let Some(path) = dirs
        .iter()
        .map(|d| BlobStore::at(d).path(&digest))
        .find(|p| p.is_file())
    else {
        return Err(format!("no blob {} here", digest.to_hex()));
    };
    let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if offset > len {
        return Err(format!("offset {offset} is beyond the blob's {len} bytes"));
    }
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::copy(&mut f, out).map_err(|e| format!("sending {}: {e}", digest.to_hex()))
}

/// Fetches blob `digest` of `len` bytes from `src` into `store` (resuming
/// a partial file), adding what arrives to `progress`; the file enters
/// the store only with the right length and digest. Blocking.
pub fn fetch(
    src: &BlobSource,
    store: &BlobStore,
    digest: &Digest,
    len: u64,
    progress: &AtomicU64,
) -> Result<(), String> {
    let hex = digest.to_hex();
    let what = |e: &dyn std::fmt::Display| format!("blob {hex}: {e}");
    // Makes the store's directories on first use.
    let store = &BlobStore::open(store.root()).map_err(|e| what(&e))?;
    let partial = store.partial_path(digest);
    let mut have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    if have > len {
        store.discard_partial(digest).map_err(|e| what(&e))?;
        have = 0;
    }
    let mut writer = store.resume_partial(digest, have).map_err(|e| what(&e))?;
    progress.fetch_add(have, Ordering::Relaxed);
    if have > 0 {
        tracing::info!(blob = %hex, have, len, "resuming the blob transfer from its partial file");
    }
    let mut child = ssh(src)
        .arg(request(digest, have))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| what(&format!("starting ssh: {e}")))?;
    let mut got = have;
    // A thread drains ssh while this one hashes and writes: neither waits
    // for the other (twice the throughput of one loop doing both).
    let Some(mut out) = child.stdout.take() else {
        let _ = child.kill();
        return Err(what(&"no output of ssh"));
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(8);
    let reader = std::thread::spawn(move || loop {
        let mut buf = vec![0u8; 1 << 20];
        match out.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx.send(Ok(buf)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    });
    let copied: Result<(), String> = (|| {
        for chunk in rx.iter() {
            let chunk = chunk.map_err(|e| format!("reading: {e}"))?;
            got += chunk.len() as u64;
            if got > len {
                return Err(format!("the peer sent more than the {len} bytes named"));
            }
            writer
                .write(&chunk)
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    })();
    if copied.is_err() {
        let _ = child.kill();
    }
    // The reader may wait on a full channel: it ends when the channel goes.
    drop(rx);
    let _ = reader.join();
    let status = child.wait().map_err(|e| what(&e))?;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let (written, actual) = writer.finish().map_err(|e| what(&e))?;
    copied.map_err(|e| what(&e))?;
    if !status.success() {
        return Err(what(&format!(
            "ssh {}@{}:{} ended with {status}: {}",
            src.user,
            src.host,
            src.port,
            stderr.trim()
        )));
    }
    store
        .commit_measured(digest, len, written, actual)
        .map_err(|e| what(&e))?;
    Ok(())
}

/// The OpenSSH client for `src`: key only, the pinned host key, no
/// terminal, no forwarding, keep-alives that notice a dead peer.
fn ssh(src: &BlobSource) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-i")
        .arg(&src.key)
        .args(["-p", &src.port.to_string()])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", src.known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "ServerAliveInterval=2",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "LogLevel=ERROR",
            "-T",
            "-a",
            "-x",
        ])
        .arg(format!("{}@{}", src.user, src.host));
    c
}

/// The blob store replicas' blobs go to (under the node's state).
pub fn replica_blobs(state_dir: &Path) -> PathBuf {
    state_dir.join("blobs")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_read_back_and_nothing_else_is_taken() {
        let d = Digest::of(b"x");
        assert_eq!(parse_request(&request(&d, 7)).unwrap(), (d, 7));
        for bad in [
            "",
            "get",
            "put 00 0",
            &format!("get {} 0 extra", d.to_hex()),
            &format!("get {} -1", d.to_hex()),
            &format!("get {} 0", d.to_hex().to_uppercase()),
            "get ../../etc/shadow 0",
            &format!("get {}; sh 0", &d.to_hex()[..60]),
        ] {
            assert!(parse_request(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serves_from_an_offset_and_refuses_what_it_does_not_have() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = store.put_bytes(b"0123456789").unwrap();
        let mut out = Vec::new();
        let n = serve(&[dir.path().to_path_buf()], &request(&d, 4), &mut out).unwrap();
        assert_eq!((n, out.as_slice()), (6, &b"456789"[..]));
        let other = Digest::of(b"y");
        assert!(serve(&[dir.path().to_path_buf()], &request(&other, 0), &mut out).is_err());
        assert!(serve(&[dir.path().to_path_buf()], &request(&d, 11), &mut out).is_err());
    }
}
