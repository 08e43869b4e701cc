#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! Configuration belongs to the administrator, enforced below the CLI: the
//! settings directory is the administrator's, so another account (an
//! operator) is refused configuration mode and, going around the CLI,
//! cannot write the settings file either; the owner can. Runs the real CLI
//! as Debian's `games` (the operator) and `man` (the administrator) stand-
//! ins, so it needs root, as `make test` has.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

fn ids(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let f: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no account {name} on this host"))
        .split(':')
        .collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

fn cli_as(name: &str, state: &std::path::Path, line: &str) -> (bool, String) {
    let (uid, gid) = ids(name);
    let o = Command::new(env!("CARGO_BIN_EXE_sms-cli"))
        .arg("--state-dir")
        .arg(state)
        .args(["--bus", "unix:path=/nonexistent/bus", "-c", line])
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn an_operator_is_refused_configuration_by_the_file_system_not_only_the_cli() {
    assert_eq!(
        nix::unistd::getuid().as_raw(),
        0,
        "this test runs as root (make test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("cli");
    let config = state.join("config");
    std::fs::create_dir_all(&config).unwrap();
    // The administrator's settings, readable by others as on the appliance
    // (there by the daemons' group).
    let store = sms_core::settings::SettingsStore::new(&config);
    store
        .commit(&sms_core::settings::Settings {
            hostname: Some("sms-lab".into()),
            ..Default::default()
        })
        .unwrap();
    let (admin_uid, admin_gid) = ids("man");
    for p in [
        state.clone(),
        config.clone(),
        config.join("rollback"),
        store.path(),
    ] {
        nix::unistd::chown(&p, Some(admin_uid.into()), Some(admin_gid.into())).unwrap();
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for f in std::fs::read_dir(config.join("rollback")).unwrap() {
        nix::unistd::chown(&f.unwrap().path(), Some(admin_uid.into()), None).unwrap();
    }

    // The operator: refused configuration mode, may read the configuration.
    let (ok, out) = cli_as("games", &state, "configure");
    assert!(
        !ok && out.contains("configuration mode is for administrators"),
        "{out}"
    );
    let (ok, out) = cli_as("games", &state, "show configuration");
    assert!(ok && out.contains("sms-lab"), "{out}");
    // Around the CLI, the kernel says no.
    let (uid, gid) = ids("games");
    let o = Command::new("sh")
        .args([
            "-c",
            "echo 'hostname = \"owned\"' > \"$0\"",
            store.path().to_str().unwrap(),
        ])
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    assert!(!o.status.success(), "the operator wrote the settings file");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    assert!(std::fs::read_to_string(store.path())
        .unwrap()
        .contains("sms-lab"));

    // The administrator (the directory's owner) enters configuration mode.
    let (ok, out) = cli_as("man", &state, "configure");
    assert!(ok && out.contains("configuration mode:"), "{out}");
}
