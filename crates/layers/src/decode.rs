//! Streaming decoders for every layer compression, written as small state machines over the codecs'
//! raw APIs so that the same code serves both directions: [`DecodeReader`] (pull, for convert) and
//! [`crate::DiffIdWriter`] (push, for unpack). All of them are strict: a stream that stops early is an
//! error at the end, and bytes after the last member/frame/stream that are not another one are an
//! error (Docker and containerd reject both).
//!
//! Gzip is parsed here (RFC 1952 header and trailer, CRC32 and ISIZE checked, any number of
//! members) around flate2's raw inflate; zstd uses the zstd crate's streaming decoder (frames
//! follow each other naturally); bzip2 restarts a decoder per stream; xz uses liblzma with
//! `CONCATENATED`.
//!
//! Memory is bounded whatever the input claims: a gzip header is at most [`GZIP_MAX_HEADER`];
//! zstd refuses frames whose window is larger than 2^[`ZSTD_WINDOW_LOG_MAX`] bytes; xz refuses
//! streams whose decoder would need more than [`XZ_MEMLIMIT`] (the dictionary a header asks for is
//! allocated up front); bzip2 needs no limit of its own, its format caps a block at 900 kB (about
//! 3.6 MiB of decoder state).

use crate::error::{DecodeError, DecodeErrorKind as K};
use crate::{Compression, SNIFF_LEN, sniff};
use std::io::{self, Read};

/// Size of the internal buffers of the adapters.
pub(crate) const BUF_LEN: usize = 128 * 1024;

/// One decoder: feed it compressed bytes, get uncompressed bytes.
pub(crate) trait Codec: Send {
    /// Decode from `input` into `output` (never empty); returns (consumed, produced). May be called
    /// with empty input to drain output the codec still holds.
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), K>;
    /// No more input: returns output still pending (call again until `Ok(0)`), `Ok(0)` once the
    /// stream ended cleanly, an error if it ended in the middle.
    fn finish(&mut self, output: &mut [u8]) -> Result<usize, K>;
}

/// A codec for `compression`; `None` is the identity.
pub(crate) fn codec(compression: Compression) -> io::Result<Box<dyn Codec>> {
    Ok(match compression {
        Compression::None => Box::new(Plain),
        Compression::Gzip => Box::new(Gzip::new()),
        Compression::Zstd => Box::new(Zstd::new()?),
        Compression::Bzip2 => Box::new(Bzip2::new()),
        Compression::Xz => Box::new(Xz::new()?),
    })
}

/// Drives a [`Codec`] over a stream of input, tracking the compressed offset for errors.
pub(crate) struct Driver {
    pub(crate) compression: Compression,
    codec: Box<dyn Codec>,
    /// Compressed bytes consumed so far.
    offset: u64,
}

impl Driver {
    pub(crate) fn new(compression: Compression) -> io::Result<Self> {
        Ok(Driver {
            compression,
            codec: codec(compression)?,
            offset: 0,
        })
    }

    fn err(&self, kind: K) -> DecodeError {
        DecodeError::new(self.compression, self.offset, kind)
    }

    pub(crate) fn step(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(usize, usize), DecodeError> {
        match self.codec.step(input, output) {
            Ok((c, p)) => {
                self.offset += c as u64;
                Ok((c, p))
            }
            Err(k) => Err(self.err(k)),
        }
    }

    pub(crate) fn finish(&mut self, output: &mut [u8]) -> Result<usize, DecodeError> {
        self.codec.finish(output).map_err(|k| self.err(k))
    }

    /// Push all of `input` through, handing every piece of output to `sink`.
    pub(crate) fn push(
        &mut self,
        mut input: &[u8],
        buf: &mut [u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        loop {
            let (c, p) = self.step(input, buf)?;
            sink(&buf[..p]);
            input = &input[c..];
            if input.is_empty() && p < buf.len() {
                return Ok(());
            }
            if c == 0 && p == 0 {
                return Err(self.err(K::Corrupt("decoder made no progress".into())));
            }
        }
    }

    /// End of input: drain and check that the stream is complete.
    pub(crate) fn push_end(
        &mut self,
        buf: &mut [u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        self.push(&[], buf, sink)?;
        loop {
            let p = self.finish(buf)?;
            if p == 0 {
                return Ok(());
            }
            sink(&buf[..p]);
        }
    }
}

/// A `Read` that decodes a compressed stream. Decode errors are `io::Error`s of kind `InvalidData`
/// carrying a [`DecodeError`] (see [`DecodeError::from_io`]).
pub struct DecodeReader<R> {
    inner: R,
    driver: Driver,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    eof: bool,
    failed: Option<DecodeError>,
}

impl<R: Read> DecodeReader<R> {
    /// Decode `inner` as `compression` (no sniffing; see [`decoder`] for that).
    pub fn new(inner: R, compression: Compression) -> io::Result<Self> {
        Ok(DecodeReader {
            inner,
            driver: Driver::new(compression)?,
            buf: vec![0; BUF_LEN].into_boxed_slice(),
            pos: 0,
            len: 0,
            eof: false,
            failed: None,
        })
    }

    /// The compression being decoded.
    pub fn compression(&self) -> Compression {
        self.driver.compression
    }

    /// Compressed bytes consumed so far.
    pub fn compressed_offset(&self) -> u64 {
        self.driver.offset
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn read_inner(&mut self, out: &mut [u8]) -> Result<usize, io::Error> {
        loop {
            let avail = &self.buf[self.pos..self.len];
            if avail.is_empty() && self.eof {
                return self.driver.finish(out).map_err(|e| self.fail(e));
            }
            let empty = avail.is_empty();
            let (c, p) = self.driver.step(avail, out).map_err(|e| self.fail(e))?;
            self.pos += c;
            if p > 0 {
                return Ok(p);
            }
            if empty {
                let n = loop {
                    match self.inner.read(&mut self.buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r?,
                    }
                };
                self.pos = 0;
                self.len = n;
                self.eof = n == 0;
            } else if c == 0 {
                let e = self
                    .driver
                    .err(K::Corrupt("decoder made no progress".into()));
                return Err(self.fail(e));
            }
        }
    }

    fn fail(&mut self, e: DecodeError) -> io::Error {
        self.failed = Some(e.clone());
        e.into_io()
    }
}

impl<R: Read> Read for DecodeReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into_io());
        }
        if out.is_empty() {
            return Ok(0);
        }
        self.read_inner(out)
    }
}

/// Read up to [`SNIFF_LEN`] bytes (fewer only at end of stream).
pub(crate) fn read_prefix<R: Read>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut prefix = vec![0u8; SNIFF_LEN];
    let mut n = 0;
    while n < SNIFF_LEN {
        match r.read(&mut prefix[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    prefix.truncate(n);
    Ok(prefix)
}

/// Sniff the compression of `r` from its first bytes and return a reader of the uncompressed
/// stream (plain input is passed through, without copying through a codec).
pub fn decoder<'a, R: Read + Send + 'a>(
    mut r: R,
) -> io::Result<(Compression, Box<dyn Read + Send + 'a>)> {
    let prefix = read_prefix(&mut r)?;
    let compression = sniff(&prefix);
    let whole = io::Cursor::new(prefix).chain(r);
    let reader: Box<dyn Read + Send + 'a> = match compression {
        Compression::None => Box::new(whole),
        c => Box::new(DecodeReader::new(whole, c)?),
    };
    Ok((compression, reader))
}

// ---------------------------------------------------------------------------------------------
// Codecs

/// Uncompressed: output = input.
struct Plain;

impl Codec for Plain {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), K> {
        let n = input.len().min(output.len());
        output[..n].copy_from_slice(&input[..n]);
        Ok((n, n))
    }
    fn finish(&mut self, _output: &mut [u8]) -> Result<usize, K> {
        Ok(0)
    }
}

/// The longest gzip header we accept (FEXTRA is at most 64 KiB; names and comments are short).
const GZIP_MAX_HEADER: usize = 1 << 20;

/// The largest zstd window decoded (2^27 = 128 MiB, zstd's own default limit; `zstd --long=27`
/// and every level up to 19 stay within it).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// The most memory the xz decoder may use (its dictionary, mostly): `xz -9` and `xz -9e` need
/// 65 MiB; a header asking for more (up to 4 GiB) is refused before anything is allocated.
pub const XZ_MEMLIMIT: u64 = 128 << 20;

enum GzState {
    /// Collecting a member header (the bytes so far).
    Header(Vec<u8>),
    Body,
    /// Collecting the 8-byte trailer.
    Trailer(Vec<u8>),
    /// After a complete member: end of stream or another member.
    Between,
}

/// Gzip, any number of members (RFC 1952).
struct Gzip {
    state: GzState,
    inflate: flate2::Decompress,
    crc: flate2::Crc,
    members: u64,
}

impl Gzip {
    fn new() -> Self {
        Gzip {
            state: GzState::Header(Vec::new()),
            inflate: flate2::Decompress::new(false),
            crc: flate2::Crc::new(),
            members: 0,
        }
    }
}

/// Parse a gzip member header: `Ok(Some(len))` when complete, `Ok(None)` when more bytes are
/// needed, `Err` when it is not one. `first` says whether this is the first member (for messages).
fn parse_gzip_header(buf: &[u8], first: bool) -> Result<Option<usize>, K> {
    let magic = [0x1f, 0x8b, 8];
    for (i, (&b, &m)) in buf.iter().zip(magic.iter()).enumerate() {
        if b != m {
            return Err(if !first {
                K::TrailingData
            } else if i < 2 {
                K::Corrupt("not a gzip stream (bad magic)".into())
            } else {
                K::Corrupt(format!("unsupported gzip compression method {b}"))
            });
        }
    }
    if buf.len() < 10 {
        return Ok(None);
    }
    let flags = buf[3];
    if flags & 0xe0 != 0 {
        return Err(K::Corrupt(format!(
            "gzip header has reserved flags set ({flags:#04x})"
        )));
    }
    let mut pos = 10;
    if flags & 0x04 != 0 {
        if buf.len() < pos + 2 {
            return Ok(None);
        }
        let xlen = u16::from_le_bytes([buf[pos], buf[pos + 1]]) as usize;
        pos += 2 + xlen;
    }
    for flag in [0x08, 0x10] {
        if flags & flag != 0 {
            if buf.len() < pos {
                return Ok(None);
            }
            match buf[pos..].iter().position(|&b| b == 0) {
                Some(i) => pos += i + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 0x02 != 0 {
        if buf.len() < pos + 2 {
            return Ok(None);
        }
        let mut crc = flate2::Crc::new();
        crc.update(&buf[..pos]);
        let want = u16::from_le_bytes([buf[pos], buf[pos + 1]]);
        if crc.sum() as u16 != want {
            return Err(K::Corrupt("gzip header checksum mismatch".into()));
        }
        pos += 2;
    }
    if buf.len() < pos {
        return Ok(None);
    }
    Ok(Some(pos))
}

impl Codec for Gzip {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), K> {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            match &mut self.state {
                GzState::Between => {
                    if rest.is_empty() {
                        return Ok((consumed, 0));
                    }
                    self.state = GzState::Header(Vec::new());
                }
                GzState::Header(h) => {
                    if rest.is_empty() {
                        return Ok((consumed, 0));
                    }
                    let old = h.len();
                    let take = rest.len().min(GZIP_MAX_HEADER + 1 - old);
                    h.extend_from_slice(&rest[..take]);
                    match parse_gzip_header(h, self.members == 0)? {
                        Some(len) => {
                            consumed += len - old;
                            self.state = GzState::Body;
                            self.inflate.reset(false);
                            self.crc.reset();
                        }
                        None if h.len() > GZIP_MAX_HEADER => {
                            return Err(K::Corrupt("gzip header is too long".into()));
                        }
                        None => return Ok((consumed + take, 0)),
                    }
                }
                GzState::Body => {
                    let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
                    let status = self
                        .inflate
                        .decompress(rest, output, flate2::FlushDecompress::None)
                        .map_err(|e| K::Corrupt(format!("deflate: {e}")))?;
                    let c = (self.inflate.total_in() - in0) as usize;
                    let p = (self.inflate.total_out() - out0) as usize;
                    self.crc.update(&output[..p]);
                    consumed += c;
                    if status == flate2::Status::StreamEnd {
                        self.state = GzState::Trailer(Vec::with_capacity(8));
                        if p > 0 {
                            return Ok((consumed, p));
                        }
                    } else {
                        return Ok((consumed, p));
                    }
                }
                GzState::Trailer(t) => {
                    if rest.is_empty() {
                        return Ok((consumed, 0));
                    }
                    let take = rest.len().min(8 - t.len());
                    t.extend_from_slice(&rest[..take]);
                    consumed += take;
                    if t.len() == 8 {
                        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                        let isize = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
                        if crc != self.crc.sum() {
                            return Err(K::Corrupt(format!(
                                "gzip member CRC32 mismatch (trailer says {crc:08x}, data is {:08x})",
                                self.crc.sum()
                            )));
                        }
                        if isize != self.crc.amount() {
                            return Err(K::Corrupt(format!(
                                "gzip member length mismatch (trailer says {isize}, data is {})",
                                self.crc.amount()
                            )));
                        }
                        self.members += 1;
                        self.state = GzState::Between;
                    }
                }
            }
        }
    }

    fn finish(&mut self, output: &mut [u8]) -> Result<usize, K> {
        match &self.state {
            GzState::Between => Ok(0),
            GzState::Header(h) if h.is_empty() && self.members == 0 => {
                Err(K::Truncated("the gzip header (the stream is empty)"))
            }
            GzState::Header(_) => Err(K::Truncated("a gzip member header")),
            GzState::Body => {
                let (_, p) = self.step(&[], output)?;
                if p > 0 {
                    return Ok(p);
                }
                match self.state {
                    GzState::Body => Err(K::Truncated("the deflate data of a gzip member")),
                    _ => self.finish(output),
                }
            }
            GzState::Trailer(_) => Err(K::Truncated("the trailer of a gzip member")),
        }
    }
}

/// Zstandard, any number of frames (skippable frames included).
struct Zstd {
    decoder: zstd::stream::raw::Decoder<'static>,
    /// The last call ended at a frame boundary with everything flushed.
    at_boundary: bool,
}

impl Zstd {
    fn new() -> io::Result<Self> {
        let mut decoder = zstd::stream::raw::Decoder::new()?;
        decoder.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
            ZSTD_WINDOW_LOG_MAX,
        ))?;
        Ok(Zstd {
            decoder,
            at_boundary: true,
        })
    }
}

impl Codec for Zstd {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), K> {
        use zstd::stream::raw::Operation;
        if input.is_empty() && self.at_boundary {
            return Ok((0, 0));
        }
        let s = self
            .decoder
            .run_on_buffers(input, output)
            .map_err(|e| K::Corrupt(e.to_string()))?;
        self.at_boundary = s.remaining == 0;
        Ok((s.bytes_read, s.bytes_written))
    }

    fn finish(&mut self, output: &mut [u8]) -> Result<usize, K> {
        if self.at_boundary {
            return Ok(0);
        }
        let (_, p) = self.step(&[], output)?;
        if p > 0 {
            return Ok(p);
        }
        if self.at_boundary {
            Ok(0)
        } else {
            Err(K::Truncated("a zstd frame"))
        }
    }
}

/// bzip2, any number of concatenated streams (pbzip2 writes several).
struct Bzip2 {
    decoder: bzip2::Decompress,
    /// The current stream ended; more input starts a new one.
    between: bool,
}

impl Bzip2 {
    fn new() -> Self {
        Bzip2 {
            decoder: bzip2::Decompress::new(false),
            between: false,
        }
    }
}

impl Codec for Bzip2 {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), K> {
        if self.between {
            if input.is_empty() {
                return Ok((0, 0));
            }
            let n = input.len().min(3);
            if input[..n] != b"BZh"[..n] {
                return Err(K::TrailingData);
            }
            self.decoder = bzip2::Decompress::new(false);
            self.between = false;
        }
        let (in0, out0) = (self.decoder.total_in(), self.decoder.total_out());
        let status = self.decoder.decompress(input, output).map_err(|e| {
            K::Corrupt(match e {
                bzip2::Error::DataMagic => "not a bzip2 stream (bad magic)".to_string(),
                bzip2::Error::Data => "bzip2 data error".to_string(),
                other => format!("bzip2: {other:?}"),
            })
        })?;
        let c = (self.decoder.total_in() - in0) as usize;
        let p = (self.decoder.total_out() - out0) as usize;
        if status == bzip2::Status::StreamEnd {
            self.between = true;
        }
        Ok((c, p))
    }

    fn finish(&mut self, output: &mut [u8]) -> Result<usize, K> {
        if self.between {
            return Ok(0);
        }
        let (_, p) = self.step(&[], output)?;
        if p > 0 {
            return Ok(p);
        }
        if self.between {
            Ok(0)
        } else {
            Err(K::Truncated("a bzip2 stream"))
        }
    }
}

/// xz, concatenated streams (liblzma `CONCATENATED`, which also allows stream padding).
struct Xz {
    stream: liblzma::stream::Stream,
    done: bool,
}

impl Xz {
    fn new() -> io::Result<Self> {
        let stream =
            liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, liblzma::stream::CONCATENATED)
                .map_err(io::Error::other)?;
        Ok(Xz {
            stream,
            done: false,
        })
    }

    fn process(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        action: liblzma::stream::Action,
    ) -> Result<(usize, usize, liblzma::stream::Status), K> {
        let (in0, out0) = (self.stream.total_in(), self.stream.total_out());
        let status = self.stream.process(input, output, action).map_err(|e| {
            K::Corrupt(match e {
                liblzma::stream::Error::Format => "not an xz stream (bad magic)".into(),
                liblzma::stream::Error::Data => "xz data error".into(),
                liblzma::stream::Error::MemLimit => format!(
                    "the xz stream needs more than {} MiB of memory to decode (its dictionary is too large)",
                    XZ_MEMLIMIT >> 20
                ),
                other => format!("xz: {other:?}"),
            })
        })?;
        Ok((
            (self.stream.total_in() - in0) as usize,
            (self.stream.total_out() - out0) as usize,
            status,
        ))
    }
}

impl Codec for Xz {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), K> {
        if self.done {
            return if input.is_empty() {
                Ok((0, 0))
            } else {
                Err(K::TrailingData)
            };
        }
        let (c, p, _) = self.process(input, output, liblzma::stream::Action::Run)?;
        Ok((c, p))
    }

    fn finish(&mut self, output: &mut [u8]) -> Result<usize, K> {
        if self.done {
            return Ok(0);
        }
        let (_, p, status) = self.process(&[], output, liblzma::stream::Action::Finish)?;
        if status == liblzma::stream::Status::StreamEnd {
            self.done = true;
        }
        if p > 0 || self.done {
            return Ok(p);
        }
        // No progress with no more input: the stream stops in the middle.
        Err(K::Truncated("an xz stream"))
    }
}
