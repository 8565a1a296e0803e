//! The progress a push reports, against a real registry: a layer streamed while it is compressed
//! counts in the push's total and done as it goes up, not only once it is finished, and every
//! byte is counted once.

use layerlift_push::{Observer, Options, Progress, push};
use layerlift_registry::{Client, Credential, Reference, RetryPolicy, TransportOptions};
use layerlift_testkit::Registry;
use std::sync::Mutex;

/// A `docker save` archive of one layer holding `size` bytes of poorly compressible data (so that
/// its gzip is several MiB and goes up in several writes).
fn archive(dir: &std::path::Path, size: usize) -> std::path::PathBuf {
    let mut data = Vec::with_capacity(size);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    layer.append_data(&mut h, "data.bin", &data[..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = layerlift_manifest::Digest::of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let config_digest = layerlift_manifest::Digest::of(config.as_bytes());
    let config_name = format!("{}.json", config_digest.hex());
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["progress:1"],"Layers":["layer/layer.tar"]}}]"#
    );
    let path = dir.join("archive.tar");
    let mut out = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for (name, bytes) in [
        (config_name.as_str(), config.as_bytes()),
        ("layer/layer.tar", &layer[..]),
        ("manifest.json", manifest.as_bytes()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        out.append_data(&mut h, name, bytes).unwrap();
    }
    out.finish().unwrap();
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
