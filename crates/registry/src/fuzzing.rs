//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): the parsers of what a registry or a
//! token server sends back, without a network. Not a stable API; hidden from the docs.
//!
//! Each `check_*` function takes the raw fuzz input and panics when a property does not hold. The
//! fuzz targets are one call each, and the unit test at the bottom replays every file under
//! `fuzz/regressions/<target>/` and `fuzz/seeds/<target>/` through the same functions, so that
//! `cargo test` (and `cargo xtask test`) checks the inputs that once broke them, not only the
//! nightly fuzz job.

use std::time::Duration;
use url::Url;

/// A parsed `WWW-Authenticate` value (the crate's `auth` module).
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

/// `www_authenticate` target: any text as a `WWW-Authenticate` value or a scope. Parsing never
/// panics, a parsed scope prints back to itself.
pub fn check_www_authenticate(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    use crate::auth::Scope;
    if let Some(Challenge::Bearer { scope, .. }) = parse_challenge(value)
        && let Some(s) = scope.as_deref().and_then(Scope::parse)
    {
        let again = Scope::parse(&s.to_string());
        assert_eq!(again.as_ref(), Some(&s), "scope `{s}` does not read back");
    }
    if let Some(s) = Scope::parse(value) {
        assert_eq!(Scope::parse(&s.to_string()).as_ref(), Some(&s));
    }
}

/// `token_response` target: a token server's answer. Parsing never panics, and a token with any
/// `expires_in` (up to `u64::MAX` seconds) gets an expiry an `Instant` can hold, no later than
/// `auth::MAX_TOKEN_LIFE` from now.
pub fn check_token_response(data: &[u8]) {
    let Ok(parsed) = serde_json::from_slice::<crate::auth::TokenResponse>(data) else {
        return;
    };
    let Some((value, life, _)) = parsed.into_token() else {
        return;
    };
    let before = std::time::Instant::now();
    let token = crate::auth::Token::new(value, life);
    assert!(
        token.expires <= before + crate::auth::MAX_TOKEN_LIFE + Duration::from_secs(1),
        "a token said to live {life:?} expires beyond the cap"
    );
    let _ = token.fresh();
}

/// `upload_headers` target: what a registry answers during a blob upload. The input is text,
/// one field a line:
///
/// ```text
/// <path and query of the URL that answered>
/// <Location>
/// <blob size> <chunk size>
/// <Range of the upload status (GET <session>), `-` for none>
/// <Range answering each PATCH, `-` for none>…
/// ```
///
/// A `Location` resolves to an http(s) URL or is refused; a chunked upload driven by the `Range`
/// answers makes progress on every PATCH and never claims more than was sent (otherwise it loops
/// forever or skips bytes); a resume never restarts at 0 in the same session (`Range: 0-0` may
/// mean one byte held) nor at an offset the registry has just refused (a loop until retries run
/// out).
pub fn check_upload_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let base_path = lines.next().unwrap_or_default();
    let location = lines.next().unwrap_or_default();
    let mut sizes = lines.next().unwrap_or_default().split(' ');
    let mut number = || sizes.next().and_then(|n| n.trim().parse::<u64>().ok());
    let (size, chunk) = (number().unwrap_or(0), number().unwrap_or(1).max(1));
    let header = |l: &str| (l != "-").then(|| l.to_string());
    let status_range = lines.next().and_then(header);
    // One PATCH per answer: the loop's length is the input's, not the blob's.
    let ranges: Vec<Option<String>> = lines.map(header).collect();

    for scheme in ["http", "https"] {
        if let Ok(base) = Url::parse(&format!("{scheme}://r.example:5000/{base_path}"))
            && let Ok(url) = resolve_location(&base, location)
        {
            assert!(
                matches!(url.scheme(), "http" | "https"),
                "Location `{location}` resolved to {url}"
            );
        }
    }

    if let Some(status) = resume_offset(status_range.as_deref()) {
        for acknowledged in [0, 1, status, status.saturating_add(1), size] {
            // Resuming at 0 is a new session; resuming where the registry just refused loops.
            let point = crate::client::resume_point(acknowledged, status, None);
            assert_ne!(point, Some(0), "status {status_range:?}: resumed at 0");
            if let Some(p) = point {
                assert_eq!(
                    crate::client::resume_point(acknowledged, status, Some(p)),
                    None,
                    "status {status_range:?} after a 416 at {p}: resumed there again"
                );
            }
        }
    }

    let mut offset = 0u64;
    for range in &ranges {
        if offset >= size {
            break;
        }
        let len = chunk.min(size - offset);
        match offset_after_patch(range.as_deref(), offset, len) {
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
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Replays `fuzz/regressions/<target>/` and `fuzz/seeds/<target>/` for this crate's targets:
    /// `cargo test` runs the inputs that once broke a parser, not only the nightly fuzz job.
    #[test]
    fn fuzz_regressions_and_seeds_replay() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        type Check = fn(&[u8]);
        let targets: [(&str, Check); 3] = [
            ("www_authenticate", super::check_www_authenticate),
            ("token_response", super::check_token_response),
            ("upload_headers", super::check_upload_headers),
        ];
        let mut replayed = 0;
        for (target, check) in targets {
            for dir in ["regressions", "seeds"] {
                let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
                    continue;
                };
                for e in entries {
                    let path = e.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    if std::panic::catch_unwind(|| check(&data)).is_err() {
                        panic!("{} fails its fuzz target's checks", path.display());
                    }
                    replayed += 1;
                }
            }
        }
        // The committed regressions: a Location of another scheme, a token that claims to live
        // for ever, `Range: 0-0` after a 416.
        assert!(
            replayed >= 3,
            "only {replayed} inputs under {}",
            fuzz.display()
        );
        for must in [
            "regressions/upload_headers/location-scheme-not-http",
            "regressions/upload_headers/range-0-0-one-byte-held",
            "regressions/token_response/expires-in-u64-max",
        ] {
            assert!(fuzz.join(must).is_file(), "{must} is missing");
        }
    }
}
