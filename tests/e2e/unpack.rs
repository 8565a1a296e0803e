//! `layerlift-unpack` end to end: every real-tool fixture, every generated one, compressed wrappers,
//! pipes, `--list`, image selection, adding to a layout, and bad input. Layouts are checked by
//! [`crate::verify`] (independent code) and by skopeo and umoci.

use crate::fixtures::{GENERATED_OK, REAL_TOOL_OK, generated, real_tool};
use crate::verify;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const UNPACK: &str = env!("CARGO_BIN_EXE_layerlift-unpack");

pub fn unpack(args: &[&str]) -> Output {
    Command::new(UNPACK)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run layerlift-unpack")
}

fn unpack_ok(archive: &Path, dir: &Path) -> Output {
    let out = unpack(&["-q", archive.to_str().unwrap(), dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "unpack {} failed: {}",
        archive.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Assert a failure the way users need it: exit 1, one line naming the file and the problem, no
/// panic, nothing written.
fn unpack_fails(archive: &Path, expect: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let out = unpack(&[archive.to_str().unwrap(), dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}: {stderr}",
        archive.display()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(archive.to_str().unwrap()),
        "names the archive: {stderr}"
    );
    assert!(stderr.contains(expect), "expected `{expect}` in: {stderr}");
    // Nothing was written: not the layout, nothing beside it.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // Into an existing layout: it is left as it was.
    let existing = tmp.path().join("existing");
    unpack_ok(
        &real_tool("wagoodman-dive/.data/test-oci-gzip-image.tar"),
        &existing,
    );
    let before = index_refs(&existing);
    let blobs_before = std::fs::read_dir(existing.join("blobs/sha256"))
        .unwrap()
        .count();
    let out = unpack(&[archive.to_str().unwrap(), existing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(index_refs(&existing), before, "index.json untouched");
    assert_eq!(
        std::fs::read_dir(existing.join("blobs/sha256"))
            .unwrap()
            .count(),
        blobs_before,
        "no blob published"
    );
    stderr
}

fn index_refs(dir: &Path) -> Vec<(String, Option<String>, String)> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["digest"].as_str().unwrap().to_string(),
                d["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .map(str::to_string),
                d["mediaType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// skopeo and umoci must accept every image the layout names. skopeo 1.9's `oci:` transport only
/// looks at OCI media types in index.json (a containerd-store save's Docker manifest list is
/// skipped there), and umoci only reads image manifests with an image config.
fn tools_accept(dir: &Path) {
    for (digest, name, media_type) in index_refs(dir) {
        let Some(name) = name else { continue };
        if !media_type.starts_with("application/vnd.oci.") {
            continue;
        }
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", &format!("oci:{}:{name}", dir.display())])
            .output()
            .expect("skopeo is installed (scripts/install-test-deps.sh)");
        assert!(
            out.status.success(),
            "skopeo inspect {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&out.stdout))
            ),
            digest
        );
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json" {
            let out = Command::new("umoci")
                .args(["stat", "--image", &format!("{}:{name}", dir.display())])
                .output()
                .expect("umoci is installed (scripts/install-test-deps.sh)");
            assert!(
                out.status.success(),
                "umoci stat {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Config digest and diff_ids as skopeo reads a docker-archive image (`@N`), copied to a `dir:`
/// (skopeo re-serialises the config when it converts to OCI, so `oci:` would not keep the image ID).
fn skopeo_reading(archive: &Path, position: usize) -> Option<(String, Vec<String>)> {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("skopeo")
        .args([
            "copy",
            "-q",
            &format!("docker-archive:{}:@{position}", archive.display()),
            &format!("dir:{}", tmp.path().display()),
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("manifest.json")).unwrap()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let config =
        std::fs::read(tmp.path().join(config_digest.trim_start_matches("sha256:"))).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    Some((config_digest, diff_ids))
}

const REAL_TOOL_BAD: &[(&str, &str)] = &[
    (
        "google-go-containerregistry/pkg/v1/tarball/testdata/null_manifest.tar",
        "manifest.json: is `null`",
    ),
    (
        "google-go-containerregistry/pkg/v1/tarball/testdata/no_manifest.tar",
        "Docker < 1.10",
    ),
    (
        "moby-moby/integration-cli/testdata/emptyLayer.tar",
        "Docker < 1.10",
    ),
];

#[test]
fn every_real_tool_fixture_unpacks_to_a_layout_skopeo_and_umoci_accept() {
    for (rel, entries) in REAL_TOOL_OK {
        let archive = real_tool(rel);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("oci");
        unpack_ok(&archive, &dir);
        let refs = index_refs(&dir);
        assert_eq!(refs.len(), *entries, "{rel}: index.json entries {refs:?}");
        verify::layout(&dir);
        tools_accept(&dir);
    }
}

#[test]
fn real_tool_negative_fixtures_fail_as_provenance_predicts() {
    for (rel, expect) in REAL_TOOL_BAD {
        unpack_fails(&real_tool(rel), expect);
    }
}

/// skopeo's reading of each docker-archive (config digest, diff_ids) equals ours. skopeo 1.9 cannot
/// read test_link.tar's second image (its 0-byte symlinked layer, PROVENANCE.md): that one is
/// compared with podman's re-save, which holds the same image.
#[test]
fn config_digests_and_diff_ids_agree_with_skopeo() {
    let archives = [
        (
            "google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar",
            vec![0],
        ),
        (
            "google-go-containerregistry/pkg/v1/tarball/testdata/test_bundle.tar",
            vec![0, 1],
        ),
        (
            "google-go-containerregistry/pkg/v1/tarball/testdata/hello-world-v25.tar",
            vec![0],
        ),
        (
            "google-go-containerregistry/pkg/v1/tarball/testdata/foreign.tar",
            vec![0],
        ),
        (
            "google-go-containerregistry/pkg/v1/mutate/testdata/whiteout_dir.tar",
            vec![0],
        ),
        (
            "google-go-containerregistry/pkg/v1/mutate/testdata/whiteout_image.tar",
            vec![0],
        ),
        (
            "containers-image/docker/archive/fixtures/almostempty.tar",
            vec![0],
        ),
        ("wagoodman-dive/.data/test-docker-image.tar", vec![0]),
        ("wagoodman-dive/.data/test-kaniko-image.tar", vec![0]),
        (
            "generated-local/podman-4.3.1/podman-docker-archive-single.tar",
            vec![0],
        ),
        (
            "generated-local/podman-4.3.1/podman-docker-archive-multi.tar",
            vec![0, 1],
        ),
        (
            "generated-local/podman-4.3.1/podman-docker-archive-whiteouts.tar",
            vec![0],
        ),
    ];
    for (rel, positions) in archives {
        let archive = real_tool(rel);
        for n in positions {
            let theirs = skopeo_reading(&archive, n)
                .unwrap_or_else(|| panic!("skopeo cannot read {rel} @{n}"));
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("oci");
            let out = unpack(&[
                "-q",
                "--image",
                &format!("@{n}"),
                archive.to_str().unwrap(),
                dir.to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "{rel}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let ours = verify::layout(&dir);
            assert_eq!(ours.len(), 1, "{rel} @{n}");
            assert_eq!(
                (ours[0].config.clone(), ours[0].diff_ids.clone()),
                theirs,
                "{rel} @{n}"
            );
        }
    }
    // The image skopeo cannot read from Docker's archive is the same image podman re-saved.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let link = real_tool("google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar");
    let out = unpack(&[
        "-q",
        "--image",
        "bazel/v1/tarball:test_image_3",
        link.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let theirs = skopeo_reading(
        &real_tool("generated-local/podman-4.3.1/podman-docker-archive-single.tar"),
        0,
    )
    .unwrap();
    let ours = verify::layout(&dir);
    assert_eq!((ours[0].config.clone(), ours[0].diff_ids.clone()), theirs);
}

/// The same image written by Docker 18 and by podman gives byte-identical manifests.
#[test]
fn docker_and_podman_saves_of_one_image_give_the_same_manifest() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    unpack_ok(
        &real_tool("wagoodman-dive/.data/test-docker-image.tar"),
        &a.path().join("o"),
    );
    unpack_ok(
        &real_tool("generated-local/podman-4.3.1/podman-docker-archive-whiteouts.tar"),
        &b.path().join("o"),
    );
    assert_eq!(
        index_refs(&a.path().join("o"))[0].0,
        index_refs(&b.path().join("o"))[0].0
    );
}

#[test]
fn generated_fixtures_unpack_and_tools_accept_them() {
    for rel in GENERATED_OK {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("oci");
        unpack_ok(&generated(rel), &dir);
        assert!(!verify::layout(&dir).is_empty(), "{rel}: no complete image");
        tools_accept(&dir);
    }
}

/// The containerd-store save keeps its original index (other platforms' blobs absent, reported) and
/// its compressed layers byte for byte.
#[test]
fn containerd_store_save_keeps_the_multi_platform_index() {
    let archive = generated("synthetic/containerd-store-save.tar");
    let list = unpack(&["--list", "--json", archive.to_str().unwrap()]);
    assert!(list.status.success());
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["origin"], "docker-containerd");
    let img = &v["images"][0];
    assert!(
        img["descriptor"]["mediaType"]
            .as_str()
            .unwrap()
            .contains("manifest.list"),
        "{img}"
    );
    let text = img["defects"].to_string();
    assert!(
        text.contains("not in the archive"),
        "absent platform reported: {text}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    unpack_ok(&archive, &dir);
    let refs = index_refs(&dir);
    assert_eq!(
        refs[0].0,
        img["descriptor"]["digest"].as_str().unwrap(),
        "original index digest kept"
    );
}

#[test]
fn compressed_archives_give_the_same_layout_as_plain_ones() {
    for (plain, base) in [
        (
            "google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar",
            "test_link.tar",
        ),
        (
            "generated-local/podman-4.3.1/podman-docker-archive-multi.tar",
            "podman-docker-archive-multi.tar",
        ),
        (
            "google-go-containerregistry/pkg/v1/tarball/testdata/hello-world-v25.tar",
            "hello-world-v25.tar",
        ),
        (
            "wagoodman-dive/.data/test-oci-zstd-image.tar",
            "test-oci-zstd-image.tar",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        unpack_ok(&real_tool(plain), &tmp.path().join("plain"));
        let want = index_refs(&tmp.path().join("plain"));
        for ext in ["gz", "zst", "bz2", "xz"] {
            let dir = tmp.path().join(ext);
            unpack_ok(&generated(&format!("compressed/{base}.{ext}")), &dir);
            assert_eq!(index_refs(&dir), want, "{base}.{ext}");
            verify::layout(&dir);
        }
    }
    // Negative fixtures fail the same way when compressed.
    unpack_fails(
        &generated("compressed/null_manifest.tar.gz"),
        "manifest.json: is `null`",
    );
    unpack_fails(
        &generated("compressed/no_manifest.tar.zst"),
        "Docker < 1.10",
    );
}

#[test]
fn pipe_gives_the_same_layout_as_the_file() {
    let archive = real_tool("generated-local/podman-4.3.1/podman-docker-archive-whiteouts.tar");
    let tmp = tempfile::tempdir().unwrap();
    unpack_ok(&archive, &tmp.path().join("file"));
    let dir = tmp.path().join("pipe");
    let out = Command::new(UNPACK)
        .args(["-q", "-", dir.to_str().unwrap()])
        .stdin(std::fs::File::open(&archive).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(index_refs(&dir), index_refs(&tmp.path().join("file")));
    let blobs = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    assert_eq!(blobs(&dir), blobs(&tmp.path().join("file")));
    // A compressed pipe too.
    let dir = tmp.path().join("pipe-gz");
    let out = Command::new(UNPACK)
        .args(["-q", "-", dir.to_str().unwrap()])
        .stdin(
            std::fs::File::open(generated(
                "compressed/podman-docker-archive-whiteouts.tar.gz",
            ))
            .unwrap(),
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(index_refs(&dir), index_refs(&tmp.path().join("file")));
}

#[test]
fn list_shows_symlinks_and_their_targets_and_writes_nothing() {
    let archive = real_tool("google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(UNPACK)
        .current_dir(tmp.path())
        .args(["--list", archive.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let link = "b159278ac0c8813245b6c3b22cbbe7abefe3b2ec3fac6c7e87138811e1ef2a88/layer.tar";
    let target = "../6e77476643c3155b1e9ae07dd5a4c8288bdb6590c131c222b7a3f277dec1e266/layer.tar";
    assert!(text.contains(&format!("{link} -> {target}")), "{text}");
    assert!(text.contains("bazel/v1/tarball:test_image_3"), "{text}");
    assert!(text.contains("Docker 1.10–24"), "era: {text}");
    assert!(
        text.contains("diff") || text.contains("sha256:8897395fd26d"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "--list writes nothing"
    );

    let out = unpack(&["--list", "--json", archive.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "docker-archive");
    assert_eq!(v["links"][0]["path"], link);
    assert_eq!(v["links"][0]["target"], target);
    assert_eq!(v["images"].as_array().unwrap().len(), 2);
    let layer = &v["images"][1]["manifests"][0]["layers"][0];
    assert_eq!(layer["path"], link);
    assert_eq!(
        layer["diff_id"],
        "sha256:8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17"
    );
}

#[test]
fn image_selection_and_adding_to_a_layout() {
    let archive = real_tool("google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let a = archive.to_str().unwrap();
    let d = dir.to_str().unwrap();
    assert!(unpack(&["-q", "--image", "@1", a, d]).status.success());
    assert_eq!(index_refs(&dir).len(), 1);
    assert_eq!(
        index_refs(&dir)[0].1.as_deref(),
        Some("bazel/v1/tarball:test_image_3")
    );
    // By full name, into the same layout: added, not replacing.
    assert!(
        unpack(&[
            "-q",
            "--image",
            "docker.io/bazel/v1/tarball:test_image_1",
            a,
            d
        ])
        .status
        .success()
    );
    assert_eq!(index_refs(&dir).len(), 2);
    // Again: the same names are replaced, not duplicated; another archive adds its images.
    assert!(unpack(&["-q", a, d]).status.success());
    assert_eq!(index_refs(&dir).len(), 2);
    unpack_ok(
        &real_tool("wagoodman-dive/.data/test-oci-gzip-image.tar"),
        &dir,
    );
    assert_eq!(index_refs(&dir).len(), 3);
    verify::layout(&dir);
    // Unknown selections fail with the name.
    let out = unpack(&["--image", "nope:1", a, d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope:1"));
    // Usage errors exit 2.
    assert_eq!(unpack(&[a]).status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// Bad input, built here with the tar crate.

struct Tar {
    builder: tar::Builder<Vec<u8>>,
}

impl Tar {
    fn new() -> Self {
        Tar {
            builder: tar::Builder::new(Vec::new()),
        }
    }
    fn file(mut self, path: &str, data: &[u8]) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // Write the name bytes directly so that `..` and absolute names reach the archive.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }
    fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_link_name(target).unwrap();
        h.set_path(path).unwrap();
        h.set_cksum();
        self.builder.append(&h, &[][..]).unwrap();
        self
    }
    fn bytes(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn layer_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_path("hello.txt").unwrap();
    h.set_cksum();
    b.append(&h, &b"hello"[..]).unwrap();
    b.into_inner().unwrap()
}

fn config_for(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// A minimal valid docker save with one layer; `edit` may change it before it is written.
fn docker_save(layer_path: &str, layer: &[u8], diff_id: &str) -> Tar {
    let config = config_for(&[format!("sha256:{diff_id}")]);
    let manifest = serde_json::json!([{"Config": format!("{}.json", sha(&config)), "RepoTags": ["bad:1"], "Layers": [layer_path]}]);
    Tar::new()
        .file(layer_path, layer)
        .file(&format!("{}.json", sha(&config)), &config)
        .file("manifest.json", &serde_json::to_vec(&manifest).unwrap())
}

fn write(tmp: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = tmp.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_valid_synthetic_archive_unpacks() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = layer_tar();
    let good = write(
        tmp.path(),
        "good.tar",
        &docker_save("l/layer.tar", &layer, &sha(&layer)).bytes(),
    );
    unpack_ok(&good, &tmp.path().join("oci"));
    assert_eq!(verify::layout(&tmp.path().join("oci")).len(), 1);
}

#[test]
fn bad_archives_fail_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let layer = layer_tar();
    let diff_id = sha(&layer);
    let good = docker_save("l/layer.tar", &layer, &diff_id).bytes();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.tar",
            good[..good.len() - 1536].to_vec(),
            "truncated",
        ),
        ("truncated-mid-entry.tar", good[..700].to_vec(), "truncated"),
        (
            "corrupt.tar.gz",
            {
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut gz, &good).unwrap();
                let mut bytes = gz.finish().unwrap();
                let mid = bytes.len() / 2;
                for b in &mut bytes[mid..mid + 16] {
                    *b ^= 0x5a;
                }
                bytes
            },
            "gzip",
        ),
        ("not-a-tar.bin", vec![7u8; 4096], "not a tar archive"),
        (
            "dotdot.tar",
            docker_save("../evil/layer.tar", &layer, &diff_id).bytes(),
            "escapes the archive",
        ),
        (
            "absolute.tar",
            docker_save("/etc/layer.tar", &layer, &diff_id).bytes(),
            "absolute path",
        ),
        (
            "symlink-escape.tar",
            docker_save("l/layer.tar", &layer, &diff_id)
                .symlink("m/layer.tar", "../../etc/passwd")
                .bytes(),
            "points outside the archive",
        ),
        (
            "mismatch.tar",
            docker_save("l/layer.tar", &layer, &"0".repeat(64)).bytes(),
            "diff_id mismatch",
        ),
        (
            "missing-layer.tar",
            {
                let config = config_for(&[format!("sha256:{diff_id}")]);
                let manifest = serde_json::json!([{"Config": "c.json", "RepoTags": [], "Layers": ["gone/layer.tar"]}]);
                Tar::new()
                    .file("c.json", &config)
                    .file("manifest.json", &serde_json::to_vec(&manifest).unwrap())
                    .bytes()
            },
            "is not in the archive",
        ),
        (
            "malformed.tar",
            Tar::new().file("manifest.json", b"[{\"Config\": ").bytes(),
            "manifest.json",
        ),
        (
            "wrong-shape.tar",
            Tar::new()
                .file("manifest.json", b"[{\"Layers\": 5}]")
                .bytes(),
            "manifest.json",
        ),
        (
            "duplicate.tar",
            docker_save("l/layer.tar", &layer, &diff_id)
                .file("l/layer.tar", &layer)
                .bytes(),
            "duplicate entry",
        ),
        ("empty.tar", vec![0u8; 1024], "not a saved image archive"),
        ("zero-bytes.tar", Vec::new(), "empty (0 bytes)"),
        (
            "config-name-lies.tar",
            {
                let config = config_for(&[format!("sha256:{diff_id}")]);
                let manifest = serde_json::json!([{"Config": format!("{}.json", "a".repeat(64)), "Layers": ["l.tar"]}]);
                Tar::new()
                    .file("l.tar", &layer)
                    .file(&format!("{}.json", "a".repeat(64)), &config)
                    .file("manifest.json", &serde_json::to_vec(&manifest).unwrap())
                    .bytes()
            },
            "digest mismatch",
        ),
    ];
    for (name, bytes, expect) in cases {
        let path = write(t, name, &bytes);
        unpack_fails(&path, expect);
    }

    unpack_fails(&t.join("does-not-exist.tar"), "cannot read the archive");

    // Symlink loop: the manifest names a link that never reaches a file.
    let config = config_for(&[format!("sha256:{diff_id}")]);
    let manifest = serde_json::json!([{"Config": "c.json", "Layers": ["a/layer.tar"]}]);
    let looped = Tar::new()
        .symlink("a/layer.tar", "../b/layer.tar")
        .symlink("b/layer.tar", "../a/layer.tar")
        .file("c.json", &config)
        .file("manifest.json", &serde_json::to_vec(&manifest).unwrap())
        .bytes();
    unpack_fails(&write(t, "loop.tar", &looped), "symlink loop");

    // A PAX header that claims far more than the archive holds.
    let mut huge = Vec::new();
    {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(1 << 40);
        h.set_path("././@PaxHeader").unwrap();
        h.set_cksum();
        huge.extend_from_slice(h.as_bytes());
        huge.extend_from_slice(&[b'9'; 512]);
    }
    unpack_fails(&write(t, "huge-header.tar", &huge), "truncated");
}

/// A platform left out of a containerd-store save is only a note, until it is the one chosen.
#[test]
fn platform_choice_narrows_an_index_and_refuses_absent_platforms() {
    let archive = generated("synthetic/containerd-store-save.tar");
    let a = archive.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let out = unpack(&["-q", "--platform", "linux/amd64", a, dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refs = index_refs(&dir);
    assert_eq!(refs.len(), 1);
    assert!(
        refs[0].2.contains("manifest.v2"),
        "the amd64 manifest, not the list: {refs:?}"
    );
    assert_eq!(refs[0].1.as_deref(), Some("latest"), "names kept");
    assert_eq!(verify::layout(&dir).len(), 1);
    unpack_fails_with(
        &["--platform", "linux/arm64"],
        &archive,
        "platform linux/arm64: its manifest is not in the archive",
    );
    unpack_fails_with(
        &["--platform", "linux/s390x"],
        &archive,
        "no manifest for platform linux/s390x",
    );
}

fn unpack_fails_with(flags: &[&str], archive: &Path, expect: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let mut args = flags.to_vec();
    args.extend([archive.to_str().unwrap(), dir.to_str().unwrap()]);
    let out = unpack(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expect), "expected `{expect}` in: {stderr}");
    assert!(!dir.exists(), "nothing written");
}

/// `--compression` compresses layers while the archive is read: the layout holds no uncompressed
/// layer, configs (image IDs) are unchanged, and the result is byte-identical to unpacking and then
/// running `layerlift-convert` (the encoders are deterministic).
#[test]
fn compressing_on_the_way_in_equals_unpack_then_convert() {
    let convert = env!("CARGO_BIN_EXE_layerlift-convert");
    for rel in [
        "google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar",
        "generated-local/podman-4.3.1/podman-docker-archive-whiteouts.tar",
        "wagoodman-dive/.data/test-oci-uncompressed-image.tar",
        "wagoodman-dive/.data/test-kaniko-image.tar",
    ] {
        let archive = real_tool(rel);
        // Layers already compressed are kept as they are (kaniko's are gzip): convert would turn
        // them into zstd, unpack does not re-encode.
        let codecs: &[&str] = if rel.contains("kaniko") {
            &["gzip"]
        } else {
            &["gzip", "zstd"]
        };
        for &c in codecs {
            let tmp = tempfile::tempdir().unwrap();
            let one = tmp.path().join("one-pass");
            let out = unpack(&[
                "-q",
                "--compression",
                c,
                archive.to_str().unwrap(),
                one.to_str().unwrap(),
            ]);
            assert!(
                out.status.success(),
                "{rel}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let two = tmp.path().join("two-steps");
            unpack_ok(&archive, &two);
            let plain = verify::layout(&two);
            let out = Command::new(convert)
                .args(["-q", "--compression", c, two.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "convert {rel}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let images = verify::layout(&one);
            assert_eq!(
                images
                    .iter()
                    .map(|i| (&i.config, &i.diff_ids))
                    .collect::<Vec<_>>(),
                plain
                    .iter()
                    .map(|i| (&i.config, &i.diff_ids))
                    .collect::<Vec<_>>(),
                "{rel}: configs and diff_ids unchanged"
            );
            assert_eq!(
                index_refs(&one),
                index_refs(&two),
                "{rel} {c}: same manifests as unpack + convert"
            );
            for entry in std::fs::read_dir(one.join("blobs/sha256")).unwrap() {
                let bytes = std::fs::read(entry.unwrap().path()).unwrap();
                let is_tar = bytes.len() >= 512 && &bytes[257..262] == b"ustar";
                assert!(!is_tar, "{rel} {c}: an uncompressed layer was written");
            }
        }
    }
}
