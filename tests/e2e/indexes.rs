//! The push policies for multi-platform indexes, on the containerd-store save with an absent
//! platform and BuildKit attestation manifests (`synthetic/containerd-store-save-attest.tar`:
//! linux/amd64 present, linux/arm64 absent, an attestation manifest for each, the arm64 one absent):
//! refused with the list of what is missing; `--skip-absent-platforms` pushes a new index of what is
//! present (new digest, said so); `--attestations drop` pushes a new index without attestation
//! manifests, which a registry that refuses them (the quirk proxy's `RefuseAttestations`) takes.
//! `layerlift-convert --index` refuses what cannot be one index. A layout with a signature and an
//! SBOM referrer is pushed with them, listed through the referrers tag schema (distribution 2.8 has
//! no referrers API). The same policies on images Docker 26 and BuildKit wrote are in `modern.rs`.

use crate::fixtures::generated;
use crate::util::{assert_ok, push_cmd, pushed, run, sha256_digest, tag_digest, text};
use layerlift_testkit::{Quirk, QuirkProxy, Registry};
use serde_json::Value;
use std::path::PathBuf;

fn attest_save() -> PathBuf {
    generated("synthetic/containerd-store-save-attest.tar")
}

/// The index of the save's `index.json` (its one entry).
const SAVED_INDEX: &str = "sha256:0aa5721bb06c54242ed8d6398a1300b761d3054044367def51a385ad4020c866";
/// Its linux/amd64 manifest, present in the save.
const AMD64: &str = "sha256:07e688d3b0836c4c0578aa1f8b81787ec6ca2b59364c58e2ad6038556489fc30";
/// Its linux/arm64 manifest, absent.
const ARM64: &str = "sha256:e962ce46fc55b4af3c08f4b73182b1b9df4ba6424784feee9a3964ef2320abb9";
/// The attestation manifest for amd64 (present) and for arm64 (absent).
const AMD64_ATTESTATION: &str =
    "sha256:6f00980e77bf2714e782c96b0573cc65994dca756f382354a358c8c3214db1d6";
const ARM64_ATTESTATION: &str =
    "sha256:d9cdcea5b6aca4c45bab3c3d468648ed3e4a9601583cf6c7a3a80289fd9497cb";

/// `skopeo inspect --raw` of `repo@digest` (or `repo:tag`) on `addr`; checks the bytes' digest
/// when asked by digest.
fn raw(addr: &str, reference: &str) -> Value {
    let o = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{addr}/{reference}"))
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "skopeo inspect {reference}: {err}");
    if let Some((_, digest)) = reference.split_once('@') {
        assert_eq!(sha256_digest(out.as_bytes()), digest);
    }
    serde_json::from_str(&out).unwrap()
}

fn entries(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The fixture is what the constants say (so that the tests below test something).
#[test]
fn the_fixture_lists_absent_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("oci");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_layerlift-unpack"))
        .arg(attest_save())
        .arg(&layout)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let blob = |d: &str| layout.join("blobs/sha256").join(&d["sha256:".len()..]);
    let index: Value = serde_json::from_slice(&std::fs::read(blob(SAVED_INDEX)).unwrap()).unwrap();
    assert_eq!(
        entries(&index),
        [AMD64, ARM64, AMD64_ATTESTATION, ARM64_ATTESTATION]
    );
    assert!(blob(AMD64).is_file() && blob(AMD64_ATTESTATION).is_file());
    assert!(!blob(ARM64).exists() && !blob(ARM64_ATTESTATION).exists());
}

/// Without a flag: refused, every missing entry named, the flags that would push it named,
/// nothing pushed.
#[test]
fn absent_platforms_are_refused_with_the_list() {
    let reg = Registry::anonymous();
    let mut c = push_cmd();
    c.arg(attest_save())
        .arg(format!("{}/attest:1", reg.addr()))
        .arg("--no-cache");
    let o = run(c);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let wants = [
        format!("index {SAVED_INDEX} lists 2 manifests not in"),
        format!("linux/arm64 ({ARM64})"),
        format!("attestation manifest {ARM64_ATTESTATION} (unknown/unknown)"),
        "--platform".to_string(),
        "--skip-absent-platforms".to_string(),
    ];
    for want in &wants {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(
        !reg.log().contains("\"PUT /v2/attest/manifests/"),
        "{}",
        reg.log()
    );
}

/// `--skip-absent-platforms`: a new index of the present platform and its attestation manifest
/// (the order and annotations of what is kept unchanged), under a new digest printed as the
/// pushed one and named on stderr and in `--json`.
#[test]
fn skip_absent_platforms_pushes_a_new_index_of_those_present() {
    let reg = Registry::anonymous();
    let dest = format!("{}/attest:present", reg.addr());
    let mut c = push_cmd();
    c.arg(attest_save())
        .arg(&dest)
        .args(["--no-cache", "--skip-absent-platforms"]);
    let o = run(c);
    let out = assert_ok(&o);
    let err = text(&o).1;
    let digest = pushed(&out)[0].1.clone();
    assert_ne!(digest, SAVED_INDEX);
    assert!(
        err.contains(&format!(
            "pushing a new index {digest} in place of {SAVED_INDEX} (a new digest), without: linux/arm64 ({ARM64}): not in"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("attestation manifest {ARM64_ATTESTATION}")));
    assert_eq!(tag_digest(&reg, "attest", "present"), Some(digest.clone()));
    let index = raw(&reg.addr(), &format!("attest@{digest}"));
    assert_eq!(entries(&index), [AMD64, AMD64_ATTESTATION]);
    assert_eq!(
        index["manifests"][1]["annotations"]["vnd.docker.reference.digest"],
        AMD64
    );
    raw(&reg.addr(), &format!("attest@{AMD64}"));
    raw(&reg.addr(), &format!("attest@{AMD64_ATTESTATION}"));

    // --json: the same in a `newindex` event.
    let mut c = push_cmd();
    c.arg(attest_save())
        .arg(format!("{}/attest:json", reg.addr()))
        .args(["--no-cache", "--skip-absent-platforms", "--json"]);
    let out = assert_ok(&run(c));
    let event: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "newindex")
        .unwrap_or_else(|| panic!("no newindex event: {out}"));
    assert_eq!(event["original"], SAVED_INDEX);
    assert_eq!(event["digest"], digest.as_str());
    assert_eq!(event["dropped"].as_array().unwrap().len(), 2);
}

/// `--attestations drop` with `--skip-absent-platforms`: the index left holds the amd64 manifest
/// only. A registry that refuses attestation manifests refuses the push without `drop` (at the
/// attestation manifest: nothing tagged) and takes it with `drop`.
#[test]
fn attestations_drop_for_a_registry_that_refuses_them() {
    let reg = Registry::anonymous();
    let proxy = QuirkProxy::start(reg.port(), vec![Quirk::RefuseAttestations]);
    let mut c = push_cmd();
    c.arg(attest_save())
        .arg(format!("{}/attest:keep", proxy.addr()))
        .args(["--no-cache", "--skip-absent-platforms"]);
    let o = run(c);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}{out}");
    assert!(err.contains("MANIFEST_INVALID"), "{err}");
    assert!(
        err.contains("attestation manifests are not supported"),
        "{err}"
    );
    assert_eq!(tag_digest(&reg, "attest", "keep"), None);

    let mut c = push_cmd();
    c.arg(attest_save())
        .arg(format!("{}/attest:drop", proxy.addr()))
        .args([
            "--no-cache",
            "--skip-absent-platforms",
            "--attestations",
            "drop",
        ]);
    let o = run(c);
    let out = assert_ok(&o);
    let err = text(&o).1;
    let digest = pushed(&out)[0].1.clone();
    assert!(
        err.contains(&format!(
            "attestation manifest {AMD64_ATTESTATION} (unknown/unknown): --attestations drop"
        )),
        "{err}"
    );
    assert_eq!(tag_digest(&reg, "attest", "drop"), Some(digest.clone()));
    let index = raw(&reg.addr(), &format!("attest@{digest}"));
    assert_eq!(entries(&index), [AMD64]);
    assert!(proxy.unmet().is_empty(), "{:?}", proxy.unmet());
}

/// `--platform` and `--skip-absent-platforms` contradict each other: a usage error.
#[test]
fn skip_absent_platforms_with_platform_is_a_usage_error() {
    let mut c = push_cmd();
    c.arg(attest_save()).arg("127.0.0.1:9/x:1").args([
        "--skip-absent-platforms",
        "--platform",
        "linux/amd64",
    ]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
}

/// `layerlift-convert --index NAME` refuses what cannot be one index, saying why, and leaves the
/// layout as it was: two images of one platform, an entry that is an index already, a name no
/// entry has.
#[test]
fn index_assembly_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("oci");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_layerlift-unpack"))
        .arg(crate::fixtures::real_tool(
            "google-go-containerregistry/pkg/v1/tarball/testdata/hello-world-v25.tar",
        ))
        .arg(&layout)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    // The one image (linux/arm64) twice under one name: two images of one platform.
    let path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut entry = index["manifests"][0].clone();
    entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "app:1"});
    index["manifests"] = serde_json::json!([entry.clone(), entry]);
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    let before = std::fs::read(&path).unwrap();
    let convert = |name: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_layerlift-convert"))
            .arg(&layout)
            .args(["--index", name])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o).1);
        assert_eq!(std::fs::read(&path).unwrap(), before, "index.json changed");
        text(&o).1
    };
    let err = convert("app:1");
    assert!(
        err.contains("app:1 (@0) and app:1 (@1) are both linux/arm64"),
        "{err}"
    );
    let err = convert("nothing:1");
    assert!(err.contains("--index nothing:1: no such image"), "{err}");

    // Once assembled, the entry is an index: assembling it again is refused.
    index["manifests"] = serde_json::json!([index["manifests"][0].clone()]);
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_layerlift-convert"))
        .arg(&layout)
        .args(["--index", "app:1", "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_layerlift-convert"))
        .arg(&layout)
        .args(["--index", "app:1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("not an image manifest"),
        "{}",
        text(&o).1
    );
}

// ---------------------------------------------------------------------------------------------
// Referrers

/// Write `bytes` as a blob of the layout at `dir`; its digest.
fn put_blob(dir: &std::path::Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    std::fs::write(
        dir.join("blobs/sha256").join(&digest["sha256:".len()..]),
        bytes,
    )
    .unwrap();
    digest
}

/// An artifact manifest of `artifact_type` about `subject` (a descriptor), with one layer of
/// `payload` as `layer_type`, written into the layout and added to its `index.json` without a
/// name (as cosign and oras lay them out); its digest.
fn add_referrer(
    dir: &std::path::Path,
    subject: &Value,
    artifact_type: &str,
    layer_type: &str,
    payload: &[u8],
) -> String {
    let empty = put_blob(dir, b"{}");
    let layer = put_blob(dir, payload);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": layer_type, "digest": layer, "size": payload.len()}],
        "subject": subject,
        "annotations": {"org.opencontainers.image.created": "2026-12-06T00:00:00Z"},
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = put_blob(dir, &bytes);
    let path = dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": bytes.len(),
            "artifactType": artifact_type,
        }));
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    digest
}

/// A layout of one image (hello-world-v25) with a cosign-style signature referrer: the layout, the
/// image's digest, the signature's digest and the subject descriptor.
fn signed_layout(dir: &std::path::Path) -> (PathBuf, String, String, Value) {
    let layout = dir.join("oci");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_layerlift-unpack"))
        .arg(crate::fixtures::real_tool(
            "google-go-containerregistry/pkg/v1/tarball/testdata/hello-world-v25.tar",
        ))
        .arg(&layout)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let image = index["manifests"][0].clone();
    let image_digest = image["digest"].as_str().unwrap().to_string();
    let subject = serde_json::json!({
        "mediaType": image["mediaType"],
        "digest": image_digest,
        "size": image["size"],
    });
    let signature = add_referrer(
        &layout,
        &subject,
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        format!(r#"{{"critical":{{"image":{{"docker-manifest-digest":"{image_digest}"}}}}}}"#)
            .as_bytes(),
    );
    (layout, image_digest, signature, subject)
}

/// An image with a signature referrer (cosign's layout: an artifact manifest whose `subject` is
/// the image) pushed to distribution 2.8, which has no referrers API: the image keeps its digest,
/// the signature goes up with it, and the referrers tag schema's index (`sha256-<hex>`) lists it,
/// so it can be listed back. A second push with an SBOM adds it to the same index.
#[test]
fn a_signature_referrer_is_pushed_and_listed_through_the_tag_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, image_digest, signature, subject) = signed_layout(dir.path());
    let reg = Registry::anonymous();
    let dest = format!("{}/signed:1", reg.addr());
    let mut c = push_cmd();
    c.arg(&layout).arg(&dest).arg("--no-cache");
    let o = run(c);
    let out = assert_ok(&o);
    let err = text(&o).1;
    assert_eq!(pushed(&out), [(dest.clone(), image_digest.clone())]);
    let tag = format!("sha256-{}", &image_digest["sha256:".len()..]);
    assert!(
        err.contains(&format!(
            "pushed 1 referrer(s) of {image_digest}, listed under the tag {tag}"
        )),
        "{err}"
    );
    let listed = raw(&reg.addr(), &format!("signed:{tag}"));
    assert_eq!(
        listed["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(entries(&listed), std::slice::from_ref(&signature));
    assert_eq!(
        listed["manifests"][0]["artifactType"],
        "application/vnd.dev.cosign.artifact.sig.v1+json"
    );
    let sig = raw(&reg.addr(), &format!("signed@{signature}"));
    assert_eq!(sig["subject"]["digest"], image_digest.as_str());
    raw(&reg.addr(), &format!("signed@{image_digest}"));

    // An SBOM later: the tag's index lists both.
    let sbom = add_referrer(
        &layout,
        &subject,
        "application/spdx+json",
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3"}"#,
    );
    let mut c = push_cmd();
    c.arg(&layout).arg(&dest).args(["--no-cache", "--json"]);
    let out = assert_ok(&run(c));
    let event: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "referrers")
        .unwrap_or_else(|| panic!("no referrers event: {out}"));
    assert_eq!(event["subject"], image_digest.as_str());
    assert_eq!(event["tag"], tag.as_str());
    let listed = raw(&reg.addr(), &format!("signed:{tag}"));
    let mut got = entries(&listed);
    got.sort();
    let mut want = vec![signature, sbom];
    want.sort();
    assert_eq!(got, want);
}

/// The same signed image pushed to a registry with the referrers API (the quirk proxy's
/// `ReferrersApi` in front of distribution 2.8): the registry lists the signature by itself, so no
/// `sha256-<hex>` tag is written.
#[test]
fn a_registry_with_the_referrers_api_lists_them_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, image_digest, signature, _) = signed_layout(dir.path());
    let reg = Registry::anonymous();
    let proxy = QuirkProxy::start(reg.port(), vec![Quirk::ReferrersApi]);
    let dest = format!("{}/signed:1", proxy.addr());
    let mut c = push_cmd();
    c.arg(&layout).arg(&dest).args(["--no-cache", "--json"]);
    let out = assert_ok(&run(c));
    let event: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "referrers")
        .unwrap_or_else(|| panic!("no referrers event: {out}"));
    assert_eq!(event["subject"], image_digest.as_str());
    assert_eq!(event["referrers"], serde_json::json!([signature]));
    assert!(event.get("tag").is_none(), "{event}");
    let tag = format!("sha256-{}", &image_digest["sha256:".len()..]);
    assert_eq!(tag_digest(&reg, "signed", &tag), None);
    assert_eq!(tag_digest(&reg, "signed", "1"), Some(image_digest));
    raw(&reg.addr(), &format!("signed@{signature}"));
    assert!(proxy.unmet().is_empty(), "{:?}", proxy.unmet());
}

/// The signed image as an oci-archive: pushed with `--compression none` it keeps its digest and
/// its signature goes with it; by default its uncompressed layer is gzipped on the way (a new
/// manifest digest), so the signature, whose subject is the old digest, is left out, and push says
/// so.
#[test]
fn a_signed_archive_keeps_its_subject_digest_with_compression_none() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, image_digest, signature, _) = signed_layout(dir.path());
    let archive = dir.path().join("signed.tar");
    let o = std::process::Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let reg = Registry::anonymous();
    let tag = format!("sha256-{}", &image_digest["sha256:".len()..]);

    let dest = format!("{}/signed:gzip", reg.addr());
    let mut c = push_cmd();
    c.arg(&archive).arg(&dest).arg("--no-cache");
    let o = run(c);
    let out = assert_ok(&o);
    assert_ne!(pushed(&out)[0].1, image_digest);
    let err = text(&o).1;
    assert!(
        err.contains(&format!(
            "not pushing {signature}, a referrer of {image_digest}: that manifest is not pushed"
        )),
        "{err}"
    );
    assert_eq!(tag_digest(&reg, "signed", &tag), None);

    let dest = format!("{}/signed:1", reg.addr());
    let mut c = push_cmd();
    c.arg(&archive)
        .arg(&dest)
        .args(["--no-cache", "--compression", "none"]);
    let out = assert_ok(&run(c));
    assert_eq!(pushed(&out), [(dest, image_digest.clone())]);
    let listed = raw(&reg.addr(), &format!("signed:{tag}"));
    assert_eq!(entries(&listed), std::slice::from_ref(&signature));
}
