//! [`ConvertError`]: what can go wrong in a conversion. Each error names the file, blob, image or
//! layer concerned; the variants that add where something happened (`Image`, `Manifest`, `Layer`,
//! …) carry the underlying error as their `source`, so that a caller printing the source chain
//! reads one line from the image down to the file.

use layerlift_layers::LayerError;
use layerlift_layout::LayoutError;
use layerlift_manifest::{Digest, ManifestError};
use std::path::PathBuf;

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The [`Options`](crate::Options) cannot work whatever the layout holds.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// An image selector picks nothing or is malformed.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// The source does not exist.
    #[error("{}: no such file or directory", path.display())]
    NoSuchInput {
        /// The source given.
        path: PathBuf,
    },
    /// The source is an archive, not an OCI image layout, and no destination was given to unpack
    /// it into.
    #[error("{} is not an OCI image layout; to convert an archive, give OUT", path.display())]
    ArchiveNeedsOutput {
        /// The source given.
        path: PathBuf,
    },
    /// The source looked like a layout (it has `oci-layout`) but cannot be opened as one.
    #[error("{} (expected an OCI image layout)", path.display())]
    OpenSource {
        /// The source layout.
        path: PathBuf,
        /// Why it cannot be opened.
        #[source]
        source: LayoutError,
    },
    /// The destination layout cannot be opened or created.
    #[error("{}", path.display())]
    OpenDestination {
        /// The destination layout.
        path: PathBuf,
        /// Why it cannot be opened or created.
        #[source]
        source: LayoutError,
    },
    /// Unpacking an archive source failed.
    #[error("{input}")]
    Unpack {
        /// The archive (`<stdin>` for standard input).
        input: String,
        /// Why unpacking failed.
        #[source]
        source: layerlift_archive::ArchiveError,
    },
    /// Converting one entry of `index.json` failed.
    #[error("image {name}")]
    Image {
        /// The entry: its name and position (`app:1 (@0)`), or position and digest.
        name: String,
        /// What failed.
        #[source]
        source: Box<ConvertError>,
    },
    /// Converting an image index failed.
    #[error("index {digest}")]
    Index {
        /// The index's digest.
        digest: Digest,
        /// What failed.
        #[source]
        source: Box<ConvertError>,
    },
    /// Converting one entry of an image index failed.
    #[error("{}", match platform { Some(p) => format!("{p} manifest {digest}"), None => format!("entry {digest}") })]
    IndexEntry {
        /// The entry's platform (`linux/amd64`), when the index gives one.
        platform: Option<String>,
        /// The entry's digest.
        digest: Digest,
        /// What failed.
        #[source]
        source: Box<ConvertError>,
    },
    /// Converting an image manifest failed.
    #[error("manifest {digest}")]
    Manifest {
        /// The manifest's digest.
        digest: Digest,
        /// What failed.
        #[source]
        source: Box<ConvertError>,
    },
    /// Reading or rewriting an image config failed.
    #[error("config {digest}")]
    Config {
        /// The config's digest.
        digest: Digest,
        /// What failed.
        #[source]
        source: Box<ConvertError>,
    },
    /// Converting one layer failed.
    #[error("layer {index} ({digest})")]
    Layer {
        /// The layer's position in its manifest (from 0).
        index: usize,
        /// The layer's digest.
        digest: Digest,
        /// What failed.
        #[source]
        source: Box<ConvertError>,
    },
    /// A manifest and its config disagree on the number of layers.
    #[error("the manifest lists {layers} layers but its config {config} has {diff_ids} diff_ids")]
    LayerCount {
        /// Layers in the manifest.
        layers: usize,
        /// The config's digest.
        config: Digest,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A layer blob is not as large as its descriptor says.
    #[error("{}: the descriptor says {expected} bytes, the blob has {actual}", path.display())]
    SizeMismatch {
        /// The blob.
        path: PathBuf,
        /// The descriptor's size.
        expected: u64,
        /// The blob's size.
        actual: u64,
    },
    /// A config is not JSON.
    #[error("the config is not JSON")]
    ConfigNotJson(#[source] serde_json::Error),
    /// Reading, writing or removing a file failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Copying a blob the converter does not interpret failed.
    #[error("copying blob {digest}")]
    CopyBlob {
        /// The blob's digest.
        digest: Digest,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The layout: a missing or corrupt blob, `index.json`, a lock.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A layer's bytes: they do not decode, or their diff_id is not the config's.
    #[error(transparent)]
    Codec(#[from] LayerError),
    /// A manifest, index or config that does not parse.
    #[error(transparent)]
    Document(#[from] ManifestError),
    /// A layer that the target format cannot describe.
    #[error(transparent)]
    MediaType(#[from] layerlift_manifest::convert::ConvertError),
}

impl ConvertError {
    /// Wrap `self` with where it happened.
    pub(crate) fn in_layer(self, index: usize, digest: Digest) -> Self {
        ConvertError::Layer {
            index,
            digest,
            source: Box::new(self),
        }
    }
}

/// [`Options`](crate::Options) that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// Docker schema 2 has no media type for uncompressed layers.
    #[error("Docker schema 2 has no media type for uncompressed layers")]
    UncompressedDocker,
    /// The level cannot be used with the compression.
    #[error(transparent)]
    Level(#[from] layerlift_layers::LevelError),
    /// Zero threads.
    #[error("threads must be at least 1")]
    ZeroThreads,
}

/// An image selector ([`Options::images`](crate::Options::images)) that picks nothing. Displayed
/// as the selector followed by what is wrong (`app:2: no such image in index.json …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// Not a selector at all (empty, or `@` not followed by a number).
    #[error("{selector}: {reason}")]
    Invalid {
        /// The selector.
        selector: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `@N` past the end of `index.json`.
    #[error("{selector}: index.json has {entries} entries")]
    OutOfRange {
        /// The selector.
        selector: String,
        /// Entries in `index.json`.
        entries: usize,
    },
    /// No entry has this name.
    #[error("{selector}: no such image in index.json (names: {})", if names.is_empty() { "none; use @N".to_string() } else { names.join(", ") })]
    NoSuchImage {
        /// The selector.
        selector: String,
        /// The names `index.json` has.
        names: Vec<String>,
    },
}

impl SelectError {
    /// The selector that failed.
    pub fn selector(&self) -> &str {
        match self {
            SelectError::Invalid { selector, .. }
            | SelectError::OutOfRange { selector, .. }
            | SelectError::NoSuchImage { selector, .. } => selector,
        }
    }
}
