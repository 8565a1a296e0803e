//! `Options::handover`: each layer is published and sent while the archive is being read, once,
//! already in place under its digest, to every receiver; JSON documents (the config) are not; the
//! result is the same layout as without the handover; a read whose receivers are all gone stops.

use layerlift_archive::{Input, Layer, Options, PublishedBlob, handover, unpack_with};
use layerlift_layers::{Compression, Encoding};
use layerlift_layout::Layout;
use layerlift_manifest::Digest;
use layerlift_testkit::image::{self, LayerNames, TestImage};

fn layer(name: &str, size: usize) -> Vec<u8> {
    image::layer_tar(&[(name, &image::letters(size as u64, size))])
}

/// A podman-style docker-archive (`<diff_id>.tar` layers, the config, manifest.json last); the
/// second layer is listed twice but stored once.
fn archive(layers: &[Vec<u8>]) -> Vec<u8> {
    let listed = vec![layers[0].clone(), layers[1].clone(), layers[1].clone()];
    TestImage::new("app:1", listed).docker_archive(LayerNames::DiffIds)
}

/// Unpack `bytes` with `encoding`, handing layers over to `receivers` receivers, and record
/// what each received (and whether each blob was in place, with its size, by the end of the
/// read). Returns the layout and what each receiver saw.
fn unpack(
    bytes: &[u8],
    encoding: Option<Encoding>,
    dir: &std::path::Path,
    receivers: usize,
) -> (Layout, Vec<Vec<(PublishedBlob, bool)>>) {
    let file = dir.join("app.tar");
    std::fs::write(&file, bytes).unwrap();
    let (sender, rxs) = handover(receivers);
    let out = dir.join("layout");
    let options = Options {
        encoding,
        handover: Some(sender),
        scratch: true,
        ..Default::default()
    };
    unpack_with(&Input::Path(file), &out, &options).unwrap();
    drop(options);
    let seen = rxs
        .iter()
        .map(|rx| {
            std::iter::from_fn(|| rx.recv())
                .map(|layer| match layer {
                    Layer::Ready(b) => {
                        let in_place = std::fs::metadata(&b.path).is_ok_and(|m| m.len() == b.size);
                        (b, in_place)
                    }
                    Layer::Streaming(g) => panic!("no layer is streamed here: {}", g.entry()),
                })
                .collect()
        })
        .collect();
    (Layout::open(&out).unwrap(), seen)
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
        let (layout, mut seen) = unpack(&bytes, encoding, tmp.path(), 2);
        let calls = seen.pop().unwrap();
        assert_eq!(seen[0], calls, "every receiver gets the same layers");
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

/// Once every receiver is gone (one dropped, the other closed while still held), reading ends
/// with `ArchiveError::Stopped` at the first buffer, nothing is sent, and the layout this run
/// created is removed as for any failed read. With one receiver left, the read goes on.
#[test]
fn a_read_whose_receivers_are_all_gone_stops() {
    let layers = [layer("a", 300_000), layer("b", 400_000)];
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("app.tar");
    std::fs::write(&file, archive(&layers)).unwrap();
    let out = tmp.path().join("layout");
    let read = |rxs: &[layerlift_archive::LayerReceiver], sender| {
        let options = Options {
            handover: Some(sender),
            scratch: true,
            ..Default::default()
        };
        let result = unpack_with(&Input::Path(file.clone()), &out, &options);
        drop(options);
        let received = rxs
            .iter()
            .map(|rx| std::iter::from_fn(|| rx.recv()).count())
            .collect::<Vec<_>>();
        (result, received)
    };

    let (sender, mut rxs) = handover(2);
    drop(rxs.pop());
    let (result, received) = read(&rxs, sender);
    assert!(result.is_ok(), "one receiver is left: {result:?}");
    assert_eq!(received, [2], "both layers");
    std::fs::remove_dir_all(&out).unwrap();

    let (sender, mut rxs) = handover(2);
    drop(rxs.pop());
    rxs[0].closer().close();
    let (result, received) = read(&rxs, sender);
    let err = result.unwrap_err();
    assert!(
        matches!(err, layerlift_archive::ArchiveError::Stopped),
        "{err}"
    );
    assert_eq!(received, [0], "nothing sent to a closed receiver");
    assert!(!out.exists(), "the layout this run created is removed");
}
