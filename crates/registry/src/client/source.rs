//! Blobs to upload: the [`BlobSource`] trait (digest, size, a reader from any offset) and its
//! two implementations, a file ([`FileSource`]) and bytes in memory ([`BytesSource`]).

use layerlift_manifest::Digest;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

/// A blob to upload: its digest, its size, and a way to read it from any offset (to retry and
/// to resume chunked uploads).
pub trait BlobSource: Sync {
    /// The blob's digest.
    fn digest(&self) -> Digest;
    /// The blob's size in bytes.
    fn size(&self) -> u64;
    /// A reader positioned at `offset`.
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>>;
    /// For messages: a path or a description.
    fn describe(&self) -> String;
}

/// A blob stored in a file.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The file holding exactly the blob's bytes.
    pub path: PathBuf,
    /// The blob's digest (not checked before sending: the registry checks it).
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
}

impl BlobSource for FileSource {
    fn digest(&self) -> Digest {
        self.digest
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f))
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A blob held in memory (configs, small test blobs).
#[derive(Debug, Clone)]
pub struct BytesSource {
    /// The blob's bytes.
    pub bytes: Arc<[u8]>,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl BytesSource {
    /// A blob of these bytes; its digest is computed here.
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes = bytes.into();
        let digest = Digest::of(&bytes);
        BytesSource { bytes, digest }
    }
}

impl BlobSource for BytesSource {
    fn digest(&self) -> Digest {
        self.digest
    }
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let start = (offset as usize).min(self.bytes.len());
        Ok(Box::new(&self.bytes[start..]))
    }
    fn describe(&self) -> String {
        format!("in-memory blob {}", self.digest)
    }
}
