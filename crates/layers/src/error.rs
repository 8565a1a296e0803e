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
    #[error("{compression} data is corrupt near compressed byte {offset}: {reason}")]
    Corrupt {
        compression: Compression,
        offset: u64,
        reason: String,
    },
    #[error("{compression} stream is truncated: it ends after {offset} bytes, inside {what}")]
    Truncated {
        compression: Compression,
        offset: u64,
        what: &'static str,
    },
    #[error(
        "{compression} stream is followed by {what} at compressed byte {offset} that is not another {compression} stream"
    )]
    TrailingData {
        compression: Compression,
        offset: u64,
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

/// Errors of the layer codecs and checks.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(
        "layer {layer}: uncompressed content has digest {actual}, but the config's diff_id is {expected}"
    )]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
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
