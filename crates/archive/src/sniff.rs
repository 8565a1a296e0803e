//! What the start of an input says before the tar reader sees it: an empty input, or bytes that
//! are not a tar archive at all (text, a zip, an executable, random bytes...), get an error that
//! says so in our own words, without the tar library's wording and without echoing the bytes.
//! Anything that starts like a tar header (or too short to tell) is handed on untouched, and the
//! tar reader reports what is wrong further in.

use crate::ArchiveError;
use layerlift_layers::Compression;
use std::io::{self, Read};

/// One tar header block.
const BLOCK: usize = 512;

/// Read up to one tar block from `decoded` (the stream after decompression) and check it. On
/// success, returns a reader giving the same bytes as `decoded` would have, from the start. A read
/// error while peeking is not reported here: the returned reader gives it after the bytes read so
/// far, where the tar reader meets it as before.
pub(crate) fn check_start<'a>(
    mut decoded: Box<dyn Read + Send + 'a>,
    compression: Compression,
) -> Result<Box<dyn Read + Send + 'a>, ArchiveError> {
    let mut prefix = Vec::with_capacity(BLOCK);
    let mut failed = None;
    let mut buf = [0u8; BLOCK];
    while prefix.len() < BLOCK {
        match decoded.read(&mut buf[..BLOCK - prefix.len()]) {
            Ok(0) => break,
            Ok(n) => prefix.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if failed.is_none() {
        if prefix.is_empty() {
            return Err(ArchiveError::Empty {
                what: empty_what(compression),
            });
        }
        if let Some(looks_like) = looks_like(&prefix) {
            return Err(ArchiveError::NotAnArchive {
                what: not_archive_what(compression, looks_like),
            });
        }
    }
    Ok(Box::new(Replay {
        prefix: io::Cursor::new(prefix),
        failed,
        inner: decoded,
    }))
}

fn empty_what(compression: Compression) -> String {
    match compression {
        Compression::None => "empty (0 bytes)".to_string(),
        c => format!("a {c} stream that holds nothing (0 bytes once decompressed)"),
    }
}

fn not_archive_what(compression: Compression, looks_like: &str) -> String {
    match compression {
        Compression::None => format!("this looks like {looks_like}, not a tar archive"),
        c => {
            format!("{c}-compressed, but what it holds looks like {looks_like}, not a tar archive")
        }
    }
}

/// What `prefix` (the first block of the decompressed input, or all of it when shorter) looks like
/// when it is surely not the start of a tar archive; `None` when it is a tar header, the zero block
/// of an empty tar, or a piece too short to tell from a cut tar header.
pub(crate) fn looks_like(prefix: &[u8]) -> Option<&'static str> {
    if prefix.len() == BLOCK && (is_tar_header(prefix) || prefix.iter().all(|&b| b == 0)) {
        return None;
    }
    const MAGIC: &[(&[u8], &str)] = &[
        (b"PK\x03\x04", "a zip archive"),
        (b"PK\x05\x06", "an empty zip archive"),
        (b"\x7fELF", "an ELF executable"),
        (b"%PDF-", "a PDF document"),
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
        (b"Rar!\x1a\x07", "a RAR archive"),
        (b"!<arch>\n", "an ar archive (a .deb?)"),
        (b"\xed\xab\xee\xdb", "an RPM package"),
        (b"SQLite format 3\0", "an SQLite database"),
    ];
    if let Some((_, what)) = MAGIC.iter().find(|(m, _)| prefix.starts_with(m)) {
        return Some(what);
    }
    if let Some(kind) = text_kind(prefix) {
        return Some(kind);
    }
    // Binary: a tar header has NUL-padded fields, so a short piece with NULs may be a cut header
    // (the tar reader calls that truncated); a whole block that is no header is not a tar.
    (prefix.len() == BLOCK).then_some("binary data (no tar header at the start)")
}

/// A tar header block: its checksum field matches the sum of its bytes (the field itself counted
/// as spaces), as every tar writer computes it.
fn is_tar_header(block: &[u8]) -> bool {
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|&b| b as char)
        .filter(|c| c.is_ascii_digit())
        .collect();
    if digits.is_empty()
        || field
            .iter()
            .any(|&b| !(b.is_ascii_digit() || b == b' ' || b == 0))
    {
        return false;
    }
    let Ok(stored) = u32::from_str_radix(&digits, 8) else {
        return false;
    };
    // Some old writers summed the bytes as signed chars.
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    i64::from(stored) == unsigned || i64::from(stored) == signed
}

/// `Some` when `prefix` is text: UTF-8 (a cut final character allowed), no NUL, and mostly
/// printable. Says which kind when the first character gives it away.
fn text_kind(prefix: &[u8]) -> Option<&'static str> {
    let text = match std::str::from_utf8(prefix) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&prefix[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    if text.is_empty() || text.contains('\0') {
        return None;
    }
    let control = text
        .chars()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c'))
        .count();
    if control * 20 > text.chars().count() {
        return None;
    }
    let start = text.trim_start();
    Some(match start.chars().next() {
        Some('{') | Some('[') => "JSON or other text",
        Some('<') => "HTML or XML text",
        _ if start.starts_with("#!") => "a script (text)",
        _ => "text",
    })
}

/// The peeked bytes, then a read error met while peeking (if any), then the rest of the stream.
struct Replay<'a> {
    prefix: io::Cursor<Vec<u8>>,
    failed: Option<io::Error>,
    inner: Box<dyn Read + Send + 'a>,
}

impl Read for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.prefix.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path("manifest.json").unwrap();
        h.set_size(0);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn tar_headers_and_zero_blocks_are_handed_on() {
        assert_eq!(looks_like(&header()), None);
        assert_eq!(looks_like(&[0u8; BLOCK]), None);
        // A cut header: too short to tell, the tar reader says truncated.
        assert_eq!(looks_like(&header()[..200]), None);
    }

    #[test]
    fn other_content_is_named() {
        assert_eq!(looks_like(b"hello world\n"), Some("text"));
        assert_eq!(looks_like(b"  {\"a\": 1}"), Some("JSON or other text"));
        assert_eq!(looks_like(b"<!doctype html>"), Some("HTML or XML text"));
        assert_eq!(looks_like(b"PK\x03\x04rest"), Some("a zip archive"));
        assert_eq!(looks_like(b"\x7fELF\x02\x01"), Some("an ELF executable"));
        let noise: Vec<u8> = (0..BLOCK as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(
            looks_like(&noise),
            Some("binary data (no tar header at the start)")
        );
        let mut bad = header();
        bad[0] ^= 1;
        assert_eq!(
            looks_like(&bad),
            Some("binary data (no tar header at the start)")
        );
    }

    #[test]
    fn the_stream_is_replayed_from_the_start() {
        let mut data = header();
        data.extend_from_slice(&[7u8; 3000]);
        let mut r = check_start(Box::new(io::Cursor::new(data.clone())), Compression::None)
            .map_err(|e| e.to_string())
            .unwrap();
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn empty_and_text_inputs_are_refused() {
        let e = check_start(Box::new(io::empty()), Compression::None)
            .err()
            .unwrap();
        assert!(matches!(e, ArchiveError::Empty { .. }), "{e}");
        let e = check_start(Box::new(&b"not an image\n"[..]), Compression::Gzip)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "not an image archive: gzip-compressed, but what it holds looks like text, not a tar \
             archive; expected a tar written by `docker save`, `podman save` or `skopeo copy`, \
             plain or gzip/zstd/bzip2/xz compressed"
        );
    }
}
