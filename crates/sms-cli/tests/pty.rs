#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The shell driven on a pseudo-terminal as a person would: completion,
//! `?`, abbreviations, history, a wrong command, Ctrl-C, Ctrl-Z, Ctrl-\,
//! EOF, an over-long line, and a dumb terminal.

use expectrl::session::OsSession as Session;
use expectrl::{ControlCode, Eof, Expect};
use std::process::Command;
use std::time::Duration;

fn spawn(dir: &std::path::Path, term: &str) -> Session {
    spawn_with(dir, term, &[])
}

fn spawn_with(dir: &std::path::Path, term: &str, extra: &[&str]) -> Session {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sms-cli"));
    cmd.arg("--state-dir").arg(dir).args(extra);
    if !extra.contains(&"--bus") {
        cmd.args(["--bus", "unix:path=/nonexistent/bus"]);
    }
    cmd.env("TERM", term);
    let mut s = expectrl::Session::spawn(cmd).expect("spawn on a pty");
    s.set_expect_timeout(Some(Duration::from_secs(15)));
    s.expect("@sms> ").expect("prompt");
    s
}

/// The output of `whoami` ending a line (the prompt also holds "root"; on
/// the test pty a dumb line is not echoed, so it can follow the prompt).
const ROOT_LINE: expectrl::Regex<&str> = expectrl::Regex("(\n|> )root\r?\n");

// Enter is sent as a carriage return, as terminals do.

fn alive(s: &Session) -> bool {
    s.get_process().is_alive().unwrap_or(false)
}

#[test]
fn abbreviations_completion_help_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path(), "xterm");
    s.send("sh ver\r").unwrap();
    s.expect("SMS OS").unwrap();
    s.expect("@sms> ").unwrap();
    // A wrong command says so and what to do.
    s.send("frobnicate now\r").unwrap();
    s.expect("unknown command: frobnicate (type help or ?)")
        .unwrap();
    // An ambiguous prefix lists the candidates.
    s.send("show s\r").unwrap();
    s.expect("could be system, services, snmp").unwrap();
    // Tab completes a unique keyword.
    s.send("whoa\t").unwrap();
    s.send("\r").unwrap();
    s.expect(ROOT_LINE).unwrap();
    s.expect("@sms> ").unwrap();
    // ? lists what may follow, then gives the line back.
    s.send("show ").unwrap();
    s.send("?").unwrap();
    s.expect("firmware version and host name").unwrap();
    s.expect("traps received from devices").unwrap();
    s.send("version\r").unwrap();
    s.expect("SMS OS").unwrap();
    s.expect("@sms> ").unwrap();
    // Up arrow brings back the last command.
    s.send("whoami\r").unwrap();
    s.expect(ROOT_LINE).unwrap();
    s.expect("@sms> ").unwrap();
    s.send("\x1b[A\r").unwrap();
    s.expect(ROOT_LINE).unwrap();
    s.expect("@sms> ").unwrap();
    s.send("exit\r").unwrap();
    s.expect(Eof).unwrap();
    let h = std::fs::read_to_string(dir.path().join("history/root")).unwrap();
    assert!(h.contains("whoami") && h.contains("sh ver"), "{h}");
}

#[test]
fn ctrl_c_cancels_the_line_ctrl_z_and_quit_do_nothing_eof_logs_out() {
    for term in ["xterm", "dumb"] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spawn(dir.path(), term);
        // The test pty has no CR-to-NL translation, which a dumb line
        // relies on (a serial console's getty sets it).
        let enter = if term == "dumb" { "\n" } else { "\r" };
        // A state-changing command (audited whenever it runs, even when
        // the bus is unreachable), cancelled before Enter.
        s.send("update dv check").unwrap();
        s.send(ControlCode::EndOfText).unwrap(); // Ctrl-C
        std::thread::sleep(Duration::from_millis(300));
        assert!(alive(&s), "{term}: Ctrl-C ended the session");
        s.send(ControlCode::Substitute).unwrap(); // Ctrl-Z
        std::thread::sleep(Duration::from_millis(300));
        s.send(ControlCode::FileSeparator).unwrap(); // Ctrl-\
        std::thread::sleep(Duration::from_millis(300));
        assert!(alive(&s), "{term}: Ctrl-Z or Ctrl-\\ stopped the CLI");
        // Wait for the prompt: the line editor drops what is typed while a
        // command runs (it flushes input when it takes the terminal back).
        s.send(enter).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        s.send(format!("whoami{enter}")).unwrap();
        s.expect(ROOT_LINE)
            .unwrap_or_else(|e| panic!("{term}: the session did not go on: {e}"));
        s.expect("@sms> ").unwrap();
        // The cancelled line never ran...
        let audit = || std::fs::read_to_string(dir.path().join("audit.log")).unwrap_or_default();
        assert!(!audit().contains("update dv check"), "{term}: {}", audit());
        // ...and would have been audited had it run.
        s.send(format!("update dv check{enter}")).unwrap();
        s.expect("@sms> ").unwrap();
        assert!(
            audit().contains("command=\"update dv check\""),
            "{term}: {}",
            audit()
        );
        s.send(ControlCode::EndOfTransmission).unwrap(); // Ctrl-D on an empty line
        s.expect(Eof)
            .unwrap_or_else(|e| panic!("{term}: EOF did not log out: {e}"));
    }
}

#[test]
fn an_over_long_line_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path(), "xterm");
    let long = format!("show device {}", "a".repeat(5000));
    s.send(long.as_str()).unwrap();
    s.send("\r").unwrap();
    s.expect("line too long").unwrap();
    s.send("whoami\r").unwrap();
    s.expect(ROOT_LINE).unwrap();
}

#[test]
fn reboot_asks_first_and_anything_but_yes_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path(), "xterm");
    s.send("system reboot\r").unwrap();
    s.expect("Really reboot the appliance?").unwrap();
    s.send("no\r").unwrap();
    s.expect("cancelled").unwrap();
    s.expect("@sms> ").unwrap();
    s.send("sys shut\r").unwrap();
    s.expect("Really power off").unwrap();
    s.send("\r").unwrap();
    s.expect("cancelled").unwrap();
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap_or_default();
    assert!(
        audit.is_empty(),
        "nothing happened, nothing audited: {audit}"
    );
}

#[test]
fn configuration_mode_stages_compares_commits_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path(), "xterm");
    s.send("conf\r").unwrap();
    s.expect("configuration mode").unwrap();
    s.expect("@sms# ").unwrap();
    // ? in configuration mode shows its own commands.
    s.send("?").unwrap();
    s.expect("what commit would change").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("set dns server 192.0.2.53\r").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("set ntp server 192.0.2.123\r").unwrap();
    s.expect("@sms# ").unwrap();
    // A wrong value is refused with the reason, and changes nothing.
    s.send("set dns server 192.0.2.300\r").unwrap();
    s.expect("not a valid address").unwrap();
    s.send("compare\r").unwrap();
    s.expect("+ set dns server 192.0.2.53").unwrap();
    s.expect("+ set ntp server 192.0.2.123").unwrap();
    s.expect("@sms# ").unwrap();
    // Nothing is stored before commit.
    assert!(!dir.path().join("config/settings.toml").exists());
    // Leaving with uncommitted changes is refused.
    s.send("exit\r").unwrap();
    s.expect("uncommitted changes").unwrap();
    s.expect("@sms# ").unwrap();
    // The proxy password is asked without echo and never shown.
    s.send("set proxy url http://192.0.2.8:3128\r").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("set proxy password\r").unwrap();
    s.expect("Proxy password: ").unwrap();
    s.send("Very-Secret-1\r").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("comp\r").unwrap();
    s.expect("+ set proxy password ********").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("commit\r").unwrap();
    s.expect("committed:").unwrap();
    s.expect("@sms# ").unwrap();
    let text = std::fs::read_to_string(dir.path().join("config/settings.toml")).unwrap();
    assert!(
        text.contains("192.0.2.53") && text.contains("192.0.2.123"),
        "{text}"
    );
    // A second commit, then rollback to the first.
    s.send("delete dns server 192.0.2.53\r").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("set system hostname sms-lab-1\r").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("commit\r").unwrap();
    s.expect("- set dns server 192.0.2.53").unwrap();
    s.expect("+ set system hostname sms-lab-1").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("rollback\r").unwrap();
    s.expect("- set system hostname sms-lab-1").unwrap();
    s.expect("+ set dns server 192.0.2.53").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("commit\r").unwrap();
    s.expect("committed:").unwrap();
    s.expect("@sms# ").unwrap();
    // discard drops staged changes.
    s.send("set ha peer 192.0.2.11\r").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("set ha virtual-address 192.0.2.100/24\r").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("compare\r").unwrap();
    s.expect("+ set ha virtual-address 192.0.2.100/24").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("discard\r").unwrap();
    s.expect("candidate discarded").unwrap();
    s.send("compare\r").unwrap();
    s.expect("no changes").unwrap();
    // Operational commands from configuration mode, then leave.
    s.send("run show dns\r").unwrap();
    s.expect("DNS servers: 192.0.2.53").unwrap();
    s.send("exit\r").unwrap();
    s.expect("@sms> ").unwrap();
    s.send("show proxy\r").unwrap();
    s.expect("password: set (never shown)").unwrap();
    s.expect("@sms> ").unwrap();
    s.send("exit\r").unwrap();
    s.expect(Eof).unwrap();
    let text = std::fs::read_to_string(dir.path().join("config/settings.toml")).unwrap();
    assert!(
        text.contains("192.0.2.53") && !text.contains("sms-lab-1"),
        "{text}"
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(audit.matches("commit:").count(), 3, "{audit}");
    assert!(!audit.contains("Very-Secret-1"), "{audit}");
    let history = std::fs::read_to_string(dir.path().join("history/root")).unwrap();
    assert!(!history.contains("Very-Secret-1"), "{history}");
}

#[test]
fn long_output_is_paged_on_the_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path(), "xterm");
    s.get_process_mut().set_window_size(80, 12).unwrap();
    s.send("help\r").unwrap();
    s.expect("-- More (11/").unwrap();
    // Enter: one more line; Space: a screen; q: back to the prompt.
    s.send("\r").unwrap();
    s.expect("-- More (12/").unwrap();
    s.send(" ").unwrap();
    s.expect("-- More (23/").unwrap();
    s.send("q").unwrap();
    s.expect("@sms> ").unwrap();
    s.send("whoami\r").unwrap();
    s.expect(ROOT_LINE).unwrap();
    s.send("exit\r").unwrap();
    s.expect(Eof).unwrap();
    // Not on a pipe: the whole text at once.
    let o = Command::new(env!("CARGO_BIN_EXE_sms-cli"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--bus", "unix:path=/nonexistent/bus", "-c", "help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && !text.contains("-- More"), "{text}");
    assert!(text.lines().count() > 30, "{text}");
}

#[test]
fn invalid_text_is_refused_and_ctrl_d_in_configuration_mode_warns_like_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn(dir.path(), "xterm");
    // Bytes that are not UTF-8, and a C1 control alone: the line is
    // refused, the session goes on.
    for bad in [&b"sh\xff ver\r"[..], &b"\x9b\r"[..]] {
        s.send(bad).unwrap();
        s.expect("not valid text (UTF-8); nothing was run").unwrap();
        s.expect("@sms> ").unwrap();
        assert!(alive(&s));
    }
    s.send("whoami\r").unwrap();
    s.expect(ROOT_LINE).unwrap();
    s.send("configure\r").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("set ntp server 192.0.2.1\r").unwrap();
    s.expect("@sms# ").unwrap();
    // Ctrl-D with staged changes: the same refusal as `exit`.
    s.send(ControlCode::EndOfTransmission).unwrap();
    s.expect("uncommitted changes").unwrap();
    s.expect("@sms# ").unwrap();
    assert!(alive(&s));
    s.send("discard\r").unwrap();
    s.expect("@sms# ").unwrap();
    // Without changes it leaves configuration mode, not the session.
    s.send(ControlCode::EndOfTransmission).unwrap();
    s.expect("@sms> ").unwrap();
    assert!(alive(&s));
    s.send(ControlCode::EndOfTransmission).unwrap();
    s.expect(Eof).unwrap();
}

#[test]
fn the_history_keeps_no_community_and_is_never_written_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("history")).unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, "untouched\n").unwrap();
    std::os::unix::fs::symlink(&outside, dir.path().join("history/root")).unwrap();
    let mut s = spawn(dir.path(), "xterm");
    s.send("configure\r").unwrap();
    s.expect("@sms# ").unwrap();
    s.send("set snmp community n0c-s3cret network 10.0.0.0/8 read-only\r")
        .unwrap();
    s.expect("@sms# ").unwrap();
    s.send("exit discard\r").unwrap();
    s.expect("@sms> ").unwrap();
    s.send("whoami\r").unwrap();
    s.expect(ROOT_LINE).unwrap();
    s.send("exit\r").unwrap();
    s.expect(Eof).unwrap();
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "untouched\n");
    let history = dir.path().join("history/root");
    assert!(std::fs::symlink_metadata(&history).unwrap().is_file());
    let h = std::fs::read_to_string(&history).unwrap();
    assert!(h.contains("whoami") && h.contains("exit discard"), "{h}");
    assert!(!h.contains("n0c-s3cret"), "{h}");
    // A hard link in its place is replaced, not written through.
    std::fs::remove_file(&history).unwrap();
    std::fs::hard_link(&outside, &history).unwrap();
    let mut s = spawn(dir.path(), "xterm");
    s.send("whoami\r").unwrap();
    s.expect(ROOT_LINE).unwrap();
    s.send("exit\r").unwrap();
    s.expect(Eof).unwrap();
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "untouched\n");
}

#[test]
fn the_idle_timeout_ends_a_session_waiting_in_the_pager() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spawn_with(dir.path(), "xterm", &["--idle-secs", "3"]);
    s.get_process_mut().set_window_size(80, 12).unwrap();
    s.send("help\r").unwrap();
    s.expect("-- More (11/").unwrap();
    s.expect("idle for 3 s: logged out").unwrap();
    s.expect(Eof).unwrap();
}
