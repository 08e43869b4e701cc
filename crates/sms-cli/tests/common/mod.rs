// Test helpers: a failed unwrap is a failed test; items are shared, not an API.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(unreachable_pub, dead_code)]
//! The CLI as a real child process with its own state directory and no
//! system bus, fed a command file on standard input.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the CLI with `input` as its command file; what it printed
/// (standard output, then standard error).
pub fn command_file(dir: &Path, input: &str) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sms-cli"))
        .arg("--state-dir")
        .arg(dir)
        .args(["--bus", "unix:path=/nonexistent/bus"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
