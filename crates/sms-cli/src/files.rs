//! The CLI's one file directory (`save`, `load`, `show files`).
//!
//! A file argument is a plain name ([`crate::grammar::ArgKind::File`]:
//! no `/`, no leading `.`), and the file is opened relative to the
//! directory, itself opened without following a link, with `O_NOFOLLOW` and
//! `O_NONBLOCK`: a symbolic link, a FIFO, a device or a file with another
//! name (a hard link) placed in the directory is refused, so nothing
//! outside the directory is ever read or written. The history file is
//! kept the same way ([`read_history`], [`write_history`]).

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// Largest file `load` reads.
const MAX_FILE: u64 = 1 << 20;

fn checked(name: &str) -> Result<(), String> {
    crate::grammar::ArgKind::File.check(name).map_err(|_| {
        format!(
            "{:?}: a file is a plain name in the CLI's file directory",
            crate::grammar::clean(name)
        )
    })
}

fn open_dir(dir: &Path) -> Result<OwnedFd, String> {
    let fd = nix::fcntl::open(
        dir,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("the file directory cannot be opened: {e}"))?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn why(name: &str, e: nix::Error) -> String {
    match e {
        nix::Error::ELOOP => format!("{name}: a link; only plain files are used"),
        nix::Error::ENOENT => format!("{name}: no such file (see show files)"),
        other => format!("{name}: {other}"),
    }
}

fn open_in(dir: &Path, name: &str, flags: OFlag, mode: Mode) -> Result<std::fs::File, String> {
    checked(name)?;
    let d = open_dir(dir)?;
    use std::os::fd::AsRawFd;
    let fd = openat(
        Some(d.as_raw_fd()),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        mode,
    )
    .map_err(|e| why(name, e))?;
    // SAFETY: `openat` returned a new descriptor that nothing else owns.
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    let st = fstat(fd).map_err(|e| why(name, e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(format!("{name}: not a plain file"));
    }
    // A hard link placed in the directory would let a write reach, or a
    // read show, a file that lives elsewhere.
    if st.st_nlink != 1 {
        return Err(format!(
            "{name}: has {} names (hard links); only plain files are used",
            st.st_nlink
        ));
    }
    Ok(f)
}

/// Reads a file of the directory.
pub fn read(dir: &Path, name: &str) -> Result<Vec<u8>, String> {
    let f = open_in(dir, name, OFlag::O_RDONLY, Mode::empty())?;
    let mut out = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{name}: {e}"))?;
    if out.len() as u64 > MAX_FILE {
        return Err(format!("{name}: larger than {MAX_FILE} bytes"));
    }
    Ok(out)
}

/// Writes (replaces) a file of the directory, mode 0640.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("the file directory: {e}"))?;
    let mut f = open_in(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT,
        Mode::from_bits_truncate(0o640),
    )?;
    f.set_len(0).map_err(|e| format!("{name}: {e}"))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{name}: {e}"))
}

/// The directory's plain files: name, size, modification time (Unix).
pub fn list(dir: &Path) -> Result<Vec<(String, u64, i64)>, String> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(format!("the file directory: {e}")),
    };
    for e in rd.flatten() {
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        use std::os::unix::fs::MetadataExt;
        out.push((
            e.file_name().to_string_lossy().to_string(),
            meta.len(),
            meta.mtime(),
        ));
    }
    out.sort();
    Ok(out)
}

/// The history lines of `path` (empty when there is none), read without
/// following a link and refusing a file with other names.
pub fn read_history(path: &Path) -> Vec<String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    match open_in(dir, name, OFlag::O_RDONLY, Mode::empty()) {
        Ok(f) => {
            let mut text = String::new();
            let _ = f.take(MAX_FILE).read_to_string(&mut text);
            text.lines()
                .filter(|l| !l.is_empty() && !l.starts_with("#V"))
                .map(str::to_string)
                .collect()
        }
        Err(_) => Vec::new(),
    }
}

/// Replaces the history file `path` with `lines`: written to a new file in
/// the same directory and renamed over the old name, so a link placed
/// there is replaced, never written through.
pub fn write_history(path: &Path, lines: &[String]) -> Result<(), String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err("no history file name".into());
    };
    let d = open_dir(dir)?;
    use std::os::fd::AsRawFd;
    let tmp = format!(".{name}.{}", std::process::id());
    let fd = openat(
        Some(d.as_raw_fd()),
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| why(&tmp, e))?;
    // SAFETY: `openat` returned a new descriptor that nothing else owns.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut text = lines.join("\n");
    text.push('\n');
    let written = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
    let renamed = written.and_then(|_| {
        nix::fcntl::renameat(Some(d.as_raw_fd()), tmp.as_str(), Some(d.as_raw_fd()), name)
            .map_err(std::io::Error::from)
    });
    if let Err(e) = renamed {
        let _ = nix::unistd::unlinkat(
            Some(d.as_raw_fd()),
            tmp.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        return Err(format!("{name}: {e}"));
    }
    Ok(())
}
