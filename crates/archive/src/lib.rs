//! Read saved-image archives of every era, in one pass, into an OCI image layout.
//!
//! Accepted, detected from the content (never from file names or media types):
//! `docker save` of every Docker era (legacy v1.2 with symlinked `layer.tar`, Docker 25+ with its
//! built-in OCI layout, the containerd image store with compressed layers and nested indexes),
//! podman/skopeo docker-archives (single and multi-image), kaniko/ggcr tarballs, oci-archives, OCI
//! layout directories and `dir:` transport directories; the outer stream plain, gzip, zstd, bzip2
//! or xz.
//!
//! How: [`scan`] streams every entry once (hashing it, decoding compressed entries to learn their
//! uncompressed digest, staging it in the layout's temp dir), then the metadata — which Docker and
//! skopeo write last — is reconciled ([`analyze`]), and [`plan::commit`] publishes the chosen
//! images: verified blobs renamed into place, index.json written last. Nothing here touches the
//! network.
//!
//! Early publication, for push: with [`Options::on_blob`], each layer is renamed into the layout
//! as soon as it has streamed past (named by the digest it was hashed to while being written) and
//! the hook is called with it, while the rest of the archive is still being read; `layerlift-push`
//! uploads it meanwhile. Only layers are published early — an uncompressed tar entry (or the
//! compressed copy made of it), a gzip or zstd entry that decoded — not JSON documents (configs,
//! manifests: which is which is known only once the metadata, written last, is read) nor
//! bzip2/xz layers (decompressed at commit). Such a layer is visible before the metadata names it:
//! the layout may end up holding layers no image uses (of images not chosen, or of a failed read),
//! which suits push's temporary layout and nothing else. With [`BlobHook::streaming`], a large
//! uncompressed layer is also handed over when its compression starts, as a [`GrowingBlob`] that
//! reads the compressed bytes as they reach the layout: push uploads it while it is compressed.

#![warn(missing_docs)]

pub mod catalog;
mod docker;
mod error;
mod fanout;
mod growing;
mod listing;
pub mod model;
pub mod names;
mod oci;
pub mod paths;
pub mod plan;
mod readahead;
pub mod scan;
mod sniff;
mod verify;

pub use error::ArchiveError;
pub use fanout::MAX_DESCRIPTORS;
pub use growing::{Completion, GrowingBlob};
pub use listing::Listing;
pub use model::{
    ArchiveInfo, Defect, Format, ImageInfo, LayerInfo, LinkInfo, ManifestInfo, Origin,
};
pub use plan::{commit, label, select};
pub use scan::{Reuse, ReusedEntry, Scan, ScanSettings};
pub use verify::{Verification, verify_layout};

use layerlift_layers::{Compression, Encoding};
use layerlift_layout::Layout;
use layerlift_manifest::{Descriptor, Digest, Index, media_types, parse_json};
use oci::Walker;
use paths::Link;
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the archive comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file (tar, possibly compressed) or a directory (OCI layout, `dir:` transport, extracted archive).
    Path(PathBuf),
    /// Standard input, read once.
    Stdin,
}

impl Input {
    /// `-` means standard input.
    pub fn from_arg(arg: &str) -> Self {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }

    /// How messages name it.
    pub fn display(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Stdin => "<stdin>".to_string(),
        }
    }
}

const READ_BUFFER: usize = 1 << 20;

/// Read the whole input once. With `layout`, every entry is staged there (nothing is published
/// until [`commit`]); without, entries are only hashed (`--list`).
pub fn read(input: &Input, layout: Option<&Layout>) -> Result<(ArchiveInfo, Scan), ArchiveError> {
    read_with(input, layout, ScanSettings::default())
}

/// [`read`] as `settings` say: compressing uncompressed layers to their `encoding` while staging
/// them (with a layout); leaving their `reuse` entries by path unread (an uncompressed archive file
/// or a directory skips them without reading a byte; a stream reads past them without hashing)
/// and only hashing their layers by diff_id; publishing layers into `layout` as they stream past
/// when `on_blob` is given ([`Options::on_blob`]).
pub fn read_with(
    input: &Input,
    layout: Option<&Layout>,
    settings: ScanSettings,
) -> Result<(ArchiveInfo, Scan), ArchiveError> {
    let (scan, compression) = match input {
        Input::Path(p) if p.is_dir() => (scan::scan_dir(p, layout, settings)?, Compression::None),
        Input::Path(p) => {
            let mut file =
                std::fs::File::open(p).map_err(|e| ArchiveError::io("the archive", e))?;
            if !settings.reuse.by_path.is_empty() && catalog::is_plain_tar(&mut file)? {
                (
                    scan::scan_tar_file(&mut file, layout, settings)?,
                    Compression::None,
                )
            } else {
                scan_stream(Box::new(file), layout, settings)?
            }
        }
        Input::Stdin => {
            grow_pipe_buffer();
            scan_stream(Box::new(std::io::stdin()), layout, settings)?
        }
    };
    let info = analyze(&scan, compression)?;
    Ok((info, scan))
}

/// A pipe hands out at most its buffer (64 KiB by default) per read: ask for 1 MiB so that reading
/// `docker save | layerlift-unpack -` costs a sixteenth of the system calls. Best effort.
fn grow_pipe_buffer() {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::pipe::fcntl_setpipe_size(std::io::stdin(), READ_BUFFER);
    }
}

/// Open an archive file and check that its start is an archive (not empty, not text, not a zip...),
/// reading at most one tar block after decompression: what a caller does before it spends time on
/// anything else (push, before it contacts the registry).
pub fn check_start(path: &std::path::Path) -> Result<(), ArchiveError> {
    let file = std::fs::File::open(path).map_err(|e| ArchiveError::io("the archive", e))?;
    let (compression, decoded) = layerlift_layers::decoder(BufReader::new(file))
        .map_err(|e| ArchiveError::io("the start of the archive", e))?;
    sniff::check_start(decoded, compression).map(drop)
}

fn scan_stream(
    source: Box<dyn Read + Send>,
    layout: Option<&Layout>,
    settings: ScanSettings,
) -> Result<(Scan, Compression), ArchiveError> {
    let buffered = BufReader::with_capacity(READ_BUFFER, source);
    let (compression, decoded) = layerlift_layers::decoder(buffered)
        .map_err(|e| ArchiveError::io("the start of the archive", e))?;
    let decoded = sniff::check_start(decoded, compression)?;
    // Reading and decompressing run on their own thread, ahead of hashing and staging.
    let mut reader = readahead::ReadAhead::new(decoded);
    let scan = scan::scan_tar_with(&mut reader, layout, settings).map_err(|e| match e {
        ArchiveError::CorruptCompression { detail, .. } => ArchiveError::CorruptCompression {
            compression: compression.name(),
            detail,
        },
        ArchiveError::NotTar { detail, .. } => ArchiveError::NotTar {
            compression: compression.name(),
            detail,
        },
        other => other,
    })?;
    Ok((scan, compression))
}

/// Work out what the scanned entries hold.
pub fn analyze(scan: &Scan, compression: Compression) -> Result<ArchiveInfo, ArchiveError> {
    let mut defects = Vec::new();
    let links = scan
        .links
        .iter()
        .map(|(path, link)| LinkInfo {
            path: path.clone(),
            target: link.target().to_string(),
            kind: match link {
                Link::Symlink(_) => "symlink",
                Link::Hard(_) => "hardlink",
            },
            resolves_to: paths::resolve(&scan.links, path).map_err(|e| e.to_string()),
        })
        .collect();
    // A link out of the archive's root is an attack or a broken writer, referenced or not.
    for path in scan.links.keys() {
        if let Err(e @ paths::PathError::LinkEscapes { .. }) = paths::resolve(&scan.links, path) {
            return Err(e.into());
        }
    }
    for skipped in &scan.skipped {
        defects.push(Defect::note(format!(
            "entry `{skipped}` is neither a file, a directory nor a link; ignored"
        )));
    }
    let metadata = |name: &str| -> Result<Option<std::borrow::Cow<'_, [u8]>>, ArchiveError> {
        match scan.file(name)? {
            None => Ok(None),
            Some((_, f)) => f.json().map(Some).ok_or_else(|| ArchiveError::BadMetadata {
                file: name.to_string(),
                why: "is not a JSON document (or larger than 8 MiB)".into(),
            }),
        }
    };
    let bad = |file: &str, why: String| ArchiveError::BadMetadata {
        file: file.to_string(),
        why,
    };

    let has_layout = scan.file("oci-layout")?.is_some();
    let index_json = metadata("index.json")?;
    let oci_images = |defects: &mut Vec<Defect>| -> Result<Vec<ImageInfo>, ArchiveError> {
        let Some(bytes) = index_json.as_deref() else {
            return Ok(Vec::new());
        };
        let raw: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad("index.json", e.to_string()))?;
        if raw.get("manifests").is_some_and(|m| m.is_null()) {
            defects.push(Defect::note(
                "index.json has \"manifests\": null (Docker 25.0.0–25.0.2 saving an untagged image, moby#47210)",
            ));
        }
        let index: Index =
            parse_json("index.json", bytes).map_err(|e| bad("index.json", e.to_string()))?;
        let walker = Walker {
            scan,
            names: oci::BlobNames::Layout,
            fanout: fanout::FanOut::default(),
        };
        let mut images = Vec::new();
        for (i, d) in index.manifests.iter().enumerate() {
            images.push(walker.image(i, d.clone(), oci::descriptor_names(d), None));
            if walker.fanout.exceeded() {
                return Err(walker.fanout.error());
            }
        }
        Ok(images)
    };

    let manifest_json = metadata("manifest.json")?;
    let Some(manifest_bytes) = manifest_json.as_deref() else {
        if index_json.is_some() {
            if !has_layout {
                defects.push(Defect::note(
                    "oci-layout is missing; index.json read anyway",
                ));
            }
            let images = oci_images(&mut defects)?;
            return finish(
                Format::OciLayout,
                Origin::Oci,
                compression,
                images,
                links,
                defects,
                scan,
            );
        }
        if scan.file("repositories")?.is_some() {
            return Err(ArchiveError::PreManifestDocker);
        }
        return Err(ArchiveError::NotAnImageArchive);
    };
    let value: serde_json::Value =
        serde_json::from_slice(manifest_bytes).map_err(|e| bad("manifest.json", e.to_string()))?;
    match value {
        serde_json::Value::Array(_) => {}
        serde_json::Value::Object(ref o) if o.contains_key("schemaVersion") => {
            return dir_transport(scan, manifest_bytes, compression, links, defects);
        }
        serde_json::Value::Null => {
            return Err(bad(
                "manifest.json",
                "is `null`, not a list of images".into(),
            ));
        }
        _ => {
            return Err(bad(
                "manifest.json",
                "is neither a docker save list of images nor an image manifest".into(),
            ));
        }
    }
    let items: Vec<docker::Item> =
        serde_json::from_value(value).map_err(|e| bad("manifest.json", e.to_string()))?;
    if items.is_empty() {
        return Err(bad("manifest.json", "lists no images".into()));
    }
    let docker_images = docker::images(scan, &items);
    let origin = docker_origin(scan, &items, index_json.is_some());

    // Docker 25+ and containerd-store saves are also OCI layouts. Their index.json keeps the real
    // manifests (digests, media types, other platforms): use it when it covers every image of
    // manifest.json, and manifest.json otherwise (it is always consistent with the files).
    if index_json.is_some() {
        let mut oci_defects = Vec::new();
        let mut oci = oci_images(&mut oci_defects)?;
        let uncovered: Vec<&ImageInfo> =
            docker_images.iter().filter(|d| !covered(d, &oci)).collect();
        if uncovered.is_empty() && oci.iter().all(|i| !i.is_fatal()) {
            for d in &docker_images {
                if let Some(o) = oci.iter_mut().find(|o| covered(d, std::slice::from_ref(o))) {
                    for n in &d.names {
                        if !o.names.contains(n) {
                            o.names.push(n.clone());
                        }
                    }
                }
            }
            defects.extend(oci_defects);
            return finish(
                Format::DockerArchive,
                origin,
                compression,
                oci,
                links,
                defects,
                scan,
            );
        }
        defects.extend(oci_defects);
        defects.push(Defect::note(format!(
            "index.json does not describe {} of manifest.json's images as stored (Docker 25.0.0–25.0.2 defects); images read from manifest.json",
            uncovered.len()
        )));
    }
    finish(
        Format::DockerArchive,
        origin,
        compression,
        docker_images,
        links,
        defects,
        scan,
    )
}

/// Does one of `oci`'s images hold a manifest with `docker`'s config and stored layers?
fn covered(docker: &ImageInfo, oci: &[ImageInfo]) -> bool {
    let Some(want) = docker.manifests.first() else {
        return false;
    };
    let key = |m: &ManifestInfo| -> Option<(Digest, Vec<Digest>)> {
        Some((
            m.config.as_ref()?.digest,
            m.layers.iter().map(|l| l.descriptor.digest).collect(),
        ))
    };
    let Some(want) = key(want) else { return false };
    oci.iter().any(|o| {
        o.manifests
            .iter()
            .filter(|m| m.present)
            .any(|m| key(m).as_ref() == Some(&want))
    })
}

fn docker_origin(scan: &Scan, items: &[docker::Item], has_index: bool) -> Origin {
    let layer_paths = || items.iter().flat_map(|i| i.layers.iter().flatten());
    let compressed = layer_paths()
        .any(|p| matches!(scan.file(p), Ok(Some((_, f))) if f.compression != Compression::None));
    if has_index {
        let sources = items.iter().any(|i| i.layer_sources.is_some());
        return if sources || !compressed {
            Origin::Docker25
        } else {
            Origin::DockerContainerd
        };
    }
    if items.iter().any(|i| i.config.starts_with("sha256:")) || compressed {
        return Origin::Ggcr;
    }
    if layer_paths().all(|p| !p.contains('/') && docker::digest_in_name(p).is_some()) {
        return Origin::ContainersImage;
    }
    Origin::DockerLegacy
}

fn dir_transport(
    scan: &Scan,
    manifest_bytes: &[u8],
    compression: Compression,
    links: Vec<LinkInfo>,
    defects: Vec<Defect>,
) -> Result<ArchiveInfo, ArchiveError> {
    let value: serde_json::Value =
        serde_json::from_slice(manifest_bytes).map_err(|e| ArchiveError::BadMetadata {
            file: "manifest.json".into(),
            why: e.to_string(),
        })?;
    let media_type = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(media_types::DOCKER_MANIFEST)
        .to_string();
    if !media_types::is_manifest(&media_type) {
        return Err(ArchiveError::BadMetadata {
            file: "manifest.json".into(),
            why: format!("media type {media_type} is not an image manifest this tool reads"),
        });
    }
    let (path, entry) = scan
        .file("manifest.json")?
        .expect("manifest.json was found before");
    let desc = Descriptor::new(media_type, entry.digest, entry.size);
    let walker = Walker {
        scan,
        names: oci::BlobNames::Hex,
        fanout: fanout::FanOut::default(),
    };
    let image = walker.image(0, desc, Vec::new(), Some((path, entry)));
    if walker.fanout.exceeded() {
        return Err(walker.fanout.error());
    }
    finish(
        Format::DirTransport,
        Origin::DirTransport,
        compression,
        vec![image],
        links,
        defects,
        scan,
    )
}

fn finish(
    format: Format,
    origin: Origin,
    compression: Compression,
    images: Vec<ImageInfo>,
    links: Vec<LinkInfo>,
    defects: Vec<Defect>,
    scan: &Scan,
) -> Result<ArchiveInfo, ArchiveError> {
    Ok(ArchiveInfo {
        format,
        origin,
        compression,
        images,
        links,
        defects,
        entries: scan.files.len() + scan.links.len(),
    })
}

/// Unpack `input` into the layout at `dir` (created if needed): all images, or those `selectors`
/// choose. Returns what was read and the index.json entries added.
pub fn unpack(
    input: &Input,
    dir: &std::path::Path,
    selectors: &[String],
) -> Result<(ArchiveInfo, Vec<Descriptor>), ArchiveError> {
    unpack_with(
        input,
        dir,
        &Options {
            images: selectors.to_vec(),
            ..Options::default()
        },
    )
}

/// What [`unpack_with`] takes from the archive, and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Image selectors (`NAME` or `@N`); all images when empty.
    pub images: Vec<String>,
    /// Narrow multi-platform images to this platform (`os/arch[/variant]`).
    pub platform: Option<String>,
    /// Compress uncompressed layers to this on the way in: the layout never holds an uncompressed
    /// copy. Manifests that name such layers are generated anew (their digests change; configs do
    /// not).
    pub encoding: Option<Encoding>,
    /// Layers not to read (by path, from [`catalog`]) or not to compress (by diff_id), because the
    /// destination already has them. Their blobs are not written to the layout; the manifests name
    /// them.
    pub reuse: Reuse,
    /// The layout is temporary (push's): created without fsyncs ([`Layout::create_scratch`]).
    pub scratch: bool,
    /// Publish each layer as soon as it has been read, and call this with it, while the rest of
    /// the archive is still being read (push starts uploading it). Called once per blob, from the
    /// reading thread, after the rename: keep it short. See the module docs for which blobs.
    pub on_blob: Option<BlobHook>,
}

/// A layer published into the layout while the archive was still being read ([`Options::on_blob`]).
#[derive(Debug, Clone)]
pub struct PublishedBlob {
    /// The hook's streaming callback ([`BlobHook::streaming`]) was handed this layer while it was
    /// being compressed.
    pub streamed: bool,
    /// The sha256 its bytes were hashed to while being written: its name in the layout.
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// `blobs/sha256/<hex>` in the layout.
    pub path: PathBuf,
}

/// The callback of [`Options::on_blob`], and optionally a question asked as the archive is read:
/// should reading stop ([`BlobHook::stopping_when`])?
#[derive(Clone)]
pub struct BlobHook {
    published: Arc<dyn Fn(&PublishedBlob) + Send + Sync>,
    stop: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// Layers of at least this many uncompressed bytes, and the callback they go to.
    streaming: Option<(u64, StreamFn)>,
}

/// Where [`BlobHook::streaming`] hands layers.
type StreamFn = Arc<dyn Fn(GrowingBlob) + Send + Sync>;

impl BlobHook {
    /// A hook that calls `f` for every layer published while the archive is read.
    pub fn new(f: impl Fn(&PublishedBlob) + Send + Sync + 'static) -> Self {
        BlobHook {
            published: Arc::new(f),
            stop: None,
            streaming: None,
        }
    }

    /// Also hand every uncompressed layer of at least `min_bytes` that is compressed on the way
    /// ([`Options::encoding`]) to `f` the moment its compression starts, as a [`GrowingBlob`]
    /// that reads the compressed bytes while they are written to the layout. The layer is then
    /// published as usual, with [`PublishedBlob::streamed`] set.
    pub fn streaming(
        mut self,
        min_bytes: u64,
        f: impl Fn(GrowingBlob) + Send + Sync + 'static,
    ) -> Self {
        self.streaming = Some((min_bytes, Arc::new(f)));
        self
    }

    /// Also ask `stop` after every buffer the reader takes in (keep it cheap: an atomic load);
    /// once it says `true`, reading ends with [`ArchiveError::Stopped`]. For a caller that has
    /// failed meanwhile (push: an upload the registry refused) and has its own error to report.
    pub fn stopping_when(mut self, stop: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.stop = Some(Arc::new(stop));
        self
    }

    pub(crate) fn call(&self, blob: &PublishedBlob) {
        (self.published)(blob)
    }

    /// The streaming callback, if a layer of `size` uncompressed bytes is to be streamed.
    pub(crate) fn stream_for(&self, size: u64) -> Option<&(dyn Fn(GrowingBlob) + Send + Sync)> {
        match &self.streaming {
            Some((min, f)) if size >= *min => Some(&**f),
            _ => None,
        }
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s())
    }
}

impl std::fmt::Debug for BlobHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobHook")
    }
}

/// [`unpack`] with [`Options`].
pub fn unpack_with(
    input: &Input,
    dir: &std::path::Path,
    options: &Options,
) -> Result<(ArchiveInfo, Vec<Descriptor>), ArchiveError> {
    let (selectors, platform) = (&options.images, options.platform.as_deref());
    // A layout this run creates is removed again if the run fails: no output that looks like a result.
    let created = !dir.exists();
    let result = (|| {
        let layout = if options.scratch {
            Layout::create_scratch(dir)?
        } else {
            Layout::create(dir)?
        };
        let settings = ScanSettings {
            encoding: options.encoding,
            reuse: options.reuse.clone(),
            on_blob: options.on_blob.clone(),
        };
        let (info, mut scan) = read_with(input, Some(&layout), settings)?;
        let chosen = select(&info, selectors)?;
        let added = commit(&info, &mut scan, &layout, &chosen, platform)?;
        Ok((info, added))
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}
