//! Load: concurrent `layerlift-push` processes against one registry.
//!
//! - 8 different images that share their 3 base layers, pushed at the same moment, each into a
//!   repository of its own (the base layers race into the registry's one blob store);
//! - the same image pushed 8 times at the same moment into 8 repositories;
//! - the same image pushed 8 times at the same moment to one tag: ignored for now, it fails about
//!   one run in two (see the test's note).
//!
//! Every push must exit 0 and print the digest of its image, the registry's tag must point at that
//! digest (read from the registry's storage), and a few are pulled back with skopeo and checked
//! layer by layer against the source.

use crate::util::{
    Image, assert_ok, have_tool, layer_tar, push_cmd, pushed, run, skopeo_pull, tag_digest,
    write_layout,
};
use layerlift_testkit::Registry;
use std::path::{Path, PathBuf};
use std::sync::Barrier;

/// Push each (source, destination) at the same moment; returns each push's stdout.
fn push_concurrently(jobs: &[(PathBuf, String)]) -> Vec<String> {
    let barrier = Barrier::new(jobs.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(src, dest)| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut c = push_cmd();
                    c.arg(src).arg(dest).args(["-q", "--jobs", "2"]);
                    barrier.wait();
                    assert_ok(&run(c))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn read_back(reg: &Registry, reference: &str, digest: &str, src: &Path, work: &Path) {
    if !have_tool("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir_in(work).unwrap();
    let images = skopeo_pull(
        reference,
        digest,
        &["--src-tls-verify=false".to_string()],
        tmp.path(),
    );
    assert_eq!(
        images,
        crate::verify::layout(src),
        "{reference} from {reg:?}"
    );
}

#[test]
fn eight_concurrent_pushes_of_images_sharing_base_layers() {
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let base: Vec<Vec<u8>> = (0..3)
        .map(|i| layer_tar(&format!("base-{i}"), 1000 + i, 192 << 10))
        .collect();
    let mut jobs = Vec::new();
    let mut want = Vec::new();
    for i in 0..8u64 {
        let mut layers = base.clone();
        layers.push(layer_tar(&format!("app-{i}"), 2000 + i, 48 << 10));
        layers.push(layer_tar(&format!("cfg-{i}"), 3000 + i, 4 << 10));
        let src = work.path().join(format!("img{i}"));
        let digest = write_layout(
            &src,
            &[Image {
                name: "latest".into(),
                layers,
            }],
            true,
        )
        .remove(0);
        let (repo, tag) = (format!("load/app{i}"), "1".to_string());
        jobs.push((src, format!("{}/{repo}:{tag}", reg.addr())));
        want.push((repo, tag, digest));
    }
    let outs = push_concurrently(&jobs);
    for ((out, (repo, tag, digest)), (src, dest)) in outs.iter().zip(&want).zip(&jobs) {
        let refs = pushed(out);
        assert_eq!(refs, vec![(dest.clone(), digest.clone())], "{dest}");
        assert_eq!(
            tag_digest(&reg, repo, tag).as_deref(),
            Some(digest.as_str()),
            "{dest} in the registry"
        );
        if dest.ends_with("app0:1") || dest.ends_with("app7:1") {
            read_back(&reg, dest, digest, src, work.path());
        }
    }
}

fn same_image(work: &Path) -> (PathBuf, String) {
    let src = work.join("img");
    let layers = (0..6u64)
        .map(|i| layer_tar(&format!("l{i}"), 40 + i, 96 << 10))
        .collect();
    let digest = write_layout(
        &src,
        &[Image {
            name: "latest".into(),
            layers,
        }],
        true,
    )
    .remove(0);
    (src, digest)
}

#[test]
fn eight_concurrent_pushes_of_the_same_image() {
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let (src, digest) = same_image(work.path());
    let jobs: Vec<(PathBuf, String)> = (0..8)
        .map(|i| (src.clone(), format!("{}/load/same{i}:latest", reg.addr())))
        .collect();
    for (out, (_, dest)) in push_concurrently(&jobs).iter().zip(&jobs) {
        assert_eq!(pushed(out), vec![(dest.clone(), digest.clone())]);
    }
    for i in 0..8 {
        assert_eq!(
            tag_digest(&reg, &format!("load/same{i}"), "latest").as_deref(),
            Some(digest.as_str())
        );
    }
    read_back(&reg, &jobs[0].1, &digest, &src, work.path());
    read_back(&reg, &jobs[7].1, &digest, &src, work.path());
}

/// Eight pushes of one image to one tag at the same moment. docker-registry 2.8 rewrites a
/// repository's blob link file in place (truncate, then write) when an upload of a blob it already
/// has completes, so another push's manifest PUT can find the link empty and get 400
/// `DIGEST_INVALID … blob unknown to registry` (skopeo copy fails the same way under the same
/// load). layerlift-push waits and retries a manifest PUT that gets "blob unknown".
#[test]
fn eight_concurrent_pushes_of_the_same_image_to_one_tag() {
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let (src, digest) = same_image(work.path());
    let dest = format!("{}/load/same:latest", reg.addr());
    let jobs: Vec<(PathBuf, String)> = (0..8).map(|_| (src.clone(), dest.clone())).collect();
    for out in push_concurrently(&jobs) {
        assert_eq!(pushed(&out), vec![(dest.clone(), digest.clone())]);
    }
    assert_eq!(
        tag_digest(&reg, "load/same", "latest").as_deref(),
        Some(digest.as_str())
    );
    read_back(&reg, &dest, &digest, &src, work.path());
}
