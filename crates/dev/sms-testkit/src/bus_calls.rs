//! Calls on a test system bus as the accounts that stand for the
//! appliance's (Debian base-system accounts, by numeric ID), to check the
//! appliance's D-Bus policy on a real dbus-daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a failed test

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The ID of a Debian base-system account (dbus-daemon drops connections
/// of IDs without an account: it needs their groups). These accounts stand
/// for the appliance's.
pub fn account(name: &str) -> u32 {
    passwd_field(name, 2)
}

/// The primary group of a Debian base-system account (what dbus-daemon
/// matches a `group=` policy against).
pub fn primary_group(name: &str) -> u32 {
    passwd_field(name, 3)
}

/// The primary group of the account with ID `uid`.
pub fn gid_of(uid: u32) -> u32 {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2) == Some(&uid.to_string().as_str())).then(|| f[3].parse().unwrap())
        })
        .unwrap_or(uid)
}

/// Field `field` of account `name` in /etc/passwd, as a number.
pub fn passwd_field(name: &str, field: usize) -> u32 {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f[field].parse().ok())
        })
        .flatten()
        .unwrap_or_else(|| panic!("no account {name} on this host"))
}

/// dbus-send as `uid`; (success, output).
pub fn dbus_send(bus: &str, uid: u32, args: &[&str]) -> (bool, String) {
    let o = Command::new("dbus-send")
        .arg(format!("--bus={bus}"))
        .args(args)
        .uid(uid)
        .gid(gid_of(uid))
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .output()
        .expect("dbus-send (package dbus-bin)");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Calls `member` of the SMS interface named `dest` (at its usual path)
/// as `uid`; (success, output).
pub fn call(bus: &str, uid: u32, dest: &str, member: &str, args: &[&str]) -> (bool, String) {
    let path = format!("/{}", dest.replace('.', "/"));
    let method = format!("{dest}.{member}");
    let dest_arg = format!("--dest={dest}");
    let mut a = vec![
        "--print-reply",
        "--reply-timeout=5000",
        dest_arg.as_str(),
        &path,
        &method,
    ];
    a.extend_from_slice(args);
    dbus_send(bus, uid, &a)
}

/// Asserts the call went through.
pub fn allowed(r: (bool, String), what: &str) {
    assert!(r.0, "{what} was refused: {}", r.1);
}

/// Asserts the bus's policy refused the call.
pub fn denied(r: (bool, String), what: &str) {
    assert!(
        !r.0 && r.1.contains("AccessDenied"),
        "{what} was not refused by the policy: {}",
        r.1
    );
}
