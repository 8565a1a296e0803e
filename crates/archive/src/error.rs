//! Errors of reading an archive. Each names the entry (or file) and what is wrong with it; the
//! binary prefixes the archive's own name.

use crate::paths::PathError;
use layerlift_layout::LayoutError;
use layerlift_manifest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The input holds no bytes (or its compressed stream decompresses to none).
    #[error("{what}: not an archive; {EXPECTED}")]
    Empty { what: String },
    /// The start of the input is surely not a tar archive; `what` says what it looks like.
    #[error("not an image archive: {what}; {EXPECTED}")]
    NotAnArchive { what: String },
    #[error("not a valid tar archive{}: {detail}", compressed(.compression))]
    NotTar {
        compression: &'static str,
        detail: String,
    },
    #[error("truncated archive: {0}")]
    Truncated(String),
    /// The [`crate::BlobHook`] asked reading to stop: the caller reports its own error.
    #[error("reading stopped by the caller")]
    Stopped,
    #[error("corrupt {compression} compression: {detail}")]
    CorruptCompression {
        compression: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("archive refused: {0}")]
    Limit(String),
    #[error("duplicate entry `{0}` in the archive")]
    Duplicate(String),
    #[error("entry `{path}`: {why}")]
    BadEntry { path: String, why: String },
    #[error(
        "no manifest.json: this is a `docker save` archive from Docker < 1.10 (only `repositories` and \
         v1 layer directories); current Docker refuses it too, re-save the image with a newer engine"
    )]
    PreManifestDocker,
    #[error("not a saved image archive: neither manifest.json nor index.json found")]
    NotAnImageArchive,
    #[error("{file}: {why}")]
    BadMetadata { file: String, why: String },
    #[error("image {image}: {why}")]
    BadImage { image: String, why: String },
    #[error("no image matches `{0}` (see --list)")]
    NoSuchImage(String),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("layer {path}: diff_id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        path: String,
        expected: Digest,
        actual: Digest,
    },
}

/// What the tools read, for messages about an input that is not that.
const EXPECTED: &str = "expected a tar written by `docker save`, `podman save` or `skopeo copy`, \
                        plain or gzip/zstd/bzip2/xz compressed";

/// ` (gzip-compressed)` for a compressed stream, nothing for a plain one.
fn compressed(compression: &str) -> String {
    match compression {
        "none" | "-" => String::new(),
        c => format!(" ({c}-compressed)"),
    }
}

impl ArchiveError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ArchiveError::Io {
            what: what.into(),
            source,
        }
    }
}
