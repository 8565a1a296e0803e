//! Writing blobs: hash while writing to a temp file inside the layout, then rename into place.

use crate::HashingWriter;
use crate::LayoutError;
use layerlift_manifest::Digest;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use tempfile::TempPath;

/// A blob being written. Bytes go to a temp file in the layout and through sha256 (on a thread of
/// its own once the blob is larger than a buffer, see [`HashingWriter`]); nothing is visible under
/// `blobs/` until [`StagedBlob::commit`]. Dropping it removes the temp file.
#[derive(Debug)]
pub struct BlobWriter {
    out: HashingWriter<File>,
    temp: TempPath,
    blobs_dir: PathBuf,
    /// fsync the file (in the background, see [`SyncSlots`]) before it can be renamed into place.
    durable: Option<Arc<SyncSlots>>,
}

/// Most blob fsyncs running at once in the background.
const MAX_SYNCS: usize = 4;

/// The background fsyncs of finished blobs of one layout, at most [`MAX_SYNCS`] at a time: the
/// writer goes on with the next blob while the disk catches up with this one, and a blob's
/// rename waits for its own fsync ([`StagedBlob::commit`]).
#[derive(Debug, Default)]
pub(crate) struct SyncSlots {
    busy: Mutex<usize>,
    freed: Condvar,
}

impl SyncSlots {
    /// fsync `file`'s data on a thread of its own once a slot is free; inline if no thread starts.
    fn start(self: &Arc<Self>, file: File) -> JoinHandle<io::Result<()>> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= MAX_SYNCS {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
        drop(busy);
        let slots = Arc::clone(self);
        let release = move || {
            *slots.busy.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            slots.freed.notify_one();
        };
        let file = Arc::new(file);
        let (file2, release2) = (Arc::clone(&file), release.clone());
        match std::thread::Builder::new()
            .name("layerlift-fsync".into())
            .spawn(move || {
                let r = file2.sync_data();
                release2();
                r
            }) {
            Ok(handle) => handle,
            Err(_) => {
                let r = file.sync_data();
                release();
                std::thread::spawn(move || r)
            }
        }
    }
}

impl BlobWriter {
    pub(crate) fn new(
        tmp_dir: &Path,
        blobs_dir: PathBuf,
        durable: Option<Arc<SyncSlots>>,
    ) -> Result<Self, LayoutError> {
        let named = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(tmp_dir)
            .map_err(|e| LayoutError::io(tmp_dir, e))?;
        let (file, temp) = named.into_parts();
        Ok(BlobWriter {
            out: HashingWriter::new(file),
            temp,
            blobs_dir,
            durable,
        })
    }

    /// The temp file being written (for error messages).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Write a whole buffer without copying it; returns a buffer to fill next (see
    /// [`HashingWriter::write_owned`]).
    pub fn write_owned(&mut self, full: Vec<u8>) -> io::Result<Vec<u8>> {
        self.out.write_owned(full)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.written()
    }

    /// Finish writing: the digest and size are now known, the blob is staged but not yet visible.
    /// In a durable layout its fsync starts now, in the background; [`StagedBlob::commit`] waits
    /// for it before the rename.
    pub fn finish(self) -> Result<StagedBlob, LayoutError> {
        let (digest, size, file) = self
            .out
            .finish()
            .map_err(|e| LayoutError::io(&*self.temp, e))?;
        let sync = self.durable.map(|slots| slots.start(file));
        Ok(StagedBlob {
            digest,
            size,
            temp: self.temp,
            blobs_dir: self.blobs_dir,
            sync,
        })
    }

    /// Finish, check the digest if one is expected, and publish the blob.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64), LayoutError> {
        let staged = self.finish()?;
        if let Some(expected) = expected {
            staged.verify(expected)?;
        }
        let (digest, size) = (staged.digest(), staged.size());
        staged.commit()?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A completely written, hashed blob that is not yet visible in the layout.
#[derive(Debug)]
pub struct StagedBlob {
    digest: Digest,
    size: u64,
    temp: TempPath,
    blobs_dir: PathBuf,
    /// The fsync of the file, running (durable layouts).
    sync: Option<JoinHandle<io::Result<()>>>,
}

impl StagedBlob {
    /// The sha256 of the bytes written: the name the blob gets in `blobs/sha256/`.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// How many bytes were written.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The temp file holding the bytes (to read them back before committing).
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Fail unless the content has digest `expected`.
    pub fn verify(&self, expected: &Digest) -> Result<(), LayoutError> {
        if self.digest != *expected {
            return Err(LayoutError::DigestMismatch {
                path: self.temp.to_path_buf(),
                expected: *expected,
                actual: self.digest,
            });
        }
        Ok(())
    }

    /// Rename the blob into `blobs/sha256/<hex>`. If that blob already exists it is kept (same
    /// content by construction) and the temp file is removed. The rename reaches the disk when
    /// [`crate::Layout::update_index`] fsyncs the directory, before `index.json` names the blob.
    pub fn commit(mut self) -> Result<(), LayoutError> {
        let target = self.blobs_dir.join(self.digest.hex());
        if target.is_file() {
            return Ok(()); // dropping `temp` deletes the staged copy
        }
        if let Some(sync) = self.sync.take() {
            sync.join()
                .unwrap_or_else(|_| Err(io::Error::other("the fsync thread panicked")))
                .map_err(|e| LayoutError::io(&*self.temp, e))?;
        }
        make_readable(&self.temp)?;
        self.temp
            .persist(&target)
            .map_err(|e| LayoutError::io(&target, e.error))?;
        Ok(())
    }
}

/// Blobs and index.json are world-readable like every other tool's (temp files start as 0600).
pub(crate) fn make_readable(path: &Path) -> Result<(), LayoutError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644))
            .map_err(|e| LayoutError::io(path, e))?;
    }
    let _ = path;
    Ok(())
}
