//! Convert an OCI image layout: normalise its layers (decode whatever they are, check every
//! diff_id, encode to gzip, zstd or plain, deterministically and on all cores) and convert
//! manifests and indexes between OCI and Docker schema 2.
//!
//! ```
//! use layerlift_convert::{Action, Compression, NoProgress, Options, convert};
//! use layerlift_layout::Layout;
//! use layerlift_manifest::{Descriptor, Digest, media_types};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A tiny layout: one image with one uncompressed layer holding `hello.txt`.
//! let dir = tempfile::tempdir()?;
//! let layout = Layout::create(dir.path().join("in"))?;
//! let mut tar = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_gnu();
//! header.set_size(6);
//! header.set_mode(0o644);
//! header.set_cksum();
//! tar.append_data(&mut header, "hello.txt", &b"hello\n"[..])?;
//! let layer = tar.into_inner()?;
//! let layer_digest = layout.write_blob(&layer)?;
//! let config = format!(
//!     r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
//!     Digest::of(&layer)
//! );
//! let config_digest = layout.write_blob(config.as_bytes())?;
//! let manifest = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
//!     media_types::OCI_MANIFEST,
//!     media_types::OCI_CONFIG, config_digest, config.len(),
//!     media_types::OCI_LAYER, layer_digest, layer.len(),
//! );
//! let manifest_digest = layout.write_blob(manifest.as_bytes())?;
//! layout.update_index(|index| {
//!     let entry = Descriptor::new(media_types::OCI_MANIFEST, manifest_digest, manifest.len() as u64);
//!     index.manifests.push(entry);
//! })?;
//! drop(layout);
//!
//! // Convert it into a new layout with zstd layers.
//! let options = Options { compression: Compression::Zstd, ..Options::default() };
//! let out = dir.path().join("out");
//! let report = convert(&dir.path().join("in"), Some(&out), &options, &NoProgress)?;
//!
//! assert!(!report.in_place);
//! assert_eq!(report.images.len(), 1);
//! assert!(report.images[0].changed);
//! assert_eq!(report.layers.len(), 1);
//! assert_eq!(report.layers[0].action, Action::Encoded);
//! assert_eq!(report.layers[0].to.media_type, media_types::OCI_LAYER_ZSTD);
//! assert_eq!(report.layers[0].diff_id, Digest::of(&layer));
//! let converted = Layout::open(&out)?;
//! assert_eq!(converted.index()?.manifests[0].digest, report.images[0].to.digest);
//! # Ok(())
//! # }
//! ```
//!
//! What [`convert`] guarantees:
//! - a layer already in the target compression is kept byte for byte (its diff_id checked) unless
//!   [`Options::recompress`] or [`Options::source_date_epoch`] ([`Options::keeps`]); the same
//!   layer, compression and level give the same bytes on every run, machine and thread count;
//! - config bytes are never rewritten (so image IDs stay) except to clamp times to an epoch;
//! - blobs are published first, each verified before it is visible, `index.json` last and
//!   atomically; in place, the blobs only the old images used are then removed (under the
//!   layout's exclusive lock).
//!
//! Progress goes to an [`Observer`]; nothing is printed.

#![warn(missing_docs)]

mod assemble;
mod config_time;
mod engine;
mod error;
mod gc;
mod layer;
mod observer;
mod options;
mod pool;
mod report;
mod select;

pub use assemble::{AssembleError, IndexReport, assemble_index};
pub use error::{ConvertError, OptionsError, SelectError};
pub use layerlift_layers::Compression;
pub use layerlift_manifest::convert::Format;
pub use observer::{Event, LayerId, NoProgress, Observer};
pub use options::Options;
pub use report::{Action, Blob, ImageReport, LayerReport, Report, SourceLayer};

use engine::Converter;
use layerlift_layout::Layout;
use layerlift_manifest::Descriptor;
use layerlift_manifest::annotations::REF_NAME;
use std::path::Path;
use std::time::Instant;

/// Convert the images of the layout `src` into `dst` (created if absent), or in place when `dst`
/// is `None` or the same directory.
///
/// When `src` is not a layout (it has no `oci-layout` file), it is taken as an archive
/// `layerlift_archive::unpack` reads (`-` for standard input): it is unpacked into `dst`, which
/// must then be given, and the images it added are converted there in place.
pub fn convert(
    src: &Path,
    dst: Option<&Path>,
    options: &Options,
    observer: &dyn Observer,
) -> Result<Report, ConvertError> {
    options.validate()?;
    let started = Instant::now();

    let (source, unpacked) = open_source(src, dst, options)?;
    let in_place = match dst {
        _ if unpacked.is_some() => true,
        None => true,
        Some(out) => same_dir(src, out),
    };
    let dst_holder;
    let target = match dst {
        Some(out) if !in_place => {
            dst_holder = Layout::create(out).map_err(|source| ConvertError::OpenDestination {
                path: out.to_path_buf(),
                source,
            })?;
            &dst_holder
        }
        _ => &source,
    };

    let index = source.index()?;
    let chosen = match &unpacked {
        // What unpack added (it applied the selectors already).
        Some(added) => (0..index.manifests.len())
            .filter(|&i| added.contains(&index.manifests[i]))
            .collect(),
        None => select::select(&index, &options.images)?,
    };
    let mut conv = Converter::new(&source, target, in_place, options, observer);
    let mut converted = Vec::new();
    for &i in &chosen {
        let old = &index.manifests[i];
        let new = conv.convert_entry(old).map_err(|e| ConvertError::Image {
            name: select::entry_name(old, i),
            source: Box::new(e),
        })?;
        converted.push((i, old.clone(), new));
    }
    publish_index(target, in_place, &converted)?;

    let (removed_blobs, cleanup_error) = if in_place && !options.keep_old_blobs {
        let olds: Vec<Descriptor> = converted.iter().map(|(_, old, _)| old.clone()).collect();
        // The conversion is done and published; a failed cleanup only leaves unreferenced blobs.
        match gc::remove_unreferenced(&source, &olds) {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e)),
        }
    } else {
        (0, None)
    };

    let encoding = conv.encoding;
    Ok(Report {
        input: src.to_path_buf(),
        output: dst.unwrap_or(src).to_path_buf(),
        in_place,
        compression: encoding.compression,
        level: (encoding.compression != Compression::None).then(|| encoding.effective_level()),
        format: options.format,
        threads: encoding.threads,
        images: converted
            .iter()
            .map(|(i, old, new)| ImageReport {
                entry: *i,
                name: old.annotation(REF_NAME).map(str::to_string),
                from: Blob::from(old),
                to: Blob::from(new),
                changed: old.digest != new.digest,
            })
            .collect(),
        layers: conv.report,
        removed_blobs,
        source_date_epoch: options.source_date_epoch,
        configs_rewritten: conv.configs_rewritten,
        seconds: started.elapsed().as_secs_f64(),
        cleanup_error,
    })
}

/// Open the source layout; or, when `src` is not a layout, unpack the archive into `dst` and
/// open that, with the `index.json` entries the archive added.
fn open_source(
    src: &Path,
    dst: Option<&Path>,
    options: &Options,
) -> Result<(Layout, Option<Vec<Descriptor>>), ConvertError> {
    if src.join("oci-layout").is_file() {
        let layout = Layout::open(src).map_err(|source| ConvertError::OpenSource {
            path: src.to_path_buf(),
            source,
        })?;
        return Ok((layout, None));
    }
    if src.as_os_str() != "-" && !src.exists() {
        return Err(ConvertError::NoSuchInput {
            path: src.to_path_buf(),
        });
    }
    let Some(out) = dst else {
        return Err(ConvertError::ArchiveNeedsOutput {
            path: src.to_path_buf(),
        });
    };
    let input = layerlift_archive::Input::from_arg(&src.to_string_lossy());
    let (_, added) = layerlift_archive::unpack(&input, out, &options.images).map_err(|source| {
        ConvertError::Unpack {
            input: input.display(),
            source,
        }
    })?;
    let layout = Layout::open(out).map_err(|source| ConvertError::OpenDestination {
        path: out.to_path_buf(),
        source,
    })?;
    Ok((layout, Some(added)))
}

/// Write `index.json` last, once every blob it will point at is in place and verified: in place,
/// each converted entry is replaced where it is; into another layout, each replaces the entry of
/// the same name (or is added).
fn publish_index(
    layout: &Layout,
    in_place: bool,
    converted: &[(usize, Descriptor, Descriptor)],
) -> Result<(), ConvertError> {
    layout.update_index(|idx| {
        if in_place {
            for entry in idx.manifests.iter_mut() {
                if let Some((_, _, new)) = converted.iter().find(|(_, old, _)| old == entry) {
                    *entry = new.clone();
                }
            }
        } else {
            for (_, _, new) in converted {
                idx.manifests.retain(|e| !select::same_entry(e, new));
                idx.manifests.push(new.clone());
            }
        }
    })?;
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
