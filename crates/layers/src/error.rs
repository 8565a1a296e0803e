//! Error types: [`DecodeError`] for bad compressed data (cloneable, carried inside `io::Error` by the
//! `Read`/`Write` adapters) and [`LayerError`] for everything a caller of this crate sees.

use crate::Compression;
use layerlift_manifest::Digest;
use std::io;

/// What is wrong with a compressed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeErrorKind {
    /// The bytes are not valid for the format (bad header, bad block, checksum mismatch...).
    Corrupt(String),
    /// The stream stops in the middle (of what).
    Truncated(&'static str),
    /// Bytes follow the last complete member/frame/stream that are not another one.
    TrailingData,
}

/// A compressed stream could not be decoded. `offset` counts compressed bytes from the start of
/// the blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not valid for the format: a bad header or block, a checksum mismatch.
    #[error("{compression} data is corrupt near compressed byte {offset}: {reason}")]
    Corrupt {
        /// The stream's compression.
        compression: Compression,
        /// Compressed bytes consumed before the problem was found.
        offset: u64,
        /// The decoder's description of the problem.
        reason: String,
    },
    /// The stream stops in the middle of a member, frame or stream.
    #[error("{compression} stream is truncated: it ends after {offset} bytes, inside {what}")]
    Truncated {
        /// The stream's compression.
        compression: Compression,
        /// Compressed bytes in the stream.
        offset: u64,
        /// What it ends inside of (`a gzip member header`, `a zstd frame`…).
        what: &'static str,
    },
    /// Bytes follow the last complete member, frame or stream that are not another one.
    #[error(
        "{compression} stream is followed by {what} at compressed byte {offset} that is not another {compression} stream"
    )]
    TrailingData {
        /// The stream's compression.
        compression: Compression,
        /// Compressed bytes consumed before the trailing bytes were found.
        offset: u64,
        /// What follows, as the message names it (`data`).
        what: &'static str,
    },
}

impl DecodeError {
    pub(crate) fn new(compression: Compression, offset: u64, kind: DecodeErrorKind) -> Self {
        match kind {
            DecodeErrorKind::Corrupt(reason) => DecodeError::Corrupt {
                compression,
                offset,
                reason,
            },
            DecodeErrorKind::Truncated(what) => DecodeError::Truncated {
                compression,
                offset,
                what,
            },
            DecodeErrorKind::TrailingData => DecodeError::TrailingData {
                compression,
                offset,
                what: "data",
            },
        }
    }

    /// Wrap in an `io::Error` of kind `InvalidData` (what the `Read`/`Write` adapters return).
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The `DecodeError` inside an `io::Error` made by [`DecodeError::into_io`], if it is one.
    pub fn from_io(err: &io::Error) -> Option<&DecodeError> {
        err.get_ref()?.downcast_ref::<DecodeError>()
    }
}

/// A compression level that cannot be used ([`Encoding::check_level`](crate::Encoding::check_level)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    /// A level for uncompressed layers.
    #[error("a compression level makes no sense without compression")]
    WithoutCompression,
    /// The level is outside what the codec accepts.
    #[error("level {level}: {} levels are {min}-{max}", compression.name())]
    OutOfRange {
        /// The level given.
        level: i32,
        /// The compression.
        compression: crate::Compression,
        /// Lowest level.
        min: i32,
        /// Highest level.
        max: i32,
    },
}

/// Errors of the layer codecs and checks.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The layer's compressed bytes cannot be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The layer's uncompressed content does not have the diff_id the image config gives.
    #[error(
        "layer {layer}: uncompressed content has digest {actual}, but the config's diff_id is {expected}"
    )]
    DiffIdMismatch {
        /// The layer blob's digest.
        layer: Digest,
        /// The diff_id the config gives.
        expected: Digest,
        /// The digest of the uncompressed content.
        actual: Digest,
    },
    /// Reading or writing the layer failed with an I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (`reading the layer`, `writing the layer`…).
        context: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl LayerError {
    /// An I/O error while doing `context`; a [`DecodeError`] carried by the `io::Error` is unwrapped
    /// so that callers can match on it.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        if let Some(d) = DecodeError::from_io(&source) {
            return LayerError::Decode(d.clone());
        }
        LayerError::Io {
            context: context.into(),
            source,
        }
    }
}
