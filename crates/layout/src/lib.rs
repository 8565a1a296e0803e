//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) as layerlift writes and reads it.
//!
//! Invariants this crate keeps:
//! - a blob becomes visible under `blobs/sha256/<hex>` only after it was hashed while being written
//!   and matched its digest (it is written to a temp file inside the layout and renamed into place);
//! - `index.json` is replaced atomically (temp file, fsync, rename) under an exclusive lock, and every
//!   top-level descriptor it lists points at a blob that is present;
//! - so an interrupted writer leaves either the old `index.json` or the new one, never one that points
//!   at a missing or partial blob. Leftover temp files live in `.layerlift-tmp/` and are not blobs;
//! - in a durable layout (every one but [`Layout::create_scratch`]'s) that holds after a power loss
//!   too: a blob's file is fsynced before it is renamed into `blobs/sha256/`, and that directory is
//!   fsynced before `index.json` is replaced (itself written, fsynced, renamed, and its directory
//!   fsynced), so no `index.json` on disk names a blob that is not on disk;
//! - a process writing blobs holds a shared lock on `.layerlift-writers` until it drops its
//!   [`Layout`]; deleting blobs ([`Layout::exclusively`]) and removing `.layerlift-tmp/` take it
//!   exclusively, so neither happens under a writer that may rely on a blob it found present.

#![warn(missing_docs)]

mod blob;
mod copy;
mod error;
mod hashing;

pub use blob::{BlobWriter, StagedBlob};
pub use copy::{Copier, CopyError};
pub use error::LayoutError;
pub use hashing::HashingWriter;
pub use layerlift_manifest::Digest;

use layerlift_manifest::{Descriptor, ImageConfig, Index, Manifest, Platform, parse_json};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The content of the `oci-layout` file layerlift writes.
pub const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// Largest JSON document (manifest, index, config) read into memory.
pub const MAX_JSON_BLOB: u64 = 64 << 20;
const TMP_DIR: &str = ".layerlift-tmp";
const LOCK_FILE: &str = ".layerlift-lock";
const WRITERS_LOCK_FILE: &str = ".layerlift-writers";

/// An OCI image layout directory.
#[derive(Debug)]
pub struct Layout {
    root: PathBuf,
    /// fsync blobs, index.json, oci-layout and their directories when writing them (off for a
    /// scratch layout).
    durable: bool,
    /// This process's shared lock on `.layerlift-writers`, taken before it first writes a blob.
    writer: Mutex<Option<File>>,
    /// Blob fsyncs running in the background.
    syncs: Arc<blob::SyncSlots>,
}

impl Layout {
    /// Open an existing layout: `oci-layout` and `index.json` must be there.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let root = root.into();
        let marker = root.join("oci-layout");
        let text = fs::read(&marker).map_err(|source| LayoutError::io(&marker, source))?;
        check_oci_layout(&marker, &text)?;
        let index = root.join("index.json");
        if !index.is_file() {
            return Err(LayoutError::NotALayout {
                path: root,
                why: "index.json is missing".into(),
            });
        }
        Ok(Layout {
            root,
            durable: true,
            writer: Mutex::new(None),
            syncs: Arc::default(),
        })
    }

    /// Open the layout at `root`, creating it (and the directory) when absent. An existing directory
    /// that is not a layout must be empty.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        Self::create_with(root.into(), true)
    }

    /// [`Layout::create`] for a layout only this process uses and removes (push's temporary
    /// layout of an archive): the same atomic renames, without the fsyncs that make a layout
    /// survive a power loss.
    pub fn create_scratch(root: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        Self::create_with(root.into(), false)
    }

    fn create_with(root: PathBuf, durable: bool) -> Result<Self, LayoutError> {
        if root.join("oci-layout").exists() {
            let mut layout = Layout::open(&root)?;
            layout.durable = durable;
            layout.hold_writer_lock()?;
            fs::create_dir_all(layout.blobs_dir())
                .map_err(|e| LayoutError::io(layout.blobs_dir(), e))?;
            return Ok(layout);
        }
        if root.exists() && !interrupted_create(&root)? {
            let mut entries = fs::read_dir(&root).map_err(|e| LayoutError::io(&root, e))?;
            if entries.next().is_some() {
                return Err(LayoutError::NotALayout {
                    path: root,
                    why: "directory is not empty and holds no oci-layout file".into(),
                });
            }
        }
        fs::create_dir_all(&root).map_err(|e| LayoutError::io(&root, e))?;
        let layout = Layout {
            root,
            durable,
            writer: Mutex::new(None),
            syncs: Arc::default(),
        };
        layout.hold_writer_lock()?;
        fs::create_dir_all(layout.blobs_dir())
            .map_err(|e| LayoutError::io(layout.blobs_dir(), e))?;
        // index.json first, oci-layout last: a directory with oci-layout is a complete layout.
        if !layout.root.join("index.json").exists() {
            layout.write_atomically("index.json", &index_bytes(&Index::empty())?)?;
        }
        layout.write_atomically("oci-layout", OCI_LAYOUT_CONTENT.as_bytes())?;
        Ok(layout)
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where the blob with `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// Is the blob present?
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Open a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, LayoutError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                LayoutError::MissingBlob {
                    digest: *digest,
                    path,
                }
            } else {
                LayoutError::io(path, source)
            }
        })
    }

    /// Read a small blob (manifest, index, config) into memory, verifying its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        file.take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| LayoutError::io(&path, e))?;
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(LayoutError::TooLarge {
                path,
                limit: MAX_JSON_BLOB,
            });
        }
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(LayoutError::DigestMismatch {
                path,
                expected: *digest,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Start writing a blob of not-yet-known digest; see [`BlobWriter`].
    pub fn blob_writer(&self) -> Result<BlobWriter, LayoutError> {
        self.hold_writer_lock()?;
        BlobWriter::new(
            &self.root.join(TMP_DIR),
            self.blobs_dir(),
            self.durable.then(|| Arc::clone(&self.syncs)),
        )
    }

    /// Take this process's shared lock on `.layerlift-writers` unless it holds it already, and
    /// make the temp dir when taking it: nobody removes that dir while the lock is held, so blob
    /// writers need not check for it again.
    fn hold_writer_lock(&self) -> Result<(), LayoutError> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if writer.is_none() {
            let file = open_lock(&self.root.join(WRITERS_LOCK_FILE))?;
            file.lock_shared()
                .map_err(|e| LayoutError::io(self.root.join(WRITERS_LOCK_FILE), e))?;
            let tmp = self.root.join(TMP_DIR);
            fs::create_dir_all(&tmp).map_err(|e| LayoutError::io(&tmp, e))?;
            *writer = Some(file);
        }
        Ok(())
    }

    /// Run `f` while no other process writes to this layout: this process gives up its own writer
    /// lock, waits until every other writer has dropped its [`Layout`] (and makes new ones wait),
    /// and holds the `index.json` lock. For deleting blobs: a writer may have found a blob present
    /// and skipped writing it, and will name it in `index.json` later; once it is done, that
    /// `index.json` says so. `f` must not call [`Layout::update_index`] (it would wait for itself).
    pub fn exclusively<T>(&self, f: impl FnOnce() -> T) -> Result<T, LayoutError> {
        drop(self.writer.lock().unwrap_or_else(|e| e.into_inner()).take());
        let writers_path = self.root.join(WRITERS_LOCK_FILE);
        let writers = open_lock(&writers_path)?;
        writers
            .lock()
            .map_err(|e| LayoutError::io(&writers_path, e))?;
        let index_path = self.root.join(LOCK_FILE);
        let index = open_lock(&index_path)?;
        index.lock().map_err(|e| LayoutError::io(&index_path, e))?;
        let out = f();
        // No writer is using the temp dir now: remove it if empty, as the last writer would.
        let _ = fs::remove_dir(self.root.join(TMP_DIR));
        drop(index);
        drop(writers);
        Ok(out)
    }

    /// Store `bytes` as a blob and return its digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest, LayoutError> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(|e| LayoutError::io(w.temp_path(), e))?;
        let staged = w.finish()?;
        let digest = staged.digest();
        staged.commit()?;
        Ok(digest)
    }

    /// The platform of the image manifest `manifest` describes, from its config's `os`,
    /// `architecture` and `variant`; `None` when the config names no OS or architecture.
    pub fn image_platform(&self, manifest: &Descriptor) -> Result<Option<Platform>, LayoutError> {
        let bad = |digest: &Digest| {
            let path = self.blob_path(digest);
            move |source| LayoutError::Json { path, source }
        };
        let bytes = self.read_blob(&manifest.digest)?;
        let m: Manifest = parse_json("image manifest", &bytes).map_err(bad(&manifest.digest))?;
        let bytes = self.read_blob(&m.config.digest)?;
        let config: ImageConfig =
            parse_json("image config", &bytes).map_err(bad(&m.config.digest))?;
        Ok(match (config.os, config.architecture) {
            (Some(os), Some(architecture)) if !os.is_empty() && !architecture.is_empty() => {
                Some(Platform {
                    architecture,
                    os,
                    os_version: None,
                    os_features: None,
                    variant: config.variant.filter(|v| !v.is_empty()),
                    extra: Default::default(),
                })
            }
            _ => None,
        })
    }

    /// Read `index.json`.
    pub fn index(&self) -> Result<Index, LayoutError> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(|e| LayoutError::io(&path, e))?;
        parse_json("index.json", &bytes).map_err(|source| LayoutError::Json { path, source })
    }

    /// Change `index.json` atomically: under an exclusive lock, read it, let `change` edit it, check
    /// that every top-level descriptor's blob is present, write it to a temp file, fsync, rename —
    /// unless the new bytes are the ones already there (then nothing is written). Decide what to
    /// change before calling: `change` runs under the lock and cannot fail.
    pub fn update_index(&self, change: impl FnOnce(&mut Index)) -> Result<(), LayoutError> {
        let lock_path = self.root.join(LOCK_FILE);
        let lock = open_lock(&lock_path)?;
        lock.lock().map_err(|e| LayoutError::io(&lock_path, e))?;
        let mut index = self.index()?;
        change(&mut index);
        for desc in &index.manifests {
            if !self.has_blob(&desc.digest) {
                return Err(LayoutError::MissingBlob {
                    digest: desc.digest,
                    path: self.blob_path(&desc.digest),
                });
            }
        }
        // The same bytes as now are not written again: index.json keeps its mtime, so that build
        // tools comparing times (make) see an unchanged layout as unchanged.
        let bytes = index_bytes(&index)?;
        if fs::read(self.root.join("index.json")).ok().as_deref() != Some(bytes.as_slice()) {
            if self.durable {
                // The renames of the blobs it names reach the disk before index.json's does.
                sync_dir(&self.blobs_dir())?;
                sync_dir(&self.root.join("blobs"))?;
            }
            self.write_atomically("index.json", &bytes)?;
        }
        drop(lock);
        Ok(())
    }

    /// Write `name` in the layout root via a temp file, fsync and rename.
    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), LayoutError> {
        let target = self.root.join(name);
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .tempfile_in(&self.root)
            .map_err(|e| LayoutError::io(&self.root, e))?;
        tmp.write_all(bytes)
            .map_err(|e| LayoutError::io(tmp.path(), e))?;
        if self.durable {
            tmp.as_file()
                .sync_all()
                .map_err(|e| LayoutError::io(tmp.path(), e))?;
        }
        blob::make_readable(tmp.path())?;
        tmp.persist(&target)
            .map_err(|e| LayoutError::io(&target, e.error))?;
        if self.durable {
            sync_dir(&self.root)?;
        }
        Ok(())
    }
}

/// Open (creating) a lock file.
fn open_lock(path: &Path) -> Result<File, LayoutError> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| LayoutError::io(path, e))
}

/// fsync a directory: the entries created, renamed or removed in it reach the disk.
pub(crate) fn sync_dir(path: &Path) -> Result<(), LayoutError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| LayoutError::io(path, e))
}

/// Does `root` hold only what a `create` that was interrupted before writing `oci-layout` leaves:
/// empty `blobs/sha256/`, an `index.json` listing nothing, temporary files of those writes? Such a
/// directory is taken over by the next `create` rather than refused as foreign.
fn interrupted_create(root: &Path) -> Result<bool, LayoutError> {
    let io = |e| LayoutError::io(root, e);
    let is_empty_dir = |p: &Path| fs::read_dir(p).is_ok_and(|mut d| d.next().is_none());
    for entry in fs::read_dir(root).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let ok = match name.as_str() {
            "blobs" => {
                is_empty_dir(&path)
                    || fs::read_dir(&path).is_ok_and(|d| {
                        d.filter_map(Result::ok)
                            .all(|e| e.file_name() == "sha256" && is_empty_dir(&e.path()))
                    })
            }
            "index.json" => fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Index>(&b).ok())
                .is_some_and(|i| i.manifests.is_empty()),
            TMP_DIR => is_empty_dir(&path),
            LOCK_FILE | WRITERS_LOCK_FILE => true,
            n => n.starts_with(".index.json.") || n.starts_with(".oci-layout."),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Drop for Layout {
    fn drop(&mut self) {
        // Tidy up the temp dir when no writer (of any process) is using it: this one's writer lock
        // released, the exclusive lock taken without waiting; and only when it is empty.
        let held = self
            .writer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if held.is_none() {
            return;
        }
        drop(held);
        if let Ok(writers) = File::open(self.root.join(WRITERS_LOCK_FILE))
            && writers.try_lock().is_ok()
        {
            let _ = fs::remove_dir(self.root.join(TMP_DIR));
        }
    }
}

fn index_bytes(index: &Index) -> Result<Vec<u8>, LayoutError> {
    let mut bytes =
        serde_json::to_vec_pretty(index).map_err(|e| LayoutError::Serialize(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn check_oci_layout(path: &Path, text: &[u8]) -> Result<(), LayoutError> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| LayoutError::NotALayout {
            path: path.to_path_buf(),
            why: format!("oci-layout is not JSON: {e}"),
        })?;
    match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(v) if v.starts_with("1.") => Ok(()),
        Some(v) => Err(LayoutError::NotALayout {
            path: path.to_path_buf(),
            why: format!("unsupported imageLayoutVersion {v}"),
        }),
        None => Err(LayoutError::NotALayout {
            path: path.to_path_buf(),
            why: "oci-layout has no imageLayoutVersion".into(),
        }),
    }
}

#[cfg(test)]
mod tests;
