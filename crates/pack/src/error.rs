//! [`PackError`]: what can go wrong while packing. Each error names the layout, image, blob or
//! output file concerned; the variants that say where something happened (`Image`, `Blob`) carry
//! the underlying error as their `source`, so a caller printing the source chain reads one line.

use layerlift_layers::LayerError;
use layerlift_layout::LayoutError;
use layerlift_manifest::{Digest, ManifestError};
use std::path::PathBuf;

/// Why packing failed. Nothing was written to an output file (no file is left); a stream given to
/// [`pack_to_writer`](crate::pack_to_writer) may hold a prefix of the archive, never its end.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The [`Options`](crate::Options) cannot work whatever the layout holds.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The layout does not exist.
    #[error("{}: no such file or directory", path.display())]
    NoSuchLayout {
        /// The layout given.
        path: PathBuf,
    },
    /// The directory holds no `oci-layout` file.
    #[error("{} is not an OCI image layout (it has no oci-layout file)", path.display())]
    NotALayout {
        /// The directory given.
        path: PathBuf,
    },
    /// The layout cannot be opened or its `index.json` read.
    #[error("{}", path.display())]
    OpenLayout {
        /// The layout given.
        path: PathBuf,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// An `--image` selector chooses nothing or is malformed.
    #[error("--image {selector}: {reason}")]
    Select {
        /// The selector as given.
        selector: String,
        /// What is wrong (`no such image in index.json (names: a:1, b:2)`).
        reason: String,
    },
    /// `index.json` lists no image.
    #[error("{}: index.json lists no image", path.display())]
    Empty {
        /// The layout.
        path: PathBuf,
    },
    /// Something about one `index.json` entry.
    #[error("image {name}")]
    Image {
        /// The entry: its name and position (`app:1 (@0)`), or position and digest.
        name: String,
        /// What failed.
        #[source]
        source: Box<PackError>,
    },
    /// A blob the archive needs is missing or corrupt (the layout's error names it).
    #[error("{source}")]
    Blob {
        /// The blob's digest.
        digest: Digest,
        /// What is wrong with it.
        #[source]
        source: LayoutError,
    },
    /// A blob's bytes changed while it was being written: not the digest or size they had.
    #[error("blob {digest} changed while it was read: {why}")]
    Changed {
        /// The blob's digest.
        digest: Digest,
        /// What differs.
        why: String,
    },
    /// A manifest, index or config that does not parse.
    #[error(transparent)]
    Document(#[from] ManifestError),
    /// An entry that is neither an image manifest nor an index (an artifact, say), which a
    /// docker-archive cannot hold.
    #[error("{digest} is a {media_type}, not an image")]
    NotAnImage {
        /// Its digest.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// An index holds no image for the platform asked for.
    #[error("index {digest} has no image for {platform} in this layout (it has: {available})")]
    NoPlatform {
        /// The index.
        digest: Digest,
        /// The platform asked for (`--platform`, or the machine's).
        platform: String,
        /// The platforms it lists whose manifests are in the layout.
        available: String,
    },
    /// Indexes nested deeper than [`MAX_DEPTH`](crate::limits::MAX_DEPTH).
    #[error(
        "index {digest}: indexes nested more than {} deep",
        crate::limits::MAX_DEPTH
    )]
    TooDeep {
        /// The index at which the walk stopped.
        digest: Digest,
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
    /// A layer that had to be decompressed does not decode, or not to its diff_id.
    #[error("layer {digest}")]
    Layer {
        /// The layer's digest.
        digest: Digest,
        /// What failed.
        #[source]
        source: Box<LayerError>,
    },
    /// Creating, writing or renaming the output file failed.
    #[error("{}", path.display())]
    Output {
        /// The output file (or the temp file beside it).
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Writing the archive to the stream failed (a closed pipe, a full disk).
    #[error("writing the archive")]
    Write(#[source] std::io::Error),
}

impl PackError {
    pub(crate) fn blob(digest: Digest, source: LayoutError) -> Self {
        PackError::Blob { digest, source }
    }
}

/// [`Options`](crate::Options) that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// A `--tag` that is not an image name with a tag.
    #[error("--tag {tag}: {reason}")]
    BadTag {
        /// The tag as given.
        tag: String,
        /// What is wrong.
        reason: String,
    },
    /// `--tag` names one image; the options choose several.
    #[error("--tag names one image, but {images} images are chosen; choose one with --image")]
    TagsNeedOneImage {
        /// How many images are chosen.
        images: usize,
    },
    /// A platform that is not `os/arch[/variant]`.
    #[error("--platform {0}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64")]
    BadPlatform(String),
    /// `--platform` with `--format oci`, which keeps indexes whole.
    #[error(
        "--platform chooses one platform for --format docker; --format oci keeps every platform of an index"
    )]
    PlatformWithOci,
}
