//! The push matrix: every input unpack accepts (the real-tool fixtures and the generated ones,
//! [`crate::fixtures::REAL_TOOL_OK`] and [`crate::fixtures::GENERATED_OK`]) is pushed with
//! `layerlift-push SOURCE REGISTRY/mN --all` to a real registry in each of the four auth/TLS modes
//! (anonymous, htpasswd Basic, Bearer token, TLS with a generated CA), and every pushed image is
//! pulled back with skopeo and checked layer by layer against the source:
//!
//! - each tag printed points at the printed digest in the registry's storage;
//! - skopeo's copy of each digest has that manifest, every blob hashes to its name, every layer
//!   decompresses to the config's diff_id (`verify::layout` on what skopeo wrote);
//! - the pushed images' (config digest, diff_ids) are exactly the source's: the same config bytes,
//!   so the same image IDs (the source read by `verify::layout`, an archive after `layerlift-unpack`);
//!   for an OCI layout source the manifests are the source's own, byte for byte.
//!
//! One registry per mode, shared by all fixtures (repository prefix `mN` per fixture), the four
//! modes in parallel. A fixture push refuses must be listed in [`REFUSED`] with its exact error.

use crate::fixtures::{GENERATED_OK, REAL_TOOL_OK, generated, real_tool};
use crate::util::{
    Mode, ModeRegistry, assert_ok, have_tool, push_cmd, pushed, run, sha256_digest,
    skopeo_inspect_raw, text, try_skopeo_pull,
};
use crate::verify::{self, CheckedImage};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

/// Inputs unpack accepts that push refuses, with its error: containerd-store saves whose index lists
/// a platform the archive does not hold (the registry would refuse such an index; `layerlift-unpack
/// --platform` narrows it first).
const REFUSED: &[(&str, &str)] = &[
    (
        "synthetic/containerd-store-save.tar",
        "lists 1 manifest not in",
    ),
    (
        "synthetic/containerd-store-save-attest.tar",
        "lists 2 manifests not in",
    ),
];

struct Source {
    rel: String,
    path: PathBuf,
    /// The complete images of the source: manifest digest, config digest, diff_ids.
    images: Vec<CheckedImage>,
    /// An OCI layout pushed as it is (manifest digests must be kept).
    layout: bool,
}

fn sources(work: &std::path::Path) -> Vec<Source> {
    let mut all: Vec<(String, PathBuf)> = REAL_TOOL_OK
        .iter()
        .map(|(rel, _)| (rel.to_string(), real_tool(rel)))
        .collect();
    all.extend(
        GENERATED_OK
            .iter()
            .map(|rel| (rel.to_string(), generated(rel))),
    );
    all.into_iter()
        .enumerate()
        .map(|(i, (rel, path))| {
            let layout = path.join("oci-layout").is_file();
            let images = if layout {
                verify::layout(&path)
            } else {
                let dir = work.join(format!("src{i}"));
                let o = Command::new(crate::unpack::UNPACK)
                    .arg("-q")
                    .arg(&path)
                    .arg(&dir)
                    .output()
                    .unwrap();
                assert!(o.status.success(), "unpack {rel}: {}", text(&o).1);
                let images = verify::layout(&dir);
                std::fs::remove_dir_all(&dir).unwrap();
                images
            };
            Source {
                rel,
                path,
                images,
                layout,
            }
        })
        .collect()
}

/// `HOST:PORT/REPO:TAG` → (REPO, TAG); None for an untagged `HOST:PORT/REPO` (printed as
/// `HOST:PORT/REPO@DIGEST`).
fn repo_tag(reference: &str) -> Option<(String, String)> {
    let (_, path) = reference.split_once('/')?;
    let (repo, tag) = path.rsplit_once(':')?;
    Some((repo.to_string(), tag.to_string()))
}

/// What skopeo 1.9 cannot copy, although the registry holds it right: a foreign layer that is
/// nowhere (ggcr's `sparse_foreign.tar` lacks it, so the registry rightly has it not either), and an
/// index inside an index (regclient's testrepo).
const SKOPEO_CANNOT: &[&str] = &[
    "invalid status code from registry 404",
    "Unexpectedly received a manifest list instead of a manifest for a single image",
];

/// Read an image skopeo cannot copy: the top manifest with `skopeo inspect --raw`, every blob below
/// it from the registry's storage (what the registry serves); then check that layout, in which only
/// foreign layers may be missing.
fn registry_readback(
    reg: &ModeRegistry,
    reference: &str,
    digest: &str,
    work: &std::path::Path,
    copy_error: &str,
) -> Vec<CheckedImage> {
    assert!(
        SKOPEO_CANNOT.iter().any(|e| copy_error.contains(e)),
        "{copy_error}"
    );
    let manifest = skopeo_inspect_raw(reference, &reg.skopeo_args(), false);
    assert_eq!(sha256_digest(&manifest), digest, "{reference}");
    let layout = work.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let storage = reg
        .reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256");
    let mut todo = vec![manifest.clone()];
    while let Some(bytes) = todo.pop() {
        std::fs::write(
            blobs.join(sha256_digest(&bytes).trim_start_matches("sha256:")),
            &bytes,
        )
        .unwrap();
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let children = ["manifests", "layers"]
            .iter()
            .flat_map(|k| doc[k].as_array().cloned().unwrap_or_default())
            .chain(doc.get("config").cloned());
        for child in children {
            let Some(hex) = child["digest"]
                .as_str()
                .map(|d| d.trim_start_matches("sha256:"))
            else {
                continue;
            };
            if blobs.join(hex).exists() {
                continue;
            }
            if let Ok(b) = std::fs::read(storage.join(&hex[..2]).join(hex).join("data")) {
                let document = child["mediaType"]
                    .as_str()
                    .is_some_and(|m| m.contains("manifest") || m.contains("index"));
                if document {
                    todo.push(b);
                } else {
                    std::fs::write(blobs.join(hex), b).unwrap();
                }
            }
        }
    }
    let doc: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": doc["mediaType"], "digest": digest, "size": manifest.len()}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    verify::layout(&layout)
}

/// Push every source to one registry and check each against skopeo's read-back.
fn push_all(reg: &ModeRegistry, sources: &[Source], work: &std::path::Path) -> usize {
    let mut pulled = 0;
    for (i, src) in sources.iter().enumerate() {
        let ctx = format!("{:?} {}", reg.mode, src.rel);
        let mut c = push_cmd();
        c.arg(&src.path)
            .arg(format!("{}/m{i}", reg.addr()))
            .args(["--all", "-q"])
            .args(reg.push_args());
        let o = run(c);
        if let Some((_, expect)) = REFUSED.iter().find(|(r, _)| *r == src.rel) {
            let (_, err) = text(&o);
            assert_eq!(o.status.code(), Some(1), "{ctx}: expected a refusal");
            assert!(
                err.contains(expect) && err.contains("the registry would refuse the index"),
                "{ctx}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{ctx}: {err}");
            continue;
        }
        let out = assert_ok(&o);
        let refs = pushed(&out);
        assert!(!refs.is_empty(), "{ctx}: nothing pushed: {out}");
        let want: BTreeSet<(String, Vec<String>)> = src
            .images
            .iter()
            .map(|c| (c.config.clone(), c.diff_ids.clone()))
            .collect();
        let mut got = BTreeSet::new();
        let mut checked: BTreeMap<String, ()> = BTreeMap::new();
        for (reference, digest) in &refs {
            let reference = match repo_tag(reference) {
                Some((repo, tag)) => {
                    assert_eq!(
                        reg.tag_digest(&repo, &tag).as_deref(),
                        Some(digest.as_str()),
                        "{ctx}: {reference} in the registry's storage"
                    );
                    reference.clone()
                }
                None => format!("{reference}@{digest}"),
            };
            let reference = &reference;
            if checked.insert(digest.clone(), ()).is_some() {
                continue;
            }
            let tmp = tempfile::tempdir_in(work).unwrap();
            let images = try_skopeo_pull(reference, digest, &reg.skopeo_args(), tmp.path())
                .unwrap_or_else(|e| registry_readback(reg, reference, digest, tmp.path(), &e));
            pulled += 1;
            for img in images {
                if src.layout {
                    assert!(
                        src.images.iter().any(|s| s.manifest == img.manifest),
                        "{ctx}: {reference}: manifest {} is not the source's",
                        img.manifest
                    );
                }
                got.insert((img.config, img.diff_ids));
            }
        }
        assert_eq!(got, want, "{ctx}: pushed images differ from the source's");
    }
    pulled
}

#[test]
fn every_unpackable_input_pushes_in_all_four_modes_and_reads_back() {
    if !have_tool("skopeo") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let sources = sources(work.path());
    let start = std::time::Instant::now();
    let pulled: usize = std::thread::scope(|s| {
        let handles: Vec<_> = Mode::ALL
            .iter()
            .map(|&mode| {
                let (sources, work) = (&sources, work.path());
                s.spawn(move || {
                    let reg = ModeRegistry::start(mode);
                    let dir = work.join(format!("{mode:?}"));
                    std::fs::create_dir_all(&dir).unwrap();
                    push_all(&reg, sources, &dir)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    eprintln!(
        "{} sources × 4 modes, {pulled} skopeo read-backs in {:.1}s",
        sources.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(pulled >= sources.len() * 4);
}
