//! `layerlift-push` end to end: real `docker-registry` instances (one per test, from
//! layerlift-testkit), OCI layout and archive fixtures, and skopeo as the independent client that
//! pulls every pushed image back so that its manifests and blobs can be compared byte for byte.

use crate::util::{
    PASSWORD, WRONG_PASSWORD, anonymous_client, assert_ok, base64_encode, have_tool, layout_layers,
    push_cmd, pushed, real_tool_fixtures, run, run_with_stdin, skopeo_pull_layers, text,
};
use layerlift_testkit::{Auth, Registry, RegistryOptions};
use std::path::PathBuf;
use std::process::Output;

fn fixture(rel: &str) -> PathBuf {
    real_tool_fixtures().join(rel)
}

const TWO_IMAGES: &str = "generated-local/skopeo-1.9.3/skopeo-oci-layout-2images";
const MULTI_PLATFORM: &str = "anchore-stereoscope/pkg/image/oci/testdata/multiplatform_oci_dir";
const REGCLIENT: &str = "regclient-regclient/testdata/testrepo";

/// Pull `reference` back with skopeo and check it ([`crate::util::skopeo_pull_layers`]); its layer
/// digests.
fn skopeo_check(reference: &str, digest: &str, extra: &[&str]) -> Vec<String> {
    let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    skopeo_pull_layers(reference, digest, &extra)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

#[test]
fn push_oci_layouts_and_pull_back_with_skopeo() {
    if !have_tool("skopeo") {
        return;
    }
    let reg = Registry::anonymous();
    let tls_off = ["--src-tls-verify=false"];

    // One image of a two-image layout, with two tags.
    let src = fixture(TWO_IMAGES);
    let mut c = push_cmd();
    c.arg(&src).arg(format!("{}/two:t1", reg.addr())).args([
        "--image",
        "test_image_3",
        "--tag",
        "also",
    ]);
    let out = assert_ok(&run(c));
    let refs = pushed(&out);
    assert_eq!(refs.len(), 2, "{out}");
    assert_eq!(refs[0].0, format!("{}/two:t1", reg.addr()));
    assert_eq!(refs[1].0, format!("{}/two:also", reg.addr()));
    let d = &refs[0].1;
    assert_eq!(
        d,
        "sha256:a36581762fbb8003932ec5d93641dd50a8733e7e4d0770b35c24653f30c25c97"
    );
    assert_eq!(
        sorted(skopeo_check(&refs[0].0, d, &tls_off)),
        sorted(layout_layers(&src, d))
    );

    // Without --image, a layout with two different images is refused (exit 1, no push).
    let mut c = push_cmd();
    c.arg(&src).arg(format!("{}/none:x", reg.addr()));
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    let (_, err) = text(&o);
    assert!(
        err.contains("--image") && err.contains("test_image_1"),
        "{err}"
    );

    // --all: each image under its own name; the shared layer is uploaded once.
    let mut c = push_cmd();
    c.arg(&src).arg(format!("{}/all", reg.addr())).arg("--all");
    let out = assert_ok(&run(c));
    let refs = pushed(&out);
    assert_eq!(refs.len(), 2, "{out}");
    for (r, d) in &refs {
        assert_eq!(
            sorted(skopeo_check(r, d, &tls_off)),
            sorted(layout_layers(&src, d))
        );
    }

    // Two different images chosen with --image: each under its own name, like --all.
    let mut c = push_cmd();
    c.arg(&src).arg(format!("{}/chosen", reg.addr())).args([
        "--image",
        "test_image_1",
        "--image",
        "@1",
    ]);
    let out = assert_ok(&run(c));
    let refs: Vec<String> = pushed(&out).into_iter().map(|(r, _)| r).collect();
    assert_eq!(
        refs,
        vec![
            format!("{}/chosen:test_image_1", reg.addr()),
            format!("{}/chosen:test_image_3", reg.addr())
        ]
    );
    // ...which cannot all get DEST's one tag.
    let mut c = push_cmd();
    c.arg(&src).arg(format!("{}/chosen:one", reg.addr())).args([
        "--image",
        "test_image_1",
        "--image",
        "@1",
    ]);
    assert_eq!(run(c).status.code(), Some(1));

    // A multi-platform BuildKit layout (nested index): every platform comes back.
    let src = fixture(MULTI_PLATFORM);
    let mut c = push_cmd();
    c.arg(&src).arg(format!("{}/multi:1", reg.addr()));
    let out = assert_ok(&run(c));
    let refs = pushed(&out);
    assert_eq!(refs.len(), 1);
    let layers = skopeo_check(&refs[0].0, &refs[0].1, &tls_off);
    assert!(!layers.is_empty());
    assert_eq!(sorted(layers), sorted(layout_layers(&src, &refs[0].1)));
}

#[test]
fn push_regclient_testrepo_all_tags() {
    let reg = Registry::anonymous();
    let src = fixture(REGCLIENT);
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/rc", reg.addr()))
        .args(["--all", "--json", "--jobs", "2"]);
    let out = assert_ok(&run(c));
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let result = events.last().unwrap();
    assert_eq!(result["event"], "result");
    assert_eq!(result["ok"], true);
    // Every tag of index.json is there, pointing at its digest (the push read them back; check
    // again with our own client, independently of the process that pushed).
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let client = anonymous_client(&reg);
    let mut tags = 0;
    for m in index["manifests"].as_array().unwrap() {
        if let Some(name) = m["annotations"]["org.opencontainers.image.ref.name"].as_str() {
            let got = client.manifest_digest("rc", name).unwrap().unwrap();
            assert_eq!(got.to_string(), m["digest"].as_str().unwrap(), "tag {name}");
            tags += 1;
        }
    }
    assert!(tags >= 6);
    // Every blob event says what happened; nothing was uploaded twice.
    let uploaded: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "blob" && e["action"] == "uploaded")
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(
        sorted(uploaded.iter().map(|s| s.to_string()).collect()).len(),
        uploaded.len()
    );
}

#[test]
fn json_dry_run_digest_file_and_second_push() {
    let reg = Registry::anonymous();
    let src = fixture(TWO_IMAGES);
    let dest = format!("{}/app:1", reg.addr());
    let work = tempfile::tempdir().unwrap();

    // Dry run: says what it would upload, pushes nothing.
    let mut c = push_cmd();
    c.arg(&src)
        .arg(&dest)
        .args(["--image", "test_image_1", "--dry-run", "--json"]);
    let out = assert_ok(&run(c));
    assert!(out.contains("\"would-upload\""), "{out}");
    let client = anonymous_client(&reg);
    assert_eq!(client.manifest_digest("app", "1").unwrap(), None);

    // Real push with a digest file; stdout is exactly the one reference line.
    let df = work.path().join("digest");
    let mut c = push_cmd();
    c.arg(&src)
        .arg(&dest)
        .args(["--image", "test_image_1", "--digest-file"])
        .arg(&df)
        .arg("-q");
    let o = run(c);
    let out = assert_ok(&o);
    let d = "sha256:2bfd9dafcdb18e82e86b6a2360929b48ddda8af5d54bfd37fd70e01a1bc70afb";
    assert_eq!(out, format!("{dest}@{d}\n"));
    assert_eq!(std::fs::read_to_string(&df).unwrap(), format!("{d}\n"));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A digest file that cannot be written fails the run, and --json says so once: one `result`
    // event, `ok: false`.
    let mut c = push_cmd();
    c.arg(&src)
        .arg(&dest)
        .args(["--image", "test_image_1", "--json", "--digest-file"])
        .arg(work.path().join("no-such-dir/digest"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    let results: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "result")
        .collect();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["ok"], false);

    // Second push: every blob is already there.
    let mut c = push_cmd();
    c.arg(&src)
        .arg(&dest)
        .args(["--image", "test_image_1", "--json"]);
    let out = assert_ok(&run(c));
    let blobs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "blob")
        .collect();
    assert!(!blobs.is_empty());
    assert!(blobs.iter().all(|e| e["action"] == "skipped"), "{out}");

    // Into another repository with --mount-from: blobs are mounted, not uploaded.
    let mut c = push_cmd();
    c.arg(&src).arg(format!("{}/copy:1", reg.addr())).args([
        "--image",
        "test_image_1",
        "--json",
        "--mount-from",
        "app",
    ]);
    let out = assert_ok(&run(c));
    assert!(
        out.contains("\"mounted\"") && !out.contains("\"uploaded\""),
        "{out}"
    );

    // Chunked upload.
    let mut c = push_cmd();
    c.arg(&src).arg(format!("{}/chunked:1", reg.addr())).args([
        "--image",
        "test_image_3",
        "--chunk-size",
        "100",
    ]);
    assert_ok(&run(c));
    assert!(reg.log().contains("\"PATCH /v2/chunked/blobs/uploads/"));

    // A registry that is gone: exit 1 and a one-line error naming it.
    let addr = reg.addr();
    drop(reg);
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{addr}/app:1"))
        .args(["--image", "test_image_1", "--retries", "1"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    let (out, err) = text(&o);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&addr), "{err}");
}

#[test]
fn push_with_htpasswd_token_and_tls_and_never_print_the_password() {
    let have_skopeo = have_tool("skopeo");
    let src = fixture(TWO_IMAGES);
    let d3 = "sha256:a36581762fbb8003932ec5d93641dd50a8733e7e4d0770b35c24653f30c25c97";
    let mut outputs: Vec<Output> = Vec::new();

    // htpasswd Basic, password on stdin.
    let reg = Registry::htpasswd("alice", PASSWORD);
    let mut c = push_cmd();
    c.arg(&src).arg(format!("{}/basic:1", reg.addr())).args([
        "--image",
        "test_image_3",
        "-u",
        "alice",
        "--password-stdin",
    ]);
    let o = run_with_stdin(c, &format!("{PASSWORD}\n"));
    assert_ok(&o);
    outputs.push(o);
    if have_skopeo {
        skopeo_check(
            &format!("{}/basic:1", reg.addr()),
            d3,
            &[
                "--src-tls-verify=false",
                "--src-creds",
                &format!("alice:{PASSWORD}"),
            ],
        );
    }
    // Wrong password: exit 1, the error names the user and the 401, not the password.
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/basic:2", reg.addr()))
        .args(["--image", "test_image_3", "--json", "--creds"])
        .arg(format!("alice:{WRONG_PASSWORD}"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    let (out, err) = text(&o);
    assert!(err.contains("401") && err.contains("alice"), "{err}");
    assert!(out.contains("\"ok\":false"), "{out}");
    outputs.push(o);
    // Credentials from an auth.json (--authfile).
    let work = tempfile::tempdir().unwrap();
    let authfile = work.path().join("auth.json");
    let auth = base64_encode(&format!("alice:{PASSWORD}"));
    std::fs::write(
        &authfile,
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr()),
    )
    .unwrap();
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/basic:3", reg.addr()))
        .args(["--image", "test_image_3", "--authfile"])
        .arg(&authfile);
    let o = run(c);
    assert_ok(&o);
    outputs.push(o);
    // And from DOCKER_CONFIG/config.json.
    let mut c = push_cmd();
    std::fs::write(
        work.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr()),
    )
    .unwrap();
    c.env("DOCKER_CONFIG", work.path())
        .arg(&src)
        .arg(format!("{}/basic:4", reg.addr()))
        .args(["--image", "test_image_3", "--json"]);
    let o = run(c);
    assert_ok(&o);
    outputs.push(o);
    drop(reg);

    // Token auth.
    let reg = Registry::token("bob", PASSWORD);
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/tok:1", reg.addr()))
        .args(["--image", "test_image_3", "--creds"])
        .arg(format!("bob:{PASSWORD}"));
    let o = run(c);
    assert_ok(&o);
    outputs.push(o);
    let reqs = reg.token_server().unwrap().requests();
    assert!(
        reqs.iter()
            .any(|r| r.scopes.contains(&"repository:tok:pull,push".to_string())),
        "{reqs:?}"
    );
    if have_skopeo {
        skopeo_check(
            &format!("{}/tok:1", reg.addr()),
            d3,
            &[
                "--src-tls-verify=false",
                "--src-creds",
                &format!("bob:{PASSWORD}"),
            ],
        );
    }
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/tok:2", reg.addr()))
        .args(["--image", "test_image_3", "--creds"])
        .arg(format!("bob:{WRONG_PASSWORD}"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    outputs.push(o);
    // Anonymous gets a pull-only token: refused, exit 1.
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/tok:3", reg.addr()))
        .args(["--image", "test_image_3"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    outputs.push(o);
    drop(reg);

    // TLS with a generated CA: verified with --ca-cert, refused without it.
    let reg = Registry::start(RegistryOptions {
        auth: Auth::Htpasswd(vec![("carol".into(), PASSWORD.into())]),
        tls: true,
    });
    let ca = reg.ca_cert_path().unwrap();
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/tls:1", reg.addr()))
        .args(["--image", "test_image_3", "--ca-cert"])
        .arg(&ca)
        .arg("--creds")
        .arg(format!("carol:{PASSWORD}"));
    let o = run(c);
    assert_ok(&o);
    outputs.push(o);
    if have_skopeo {
        let certs = tempfile::tempdir().unwrap();
        std::fs::copy(&ca, certs.path().join("ca.crt")).unwrap();
        skopeo_check(
            &format!("{}/tls:1", reg.addr()),
            d3,
            &[
                "--src-cert-dir",
                certs.path().to_str().unwrap(),
                "--src-creds",
                &format!("carol:{PASSWORD}"),
            ],
        );
    }
    let mut c = push_cmd();
    c.arg(&src)
        .arg(format!("{}/tls:2", reg.addr()))
        .args(["--image", "test_image_3", "--creds"])
        .arg(format!("carol:{PASSWORD}"));
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    let (_, err) = text(&o);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    outputs.push(o);

    // No password, right or wrong, in anything any of these pushes printed.
    assert!(outputs.len() >= 8);
    for o in &outputs {
        let (out, err) = text(o);
        for secret in [
            PASSWORD,
            WRONG_PASSWORD,
            &base64_encode(&format!("alice:{PASSWORD}")),
        ] {
            assert!(!out.contains(secret), "secret in stdout: {out}");
            assert!(!err.contains(secret), "secret in stderr: {err}");
        }
    }
}

#[test]
fn push_docker_archives() {
    let reg = Registry::anonymous();
    // A real `docker save` of two images with a symlinked layer, both pushed under their names.
    let archive = fixture("google-go-containerregistry/pkg/v1/tarball/testdata/test_link.tar");
    let mut c = push_cmd();
    c.arg(&archive)
        .arg(format!("{}/mirror", reg.addr()))
        .arg("--all");
    let out = assert_ok(&run(c));
    let refs = pushed(&out);
    assert_eq!(refs.len(), 2, "{out}");
    assert!(
        refs.iter()
            .any(|(r, _)| r.ends_with("/mirror/bazel/v1/tarball:test_image_1")),
        "{out}"
    );
    if have_tool("skopeo") {
        for (r, d) in &refs {
            skopeo_check(r, d, &["--src-tls-verify=false"]);
        }
    }
    // From a pipe.
    let podman = fixture("generated-local/podman-4.3.1/podman-docker-archive-single.tar");
    let mut c = push_cmd();
    c.arg("-")
        .arg(format!("{}/piped:1", reg.addr()))
        .stdin(std::fs::File::open(&podman).unwrap());
    let out = assert_ok(&run(c));
    let refs = pushed(&out);
    assert_eq!(refs.len(), 1, "{out}");
    if have_tool("skopeo") {
        skopeo_check(&refs[0].0, &refs[0].1, &["--src-tls-verify=false"]);
    }
    // The archive's plain tar layers went up gzip-compressed (the default), or as they are with
    // --compression none.
    let mut c = push_cmd();
    c.arg(&podman)
        .arg(format!("{}/plain:1", reg.addr()))
        .args(["--compression", "none"]);
    let out = assert_ok(&run(c));
    let plain = pushed(&out);
    let client = anonymous_client(&reg);
    let layer_types = |repo: &str, d: &str| -> Vec<String> {
        let (_, bytes) = client.get_manifest(repo, d).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap().to_string())
            .collect()
    };
    let gz = layer_types("piped", &refs[0].1);
    assert!(
        !gz.is_empty() && gz.iter().all(|t| t.contains("gzip")),
        "{gz:?}"
    );
    let raw = layer_types("plain", &plain[0].1);
    assert!(raw.iter().all(|t| !t.contains("gzip")), "{raw:?}");
}

/// Faults: through a proxy that faults one request in five — dropped mid-body, 500, 503 and 429
/// with `Retry-After: 0`, stalled (the first stall past the client's timeout, the others shorter) —
/// 20 pushes in a row of a generated 40-layer image all land with the right digest, one in four in
/// chunks; the last is read back with skopeo (straight from the registry) and checked layer by
/// layer.
#[test]
fn twenty_pushes_of_a_40_layer_image_through_a_faulty_proxy() {
    use crate::util::{Image, layer_tar, skopeo_pull, tag_digest, write_layout};
    use layerlift_testkit::{Fault, FaultProxy};
    use std::time::Duration;
    let reg = Registry::anonymous();
    let long_stall = std::sync::atomic::AtomicBool::new(true);
    let proxy = FaultProxy::start(reg.port(), move |r| {
        if r.n % 5 != 4 {
            return Fault::Pass;
        }
        match (r.n / 5) % 5 {
            0 => Fault::Drop {
                after: r.content_length / 2,
            },
            1 => Fault::Status {
                status: 500,
                retry_after: None,
            },
            2 => Fault::Status {
                status: 503,
                retry_after: Some(0),
            },
            3 => Fault::Status {
                status: 429,
                retry_after: Some(0),
            },
            _ if long_stall.swap(false, std::sync::atomic::Ordering::SeqCst) => {
                Fault::Stall(Duration::from_millis(3500))
            }
            _ => Fault::Stall(Duration::from_millis(150)),
        }
    });
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("oci");
    let image = Image {
        name: "forty".into(),
        layers: (0..40u64)
            .map(|i| layer_tar(&format!("layer-{i}"), i, 1024 + 97 * i as usize))
            .collect(),
    };
    let digest = write_layout(&src, std::slice::from_ref(&image), true).remove(0);
    let mut retried = 0;
    for i in 0..20 {
        let mut c = push_cmd();
        c.arg(&src)
            .arg(format!("{}/faulty{i}:1", proxy.addr()))
            .args(["--json", "--plain-http", "--timeout", "2", "--jobs", "8"]);
        if i % 4 == 3 {
            // Chunked: a broken chunk resumes from the offset the registry reports.
            c.args(["--chunk-size", "700"]);
        }
        let out = assert_ok(&run(c));
        retried += out.matches("\"retried\"").count();
        let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(last["ok"], true, "push {i}");
        assert_eq!(last["images"][0]["digest"], digest.as_str(), "push {i}");
        assert_eq!(
            tag_digest(&reg, &format!("faulty{i}"), "1").as_deref(),
            Some(digest.as_str()),
            "push {i}: the registry's tag"
        );
    }
    let log = proxy.log();
    let kinds = |f: &dyn Fn(&Fault) -> bool| log.iter().filter(|l| f(&l.fault)).count();
    let drops = kinds(&|f| matches!(f, Fault::Drop { .. }));
    let errors = kinds(&|f| {
        matches!(
            f,
            Fault::Status {
                status: 500 | 503,
                ..
            }
        )
    });
    let throttled = kinds(&|f| matches!(f, Fault::Status { status: 429, .. }));
    let stalls = kinds(&|f| matches!(f, Fault::Stall(_)));
    assert!(
        drops > 0 && errors > 0 && throttled > 0 && stalls > 0,
        "faults: {drops} drops, {errors} 5xx, {throttled} 429, {stalls} stalls"
    );
    assert!(log.len() >= 20 * 80, "{} requests", log.len());
    assert!(proxy.faults() * 6 >= log.len(), "one in five faulted");
    assert!(retried > 0);
    if have_tool("skopeo") {
        // Pulled straight from the registry, not through the proxy.
        let images = skopeo_pull(
            &format!("{}/faulty19:1", reg.addr()),
            &digest,
            &["--src-tls-verify=false".to_string()],
            work.path(),
        );
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].diff_ids.len(), 40);
        assert_eq!(images, crate::verify::layout(&src));
    }
}

/// A chunked upload through a proxy that answers every third PATCH with 503: each chunk needs one
/// retry at most, so `--retries 3` ("attempts per request") is plenty. The registry client once ran
/// the whole chunked upload of a blob on one retry budget, and gave up after the third failed
/// chunk; the budget now starts again whenever the registry accepted more bytes.
#[test]
fn chunked_upload_gets_a_retry_budget_per_chunk() {
    use crate::util::{Image, layer_tar, tag_digest, write_layout};
    use layerlift_testkit::{Fault, FaultProxy};
    let reg = Registry::anonymous();
    let patches = std::sync::atomic::AtomicUsize::new(0);
    let proxy = FaultProxy::start(reg.port(), move |r| {
        if r.method == "PATCH" && patches.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 3 == 2
        {
            return Fault::Status {
                status: 503,
                retry_after: None,
            };
        }
        Fault::Pass
    });
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("oci");
    let image = Image {
        name: "chunks".into(),
        layers: vec![layer_tar("big", 5, 40 << 10)],
    };
    let digest = write_layout(&src, &[image], false).remove(0);
    let mut c = push_cmd();
    c.arg(&src).arg(format!("{}/chunks:1", proxy.addr())).args([
        "-q",
        "--plain-http",
        "--retries",
        "3",
        "--chunk-size",
        "4096",
    ]);
    let out = assert_ok(&run(c));
    assert_eq!(pushed(&out)[0].1, digest);
    assert_eq!(
        tag_digest(&reg, "chunks", "1").as_deref(),
        Some(digest.as_str())
    );
}

#[test]
fn credentials_from_a_docker_credential_helper() {
    let reg = Registry::htpasswd("hal", PASSWORD);
    let work = tempfile::tempdir().unwrap();
    // A `docker-credential-*` helper on PATH that knows this registry, named by credsStore.
    let helper = work.path().join("docker-credential-lle2e");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\nif [ \"$server\" = \"{}\" ]; then echo '{{\"ServerURL\":\"'$server'\",\"Username\":\"hal\",\"Secret\":\"{PASSWORD}\"}}'; else echo 'credentials not found in native keychain'; exit 1; fi\n",
            reg.addr()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        work.path().join("config.json"),
        r#"{"auths":{},"credsStore":"lle2e"}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        work.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = push_cmd();
    c.env("PATH", &path)
        .env("DOCKER_CONFIG", work.path())
        .arg(fixture(TWO_IMAGES))
        .arg(format!("{}/helped:1", reg.addr()))
        .args(["--image", "test_image_1"]);
    let o = run(c);
    let out = assert_ok(&o);
    assert!(!out.contains(PASSWORD) && !String::from_utf8_lossy(&o.stderr).contains(PASSWORD));
    // Without the helper's answer (another registry name), the push is anonymous and refused.
    std::fs::write(
        work.path().join("config.json"),
        r#"{"auths":{},"credHelpers":{"other.example":"lle2e"}}"#,
    )
    .unwrap();
    let mut c = push_cmd();
    c.env("PATH", &path)
        .env("DOCKER_CONFIG", work.path())
        .arg(fixture(TWO_IMAGES))
        .arg(format!("{}/helped:2", reg.addr()))
        .args(["--image", "test_image_1"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("anonymous"));
}

#[test]
fn loopback_registries_bypass_the_environment_proxy() {
    use layerlift_testkit::FaultProxy;
    let reg = Registry::anonymous();
    // A proxy in the environment (ureq would tunnel through it with CONNECT): like Docker and
    // skopeo, a registry on 127.0.0.0/8 is reached directly anyway.
    let proxy = FaultProxy::transparent(reg.port());
    let mut c = push_cmd();
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
    ] {
        c.env(var, format!("http://{}", proxy.addr()));
    }
    c.env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .arg(fixture(TWO_IMAGES))
        .arg(format!("{}/direct:1", reg.addr()))
        .args(["--image", "test_image_1"]);
    assert_ok(&run(c));
    assert!(proxy.log().is_empty(), "{:?}", proxy.log());
    assert!(reg.log().contains("/v2/direct/manifests/"));
}

/// A containerd-store save that holds one platform of a multi-platform image cannot be pushed
/// whole (the registry would refuse an index naming a manifest it does not have); `--platform`
/// pushes that platform's manifest as the save stored it (its digest kept), from the archive and
/// from its unpacked layout.
#[test]
fn one_platform_of_a_partial_multi_platform_save() {
    use crate::util::tag_digest;
    let reg = Registry::anonymous();
    let archive = crate::fixtures::generated("synthetic/containerd-store-save.tar");
    let amd64 = "sha256:f16d5d0541b6b18671a574fdde5f0517205841bf16fe4a5ae1573cb4a6c96845";
    let mut c = push_cmd();
    c.arg(&archive).arg(format!("{}/ctr:whole", reg.addr()));
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--platform"));

    let mut c = push_cmd();
    c.arg(&archive)
        .arg(format!("{}/ctr:amd64", reg.addr()))
        .args(["-q", "--no-cache", "--platform", "linux/amd64"]);
    let out = assert_ok(&run(c));
    assert_eq!(pushed(&out)[0].1, amd64);
    assert_eq!(tag_digest(&reg, "ctr", "amd64").as_deref(), Some(amd64));

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let u = std::process::Command::new(env!("CARGO_BIN_EXE_layerlift-unpack"))
        .arg(&archive)
        .arg(&layout)
        .output()
        .unwrap();
    assert!(u.status.success(), "{}", String::from_utf8_lossy(&u.stderr));
    let mut c = push_cmd();
    c.arg(&layout)
        .arg(format!("{}/ctr:from-layout", reg.addr()))
        .args(["-q", "--platform", "linux/amd64"]);
    let out = assert_ok(&run(c));
    assert_eq!(pushed(&out)[0].1, amd64);
    let mut c = push_cmd();
    c.arg(&layout)
        .arg(format!("{}/ctr:s390x", reg.addr()))
        .args(["-q", "--platform", "linux/s390x"]);
    let o = run(c);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no manifest for platform linux/s390x"));
}
