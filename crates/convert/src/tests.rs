//! Unit tests of the engine on layouts built in a temp dir: the keep/re-encode decision, garbage
//! collection, and what a conversion reports.

use super::*;
use layerlift_manifest::{Digest, Index, media_types};
use std::io::Write;

/// A plain tar holding one file.
fn tar_of(name: &str, content: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    tar.append_data(&mut header, name, content).unwrap();
    tar.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Store an image (layers given as stored bytes, their tars for the diff_ids) and return its
/// manifest descriptor, named `name`.
fn add_image(layout: &Layout, name: &str, layers: &[(&str, Vec<u8>, Vec<u8>)]) -> Descriptor {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|(_, _, tar)| format!("\"{}\"", Digest::of(tar)))
        .collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let config_digest = layout.write_blob(config.as_bytes()).unwrap();
    let layer_json: Vec<String> = layers
        .iter()
        .map(|(media_type, stored, _)| {
            let digest = layout.write_blob(stored).unwrap();
            format!(
                r#"{{"mediaType":"{media_type}","digest":"{digest}","size":{}}}"#,
                stored.len()
            )
        })
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        media_types::OCI_MANIFEST,
        media_types::OCI_CONFIG,
        config.len(),
        layer_json.join(",")
    );
    let digest = layout.write_blob(manifest.as_bytes()).unwrap();
    let mut desc = Descriptor::new(media_types::OCI_MANIFEST, digest, manifest.len() as u64);
    desc.annotations
        .get_or_insert_default()
        .insert(REF_NAME.to_string(), name.to_string());
    layout
        .update_index(|index| index.manifests.push(desc.clone()))
        .unwrap();
    desc
}

/// Stored compression, target, level, recompress, epoch → kept?
type Row = (
    Compression,
    Compression,
    Option<i32>,
    bool,
    Option<u64>,
    bool,
);

#[test]
fn keep_or_reencode_table() {
    use Compression::{Bzip2, Gzip, None as Plain, Xz, Zstd};
    let table: &[Row] = &[
        (Gzip, Gzip, None, false, None, true),
        // The level does not count: a layer in the target compression is kept at any level.
        (Gzip, Gzip, Some(9), false, None, true),
        (Zstd, Zstd, None, false, None, true),
        (Zstd, Zstd, Some(19), false, None, true),
        (Plain, Plain, None, false, None, true),
        (Gzip, Zstd, None, false, None, false),
        (Zstd, Gzip, Some(1), false, None, false),
        (Plain, Gzip, None, false, None, false),
        (Gzip, Plain, None, false, None, false),
        (Bzip2, Gzip, None, false, None, false),
        (Xz, Zstd, None, false, None, false),
        (Bzip2, Plain, None, false, None, false),
        // Asked for new bytes.
        (Gzip, Gzip, None, true, None, false),
        (Zstd, Zstd, Some(3), true, None, false),
        (Gzip, Gzip, None, false, Some(0), false),
        (Plain, Plain, None, false, Some(1_000_000_000), false),
    ];
    for &(stored, target, level, recompress, epoch, kept) in table {
        let options = Options {
            compression: target,
            level,
            recompress,
            source_date_epoch: epoch,
            ..Options::default()
        };
        assert_eq!(
            options.keeps(stored),
            kept,
            "{stored} → {target} level {level:?} recompress {recompress} epoch {epoch:?}"
        );
    }
}

#[test]
fn the_decision_is_what_convert_does() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in");
    let layout = Layout::create(&src).unwrap();
    let plain = tar_of("a.txt", b"plain layer\n");
    let zipped_tar = tar_of("b.txt", b"gzip layer\n");
    add_image(
        &layout,
        "app:1",
        &[
            (media_types::OCI_LAYER, plain.clone(), plain.clone()),
            (media_types::OCI_LAYER_GZIP, gzip(&zipped_tar), zipped_tar),
        ],
    );
    drop(layout);
    let out = dir.path().join("out");
    let report = convert(&src, Some(&out), &Options::default(), &NoProgress).unwrap();
    let actions: Vec<Action> = report.layers.iter().map(|l| l.action).collect();
    assert_eq!(actions, [Action::Encoded, Action::Kept]);
    assert_eq!(
        report.layers[0].from.compression,
        Some(Compression::None),
        "detected from the bytes"
    );
    assert_eq!(report.layers[1].to.digest, report.layers[1].from.digest);
    assert_eq!(report.count(Action::Kept), 1);
    assert_eq!(report.removed_blobs, 0, "not in place: nothing removed");

    // Recompress: both re-encoded, and the gzip of a layer is the same bytes on every run.
    let again = dir.path().join("again");
    let options = Options {
        recompress: true,
        threads: Some(1),
        ..Options::default()
    };
    let report2 = convert(&src, Some(&again), &options, &NoProgress).unwrap();
    assert_eq!(report2.count(Action::Encoded), 2);
    assert_eq!(report2.layers[0].to, report.layers[0].to);
}

#[test]
fn gc_keeps_what_the_index_still_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let shared = tar_of("shared.txt", b"in both images\n");
    let only_old = tar_of("old.txt", b"only the old image\n");
    let old = add_image(
        &layout,
        "old:1",
        &[
            (media_types::OCI_LAYER, shared.clone(), shared.clone()),
            (media_types::OCI_LAYER, only_old.clone(), only_old.clone()),
        ],
    );
    let kept = add_image(
        &layout,
        "new:1",
        &[(media_types::OCI_LAYER, shared.clone(), shared.clone())],
    );
    // A blob no image references: not the old image's, so never touched.
    let stray = layout.write_blob(b"stray").unwrap();
    // The old image leaves the index; its unique blobs go, the shared layer stays.
    layout
        .update_index(|index: &mut Index| index.manifests.retain(|d| *d != old))
        .unwrap();
    let removed = gc::remove_unreferenced(&layout, std::slice::from_ref(&old)).unwrap();
    assert_eq!(removed, 3, "the old manifest, its config and its own layer");
    assert!(!layout.has_blob(&old.digest));
    assert!(!layout.has_blob(&Digest::of(&only_old)));
    assert!(layout.has_blob(&Digest::of(&shared)));
    assert!(layout.has_blob(&stray));
    let still = gc::reachable(&layout, std::slice::from_ref(&kept)).unwrap();
    assert!(still.iter().all(|d| layout.has_blob(d)), "{still:?}");
}

#[test]
fn in_place_conversion_removes_only_what_the_old_image_used() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let tar = tar_of("a.txt", b"content\n");
    let old = add_image(
        &layout,
        "app:1",
        &[(media_types::OCI_LAYER, tar.clone(), tar.clone())],
    );
    drop(layout);
    let options = Options {
        compression: Compression::Zstd,
        ..Options::default()
    };
    let report = convert(dir.path(), None, &options, &NoProgress).unwrap();
    assert!(report.in_place);
    assert!(report.cleanup_error.is_none());
    // The old manifest and the plain layer; the config is the same bytes and stays.
    assert_eq!(report.removed_blobs, 2);
    let layout = Layout::open(dir.path()).unwrap();
    assert!(!layout.has_blob(&old.digest));
    let index = layout.index().unwrap();
    assert_eq!(index.manifests[0].digest, report.images[0].to.digest);
    let reached = gc::reachable(&layout, &index.manifests).unwrap();
    assert!(reached.iter().all(|d| layout.has_blob(d)));
}

#[test]
fn errors_name_the_image_and_layer() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let tar = tar_of("a.txt", b"content\n");
    let other = tar_of("b.txt", b"other\n");
    // The config's diff_id is of another tar.
    add_image(&layout, "bad:1", &[(media_types::OCI_LAYER, tar, other)]);
    drop(layout);
    let err = convert(dir.path(), None, &Options::default(), &NoProgress).unwrap_err();
    let mut chain = vec![err.to_string()];
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain.push(c.to_string());
        cause = c.source();
    }
    let line = chain.join(": ");
    assert!(
        line.starts_with("image bad:1 (@0): manifest sha256:"),
        "{line}"
    );
    assert!(line.contains(": layer 0 (sha256:"), "{line}");
    assert!(line.contains("diff_id"), "{line}");
}

#[test]
fn bad_options_and_selectors_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        compression: Compression::None,
        format: Some(Format::Docker),
        ..Options::default()
    };
    let err = convert(dir.path(), None, &options, &NoProgress).unwrap_err();
    assert!(matches!(
        err,
        ConvertError::Options(OptionsError::UncompressedDocker)
    ));
    let layout = Layout::create(dir.path()).unwrap();
    let tar = tar_of("a.txt", b"x\n");
    add_image(
        &layout,
        "app:1",
        &[(media_types::OCI_LAYER, tar.clone(), tar)],
    );
    drop(layout);
    let options = Options {
        images: vec!["nope:1".into()],
        ..Options::default()
    };
    match convert(dir.path(), None, &options, &NoProgress) {
        Err(ConvertError::Select(SelectError::NoSuchImage { names, .. })) => {
            assert_eq!(names, ["app:1"])
        }
        other => panic!("{other:?}"),
    }
    let options = Options {
        images: vec!["docker.io/library/app:1".into()],
        ..Options::default()
    };
    let report = convert(dir.path(), None, &options, &NoProgress).unwrap();
    assert_eq!(report.images.len(), 1);
}

#[test]
fn the_report_serialises_to_the_cli_json() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let tar = tar_of("a.txt", b"x\n");
    add_image(
        &layout,
        "app:1",
        &[(media_types::OCI_LAYER, tar.clone(), tar)],
    );
    drop(layout);
    let report = convert(dir.path(), None, &Options::default(), &NoProgress).unwrap();
    let v = serde_json::to_value(&report).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "compression",
            "configsRewritten",
            "format",
            "images",
            "inPlace",
            "input",
            "layers",
            "level",
            "output",
            "removedBlobs",
            "seconds",
            "sourceDateEpoch",
            "threads"
        ]
    );
    assert_eq!(v["compression"], "gzip");
    assert_eq!(v["format"], "oci");
    assert_eq!(v["level"], 1);
    assert_eq!(v["images"][0]["name"], "app:1");
    assert_eq!(v["layers"][0]["action"], "encoded");
    assert_eq!(v["layers"][0]["from"]["compression"], "none");
    assert!(v["layers"][0]["newDiffId"].is_null());
}

/// Records events; checks that every started layer finishes and its bytes add up.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<Event>>);

impl Observer for Recorder {
    fn event(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[test]
fn the_observer_sees_every_layer_start_progress_and_finish() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::create(dir.path()).unwrap();
    let layers: Vec<Vec<u8>> = (0..4)
        .map(|n| tar_of(&format!("{n}.txt"), format!("layer {n}\n").as_bytes()))
        .collect();
    let descs: Vec<(&str, Vec<u8>, Vec<u8>)> = layers
        .iter()
        .map(|t| (media_types::OCI_LAYER, t.clone(), t.clone()))
        .collect();
    add_image(&layout, "app:1", &descs);
    drop(layout);
    let recorder = Recorder::default();
    let options = Options {
        threads: Some(3),
        ..Options::default()
    };
    convert(dir.path(), None, &options, &recorder).unwrap();
    let events = recorder.0.into_inner().unwrap();
    for (n, tar) in layers.iter().enumerate() {
        let id = events
            .iter()
            .find_map(|e| match e {
                Event::LayerStarted { id, digest, .. } if *digest == Digest::of(tar) => Some(*id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("layer {n} started"));
        let bytes: u64 = events
            .iter()
            .map(|e| match e {
                Event::LayerProgress { id: i, bytes } if *i == id => *bytes,
                _ => 0,
            })
            .sum();
        assert_eq!(bytes, tar.len() as u64);
        assert!(events.contains(&Event::LayerFinished { id }));
    }
}
