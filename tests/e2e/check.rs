//! `layerlift check DIR`: valid layouts pass; corrupt, missing or inconsistent blobs fail with the
//! problem named.

use crate::fixtures::real_tool;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

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

/// `layerlift check` refuses the descriptor fan-out bomb (an index of 50,000 entries naming one
/// manifest of 50,000 layers) with a clear error, in bounded memory and time.
#[test]
fn check_refuses_a_descriptor_fan_out_bomb() {
    if !crate::util::have_tool("prlimit") {
        eprintln!("skipped: prlimit is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bomb");
    crate::bad_input::fanout_bomb(&dir);
    let (code, text, took) =
        crate::bad_input::run_bounded(LAYERLIFT, &["check".as_ref(), dir.as_os_str()]);
    assert!(
        took < Duration::from_secs(60),
        "still running after {took:?}"
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("fan out to more than"), "{text}");
}

/// A large valid layout passes: more than 65,536 files (70,000 blobs besides its images), and
/// JSON documents adding up to more than 64 MiB (twenty images whose configs are 7 MiB each: at
/// most ten fit in 64 MiB, whichever order they are read in).
#[test]
fn large_valid_layouts_pass() {
    use crate::util::{layer_tar, sha256_digest};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big");
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256_digest(bytes);
        std::fs::write(blobs.join(&d[7..]), bytes).unwrap();
        d
    };
    let layer = layer_tar("f", 3, 64);
    let layer_digest = put(&layer);
    let mut entries = Vec::new();
    for i in 0..20 {
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"big": format!("{i}{}", "x".repeat(7 << 20))}},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        })
        .to_string();
        let config_digest = put(config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer.len()}],
        })
        .to_string();
        let manifest_digest = put(manifest.as_bytes());
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": format!("i{i}")},
        }));
    }
    for i in 0..70_000 {
        put(format!("blob {i}").as_bytes());
    }
    let index = serde_json::json!({"schemaVersion": 2, "manifests": entries});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let out = check(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok: 20 image(s), 70041 blob(s)"),
        "{stdout}"
    );
}

/// Blobs and descriptors under a digest algorithm other than sha256 are reported, not ignored.
#[test]
fn other_digest_algorithms_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = unpacked(tmp.path());
    let sha512 = "ab".repeat(64);
    std::fs::create_dir_all(dir.join("blobs/sha512")).unwrap();
    std::fs::write(dir.join("blobs/sha512").join(&sha512), b"some blob").unwrap();
    let out = check(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "blobs/sha512/{sha512}: digest algorithm sha512 is not supported"
        )),
        "{stdout}"
    );
    std::fs::remove_dir_all(dir.join("blobs/sha512")).unwrap();
    // A descriptor naming a sha512 digest.
    let index = std::fs::read_to_string(dir.join("index.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&index).unwrap();
    value["manifests"][0]["digest"] = format!("sha512:{sha512}").into();
    std::fs::write(dir.join("index.json"), value.to_string()).unwrap();
    let out = check(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("sha512"), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "{text}");
}
