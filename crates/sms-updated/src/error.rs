//! Why an update operation failed: one error type for the update daemon's
//! operations, whose text is what the log and the CLI show.

use crate::download::DownloadError;
use crate::tmc::TmcError;
use sms_core::blob::BlobError;
use sms_core::metadata::MetadataError;
use sms_core::package::{Channel, Version};
use sms_core::store::StoreError;

/// Why an update operation failed. The text is what the log and the CLI show.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The catalog was refused.
    #[error("{channel} catalog refused: {source}")]
    Metadata {
        /// Which feed it comes from (`dv` or `tos`).
        channel: Channel,
        /// Reason.
        source: MetadataError,
    },
    /// The update centre could not be used.
    #[error(transparent)]
    Tmc(#[from] TmcError),
    /// A download failed.
    #[error("download of {key} failed: {source}")]
    Download {
        /// Package key.
        key: String,
        /// Reason.
        source: DownloadError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The version is not in the verified catalog.
    #[error("{channel} version {version} is not in the update centre's catalog (refresh the list first)")]
    NotInCatalog {
        /// Which feed it comes from (`dv` or `tos`).
        channel: Channel,
        /// Version asked for.
        version: Version,
    },
    /// The version's files are not all on the appliance.
    #[error("{channel} version {version} is not downloaded")]
    NotDownloaded {
        /// Which feed it comes from (`dv` or `tos`).
        channel: Channel,
        /// Version asked for.
        version: Version,
    },
    /// A TOS version lacks the image of some platform families: activating
    /// it would leave those devices without an image of the active version.
    #[error("{channel} version {version} is incomplete: no verified image for {missing}; download it again before activating")]
    Incomplete {
        /// Which feed it comes from (`dv` or `tos`).
        channel: Channel,
        /// Version asked for.
        version: Version,
        /// The families without an image, comma-separated.
        missing: String,
    },
    /// A stored file no longer matches its digest.
    #[error("stored file of {key} is corrupt, refusing to activate: {source}")]
    Corrupt {
        /// Package key.
        key: String,
        /// What the check found.
        source: BlobError,
    },
    /// Setting up failed.
    #[error("{0}")]
    Setup(String),
}
