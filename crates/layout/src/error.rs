//! Errors of the layout crate; each names the file or digest concerned.

use layerlift_manifest::{Digest, ManifestError};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not an OCI image layout: {why}", path.display())]
    NotALayout { path: PathBuf, why: String },
    #[error("blob {digest} is missing ({})", path.display())]
    MissingBlob { digest: Digest, path: PathBuf },
    #[error("{}: digest mismatch: expected {expected}, got {actual}", path.display())]
    DigestMismatch {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
    #[error("{}: larger than {limit} bytes, too large for a JSON document", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
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
