#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The factory credential and the first-boot setup, driven on a
//! pseudo-terminal as on the console: the setup comes before the prompt,
//! refuses weak and mismatched passwords and wrong answers, commits what
//! was answered and hands the password's hash to the applier; `password`
//! asks for the current one. Over SSH (a key login) there is no dialog.

use expectrl::session::OsSession as Session;
use expectrl::{ControlCode, Eof, Expect};
use sms_apply::accounts::{passwords_path, verify, Passwords};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const NEW: &str = "Tr0ub4dor&3x-9";

fn console(dir: &Path) -> Session {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sms-cli"));
    cmd.arg("--state-dir").arg(dir);
    cmd.args(["--bus", "unix:path=/nonexistent/bus", "--user", "admin"]);
    cmd.env("TERM", "xterm");
    cmd.env_remove("SSH_CONNECTION");
    let mut s = expectrl::Session::spawn(cmd).expect("spawn on a pty");
    s.set_expect_timeout(Some(Duration::from_secs(20)));
    s
}

fn admin_hash(dir: &Path) -> Option<String> {
    Passwords::read(&passwords_path(&dir.join("config")))
        .unwrap()
        .0
        .get("admin")
        .cloned()
}

#[test]
fn the_console_login_runs_the_setup_first_then_password_needs_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = console(dir.path());
    s.expect("factory password must be replaced").unwrap();
    // Weak, then mismatched: asked again, nothing written.
    s.expect("New password for admin: ").unwrap();
    s.send("admin\r").unwrap();
    s.expect("too short").unwrap();
    s.expect("New password for admin: ").unwrap();
    s.send("Admin-Appliance-1\r").unwrap();
    s.expect("account name").unwrap();
    s.expect("New password for admin: ").unwrap();
    s.send(format!("{NEW}\r")).unwrap();
    s.expect("Again: ").unwrap();
    s.send("Tr0ub4dor&3x-8\r").unwrap();
    s.expect("differ").unwrap();
    assert_eq!(admin_hash(dir.path()), None);
    s.expect("New password for admin: ").unwrap();
    s.send(format!("{NEW}\r")).unwrap();
    s.expect("Again: ").unwrap();
    s.send(format!("{NEW}\r")).unwrap();
    s.expect("Host name [").unwrap();
    s.send("lab-sms\r").unwrap();
    s.expect("Management address/prefix, or dhcp [dhcp]: ")
        .unwrap();
    s.send("192.0.2.10/24\r").unwrap();
    s.expect("Gateway [none]: ").unwrap();
    s.send("192.0.2.1\r").unwrap();
    s.expect("DNS servers").unwrap();
    s.send("192.0.2.53 not-an-address\r").unwrap();
    s.expect("%").unwrap();
    s.expect("DNS servers").unwrap();
    s.send("192.0.2.53\r").unwrap();
    s.expect("NTP servers").unwrap();
    s.send("\r").unwrap();
    s.expect("Time zone").unwrap();
    s.send("Mars/Olympus_Mons\r").unwrap();
    s.expect("%").unwrap();
    s.expect("Time zone").unwrap();
    s.send("Europe/Berlin\r").unwrap();
    s.expect("password of admin changed").unwrap();
    s.expect("committed").unwrap();
    s.expect("Setup done").unwrap();
    s.expect("admin@sms> ").unwrap();

    let h = admin_hash(dir.path()).expect("a hash for admin");
    assert!(verify(NEW, &h), "{h}");
    let settings = std::fs::read_to_string(dir.path().join("config/settings.toml")).unwrap();
    for want in [
        "lab-sms",
        "192.0.2.10/24",
        "192.0.2.1",
        "192.0.2.53",
        "Europe/Berlin",
    ] {
        assert!(settings.contains(want), "{want} not in {settings}");
    }
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(
        audit.contains("user=admin command=\"password (first-boot setup)\" result=\"ok\""),
        "{audit}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(passwords_path(&dir.path().join("config")))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // `password`: a wrong current password changes nothing.
    s.send("password\r").unwrap();
    s.expect("Current password: ").unwrap();
    s.send("admin\r").unwrap();
    s.expect("New password: ").unwrap();
    s.send("An0ther-Secret!\r").unwrap();
    s.expect("New password again: ").unwrap();
    s.send("An0ther-Secret!\r").unwrap();
    s.expect("current password is wrong").unwrap();
    s.expect("admin@sms> ").unwrap();
    assert_eq!(admin_hash(dir.path()), Some(h.clone()));
    // The right one, a new one that passes the rule.
    s.send("password\r").unwrap();
    s.expect("Current password: ").unwrap();
    s.send(format!("{NEW}\r")).unwrap();
    s.expect("New password: ").unwrap();
    s.send("An0ther-Secret!\r").unwrap();
    s.expect("New password again: ").unwrap();
    s.send("An0ther-Secret!\r").unwrap();
    s.expect("password of admin changed").unwrap();
    s.expect("admin@sms> ").unwrap();
    let h2 = admin_hash(dir.path()).unwrap();
    assert!(verify("An0ther-Secret!", &h2) && !verify(NEW, &h2));
    s.send("exit\r").unwrap();
    s.expect(Eof).unwrap();
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(
        audit.contains("command=\"password\" result=\"failed: the current password is wrong"),
        "{audit}"
    );
    assert!(
        !audit.contains(NEW) && !audit.contains("An0ther"),
        "{audit}"
    );

    // The next console login goes straight to the prompt.
    let mut s = console(dir.path());
    s.expect("admin@sms> ").unwrap();
    s.send("exit\r").unwrap();
    s.expect(Eof).unwrap();
}

#[test]
fn leaving_the_setup_ends_the_session_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = console(dir.path());
    s.expect("New password for admin: ").unwrap();
    // The prompt is written before the terminal leaves canonical mode,
    // and that switch discards what was typed before it: Ctrl-D again
    // (bounded) until the dialog saw it.
    s.set_expect_timeout(Some(Duration::from_millis(500)));
    let mut seen = false;
    for _ in 0..40 {
        s.send(ControlCode::EndOfTransmission).unwrap();
        if s.expect("log in again to complete the setup").is_ok() {
            seen = true;
            break;
        }
    }
    assert!(seen, "Ctrl-D never ended the setup");
    s.set_expect_timeout(Some(Duration::from_secs(20)));
    s.expect(Eof).unwrap();
    assert_eq!(admin_hash(dir.path()), None);
    assert!(!dir.path().join("config/settings.toml").exists());
}

#[test]
fn over_ssh_there_is_no_dialog_only_a_reminder() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sms-cli"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--bus", "unix:path=/nonexistent/bus", "--user", "admin"])
        .env("SSH_CONNECTION", "192.0.2.9 50000 192.0.2.10 22")
        .args(["-c", "whoami"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout} {stderr}");
    assert_eq!(stdout.trim(), "admin");
    assert!(
        stderr.contains("first-boot setup on the console"),
        "{stderr}"
    );
    assert_eq!(admin_hash(dir.path()), None);
}

#[test]
fn the_administrator_sets_a_role_accounts_password_others_may_not() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let run = |user: &str, input: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sms-cli"))
            .arg("--state-dir")
            .arg(dir.path())
            .args(["--bus", "unix:path=/nonexistent/bus", "--user", user])
            .env("SSH_CONNECTION", "192.0.2.9 50000 192.0.2.10 22")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).to_string()
    };
    let out = run(
        "admin",
        "password sms-operator\nOps-Passw0rd-1\nOps-Passw0rd-1\n",
    );
    assert!(out.contains("password of sms-operator changed"), "{out}");
    let p = Passwords::read(&passwords_path(&dir.path().join("config"))).unwrap();
    assert!(verify("Ops-Passw0rd-1", &p.0["sms-operator"]));
    assert!(!p.0.contains_key("admin"));
    let out = run("admin", "password root\nOps-Passw0rd-1\nOps-Passw0rd-1\n");
    assert!(out.contains("not a role account"), "{out}");
    let out = run(
        "sms-operator",
        "password sms-auditor\nOps-Passw0rd-1\nOps-Passw0rd-1\n",
    );
    assert!(out.contains("only the administrator"), "{out}");
}
