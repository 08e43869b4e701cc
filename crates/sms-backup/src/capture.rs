//! Taking a backup: settings, identity and audit files read from the data
//! partition, each store copied by its running daemon over the bus (or
//! opened here when its daemon is stopped), package files on request.

use crate::archive::{ArchiveWriter, Enrolment, EntryKind, Manifest, Ownership};
use crate::layout::{Layout, StoreSpec, BLOBS, FILES, STORES, TREES};
use anyhow::{bail, Context, Result};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// How the stores are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAccess {
    /// Ask each running daemon on the system bus (`org.smsos.Store1`); open
    /// the store here when its daemon is not on the bus.
    Bus,
    /// Open each store here (its daemon must be stopped).
    Direct,
}

/// What to put in a backup and how to label it.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Also the package files (can be large).
    pub packages: bool,
    /// Firmware version recorded in the manifest.
    pub firmware: String,
    /// Host name recorded in the manifest.
    pub hostname: String,
    /// PBKDF2 rounds (the default outside tests).
    pub rounds: u32,
}

/// Owner and mode of an existing file.
pub fn ownership(path: &Path) -> Result<Ownership> {
    let md = std::fs::symlink_metadata(path).with_context(|| path.display().to_string())?;
    let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(md.uid()))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| md.uid().to_string());
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(md.gid()))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| md.gid().to_string());
    Ok(Ownership {
        mode: md.permissions().mode() & 0o7777,
        owner,
        group,
    })
}

fn add_tree(w: &mut ArchiveWriter, layout: &Layout, name: &str) -> Result<()> {
    let path = layout.path(name);
    if !path.is_dir() {
        tracing::warn!("{} is missing: not in the backup", path.display());
        return Ok(());
    }
    w.add_dir(name, ownership(&path)?);
    let mut children: Vec<_> = std::fs::read_dir(&path)
        .with_context(|| path.display().to_string())?
        .collect::<Result<_, _>>()
        .with_context(|| path.display().to_string())?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let child_name = format!("{name}/{}", child.file_name().to_string_lossy());
        let ft = child.file_type()?;
        if ft.is_dir() {
            add_tree(w, layout, &child_name)?;
        } else if ft.is_file() {
            add_file(w, layout, &child_name)?;
        } else {
            tracing::warn!(
                "{}: not a file or directory, left out",
                child.path().display()
            );
        }
    }
    Ok(())
}

fn add_file(w: &mut ArchiveWriter, layout: &Layout, name: &str) -> Result<()> {
    let path = layout.path(name);
    let content = std::fs::read(&path).with_context(|| path.display().to_string())?;
    w.add_sealed(name, EntryKind::File, &content, ownership(&path)?, None)?;
    Ok(())
}

/// Copies one store into `into` (rewound, truncated); returns its records.
async fn export_store(
    spec: &StoreSpec,
    layout: &Layout,
    access: StoreAccess,
    bus: Option<&zbus::Connection>,
    into: &mut std::fs::File,
) -> Result<u64> {
    into.set_len(0)?;
    into.seek(SeekFrom::Start(0))?;
    let running = match (access, bus) {
        (StoreAccess::Bus, Some(conn)) => zbus::fdo::DBusProxy::new(conn)
            .await?
            .name_has_owner(spec.bus_name.try_into()?)
            .await
            .unwrap_or(false),
        _ => false,
    };
    let records = if let (true, Some(conn)) = (running, bus) {
        let proxy = sms_core::bus::Store1Proxy::builder(conn)
            .destination(spec.bus_name)?
            .build()
            .await?;
        let fd = std::os::fd::AsFd::as_fd(into);
        let got = proxy
            .export(zbus::zvariant::Fd::from(fd))
            .await
            .with_context(|| format!("{} did not copy its store", spec.bus_name))?
            .into_inner();
        got.records
    } else {
        let dir = layout.path(spec.dir);
        if !dir.join("conf").exists() {
            bail!("store {} not found in {}", spec.name, dir.display());
        }
        let store = sms_core::store::Store::open(&dir).with_context(|| {
            format!(
                "store {}: its daemon is not on the bus and the store cannot be opened here",
                spec.name
            )
        })?;
        store.export(into)?.records
    };
    into.seek(SeekFrom::Start(0))?;
    Ok(records)
}

/// How a backup is sealed and signed.
#[derive(Clone, Copy)]
pub enum Sealing<'a> {
    /// By the pass phrase the administrator typed for it (format 1).
    Passphrase(&'a str),
    /// To the enrolled pass phrase's public key, signed by the appliance's
    /// approved key (format 2: scheduled backups).
    Enrolled {
        /// The enrolment.
        enrolment: &'a Enrolment,
        /// The appliance's signing key, PKCS#8.
        signing_key: &'a [u8],
    },
}

impl<'a> From<&'a str> for Sealing<'a> {
    fn from(passphrase: &'a str) -> Self {
        Sealing::Passphrase(passphrase)
    }
}

impl<'a> From<&'a String> for Sealing<'a> {
    fn from(passphrase: &'a String) -> Self {
        Sealing::Passphrase(passphrase)
    }
}

/// Takes a backup of `layout` into `out`. `progress` gets a line per step.
pub async fn capture<'a>(
    layout: &Layout,
    sealing: impl Into<Sealing<'a>>,
    opts: &CaptureOptions,
    access: StoreAccess,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(Manifest, u64)> {
    let mut w = match sealing.into() {
        Sealing::Passphrase(p) => {
            ArchiveWriter::with_rounds(p, &opts.firmware, &opts.hostname, opts.rounds)?
        }
        Sealing::Enrolled {
            enrolment,
            signing_key,
        } => ArchiveWriter::enrolled(enrolment, signing_key, &opts.firmware, &opts.hostname)?,
    };
    progress("settings, secrets and identity");
    for t in TREES {
        add_tree(&mut w, layout, t)?;
    }
    for f in FILES {
        if layout.path(f).is_file() {
            add_file(&mut w, layout, f)?;
        }
    }
    let bus = match access {
        StoreAccess::Bus => Some(
            zbus::Connection::system()
                .await
                .context("connecting to the system bus")?,
        ),
        StoreAccess::Direct => None,
    };
    let mut scratch = tempfile::tempfile_in(&layout.root)
        .with_context(|| format!("a scratch file in {}", layout.root.display()))?;
    for spec in STORES {
        let records = export_store(spec, layout, access, bus.as_ref(), &mut scratch).await?;
        let mut snap = Vec::new();
        scratch.read_to_end(&mut snap)?;
        progress(&format!("store {}: {records} records", spec.name));
        let own = ownership(&layout.path(spec.dir))?;
        w.add_sealed(
            &format!("store/{}", spec.name),
            EntryKind::Store,
            &snap,
            own,
            Some(records),
        )?;
    }
    if opts.packages {
        let dir = layout.path(BLOBS);
        let mut n = 0;
        if dir.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
            files.sort_by_key(|e| e.file_name());
            for f in files {
                let hex = f.file_name().to_string_lossy().to_string();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    continue;
                }
                w.add_package(
                    &format!("{BLOBS}/{hex}"),
                    &f.path(),
                    &hex,
                    ownership(&f.path())?,
                )?;
                n += 1;
            }
        }
        progress(&format!("{n} package files"));
    }
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut last = 0u64;
    let mut report = |done: u64, total: u64| {
        // A line per 10 % on large archives (package files); small ones
        // are written in a moment.
        if total >= 16 << 20 && (done - last) * 10 >= total {
            last = done;
            progress(&format!("written {} of {} MiB", done >> 20, total >> 20));
        }
    };
    Ok(w.write(out, &created, &mut report)?)
}
