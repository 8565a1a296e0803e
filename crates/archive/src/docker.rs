//! Reading `docker save`-style archives through their `manifest.json` (every Docker era, podman and
//! skopeo docker-archives, kaniko/ggcr tarballs): configs copied byte for byte, layers stored as they
//! are and checked against the config's diff_ids, one OCI manifest generated per image.

use crate::model::{BlobOrigin, Defect, ImageInfo, LayerInfo, ManifestInfo};
use crate::oci::platform_of;
use crate::paths::digest_in_name;
use crate::scan::{FileEntry, Scan};
use layerlift_layers::Compression;
use layerlift_manifest::{
    Descriptor, Digest, ImageConfig, Manifest, Platform, media_types, parse_json,
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One item of `manifest.json`.
#[derive(Debug, Deserialize)]
pub(crate) struct Item {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub layers: Option<Vec<String>>,
    #[serde(rename = "Parent", default)]
    pub parent: Option<String>,
    #[serde(rename = "LayerSources", default)]
    pub layer_sources: Option<BTreeMap<Digest, Descriptor>>,
}

/// The images of `manifest.json`.
pub(crate) fn images(scan: &Scan, items: &[Item]) -> Vec<ImageInfo> {
    items
        .iter()
        .enumerate()
        .map(|(position, item)| image(scan, position, item))
        .collect()
}

/// One item of `manifest.json` read against the files: its config byte for byte, its layers
/// checked against the config's diff_ids, and one OCI manifest generated for it.
fn image(scan: &Scan, position: usize, item: &Item) -> ImageInfo {
    let mut img = ImageInfo {
        position,
        names: item.repo_tags.clone().unwrap_or_default(),
        // Replaced by `add_manifest` once the manifest is generated.
        descriptor: Descriptor::new(media_types::OCI_MANIFEST, Digest::of(b""), 0),
        parent: item.parent.clone(),
        manifests: Vec::new(),
        defects: Vec::new(),
        blobs: Vec::new(),
        annotate_names: true,
    };
    let Some((config, config_desc)) = read_config(scan, item, &mut img) else {
        return img;
    };
    // The layers, in manifest.json order, which is rootfs.diff_ids order.
    let paths = item.layers.clone().unwrap_or_default();
    let diff_ids = &config.rootfs.diff_ids;
    if paths.len() != diff_ids.len() {
        fatal(
            &mut img,
            format!(
                "manifest.json lists {} layers but the config has {} diff_ids",
                paths.len(),
                diff_ids.len()
            ),
        );
        return img;
    }
    let sources = item.layer_sources.clone().unwrap_or_default();
    let layers = paths
        .iter()
        .zip(diff_ids)
        .map(|(path, diff_id)| {
            let foreign = sources
                .get(diff_id)
                .filter(|d| media_types::is_non_distributable(&d.media_type));
            read_layer(scan, &mut img, path, diff_id, foreign)
        })
        .collect();
    add_manifest(&mut img, &config, config_desc, layers);
    img
}

fn fatal(img: &mut ImageInfo, msg: String) {
    img.defects.push(Defect::fatal(msg));
}

/// The image's config, byte for byte (a blob of the image), and its descriptor; `None` (with a
/// fatal defect) when it is missing or no config.
fn read_config(scan: &Scan, item: &Item, img: &mut ImageInfo) -> Option<(ImageConfig, Descriptor)> {
    let (config_path, config_file) = match scan.file(&item.config) {
        Ok(Some(found)) => found,
        Ok(None) => {
            fatal(
                img,
                format!("config `{}` is not in the archive", item.config),
            );
            return None;
        }
        Err(e) => {
            fatal(img, format!("config `{}`: {e}", item.config));
            return None;
        }
    };
    let config: ImageConfig = match config_file
        .json()
        .as_deref()
        .map(|j| parse_json("image config", j))
    {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            fatal(img, format!("{config_path}: {e}"));
            return None;
        }
        None => {
            fatal(
                img,
                format!("{config_path}: the image config is not a JSON document"),
            );
            return None;
        }
    };
    let config_digest = config_file.digest;
    if let Some(named) = digest_in_name(&item.config)
        && named != config_digest
    {
        fatal(
            img,
            format!(
                "{}: digest mismatch: its name says {named}, the content is {config_digest}",
                item.config
            ),
        );
    }
    img.blobs
        .push((config_digest, BlobOrigin::Entry(config_path)));
    let desc = Descriptor::new(media_types::OCI_CONFIG, config_digest, config_file.size);
    Some((config, desc))
}

/// The layer at `path`, which the config says is `diff_id`: checked against it and against the
/// digest its name states, and added to the image's blobs unless it is a foreign layer whose
/// descriptor (`foreign`, from `LayerSources`) is kept instead.
fn read_layer(
    scan: &Scan,
    img: &mut ImageInfo,
    path: &String,
    diff_id: &Digest,
    foreign: Option<&Descriptor>,
) -> LayerInfo {
    let mut info = LayerInfo {
        path: Some(path.clone()),
        resolved: None,
        descriptor: Descriptor::new(media_types::OCI_LAYER, *diff_id, 0),
        compression: Compression::None,
        diff_id: Some(*diff_id),
        uncompressed_size: None,
        present: false,
    };
    let (resolved, file) = match scan.file(path) {
        Ok(Some(found)) => found,
        Err(e) => {
            fatal(img, format!("layer `{path}`: {e}"));
            return info;
        }
        Ok(None) => {
            match foreign {
                Some(desc) => {
                    img.defects.push(Defect::note(format!(
                        "layer `{path}` is a foreign layer that is not in the archive; its descriptor ({}) is kept",
                        desc.digest
                    )));
                    info.descriptor = desc.clone();
                }
                None => fatal(img, format!("layer `{path}` is not in the archive")),
            }
            return info;
        }
    };
    if resolved != *path {
        info.resolved = Some(resolved.clone());
    }
    info.present = true;
    info.compression = file.compression;
    match file.diff_id() {
        Err(e) => fatal(img, format!("layer {path}: cannot decompress ({e})")),
        Ok((actual, size)) => {
            info.uncompressed_size = Some(size);
            if actual != *diff_id {
                fatal(
                    img,
                    format!("layer {path}: diff_id mismatch: expected {diff_id}, got {actual}"),
                );
            }
        }
    }
    if let Some(named) = digest_in_name(path)
        && named != file.digest
        && named != *diff_id
    {
        fatal(
            img,
            format!(
                "layer {path}: digest mismatch: its name says {named}, the content is {}",
                file.digest
            ),
        );
    }
    let stored = stored_layer(img, path, resolved, file, diff_id, info.uncompressed_size);
    match foreign {
        // A foreign layer whose stored bytes are what its descriptor names: keep the descriptor.
        Some(desc) if desc.digest == stored.descriptor.digest => info.descriptor = desc.clone(),
        Some(desc) => {
            img.defects.push(Defect::note(format!(
                "layer {path} is a foreign layer; its descriptor ({}) is kept and the stored bytes are not",
                desc.digest
            )));
            info.descriptor = desc.clone();
            return info;
        }
        None => info.descriptor = stored.descriptor,
    }
    img.blobs.push((info.descriptor.digest, stored.origin));
    info
}

/// How a layer goes into the layout: its descriptor there and where its bytes come from.
struct StoredLayer {
    descriptor: Descriptor,
    origin: BlobOrigin,
}

/// The layer entry `resolved` as the layout stores it: its compressed copy if one was made while
/// reading, the entry itself if OCI has a media type for how it is stored, its decompressed
/// content otherwise (bzip2, xz; noted as a defect of `img`).
fn stored_layer(
    img: &mut ImageInfo,
    path: &str,
    resolved: String,
    file: &FileEntry,
    diff_id: &Digest,
    uncompressed_size: Option<u64>,
) -> StoredLayer {
    let as_is = |media_type: &str, origin| StoredLayer {
        descriptor: Descriptor::new(media_type, file.digest, file.size),
        origin,
    };
    match (&file.encoded, file.compression) {
        // Compressed while it was read (unpack with an encoding).
        (Some(enc), _) => StoredLayer {
            descriptor: Descriptor::new(
                crate::oci::oci_layer_type(enc.compression),
                enc.digest,
                enc.size,
            ),
            origin: BlobOrigin::Encoded(resolved),
        },
        (None, Compression::None) => as_is(media_types::OCI_LAYER, BlobOrigin::Entry(resolved)),
        (None, Compression::Gzip) => {
            as_is(media_types::OCI_LAYER_GZIP, BlobOrigin::Entry(resolved))
        }
        (None, Compression::Zstd) => {
            as_is(media_types::OCI_LAYER_ZSTD, BlobOrigin::Entry(resolved))
        }
        // OCI has no media type for these (docker load accepts them): store the tar itself.
        (None, Compression::Bzip2 | Compression::Xz) => {
            img.defects.push(Defect::note(format!(
                "layer {path} is {}-compressed, which OCI has no media type for; stored uncompressed",
                file.compression
            )));
            StoredLayer {
                descriptor: Descriptor::new(
                    media_types::OCI_LAYER,
                    *diff_id,
                    uncompressed_size.unwrap_or(0),
                ),
                origin: BlobOrigin::Decompressed(resolved),
            }
        }
    }
}

/// Generate the image's one OCI manifest (a blob of the image) and describe it.
fn add_manifest(
    img: &mut ImageInfo,
    config: &ImageConfig,
    config_desc: Descriptor,
    layers: Vec<LayerInfo>,
) {
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_types::OCI_MANIFEST.to_string()),
        artifact_type: None,
        config: config_desc.clone(),
        layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
        subject: None,
        annotations: None,
        extra: BTreeMap::new(),
    };
    let bytes = serde_json::to_vec(&manifest).expect("a manifest always serialises");
    let digest = Digest::of(&bytes);
    let mut descriptor = Descriptor::new(media_types::OCI_MANIFEST, digest, bytes.len() as u64);
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    if let (Some(os), Some(arch)) = (non_empty(&config.os), non_empty(&config.architecture)) {
        descriptor.platform = Some(Platform {
            architecture: arch,
            os,
            os_version: None,
            os_features: None,
            variant: config.variant.clone(),
            extra: BTreeMap::new(),
        });
    }
    img.blobs.push((digest, BlobOrigin::Generated(bytes)));
    img.manifests.push(ManifestInfo {
        digest,
        media_type: media_types::OCI_MANIFEST.to_string(),
        platform: platform_of(config),
        present: true,
        complete: !img.is_fatal(),
        config: Some(config_desc),
        layers,
        descriptor: Some(descriptor.clone()),
        blobs: 0..img.blobs.len(),
    });
    img.descriptor = descriptor;
}
