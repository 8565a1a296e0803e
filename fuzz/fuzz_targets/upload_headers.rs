//! What a registry answers during a blob upload: `Location` (resolved against the URL that sent
//! it) and `Range` (where a chunked upload continues, and where a broken one resumes). A chunked
//! upload driven by arbitrary `Range` answers must make progress on every PATCH and never claim
//! more than was sent (otherwise it loops forever or skips bytes); a `Location` resolves to an
//! http(s) URL or is refused.

#![no_main]

use arbitrary::Arbitrary;
use layerlift_registry::fuzzing::{
    offset_after_patch, parse_range_end, resolve_location, resume_offset,
};
use libfuzzer_sys::fuzz_target;
use url::Url;

#[derive(Arbitrary, Debug)]
struct Upload<'a> {
    /// Path and query of the URL that answered.
    base_path: &'a str,
    https: bool,
    location: &'a str,
    size: u32,
    chunk: u16,
    /// The registry's `Range` answers, one per PATCH (`None`: no header).
    ranges: Vec<Option<&'a str>>,
    status_range: Option<&'a str>,
}

fuzz_target!(|u: Upload<'_>| {
    let scheme = if u.https { "https" } else { "http" };
    if let Ok(base) = Url::parse(&format!("{scheme}://r.example:5000/{}", u.base_path))
        && let Ok(url) = resolve_location(&base, u.location)
    {
        assert!(
            matches!(url.scheme(), "http" | "https"),
            "Location `{}` resolved to {url}",
            u.location
        );
    }

    for r in u.ranges.iter().flatten() {
        let _ = parse_range_end(r);
    }
    let _ = resume_offset(u.status_range);

    // The chunk loop of `Client::upload_chunked`, with the registry's answers from the input.
    let size = u64::from(u.size);
    let chunk = u64::from(u.chunk).max(1);
    let mut offset = 0u64;
    // One PATCH per answer: the loop's length is the input's, not the blob's.
    for range in u.ranges.iter().copied() {
        if offset >= size {
            break;
        }
        let len = chunk.min(size - offset);
        match offset_after_patch(range, offset, len) {
            Ok(next) => {
                assert!(
                    next > offset && next <= offset + len,
                    "PATCH {offset}+{len}, Range {range:?}: continue at {next}"
                );
                offset = next;
            }
            Err(_) => break,
        }
    }
});
