//! `sms-audit-writer`: appends one record to the CLI's audit log.
//!
//! Started by systemd for each connection to `/run/sms/audit.sock`
//! (`sms-audit.socket`, `Accept=yes`), with the connection on standard
//! input and output. The user is who the kernel says is on the other end
//! (`SO_PEERCRED`), not anything the record says; the record is one line,
//! "command U+001F result", at most 8 KiB. The log is root's (0640, group
//! admin), so the account it audits reads it and cannot change it. The
//! line also goes to the journal (standard error), from where the remote
//! log servers get it.

use sms_cli::audit::{format_line, FIELD_SEPARATOR, MAX_RECORD};
use std::io::{Read, Write};
use std::os::fd::AsFd;

fn main() {
    if let Err(e) = run() {
        eprintln!("sms-audit-writer: {e}");
        let _ = std::io::stdout().write_all(format!("error: {e}\n").as_bytes());
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut log = std::path::PathBuf::from("/var/lib/sms/cli/audit.log");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--log" => log = args.next().ok_or("--log needs a file")?.into(),
            other => return Err(format!("unknown argument {other:?} (--log FILE)")),
        }
    }
    let stdin = std::io::stdin();
    let creds =
        nix::sys::socket::getsockopt(&stdin.as_fd(), nix::sys::socket::sockopt::PeerCredentials)
            .map_err(|e| format!("standard input is not a connected socket: {e}"))?;
    let uid = creds.uid();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid{uid}"));
    let mut raw = Vec::new();
    stdin
        .lock()
        .take(MAX_RECORD as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading the record: {e}"))?;
    if raw.len() > MAX_RECORD {
        return Err(format!("record over {MAX_RECORD} bytes refused"));
    }
    let text = String::from_utf8_lossy(&raw);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let (command, result) = text
        .split_once(FIELD_SEPARATOR)
        .ok_or("a record is \"command U+001F result\"")?;
    let line = format_line(&user, command, result);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    f.write_all(line.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| format!("{}: {e}", log.display()))?;
    // The same line to the journal (standard error, at notice level), so
    // that the remote log servers get the audit trail too (sms-logd).
    eprintln!("<5>{}", line.trim_end_matches('\n').replace('\n', " "));
    std::io::stdout()
        .write_all(b"ok\n")
        .map_err(|e| format!("answering: {e}"))?;
    Ok(())
}
