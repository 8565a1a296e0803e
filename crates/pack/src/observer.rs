//! [`Observer`]: progress of a pack as it happens, for progress bars or logs. Blobs are written one
//! after the other, in the archive's order.

use layerlift_manifest::Digest;

/// Something that happened while packing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Everything is planned and checked; writing starts. `bytes` is what will be read from the
    /// source while writing (a layer written decompressed was decoded once already, while it was
    /// checked: [`Step::Measure`], before this event).
    Started {
        /// Blobs to write.
        blobs: usize,
        /// Bytes to read.
        bytes: u64,
    },
    /// A blob is being read.
    BlobStarted {
        /// Its digest in the layout.
        digest: Digest,
        /// Its size in the layout.
        size: u64,
        /// What is done with it.
        step: Step,
    },
    /// More of the blob was read.
    Progress {
        /// Bytes read since the previous event.
        bytes: u64,
    },
    /// The blob is done.
    BlobFinished {
        /// Its digest in the layout.
        digest: Digest,
    },
}

/// What a [`Event::BlobStarted`] does with the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Copied into the archive as it is.
    Copy,
    /// Decompressed to learn its uncompressed size and check its diff_id.
    Measure,
    /// Decompressed into the archive.
    Decompress,
}

/// Receives [`Event`]s; keep it quick.
pub trait Observer {
    /// One event.
    fn event(&self, event: &Event);
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Observer for NoProgress {
    fn event(&self, _: &Event) {}
}
