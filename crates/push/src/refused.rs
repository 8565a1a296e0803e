//! Manifests a registry refuses for their media type, pushed in the other format.
//!
//! Some registries refuse a format: Quay before 3.6 OCI manifests and indexes, Quay before 3.8 an
//! OCI index that lists Docker manifests, zot without its compatibility switch Docker manifests.
//! They answer the manifest `PUT` with `400 MANIFEST_INVALID` or `415`. The document can then go
//! up in the other format (OCI ⇄ Docker schema 2, as skopeo converts), which changes its digest, so
//! that is done only when the options allow it ([`crate::Options::convert_refused`]); otherwise the
//! push fails saying so. An index whose children were converted names their new digests, so it
//! changes too.

use crate::plan::Doc;
use layerlift_manifest::convert::{
    Format, convert_index, convert_manifest, layer_compression_label, layer_media_type, to_json,
};
use layerlift_manifest::{Digest, Index, Manifest, media_types as mt, parse_json};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The documents pushed in another format than SOURCE's: SOURCE's digest → what was pushed.
#[derive(Debug, Default)]
pub(crate) struct Renames(Mutex<BTreeMap<Digest, Doc>>);

impl Renames {
    /// What is pushed for `digest`, if it was converted.
    pub(crate) fn get(&self, digest: &Digest) -> Option<Doc> {
        self.0.lock().unwrap().get(digest).cloned()
    }

    /// Record that `from` went up as `to`.
    pub(crate) fn insert(&self, from: Digest, to: Doc) {
        self.0.lock().unwrap().insert(from, to);
    }

    /// `doc` as it must be pushed now: itself, its conversion, or (an index) with the descriptors
    /// of converted children replaced.
    pub(crate) fn apply(&self, doc: &Doc) -> Doc {
        if let Some(d) = self.get(&doc.digest) {
            return d;
        }
        let Ok(mut index) = parse_json::<Index>("index", &doc.bytes) else {
            return doc.clone();
        };
        if index.manifests.is_empty() || Format::of(&doc.media_type).is_none() {
            return doc.clone();
        }
        let mut changed = false;
        for child in &mut index.manifests {
            if let Some(new) = self.get(&child.digest) {
                child.digest = new.digest;
                child.size = new.bytes.len() as u64;
                child.media_type = new.media_type.clone();
                changed = true;
            }
        }
        if !changed {
            return doc.clone();
        }
        let bytes = to_json(&index);
        Doc {
            digest: Digest::of(&bytes),
            media_type: doc.media_type.clone(),
            bytes,
        }
    }
}

/// `doc` in the other format: an image manifest OCI ⇄ Docker schema 2 (layer and config media
/// types follow); an index in the format its children have (all Docker: a Docker manifest list),
/// else in the other one. Fails for what the other format cannot say (uncompressed layers in
/// Docker schema 2) and for documents that are neither.
pub(crate) fn convert(doc: &Doc) -> Result<Doc, String> {
    let format = Format::of(&doc.media_type)
        .ok_or_else(|| format!("{} is not a manifest or index type", doc.media_type))?;
    let other = match format {
        Format::Oci => Format::Docker,
        Format::Docker => Format::Oci,
    };
    let (media_type, bytes) = if doc.media_type == mt::OCI_INDEX
        || doc.media_type == mt::DOCKER_MANIFEST_LIST
    {
        let index: Index = parse_json("index", &doc.bytes).map_err(|e| e.to_string())?;
        let all_docker = index
            .manifests
            .iter()
            .all(|m| Format::of(&m.media_type) == Some(Format::Docker));
        let target = if all_docker && format == Format::Oci {
            Format::Docker
        } else {
            other
        };
        let manifests = index.manifests.clone();
        let out = convert_index(&index, target, manifests);
        (target.index_media_type(), to_json(&out))
    } else {
        let manifest: Manifest = parse_json("manifest", &doc.bytes).map_err(|e| e.to_string())?;
        let layers = manifest
            .layers
            .iter()
            .map(|l| {
                let compression = layer_compression_label(&l.media_type).ok_or_else(|| {
                    format!("layer type {} has no {} form", l.media_type, other.name())
                })?;
                let foreign =
                    l.media_type.contains("nondistributable") || l.media_type.contains("foreign");
                let mut l = l.clone();
                l.media_type = layer_media_type(other, compression, foreign)
                    .map_err(|e| e.to_string())?
                    .to_string();
                Ok(l)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let out = convert_manifest(&manifest, other, layers);
        (other.manifest_media_type(), to_json(&out))
    };
    Ok(Doc {
        digest: Digest::of(&bytes),
        media_type: media_type.to_string(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci_manifest() -> Doc {
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[{{"mediaType":"{}","digest":"{}","size":0}}]}}"#,
            mt::OCI_MANIFEST,
            mt::OCI_CONFIG,
            Digest::of(b"{}"),
            mt::OCI_LAYER_GZIP,
            Digest::of(b""),
        );
        Doc {
            digest: Digest::of(text.as_bytes()),
            media_type: mt::OCI_MANIFEST.into(),
            bytes: text.into_bytes(),
        }
    }

    #[test]
    fn manifests_and_indexes_change_format() {
        let m = oci_manifest();
        let d = convert(&m).unwrap();
        assert_eq!(d.media_type, mt::DOCKER_MANIFEST);
        let text = String::from_utf8(d.bytes.clone()).unwrap();
        assert!(text.contains(mt::DOCKER_CONFIG) && text.contains(mt::DOCKER_LAYER_GZIP));
        assert_ne!(d.digest, m.digest);
        // An OCI index naming the converted child: the child's new descriptor, then Docker.
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
            mt::OCI_INDEX,
            mt::OCI_MANIFEST,
            m.digest,
            m.bytes.len()
        );
        let index = Doc {
            digest: Digest::of(index.as_bytes()),
            media_type: mt::OCI_INDEX.into(),
            bytes: index.into_bytes(),
        };
        let renames = Renames::default();
        assert_eq!(renames.apply(&index).digest, index.digest);
        renames.insert(m.digest, d.clone());
        let applied = renames.apply(&index);
        assert!(String::from_utf8_lossy(&applied.bytes).contains(&d.digest.to_string()));
        let list = convert(&applied).unwrap();
        assert_eq!(list.media_type, mt::DOCKER_MANIFEST_LIST);
        // Uncompressed layers have no Docker type.
        let plain = Doc {
            bytes: String::from_utf8(m.bytes.clone())
                .unwrap()
                .replace(mt::OCI_LAYER_GZIP, mt::OCI_LAYER)
                .into_bytes(),
            ..m
        };
        assert!(convert(&plain).is_err());
    }
}
