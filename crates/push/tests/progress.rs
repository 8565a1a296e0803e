//! The progress a push reports, against a real registry: a layer streamed while it is compressed
//! counts in the push's total and done as it goes up, not only once it is finished, and every
//! byte is counted once.

use layerlift_push::{Observer, Options, Progress, push};
use layerlift_registry::{Client, Credential, Reference, RetryPolicy, TransportOptions};
use layerlift_testkit::Registry;
use layerlift_testkit::image::{self, LayerNames, TestImage};
use std::sync::Mutex;

/// A `docker save` archive of one layer holding `size` bytes of poorly compressible data (so that
/// its gzip is several MiB and goes up in several writes).
fn archive(dir: &std::path::Path, size: usize) -> std::path::PathBuf {
    let layer = image::layer_tar(&[("data.bin", &image::noise(1, size))]);
    let bytes = TestImage::new("progress:1", vec![layer]).docker_archive(LayerNames::Directories);
    let path = dir.join("archive.tar");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Progress>>);

impl Observer for Recorder {
    fn event(&self, _: &layerlift_push::Event) {}
    fn progress(&self, p: &Progress) {
        self.0.lock().unwrap().push(p.clone());
    }
}

#[test]
fn a_streamed_layer_counts_as_it_goes_up_and_once() {
    let reg = Registry::anonymous();
    let work = tempfile::tempdir().unwrap();
    let archive = archive(work.path(), 12 << 20);
    let client = Client::new(
        &reg.addr(),
        Credential::Anonymous,
        TransportOptions::default(),
        RetryPolicy::none(),
    )
    .unwrap();
    let dest = Reference::parse(&format!("{}/progress:1", reg.addr())).unwrap();
    let options = Options {
        cache_dir: Some(work.path().join("cache")),
        ..Options::default()
    };
    let seen = Recorder::default();
    push(archive.to_str().unwrap(), &dest, &client, &options, &seen).unwrap();

    let seen = seen.0.into_inner().unwrap();
    let sum = |pick: fn(&Progress) -> Option<u64>| seen.iter().filter_map(pick).sum::<u64>();
    let queued = sum(|p| match p {
        Progress::Queued { bytes } => Some(*bytes),
        _ => None,
    });
    let advanced = sum(|p| match p {
        Progress::Advanced { bytes } => Some(*bytes),
        _ => None,
    });
    // The stored layer and config, once each.
    let stored: u64 = std::fs::read_dir(
        reg.storage_dir()
            .join("docker/registry/v2/repositories/progress/_layers/sha256"),
    )
    .unwrap()
    .map(|e| {
        let hex = e.unwrap().file_name().into_string().unwrap();
        std::fs::metadata(
            reg.storage_dir()
                .join("docker/registry/v2/blobs/sha256")
                .join(&hex[..2])
                .join(&hex)
                .join("data"),
        )
        .unwrap()
        .len()
    })
    .sum();
    assert_eq!(queued, stored, "{seen:?}");
    assert_eq!(advanced, stored, "{seen:?}");
    // The layer (over 12 MiB of gzip) was counted in parts while it went up, not in one step at
    // its end.
    let parts = seen
        .iter()
        .filter(|p| matches!(p, Progress::Advanced { bytes } if *bytes > 0 && *bytes < 4 << 20))
        .count();
    assert!(parts > 3, "{seen:?}");
}
