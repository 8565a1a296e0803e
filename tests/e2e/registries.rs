//! The registry compatibility matrix (`docs/registries.md`), end to end: for every row, the real
//! `docker-registry` behind a [`QuirkProxy`] that deviates as that registry does, and a push of a
//! three-layer image (one layer of about 7 MiB, above the chunk threshold the case sets; two of a
//! few KiB) through it. The push either succeeds and the image then pulls back right with skopeo
//! straight from the registry behind the proxy (every blob against its digest, every layer against
//! its diff_id, the same config), or fails with the message the table states and leaves no tag.
//!
//! The cases check the outcome and the pulled image, and that the quirk was met (the proxy counts
//! the requests it changed), not the exact request sequence. One registry per test, shared by its
//! cases (one repository each).

use crate::util::{
    Image, Mode, ModeRegistry, have_tool, layer_tar, push_cmd, run, sha256_digest, skopeo_pull,
    tag_digest, text, write_layout,
};
use crate::verify::{self, CheckedImage};
use layerlift_testkit::{FaultProxy, Quirk, QuirkProxy, Registry};
use serde_json::Value;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// The test image: an OCI layout with one image of three gzip layers, the middle one about 7 MiB
/// compressed (12 MiB of letters), the others a few KiB.
fn image(work: &Path) -> (PathBuf, String) {
    let src = work.join("oci");
    let digest = write_layout(
        &src,
        &[Image {
            name: "latest".into(),
            layers: vec![
                layer_tar("small-a", 1, 3000),
                layer_tar("big", 2, 12 << 20),
                layer_tar("small-b", 3, 5000),
            ],
        }],
        true,
    )
    .remove(0);
    let big = verify::layout(&src);
    assert_eq!(big.len(), 1);
    (src, digest)
}

/// What a case expects.
enum Expect {
    /// The push succeeds with SOURCE's digest and pulls back as SOURCE.
    Pushed,
    /// The push succeeds with another digest (a converted manifest) and pulls back with SOURCE's
    /// config and layers.
    Converted,
    /// The push fails with this message (`{registry}` and `{repository}` filled in; `*` stands
    /// for any text) and leaves no tag.
    Fails(&'static str),
}

struct Case {
    /// The repository (one per case).
    repo: &'static str,
    quirks: Vec<Quirk>,
    args: Vec<String>,
    expect: Expect,
    /// The quirk must have changed at least one request (false where layerlift's requests are
    /// already of the kind the registry takes).
    fires: bool,
}

fn case(repo: &'static str, quirks: Vec<Quirk>, args: &[&str], expect: Expect) -> Case {
    Case {
        repo,
        quirks,
        args: args.iter().map(|a| a.to_string()).collect(),
        expect,
        fires: true,
    }
}

/// The images of `src` with the manifest digests left out (a converted manifest has another).
fn content(images: &[CheckedImage]) -> Vec<(String, Vec<String>)> {
    images
        .iter()
        .map(|i| (i.config.clone(), i.diff_ids.clone()))
        .collect()
}

/// Whether `text` holds the parts of `pattern` between its `*`s, in order.
fn matches(text: &str, pattern: &str) -> bool {
    let mut rest = text;
    for part in pattern.split('*') {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Push `src` through a proxy with the case's quirks to `reg`, and check the outcome.
fn run_case(reg: &ModeRegistry, src: &Path, digest: &str, c: &Case) {
    let proxy = QuirkProxy::start(reg.reg.port(), c.quirks.clone());
    push_and_check(reg, &proxy, src, digest, c);
}

fn push_and_check(reg: &ModeRegistry, proxy: &QuirkProxy, src: &Path, digest: &str, c: &Case) {
    let mut cmd = push_cmd();
    cmd.arg(src)
        .arg(format!("{}/{}:1", proxy.addr(), c.repo))
        .args(["--plain-http", "--json", "--retries", "2", "--no-cache"])
        .args(reg.push_args().iter().filter(|a| !a.starts_with("--ca")))
        .args(&c.args);
    let o = run(cmd);
    let (out, err) = text(&o);
    let last: Value = serde_json::from_str(out.lines().last().unwrap_or("{}")).unwrap_or_default();
    if c.fires {
        let unmet = proxy.unmet();
        assert!(unmet.is_empty(), "{}: never met: {unmet:?}", c.repo);
    }
    match &c.expect {
        Expect::Fails(message) => {
            let message = message
                .replace("{registry}", &proxy.addr())
                .replace("{repository}", c.repo);
            assert_eq!(o.status.code(), Some(1), "{}: {out}{err}", c.repo);
            assert_eq!(err.lines().count(), 1, "{}: one line: {err}", c.repo);
            assert!(
                matches(&err, &message),
                "{}: {err}\nwant: {message}",
                c.repo
            );
            assert_eq!(last["ok"], false, "{}: {out}", c.repo);
            assert!(
                matches(last["error"].as_str().unwrap_or_default(), &message),
                "{}: {out}",
                c.repo
            );
            assert_eq!(tag_digest(&reg.reg, c.repo, "1"), None, "{}", c.repo);
        }
        Expect::Pushed | Expect::Converted => {
            assert!(o.status.success(), "{}: {err}\n{out}", c.repo);
            assert_eq!(last["ok"], true, "{}: {out}", c.repo);
            let got = last["images"][0]["digest"].as_str().unwrap().to_string();
            if matches!(c.expect, Expect::Pushed) {
                assert_eq!(got, digest, "{}: the digest changed", c.repo);
            } else {
                assert_ne!(got, digest, "{}: not converted", c.repo);
            }
            assert_eq!(
                tag_digest(&reg.reg, c.repo, "1").as_deref(),
                Some(got.as_str()),
                "{}: the registry's tag",
                c.repo
            );
            if have_tool("skopeo") {
                let work = tempfile::tempdir().unwrap();
                let pulled = skopeo_pull(
                    &format!("{}/{}:1", reg.addr(), c.repo),
                    &got,
                    &reg.skopeo_args(),
                    work.path(),
                );
                let source = verify::layout(src);
                if matches!(c.expect, Expect::Pushed) {
                    assert_eq!(pulled, source, "{}", c.repo);
                } else {
                    assert_eq!(content(&pulled), content(&source), "{}", c.repo);
                }
            }
        }
    }
}

fn run_cases(mode: Mode, cases: &[Case]) {
    let work = tempfile::tempdir().unwrap();
    let (src, digest) = image(work.path());
    let reg = ModeRegistry::start(mode);
    for c in cases {
        run_case(&reg, &src, &digest, c);
    }
}

/// Amazon ECR: PATCH answered 201; parts below 5 MiB refused (and announced); a Range that does not
/// advance after the first PATCH (bytes discarded); a missing repository cut off, or answered
/// `NAME_UNKNOWN` as the spec says.
#[test]
fn amazon_ecr() {
    let min = Quirk::MinPart {
        min: 5 * MIB,
        announce: false,
    };
    let missing = "repository {repository} does not exist on {registry} (create it first)";
    run_cases(
        Mode::Anonymous,
        &[
            case(
                "ecr-patch-201",
                vec![Quirk::PatchCreated],
                &["--chunk-size", "2MiB"],
                Expect::Pushed,
            ),
            case(
                "ecr-min-part",
                vec![Quirk::PatchCreated, min],
                &["--chunk-size", "2MiB"],
                Expect::Pushed,
            ),
            case(
                "ecr-min-part-announced",
                vec![Quirk::MinPart {
                    min: 5 * MIB,
                    announce: true,
                }],
                &["--chunk-size", "2MiB"],
                Expect::Pushed,
            ),
            case(
                "ecr-stale-range",
                vec![Quirk::PatchCreated, Quirk::StaleRange],
                &["--chunk-size", "2MiB"],
                Expect::Pushed,
            ),
            case(
                "ecr-missing",
                vec![Quirk::AbruptMissingRepository {
                    existing: Vec::new(),
                }],
                &[],
                Expect::Fails(missing),
            ),
            case(
                "spec-name-unknown",
                vec![Quirk::NameUnknown {
                    existing: Vec::new(),
                }],
                &[],
                Expect::Fails(missing),
            ),
        ],
    );
}

/// GitHub Container Registry: PATCH bodies over 4 MiB refused with 416 "too large", relative
/// Locations; a CDN in front of a registry refusing any body over 4 MiB with 413.
#[test]
fn ghcr_and_body_limits() {
    run_cases(
        Mode::Anonymous,
        &[
            case(
                "ghcr-patch-cap",
                vec![Quirk::MaxPatchBody { max: 4 * MIB }],
                &["--chunk-size", "8MiB"],
                Expect::Pushed,
            ),
            case(
                "ghcr-relative-location",
                vec![Quirk::RelativeLocation],
                &["--chunk-size", "2MiB"],
                Expect::Pushed,
            ),
            case(
                "cdn-413",
                vec![Quirk::MaxRequestBody { max: 4 * MIB }],
                &[],
                Expect::Pushed,
            ),
        ],
    );
}

/// Quay: OCI manifests refused (before 3.6), Docker manifests inside an OCI index refused (before
/// 3.8); zot: Docker manifests refused. A clear error naming the digest a conversion gives, and
/// with `--convert-refused` the converted image (an index naming its converted child).
#[test]
fn quay_and_zot_media_types() {
    let work = tempfile::tempdir().unwrap();
    let (src, digest) = image(work.path());
    let reg = ModeRegistry::start(Mode::Anonymous);
    let refuses = "tagging {registry}/{repository}:1: the registry refuses application/vnd.oci.image.manifest.v1+json: PUT http://{registry}/v2/{repository}/manifests/1: HTTP 400 (MANIFEST_INVALID: manifest invalid); --convert-refused pushes it as application/vnd.docker.distribution.manifest.v2+json instead, which changes its digest from ";
    for c in [
        case(
            "quay-no-oci",
            vec![Quirk::QuayNoOci],
            &[],
            Expect::Fails(refuses),
        ),
        case(
            "quay-no-oci-converted",
            vec![Quirk::QuayNoOci],
            &["--convert-refused"],
            Expect::Converted,
        ),
    ] {
        run_case(&reg, &src, &digest, &c);
    }
    // An OCI index listing a Docker schema 2 manifest.
    let (mixed, index_digest) = docker_in_oci_index(work.path(), &src);
    let refuses_index = "pushing manifest sha256:* to {registry}/{repository}: the registry refuses application/vnd.oci.image.index.v1+json: PUT http://{registry}/v2/{repository}/manifests/sha256:*: HTTP 400 (MANIFEST_INVALID: manifest invalid; map[message:failed to parse manifest: manifest data does not match schema: 'application/vnd.docker.distribution.manifest.v2+json' is not one of [*]); --convert-refused pushes it as application/vnd.docker.distribution.manifest.list.v2+json instead, which changes its digest from sha256:* to sha256:";
    for c in [
        case(
            "quay-docker-in-oci-index",
            vec![Quirk::QuayDockerInOciIndex],
            &[],
            Expect::Fails(refuses_index),
        ),
        case(
            "quay-docker-in-oci-index-converted",
            vec![Quirk::QuayDockerInOciIndex],
            &["--convert-refused"],
            Expect::Converted,
        ),
    ] {
        run_case(&reg, &mixed, &index_digest, &c);
    }
    // zot without Docker compatibility: the Docker child is converted to OCI, and the index names
    // the converted child.
    let refuses_docker = "pushing manifest sha256:* to {registry}/{repository}: the registry refuses application/vnd.docker.distribution.manifest.v2+json: PUT http://{registry}/v2/{repository}/manifests/sha256:*: HTTP 400 (MANIFEST_INVALID: manifest invalid; map[description:During upload*mediaType:application/vnd.docker.distribution.manifest.v2+json]); --convert-refused pushes it as application/vnd.oci.image.manifest.v1+json instead, which changes its digest from sha256:* to sha256:";
    for c in [
        case(
            "zot-no-docker",
            vec![Quirk::RefuseDocker],
            &[],
            Expect::Fails(refuses_docker),
        ),
        case(
            "zot-no-docker-converted",
            vec![Quirk::RefuseDocker],
            &["--convert-refused"],
            Expect::Converted,
        ),
    ] {
        run_case(&reg, &mixed, &index_digest, &c);
    }
    let index = crate::util::skopeo_inspect_raw(
        &format!("{}/zot-no-docker-converted:1", reg.addr()),
        &reg.skopeo_args(),
        false,
    );
    let index: Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        index["manifests"][0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // The converted index is a Docker manifest list naming the Docker manifest as it was.
    let list = crate::util::skopeo_inspect_raw(
        &format!("{}/quay-docker-in-oci-index-converted:1", reg.addr()),
        &reg.skopeo_args(),
        false,
    );
    let list: Value = serde_json::from_slice(&list).unwrap();
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(
        list["manifests"][0]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

/// A layout whose index.json names an OCI index that lists the image of `src` as a Docker schema 2
/// manifest (same config and layers). Returns it and the OCI index's digest.
fn docker_in_oci_index(work: &Path, src: &Path) -> (PathBuf, String) {
    let dir = work.join("mixed");
    crate::util::copy_dir(src, &dir);
    let index: Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let oci = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let mut m: Value = serde_json::from_slice(&std::fs::read(blob(oci)).unwrap()).unwrap();
    m["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json".into();
    m["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json".into();
    for l in m["layers"].as_array_mut().unwrap() {
        l["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
    }
    let put = |bytes: &[u8]| {
        let d = sha256_digest(bytes);
        std::fs::write(blob(&d), bytes).unwrap();
        d
    };
    let docker = serde_json::to_vec(&m).unwrap();
    let docker_digest = put(&docker);
    let oci_index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": docker_digest, "size": docker.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }))
    .unwrap();
    let index_digest = put(&oci_index);
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": index_digest, "size": oci_index.len(),
        "annotations": {"org.opencontainers.image.ref.name": "latest"},
    }]});
    std::fs::write(dir.join("index.json"), top.to_string()).unwrap();
    (dir, index_digest)
}

/// Artifactory 6: a blob in the closing `PUT` refused with `404 BLOB_UNKNOWN` (chunks instead);
/// Nexus: a manifest `PUT` needs `Content-Length` (layerlift always sends it).
#[test]
fn artifactory_and_nexus() {
    let mut nexus = case(
        "nexus-content-length",
        vec![Quirk::ManifestContentLength],
        &[],
        Expect::Pushed,
    );
    nexus.fires = false;
    run_cases(
        Mode::Anonymous,
        &[
            case(
                "artifactory-monolithic",
                vec![Quirk::MonolithicPutRefused],
                &[],
                Expect::Pushed,
            ),
            nexus,
        ],
    );
}

/// Answers without `Docker-Content-Digest`, `Range` or `Docker-Upload-UUID`; a blob HEAD that
/// answers 404 for a blob the registry has.
#[test]
fn missing_headers_and_blind_heads() {
    run_cases(
        Mode::Anonymous,
        &[
            case(
                "no-content-digest",
                vec![Quirk::NoContentDigest],
                &["--max-single-upload", "1MiB"],
                Expect::Pushed,
            ),
            case(
                "no-range",
                vec![Quirk::NoRange],
                &["--chunk-size", "2MiB"],
                Expect::Pushed,
            ),
            case(
                "no-upload-uuid",
                vec![Quirk::NoUploadUuid],
                &["--chunk-size", "2MiB"],
                Expect::Pushed,
            ),
            case(
                "head-404",
                vec![Quirk::HeadBlob404],
                &["--max-single-upload", "1MiB"],
                Expect::Pushed,
            ),
        ],
    );
}

/// Upload Locations: on another origin, with ACR's query state that must be
/// kept, outside `/v2` (GAR); ACR's `Content-Range` without a unit; GAR without chunked uploads.
#[test]
fn locations_acr_and_gar() {
    let work = tempfile::tempdir().unwrap();
    let (src, digest) = image(work.path());
    let reg = ModeRegistry::start(Mode::Anonymous);
    let other = FaultProxy::start_on(
        std::net::Ipv4Addr::new(127, 0, 0, 2),
        reg.reg.port(),
        |_| layerlift_testkit::Fault::Pass,
    );
    let mut acr_range = case(
        "acr-content-range",
        vec![Quirk::AcrContentRange],
        &["--chunk-size", "2MiB"],
        Expect::Pushed,
    );
    acr_range.fires = false;
    for c in [
        case(
            "other-origin-location",
            vec![Quirk::OtherOriginLocation {
                to: format!("http://{}", other.addr()),
            }],
            &["--chunk-size", "2MiB"],
            Expect::Pushed,
        ),
        case(
            "acr-state",
            vec![Quirk::AcrState, Quirk::RelativeLocation],
            &["--chunk-size", "2MiB"],
            Expect::Pushed,
        ),
        acr_range,
        case(
            "gar-no-chunks",
            vec![Quirk::NoChunkedUploads],
            &["--chunk-size", "2MiB"],
            Expect::Pushed,
        ),
        case(
            "gar-location-outside-v2",
            vec![Quirk::LocationOutsideV2, Quirk::RelativeLocation],
            &["--max-single-upload", "1MiB"],
            Expect::Pushed,
        ),
    ] {
        run_case(&reg, &src, &digest, &c);
    }
    // The uploads went to the other origin (where credentials are never sent:
    // `crates/registry/tests/trust.rs`).
    let log = other.log();
    assert!(log.iter().any(|l| l.method == "PATCH"), "{log:?}");
}

/// Docker Hub: a mount from a repository the token does not cover gets `insufficient_scope`; the
/// blob is uploaded instead. Harbor: a project must exist before a push.
#[test]
fn docker_hub_and_harbor() {
    let work = tempfile::tempdir().unwrap();
    let (src, digest) = image(work.path());
    let reg = ModeRegistry::start(Mode::Token);
    // The mount source holds the image.
    run_case(
        &reg,
        &src,
        &digest,
        &Case {
            fires: false,
            ..case("hub-source", Vec::new(), &[], Expect::Pushed)
        },
    );
    run_case(
        &reg,
        &src,
        &digest,
        &case(
            "hub-insufficient-scope",
            vec![Quirk::MountInsufficientScope {
                source: "hub-source".into(),
            }],
            &["--mount-from", "hub-source"],
            Expect::Pushed,
        ),
    );
    let harbor = QuirkProxy::start(
        reg.reg.port(),
        vec![Quirk::ProjectMustExist {
            projects: vec!["library".into()],
        }],
    );
    push_and_check(
        &reg,
        &harbor,
        &src,
        &digest,
        &case(
            "nosuch/app",
            Vec::new(),
            &[],
            Expect::Fails(
                "(UNAUTHORIZED: project nosuch not found) as user erin; if these credentials may push there, the repository or its project may not exist on {registry} (create it first)",
            ),
        ),
    );
    push_and_check(
        &reg,
        &harbor,
        &src,
        &digest,
        &Case {
            fires: false,
            ..case("library/app", Vec::new(), &[], Expect::Pushed)
        },
    );
}

/// `--json` names the registry's own error code and message when a request failed with one.
#[test]
fn json_names_the_registry_error() {
    let reg = Registry::anonymous();
    let proxy = QuirkProxy::start(reg.port(), vec![Quirk::QuayNoOci]);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("oci");
    write_layout(
        &src,
        &[Image {
            name: "latest".into(),
            layers: vec![layer_tar("a", 1, 3000)],
        }],
        true,
    );
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/json-code:1", proxy.addr()))
        .args(["--plain-http", "--json", "--retries", "1"]);
    let o = run(c);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["ok"], false);
    assert_eq!(last["registryCode"], "MANIFEST_INVALID", "{out}");
    assert_eq!(last["registryMessage"], "manifest invalid", "{out}");
}
