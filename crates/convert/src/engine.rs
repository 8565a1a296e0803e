//! The converter: walks what an `index.json` entry points at (indexes, manifests, configs, layers),
//! converts each document and layer once, and writes the results into the destination layout,
//! every blob verified before it is visible. Documents whose content does not change are copied
//! as their bytes (never re-serialised), so their digests stay.

use crate::config_time::rewrite_config;
use crate::error::ConvertError;
use crate::observer::Observer;
use crate::options::Options;
use crate::report::{Action, Blob, LayerDone, LayerReport, SourceLayer};
use layerlift_layers::Encoding;
use layerlift_layout::Layout;
use layerlift_manifest::convert::{
    Format, LayerCompression, convert_index, convert_manifest, layer_compression_label,
    layer_media_type, to_json,
};
use layerlift_manifest::{
    Descriptor, Digest, ImageConfig, Index, Manifest, media_types, parse_json,
};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

/// The state of one conversion run.
pub(crate) struct Converter<'a> {
    pub src: &'a Layout,
    pub dst: &'a Layout,
    /// `dst` is `src`: blobs we do not interpret are there already.
    pub in_place: bool,
    pub encoding: Encoding,
    pub options: &'a Options,
    pub observer: &'a dyn Observer,
    /// The next [`LayerId`](crate::LayerId).
    pub next_id: AtomicUsize,
    /// Manifests and indexes already converted: source digest → new (mediaType, digest, size).
    docs: HashMap<Digest, (String, Digest, u64)>,
    /// Configs rewritten by the epoch.
    pub configs_rewritten: usize,
    /// Layers converted, by source digest and target format.
    pub layers: HashMap<(Digest, Format), LayerDone>,
    /// Report lines of layers converted ahead (small ones), added when a manifest reaches them.
    pub prefetched: HashMap<(Digest, Format), LayerReport>,
    /// Report lines, in the order manifests reach the layers.
    pub report: Vec<LayerReport>,
}

impl<'a> Converter<'a> {
    pub fn new(
        src: &'a Layout,
        dst: &'a Layout,
        in_place: bool,
        options: &'a Options,
        observer: &'a dyn Observer,
    ) -> Self {
        Converter {
            src,
            dst,
            in_place,
            encoding: options.encoding(),
            options,
            observer,
            next_id: AtomicUsize::new(0),
            docs: HashMap::new(),
            configs_rewritten: 0,
            layers: HashMap::new(),
            prefetched: HashMap::new(),
            report: Vec::new(),
        }
    }

    /// Convert what `desc` points at; returns the descriptor of the result (its annotations and
    /// platform kept).
    pub fn convert_entry(&mut self, desc: &Descriptor) -> Result<Descriptor, ConvertError> {
        if let Some((media_type, digest, size)) = self.docs.get(&desc.digest) {
            return Ok(Descriptor {
                media_type: media_type.clone(),
                digest: *digest,
                size: *size,
                ..desc.clone()
            });
        }
        let new = if media_types::is_index(&desc.media_type) {
            self.convert_index_blob(desc)
                .map_err(|e| ConvertError::Index {
                    digest: desc.digest,
                    source: Box::new(e),
                })?
        } else if media_types::is_manifest(&desc.media_type) {
            self.convert_manifest_blob(desc)
                .map_err(|e| ConvertError::Manifest {
                    digest: desc.digest,
                    source: Box::new(e),
                })?
        } else {
            // Not something we convert (an artifact, an unknown type): carried over unchanged.
            self.copy_blob(&desc.digest)?;
            desc.clone()
        };
        self.docs
            .insert(desc.digest, (new.media_type.clone(), new.digest, new.size));
        Ok(new)
    }

    fn convert_index_blob(&mut self, desc: &Descriptor) -> Result<Descriptor, ConvertError> {
        let bytes = self.src.read_blob(&desc.digest)?;
        let index: Index = parse_json("image index", &bytes)?;
        let from = Format::of(&desc.media_type).unwrap_or(Format::Oci);
        let to = self.options.format.unwrap_or(from);
        let mut children = Vec::with_capacity(index.manifests.len());
        for child in &index.manifests {
            let new = self
                .convert_entry(child)
                .map_err(|e| ConvertError::IndexEntry {
                    platform: child.platform.as_ref().map(|p| p.to_string()),
                    digest: child.digest,
                    source: Box::new(e),
                })?;
            children.push(new);
        }
        if children == index.manifests && to == from {
            self.copy_doc(&bytes, &desc.digest)?;
            return Ok(desc.clone());
        }
        let new = convert_index(&index, to, children);
        self.write_doc(desc, to.index_media_type(), &to_json(&new))
    }

    fn convert_manifest_blob(&mut self, desc: &Descriptor) -> Result<Descriptor, ConvertError> {
        let bytes = self.src.read_blob(&desc.digest)?;
        let manifest: Manifest = parse_json("image manifest", &bytes)?;
        // An image: an image config, and layers that are all tar layers. Anything else is an
        // artifact (signature, SBOM, attestation, build metadata) and is carried over unchanged.
        let is_image = (manifest.config.media_type == media_types::OCI_CONFIG
            || manifest.config.media_type == media_types::DOCKER_CONFIG)
            && manifest
                .layers
                .iter()
                .all(|l| layer_compression_label(&l.media_type).is_some());
        if !is_image {
            self.copy_doc(&bytes, &desc.digest)?;
            self.copy_blob(&manifest.config.digest)?;
            for l in &manifest.layers {
                self.copy_blob(&l.digest)?;
            }
            return Ok(desc.clone());
        }
        let from = Format::of(&desc.media_type).unwrap_or(Format::Oci);
        let to = self.options.format.unwrap_or(from);

        let config_digest = manifest.config.digest;
        let in_config = |e: ConvertError| ConvertError::Config {
            digest: config_digest,
            source: Box::new(e),
        };
        let config_bytes = self
            .src
            .read_blob(&config_digest)
            .map_err(|e| in_config(e.into()))?;
        let config: ImageConfig =
            parse_json("image config", &config_bytes).map_err(|e| in_config(e.into()))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(ConvertError::LayerCount {
                layers: manifest.layers.len(),
                config: config_digest,
                diff_ids: diff_ids.len(),
            });
        }
        self.prefetch_small_layers(&manifest.layers, diff_ids, to)?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        let mut new_diff_ids = Vec::with_capacity(manifest.layers.len());
        for (n, (layer, diff_id)) in manifest.layers.iter().zip(diff_ids).enumerate() {
            let (new, new_diff_id) = self
                .convert_layer(layer, diff_id, to)
                .map_err(|e| e.in_layer(n, layer.digest))?;
            layers.push(new);
            new_diff_ids.push(new_diff_id);
        }
        let mut new = convert_manifest(&manifest, to, layers);
        let rewritten = match self.options.source_date_epoch {
            Some(epoch) => {
                rewrite_config(&config_bytes, &new_diff_ids, epoch).map_err(in_config)?
            }
            None => None,
        };
        match rewritten {
            // Clamped times: new diff_ids and times, so a new config and image ID.
            Some(bytes) => {
                new.config.digest = self.dst.write_blob(&bytes)?;
                new.config.size = bytes.len() as u64;
                self.configs_rewritten += 1;
            }
            // The config is copied as its bytes: the image ID does not change.
            None => self.copy_doc(&config_bytes, &config_digest)?,
        }
        let unchanged =
            to == from && new.layers == manifest.layers && new.config == manifest.config;
        if unchanged {
            // Bytes we did not create are not re-serialised.
            self.copy_doc(&bytes, &desc.digest)?;
            return Ok(desc.clone());
        }
        self.write_doc(desc, to.manifest_media_type(), &to_json(&new))
    }

    /// Store a new document and describe it like `old` (annotations, platform kept).
    fn write_doc(
        &self,
        old: &Descriptor,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Descriptor, ConvertError> {
        let digest = self.dst.write_blob(bytes)?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
            ..old.clone()
        })
    }

    /// Make sure a small document we already read (and verified) is in the destination.
    fn copy_doc(&self, bytes: &[u8], digest: &Digest) -> Result<(), ConvertError> {
        if !self.dst.has_blob(digest) {
            let written = self.dst.write_blob(bytes)?;
            debug_assert_eq!(written, *digest);
        }
        Ok(())
    }

    /// Copy a blob we do not interpret into the destination, verifying it; absent blobs are fine
    /// (a layout may omit referenced blobs).
    fn copy_blob(&self, digest: &Digest) -> Result<(), ConvertError> {
        if self.in_place || self.dst.has_blob(digest) || !self.src.has_blob(digest) {
            return Ok(());
        }
        let mut file = self.src.open_blob(digest)?;
        let mut w = self.dst.blob_writer()?;
        io::copy(&mut file, &mut w).map_err(|source| ConvertError::CopyBlob {
            digest: *digest,
            source,
        })?;
        w.commit(Some(digest))?;
        Ok(())
    }

    /// Convert one layer of a manifest (or take it from the layers converted already); returns
    /// its new descriptor and diff_id.
    fn convert_layer(
        &mut self,
        layer: &Descriptor,
        diff_id: &Digest,
        format: Format,
    ) -> Result<(Descriptor, Digest), ConvertError> {
        let started = Instant::now();
        if media_types::is_non_distributable(&layer.media_type) {
            let label =
                layer_compression_label(&layer.media_type).unwrap_or(LayerCompression::Gzip);
            self.copy_blob(&layer.digest)?;
            let to = Descriptor {
                media_type: layer_media_type(format, label, true)?.to_string(),
                ..layer.clone()
            };
            self.report.push(LayerReport {
                from: SourceLayer {
                    media_type: layer.media_type.clone(),
                    digest: layer.digest,
                    size: layer.size,
                    compression: None,
                },
                to: Blob::from(&to),
                diff_id: *diff_id,
                new_diff_id: None,
                action: Action::Foreign,
                seconds: started.elapsed().as_secs_f64(),
            });
            return Ok((to, *diff_id));
        }
        if let Some(done) = self.layers.get(&(layer.digest, format)) {
            let to = done.descriptor(layer);
            let new_diff_id = done.diff_id;
            if let Some(report) = self.prefetched.remove(&(layer.digest, format)) {
                self.report.push(report);
            }
            return Ok((to, new_diff_id));
        }
        let (done, report, to) = self.transcode(layer, diff_id, format, &self.encoding)?;
        let new_diff_id = done.diff_id;
        self.layers.insert((layer.digest, format), done);
        self.report.push(report);
        Ok((to, new_diff_id))
    }
}
