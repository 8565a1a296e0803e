//! The local state of push: the cache directory, checked to be private to this user, and the
//! layer cache in it: `(diff_id, codec, level, encoder revision) → (digest, size)` of the
//! compressed blob layerlift produced for that layer, so that a push can name a layer the registry
//! has without compressing it again, on machines that keep their cache between runs.
//!
//! The directory (DIR) is `--cache-dir`, `LAYERLIFT_CACHE_DIR`, `$XDG_CACHE_HOME/layerlift`, or
//! `~/.cache/layerlift`; it also holds the resume journal ([`super::sessions`]). Another user who
//! can write to it could plant entries, so it is used only when it is private ([`checked_dir`]):
//! it and every directory above it owned by this user or root, and none writable by another
//! user unless sticky (as `/tmp` is); the subdirectories layerlift writes in (`layers-v1/`,
//! `uploads-v1/`) owned by this user and writable by no one else. Directories are created 0700,
//! files 0600.
//!
//! One small JSON file per key under `DIR/layers-v1/`, written to a temporary file of a random
//! name ([`write_private`]) and renamed, so concurrent runs never see a partial entry and the last
//! writer wins (every writer writes the same value: compression is deterministic). The directory
//! is bounded: past [`MAX_ENTRIES`] the oldest entries are removed. An entry is only a hint: push
//! confirms with a HEAD that the registry has the blob, and reads it back against the diff_id
//! before a manifest names it ([`super::reuse::confirm`]).

use layerlift_layers::Compression;
use layerlift_manifest::Digest;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
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
    /// The layer cache in the cache directory `dir` (one [`checked_dir`] returned).
    pub fn new(dir: &Path) -> Self {
        Cache {
            dir: dir.join(LAYERS),
        }
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
        let _ = write_private(&self.dir, &key.file_name(), &bytes);
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

/// The subdirectory of the layer cache.
const LAYERS: &str = "layers-v1";
/// The subdirectory of the resume journal ([`super::sessions`]).
pub(crate) const UPLOADS: &str = "uploads-v1";

/// Why a cache directory is not used: another user could write to it.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    /// A directory of the path belongs to another user.
    #[error("{} is owned by uid {owner}, not by this user (uid {me})", path.display())]
    OtherOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// A directory of the path is writable by other users and not sticky.
    #[error("{} is writable by other users (mode {mode:04o})", path.display())]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory of the path is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A directory of the path cannot be examined.
    #[error("cannot examine {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What [`checked_dir`] found.
#[derive(Debug)]
pub(crate) enum CacheDir {
    /// The directory to use: private to this user (created on first write).
    Private(PathBuf),
    /// The default directory (no `--cache-dir`, no `LAYERLIFT_CACHE_DIR`) is not private: the
    /// push goes on without the cache and the journal.
    DefaultUnsafe(PathBuf, CacheDirError),
    /// There is no usable place (no home directory).
    None,
}

/// The cache directory to use: `dir` (`--cache-dir`) or `LAYERLIFT_CACHE_DIR`, refused with an
/// error when another user could write to it; else the default place, left unused
/// ([`CacheDir::DefaultUnsafe`]) when another user could write to it.
pub(crate) fn checked_dir(dir: Option<&Path>) -> Result<CacheDir, (PathBuf, CacheDirError)> {
    let env = std::env::var_os("LAYERLIFT_CACHE_DIR").filter(|d| !d.is_empty());
    let (path, explicit) = match (dir, env) {
        (Some(d), _) => (d.to_path_buf(), true),
        (None, Some(d)) => (PathBuf::from(d), true),
        (None, None) => match dirs::cache_dir() {
            Some(d) => (d.join("layerlift"), false),
            None => return Ok(CacheDir::None),
        },
    };
    match check_private(&path) {
        Ok(()) => Ok(CacheDir::Private(path)),
        Err(e) if explicit => Err((path, e)),
        Err(e) => Ok(CacheDir::DefaultUnsafe(path, e)),
    }
}

/// Check that no other user can write to the cache directory `dir` (see the module docs): it and
/// every existing directory above it (symbolic links resolved) owned by this user or root, and
/// writable by no one else unless sticky; its existing subdirectories `layers-v1/` and
/// `uploads-v1/` owned by this user and writable by no one else (one that is readable by others,
/// as layerlift made them before, is made 0700).
pub(crate) fn check_private(dir: &Path) -> Result<(), CacheDirError> {
    let me = rustix::process::geteuid().as_raw();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CacheDirError::Io { path, source }
    };
    // The nearest directory that exists: what is missing is created 0700 under it.
    let absolute = std::path::absolute(dir).map_err(io(dir))?;
    let mut existing = absolute.as_path();
    let canonical = loop {
        match std::fs::canonicalize(existing) {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match existing.parent() {
                Some(p) => existing = p,
                None => return Err(io(existing)(e)),
            },
            Err(e) => return Err(io(existing)(e)),
        }
    };
    for d in canonical.ancestors() {
        let meta = std::fs::metadata(d).map_err(io(d))?;
        if !meta.is_dir() {
            return Err(CacheDirError::NotADirectory {
                path: d.to_path_buf(),
            });
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(CacheDirError::OtherOwner {
                path: d.to_path_buf(),
                owner: meta.uid(),
                me,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(CacheDirError::Writable {
                path: d.to_path_buf(),
                mode,
            });
        }
    }
    if existing != absolute {
        return Ok(());
    }
    for sub in [LAYERS, UPLOADS] {
        let path = canonical.join(sub);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&path)(e)),
        };
        if !meta.is_dir() {
            return Err(CacheDirError::NotADirectory { path });
        }
        if meta.uid() != me {
            return Err(CacheDirError::OtherOwner {
                path,
                owner: meta.uid(),
                me,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(CacheDirError::Writable { path, mode });
        }
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
                .map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Write `bytes` to `dir/name` (creating `dir` 0700) as a file of mode 0600: written to a
/// temporary file of a random name created in `dir` (never through a link an attacker planted),
/// then renamed over `name`, so a reader sees the old file or the whole new one.
pub(crate) fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn remembers_by_the_whole_key() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
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
        let cache = Cache::new(tmp.path());
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
        let cache = Cache::new(tmp.path());
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

    /// A file's permission bits (not followed through a link).
    pub(crate) fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    /// Entries are 0600 in a 0700 directory, written through a temporary file of a random name:
    /// a link planted at the name the temporary file used to get is not followed.
    #[test]
    fn entries_are_private_and_not_written_through_links() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::new(tmp.path());
        let key = Key::new(Digest::of(b"layer"), Compression::Gzip, 4);
        cache.put(&key, Digest::of(b"gz"), 2);
        let dir = tmp.path().join(LAYERS);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(key.file_name())), 0o600);
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let other = Key::new(Digest::of(b"other"), Compression::Gzip, 4);
        let planted = dir.join(format!(".{}.{}.tmp", other.file_name(), std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        cache.put(&other, Digest::of(b"gz2"), 3);
        assert_eq!(cache.get(&other), Some((Digest::of(b"gz2"), 3)));
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(mode(&dir.join(other.file_name())), 0o600);
    }

    /// A cache directory another user can write to is refused: writable by group or others
    /// without the sticky bit, owned by another user, or below such a directory; a sticky
    /// world-writable parent (`/tmp`) is fine, and so is a directory that does not exist yet
    /// under a private one. Subdirectories readable by others (as older versions made them)
    /// are made 0700.
    #[test]
    fn a_cache_directory_another_user_can_write_to_is_refused() {
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let base = tempfile::tempdir().unwrap();
        let private = base.path().join("private");
        std::fs::create_dir(&private).unwrap();
        set(&private, 0o700);
        check_private(&private).unwrap();
        check_private(&private.join("not/yet")).unwrap();

        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        set(&open, 0o777);
        let e = check_private(&open).unwrap_err();
        assert!(
            matches!(e, CacheDirError::Writable { mode: 0o777, .. }),
            "{e}"
        );
        // Below it: another user could rename it away and put their own in its place.
        let below = open.join("cache");
        std::fs::create_dir(&below).unwrap();
        set(&below, 0o700);
        assert!(matches!(
            check_private(&below).unwrap_err(),
            CacheDirError::Writable { .. }
        ));
        assert!(matches!(
            check_private(&open.join("missing/cache")).unwrap_err(),
            CacheDirError::Writable { .. }
        ));
        set(&open, 0o1777);
        check_private(&below).unwrap();
        set(&below, 0o770);
        assert!(check_private(&below).is_err(), "group-writable");

        // Owned by another user (the tests may run as root, who can give it away).
        let me = rustix::process::geteuid().as_raw();
        let theirs = base.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        set(&theirs, 0o755);
        if me == 0 {
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let e = check_private(&theirs).unwrap_err();
            assert!(
                matches!(e, CacheDirError::OtherOwner { owner: 65534, .. }),
                "{e}"
            );
            // A subdirectory layerlift writes in owned by another user, in a directory of ours.
            std::fs::create_dir(private.join(UPLOADS)).unwrap();
            std::os::unix::fs::chown(private.join(UPLOADS), Some(65534), None).unwrap();
            assert!(matches!(
                check_private(&private).unwrap_err(),
                CacheDirError::OtherOwner { .. }
            ));
            std::fs::remove_dir(private.join(UPLOADS)).unwrap();
        }

        // A subdirectory that others may only read is made private; one they may write refused.
        std::fs::create_dir(private.join(LAYERS)).unwrap();
        set(&private.join(LAYERS), 0o755);
        check_private(&private).unwrap();
        assert_eq!(mode(&private.join(LAYERS)), 0o700);
        set(&private.join(LAYERS), 0o1777);
        assert!(matches!(
            check_private(&private).unwrap_err(),
            CacheDirError::Writable { .. }
        ));
        // A link to another user's directory is judged by where it leads.
        if me == 0 {
            let link = base.path().join("link");
            std::os::unix::fs::symlink(&theirs, &link).unwrap();
            assert!(matches!(
                check_private(&link).unwrap_err(),
                CacheDirError::OtherOwner { .. }
            ));
        }
    }
}
