//! Write an image archive from an OCI image layout: a docker-archive that `docker load` (Docker
//! 20.10 on) and `podman load` read, or an oci-archive that skopeo, podman and containerd read.
//!
//! The work is split in two: the layout side (`from_layout.rs`) reads the layout — chosen entries,
//! the platform of an index, names — and feeds images to the archive sink ([`sink`]:
//! [`DockerArchive`], [`OciArchive`]), which reads blob bytes through a [`BlobSource`] and knows
//! nothing of layouts, so any source of images can feed it.
//!
//! What a pack guarantees:
//! - config bytes are copied exactly, so `docker load` gives the image the ID it had;
//! - every blob is written once, whatever number of images share it;
//! - the same layout and options give the same archive, byte for byte: entries sorted by name,
//!   fixed modes, owners and times (see [`sink`]);
//! - everything is checked before the first byte is written (every blob present, of the size its
//!   descriptor says; a layer to decompress decoded once to its diff_id), and each copied blob is
//!   hashed on its way into the archive; a blob that changed meanwhile stops the pack before the
//!   end-of-archive blocks, so a cut archive never looks complete;
//! - [`pack_to_file`] writes a temp file beside the output and renames it into place at the end;
//!   on failure nothing is left;
//! - memory is a 1 MiB copy buffer (and one per hashing thread) whatever the layer sizes.
//!
//! ```
//! use layerlift_pack::{ArchiveFormat, NoProgress, Options, pack_to_writer};
//! use layerlift_layout::Layout;
//! use layerlift_manifest::{Descriptor, Digest, media_types};
//! use std::collections::BTreeMap;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A layout of one image with one (empty) uncompressed layer, named app:1.
//! let dir = tempfile::tempdir()?;
//! let layout = Layout::create(dir.path())?;
//! let layer = vec![0u8; 1024];
//! let layer_digest = layout.write_blob(&layer)?;
//! let config = format!(
//!     r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
//! );
//! let config_digest = layout.write_blob(config.as_bytes())?;
//! let manifest = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{layer_digest}","size":1024}}]}}"#,
//!     media_types::OCI_MANIFEST, media_types::OCI_CONFIG, config.len(), media_types::OCI_LAYER,
//! );
//! let manifest_digest = layout.write_blob(manifest.as_bytes())?;
//! layout.update_index(|index| {
//!     let mut entry = Descriptor::new(media_types::OCI_MANIFEST, manifest_digest, manifest.len() as u64);
//!     entry.annotations = Some(BTreeMap::from([(
//!         "org.opencontainers.image.ref.name".to_string(),
//!         "app:1".to_string(),
//!     )]));
//!     index.manifests.push(entry);
//! })?;
//!
//! let mut archive = Vec::new();
//! let report = pack_to_writer(dir.path(), &mut archive, &Options::default(), &NoProgress)?;
//! assert_eq!(report.format, ArchiveFormat::Docker);
//! assert_eq!(report.images[0].names, ["app:1"]);
//! assert_eq!(report.images[0].config, Some(config_digest)); // the image ID docker load gives
//! assert_eq!(report.bytes, archive.len() as u64);
//! // Packing again gives the same bytes.
//! let mut again = Vec::new();
//! pack_to_writer(dir.path(), &mut again, &Options::default(), &NoProgress)?;
//! assert_eq!(archive, again);
//! # Ok(())
//! # }
//! ```
//!
//! Progress goes to an [`Observer`]; nothing is printed.

#![warn(missing_docs)]

mod error;
mod from_layout;
mod limits;
mod observer;
mod options;
mod report;
pub mod sink;
mod tar_out;

pub use error::{OptionsError, PackError};
pub use limits::MAX_DEPTH;
pub use observer::{Event, NoProgress, Observer, Step};
pub use options::{ArchiveFormat, Options};
pub use report::{PackedImage, Report};
pub use sink::{BlobSource, DockerArchive, DockerImage, OciArchive, Prepared, Written};

use layerlift_layout::Layout;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// An archive planned and checked: every blob it will hold is present and as its descriptor
/// says; nothing is written yet.
struct Plan {
    layout: Layout,
    prepared: Prepared,
    images: Vec<PackedImage>,
    missing: usize,
}

fn plan(path: &Path, options: &Options, observer: &dyn Observer) -> Result<Plan, PackError> {
    options.validate()?;
    if !path.exists() {
        return Err(PackError::NoSuchLayout {
            path: path.to_path_buf(),
        });
    }
    if !path.join("oci-layout").exists() {
        return Err(PackError::NotALayout {
            path: path.to_path_buf(),
        });
    }
    let open_err = |source| PackError::OpenLayout {
        path: path.to_path_buf(),
        source,
    };
    let layout = Layout::open(path).map_err(open_err)?;
    let index = layout.index().map_err(open_err)?;
    let chosen = from_layout::choose(path, &index, options)?;
    let (prepared, images, missing) = match options.format {
        ArchiveFormat::Docker => {
            let (archive, images) = from_layout::docker(&layout, &index, &chosen, options)?;
            (archive.prepare(&layout, observer)?, images, 0)
        }
        ArchiveFormat::Oci => {
            let (archive, images, missing) = from_layout::oci(&layout, &index, &chosen, options)?;
            (archive.prepare(&layout)?, images, missing)
        }
    };
    Ok(Plan {
        layout,
        prepared,
        images,
        missing,
    })
}

impl Plan {
    fn report(
        self,
        path: &Path,
        output: Option<PathBuf>,
        options: &Options,
        written: Written,
        started: Instant,
    ) -> Report {
        Report {
            layout: path.to_path_buf(),
            output,
            format: options.format,
            images: self.images,
            blobs: written.blobs,
            decompressed: written.decompressed,
            missing: self.missing,
            bytes: written.bytes,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Pack the layout at `layout` into `out` (standard output, a pipe): everything is checked first
/// (an error then leaves `out` untouched); a later error leaves `out` holding an archive without
/// its end. `out` is written in 1 MiB pieces and flushed at the end.
pub fn pack_to_writer(
    layout: &Path,
    out: &mut dyn Write,
    options: &Options,
    observer: &dyn Observer,
) -> Result<Report, PackError> {
    let started = Instant::now();
    let plan = plan(layout, options, observer)?;
    let written = plan.prepared.write_to(&plan.layout, out, None, observer)?;
    Ok(plan.report(layout, None, options, written, started))
}

/// [`pack_to_writer`] into `out`, a pipe or a file open for writing (standard output, as a
/// `File`): headers and small blobs go through a 1 MiB buffer, blobs are copied into `out` by the
/// kernel (`sendfile`) while threads of their own hash them, and each is checked against its
/// digest before the end-of-archive blocks; a failed pack's buffered bytes are dropped unwritten,
/// so `out` then holds an archive without its end.
pub fn pack_to_stream(
    layout: &Path,
    out: &std::fs::File,
    options: &Options,
    observer: &dyn Observer,
) -> Result<Report, PackError> {
    let started = Instant::now();
    let plan = plan(layout, options, observer)?;
    let mut buffered = io::BufWriter::with_capacity(tar_out::COPY_BUF, out);
    let result = plan
        .prepared
        .write_to(&plan.layout, &mut buffered, Some((out, false)), observer);
    drop(buffered.into_parts());
    Ok(plan.report(layout, None, options, result?, started))
}

/// Pack the layout at `layout` into the file `output`, atomically: a temp file in the same
/// directory, fsynced and renamed over `output` at the end. On failure no file is left (and an
/// existing `output` is untouched).
pub fn pack_to_file(
    layout: &Path,
    output: &Path,
    options: &Options,
    observer: &dyn Observer,
) -> Result<Report, PackError> {
    let started = Instant::now();
    let out_err = |path: &Path, source| PackError::Output {
        path: path.to_path_buf(),
        source,
    };
    if output.is_dir() {
        return Err(out_err(
            output,
            io::Error::new(io::ErrorKind::IsADirectory, "is a directory"),
        ));
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(out_err(
            output,
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such directory {}", dir.display()),
            ),
        ));
    }
    let plan = plan(layout, options, observer)?;
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| out_err(dir, e))?;
    // Blobs are copied by the kernel and sent to the disk as they go: the fsync below waits
    // for the last pieces only.
    let mut buffered = io::BufWriter::with_capacity(tar_out::COPY_BUF, tmp.as_file());
    let written = plan
        .prepared
        .write_to(
            &plan.layout,
            &mut buffered,
            Some((tmp.as_file(), true)),
            observer,
        )
        .map_err(|e| match e {
            PackError::Write(source) => out_err(output, source),
            e => e,
        })?;
    drop(buffered);
    let file = tmp.as_file();
    file.sync_all().map_err(|e| out_err(tmp.path(), e))?;
    set_readable(tmp.path()).map_err(|e| out_err(tmp.path(), e))?;
    tmp.persist(output).map_err(|e| out_err(output, e.error))?;
    Ok(plan.report(
        layout,
        Some(output.to_path_buf()),
        options,
        written,
        started,
    ))
}

/// A temp file is created 0600; an archive is as readable as any file the user writes (0644).
fn set_readable(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}
