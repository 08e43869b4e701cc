//! `system backup`, `system restore` and `show backup`: the CLI asks the
//! backup service (root, on its own socket) and shows its progress.

use sms_core::backup::{BackupReply, BackupRequest};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// What the service answered: the plan of a restore (if any) and its text.
pub(super) struct Answer {
    pub(super) plan: Vec<String>,
    pub(super) text: String,
}

/// Longest a backup or restore may go without a word from the service.
const QUIET_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Sends `req` to the service on `socket`; progress lines are printed as
/// they come.
pub(super) fn call(socket: &Path, req: &BackupRequest) -> Result<Answer, String> {
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "not allowed for your account's role: backups are the administrator's".to_string()
        }
        _ => format!("the backup service is not reachable ({e})"),
    })?;
    stream
        .set_read_timeout(Some(QUIET_LIMIT))
        .map_err(|e| e.to_string())?;
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    let line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    writeln!(w, "{line}").map_err(|e| format!("the backup service: {e}"))?;
    let mut plan = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(|e| format!("the backup service stopped answering: {e}"))?;
        match serde_json::from_str::<BackupReply>(&line) {
            Ok(BackupReply::Progress(p)) => {
                println!("  {p}");
                let _ = std::io::stdout().flush();
            }
            Ok(BackupReply::Plan(p)) => plan = p,
            Ok(BackupReply::Done(text)) => return Ok(Answer { plan, text }),
            Ok(BackupReply::Error(e)) => return Err(e),
            Err(e) => return Err(format!("the backup service said something unreadable: {e}")),
        }
    }
    Err("the backup service ended without an answer (see show log sms-backup)".into())
}
