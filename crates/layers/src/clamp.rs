//! [`MtimeClamp`]: rewrite a tar stream so that no entry is newer than a given time
//! (`SOURCE_DATE_EPOCH`, for reproducible images), touching nothing else.
//!
//! It works on the 512-byte blocks of the stream as they pass, without a tar library: a header's
//! `mtime` field is clamped and its checksum recomputed; in PAX extended headers (`x`, `g`) the
//! `mtime`, `atime` and `ctime` records are clamped and the header's size field follows the new
//! record lengths. Every other byte (names, GNU long names, xattrs and other PAX records, link
//! targets, whiteout entries, file data, the end-of-archive blocks and anything after them) is
//! passed through unchanged, in order. Memory: one header, plus one PAX header's records (at most
//! [`MAX_PAX`] bytes).

use std::io::{self, Write};

/// The largest PAX extended header accepted (xattrs can be large; GNU tar's limit is similar).
pub const MAX_PAX: u64 = 16 << 20;
const BLOCK: usize = 512;

enum State {
    /// Collecting a header block.
    Header,
    /// Passing `left` bytes of entry data (padding included) through unchanged.
    Data { left: u64 },
    /// Collecting a PAX header's records (`size` bytes, then padding to `padded`).
    Pax {
        header: Box<[u8; BLOCK]>,
        size: u64,
        padded: u64,
    },
    /// After the first all-zero block: everything passes through.
    Trailer,
}

/// A `Write` that clamps tar entry times to `epoch` and writes the result to `W`.
pub struct MtimeClamp<W: Write> {
    out: W,
    epoch: u64,
    state: State,
    buf: Vec<u8>,
    /// Entries whose time was clamped.
    clamped: u64,
}

impl<W: Write> std::fmt::Debug for MtimeClamp<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtimeClamp")
            .field("epoch", &self.epoch)
            .field("clamped", &self.clamped)
            .finish_non_exhaustive()
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// `size` rounded up to whole blocks; `None` when that does not fit in a `u64` (a hostile size
/// field: base-256 can announce up to 2^88 bytes).
fn padded(size: u64) -> Option<u64> {
    size.div_ceil(BLOCK as u64).checked_mul(BLOCK as u64)
}

/// Parse a numeric header field: octal (NUL/space terminated) or GNU base-256.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = (field[0] & 0x3f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// Write `value` as zero-padded octal filling `field` but its last byte (NUL), or base-256 when it
/// does not fit.
fn write_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() <= digits {
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        let mut v = value;
        for b in field.iter_mut().rev() {
            *b = (v & 0xff) as u8;
            v >>= 8;
        }
        field[0] = 0x80;
    }
}

fn set_checksum(header: &mut [u8; BLOCK]) {
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| b as u32).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
}

/// Types whose size field does not announce data (Go's archive/tar and GNU tar agree).
fn header_only(typeflag: u8) -> bool {
    matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

/// Clamp the time records of PAX header data; returns the new data and whether anything changed.
fn clamp_pax(data: &[u8], epoch: u64) -> io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    let mut changed = false;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| invalid("PAX record without a length"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > space + 1 && n <= rest.len())
            .ok_or_else(|| invalid("PAX record with a bad length"))?;
        let record = &rest[..len];
        rest = &rest[len..];
        let body = &record[space + 1..len - 1];
        let Some(eq) = body.iter().position(|&b| b == b'=') else {
            return Err(invalid("PAX record without `=`"));
        };
        let (key, value) = (&body[..eq], &body[eq + 1..]);
        let is_time = matches!(key, b"mtime" | b"atime" | b"ctime");
        let newer = is_time
            && std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
                .is_some_and(|secs| {
                    secs >= 0
                        && (secs as u64 > epoch || (secs as u64 == epoch && value.contains(&b'.')))
                });
        if !newer {
            out.extend_from_slice(record);
            continue;
        }
        changed = true;
        let value = epoch.to_string();
        // "<len> <key>=<value>\n", where <len> counts its own digits.
        let base = 1 + key.len() + 1 + value.len() + 1;
        let mut total = base + 1;
        while total != base + total.to_string().len() {
            total = base + total.to_string().len();
        }
        out.extend_from_slice(format!("{total} ").as_bytes());
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    Ok((out, changed))
}

impl<W: Write> MtimeClamp<W> {
    /// Clamp to `epoch` (seconds since 1970) and write to `out`.
    pub fn new(out: W, epoch: u64) -> Self {
        MtimeClamp {
            out,
            epoch,
            state: State::Header,
            buf: Vec::with_capacity(BLOCK),
            clamped: 0,
        }
    }

    /// Headers and PAX records clamped so far.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    /// Check that the stream ended between entries and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        match self.state {
            State::Header if self.buf.is_empty() => {}
            State::Trailer => {}
            State::Data { left: 0 } => {}
            _ => return Err(invalid("the tar stream ends in the middle of an entry")),
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(&mut self) -> io::Result<()> {
        let mut header: Box<[u8; BLOCK]> = Box::new([0; BLOCK]);
        header.copy_from_slice(&self.buf);
        self.buf.clear();
        if header.iter().all(|&b| b == 0) {
            self.out.write_all(&header[..])?;
            self.state = State::Trailer;
            return Ok(());
        }
        let size = parse_number(&header[124..136])
            .ok_or_else(|| invalid("tar header with a bad size field"))?;
        let typeflag = header[156];
        if matches!(typeflag, b'x' | b'g') {
            if size > MAX_PAX {
                return Err(invalid(format!("PAX header of {size} bytes is too large")));
            }
            self.state = State::Pax {
                header,
                size,
                padded: padded(size).expect("at most MAX_PAX"),
            };
            return Ok(());
        }
        let mtime = parse_number(&header[136..148]);
        if mtime.is_some_and(|t| t > self.epoch) {
            write_number(&mut header[136..148], self.epoch);
            set_checksum(&mut header);
            self.clamped += 1;
        }
        self.out.write_all(&header[..])?;
        let data = if header_only(typeflag) {
            0
        } else {
            padded(size)
                .ok_or_else(|| invalid(format!("tar header with a size of {size} bytes")))?
        };
        self.state = State::Data { left: data };
        Ok(())
    }

    fn pax(&mut self, mut header: Box<[u8; BLOCK]>, size: u64) -> io::Result<()> {
        let data = std::mem::take(&mut self.buf);
        let (records, changed) = clamp_pax(&data[..size as usize], self.epoch)?;
        let mut touched = false;
        if changed {
            self.clamped += 1;
            write_number(&mut header[124..136], records.len() as u64);
            touched = true;
        }
        if parse_number(&header[136..148]).is_some_and(|t| t > self.epoch) {
            write_number(&mut header[136..148], self.epoch);
            touched = true;
        }
        if touched {
            set_checksum(&mut header);
        }
        self.out.write_all(&header[..])?;
        if changed {
            self.out.write_all(&records)?;
            let pad = records.len().next_multiple_of(BLOCK) - records.len();
            self.out.write_all(&[0u8; BLOCK][..pad])?;
        } else {
            self.out.write_all(&data)?;
        }
        self.state = State::Header;
        Ok(())
    }
}

impl<W: Write> Write for MtimeClamp<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            match &mut self.state {
                State::Trailer => {
                    self.out.write_all(rest)?;
                    rest = &[];
                }
                State::Data { left } if *left > 0 => {
                    let n = rest.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    self.out.write_all(&rest[..n])?;
                    *left -= n as u64;
                    rest = &rest[n..];
                }
                State::Data { .. } => self.state = State::Header,
                State::Header => {
                    let n = rest.len().min(BLOCK - self.buf.len());
                    self.buf.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if self.buf.len() == BLOCK {
                        self.header()?;
                    }
                }
                State::Pax { padded, .. } => {
                    let want = *padded as usize;
                    let n = rest.len().min(want - self.buf.len());
                    self.buf.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if self.buf.len() == want {
                        let State::Pax { header, size, .. } =
                            std::mem::replace(&mut self.state, State::Header)
                        else {
                            unreachable!("matched above")
                        };
                        self.pax(header, size)?;
                    }
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"00000001750\0"), Some(0o1750));
        assert_eq!(parse_number(b"  1750 \0\0\0\0\0"), Some(0o1750));
        assert_eq!(parse_number(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        let mut f = [0u8; 12];
        write_number(&mut f, 1_700_000_000);
        assert_eq!(parse_number(&f), Some(1_700_000_000));
        write_number(&mut f, u64::MAX >> 8);
        assert_eq!(f[0], 0x80);
        assert_eq!(parse_number(&f), Some(u64::MAX >> 8));
    }

    #[test]
    fn size_near_u64_max_is_an_error_not_a_panic() {
        let mut header = [0u8; BLOCK];
        header[..4].copy_from_slice(b"file");
        header[100..108].copy_from_slice(b"0000644\0");
        // GNU base-256 size: u64::MAX, which does not round up to whole blocks in a u64.
        header[124] = 0x80;
        header[128..136].copy_from_slice(&[0xff; 8]);
        header[136..148].copy_from_slice(b"00000000001\0");
        header[156] = b'0';
        set_checksum(&mut header);
        let mut clamp = MtimeClamp::new(Vec::new(), 0);
        let err = clamp.write_all(&header).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("size"), "{err}");
        // A size that still fits when padded passes through.
        header[128..136].copy_from_slice(&(u64::MAX - 511).to_be_bytes());
        set_checksum(&mut header);
        let mut clamp = MtimeClamp::new(Vec::new(), 0);
        clamp.write_all(&header).unwrap();
    }

    #[test]
    fn pax_records() {
        let data = b"30 mtime=1700000000.123456789\n19 path=usr/bin/ls\n";
        let (out, changed) = clamp_pax(data, 1000).unwrap();
        assert!(changed);
        assert_eq!(out, b"14 mtime=1000\n19 path=usr/bin/ls\n");
        let (out, changed) = clamp_pax(data, 2_000_000_000).unwrap();
        assert!(!changed);
        assert_eq!(out, data);
        let (out, changed) = clamp_pax(b"15 atime=99999\n", 1_000_000).unwrap();
        assert_eq!((&out[..], changed), (&b"15 atime=99999\n"[..], false));
        // The length prefix counts its own digits.
        let (out, _) = clamp_pax(b"16 ctime=123456\n", 5).unwrap();
        assert_eq!(out, b"11 ctime=5\n");
        assert!(clamp_pax(b"5 x\n", 0).is_err());
    }
}
