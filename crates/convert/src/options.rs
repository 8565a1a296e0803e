//! [`Options`]: what a conversion produces (compression, level, manifest format), which images it
//! touches, and how (threads, reproducible times, clean-up).

use crate::error::OptionsError;
use layerlift_layers::{Compression, Encoding};
use layerlift_manifest::convert::Format;

/// What to convert to. [`Options::default`] is gzip at its default level, OCI manifests, every
/// image, all cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Layer compression to produce: [`Compression::Gzip`], [`Compression::Zstd`] or
    /// [`Compression::None`].
    pub compression: Compression,
    /// Codec level (gzip 1-12, zstd 1-19); `None`: the codec's default
    /// ([`Encoding::default_level`]).
    pub level: Option<i32>,
    /// Manifest format of the result; `None` keeps each image's own.
    pub format: Option<Format>,
    /// Only these `index.json` entries: a `org.opencontainers.image.ref.name` (`app:1` and
    /// `docker.io/library/app:1` name the same image) or `@N` for the N-th entry (from 0). Empty:
    /// every entry. Others are left as they are.
    pub images: Vec<String>,
    /// Re-encode layers that are already in the target compression.
    pub recompress: bool,
    /// Encoder threads; `None`: all cores. The bytes produced do not depend on it.
    pub threads: Option<usize>,
    /// Clamp every tar entry time, and the config's `created` and history times, to this many
    /// seconds since 1970. Rewrites layers, diff_ids and configs (image IDs change).
    pub source_date_epoch: Option<u64>,
    /// In place, keep the blobs only the old images used instead of removing them.
    pub keep_old_blobs: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            compression: Compression::Gzip,
            level: None,
            format: Some(Format::Oci),
            images: Vec::new(),
            recompress: false,
            threads: None,
            source_date_epoch: None,
            keep_old_blobs: false,
        }
    }
}

impl Options {
    /// Check the options against each other, before anything is read.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.format == Some(Format::Docker) && self.compression == Compression::None {
            return Err(OptionsError::UncompressedDocker);
        }
        if let Some(level) = self.level {
            Encoding::check_level(self.compression, level)?;
        }
        if self.threads == Some(0) {
            return Err(OptionsError::ZeroThreads);
        }
        Ok(())
    }

    /// The encoder settings these options give (threads resolved to the number of cores).
    pub fn encoding(&self) -> Encoding {
        let threads = self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        Encoding {
            compression: self.compression,
            level: self.level,
            threads: threads.max(1),
        }
    }

    /// Whether a layer stored as `stored` is kept byte for byte (only checked) rather than
    /// re-encoded: it is already in the target compression, and neither
    /// [`recompress`](Self::recompress) nor [`source_date_epoch`](Self::source_date_epoch) asks
    /// for new bytes. The level does not count: a layer in the target compression at another level
    /// is kept.
    pub fn keeps(&self, stored: Compression) -> bool {
        self.source_date_epoch.is_none() && !self.recompress && stored == self.compression
    }
}
