#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! Escape attempts: shell syntax, newlines and NUL in every argument kind,
//! a 1 MB line, hostile environment variables and terminal escape
//! sequences. Every one must leave the user in the CLI with a refusal and
//! never run anything.

use std::process::{Command, Stdio};

fn cli(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sms-cli"));
    c.arg("--state-dir").arg(dir);
    c.args(["--bus", "unix:path=/nonexistent/bus"]);
    c
}

fn run_c(dir: &std::path::Path, line: &str) -> (bool, String) {
    let o = cli(dir).arg("-c").arg(line).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

const PAYLOADS: &[&str] = &[
    ";id",
    "|id",
    "&&id",
    "`id`",
    "$(id)",
    "${IFS}id",
    "a;touch${IFS}/tmp/pwned",
    "../../etc/passwd",
    "/etc/passwd",
    "a\nid",
    ">/tmp/pwned",
    "<x",
    "'a'",
    "\"a\"",
    "a\\b",
    "\u{1b}[2J",
    "-rf",
];

/// What the grammar says when it refuses an argument or a word.
const GRAMMAR_REFUSALS: &[&str] = &[
    ": not a valid ",
    "unknown word",
    "empty or contains control characters",
];

#[test]
fn shell_syntax_in_every_argument_kind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let templates = [
        "show device {}",
        "distribute dv {} to all",
        "distribute dv 4.0.0.1 to group {}",
        "distribute tos 5.5.1 to device {}",
        "update dv download {}",
        "update dv activate {}",
        "job status {}",
        "services restart {}",
    ];
    for t in templates {
        for p in PAYLOADS {
            let p = p.replace("/tmp/pwned", &marker.display().to_string());
            let line = t.replace("{}", &p);
            let (ok, out) = run_c(dir.path(), &line);
            assert!(!ok, "{line:?} accepted: {out}");
            assert!(out.starts_with("% "), "{line:?}: {out}");
            assert!(!out.contains("uid="), "{line:?} ran something: {out}");
            // Refused by the grammar, not by the unreachable bus behind it.
            assert!(
                GRAMMAR_REFUSALS.iter().any(|r| out.contains(r)) && !out.contains("bus"),
                "{line:?} was not refused by the grammar: {out}"
            );
            assert!(
                !out.chars().any(|c| c.is_control() && c != '\n'),
                "{line:?}: raw control characters echoed: {out:?}"
            );
        }
    }
    assert!(!marker.exists(), "a payload created a file");
    // The same commands with valid arguments pass the grammar and reach
    // for the bus, which is what tells the two refusals apart above.
    for line in [
        "show device lab-1",
        "distribute dv 4.0.0.1 to group lab",
        "job status 7",
    ] {
        let (ok, out) = run_c(dir.path(), line);
        assert!(!ok, "{line}: {out}");
        assert!(
            !GRAMMAR_REFUSALS.iter().any(|r| out.contains(r)) && out.contains("bus"),
            "{line}: {out}"
        );
    }
    // A command and its output never include a shell.
    let (ok, out) = run_c(dir.path(), "/bin/sh -c id");
    assert!(!ok && out.contains("unknown command"), "{out}");
    let (ok, out) = run_c(dir.path(), "show version\nid");
    assert!(!ok && !out.contains("uid="), "{out}");
}

#[test]
fn nul_and_a_one_megabyte_line_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // One argument can hold at most 128 KiB (the kernel's limit): the 1 MB
    // line goes through the pipe below.
    let (ok, out) = run_c(dir.path(), &"x".repeat(120_000));
    assert!(
        !ok && out.contains("line too long"),
        "{}",
        &out[..out.len().min(200)]
    );
    // Through a pipe: NUL in a line, then a 1 MB line, then a good command.
    let mut child = cli(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        i.write_all(b"show device a\0b\n").unwrap();
        i.write_all(&vec![b'y'; 1 << 20]).unwrap();
        i.write_all(b"\nwhoami\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "a failed line gives status 1");
    assert!(out.contains("control characters"), "{out}");
    assert!(out.contains("line too long"), "{out}");
    assert!(
        out.lines().any(|l| l == "root"),
        "the session went on: {out}"
    );
}

#[test]
fn hostile_environment_at_login_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let o = cli(dir.path())
        .arg("-c")
        .arg("show version")
        .env("LD_PRELOAD", "/nonexistent/evil.so")
        .env("PATH", &bin)
        .env("HOME", "/")
        .env("SHELL", "/bin/sh")
        .env("TERM", "\u{1b}]0;owned\u{7}")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("SMS OS"), "{out}");
    assert!(!out.contains('\u{1b}'));
}

#[test]
fn the_audit_log_records_changes_with_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    // Without the daemons the change fails, and the attempt is still recorded.
    let (ok, out) = run_c(dir.path(), "update dv download 4.0.0.1");
    assert!(!ok, "{out}");
    let (ok, _) = run_c(dir.path(), "show version");
    assert!(ok);
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "only changes are audited: {log}");
    assert!(
        lines[0].contains("user=root command=\"update dv download 4.0.0.1\" result=\"failed:"),
        "{log}"
    );
    let (ok, out) = run_c(dir.path(), "show audit");
    assert!(ok && out.contains("update dv download 4.0.0.1"), "{out}");
}

#[test]
fn reboot_needs_confirmation_and_logs_are_only_the_appliances() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run_c(dir.path(), "system reboot");
    assert!(!ok && out.contains("needs confirmation"), "{out}");
    for bad in [
        "show log sshd",
        "show log /etc/shadow",
        "show log ../../etc/shadow",
        "show log sms-snmpd;id",
    ] {
        let (ok, out) = run_c(dir.path(), bad);
        assert!(!ok && out.starts_with("% "), "{bad}: {out}");
    }
}

/// Runs a command file on standard input (what `sms-cli < file` does).
fn run_file(dir: &std::path::Path, text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = cli(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn configuration_arguments_refuse_shell_syntax_and_directive_injection() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let templates = [
        "set system hostname {}",
        "set system time-zone {}",
        "set interface management address {}",
        "set dns server {}",
        "set proxy url {}",
        "set proxy username {}",
        "set ntp server {}",
        "set snmp community {} network 10.0.0.0/8",
        "set snmp community c network {}",
        "set snmp user {} auth sha-256",
        "set snmp trap-destination {} community c",
        "set ha peer {}",
        "set ha virtual-address {}",
    ];
    // Directive injection into generated files: a newline, quotes and TOML
    // or systemd syntax must never pass the type checks.
    let mut payloads: Vec<String> = PAYLOADS.iter().map(|p| p.to_string()).collect();
    payloads.extend(
        [
            "a\"\nhostname=\"x",
            "x]\n[agent",
            "c\nAddress=1.2.3.4/8",
            "1.2.3.4/8\nGateway=1.1.1.1",
            "http://p:1\nurl=x",
            "Europe/../../etc/shadow",
        ]
        .map(String::from),
    );
    for t in templates {
        for p in &payloads {
            let p = p.replace("/tmp/pwned", &marker.display().to_string());
            let line = t.replace("{}", &p);
            // Each line of a payload with a newline arrives as a line of its
            // own; none may be taken as a setting.
            let (_, out) = run_file(
                dir.path(),
                &format!("configure\n{line}\naaaaaaaa1\nbbbbbbbb2\ncommit\n"),
            );
            assert!(!out.contains("uid="), "{line:?} ran something: {out}");
            assert!(
                !out.chars().any(|c| c.is_control() && c != '\n'),
                "{line:?}: raw control characters echoed: {out:?}"
            );
        }
    }
    assert!(!marker.exists(), "a payload created a file");
    // Whatever was committed on the way is a valid settings file that
    // holds none of the payloads.
    let path = dir.path().join("config/settings.toml");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let s = sms_core::settings::Settings::from_toml(&path, &text)
            .unwrap_or_else(|e| panic!("committed an invalid file: {e}\n{text}"));
        let lines = sms_cli::setlines::set_lines(&s);
        for l in lines {
            for bad in ["id", "pwned", "Gateway=1.1.1.1", "[agent", "etc"] {
                assert!(!l.shown.contains(bad), "{} in {text}", l.shown);
            }
        }
    }
}

/// `save` and `load` use one directory: paths are refused by type, links
/// and special files placed in the directory are refused, nothing outside
/// is read or written.
#[test]
fn file_arguments_stay_in_the_file_directory() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let outside = dir.path().join("outside.toml");
    std::fs::write(&outside, "hostname = \"outside\"\n").unwrap();
    std::os::unix::fs::symlink(&outside, files.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", files.join("passwd")).unwrap();
    std::fs::hard_link(&outside, files.join("hard")).unwrap();
    nix::unistd::mkfifo(
        &files.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    for name in [
        "../outside.toml",
        "/etc/passwd",
        "..",
        ".hidden",
        "a/b",
        "link",
        "hard",
        "passwd",
        "fifo",
        "missing",
    ] {
        let (ok, out) = run_file(dir.path(), &format!("configure\nload {name}\nshow\n"));
        assert!(!ok, "load {name} accepted: {out}");
        assert!(
            !out.contains("hostname outside") && !out.contains("root:"),
            "{name}: {out}"
        );
        let (ok, out) = run_file(dir.path(), &format!("configure\nsave {name}\n"));
        if name != "missing" {
            assert!(!ok, "save {name} accepted: {out}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "hostname = \"outside\"\n",
        "a save wrote through a link"
    );
    // A plain name round-trips.
    let (ok, out) = run_file(
        dir.path(),
        "configure\nset ntp server 192.0.2.123\nsave lab-1.toml\ndiscard\nload lab-1.toml\ncompare\n",
    );
    assert!(ok, "{out}");
    assert!(out.contains("+ set ntp server 192.0.2.123"), "{out}");
    let (ok, out) = run_c(dir.path(), "show files");
    assert!(
        ok && out.contains("lab-1.toml") && !out.contains("fifo"),
        "{out}"
    );
    // A damaged saved file is named and loads nothing.
    std::fs::write(files.join("bad"), "ntp_servers = [\"x;y\"]\n").unwrap();
    let (ok, out) = run_file(dir.path(), "configure\nload bad\ncompare\n");
    assert!(
        !ok && out.contains("not loaded") && out.contains("no changes"),
        "{out}"
    );
}

#[test]
fn saved_files_carry_no_secrets_and_load_keeps_the_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let set_proxy = "set proxy url http://proxy.example:3128\nset proxy password\ns3cret-pass-1\n";
    let (ok, out) = run_file(dir.path(), &format!("configure\n{set_proxy}save p.toml\n"));
    assert!(
        ok && out.contains("without secrets: proxy password"),
        "{out}"
    );
    let saved = std::fs::read_to_string(dir.path().join("files/p.toml")).unwrap();
    assert!(!saved.contains("s3cret-pass-1"), "{saved}");
    assert!(saved.contains("proxy.example"), "{saved}");
    // Loaded where the candidate has the password: it is kept, and
    // committed as the password, not as the file's marker.
    let (ok, out) = run_file(
        dir.path(),
        &format!("configure\n{set_proxy}load p.toml\ncommit\n"),
    );
    assert!(ok, "{out}");
    let secrets = std::fs::read_to_string(dir.path().join("config/updated/secrets.toml")).unwrap();
    assert!(secrets.contains("s3cret-pass-1"), "{secrets}");
    // Loaded on another appliance that has none: refused, saying which
    // secret is missing.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("files")).unwrap();
    std::fs::write(other.path().join("files/p.toml"), &saved).unwrap();
    let (ok, out) = run_file(other.path(), "configure\nload p.toml\n");
    assert!(!ok && out.contains("proxy password"), "{out}");
}

#[test]
fn a_command_that_is_not_utf8_is_refused_and_starts_no_session() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let bad = std::ffi::OsStr::from_bytes(b"show \xff version");
    let direct = cli(dir.path())
        .arg("-c")
        .arg(bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // As sshd runs it with ForceCommand: the client's command in the
    // environment.
    let forced = cli(dir.path())
        .arg("-c")
        .arg("/usr/bin/sms-cli")
        .env("SSH_ORIGINAL_COMMAND", bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    for o in [direct, forced] {
        let out =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert!(out.contains("not valid text (UTF-8)"), "{out}");
        assert!(!out.contains("Type help"), "a session started: {out}");
    }
}

#[test]
fn the_idle_timeout_ends_a_session_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = cli(dir.path())
        .args(["--idle-secs", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The connection stays open and sends nothing.
    let _stdin = child.stdin.take();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running without input after 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("idle for 2 s: logged out"), "{out}");
}
