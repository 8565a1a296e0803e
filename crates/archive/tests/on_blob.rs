//! `Options::on_blob`: each layer is published and reported while the archive is being read, once,
//! already in place under its digest; JSON documents (the config) are not; the result is the same
//! layout as without the hook.

use layerlift_archive::{BlobHook, Input, Options, PublishedBlob, unpack_with};
use layerlift_layers::{Compression, Encoding};
use layerlift_layout::Layout;
use layerlift_manifest::Digest;
use layerlift_testkit::image::{self, LayerNames, TestImage};
use std::sync::{Arc, Mutex};

fn layer(name: &str, size: usize) -> Vec<u8> {
    image::layer_tar(&[(name, &image::letters(size as u64, size))])
}

/// A podman-style docker-archive (`<diff_id>.tar` layers, the config, manifest.json last); the
/// second layer is listed twice but stored once.
fn archive(layers: &[Vec<u8>]) -> Vec<u8> {
    let listed = vec![layers[0].clone(), layers[1].clone(), layers[1].clone()];
    TestImage::new("app:1", listed).docker_archive(LayerNames::DiffIds)
}

/// Unpack `bytes` with `encoding`, recording what the hook saw (and whether each blob was in
/// place, with its size, when it was called). Returns the layout and the calls.
fn unpack(
    bytes: &[u8],
    encoding: Option<Encoding>,
    dir: &std::path::Path,
) -> (Layout, Vec<(PublishedBlob, bool)>) {
    let file = dir.join("app.tar");
    std::fs::write(&file, bytes).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let seen = Arc::clone(&seen);
        BlobHook::new(move |b: &PublishedBlob| {
            let in_place = std::fs::metadata(&b.path).is_ok_and(|m| m.len() == b.size);
            seen.lock().unwrap().push((b.clone(), in_place));
        })
    };
    let out = dir.join("layout");
    let options = Options {
        encoding,
        on_blob: Some(hook),
        scratch: true,
        ..Default::default()
    };
    unpack_with(&Input::Path(file), &out, &options).unwrap();
    let calls = seen.lock().unwrap().clone();
    (Layout::open(&out).unwrap(), calls)
}

/// The layer digests of the layout's one image.
fn manifest_layers(layout: &Layout) -> Vec<Digest> {
    let index = layout.index().unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&layout.read_blob(&index.manifests[0].digest).unwrap()).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn every_layer_is_reported_once_in_place_and_nothing_else() {
    let layers = [layer("a", 300_000), layer("b", 5_000)];
    let bytes = archive(&layers);
    for encoding in [
        None,
        Some(Encoding {
            compression: Compression::Gzip,
            level: None,
            threads: 2,
        }),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (layout, calls) = unpack(&bytes, encoding, tmp.path());
        assert!(calls.iter().all(|(_, in_place)| *in_place), "{calls:?}");
        let reported: Vec<Digest> = calls.iter().map(|(b, _)| b.digest).collect();
        let mut want = manifest_layers(&layout);
        want.dedup();
        assert_eq!(reported, want, "each distinct layer, in archive order");
        if encoding.is_none() {
            let ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
            assert_eq!(reported, ids);
        }
        for (b, _) in &calls {
            assert_eq!(b.path, layout.blob_path(&b.digest));
            assert_eq!(Digest::of(&std::fs::read(&b.path).unwrap()), b.digest);
        }
    }
}

/// `stopping_when`: once it answers `true` (here: after the first layer was published), reading
/// ends with `ArchiveError::Stopped` inside the next entry, and the layout this run created is
/// removed as for any failed read.
#[test]
fn a_hook_that_says_stop_ends_the_read() {
    let layers = [layer("a", 300_000), layer("b", 400_000)];
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("app.tar");
    std::fs::write(&file, archive(&layers)).unwrap();
    let published = Arc::new(Mutex::new(0));
    let hook = {
        let (p1, p2) = (Arc::clone(&published), Arc::clone(&published));
        BlobHook::new(move |_: &PublishedBlob| *p1.lock().unwrap() += 1)
            .stopping_when(move || *p2.lock().unwrap() > 0)
    };
    let out = tmp.path().join("layout");
    let options = Options {
        on_blob: Some(hook),
        scratch: true,
        ..Default::default()
    };
    let err = unpack_with(&Input::Path(file), &out, &options).unwrap_err();
    assert!(
        matches!(err, layerlift_archive::ArchiveError::Stopped),
        "{err}"
    );
    assert_eq!(
        *published.lock().unwrap(),
        1,
        "the second layer was not finished"
    );
    assert!(!out.exists(), "the layout this run created is removed");
}
