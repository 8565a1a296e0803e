//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers of what a registry sends
//! back, without a network. Not a stable API; hidden from the docs.

use url::Url;

/// A parsed `WWW-Authenticate` value (see [`crate::auth`]).
pub use crate::auth::{Challenge, parse_challenge};

/// The `end` of a `Range: 0-<end>` header.
pub fn parse_range_end(value: &str) -> Option<u64> {
    crate::client::parse_range_end(value)
}

/// Where a chunked upload continues after a PATCH of `len` bytes at `offset`, given the
/// registry's `Range` header.
pub fn offset_after_patch(range: Option<&str>, offset: u64, len: u64) -> Result<u64, String> {
    crate::client::offset_after_patch(range, offset, len)
}

/// Where an upload status request (`GET <session>`) says to resume, given its `Range` header.
pub fn resume_offset(range: Option<&str>) -> Option<u64> {
    crate::client::resume_offset(range)
}

/// A `Location` header resolved against the URL that sent it.
pub fn resolve_location(base: &Url, location: &str) -> Result<Url, String> {
    crate::client::resolve_location(base, location)
}
