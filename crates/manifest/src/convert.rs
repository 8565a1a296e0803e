//! OCI ⇄ Docker schema 2 conversion of manifests and indexes, and the layer media type for a
//! format and compression. Used by `layerlift-convert`.
//!
//! A converted document is serialised by [`to_json`] (compact, fields in declaration order,
//! annotations sorted), so the same input gives the same bytes, and so the same digest, every run.
//! Config bytes are never touched: only the config descriptor's media type label changes.

use crate::media_types as mt;
use crate::{Descriptor, Index, Manifest};

/// A manifest format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// OCI image-spec: `application/vnd.oci.image.manifest.v1+json` and `…index.v1+json`.
    Oci,
    /// Docker schema 2: `application/vnd.docker.distribution.manifest.v2+json` and `…list.v2+json`.
    Docker,
}

impl Format {
    /// The format of a manifest or index media type, if it is one of the four.
    pub fn of(media_type: &str) -> Option<Format> {
        match media_type {
            mt::OCI_MANIFEST | mt::OCI_INDEX => Some(Format::Oci),
            mt::DOCKER_MANIFEST | mt::DOCKER_MANIFEST_LIST => Some(Format::Docker),
            _ => None,
        }
    }

    /// The manifest media type of this format.
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_MANIFEST,
            Format::Docker => mt::DOCKER_MANIFEST,
        }
    }

    /// The index (manifest list) media type of this format.
    pub fn index_media_type(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_INDEX,
            Format::Docker => mt::DOCKER_MANIFEST_LIST,
        }
    }

    /// The image config media type of this format.
    pub fn config_media_type(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_CONFIG,
            Format::Docker => mt::DOCKER_CONFIG,
        }
    }

    /// `oci` or `docker`, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Oci => "oci",
            Format::Docker => "docker",
        }
    }
}

/// How a layer's bytes are stored, as far as media types can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerCompression {
    /// Uncompressed tar.
    None,
    /// gzip-compressed tar.
    Gzip,
    /// zstd-compressed tar.
    Zstd,
}

/// A conversion the formats cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error(
        "Docker schema 2 manifests have no media type for uncompressed layers; use the OCI format or compress the layers"
    )]
    /// Docker schema 2 has no media type for uncompressed layers.
    UncompressedInDocker,
    #[error(
        "Docker schema 2 has no media type for zstd-compressed foreign (non-distributable) layers"
    )]
    /// Docker schema 2 has no media type for zstd-compressed foreign layers.
    ForeignZstdInDocker,
}

/// The media type of a layer stored with `compression` in a `format` manifest; `non_distributable`
/// for foreign layers (Docker `foreign.diff`, OCI `nondistributable`).
pub fn layer_media_type(
    format: Format,
    compression: LayerCompression,
    non_distributable: bool,
) -> Result<&'static str, ConvertError> {
    use LayerCompression as C;
    Ok(match (format, non_distributable, compression) {
        (Format::Oci, false, C::None) => mt::OCI_LAYER,
        (Format::Oci, false, C::Gzip) => mt::OCI_LAYER_GZIP,
        (Format::Oci, false, C::Zstd) => mt::OCI_LAYER_ZSTD,
        (Format::Oci, true, C::None) => mt::OCI_NONDISTRIBUTABLE_LAYER,
        (Format::Oci, true, C::Gzip) => mt::OCI_NONDISTRIBUTABLE_LAYER_GZIP,
        (Format::Oci, true, C::Zstd) => mt::OCI_NONDISTRIBUTABLE_LAYER_ZSTD,
        (Format::Docker, false, C::None) => return Err(ConvertError::UncompressedInDocker),
        (Format::Docker, false, C::Gzip) => mt::DOCKER_LAYER_GZIP,
        (Format::Docker, false, C::Zstd) => mt::DOCKER_LAYER_ZSTD,
        (Format::Docker, true, C::None) => mt::DOCKER_FOREIGN_LAYER,
        (Format::Docker, true, C::Gzip) => mt::DOCKER_FOREIGN_LAYER_GZIP,
        (Format::Docker, true, C::Zstd) => return Err(ConvertError::ForeignZstdInDocker),
    })
}

/// What a layer media type claims about compression (a label only: writers get it wrong, so sniff
/// the bytes when they are available). `None` for media types that are not layers we know.
pub fn layer_compression_label(media_type: &str) -> Option<LayerCompression> {
    match media_type {
        mt::OCI_LAYER
        | mt::OCI_NONDISTRIBUTABLE_LAYER
        | mt::DOCKER_LAYER
        | mt::DOCKER_FOREIGN_LAYER => Some(LayerCompression::None),
        mt::OCI_LAYER_GZIP
        | mt::OCI_NONDISTRIBUTABLE_LAYER_GZIP
        | mt::DOCKER_LAYER_GZIP
        | mt::DOCKER_FOREIGN_LAYER_GZIP => Some(LayerCompression::Gzip),
        mt::OCI_LAYER_ZSTD | mt::OCI_NONDISTRIBUTABLE_LAYER_ZSTD | mt::DOCKER_LAYER_ZSTD => {
            Some(LayerCompression::Zstd)
        }
        _ => None,
    }
}

/// Annotation prefixes that describe a layer's compressed bytes (eStargz TOC, zstd:chunked
/// manifest positions): they are wrong once the bytes are re-encoded.
const COMPRESSED_BYTES_ANNOTATIONS: [&str; 3] = [
    "containerd.io/snapshot/stargz/",
    "io.containers.estargz.",
    "io.github.containers.zstd-chunked.",
];

/// Drop the annotations that describe the old compressed bytes of a re-encoded layer.
pub fn drop_compressed_bytes_annotations(desc: &mut Descriptor) {
    if let Some(a) = &mut desc.annotations {
        a.retain(|k, _| {
            !COMPRESSED_BYTES_ANNOTATIONS
                .iter()
                .any(|p| k.starts_with(p))
        });
        if a.is_empty() {
            desc.annotations = None;
        }
    }
}

/// `manifest` in `format`, with `layers` as its new layer descriptors. The config descriptor keeps
/// its digest; an image config's label follows the format (other config types are kept).
pub fn convert_manifest(manifest: &Manifest, format: Format, layers: Vec<Descriptor>) -> Manifest {
    let mut out = manifest.clone();
    out.schema_version = 2;
    out.media_type = Some(format.manifest_media_type().to_string());
    if out.config.media_type == mt::OCI_CONFIG || out.config.media_type == mt::DOCKER_CONFIG {
        out.config.media_type = format.config_media_type().to_string();
    }
    out.layers = layers;
    out
}

/// `index` in `format`, with `manifests` as its new entries.
pub fn convert_index(index: &Index, format: Format, manifests: Vec<Descriptor>) -> Index {
    let mut out = index.clone();
    out.schema_version = 2;
    out.media_type = Some(format.index_media_type().to_string());
    out.manifests = manifests;
    out
}

/// The bytes of a document layerlift writes: compact JSON, stable field order.
pub fn to_json<T: serde::Serialize>(doc: &T) -> Vec<u8> {
    // Serialising these types cannot fail: string keys, no non-finite floats.
    serde_json::to_vec(doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Digest, parse_json};
    use std::collections::BTreeMap;

    fn oci_manifest() -> Manifest {
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[{{"mediaType":"{}","digest":"{}","size":0,"annotations":{{"z":"1","a":"2","io.containers.estargz.uncompressed-size":"5"}}}}],"annotations":{{"org.opencontainers.image.created":"x"}}}}"#,
            mt::OCI_MANIFEST,
            mt::OCI_CONFIG,
            Digest::of(b"{}"),
            mt::OCI_LAYER,
            Digest::of(b""),
        );
        parse_json("manifest", text.as_bytes()).unwrap()
    }

    #[test]
    fn media_types_per_format() {
        use LayerCompression as C;
        assert_eq!(
            layer_media_type(Format::Oci, C::Zstd, false),
            Ok(mt::OCI_LAYER_ZSTD)
        );
        assert_eq!(
            layer_media_type(Format::Docker, C::Gzip, false),
            Ok(mt::DOCKER_LAYER_GZIP)
        );
        assert_eq!(
            layer_media_type(Format::Docker, C::None, false),
            Err(ConvertError::UncompressedInDocker)
        );
        assert_eq!(
            layer_media_type(Format::Docker, C::Gzip, true),
            Ok(mt::DOCKER_FOREIGN_LAYER_GZIP)
        );
        assert_eq!(
            layer_media_type(Format::Oci, C::Gzip, true),
            Ok(mt::OCI_NONDISTRIBUTABLE_LAYER_GZIP)
        );
        for f in [Format::Oci, Format::Docker] {
            for c in [C::None, C::Gzip, C::Zstd] {
                for nd in [false, true] {
                    if let Ok(m) = layer_media_type(f, c, nd) {
                        assert_eq!(layer_compression_label(m), Some(c), "{m}");
                        assert_eq!(mt::is_non_distributable(m), nd, "{m}");
                    }
                }
            }
        }
    }

    #[test]
    fn manifest_round_trip_oci_docker_oci() {
        let m = oci_manifest();
        let mut layer = m.layers[0].clone();
        layer.media_type = mt::DOCKER_LAYER_GZIP.into();
        drop_compressed_bytes_annotations(&mut layer);
        assert_eq!(
            layer.annotations,
            Some(BTreeMap::from([
                ("a".into(), "2".into()),
                ("z".into(), "1".into())
            ]))
        );
        let d = convert_manifest(&m, Format::Docker, vec![layer]);
        assert_eq!(d.media_type.as_deref(), Some(mt::DOCKER_MANIFEST));
        assert_eq!(d.config.media_type, mt::DOCKER_CONFIG);
        assert_eq!(d.config.digest, m.config.digest);
        let bytes = to_json(&d);
        assert_eq!(bytes, to_json(&d.clone()));
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.find("\"a\"").unwrap() < text.find("\"z\"").unwrap());
        let back = convert_manifest(&d, Format::Oci, m.layers.clone());
        assert_eq!(back, m);
    }

    #[test]
    fn index_conversion() {
        let idx = Index::empty();
        let d = convert_index(&idx, Format::Docker, vec![]);
        assert_eq!(d.media_type.as_deref(), Some(mt::DOCKER_MANIFEST_LIST));
        assert_eq!(Format::of(mt::DOCKER_MANIFEST_LIST), Some(Format::Docker));
        assert_eq!(Format::of(mt::OCI_CONFIG), None);
    }
}
