//! Working out what the scanned entries hold: which metadata document describes the images
//! ([`crate::metadata::primary`]), the images read through it (`docker`, `oci`), the links, and
//! where the archive comes from ([`Origin`]).

use crate::docker;
use crate::error::ArchiveError;
use crate::fanout;
use crate::metadata::{self, Primary};
use crate::model::{ArchiveInfo, Defect, Format, ImageInfo, LinkInfo, ManifestInfo, Origin};
use crate::oci::{self, Walker};
use crate::paths::{self, Link};
use crate::scan::Scan;
use layerlift_layers::Compression;
use layerlift_manifest::{Descriptor, Digest, Index, media_types, parse_json};
use std::borrow::Cow;

/// Work out what the scanned entries hold.
pub fn analyze(scan: &Scan, compression: Compression) -> Result<ArchiveInfo, ArchiveError> {
    let links = links(scan)?;
    let mut defects: Vec<Defect> = scan
        .skipped
        .iter()
        .map(|skipped| {
            Defect::note(format!(
                "entry `{skipped}` is neither a file, a directory nor a link; ignored"
            ))
        })
        .collect();
    let index_json = metadata(scan, "index.json")?;
    let manifest_json = metadata(scan, "manifest.json")?;
    let finish = |format, origin, images, defects| ArchiveInfo {
        format,
        origin,
        compression,
        images,
        links,
        defects,
        entries: scan.files.len() + scan.links.len(),
    };
    match metadata::primary(manifest_json.as_deref(), index_json.is_some())? {
        None if scan.file("repositories")?.is_some() => Err(ArchiveError::PreManifestDocker),
        None => Err(ArchiveError::NotAnImageArchive),
        Some(Primary::OciIndex) => {
            if scan.file("oci-layout")?.is_none() {
                defects.push(Defect::note(
                    "oci-layout is missing; index.json read anyway",
                ));
            }
            let bytes = index_json.as_deref().unwrap_or_default();
            let images = oci_images(scan, bytes, &mut defects)?;
            Ok(finish(Format::OciLayout, Origin::Oci, images, defects))
        }
        Some(Primary::ImageManifest) => {
            let image = dir_transport(scan, manifest_json.as_deref().unwrap_or_default())?;
            Ok(finish(
                Format::DirTransport,
                Origin::DirTransport,
                vec![image],
                defects,
            ))
        }
        Some(Primary::DockerList(items)) => {
            let origin = docker_origin(scan, &items, index_json.is_some());
            let images = docker_images(scan, &items, index_json.as_deref(), &mut defects)?;
            Ok(finish(Format::DockerArchive, origin, images, defects))
        }
    }
}

/// Every link entry, and where it resolves to. A link out of the archive's root is an attack or a
/// broken writer, referenced or not: an error.
fn links(scan: &Scan) -> Result<Vec<LinkInfo>, ArchiveError> {
    for path in scan.links.keys() {
        if let Err(e @ paths::PathError::LinkEscapes { .. }) = paths::resolve(&scan.links, path) {
            return Err(e.into());
        }
    }
    Ok(scan
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
        .collect())
}

/// The bytes of the metadata document `name`, if the archive has it; an error if it is not JSON.
fn metadata<'a>(scan: &'a Scan, name: &str) -> Result<Option<Cow<'a, [u8]>>, ArchiveError> {
    match scan.file(name)? {
        None => Ok(None),
        Some((_, f)) => f.json().map(Some).ok_or_else(|| ArchiveError::BadMetadata {
            file: name.to_string(),
            why: "is not a JSON document (or larger than 8 MiB)".into(),
        }),
    }
}

fn bad(file: &str, why: String) -> ArchiveError {
    ArchiveError::BadMetadata {
        file: file.to_string(),
        why,
    }
}

/// The images of an OCI layout's `index.json` (`bytes`), one per entry.
fn oci_images(
    scan: &Scan,
    bytes: &[u8],
    defects: &mut Vec<Defect>,
) -> Result<Vec<ImageInfo>, ArchiveError> {
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
}

/// The images of a `docker save` list. Docker 25+ and containerd-store saves are also OCI
/// layouts: their `index_json` keeps the real manifests (digests, media types, other platforms),
/// so its images are used when they cover every image of the list, and the list's otherwise (it
/// is always consistent with the files).
fn docker_images(
    scan: &Scan,
    items: &[docker::Item],
    index_json: Option<&[u8]>,
    defects: &mut Vec<Defect>,
) -> Result<Vec<ImageInfo>, ArchiveError> {
    let docker_images = docker::images(scan, items);
    let Some(index_json) = index_json else {
        return Ok(docker_images);
    };
    let mut oci_defects = Vec::new();
    let mut oci = oci_images(scan, index_json, &mut oci_defects)?;
    defects.extend(oci_defects);
    let uncovered = docker_images.iter().filter(|d| !covered(d, &oci)).count();
    if uncovered == 0 && oci.iter().all(|i| !i.is_fatal()) {
        for d in &docker_images {
            if let Some(o) = oci.iter_mut().find(|o| covered(d, std::slice::from_ref(o))) {
                for n in &d.names {
                    if !o.names.contains(n) {
                        o.names.push(n.clone());
                    }
                }
            }
        }
        return Ok(oci);
    }
    defects.push(Defect::note(format!(
        "index.json does not describe {uncovered} of manifest.json's images as stored (Docker 25.0.0–25.0.2 defects); images read from manifest.json"
    )));
    Ok(docker_images)
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
    if layer_paths().all(|p| !p.contains('/') && paths::digest_in_name(p).is_some()) {
        return Origin::ContainersImage;
    }
    Origin::DockerLegacy
}

/// The one image of a `dir:` transport directory, whose `manifest.json` is its manifest.
fn dir_transport(scan: &Scan, manifest_bytes: &[u8]) -> Result<ImageInfo, ArchiveError> {
    let value: serde_json::Value =
        serde_json::from_slice(manifest_bytes).map_err(|e| bad("manifest.json", e.to_string()))?;
    let media_type = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or(media_types::DOCKER_MANIFEST)
        .to_string();
    if !media_types::is_manifest(&media_type) {
        return Err(bad(
            "manifest.json",
            format!("media type {media_type} is not an image manifest this tool reads"),
        ));
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
    Ok(image)
}
