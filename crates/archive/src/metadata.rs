//! Which metadata document of an archive describes its images — the one rule that the full read
//! (`analyze`) and push's catalog (`catalog`, which reads only the metadata) both follow:
//!
//! 1. a `manifest.json` wins: a JSON list is a `docker save` list of images (every Docker era,
//!    podman, skopeo, kaniko/ggcr); an object with `schemaVersion` is the one image manifest of a
//!    `dir:` transport directory; anything else (`null`, an empty list, another shape) is an error;
//! 2. otherwise an `index.json` makes the archive an OCI layout;
//! 3. otherwise the archive holds no image.
//!
//! A `docker save` list next to an `index.json` (Docker 25+, the containerd image store) is still
//! read through the list; the full read then takes the index's images in its place when they
//! describe every image of the list as stored (they keep the real manifests), which changes names
//! and digests of manifests, never which layers are read.

use crate::docker::Item;
use crate::error::ArchiveError;

/// The document that describes an archive's images (see the module docs).
#[derive(Debug)]
pub(crate) enum Primary {
    /// `manifest.json` is a `docker save` list of images (at least one).
    DockerList(Vec<Item>),
    /// `manifest.json` is one image manifest (the `dir:` transport).
    ImageManifest,
    /// No `manifest.json`: the `index.json` of an OCI layout.
    OciIndex,
}

/// Which document describes the images, given `manifest.json`'s bytes (if the archive has one) and
/// whether it has an `index.json`. `None` when it has neither.
pub(crate) fn primary(
    manifest_json: Option<&[u8]>,
    has_index_json: bool,
) -> Result<Option<Primary>, ArchiveError> {
    let Some(bytes) = manifest_json else {
        return Ok(has_index_json.then_some(Primary::OciIndex));
    };
    let bad = |why: String| ArchiveError::BadMetadata {
        file: "manifest.json".into(),
        why,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    match value {
        serde_json::Value::Array(_) => {}
        serde_json::Value::Object(ref o) if o.contains_key("schemaVersion") => {
            return Ok(Some(Primary::ImageManifest));
        }
        serde_json::Value::Null => return Err(bad("is `null`, not a list of images".into())),
        _ => {
            return Err(bad(
                "is neither a docker save list of images nor an image manifest".into(),
            ));
        }
    }
    let items: Vec<Item> = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if items.is_empty() {
        return Err(bad("lists no images".into()));
    }
    Ok(Some(Primary::DockerList(items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &[u8] = br#"[{"Config":"c.json","RepoTags":["a:1"],"Layers":["l.tar"]}]"#;

    #[test]
    fn manifest_json_wins_then_index_json() {
        for has_index in [false, true] {
            match primary(Some(LIST), has_index).unwrap() {
                Some(Primary::DockerList(items)) => assert_eq!(items[0].config, "c.json"),
                other => panic!("{other:?}"),
            }
        }
        let dir = br#"{"schemaVersion":2,"config":{}}"#;
        assert!(matches!(
            primary(Some(dir), true).unwrap(),
            Some(Primary::ImageManifest)
        ));
        assert!(matches!(
            primary(None, true).unwrap(),
            Some(Primary::OciIndex)
        ));
        assert!(primary(None, false).unwrap().is_none());
    }

    #[test]
    fn a_manifest_json_that_is_no_list_is_an_error_even_with_an_index() {
        for (bytes, why) in [
            (&b"null"[..], "is `null`, not a list of images"),
            (b"[]", "lists no images"),
            (b"{\"a\":1}", "is neither a docker save list"),
            (b"[{\"Layers\":[]}]", "Config"),
            (b"[", "EOF"),
        ] {
            let err = primary(Some(bytes), true).unwrap_err();
            assert!(
                matches!(&err, ArchiveError::BadMetadata { file, why: w } if file == "manifest.json" && w.contains(why)),
                "{}: {err:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
