//! `layerlift check DIR`: valid layouts pass; corrupt, missing or inconsistent blobs fail with the
//! problem named.

use crate::fixtures::real_tool;
use std::path::Path;
use std::process::{Command, Output};

const LAYERLIFT: &str = env!("CARGO_BIN_EXE_layerlift");

fn check(dir: &Path) -> Output {
    Command::new(LAYERLIFT)
        .arg("check")
        .arg(dir)
        .output()
        .unwrap()
}

fn unpacked(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("oci");
    let archive = real_tool("google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar");
    let out = Command::new(crate::unpack::UNPACK)
        .args(["-q"])
        .arg(archive)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    dir
}

fn blob(dir: &Path, digest: &str) -> std::path::PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn valid_layouts_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let out = check(&unpacked(tmp.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 2 image(s), 6 blob(s)"));
    for rel in [
        "regclient-regclient/testdata/testrepo",
        "anchore-stereoscope/pkg/image/oci/testdata/multiplatform_oci_dir",
    ] {
        let out = check(&real_tool(rel));
        assert!(
            out.status.success(),
            "{rel}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn broken_layouts_fail_naming_the_problem() {
    // A layer blob whose bytes changed.
    let tmp = tempfile::tempdir().unwrap();
    let dir = unpacked(tmp.path());
    let layer = "sha256:6b617a2706576ed038acdc3aa668cac62010386a5a3d227d83aada32085c9f29";
    let mut bytes = std::fs::read(blob(&dir, layer)).unwrap();
    bytes[600] ^= 1;
    std::fs::write(blob(&dir, layer), bytes).unwrap();
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not what its name says"));

    // A missing layer.
    let tmp = tempfile::tempdir().unwrap();
    let dir = unpacked(tmp.path());
    std::fs::remove_file(blob(&dir, layer)).unwrap();
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not in the archive"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // index.json naming a manifest that is not there.
    let tmp = tempfile::tempdir().unwrap();
    let dir = unpacked(tmp.path());
    let index = std::fs::read_to_string(dir.join("index.json")).unwrap();
    let first: serde_json::Value = serde_json::from_str(&index).unwrap();
    let digest = first["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(blob(&dir, &digest)).unwrap();
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(1));

    // Not a layout at all.
    let out = check(tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("oci-layout"));
}
