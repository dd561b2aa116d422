//! Errors of the registry crate.

use bonus_ids::{ArtifactId, ManifestId};

/// Result of this crate's fallible operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a registry operation failed. Nothing corrupt is ever stored: every
/// variant leaves the store as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A manifest's bytes do not decode canonically.
    #[error("malformed manifest: {reason}")]
    ManifestMalformed {
        /// What is wrong.
        reason: String,
    },
    /// A manifest in an encoding format this version no longer accepts
    /// (format 1 carried no budget: its owner consented to no price).
    #[error(
        "manifest format {format} is no longer accepted; re-sign it with this version of bonus"
    )]
    ManifestFormatRetired {
        /// The format byte it starts with.
        format: u8,
    },
    /// A manifest breaks a rule (name, versions, env…).
    #[error("invalid manifest: {reason}")]
    ManifestInvalid {
        /// What is wrong.
        reason: String,
    },
    /// The signature does not verify for the manifest's owner.
    #[error("manifest {manifest_id} has an invalid signature: it was not signed by its owner")]
    ManifestSignatureInvalid {
        /// The manifest.
        manifest_id: ManifestId,
    },
    /// The bytes received do not hash to the id they were sent as.
    #[error(
        "artifact hash mismatch: expected {expected}, got {actual}; the upload or peer sent other bytes"
    )]
    ArtifactMismatch {
        /// The id asked for.
        expected: ArtifactId,
        /// BLAKE3 of what arrived.
        actual: ArtifactId,
    },
    /// The artifact exceeds the size limit; rejected while streaming.
    #[error("artifact exceeds the size limit of {bytes_max} bytes")]
    ArtifactTooLarge {
        /// The limit.
        bytes_max: u64,
    },
    /// A manifest's artifact size does not match the stored artifact.
    #[error("manifest says artifact {artifact_id} has {declared} bytes, but it has {actual}")]
    ArtifactSizeMismatch {
        /// The artifact.
        artifact_id: ArtifactId,
        /// Size in the manifest.
        declared: u64,
        /// Size stored.
        actual: u64,
    },
    /// The store does not hold this artifact.
    #[error("unknown artifact {artifact_id}; upload it first")]
    ArtifactUnknown {
        /// The artifact.
        artifact_id: ArtifactId,
    },
    /// Two fetches of one artifact shared its download, and the one that
    /// stored it failed to.
    #[error(
        "artifact {artifact_id} was fetched but another fetch of it failed to store it; fetch it again"
    )]
    FetchNotStored {
        /// The artifact.
        artifact_id: ArtifactId,
    },
    /// The store does not hold this manifest.
    #[error("unknown manifest {manifest_id}")]
    ManifestUnknown {
        /// The manifest.
        manifest_id: ManifestId,
    },
    /// The upload ended before its declared length.
    #[error("upload truncated: got {received} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        received: u64,
        /// Bytes promised.
        expected: u64,
    },
    /// The name belongs to another account.
    #[error("name {name:?} belongs to {owner}; deploy under another name")]
    NameTaken {
        /// The name.
        name: String,
        /// Its owner.
        owner: bonus_ids::PublicKey,
    },
    /// The index database failed.
    #[error("registry index: {0}")]
    Index(String),
    /// A file operation failed.
    #[error("registry storage at {path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

macro_rules! index_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Index(e.to_string())
            }
        }
    )*};
}

index_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
