//! Serde types for descriptors, image manifests, image indexes and the image config's `rootfs`.

use crate::Digest;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A JSON document that could not be read as the type it should be.
#[derive(Debug, thiserror::Error)]
#[error("{what} is not valid: {source}")]
pub struct ManifestError {
    /// Which document ("image manifest", "index.json", ...).
    pub what: &'static str,
    #[source]
    /// What serde_json found wrong.
    pub source: serde_json::Error,
}

/// Parse `bytes` as JSON of type `T`; `what` names the document in the error ("image manifest", ...).
pub fn parse_json<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, ManifestError> {
    serde_json::from_slice(bytes).map_err(|source| ManifestError { what, source })
}

/// A content descriptor: what a manifest, index or index.json says about a blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the blob it points to.
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Where else the blob can be fetched from (foreign layers).
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Annotations (e.g. [`crate::annotations::REF_NAME`]).
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The platform of the manifest it points to (in an index).
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The artifact type of the manifest it points to.
    pub artifact_type: Option<String>,
    /// Fields this type does not know, kept as they were.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Descriptor {
    /// A plain descriptor with no optional fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
            extra: BTreeMap::new(),
        }
    }

    /// The value of annotation `key`, if any.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// The platform an image in an index is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// Operating system (`linux`, `windows`, ...).
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    /// Operating system version (Windows).
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    /// Required OS features (Windows).
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// CPU variant (`v7`, `v8`, ...).
    pub variant: Option<String>,
    #[serde(flatten)]
    /// Fields this type does not know, kept as they were.
    pub extra: BTreeMap<String, Value>,
}

/// Whether the platform `have` (`os/arch[/variant]`, as [`Platform`] displays it) is the one
/// `wanted` names: the same OS and architecture, and the same variant when both give one
/// (`linux/arm64` and `linux/arm64/v8` match each other; `linux/arm/v6` and `linux/arm/v7` do not).
pub fn platform_matches(have: &str, wanted: &str) -> bool {
    let mut have = have.split('/');
    let mut wanted = wanted.split('/');
    let (Some(os), Some(arch)) = (have.next(), have.next()) else {
        return false;
    };
    if wanted.next() != Some(os) || wanted.next() != Some(arch) {
        return false;
    }
    match (have.next(), wanted.next()) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// The platform this program runs on, as an image index names it (`linux/amd64`, `linux/arm64`):
/// Rust's OS and architecture names in Go's spelling, which image indexes use.
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

/// Whether `s` names a platform as [`platform_matches`] takes it: `os/arch` or `os/arch/variant`,
/// each part made of lowercase letters, digits, `_` and `-` (`linux/amd64`, `linux/arm64/v8`).
pub fn is_platform(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest, OCI or Docker schema 2 (the JSON is the same shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `2`.
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The manifest's own media type (absent in some old OCI manifests).
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The artifact type, for artifacts.
    pub artifact_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The manifest this one refers to (referrers API).
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Annotations.
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    /// Fields this type does not know, kept as they were.
    pub extra: BTreeMap<String, Value>,
}

/// An image index (OCI) or manifest list (Docker); also the shape of a layout's `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// `2`.
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The index's own media type (absent in some `index.json` files).
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The artifact type, for artifacts.
    pub artifact_type: Option<String>,
    /// `"manifests": null` (written by Docker 25.0.0–25.0.2) reads as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The manifest this one refers to (referrers API).
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Annotations.
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    /// Fields this type does not know, kept as they were.
    pub extra: BTreeMap<String, Value>,
}

impl Index {
    /// An empty OCI index, as a new layout's `index.json`.
    pub fn empty() -> Self {
        Index {
            schema_version: 2,
            media_type: Some(crate::media_types::OCI_INDEX.to_string()),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: None,
            extra: BTreeMap::new(),
        }
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Descriptor>, D::Error> {
    Ok(Option::<Vec<Descriptor>>::deserialize(d)?.unwrap_or_default())
}

/// The parts of an image config layerlift reads. Never re-serialise a config: its bytes are the
/// image ID.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    /// CPU architecture.
    pub architecture: Option<String>,
    #[serde(default)]
    /// Operating system.
    pub os: Option<String>,
    #[serde(default)]
    /// CPU variant.
    pub variant: Option<String>,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
}

/// `rootfs` of an image config: the uncompressed layer digests, base first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    /// `layers`.
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_empty_digests")]
    /// The uncompressed digest of each layer, base first.
    pub diff_ids: Vec<Digest>,
}

fn null_as_empty_digests<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Digest>, D::Error> {
    Ok(Option::<Vec<Digest>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_match_by_os_arch_and_a_variant_both_give() {
        assert!(platform_matches("linux/amd64", "linux/amd64"));
        assert!(platform_matches("linux/arm64/v8", "linux/arm64"));
        assert!(platform_matches("linux/arm64", "linux/arm64/v8"));
        assert!(!platform_matches("linux/arm/v6", "linux/arm/v7"));
        assert!(!platform_matches("linux/arm64", "linux/amd64"));
        assert!(!platform_matches("windows/amd64", "linux/amd64"));
        assert!(!platform_matches("linux", "linux"));
        assert!(!platform_matches("linux/amd64", "linux"));
    }

    #[test]
    fn the_host_platform_is_a_platform() {
        let host = host_platform();
        assert!(is_platform(&host), "{host}");
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        assert_eq!(host, "linux/amd64");
    }

    #[test]
    fn platforms_are_two_or_three_lowercase_parts() {
        for good in [
            "linux/amd64",
            "linux/arm64/v8",
            "windows/amd64",
            "linux/mips64_le-x",
        ] {
            assert!(is_platform(good), "{good}");
        }
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "Linux/amd64",
            "linux/arm/v7/x",
            "linux/am d64",
            "",
        ] {
            assert!(!is_platform(bad), "{bad}");
        }
    }

    #[test]
    fn null_manifests_read_as_empty() {
        let idx: Index = parse_json("index", br#"{"schemaVersion":2,"manifests":null}"#).unwrap();
        assert!(idx.manifests.is_empty());
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = r#"{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"data":"","zzz":1}"#;
        let d: Descriptor = parse_json("descriptor", text.as_bytes()).unwrap();
        assert_eq!(d.extra.len(), 2);
        let back = serde_json::to_string(&d).unwrap();
        assert!(back.contains(r#""zzz":1"#) && back.contains(r#""data":"""#));
    }

    #[test]
    fn serialisation_is_stable() {
        let mut d = Descriptor::new("m", Digest::of(b""), 0);
        d.annotations = Some(
            [
                ("b".to_string(), "2".to_string()),
                ("a".to_string(), "1".to_string()),
            ]
            .into(),
        );
        let s = serde_json::to_string(&d).unwrap();
        assert!(s.find("\"a\"").unwrap() < s.find("\"b\"").unwrap());
    }

    #[test]
    fn config_diff_ids() {
        let c: ImageConfig = parse_json(
            "config",
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}"#,
        )
        .unwrap();
        assert_eq!(c.rootfs.diff_ids, vec![Digest::of(b"")]);
    }
}
