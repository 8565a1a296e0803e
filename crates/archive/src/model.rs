//! What reading an archive found: its format, its images, their layers, links and defects. This is
//! what `--list` prints and what unpack commits.

use layerlift_layers::Compression;
use layerlift_manifest::{Descriptor, Digest};
use serde::Serialize;

/// The kind of archive, detected from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `docker save` layout with a top-level `manifest.json` array.
    DockerArchive,
    /// An OCI image layout (`oci-layout`, `index.json`, `blobs/`), in a tar or a directory.
    OciLayout,
    /// containers/image `dir:` transport: `manifest.json` object, blobs named by hex.
    DirTransport,
}

impl Format {
    /// The name `--list` prints.
    pub fn name(self) -> &'static str {
        match self {
            Format::DockerArchive => "docker-archive (manifest.json)",
            Format::OciLayout => "OCI image layout (index.json)",
            Format::DirTransport => "dir: transport (manifest.json + bare-hex blobs)",
        }
    }
}

/// Which engine (and era) wrote the archive, as far as its shape tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Docker ≤ 24 (image spec v1.2): `<v1id>/layer.tar`, `<imageid>.json`, `repositories`.
    DockerLegacy,
    /// Docker ≥ 25 with the classic store: manifest.json and an OCI layout in one tar.
    Docker25,
    /// Docker with the containerd image store: OCI layout with the original (compressed) blobs.
    DockerContainerd,
    /// podman or skopeo (containers/image) docker-archive: `<diffid>.tar` plus symlinked legacy dirs.
    ContainersImage,
    /// kaniko / go-containerregistry tarball: `sha256:<hex>` config, compressed `<digest>.tar.gz` layers.
    Ggcr,
    /// An OCI image layout or oci-archive (BuildKit, podman, skopeo, umoci, regclient…).
    Oci,
    /// containers/image `dir:` transport directory.
    DirTransport,
}

impl Origin {
    /// Human description for `--list`.
    pub fn describe(self) -> &'static str {
        match self {
            Origin::DockerLegacy => {
                "docker save, Docker 1.10–24 (image spec v1.2, layer directories)"
            }
            Origin::Docker25 => {
                "docker save, Docker 25+ classic store (manifest.json + OCI layout)"
            }
            Origin::DockerContainerd => {
                "docker save, Docker with the containerd image store (original blobs)"
            }
            Origin::ContainersImage => "docker-archive written by podman/skopeo (containers/image)",
            Origin::Ggcr => "tarball written by kaniko/go-containerregistry (compressed layers)",
            Origin::Oci => "OCI image layout (oci-archive or directory)",
            Origin::DirTransport => "containers/image dir: transport directory",
        }
    }
}

/// Something wrong or noteworthy found in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Defect {
    /// A fatal defect stops unpack (of the image it belongs to).
    pub fatal: bool,
    /// What is wrong or noteworthy, as `--list` prints it.
    pub message: String,
}

impl Defect {
    /// A defect that stops unpacking the image it belongs to.
    pub fn fatal(message: impl Into<String>) -> Self {
        Defect {
            fatal: true,
            message: message.into(),
        }
    }

    /// A defect that is only reported and stops nothing.
    pub fn note(message: impl Into<String>) -> Self {
        Defect {
            fatal: false,
            message: message.into(),
        }
    }
}

/// A layer of an image as found in the archive.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// The path the manifest names (docker-archive) or `blobs/sha256/<hex>`.
    pub path: Option<String>,
    /// The file it resolves to when that differs (through symlinks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    /// The descriptor the layout's manifest carries.
    pub descriptor: Descriptor,
    /// Compression of the stored bytes (sniffed).
    #[serde(serialize_with = "ser_compression")]
    pub compression: Compression,
    /// The config's diff_id for this layer.
    pub diff_id: Option<Digest>,
    /// Size of the uncompressed tar, when known.
    pub uncompressed_size: Option<u64>,
    /// Is the blob in the archive?
    pub present: bool,
}

fn ser_compression<S: serde::Serializer>(c: &Compression, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

/// A manifest found under an image (the image itself, or a platform of an index).
#[derive(Debug, Clone, Serialize)]
pub struct ManifestInfo {
    /// The manifest's digest (for a docker archive, of the OCI manifest generated for the image).
    pub digest: Digest,
    /// The manifest's media type, as its descriptor states it.
    pub media_type: String,
    /// `os/arch[/variant]`, from the descriptor that names the manifest (or, for a docker archive,
    /// from the image config); `None` when neither states one.
    pub platform: Option<String>,
    /// Is the manifest's blob in the archive?
    pub present: bool,
    /// Manifest, config and every distributable layer are in the archive and check out.
    pub complete: bool,
    /// The config descriptor the manifest names; `None` when the manifest is not in the archive.
    pub config: Option<Descriptor>,
    /// The manifest's layers, in order.
    pub layers: Vec<LayerInfo>,
    /// The descriptor that names this manifest (in its index, or index.json).
    #[serde(skip)]
    pub(crate) descriptor: Option<Descriptor>,
    /// Which of the image's `blobs` belong to this manifest.
    #[serde(skip)]
    pub(crate) blobs: std::ops::Range<usize>,
}

/// One image of the archive: what becomes one or more entries of the layout's index.json.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    /// Position in the archive (`@N`).
    pub position: usize,
    /// Names as the archive writes them (RepoTags, ref.name…), in order.
    pub names: Vec<String>,
    /// The descriptor index.json will hold (without name annotations for docker archives).
    pub descriptor: Descriptor,
    /// `Parent` image ID from a legacy manifest.json.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The image manifest, or the platforms of an index.
    pub manifests: Vec<ManifestInfo>,
    /// What is wrong or noteworthy about this image.
    pub defects: Vec<Defect>,
    /// Blobs to publish, as (digest, where they come from).
    #[serde(skip)]
    pub(crate) blobs: Vec<(Digest, BlobOrigin)>,
    /// True when the names should be written as annotations (archives without an index.json).
    #[serde(skip)]
    pub(crate) annotate_names: bool,
}

impl ImageInfo {
    /// Does the image have a fatal defect (so that it cannot be unpacked)?
    pub fn is_fatal(&self) -> bool {
        self.defects.iter().any(|d| d.fatal)
    }
}

/// A link entry, for `--list`.
#[derive(Debug, Clone, Serialize)]
pub struct LinkInfo {
    /// The link entry's path in the archive.
    pub path: String,
    /// The target as the entry writes it.
    pub target: String,
    /// `symlink` or `hardlink`.
    pub kind: &'static str,
    /// Where it finally leads, or why it cannot be followed.
    pub resolves_to: Result<String, String>,
}

/// Everything reading found.
#[derive(Debug, Serialize)]
pub struct ArchiveInfo {
    /// The kind of archive.
    pub format: Format,
    /// Which tool (and era) wrote it.
    pub origin: Origin,
    /// Compression of the outer stream.
    #[serde(serialize_with = "ser_compression")]
    pub compression: Compression,
    /// The images, in the order the archive lists them.
    pub images: Vec<ImageInfo>,
    /// Every link entry of the archive.
    pub links: Vec<LinkInfo>,
    /// Defects about the archive as a whole.
    pub defects: Vec<Defect>,
    /// How many files and links the archive holds (directories and skipped entries not counted).
    pub entries: usize,
}

/// Where a blob of the output comes from.
#[derive(Debug, Clone)]
pub(crate) enum BlobOrigin {
    /// The staged bytes of this archive entry, as they are.
    Entry(String),
    /// Bytes layerlift generated (a manifest).
    Generated(Vec<u8>),
    /// The compressed copy of this entry made while reading it.
    Encoded(String),
    /// The decompressed content of this entry (bzip2/xz layers, which OCI has no media type for).
    Decompressed(String),
}
