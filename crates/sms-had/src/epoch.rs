//! The node's epoch (term): persisted, only ever raised, carried by every
//! frame. A frame of an older epoch comes from a primary that was replaced
//! and is refused.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The persisted epoch of this node.
#[derive(Debug)]
pub struct Epoch {
    path: PathBuf,
    value: Mutex<u64>,
}

impl Epoch {
    /// Reads `state_dir/epoch` (1 when the node never had one).
    pub fn load(state_dir: &Path) -> std::io::Result<Epoch> {
        let path = state_dir.join("epoch");
        let value = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: `{}` is not an epoch: {e}", path.display(), text.trim()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => return Err(e),
        };
        Ok(Epoch {
            path,
            value: Mutex::new(value),
        })
    }

    /// The current epoch.
    pub fn current(&self) -> u64 {
        *sms_core::daemon::lock(&self.value)
    }

    /// Raises the epoch to `to` (persisted before it is used); a lower or
    /// equal value changes nothing.
    pub fn raise(&self, to: u64) -> std::io::Result<()> {
        let mut v = sms_core::daemon::lock(&self.value);
        if to > *v {
            sms_core::files::write_atomic(&self.path, format!("{to}\n").as_bytes(), 0o644)?;
            tracing::info!("epoch raised from {} to {to}", *v);
            *v = to;
        }
        Ok(())
    }
}
