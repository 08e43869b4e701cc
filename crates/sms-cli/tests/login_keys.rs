#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! SSH keys in configuration mode: a key from a real ssh-keygen is staged,
//! shown as a set line and committed; a key that carries an option, is of
//! another type than it says or is a weak RSA key is refused by the
//! grammar or the key check, and the commit holds only the good key.

mod common;
use std::process::Command;

fn keygen(dir: &std::path::Path, args: &[&str]) -> String {
    let f = dir.join(args.join("_"));
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", "noc@example"])
        .args(args)
        .arg("-f")
        .arg(&f)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::fs::read_to_string(f.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

use common::command_file as cli;

#[test]
fn keys_are_staged_checked_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    let good = keygen(dir.path(), &["-t", "ed25519"]);
    let weak = keygen(dir.path(), &["-t", "rsa", "-b", "1024"]);
    let (_, blob) = good.split_once(' ').unwrap();
    let blob = blob.split(' ').next().unwrap();
    let out = cli(
        dir.path(),
        &format!(
            "configure\n\
             set system login user admin authorized-key {good}\n\
             set system login user admin authorized-key {weak}\n\
             set system login user admin authorized-key ssh-rsa {blob}\n\
             set system login user admin authorized-key command=\"/bin/sh\" {good}\n\
             set system login user Root authorized-key {good}\n\
             compare\n\
             commit\n\
             exit\n"
        ),
    );
    assert!(out.contains("at least 2048"), "{out}");
    assert!(out.contains("another type"), "{out}");
    assert!(out.matches("% ").count() >= 4, "{out}");
    assert!(
        out.contains(&format!(
            "+ set system login user admin authorized-key {good}"
        )),
        "{out}"
    );
    let settings = std::fs::read_to_string(dir.path().join("config/settings.toml")).unwrap();
    assert_eq!(settings.matches("[[login_keys]]").count(), 1, "{settings}");
    assert!(settings.contains(blob), "{settings}");

    // Deleting by key (any comment) and then the account's every key.
    let out = cli(
        dir.path(),
        &format!(
            "configure\ndelete system login user admin authorized-key ssh-ed25519 {blob}\ncommit\ndelete system login user admin\nexit discard\n"
        ),
    );
    assert!(
        out.contains(&format!(
            "- set system login user admin authorized-key {good}"
        )),
        "{out}"
    );
    assert!(out.contains("admin has no such authorized-key"), "{out}");
    let settings = std::fs::read_to_string(dir.path().join("config/settings.toml")).unwrap();
    assert!(!settings.contains("login_keys"), "{settings}");
}
