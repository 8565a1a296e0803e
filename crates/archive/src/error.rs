//! Errors of reading an archive. Each names the entry (or file) and what is wrong with it; the
//! binary prefixes the archive's own name.

use crate::paths::PathError;
use layerlift_layout::LayoutError;

/// Why an archive could not be read, listed or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading (or staging, or decompressing) something failed with an I/O error.
    #[error("cannot read {what}: {source}")]
    Io {
        /// What was being read or done, for the message (`the archive`, an entry…).
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing what was read into the output layout failed (a full disk, a read-only
    /// directory).
    #[error("cannot write {what} into {}: {source}", dir.display())]
    Write {
        /// What was being written (an entry…).
        what: String,
        /// The layout written to.
        dir: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input holds no bytes (or its compressed stream decompresses to none).
    #[error("{what}: not an archive; {EXPECTED}")]
    Empty {
        /// How it is empty: no bytes, or a compressed stream that decompresses to none.
        what: String,
    },
    /// The start of the input is surely not a tar archive; `what` says what it looks like.
    #[error("not an image archive: {what}; {EXPECTED}")]
    NotAnArchive {
        /// What the input looks like instead.
        what: String,
    },
    /// The (decompressed) stream is not a valid tar: a header is broken.
    #[error("not a valid tar archive{}: {detail}", compressed(.compression))]
    NotTar {
        /// The outer stream's compression (`none`, `gzip`, `zstd`, `bzip2`, `xz`), or `-` when
        /// not known.
        compression: &'static str,
        /// What is wrong with the header, and what was being read.
        detail: String,
    },
    /// The stream ends early: inside an entry, a header, or before the tar's end-of-archive blocks.
    #[error("truncated archive: {0}")]
    Truncated(String),
    /// Every receiver of the [`crate::Options::handover`] is gone: the caller reports its own error.
    #[error("reading stopped by the caller")]
    Stopped,
    /// The outer stream's compressed data cannot be decoded (corrupt, truncated, or followed by
    /// garbage).
    #[error("corrupt {compression} compression: {detail}")]
    CorruptCompression {
        /// The outer stream's compression (`gzip`, `zstd`, `bzip2`, `xz`), or `outer` when not
        /// known.
        compression: &'static str,
        /// The decoder's description of the problem.
        detail: String,
    },
    /// An entry name or link cannot be used: absolute, escaping the archive, a loop, too long.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The archive goes past one of the reader's bounds (entries, links, header bytes,
    /// descriptors); the text says which.
    #[error("archive refused: {0}")]
    Limit(String),
    /// Two entries have this path.
    #[error("duplicate entry `{0}` in the archive")]
    Duplicate(String),
    /// One entry cannot be used (a link without a target, a sparse file, content that does not
    /// match the digest its name states, a blob that was not staged).
    #[error("entry `{path}`: {why}")]
    BadEntry {
        /// The entry's path in the archive.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// A `docker save` archive from Docker before 1.10: no `manifest.json`, only v1 layer
    /// directories.
    #[error(
        "no manifest.json: this is a `docker save` archive from Docker < 1.10 (only `repositories` and \
         v1 layer directories); current Docker refuses it too, re-save the image with a newer engine"
    )]
    PreManifestDocker,
    /// A tar that holds neither `manifest.json` nor `index.json`: not a saved image.
    #[error("not a saved image archive: neither manifest.json nor index.json found")]
    NotAnImageArchive,
    /// A metadata document (`manifest.json`, `index.json`…) cannot be used.
    #[error("{file}: {why}")]
    BadMetadata {
        /// The document's path in the archive.
        file: String,
        /// What is wrong with it.
        why: String,
    },
    /// A chosen image has a fatal defect (or lacks the platform asked for), so it cannot be
    /// unpacked.
    #[error("image {image}: {why}")]
    BadImage {
        /// The image's label: its first name, or `@N` (see [`crate::label`]).
        image: String,
        /// The defect.
        why: String,
    },
    /// An image selector (`@N`, a digest or a name) matches no image of the archive, or is not a
    /// valid selector; holds the selector as given.
    #[error("no image matches `{0}` (see --list)")]
    NoSuchImage(String),
    /// Creating or writing the output layout failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
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
