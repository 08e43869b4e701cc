//! The audit log: who changed what, when, with what result.
//!
//! One line per command that changes anything, appended with `O_APPEND`
//! to a file the CLI user can read through `show audit` but not edit
//! (on the appliance the directory belongs to root and the CLI runs with
//! the group's append right only; the CLI itself never truncates or
//! rewrites it). Every field is neutralised before it is written, so a
//! line in the log is always one line.

use crate::grammar::clean;
use std::io::Write;
use std::path::PathBuf;

/// Where audit lines go.
#[derive(Debug, Clone)]
pub struct Audit {
    path: PathBuf,
}

impl Audit {
    /// An audit log at `path`.
    pub fn new(path: PathBuf) -> Audit {
        Audit { path }
    }

    /// Appends one record.
    pub fn record(&self, user: &str, what: &str, result: &str) -> std::io::Result<()> {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = format!(
            "{now} user={} command=\"{}\" result=\"{}\"\n",
            clean(user).replace(' ', "_"),
            clean(what).replace('"', "'"),
            clean(result).replace('"', "'")
        );
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(line.as_bytes())
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
