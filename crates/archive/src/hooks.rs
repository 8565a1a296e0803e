//! What a caller hears while an archive is read ([`crate::Options::on_blob`]): each layer published
//! into the layout early ([`PublishedBlob`]), large layers handed over while they are compressed
//! ([`GrowingBlob`]), and the caller's question whether reading should stop.

use crate::growing::GrowingBlob;
use layerlift_manifest::Digest;
use std::path::PathBuf;
use std::sync::Arc;

/// A layer published into the layout while the archive was still being read ([`Options::on_blob`](crate::Options::on_blob)).
#[derive(Debug, Clone)]
pub struct PublishedBlob {
    /// The hook's streaming callback ([`BlobHook::streaming`]) was handed this layer while it was
    /// being compressed.
    pub streamed: bool,
    /// The sha256 its bytes were hashed to while being written: its name in the layout.
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// `blobs/sha256/<hex>` in the layout.
    pub path: PathBuf,
}

/// The callback of [`Options::on_blob`](crate::Options::on_blob), and optionally a question asked as the archive is read:
/// should reading stop ([`BlobHook::stopping_when`])?
#[derive(Clone)]
pub struct BlobHook {
    published: Arc<dyn Fn(&PublishedBlob) + Send + Sync>,
    stop: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// Layers of at least this many uncompressed bytes, and the callback they go to.
    streaming: Option<(u64, StreamFn)>,
}

/// Where [`BlobHook::streaming`] hands layers.
type StreamFn = Arc<dyn Fn(GrowingBlob) + Send + Sync>;

impl BlobHook {
    /// A hook that calls `f` for every layer published while the archive is read.
    pub fn new(f: impl Fn(&PublishedBlob) + Send + Sync + 'static) -> Self {
        BlobHook {
            published: Arc::new(f),
            stop: None,
            streaming: None,
        }
    }

    /// Also hand every uncompressed layer of at least `min_bytes` that is compressed on the way
    /// ([`Options::encoding`](crate::Options::encoding)) to `f` the moment its compression starts, as a [`GrowingBlob`]
    /// that reads the compressed bytes while they are written to the layout. The layer is then
    /// published as usual, with [`PublishedBlob::streamed`] set.
    pub fn streaming(
        mut self,
        min_bytes: u64,
        f: impl Fn(GrowingBlob) + Send + Sync + 'static,
    ) -> Self {
        self.streaming = Some((min_bytes, Arc::new(f)));
        self
    }

    /// Also ask `stop` after every buffer the reader takes in (keep it cheap: an atomic load);
    /// once it says `true`, reading ends with [`ArchiveError::Stopped`](crate::ArchiveError::Stopped). For a caller that has
    /// failed meanwhile (push: an upload the registry refused) and has its own error to report.
    pub fn stopping_when(mut self, stop: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.stop = Some(Arc::new(stop));
        self
    }

    pub(crate) fn call(&self, blob: &PublishedBlob) {
        (self.published)(blob)
    }

    /// The streaming callback, if a layer of `size` uncompressed bytes is to be streamed.
    pub(crate) fn stream_for(&self, size: u64) -> Option<&(dyn Fn(GrowingBlob) + Send + Sync)> {
        match &self.streaming {
            Some((min, f)) if size >= *min => Some(&**f),
            _ => None,
        }
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s())
    }
}

impl std::fmt::Debug for BlobHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobHook")
    }
}
