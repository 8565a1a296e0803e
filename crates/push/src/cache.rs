//! The local layer cache: `(diff_id, codec, level, encoder revision) → (digest, size)` of the
//! compressed blob layerlift produced for that layer, so that a push can name a layer the registry
//! has without compressing it again, on machines that keep their cache between runs.
//!
//! One small JSON file per key under `DIR/layers-v1/` (DIR: `--cache-dir`, `LAYERLIFT_CACHE_DIR`,
//! `$XDG_CACHE_HOME/layerlift`, or `~/.cache/layerlift`), written to a temporary name and renamed,
//! so concurrent runs never see a partial entry and the last writer wins (every writer writes the
//! same value: compression is deterministic). The directory is bounded: past [`MAX_ENTRIES`] the
//! oldest entries are removed. An entry is only a hint: push confirms with a HEAD that the registry
//! has the blob, and reads it back against the diff_id before a manifest names it
//! ([`super::reuse::confirm`]).

use layerlift_layers::Compression;
use layerlift_manifest::Digest;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Entries kept before the oldest are pruned (each is about 300 bytes).
pub const MAX_ENTRIES: usize = 20_000;

/// What a cache entry is keyed by: everything the compressed bytes depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    #[serde(rename = "diffId")]
    pub diff_id: Digest,
    pub codec: String,
    pub level: i32,
    pub encoder: String,
}

impl Key {
    /// The key for a layer compressed by this build of layerlift.
    pub fn new(diff_id: Digest, compression: Compression, level: i32) -> Self {
        Key {
            diff_id,
            codec: compression.name().to_string(),
            level,
            encoder: layerlift_layers::ENCODER_REVISION.to_string(),
        }
    }

    fn file_name(&self) -> String {
        let text = serde_json::to_vec(self).expect("a key serialises");
        format!("{}.json", Digest::of(&text).hex())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: Key,
    digest: Digest,
    size: u64,
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache at `dir`, or at the default place; `None` when there is no usable place.
    pub fn open(dir: Option<&Path>) -> Option<Self> {
        Some(Cache {
            dir: base_dir(dir)?.join("layers-v1"),
        })
    }

    /// The blob this key produced before, if the cache remembers it.
    pub fn get(&self, key: &Key) -> Option<(Digest, u64)> {
        let bytes = std::fs::read(self.dir.join(key.file_name())).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        (entry.key == *key).then_some((entry.digest, entry.size))
    }

    /// Remember what `key` produced. Best effort: a cache that cannot be written is no error.
    pub fn put(&self, key: &Key, digest: Digest, size: u64) {
        if self.get(key) == Some((digest, size)) {
            return;
        }
        let entry = Entry {
            key: key.clone(),
            digest,
            size,
        };
        let Ok(bytes) = serde_json::to_vec(&entry) else {
            return;
        };
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let final_path = self.dir.join(key.file_name());
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", key.file_name(), std::process::id()));
        if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, &final_path).is_ok() {
            return;
        }
        let _ = std::fs::remove_file(&tmp);
    }

    /// Forget what `key` produced (an entry found to be wrong). Best effort, like [`Self::put`].
    pub fn remove(&self, key: &Key) {
        let _ = std::fs::remove_file(self.dir.join(key.file_name()));
    }

    /// Remove the oldest entries while there are more than `max`.
    pub fn prune(&self, max: usize) {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = read
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if files.len() <= max {
            return;
        }
        files.sort();
        let excess = files.len() - max;
        for (_, path) in files.into_iter().take(excess) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The cache directory: `dir`, or the default place; `None` when there is no usable place.
pub fn base_dir(dir: Option<&Path>) -> Option<PathBuf> {
    match dir {
        Some(d) => Some(d.to_path_buf()),
        None => default_dir(),
    }
}

fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LAYERLIFT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    Some(dirs::cache_dir()?.join("layerlift"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_the_whole_key() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(Some(tmp.path())).unwrap();
        let id = Digest::of(b"layer");
        let blob = Digest::of(b"compressed");
        let key = Key::new(id, Compression::Gzip, 4);
        assert_eq!(cache.get(&key), None);
        cache.put(&key, blob, 10);
        assert_eq!(cache.get(&key), Some((blob, 10)));
        assert_eq!(cache.get(&Key::new(id, Compression::Gzip, 5)), None);
        assert_eq!(cache.get(&Key::new(id, Compression::Zstd, 4)), None);
        // A corrupt entry is a miss, not an error.
        let file = tmp.path().join("layers-v1").join(key.file_name());
        std::fs::write(&file, b"{not json").unwrap();
        assert_eq!(cache.get(&key), None);
    }

    #[test]
    fn concurrent_writers_leave_whole_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(Some(tmp.path())).unwrap();
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let cache = cache.clone();
                s.spawn(move || {
                    for i in 0..50u8 {
                        let key = Key::new(Digest::of(&[i]), Compression::Gzip, 4);
                        cache.put(&key, Digest::of(&[i, 1]), u64::from(i));
                        if let Some(got) = cache.get(&key) {
                            assert_eq!(got, (Digest::of(&[i, 1]), u64::from(i)), "writer {t}");
                        }
                    }
                });
            }
        });
        for i in 0..50u8 {
            let key = Key::new(Digest::of(&[i]), Compression::Gzip, 4);
            assert_eq!(cache.get(&key), Some((Digest::of(&[i, 1]), u64::from(i))));
        }
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("layers-v1"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 50, "no temporary files left: {names:?}");
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(Some(tmp.path())).unwrap();
        for i in 0..10u8 {
            let key = Key::new(Digest::of(&[i]), Compression::Gzip, 4);
            cache.put(&key, Digest::of(&[i]), 1);
            let f = std::fs::File::options()
                .write(true)
                .open(tmp.path().join("layers-v1").join(key.file_name()))
                .unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(1000 + u64::from(i));
            f.set_modified(t).unwrap();
        }
        cache.prune(4);
        let kept: Vec<u8> = (0..10u8)
            .filter(|i| {
                cache
                    .get(&Key::new(Digest::of(&[*i]), Compression::Gzip, 4))
                    .is_some()
            })
            .collect();
        assert_eq!(kept, vec![6, 7, 8, 9]);
    }
}
