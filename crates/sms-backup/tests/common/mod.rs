//! A data partition like the appliance's, filled with settings, secrets,
//! keys, an audit trail and three real stores.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use sms_core::store::{Batch, Store};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Pass phrase of the tests.
pub const PASS: &str = "correct horse battery staple";

/// PBKDF2 rounds in tests (the archive's floor).
pub const ROUNDS: u32 = 1_000;

fn write(root: &Path, name: &str, content: &str, mode: u32) {
    let p = root.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Fills `root` like an appliance that has been in use.
pub fn populate(root: &Path) {
    write(
        root,
        "config/settings.toml",
        "[system]\nhostname = \"sms-lab\"\n",
        0o640,
    );
    write(
        root,
        "config/rollback/1.toml",
        "[system]\nhostname = \"old\"\n",
        0o640,
    );
    write(
        root,
        "config/updated/secrets.toml",
        "proxy_password = \"s3cret\"\n",
        0o640,
    );
    write(
        root,
        "config/accounts/passwords",
        "admin:$6$salt$hash\n",
        0o600,
    );
    write(
        root,
        "distd/tls/server.pem",
        "-----BEGIN CERTIFICATE-----\nserver\n",
        0o644,
    );
    write(
        root,
        "distd/tls/server-key.pem",
        "-----BEGIN PRIVATE KEY-----\nkey\n",
        0o600,
    );
    write(
        root,
        "ssh/ssh_host_ed25519_key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        0o600,
    );
    write(
        root,
        "cli/audit.log",
        "admin: set system hostname sms-lab\n",
        0o640,
    );
    std::fs::set_permissions(
        root.join("distd/tls"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    for (dir, tree, n) in [
        ("updated", "packages", 3u32),
        ("distd/state", "devices", 50),
        ("snmpd/store", "events", 200),
    ] {
        let store = Store::open(&root.join(dir)).unwrap();
        let mut b = Batch::new();
        for i in 0..n {
            b.put(
                tree,
                format!("{i:05}"),
                format!("{dir} record {i}").into_bytes(),
            );
        }
        store.apply(&b).unwrap();
    }
    std::fs::write(root.join("updated/time-floor"), "1700000000").unwrap();
    let blobs = root.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let pkg = b"a DV package".repeat(1000);
    let hex = sms_core::blob::Digest::of(&pkg).to_hex();
    std::fs::write(blobs.join(hex), pkg).unwrap();
}

/// Every file below `root` (not the stores' own files, which sled
/// rewrites on open) with its content and mode.
pub fn files(root: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    for top in ["config", "distd/tls", "ssh", "cli"] {
        walk(root, &root.join(top), &mut out);
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        let name = p.strip_prefix(root).unwrap().display().to_string();
        if p.is_dir() {
            out.insert(format!("{name}/"), (Vec::new(), mode));
            walk(root, &p, out);
        } else {
            out.insert(name, (std::fs::read(&p).unwrap(), mode));
        }
    }
}

/// All records of the three stores.
pub fn records(root: &Path) -> Vec<(String, Vec<sms_core::store::KeyValue>)> {
    [
        ("updated", "packages"),
        ("distd/state", "devices"),
        ("snmpd/store", "events"),
    ]
    .iter()
    .map(|(dir, tree)| {
        let store = Store::open(&root.join(dir)).unwrap();
        (dir.to_string(), store.scan(tree, "").unwrap())
    })
    .collect()
}

/// The error a restore check of `archive` with `pass` gives (it must fail).
pub fn refused(archive: &Path, pass: &str) -> sms_backup::archive::ArchiveError {
    match sms_backup::restore::verify(archive, pass, sms_backup::FIRMWARE_VERSION) {
        Ok(_) => panic!("{} was accepted", archive.display()),
        Err(e) => e,
    }
}
