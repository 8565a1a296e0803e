//! Reading images through OCI descriptors: an OCI layout's `index.json` (oci-archive, layout
//! directory, Docker 25+ and containerd-store saves) and the `dir:` transport's manifest. Every blob
//! is checked against its descriptor's digest and size; image layers against the config's diff_ids.

use crate::model::{BlobOrigin, Defect, ImageInfo, LayerInfo, ManifestInfo};
use crate::scan::{FileEntry, Scan};
use layerlift_layers::Compression;
use layerlift_manifest::{
    Descriptor, Digest, ImageConfig, Index, Manifest, media_types, parse_json,
};

const MAX_NESTING: usize = 8;

/// How blobs are named in the archive.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BlobNames {
    /// `blobs/sha256/<hex>` (OCI layouts).
    Layout,
    /// Bare `<hex>` (the `dir:` transport).
    Hex,
}

/// Names an index.json entry carries.
pub(crate) fn descriptor_names(desc: &Descriptor) -> Vec<String> {
    let mut names = Vec::new();
    for key in [
        layerlift_manifest::annotations::IMAGE_NAME,
        layerlift_manifest::annotations::REF_NAME,
    ] {
        if let Some(v) = desc.annotation(key)
            && !names.iter().any(|n| n == v)
        {
            names.push(v.to_string());
        }
    }
    names
}

/// Walks descriptors, collecting blobs, manifest summaries and defects into an [`ImageInfo`].
pub(crate) struct Walker<'a> {
    pub scan: &'a Scan,
    pub names: BlobNames,
    /// The descriptors this walk may still reach; once over, walking stops and the caller refuses
    /// the archive.
    pub fanout: crate::fanout::FanOut,
}

impl<'a> Walker<'a> {
    fn lookup(&self, digest: &Digest) -> Option<(String, &'a FileEntry)> {
        let path = match self.names {
            BlobNames::Layout => format!("blobs/sha256/{}", digest.hex()),
            BlobNames::Hex => digest.hex(),
        };
        self.scan.file(&path).ok().flatten()
    }

    /// The image a top-level descriptor names. `source` overrides where the top blob comes from
    /// (the `dir:` transport's `manifest.json`).
    pub fn image(
        &self,
        position: usize,
        desc: Descriptor,
        names: Vec<String>,
        source: Option<(String, &'a FileEntry)>,
    ) -> ImageInfo {
        let mut img = ImageInfo {
            position,
            names,
            descriptor: desc.clone(),
            parent: None,
            manifests: Vec::new(),
            defects: Vec::new(),
            blobs: Vec::new(),
            annotate_names: false,
        };
        self.visit(&desc, &mut img, 0, source);
        img
    }

    /// Walk `desc`, charging the fan-out budget for it and everything under it. A document
    /// walked before is refused up front when what it cost then no longer fits.
    fn visit(
        &self,
        desc: &Descriptor,
        img: &mut ImageInfo,
        depth: usize,
        source: Option<(String, &'a FileEntry)>,
    ) {
        if let Some(cost) = self.fanout.cost_of(&desc.digest)
            && cost > self.fanout.left()
        {
            self.fanout.take(cost);
            return;
        }
        if !self.fanout.take(1) {
            return;
        }
        let left_before = self.fanout.left() + 1;
        self.walk(desc, img, depth, source);
        if !self.fanout.exceeded() {
            self.fanout
                .remember(desc.digest, left_before - self.fanout.left());
        }
    }

    fn walk(
        &self,
        desc: &Descriptor,
        img: &mut ImageInfo,
        depth: usize,
        source: Option<(String, &'a FileEntry)>,
    ) {
        let top = depth == 0;
        let missing = |img: &mut ImageInfo, what: String| {
            img.defects.push(if top {
                Defect::fatal(what)
            } else {
                Defect::note(what)
            });
        };
        if self.fanout.exceeded() {
            return;
        }
        if depth > MAX_NESTING {
            img.defects.push(Defect::fatal(format!(
                "indexes nested deeper than {MAX_NESTING} levels"
            )));
            return;
        }
        let platform = desc.platform.as_ref().map(|p| p.to_string());
        let Some((path, file)) = source.or_else(|| self.lookup(&desc.digest)) else {
            let label = platform
                .as_deref()
                .map(|p| format!("platform {p}: "))
                .unwrap_or_default();
            missing(
                img,
                format!(
                    "{label}{} {} is not in the archive",
                    kind_of(&desc.media_type),
                    desc.digest
                ),
            );
            if media_types::is_manifest(&desc.media_type) {
                img.manifests.push(ManifestInfo {
                    digest: desc.digest,
                    media_type: desc.media_type.clone(),
                    platform,
                    present: false,
                    complete: false,
                    config: None,
                    layers: Vec::new(),
                    descriptor: Some(desc.clone()),
                    blobs: 0..0,
                });
            }
            return;
        };
        if !check_blob(desc, &path, file, img) {
            return;
        }
        let first_blob = img.blobs.len();
        img.blobs
            .push((desc.digest, BlobOrigin::Entry(path.clone())));
        let json = file.json();
        let json = json.as_deref();
        let is_index = media_types::is_index(&desc.media_type)
            || (!media_types::is_manifest(&desc.media_type)
                && json.is_some_and(|j| looks_like(j, "manifests")));
        let is_manifest = media_types::is_manifest(&desc.media_type)
            || (!is_index
                && json.is_some_and(|j| looks_like(j, "config") && looks_like(j, "layers")));
        if !is_index && !is_manifest {
            return; // some other document or artifact blob: copied as it is
        }
        let Some(json) = json else {
            img.defects.push(Defect::fatal(format!(
                "{path}: {} is not a JSON document",
                kind_of(&desc.media_type)
            )));
            return;
        };
        if is_index {
            let index: Index = match parse_json("image index", json) {
                Ok(i) => i,
                Err(e) => return img.defects.push(Defect::fatal(format!("{path}: {e}"))),
            };
            let before = img.manifests.len();
            for child in &index.manifests {
                self.visit(child, img, depth + 1, None);
                if self.fanout.exceeded() {
                    return;
                }
            }
            let present = img.manifests[before..].iter().filter(|m| m.present).count();
            if !index.manifests.is_empty() && present == 0 && img.manifests.len() > before {
                img.defects.push(Defect::fatal(format!(
                    "{path}: none of the index's manifests is in the archive"
                )));
            }
            return;
        }
        let manifest: Manifest = match parse_json("image manifest", json) {
            Ok(m) => m,
            Err(e) => return img.defects.push(Defect::fatal(format!("{path}: {e}"))),
        };
        // The config and the layers.
        if !self.fanout.take(1 + manifest.layers.len()) {
            return;
        }
        let mut info = self.manifest(&manifest, desc, platform, img, top);
        info.blobs = first_blob..img.blobs.len();
        img.manifests.push(info);
    }

    /// One image manifest: its config (checked, and its diff_ids read) and its layers (checked
    /// against them), the manifest regenerated if layers were compressed while they were read.
    fn manifest(
        &self,
        manifest: &Manifest,
        desc: &Descriptor,
        platform: Option<String>,
        img: &mut ImageInfo,
        top: bool,
    ) -> ManifestInfo {
        let mut info = ManifestInfo {
            digest: desc.digest,
            media_type: desc.media_type.clone(),
            platform,
            present: true,
            complete: false,
            config: Some(manifest.config.clone()),
            layers: Vec::new(),
            descriptor: Some(desc.clone()),
            blobs: 0..0,
        };
        let defects_before = img.defects.len();
        // visit() pushed the manifest's own blob just before calling this.
        let manifest_blob = img.blobs.len() - 1;
        let label = info
            .platform
            .as_deref()
            .map(|p| format!("platform {p}: "))
            .unwrap_or_default();
        let absence = Absence { top, label: &label };
        let config = self.config(manifest, &mut info, img, &absence);
        let mut diff_ids = config.diff_ids;
        if let Some(ids) = &diff_ids
            && ids.len() != manifest.layers.len()
        {
            img.defects.push(Defect::fatal(format!(
                "manifest {} lists {} layers but its config has {} diff_ids",
                desc.digest,
                manifest.layers.len(),
                ids.len()
            )));
            diff_ids = None;
        }
        let mut tally = LayerTally::default();
        for (i, layer) in manifest.layers.iter().enumerate() {
            let expected = diff_ids.as_ref().map(|ids| ids[i]);
            let li = self.layer(layer, expected, &desc.media_type, img, &label, &mut tally);
            info.layers.push(li);
        }
        tally.mislabelled.sort();
        for group in tally.mislabelled.chunk_by(|a, b| a.0 == b.0) {
            let (note, first) = (&group[0].0, &group[0].1);
            let which = match group.len() {
                1 => format!("layer {first}"),
                n => format!("{n} layers ({first}, …)"),
            };
            img.defects
                .push(Defect::note(format!("{label}{which}: {note}")));
        }
        if tally.rewritten > 0 {
            self.rewrite(
                manifest,
                desc,
                &mut info,
                img,
                manifest_blob,
                top,
                tally.rewritten,
            );
        }
        info.complete = config.found
            && tally.missing == 0
            && !img.defects[defects_before..].iter().any(|d| d.fatal);
        if tally.missing > 0 {
            absence.report(
                img,
                format!(
                    "{} of {} layer blobs are not in the archive",
                    tally.missing,
                    manifest.layers.len()
                ),
            );
        }
        info
    }

    /// The manifest's config: checked and added to the image's blobs, and for an image config
    /// (not an artifact's) its diff_ids, and the platform if the index did not give one.
    fn config(
        &self,
        manifest: &Manifest,
        info: &mut ManifestInfo,
        img: &mut ImageInfo,
        absence: &Absence<'_>,
    ) -> ConfigRead {
        let mut read = ConfigRead {
            found: false,
            diff_ids: None,
        };
        let Some((path, file)) = self.lookup(&manifest.config.digest) else {
            absence.report(
                img,
                format!("config {} is not in the archive", manifest.config.digest),
            );
            return read;
        };
        if !check_blob(&manifest.config, &path, file, img) {
            return read;
        }
        read.found = true;
        img.blobs
            .push((manifest.config.digest, BlobOrigin::Entry(path.clone())));
        let is_image_config = manifest.config.media_type == media_types::OCI_CONFIG
            || manifest.config.media_type == media_types::DOCKER_CONFIG
            || manifest.config.media_type == "application/octet-stream";
        // Artifacts reuse the image config type with `{}` (regclient, oras): only a config with a
        // rootfs has diff_ids to check.
        let json = file.json();
        let has_rootfs = json.as_deref().is_some_and(|j| looks_like(j, "rootfs"));
        let image_layers = manifest.layers.iter().any(|l| is_layer_type(&l.media_type));
        if !(is_image_config && (has_rootfs || image_layers)) {
            return read;
        }
        match json
            .as_deref()
            .map(|j| parse_json::<ImageConfig>("image config", j))
        {
            Some(Ok(c)) => {
                if info.platform.is_none() {
                    info.platform = platform_of(&c);
                }
                read.diff_ids = Some(c.rootfs.diff_ids);
            }
            Some(Err(e)) => img.defects.push(Defect::fatal(format!("{path}: {e}"))),
            None => img.defects.push(Defect::fatal(format!(
                "{path}: the image config is not a JSON document"
            ))),
        }
        read
    }

    /// One layer of a manifest (of type `manifest_type`): looked up, checked (against the
    /// `expected` diff_id if the config gives one) and added to the image's blobs; missing,
    /// compressed-while-read and mislabelled layers are counted in `tally`.
    fn layer(
        &self,
        layer: &Descriptor,
        expected: Option<Digest>,
        manifest_type: &str,
        img: &mut ImageInfo,
        label: &str,
        tally: &mut LayerTally,
    ) -> LayerInfo {
        let mut li = LayerInfo {
            path: None,
            resolved: None,
            descriptor: layer.clone(),
            compression: Compression::None,
            diff_id: expected,
            uncompressed_size: None,
            present: false,
        };
        let Some((path, file)) = self.lookup(&layer.digest) else {
            if media_types::is_non_distributable(&layer.media_type) {
                img.defects.push(Defect::note(format!(
                    "{label}layer {} is non-distributable and not in the archive; its descriptor is kept",
                    layer.digest
                )));
            } else {
                tally.missing += 1;
            }
            return li;
        };
        li.path = Some(path.clone());
        li.present = true;
        li.compression = file.compression;
        if !check_blob(layer, &path, file, img) {
            return li;
        }
        match &file.encoded {
            // Compressed while it was read: the manifest will name the new blob.
            Some(enc) => {
                img.blobs
                    .push((enc.digest, BlobOrigin::Encoded(path.clone())));
                let mut d = layer.clone();
                d.media_type = compressed_type(manifest_type, &layer.media_type, enc.compression);
                d.digest = enc.digest;
                d.size = enc.size;
                li.descriptor = d;
                tally.rewritten += 1;
            }
            None => img
                .blobs
                .push((layer.digest, BlobOrigin::Entry(path.clone()))),
        }
        match (file.diff_id(), expected) {
            (Err(e), _) => img.defects.push(Defect::fatal(format!(
                "layer {path}: cannot decompress ({e})"
            ))),
            (Ok((actual, size)), Some(expected)) => {
                li.uncompressed_size = Some(size);
                if actual != expected {
                    img.defects.push(Defect::fatal(format!(
                        "layer {path}: diff_id mismatch: expected {expected}, got {actual}"
                    )));
                }
            }
            (Ok((_, size)), None) => li.uncompressed_size = Some(size),
        }
        if let Some(note) = mislabel(&layer.media_type, file.compression) {
            tally.mislabelled.push((note, path.clone()));
        }
        li
    }
}

/// How a manifest's missing config or layers are reported: fatal for the image's top manifest,
/// a note for one of an index's other manifests; prefixed with its platform.
struct Absence<'a> {
    top: bool,
    label: &'a str,
}

impl Absence<'_> {
    fn report(&self, img: &mut ImageInfo, what: String) {
        let msg = format!("{}{what}", self.label);
        img.defects.push(if self.top {
            Defect::fatal(msg)
        } else {
            Defect::note(msg)
        });
    }
}

/// What a manifest's config gave: whether it is there and checked, and its diff_ids.
struct ConfigRead {
    found: bool,
    diff_ids: Option<Vec<Digest>>,
}

/// Counts over a manifest's layers.
#[derive(Default)]
struct LayerTally {
    /// Layers compressed while the archive was read (the manifest is regenerated).
    rewritten: usize,
    /// Layers not in the archive.
    missing: usize,
    /// Layers whose media type does not say how they are stored: (note, path).
    mislabelled: Vec<(String, String)>,
}

impl Walker<'_> {
    /// Regenerate a manifest whose layers were compressed while the archive was read.
    #[allow(clippy::too_many_arguments)]
    fn rewrite(
        &self,
        manifest: &Manifest,
        desc: &Descriptor,
        info: &mut ManifestInfo,
        img: &mut ImageInfo,
        manifest_blob: usize,
        top: bool,
        rewritten: usize,
    ) {
        if !top {
            img.defects.push(Defect::fatal(format!(
                "manifest {} is part of an index: its uncompressed layers cannot be compressed on the way (unpack without compressing, then convert)",
                desc.digest
            )));
            return;
        }
        let mut new = manifest.clone();
        new.layers = info.layers.iter().map(|l| l.descriptor.clone()).collect();
        let bytes = serde_json::to_vec(&new).expect("a manifest always serialises");
        let digest = Digest::of(&bytes);
        img.defects.push(Defect::note(format!(
            "{rewritten} layer(s) compressed on the way; manifest {} regenerated as {digest}",
            desc.digest
        )));
        info.digest = digest;
        if let Some(d) = info.descriptor.as_mut() {
            d.digest = digest;
            d.size = bytes.len() as u64;
        }
        img.descriptor.digest = digest;
        img.descriptor.size = bytes.len() as u64;
        img.blobs[manifest_blob] = (digest, BlobOrigin::Generated(bytes));
    }
}

/// The media type of a layer compressed to `c`, in the style of its manifest.
fn compressed_type(manifest_type: &str, layer_type: &str, c: Compression) -> String {
    let docker = manifest_type == media_types::DOCKER_MANIFEST
        || layer_type.starts_with("application/vnd.docker.");
    match (docker, c) {
        (true, Compression::Zstd) => media_types::DOCKER_LAYER_ZSTD.to_string(),
        (true, _) => media_types::DOCKER_LAYER_GZIP.to_string(),
        (false, c) => oci_layer_type(c).to_string(),
    }
}

/// Check a present blob against its descriptor; record a fatal defect and return false if wrong.
fn check_blob(desc: &Descriptor, path: &str, file: &FileEntry, img: &mut ImageInfo) -> bool {
    if file.digest != desc.digest {
        img.defects.push(Defect::fatal(format!(
            "{path}: digest mismatch: expected {}, got {}",
            desc.digest, file.digest
        )));
        return false;
    }
    if file.size != desc.size {
        img.defects.push(Defect::fatal(format!(
            "{path}: size mismatch: the descriptor says {} bytes, the blob has {}",
            desc.size, file.size
        )));
        return false;
    }
    true
}

fn looks_like(json: &[u8], key: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(json).is_ok_and(|v| v.get(key).is_some())
}

fn is_layer_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

fn kind_of(media_type: &str) -> &'static str {
    if media_types::is_index(media_type) {
        "index"
    } else if media_types::is_manifest(media_type) {
        "manifest"
    } else {
        "blob"
    }
}

pub(crate) fn platform_of(c: &ImageConfig) -> Option<String> {
    let (os, arch) = (c.os.as_deref()?, c.architecture.as_deref()?);
    if os.is_empty() || arch.is_empty() {
        return None;
    }
    Some(match &c.variant {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

/// A note when a layer's media type claims a compression its bytes do not have.
fn mislabel(media_type: &str, actual: Compression) -> Option<String> {
    let claimed = Compression::from(layerlift_manifest::convert::layer_compression_label(
        media_type,
    )?);
    (claimed != actual).then(|| {
        format!(
            "labelled {media_type} but the bytes are {}; kept as they are",
            describe(actual)
        )
    })
}

fn describe(c: Compression) -> &'static str {
    match c {
        Compression::None => "uncompressed",
        other => other.name(),
    }
}

/// The OCI media type of a layer compressed so.
pub(crate) fn oci_layer_type(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => media_types::OCI_LAYER_GZIP,
        Compression::Zstd => media_types::OCI_LAYER_ZSTD,
        _ => media_types::OCI_LAYER,
    }
}
