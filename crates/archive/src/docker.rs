//! Reading `docker save`-style archives through their `manifest.json` (every Docker era, podman and
//! skopeo docker-archives, kaniko/ggcr tarballs): configs copied byte for byte, layers stored as they
//! are and checked against the config's diff_ids, one OCI manifest generated per image.

use crate::model::{BlobOrigin, Defect, ImageInfo, LayerInfo, ManifestInfo};
use crate::oci::platform_of;
use crate::paths::digest_in_name;
use crate::scan::Scan;
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

fn image(scan: &Scan, position: usize, item: &Item) -> ImageInfo {
    let names = item.repo_tags.clone().unwrap_or_default();
    let mut img = ImageInfo {
        position,
        names,
        // Replaced below once the manifest is generated.
        descriptor: Descriptor::new(media_types::OCI_MANIFEST, Digest::of(b""), 0),
        parent: item.parent.clone(),
        manifests: Vec::new(),
        defects: Vec::new(),
        blobs: Vec::new(),
        annotate_names: true,
    };
    let fatal = |img: &mut ImageInfo, msg: String| img.defects.push(Defect::fatal(msg));

    // The config, byte for byte.
    let (config_path, config_file) = match scan.file(&item.config) {
        Ok(Some(found)) => found,
        Ok(None) => {
            fatal(
                &mut img,
                format!("config `{}` is not in the archive", item.config),
            );
            return img;
        }
        Err(e) => {
            fatal(&mut img, format!("config `{}`: {e}", item.config));
            return img;
        }
    };
    let config: ImageConfig = match config_file
        .json()
        .as_deref()
        .map(|j| parse_json("image config", j))
    {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            fatal(&mut img, format!("{config_path}: {e}"));
            return img;
        }
        None => {
            fatal(
                &mut img,
                format!("{config_path}: the image config is not a JSON document"),
            );
            return img;
        }
    };
    let config_digest = config_file.digest;
    if let Some(named) = digest_in_name(&item.config)
        && named != config_digest
    {
        fatal(
            &mut img,
            format!(
                "{}: digest mismatch: its name says {named}, the content is {config_digest}",
                item.config
            ),
        );
    }
    img.blobs
        .push((config_digest, BlobOrigin::Entry(config_path)));
    let config_desc = Descriptor::new(media_types::OCI_CONFIG, config_digest, config_file.size);

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
    let mut layers = Vec::new();
    for (path, diff_id) in paths.iter().zip(diff_ids) {
        let foreign = sources
            .get(diff_id)
            .filter(|d| media_types::is_non_distributable(&d.media_type));
        let mut info = LayerInfo {
            path: Some(path.clone()),
            resolved: None,
            descriptor: Descriptor::new(media_types::OCI_LAYER, *diff_id, 0),
            compression: Compression::None,
            diff_id: Some(*diff_id),
            uncompressed_size: None,
            present: false,
        };
        let found = match scan.file(path) {
            Ok(found) => found,
            Err(e) => {
                fatal(&mut img, format!("layer `{path}`: {e}"));
                layers.push(info);
                continue;
            }
        };
        let Some((resolved, file)) = found else {
            match foreign {
                Some(desc) => {
                    img.defects.push(Defect::note(format!(
                        "layer `{path}` is a foreign layer that is not in the archive; its descriptor ({}) is kept",
                        desc.digest
                    )));
                    info.descriptor = desc.clone();
                }
                None => fatal(&mut img, format!("layer `{path}` is not in the archive")),
            }
            layers.push(info);
            continue;
        };
        if resolved != *path {
            info.resolved = Some(resolved.clone());
        }
        info.present = true;
        info.compression = file.compression;
        match file.diff_id() {
            Err(e) => fatal(&mut img, format!("layer {path}: cannot decompress ({e})")),
            Ok((actual, size)) => {
                info.uncompressed_size = Some(size);
                if actual != *diff_id {
                    fatal(
                        &mut img,
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
                &mut img,
                format!(
                    "layer {path}: digest mismatch: its name says {named}, the content is {}",
                    file.digest
                ),
            );
        }
        let (media_type, digest, size, source) = match (&file.encoded, file.compression) {
            // Compressed while it was read (unpack with an encoding).
            (Some(enc), _) => (
                crate::oci::oci_layer_type(enc.compression),
                enc.digest,
                enc.size,
                BlobOrigin::Encoded(resolved.clone()),
            ),
            (None, Compression::None) => (
                media_types::OCI_LAYER,
                file.digest,
                file.size,
                BlobOrigin::Entry(resolved.clone()),
            ),
            (None, Compression::Gzip) => (
                media_types::OCI_LAYER_GZIP,
                file.digest,
                file.size,
                BlobOrigin::Entry(resolved.clone()),
            ),
            (None, Compression::Zstd) => (
                media_types::OCI_LAYER_ZSTD,
                file.digest,
                file.size,
                BlobOrigin::Entry(resolved.clone()),
            ),
            // OCI has no media type for these (docker load accepts them): store the tar itself.
            (None, Compression::Bzip2 | Compression::Xz) => {
                img.defects.push(Defect::note(format!(
                    "layer {path} is {}-compressed, which OCI has no media type for; stored uncompressed",
                    file.compression
                )));
                let size = info.uncompressed_size.unwrap_or(0);
                (
                    media_types::OCI_LAYER,
                    *diff_id,
                    size,
                    BlobOrigin::Decompressed(resolved.clone()),
                )
            }
        };
        match foreign {
            // A foreign layer whose stored bytes are what its descriptor names: keep the descriptor.
            Some(desc) if desc.digest == digest => info.descriptor = desc.clone(),
            Some(desc) => {
                img.defects.push(Defect::note(format!(
                    "layer {path} is a foreign layer; its descriptor ({}) is kept and the stored bytes are not",
                    desc.digest
                )));
                info.descriptor = desc.clone();
                layers.push(info);
                continue;
            }
            None => info.descriptor = Descriptor::new(media_type, digest, size),
        }
        img.blobs.push((digest, source));
        layers.push(info);
    }

    // One OCI manifest for the image.
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
        platform: platform_of(&config),
        present: true,
        complete: !img.is_fatal(),
        config: Some(config_desc),
        layers,
        descriptor: Some(descriptor.clone()),
        blobs: 0..img.blobs.len(),
    });
    img.descriptor = descriptor;
    img
}
