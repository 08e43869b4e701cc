//! The audit log: who changed what, when, with what result.
//!
//! One line per command that changes anything. On the appliance the file
//! belongs to root (mode 0640, group admin: the administrator reads it with
//! `show audit` and cannot write it): the CLI hands each record to
//! `sms-audit-writer`, a root service started per connection on
//! `/run/sms/audit.sock`, which takes the user from the socket's peer
//! credentials (never from the record), stamps the time and appends the
//! line. Tests without the service write the file directly. Every field is
//! neutralised before it is written, so a line in the log is always one
//! line.

use crate::grammar::clean;
use std::io::{Read, Write};
use std::path::PathBuf;

/// The writer's socket on the appliance.
pub const WRITER_SOCKET: &str = "/run/sms/audit.sock";

/// Longest record accepted by the writer, bytes.
pub const MAX_RECORD: usize = 8192;

/// Separates the command from the result in a record sent to the writer.
pub const FIELD_SEPARATOR: char = '\u{1f}';

/// Where audit lines go.
#[derive(Debug, Clone)]
pub struct Audit {
    path: PathBuf,
    writer: Option<PathBuf>,
}

/// One line of the log.
pub fn format_line(user: &str, what: &str, result: &str) -> String {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "{now} user={} command=\"{}\" result=\"{}\"\n",
        clean(user).replace(' ', "_"),
        clean(what).replace('"', "'"),
        clean(result).replace('"', "'")
    )
}

impl Audit {
    /// An audit log at `path`, written by this process.
    pub fn new(path: PathBuf) -> Audit {
        Audit { path, writer: None }
    }

    /// An audit log at `path`, written by the root writer listening on
    /// `socket`.
    pub fn through_writer(path: PathBuf, socket: PathBuf) -> Audit {
        Audit {
            path,
            writer: Some(socket),
        }
    }

    /// Appends one record.
    pub fn record(&self, user: &str, what: &str, result: &str) -> std::io::Result<()> {
        let Some(socket) = &self.writer else {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            return f.write_all(format_line(user, what, result).as_bytes());
        };
        let sep = FIELD_SEPARATOR.to_string();
        let mut record = format!(
            "{}{FIELD_SEPARATOR}{}\n",
            clean(what).replace(&sep, "?"),
            clean(result).replace(&sep, "?")
        );
        if record.len() > MAX_RECORD {
            let mut cut = MAX_RECORD - 1;
            while !record.is_char_boundary(cut) {
                cut -= 1;
            }
            record.truncate(cut);
            record.push('\n');
        }
        let mut s = std::os::unix::net::UnixStream::connect(socket)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        s.write_all(record.as_bytes())?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        s.take(64).read_to_string(&mut answer)?;
        if answer.trim() == "ok" {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "the audit writer answered {:?}",
                answer.trim()
            )))
        }
    }

    /// The last `n` records.
    pub fn tail(&self, n: usize) -> std::io::Result<String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok("(no changes yet)".into())
            }
            Err(e) => return Err(e),
        };
        let lines: Vec<&str> = text.lines().collect();
        Ok(lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| clean(l))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
