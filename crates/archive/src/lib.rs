//! Read saved-image archives of every era, in one pass, into an OCI image layout.
//!
//! Accepted, detected from the content (never from file names or media types):
//! `docker save` of every Docker era (legacy v1.2 with symlinked `layer.tar`, Docker 25+ with its
//! built-in OCI layout, the containerd image store with compressed layers and nested indexes),
//! podman/skopeo docker-archives (single and multi-image), kaniko/ggcr tarballs, oci-archives, OCI
//! layout directories and `dir:` transport directories; the outer stream plain, gzip, zstd, bzip2
//! or xz.
//!
//! How: [`read`] streams every entry once (`scan`: hashing it, decoding compressed entries to
//! learn their uncompressed digest, staging it in the layout's temp dir), then the metadata —
//! which Docker and skopeo write last — is reconciled ([`analyze`]; which document describes the
//! images is one rule, `metadata`, which push's [`read_catalog`] follows too), and [`commit`]
//! publishes the chosen images: verified blobs renamed into place, index.json written last.
//! Nothing here touches the network.
//!
//! Early publication, for push: with [`Options::handover`], each layer is renamed into the layout
//! as soon as it has streamed past (named by the digest it was hashed to while being written) and
//! sent on the [`handover`] channel as a [`Layer::Ready`], while the rest of the archive is still
//! being read; `layerlift-push` uploads it meanwhile. Only layers are published early — an uncompressed tar entry (or the
//! compressed copy made of it), a gzip or zstd entry that decoded — not JSON documents (configs,
//! manifests: which is which is known only once the metadata, written last, is read) nor
//! bzip2/xz layers (decompressed at commit). Such a layer is visible before the metadata names it:
//! the layout may end up holding layers no image uses (of images not chosen, or of a failed read),
//! which suits push's temporary layout and nothing else. With [`LayerSender::streaming`], a
//! large uncompressed layer is also handed over when its compression starts
//! ([`Layer::Streaming`]), as a [`GrowingBlob`] that reads the compressed bytes as they reach the
//! layout: push uploads it while it is compressed
//! (docs/architecture.md, "Uploads overlap reading", describes push's side).

#![warn(missing_docs)]

mod analyze;
mod catalog;
mod docker;
mod error;
mod fanout;
mod growing;
mod handover;
mod input;
mod listing;
mod metadata;
mod model;
mod names;
mod oci;
mod paths;
mod plan;
mod readahead;
mod scan;
mod sniff;
mod verify;

pub use analyze::analyze;
pub use catalog::{CatalogItem, CatalogLayer, Contents, read_catalog};

pub use error::ArchiveError;
pub use fanout::MAX_DESCRIPTORS;
pub use growing::{Again, ArchiveSpan, Completion, GrowingBlob, ReadAt, STALL, WINDOW};
pub use handover::{Closer, Layer, LayerReceiver, LayerSender, PublishedBlob, handover};
pub use input::Input;
pub use listing::Listing;
pub use model::{
    ArchiveInfo, Defect, Format, ImageInfo, LayerInfo, LinkInfo, ManifestInfo, Origin,
};
pub use paths::PathError;
pub use plan::{commit, label, select};
pub use scan::{
    MAX_ENTRIES, MAX_HEADER_BYTES, MAX_LINKS, Replacement, Reuse, ReusedEntry, Scan, ScanSettings,
    scan_tar,
};
pub use verify::{Verification, verify_layout};

use layerlift_layers::{Compression, Encoding};
use layerlift_layout::Layout;
use layerlift_manifest::Descriptor;
use std::io::{BufReader, Read};

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
/// when `handover` is given ([`Options::handover`]).
pub fn read_with(
    input: &Input,
    layout: Option<&Layout>,
    settings: ScanSettings,
) -> Result<(ArchiveInfo, Scan), ArchiveError> {
    let (mut scan, compression) = match input {
        Input::Path(p) if p.is_dir() => (scan::scan_dir(p, layout, settings)?, Compression::None),
        Input::Path(p) => {
            let mut file =
                std::fs::File::open(p).map_err(|e| ArchiveError::io("the archive", e))?;
            let plain = catalog::is_plain_tar(&mut file)?;
            if !settings.reuse.by_path.is_empty() && plain {
                (
                    scan::scan_tar_file(&mut file, layout, settings)?,
                    Compression::None,
                )
            } else {
                // An uncompressed archive file can be read again at an entry's offset.
                let again = plain
                    .then(|| file.try_clone().ok())
                    .flatten()
                    .map(std::sync::Arc::new);
                scan_stream(Box::new(file), layout, settings, again)?
            }
        }
        Input::Stdin => {
            grow_pipe_buffer();
            scan_stream(Box::new(std::io::stdin()), layout, settings, None)?
        }
    };
    // The read is over: the scan keeps no sender, so receivers see the end once the caller's
    // own (`settings`' original) is dropped.
    scan.handover = None;
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

/// Read a (possibly compressed) tar stream; `again`: the file it is, when it is an uncompressed
/// tar file (stream offsets are file offsets: where a streamed layer is compressed again from).
fn scan_stream(
    source: Box<dyn Read + Send>,
    layout: Option<&Layout>,
    settings: ScanSettings,
    again: Option<std::sync::Arc<std::fs::File>>,
) -> Result<(Scan, Compression), ArchiveError> {
    let buffered = BufReader::with_capacity(READ_BUFFER, source);
    let (compression, decoded) = layerlift_layers::decoder(buffered)
        .map_err(|e| ArchiveError::io("the start of the archive", e))?;
    let decoded = sniff::check_start(decoded, compression)?;
    // Reading and decompressing run on their own thread, ahead of hashing and staging.
    let mut reader = readahead::ReadAhead::new(decoded);
    let scan = scan::scan_tar_again(&mut reader, layout, settings, again).map_err(|e| match e {
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
    /// Layers not to read (by path, from [`read_catalog`]) or not to compress (by diff_id), because the
    /// destination already has them. Their blobs are not written to the layout; the manifests name
    /// them.
    pub reuse: Reuse,
    /// The layout is temporary (push's): created without fsyncs ([`Layout::create_scratch`]).
    pub scratch: bool,
    /// Publish each layer as soon as it has been read and send it here, while the rest of the
    /// archive is still being read (push starts uploading it); stop reading once every receiver
    /// is gone. See the module docs for which blobs. The receivers see the end of the read when
    /// every clone of the sender is dropped: this one too.
    pub handover: Option<LayerSender>,
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
            handover: options.handover.clone(),
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
