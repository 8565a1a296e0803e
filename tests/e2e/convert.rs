//! `layerlift-convert` end to end: real fixtures converted to every compression and checked by
//! skopeo and umoci, every layer decompressed by the system's gzip/zstd back to its diff_id,
//! byte-identical layouts across runs and thread counts, in-place atomicity, Docker ⇄ OCI, and the
//! failures (diff_id mismatch, truncated layer, usage errors).

use crate::util::{copy_dir, have_tool, real_tool_fixtures, sha256_digest};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const REF: &str = "org.opencontainers.image.ref.name";

fn convert(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_layerlift-convert"));
    for a in args {
        cmd.arg(a);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn convert_ok(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let out = convert(args);
    assert!(
        out.status.success(),
        "layerlift-convert {:?} failed: {}",
        args.iter()
            .map(|a| a.as_ref().to_owned())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn blob_json(dir: &Path, digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(blob(dir, digest)).unwrap()).unwrap()
}

fn is_image_config(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.config.v1+json"
        || media_type == "application/vnd.docker.container.image.v1+json"
}

/// The uncompressed bytes of a layer blob, decoded by the system's tools (not by layerlift).
fn system_decompress(path: &Path, media_type: &str) -> Vec<u8> {
    let tool = if media_type.ends_with("gzip") {
        "gzip"
    } else if media_type.ends_with("zstd") {
        "zstd"
    } else {
        return std::fs::read(path).unwrap();
    };
    let out = Command::new(tool).arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success(), "{tool} -dc {} failed", path.display());
    out.stdout
}

/// What a layout's images are made of, checked on the way: every blob hashes to its name, every
/// layer decompresses (with the system's gzip/zstd) to its config's diff_id.
#[derive(Debug, Default)]
struct Walk {
    /// Config digests of the images (image IDs).
    configs: BTreeSet<String>,
    /// Media types of image layers (artifacts excluded).
    layer_types: BTreeSet<String>,
    /// Manifest media types seen.
    manifest_types: BTreeSet<String>,
}

fn walk(dir: &Path) -> Walk {
    let index = read_json(&dir.join("index.json"));
    let mut w = Walk::default();
    let mut todo: Vec<Value> = index["manifests"].as_array().unwrap().clone();
    let mut seen = BTreeSet::new();
    while let Some(d) = todo.pop() {
        let digest = d["digest"].as_str().unwrap().to_string();
        if !seen.insert(digest.clone()) || !blob(dir, &digest).exists() {
            continue;
        }
        let bytes = std::fs::read(blob(dir, &digest)).unwrap();
        assert_eq!(sha256_digest(&bytes), digest, "blob content != name");
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        if let Some(children) = doc["manifests"].as_array() {
            todo.extend(children.iter().cloned());
            continue;
        }
        let Some(config) = doc.get("config") else {
            continue;
        };
        let config_type = config["mediaType"].as_str().unwrap();
        let layers = doc["layers"].as_array().unwrap();
        let all_layers = layers.iter().all(|l| {
            l["mediaType"].as_str().unwrap().contains("layer")
                || l["mediaType"].as_str().unwrap().contains("rootfs")
        });
        if !is_image_config(config_type) || !all_layers {
            continue;
        }
        w.manifest_types
            .insert(d["mediaType"].as_str().unwrap().to_string());
        let config_digest = config["digest"].as_str().unwrap();
        let config_bytes = std::fs::read(blob(dir, config_digest)).unwrap();
        assert_eq!(sha256_digest(&config_bytes), config_digest);
        w.configs.insert(config_digest.to_string());
        let diff_ids = blob_json(dir, config_digest)["rootfs"]["diff_ids"].clone();
        for (i, l) in layers.iter().enumerate() {
            let media_type = l["mediaType"].as_str().unwrap();
            w.layer_types.insert(media_type.to_string());
            let path = blob(dir, l["digest"].as_str().unwrap());
            if !path.exists() {
                assert!(media_type.contains("foreign") || media_type.contains("nondistributable"));
                continue;
            }
            let stored = std::fs::read(&path).unwrap();
            assert_eq!(sha256_digest(&stored), l["digest"].as_str().unwrap());
            assert_eq!(stored.len() as u64, l["size"].as_u64().unwrap());
            let tar = system_decompress(&path, media_type);
            assert_eq!(
                sha256_digest(&tar),
                diff_ids[i].as_str().unwrap(),
                "layer {i} of {digest} in {} does not decompress to its diff_id",
                dir.display()
            );
        }
    }
    w
}

/// Every file of a layout (relative path → sha256), for byte-for-byte comparisons.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for sub in ["", "blobs/sha256"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() && !e.file_name().to_string_lossy().starts_with('.')
            {
                let rel = Path::new(sub).join(e.file_name());
                out.insert(
                    rel.display().to_string(),
                    sha256_digest(&std::fs::read(e.path()).unwrap()),
                );
            }
        }
    }
    out
}

fn refs(dir: &Path) -> Vec<String> {
    read_json(&dir.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["annotations"][REF].as_str().map(String::from))
        .collect()
}

fn skopeo_accepts(dir: &Path, reference: &str, scratch: &Path) -> bool {
    let out = scratch.join("skopeo-out");
    let _ = std::fs::remove_dir_all(&out);
    Command::new("skopeo")
        .args(["copy", "-q", "--all"])
        .arg(format!("oci:{}:{reference}", dir.display()))
        .arg(format!("dir:{}", out.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn umoci_accepts(dir: &Path, reference: &str) -> bool {
    Command::new("umoci")
        .args(["stat", "--image"])
        .arg(format!("{}:{reference}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A real tar of `files` generated files of 150 kB (compressible like a real layer).
fn make_tar(work: &Path, seed: u64, files: usize) -> Vec<u8> {
    make_tar_at(work, seed, files, 0)
}

/// Like [`make_tar`], every entry dated `mtime`.
fn make_tar_at(work: &Path, seed: u64, files: usize, mtime: u64) -> Vec<u8> {
    let root = work.join(format!("tree-{seed}-{mtime}"));
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for f in 0..files {
        let mut data = Vec::new();
        while data.len() < 150_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(4) {
                data.extend_from_slice(&x.to_le_bytes());
            } else {
                data.extend_from_slice(
                    format!("line {} of file {f}: value {}\n", data.len(), x % 1000).as_bytes(),
                );
            }
        }
        std::fs::write(root.join(format!("usr/lib/file{f}.txt")), data).unwrap();
    }
    let out = Command::new("tar")
        .arg(format!("--mtime=@{mtime}"))
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-cf",
            "-",
            "-C",
        ])
        .arg(&root)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// An OCI layout with one image of uncompressed `layers` (diff_ids from `diff_ids`, or the real ones).
fn make_layout(dir: &Path, layers: &[Vec<u8>], diff_ids: Option<Vec<String>>, layer_type: &str) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let d = sha256_digest(bytes);
        std::fs::write(blob(dir, &d), bytes).unwrap();
        d
    };
    let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|l| sha256_digest(l)).collect());
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "test"}],
    }))
    .unwrap();
    let config_digest = put(&config);
    let layer_descs: Vec<Value> = layers
        .iter()
        .map(|l| json!({"mediaType": layer_type, "digest": put(l), "size": l.len()}))
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layer_descs,
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest.len(),
                "annotations": {REF: "big:1"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
}

fn synthetic(work: &Path) -> PathBuf {
    let dir = work.join("synthetic");
    if !dir.exists() {
        // 2.4 MB: three gzip members, so thread counts have blocks to share out.
        let layers = vec![make_tar(work, 1, 16), make_tar(work, 2, 3)];
        make_layout(&dir, &layers, None, OCI_LAYER);
    }
    dir
}

#[test]
fn fixtures_convert_to_every_compression_and_tools_accept_them() {
    let (skopeo, umoci) = (have_tool("skopeo"), have_tool("umoci"));
    if !(have_tool("gzip") && have_tool("zstd")) {
        return;
    }
    let fixtures = real_tool_fixtures();
    let tmp = tempfile::tempdir().unwrap();
    for rel in [
        "generated-local/skopeo-1.9.3/skopeo-oci-layout-2images",
        "generated-local/podman-4.3.1/podman-oci-dir",
        "anchore-stereoscope/pkg/image/oci/testdata/multiplatform_oci_dir",
        "regclient-regclient/testdata/testrepo",
    ] {
        let input = fixtures.join(rel);
        assert!(input.is_dir(), "fixture {} missing", input.display());
        let before = walk(&input);
        assert!(!before.configs.is_empty(), "{rel} has images");
        // What the independent tools accept in the input, they must accept in the output.
        let names = refs(&input);
        let accepted: Vec<(String, bool, bool)> = names
            .iter()
            .map(|r| {
                (
                    r.clone(),
                    skopeo && skopeo_accepts(&input, r, tmp.path()),
                    umoci && umoci_accepts(&input, r),
                )
            })
            .collect();
        for (compression, layer_types) in [
            ("gzip", vec!["application/vnd.oci.image.layer.v1.tar+gzip"]),
            ("zstd", vec!["application/vnd.oci.image.layer.v1.tar+zstd"]),
            ("none", vec![OCI_LAYER]),
        ] {
            let out = tmp
                .path()
                .join(format!("{}-{compression}", rel.replace('/', "_")));
            convert_ok(&[&input, &out, &"--compression", &compression, &"-q"]);
            let after = walk(&out);
            assert_eq!(
                after.configs, before.configs,
                "{rel} {compression}: config digests changed"
            );
            let want: BTreeSet<String> = layer_types.iter().map(|s| s.to_string()).collect();
            assert_eq!(after.layer_types, want, "{rel} {compression}");
            for (r, by_skopeo, by_umoci) in &accepted {
                if *by_skopeo {
                    assert!(
                        skopeo_accepts(&out, r, tmp.path()),
                        "skopeo rejects {rel} {compression} {r}"
                    );
                }
                if *by_umoci {
                    assert!(
                        umoci_accepts(&out, r),
                        "umoci rejects {rel} {compression} {r}"
                    );
                }
            }
            assert_eq!(refs(&out), names, "{rel} {compression}: index.json names");
        }
    }
}

#[test]
fn same_bytes_across_runs_and_thread_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synthetic(tmp.path());
    for compression in ["gzip", "zstd"] {
        let mut snapshots = Vec::new();
        for (run, threads) in [(0, "1"), (1, "2"), (2, "2"), (3, "3")] {
            let out = tmp.path().join(format!("{compression}-{run}"));
            convert_ok(&[
                &input,
                &out,
                &"--compression",
                &compression,
                &"--threads",
                &threads,
                &"-q",
            ]);
            snapshots.push(snapshot(&out));
        }
        for s in &snapshots[1..] {
            assert_eq!(
                s, &snapshots[0],
                "{compression}: layouts differ between runs"
            );
        }
    }
    // The layer bytes depend on the tar only, not on how the input was compressed.
    for (from, to) in [("zstd", "gzip"), ("gzip", "zstd")] {
        let out = tmp.path().join(format!("{to}-via-{from}"));
        let src = tmp.path().join(format!("{from}-0"));
        convert_ok(&[&src, &out, &"--compression", &to, &"--recompress", &"-q"]);
        assert_eq!(
            snapshot(&out),
            snapshot(&tmp.path().join(format!("{to}-0"))),
            "{to} from {from}"
        );
    }
}

/// Our gzip layers are one gzip member per 1 MiB block. A reader that stops after the first member
/// would see a truncated tar; Go's decoder (what containerd, Docker, podman and skopeo use) must
/// read them all: skopeo decompresses every layer, and each must hash to its diff_id.
#[test]
fn go_decoders_read_every_gzip_member() {
    if !have_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let input = synthetic(tmp.path());
    let gz = tmp.path().join("gz");
    convert_ok(&[&input, &gz, &"-q"]);
    let index = read_json(&gz.join("index.json"));
    let manifest = blob_json(&gz, index["manifests"][0]["digest"].as_str().unwrap());
    let config = blob_json(&gz, manifest["config"]["digest"].as_str().unwrap());
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let first =
        std::fs::read(blob(&gz, manifest["layers"][0]["digest"].as_str().unwrap())).unwrap();
    let members = first
        .windows(10)
        .filter(|w| *w == [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])
        .count();
    assert!(
        members >= 2,
        "the first layer should span several gzip members, has {members}"
    );
    let out = tmp.path().join("decompressed");
    let status = Command::new("skopeo")
        .args(["copy", "-q", "--dest-decompress"])
        .arg(format!("oci:{}:big:1", gz.display()))
        .arg(format!("dir:{}", out.display()))
        .status()
        .unwrap();
    assert!(status.success(), "skopeo copy --dest-decompress failed");
    let written: BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| sha256_digest(&std::fs::read(e.unwrap().path()).unwrap()))
        .collect();
    for id in diff_ids {
        assert!(
            written.contains(id),
            "skopeo's decompression of the layer with diff_id {id} differs"
        );
    }
}

#[test]
fn in_place_is_atomic_idempotent_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let base = synthetic(tmp.path());
    let dir = tmp.path().join("inplace");
    copy_dir(&base, &dir);
    let old_blobs: BTreeSet<String> = snapshot(&dir).into_keys().collect();

    let out = convert_ok(&[&dir, &"--json"]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["inPlace"], json!(true));
    assert_eq!(summary["compression"], json!("gzip"));
    assert_eq!(summary["layers"].as_array().unwrap().len(), 2);
    assert!(
        summary["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["action"] == "encoded")
    );
    assert_eq!(
        summary["removedBlobs"],
        json!(3),
        "old manifest and two plain layers"
    );
    walk(&dir);
    let first = snapshot(&dir);
    // Only the config survives from the old blobs.
    let kept: Vec<_> = first
        .keys()
        .filter(|k| old_blobs.contains(*k) && k.starts_with("blobs"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(!dir.join(".layerlift-tmp").exists());

    // Again: nothing to do, nothing changes.
    let out = convert_ok(&[&dir, &"--json"]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        summary["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["action"] == "kept")
    );
    assert_eq!(summary["images"][0]["changed"], json!(false));
    assert_eq!(snapshot(&dir), first);

    // zstd and back: the same gzip bytes as the first time.
    convert_ok(&[&dir, &"--compression", &"zstd", &"-q"]);
    assert!(
        walk(&dir)
            .layer_types
            .contains("application/vnd.oci.image.layer.v1.tar+zstd")
    );
    convert_ok(&[&dir, &"--compression", &"gzip", &"-q"]);
    assert_eq!(snapshot(&dir), first);
}

#[test]
fn docker_format_round_trip_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let input = synthetic(tmp.path());
    let oci = tmp.path().join("oci");
    let docker = tmp.path().join("docker");
    let back = tmp.path().join("back");
    convert_ok(&[&input, &oci, &"-q"]);
    convert_ok(&[&input, &docker, &"--format", &"docker", &"-q"]);
    let w = walk(&docker);
    assert_eq!(
        w.manifest_types,
        BTreeSet::from(["application/vnd.docker.distribution.manifest.v2+json".to_string()])
    );
    assert_eq!(
        w.layer_types,
        BTreeSet::from(["application/vnd.docker.image.rootfs.diff.tar.gzip".to_string()])
    );
    let index = read_json(&docker.join("index.json"));
    let manifest = blob_json(&docker, index["manifests"][0]["digest"].as_str().unwrap());
    assert_eq!(
        manifest["config"]["mediaType"],
        json!("application/vnd.docker.container.image.v1+json")
    );
    // Docker → OCI gives back exactly the OCI conversion.
    convert_ok(&[&docker, &back, &"-q"]);
    assert_eq!(
        snapshot(&back).get("index.json"),
        snapshot(&oci).get("index.json")
    );

    // Uncompressed layers cannot be described in Docker schema 2.
    let refused = tmp.path().join("refused");
    let out = convert(&[
        &input,
        &refused,
        &"--format",
        &"docker",
        &"--compression",
        &"none",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Docker schema 2") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!refused.exists());
    // A Docker image kept in its format cannot lose its compression either.
    let out = convert(&[
        &docker,
        &refused,
        &"--format",
        &"keep",
        &"--compression",
        &"none",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("uncompressed"));

    let out = convert(&[&input, &"--level", &"13"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_wrong_diff_id_fails_and_leaves_the_layout_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bad");
    // Two small layers (converted side by side), the second one with a wrong diff_id.
    let layers = vec![
        b"a first layer".to_vec(),
        b"not really a tar, but bytes".to_vec(),
    ];
    make_layout(
        &dir,
        &layers,
        Some(vec![
            sha256_digest(&layers[0]),
            sha256_digest(b"something else"),
        ]),
        OCI_LAYER,
    );
    let before = snapshot(&dir);
    let out = convert(&[&dir]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("diff_id") && err.contains("big:1") && err.contains("layer 1"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // index.json and the old blobs are untouched (a new blob may have been written, unreferenced).
    let after = snapshot(&dir);
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{k}");
    }
}

#[test]
fn a_truncated_layer_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = make_tar(tmp.path(), 3, 1);
    let gz = Command::new("sh")
        .arg("-c")
        .arg("gzip -c")
        .stdin(
            std::fs::File::open({
                let p = tmp.path().join("l.tar");
                std::fs::write(&p, &tar).unwrap();
                p
            })
            .unwrap(),
        )
        .output()
        .unwrap()
        .stdout;
    let truncated = gz[..gz.len() - 100].to_vec();
    let dir = tmp.path().join("trunc");
    make_layout(
        &dir,
        &[truncated],
        Some(vec![sha256_digest(&tar)]),
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let out = convert(&[&dir, &tmp.path().join("out"), &"--compression", &"zstd"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("truncated"), "{err}");
    // Index of the output was never written with the broken image.
    let idx = read_json(&tmp.path().join("out/index.json"));
    assert_eq!(idx["manifests"], json!([]));
}

#[test]
fn image_selection_and_archive_input() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = real_tool_fixtures();
    let dir = tmp.path().join("two");
    copy_dir(
        &fixtures.join("generated-local/skopeo-1.9.3/skopeo-oci-layout-2images"),
        &dir,
    );
    let before = read_json(&dir.join("index.json"));
    let out = convert_ok(&[
        &dir,
        &"--image",
        &"test_image_3",
        &"--compression",
        &"zstd",
        &"--json",
    ]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["images"].as_array().unwrap().len(), 1);
    assert_eq!(summary["images"][0]["name"], json!("test_image_3"));
    let after = read_json(&dir.join("index.json"));
    assert_eq!(
        after["manifests"][0], before["manifests"][0],
        "unselected entry untouched"
    );
    assert_ne!(
        after["manifests"][1]["digest"],
        before["manifests"][1]["digest"]
    );
    walk(&dir);

    let out = convert(&[&dir, &"--image", &"nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("test_image_1"));

    // Any archive unpack reads: unpacked into OUT and converted there.
    let archive =
        fixtures.join("google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar");
    let out_dir = tmp.path().join("from-archive");
    convert_ok(&[&archive, &out_dir, &"--compression", &"zstd", &"-q"]);
    let w = walk(&out_dir);
    assert_eq!(w.configs.len(), 2);
    assert_eq!(
        w.layer_types,
        BTreeSet::from(["application/vnd.oci.image.layer.v1.tar+zstd".to_string()])
    );
    // The uncompressed layers unpack wrote (digest == diff_id) were removed after the conversion.
    for config in &w.configs {
        for diff_id in blob_json(&out_dir, config)["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
        {
            let path = blob(&out_dir, diff_id.as_str().unwrap());
            assert!(!path.exists(), "{} was left behind", path.display());
        }
    }
}

#[test]
fn source_date_epoch_clamps_layers_and_config() {
    if !have_tool("gzip") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dated");
    let layers = vec![make_tar_at(tmp.path(), 4, 2, 1_700_000_000)];
    make_layout(&dir, &layers, None, OCI_LAYER);
    let old_config = walk(&dir).configs;
    let mut snapshots = Vec::new();
    for run in 0..2 {
        let out = tmp.path().join(format!("clamped-{run}"));
        let res = convert_ok(&[&dir, &out, &"--source-date-epoch", &"1000000000", &"--json"]);
        let summary: Value = serde_json::from_slice(&res.stdout).unwrap();
        assert_eq!(summary["configsRewritten"], json!(1));
        assert!(summary["layers"][0]["newDiffId"].is_string());
        // Layers decompress to the config's new diff_ids (walk checks), the image ID changed.
        let w = walk(&out);
        assert_ne!(w.configs, old_config);
        let config = blob_json(&out, w.configs.iter().next().unwrap());
        assert_eq!(config["created"], json!("2001-09-09T01:46:40Z"));
        assert_eq!(
            config["history"][0]["created"],
            json!("2001-09-09T01:46:40Z")
        );
        assert_eq!(config["history"][0]["created_by"], json!("test"));
        snapshots.push(snapshot(&out));
    }
    assert_eq!(snapshots[0], snapshots[1], "not reproducible");
    // The system's tar sees the clamped times.
    let out = tmp.path().join("clamped-0");
    let index = read_json(&out.join("index.json"));
    let manifest = blob_json(&out, index["manifests"][0]["digest"].as_str().unwrap());
    let layer = blob(&out, manifest["layers"][0]["digest"].as_str().unwrap());
    let tar_path = tmp.path().join("layer.tar");
    std::fs::write(&tar_path, system_decompress(&layer, "gzip")).unwrap();
    let listing = Command::new("tar")
        .args(["--utc", "-tvf"])
        .arg(&tar_path)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("2001-09-09 01:46") && !listing.contains("2023-"),
        "{listing}"
    );
}

/// Every archive fixture that unpacks: unpacked as it is and converted to each compression (via
/// convert's archive input), the images keep their configs, layers decompress to their diff_ids,
/// and skopeo accepts what it accepted before conversion.
#[test]
fn every_unpacked_archive_fixture_converts() {
    let skopeo = have_tool("skopeo");
    if !(have_tool("gzip") && have_tool("zstd")) {
        return;
    }
    let fixtures = real_tool_fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let archives = [
        "anchore-stereoscope/pkg/image/oci/testdata/valid-oci.tar",
        "containers-image/docker/archive/fixtures/almostempty.tar",
        "generated-local/podman-4.3.1/podman-docker-archive-multi.tar",
        "generated-local/podman-4.3.1/podman-docker-archive-whiteouts.tar",
        "generated-local/podman-4.3.1/podman-oci-archive.tar",
        "generated-local/skopeo-1.9.3/skopeo-oci-archive.tar",
        "google-go-containerregistry/pkg/v1/mutate/testdata/whiteout_dir.tar",
        "google-go-containerregistry/pkg/v1/mutate/testdata/whiteout_image.tar",
        "google-go-containerregistry/pkg/v1/tarball/testdata/foreign.tar",
        "google-go-containerregistry/pkg/v1/tarball/testdata/hello-world-v25.tar",
        "google-go-containerregistry/pkg/v1/tarball/testdata/sparse_foreign.tar",
        "google-go-containerregistry/pkg/v1/tarball/testdata/test_bundle.tar",
        "wagoodman-dive/.data/test-docker-image.tar",
        "wagoodman-dive/.data/test-kaniko-image.tar",
        "wagoodman-dive/.data/test-oci-estargz-image.tar",
        "wagoodman-dive/.data/test-oci-zstd-image.tar",
    ];
    for (n, rel) in archives.iter().enumerate() {
        let archive = fixtures.join(rel);
        assert!(archive.is_file(), "fixture {} missing", archive.display());
        let plain = tmp.path().join(format!("{n}-unpacked"));
        let out = Command::new(env!("CARGO_BIN_EXE_layerlift-unpack"))
            .arg(&archive)
            .arg(&plain)
            .arg("-q")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "unpack {rel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let before = walk(&plain);
        let accepted: Vec<(String, bool)> = refs(&plain)
            .into_iter()
            .map(|r| {
                let ok = skopeo && skopeo_accepts(&plain, &r, tmp.path());
                (r, ok)
            })
            .collect();
        for compression in ["gzip", "zstd", "none"] {
            let dir = tmp.path().join(format!("{n}-{compression}"));
            convert_ok(&[&archive, &dir, &"--compression", &compression, &"-q"]);
            let after = walk(&dir);
            assert_eq!(
                after.configs, before.configs,
                "{rel} {compression}: image IDs changed"
            );
            for t in &after.layer_types {
                let foreign = t.contains("foreign") || t.contains("nondistributable");
                let want = match compression {
                    "none" => t.ends_with(".tar"),
                    c => t.ends_with(c),
                };
                assert!(foreign || want, "{rel} {compression}: layer type {t}");
            }
            for (r, ok) in &accepted {
                if *ok {
                    assert!(
                        skopeo_accepts(&dir, r, tmp.path()),
                        "skopeo rejects {rel} {compression} {r}"
                    );
                }
            }
        }
    }
}
