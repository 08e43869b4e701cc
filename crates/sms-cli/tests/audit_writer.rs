#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a failed unwrap is a failed test
//! The root audit writer as systemd runs it (one process per connection,
//! the connection on its standard input and output), with the CLI as its
//! client: the user in the log is who the kernel says connected, whatever
//! the record claims, a line stays one line, and an oversized record is
//! refused.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Accepts `n` connections on `socket` and runs the writer on each.
fn serve(socket: &Path, log: PathBuf, n: usize) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    std::thread::spawn(move || {
        for _ in 0..n {
            let (conn, _) = listener.accept().unwrap();
            let out = conn.try_clone().unwrap();
            let st = Command::new(env!("CARGO_BIN_EXE_sms-audit-writer"))
                .arg("--log")
                .arg(&log)
                .stdin(Stdio::from(std::os::fd::OwnedFd::from(conn)))
                .stdout(Stdio::from(std::os::fd::OwnedFd::from(out)))
                .stderr(Stdio::null())
                .status()
                .unwrap();
            let _ = st;
        }
    })
}

fn send_as(socket: &Path, uid: Option<u32>, record: &[u8]) -> String {
    // A client under another account: a child process that connects.
    match uid {
        None => {
            let mut s = UnixStream::connect(socket).unwrap();
            s.write_all(record).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut a = String::new();
            s.read_to_string(&mut a).unwrap();
            a
        }
        Some(uid) => {
            use std::os::unix::process::CommandExt;
            let mut c = Command::new("/usr/bin/python3")
                .args([
                    "-c",
                    "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(sys.stdin.buffer.read())\ns.shutdown(socket.SHUT_WR)\nprint(s.recv(64).decode().strip())",
                ])
                .arg(socket)
                .uid(uid)
                .gid(uid)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(record).unwrap();
            let o = c.wait_with_output().unwrap();
            String::from_utf8_lossy(&o.stdout).to_string()
        }
    }
}

#[test]
fn the_log_names_who_connected_and_keeps_one_line_per_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let socket = dir.path().join("audit.sock");
    let log = dir.path().join("audit.log");
    let writer = serve(&socket, log.clone(), 4);

    // The CLI hands its record to the writer.
    let o = Command::new(env!("CARGO_BIN_EXE_sms-cli"))
        .arg("--state-dir")
        .arg(dir.path().join("cli"))
        .arg("--audit-socket")
        .arg(&socket)
        .args([
            "--bus",
            "unix:path=/nonexistent/bus",
            "-c",
            "update dv check",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("bus"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("user=root command=\"update dv check\" result=\"failed: the system bus is not reachable\""),
        "{text}"
    );
    assert!(
        !dir.path().join("cli/audit.log").exists(),
        "the CLI wrote the log itself"
    );

    // Another account (Debian's "daemon", uid 1) claims to be root and
    // slips in a second line: the log names the account, in one line.
    let answer = send_as(
        &socket,
        Some(1),
        "x\" user=root\nforged line\u{1f}ok\n".as_bytes(),
    );
    assert_eq!(answer.trim(), "ok");
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap();
    assert!(last.contains(" user=daemon command="), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");

    // Oversized and malformed records are refused and not written.
    let big = format!("{}\u{1f}ok\n", "a".repeat(10_000));
    assert!(send_as(&socket, None, big.as_bytes()).starts_with("error"));
    assert!(send_as(&socket, None, b"no separator\n").starts_with("error"));
    writer.join().unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
}
