//! An independent check of an OCI layout, written without layerlift's libraries: every blob reachable
//! from index.json hashes to its digest and has its size, and every image layer decompresses (flate2 /
//! zstd directly) to the config's diff_id.

use crate::util::sha256_digest;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// What the check found for one image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedImage {
    pub manifest: String,
    pub config: String,
    pub diff_ids: Vec<String>,
}

fn blob(dir: &Path, digest: &str) -> Option<Vec<u8>> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    std::fs::read(dir.join("blobs/sha256").join(hex)).ok()
}

fn uncompressed_digest(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(bytes)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
    } else {
        out = bytes.to_vec();
    }
    sha256_digest(&out)
}

/// Check the whole layout; panics with a message on any inconsistency. Returns the images found
/// (manifests whose blobs are all present).
pub fn layout(dir: &Path) -> Vec<CheckedImage> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(dir.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let mut found = Vec::new();
    for desc in index["manifests"].as_array().expect("manifests array") {
        let digest = desc["digest"].as_str().unwrap();
        assert!(
            blob(dir, digest).is_some(),
            "index.json points at missing blob {digest}"
        );
        walk(dir, desc, &mut found);
    }
    found
}

fn walk(dir: &Path, desc: &Value, found: &mut Vec<CheckedImage>) {
    let digest = desc["digest"].as_str().unwrap();
    let Some(bytes) = blob(dir, digest) else {
        return;
    }; // absent platform: allowed below the top
    assert_eq!(
        sha256_digest(&bytes),
        digest,
        "blob {digest} does not hash to its name"
    );
    assert_eq!(
        bytes.len() as u64,
        desc["size"].as_u64().unwrap(),
        "blob {digest} size"
    );
    let media_type = desc["mediaType"].as_str().unwrap_or_default();
    let doc: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return,
    };
    if media_type.contains("index") || media_type.contains("manifest.list") {
        for child in doc["manifests"].as_array().unwrap() {
            walk(dir, child, found);
        }
        return;
    }
    if !media_type.contains("manifest") {
        return;
    }
    let config_digest = doc["config"]["digest"].as_str().unwrap();
    let config =
        blob(dir, config_digest).unwrap_or_else(|| panic!("config {config_digest} missing"));
    assert_eq!(sha256_digest(&config), config_digest);
    let config: Value = serde_json::from_slice(&config).unwrap();
    let layers = doc["layers"].as_array().unwrap();
    let Some(diff_ids) = config["rootfs"]["diff_ids"].as_array() else {
        // An artifact (no rootfs): its blobs must still be right.
        for layer in layers {
            let ld = layer["digest"].as_str().unwrap();
            if let Some(bytes) = blob(dir, ld) {
                assert_eq!(sha256_digest(&bytes), ld, "artifact blob {ld}");
            }
        }
        return;
    };
    let diff_ids: Vec<String> = diff_ids
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        layers.len(),
        diff_ids.len(),
        "manifest {digest}: layers vs diff_ids"
    );
    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        let ld = layer["digest"].as_str().unwrap();
        let Some(bytes) = blob(dir, ld) else {
            let mt = layer["mediaType"].as_str().unwrap();
            assert!(
                mt.contains("foreign") || mt.contains("nondistributable"),
                "layer {ld} missing"
            );
            continue;
        };
        assert_eq!(sha256_digest(&bytes), ld, "layer blob {ld}");
        assert_eq!(
            &uncompressed_digest(&bytes),
            diff_id,
            "layer {ld} does not decompress to its diff_id"
        );
    }
    found.push(CheckedImage {
        manifest: digest.to_string(),
        config: config_digest.to_string(),
        diff_ids,
    });
}
