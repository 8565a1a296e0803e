//! Errors of the layout crate; each names the file or digest concerned.

use layerlift_manifest::{Digest, ManifestError};
use std::path::PathBuf;

/// Why creating, opening, reading or writing a layout failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A file system operation on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The directory is not a layout this crate reads or may create: no or bad `oci-layout`,
    /// no `index.json`, or a non-empty directory that is not a layout.
    #[error("{} is not an OCI image layout: {why}", path.display())]
    NotALayout {
        /// The layout's directory, or its `oci-layout` file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A blob that was asked for, or that `index.json` would name, is not in `blobs/sha256/`.
    #[error("blob {digest} is missing ({})", path.display())]
    MissingBlob {
        /// The blob's digest.
        digest: Digest,
        /// Where the blob should be.
        path: PathBuf,
    },
    /// A blob's content does not have the digest it should.
    #[error("{}: digest mismatch: expected {expected}, got {actual}", path.display())]
    DigestMismatch {
        /// The blob's file (in `blobs/sha256/`, or a staged temp file).
        path: PathBuf,
        /// The digest it should have.
        expected: Digest,
        /// The digest of its content.
        actual: Digest,
    },
    /// A blob read into memory as a JSON document is larger than the limit.
    #[error("{}: larger than {limit} bytes, too large for a JSON document", path.display())]
    TooLarge {
        /// The blob's file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// `index.json` is not a valid image index.
    #[error("{}: {source}", path.display())]
    Json {
        /// The `index.json` file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: ManifestError,
    },
    /// The new `index.json` could not be serialised; holds the serializer's message.
    #[error("cannot serialise index.json: {0}")]
    Serialize(String),
}

impl LayoutError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LayoutError::Io {
            path: path.into(),
            source,
        }
    }
}
