//! [`Observer`]: progress of a conversion as it happens, for progress bars or logs. Small layers
//! are converted side by side, so events of different layers interleave; [`LayerId`] tells them
//! apart.

use layerlift_layers::Compression;
use layerlift_manifest::Digest;

/// Identifies one layer conversion among the events of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayerId(pub usize);

/// Something that happened during a conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A layer's blob is being read: to check it ([`keep`](Event::LayerStarted::keep)) or to
    /// re-encode it.
    LayerStarted {
        /// This conversion.
        id: LayerId,
        /// The source layer's digest.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// Its stored compression.
        from: Compression,
        /// The target compression.
        to: Compression,
        /// True when the stored bytes are kept and only checked.
        keep: bool,
    },
    /// More of the layer's stored bytes were read.
    LayerProgress {
        /// This conversion.
        id: LayerId,
        /// Bytes read since the previous event.
        bytes: u64,
    },
    /// The layer is done (converted, or failed: the error comes with the result).
    LayerFinished {
        /// This conversion.
        id: LayerId,
    },
}

/// Receives [`Event`]s. Called from the encoder threads, so it must be `Sync`; keep it quick.
pub trait Observer: Sync {
    /// One event.
    fn event(&self, event: &Event);
}

/// An [`Observer`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Observer for NoProgress {
    fn event(&self, _: &Event) {}
}
