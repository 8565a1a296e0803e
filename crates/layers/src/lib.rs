//! Layer codecs for layerlift: what a layer's bytes are (detected from magic bytes, never from names
//! or media types), how to decode them while checking the diff_id, and deterministic encoders.
//!
//! - [`sniff`] / [`Compression`]: detect gzip, zstd, bzip2, xz or uncompressed from the first bytes.
//! - [`decoder`]: a `Read` that decodes whatever a layer is (gzip multi-member, zstd multi-frame,
//!   bzip2 multi-stream, xz concatenated, or plain), strict about truncation and trailing garbage.
//! - [`DiffIdWriter`]: a `Write` sink that decodes on the fly and hashes the uncompressed stream, for
//!   checking diff_ids while an archive streams past.
//! - [`GzipEncoder`]: deterministic parallel gzip (libdeflate, one gzip member per 1 MiB block); [`LayerEncoder`] adds zstd
//!   (multi-threaded, deterministic too) and plain; [`encode_layer`] / [`copy_layer`] are the two
//!   layer operations of convert (re-encode, or keep the bytes), both checking the diff_id.
//! - [`Reencoder`]: a layer compressed again from its uncompressed bytes, from any offset of the
//!   output, checked against the first pass's digest (resuming a stream without a staged copy).
//! - [`MtimeClamp`] / [`encode_layer_clamped`]: clamp tar entry times to `SOURCE_DATE_EPOCH`.
//!
//! This crate never touches the network and never parses manifests beyond the digest type.

#![warn(missing_docs)]

mod again;
mod clamp;
mod decode;
mod diff_id;
mod encode;
mod error;
mod gzip;
mod sniff;

pub use again::Reencoder;
pub use clamp::{MAX_PAX, MtimeClamp};
pub use decode::{DecodeReader, XZ_MEMLIMIT, ZSTD_WINDOW_LOG_MAX, decoder};
pub use diff_id::{DiffId, DiffIdWriter};
pub use encode::{
    ClampedOutput, Encoding, LayerEncoder, LayerOutput, ZSTD_JOB_SIZE, copy_layer, encode_layer,
    encode_layer_clamped,
};
pub use error::{DecodeError, LayerError, LevelError};
pub use gzip::{GZIP_BLOCK, GZIP_LEVELS, GzipEncoder};
pub use sniff::{Compression, SNIFF_LEN, sniff};

/// Names the encoders' output: the same layer, codec and level give the same bytes for as long as
/// this stays the same. Change it whenever the golden digests (`tests/encode.rs`) change — a new
/// block layout, a codec version that emits other bytes — so that caches keyed by it
/// (push's layer cache) stop naming blobs this build would not produce.
pub const ENCODER_REVISION: &str =
    "layerlift-layers/2 (gzip: libdeflate 1.26, 1 MiB members; zstd: libzstd, 4 MiB jobs)";
