//! Layer codecs for layerlift: what a layer's bytes are (detected from magic bytes, never from names
//! or media types), how to decode them while checking the diff_id, and deterministic encoders.
//!
//! - [`sniff`] / [`Compression`]: detect gzip, zstd, bzip2, xz or uncompressed from the first bytes.
//! - [`decoder`]: a `Read` that decodes whatever a layer is (gzip multi-member, zstd multi-frame,
//!   bzip2 multi-stream, xz concatenated, or plain), strict about truncation and trailing garbage.
//! - [`DiffIdWriter`]: a `Write` sink that decodes on the fly and hashes the uncompressed stream, for
//!   checking diff_ids while an archive streams past.
//!
//! This crate never touches the network and never parses manifests beyond the digest type.

mod decode;
mod diff_id;
mod error;
mod sniff;

pub use decode::{DecodeReader, decoder};
pub use diff_id::{DiffId, DiffIdWriter};
pub use error::{DecodeError, LayerError};
pub use sniff::{Compression, SNIFF_LEN, sniff};
