//! Layer encoders and the two layer operations convert is made of: [`encode_layer`] (decode
//! whatever the stored bytes are, hash the tar, encode to the target) and [`copy_layer`] (keep the
//! stored bytes, hash the decoded tar on the way).
//!
//! zstd uses the zstd crate (libzstd, version pinned in Cargo.lock) with `multithread(n)` always set,
//! n ≥ 1: libzstd's multi-threaded format does not depend on the number of workers, while the
//! single-threaded one (n = 0) differs from it. The job size is pinned to [`ZSTD_JOB_SIZE`] rather
//! than left to libzstd's default (8 MiB at level 3, which took ~50 MB of memory with two
//! workers; 4 MiB costs under 1% in size). No pledged size is set (it would be written in the frame
//! header and make the output depend on whether the input size was known), and a content checksum
//! is included.
//!
//! Default levels: gzip 1 (libdeflate's fastest, see [`crate::gzip`]) and zstd 2: the least CPU for
//! output within 5% of skopeo's gzip, measured on the bench image (docs/benchmarks.md, "Default
//! compression levels").

use crate::decode::{BUF_LEN, decoder};
use crate::error::{LayerError, LevelError};
use crate::gzip::GzipEncoder;
use crate::{Compression, DiffId, DiffIdWriter, MtimeClamp};
use layerlift_manifest::{Digest, Sha256Reader, Sha256Writer};
use std::io::{self, Read, Write};

/// Bytes of input per zstd job (part of the determinism contract: changing it changes every zstd
/// digest).
pub const ZSTD_JOB_SIZE: u32 = 4 << 20;

/// What to encode layers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// `None`, `Gzip` or `Zstd`.
    pub compression: Compression,
    /// Codec level; `None` means the default ([`Encoding::default_level`]).
    pub level: Option<i32>,
    /// Worker threads (the output does not depend on it).
    pub threads: usize,
}

impl Encoding {
    /// Default level: 1 for gzip, 2 for zstd (measured; see the module docs). Part of the
    /// determinism contract: changing one changes the digest of every layer encoded by default.
    pub fn default_level(compression: Compression) -> i32 {
        match compression {
            Compression::Zstd => 2,
            _ => 1,
        }
    }

    /// The accepted levels for a compression.
    pub fn level_range(compression: Compression) -> std::ops::RangeInclusive<i32> {
        match compression {
            Compression::Gzip => crate::gzip::GZIP_LEVELS,
            Compression::Zstd => 1..=19,
            _ => 0..=0,
        }
    }

    /// Whether `level` can be asked of `compression`: not for uncompressed layers, and within
    /// [`level_range`](Self::level_range).
    pub fn check_level(compression: Compression, level: i32) -> Result<(), LevelError> {
        if compression == Compression::None {
            return Err(LevelError::WithoutCompression);
        }
        let range = Self::level_range(compression);
        if !range.contains(&level) {
            return Err(LevelError::OutOfRange {
                level,
                compression,
                min: *range.start(),
                max: *range.end(),
            });
        }
        Ok(())
    }

    /// The level that will be used.
    pub fn effective_level(&self) -> i32 {
        self.level
            .unwrap_or_else(|| Self::default_level(self.compression))
    }
}

/// An encoder writing to `W`: plain, deterministic parallel gzip, or multi-threaded zstd.
pub enum LayerEncoder<W: Write> {
    /// No compression: bytes go to the writer as they are.
    Plain(W),
    /// Deterministic parallel gzip.
    Gzip(GzipEncoder<W>),
    /// Multi-threaded zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> std::fmt::Debug for LayerEncoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LayerEncoder::Plain(_) => "LayerEncoder::Plain",
            LayerEncoder::Gzip(_) => "LayerEncoder::Gzip",
            LayerEncoder::Zstd(_) => "LayerEncoder::Zstd",
        })
    }
}

impl<W: Write> LayerEncoder<W> {
    /// Start encoding to `out`. bzip2 and xz are not layer encodings and are refused.
    pub fn new(out: W, encoding: &Encoding) -> io::Result<Self> {
        let level = encoding.effective_level();
        if encoding.compression != Compression::None {
            Encoding::check_level(encoding.compression, level)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        Ok(match encoding.compression {
            Compression::None => LayerEncoder::Plain(out),
            Compression::Gzip => {
                LayerEncoder::Gzip(GzipEncoder::new(out, level as u32, encoding.threads)?)
            }
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, level)?;
                e.multithread(encoding.threads.max(1) as u32)?;
                e.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                e.include_checksum(true)?;
                LayerEncoder::Zstd(e)
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("layers are not encoded as {other}"),
                ));
            }
        })
    }

    /// End the stream; returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            LayerEncoder::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
            LayerEncoder::Gzip(e) => e.finish(),
            LayerEncoder::Zstd(e) => {
                let mut w = e.finish()?;
                w.flush()?;
                Ok(w)
            }
        }
    }
}

impl<W: Write> Write for LayerEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LayerEncoder::Plain(w) => w.write(buf),
            LayerEncoder::Gzip(e) => e.write(buf),
            LayerEncoder::Zstd(e) => e.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            LayerEncoder::Plain(w) => w.write_all(buf),
            LayerEncoder::Gzip(e) => e.write_all(buf),
            LayerEncoder::Zstd(e) => e.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            LayerEncoder::Plain(w) => w.flush(),
            LayerEncoder::Gzip(e) => e.flush(),
            LayerEncoder::Zstd(_) => Ok(()), // a zstd flush would end a block early
        }
    }
}

/// Which side of a layer operation failed, for error messages.
fn read_err(e: io::Error) -> LayerError {
    LayerError::io("reading the layer", e)
}
fn write_err(e: io::Error) -> LayerError {
    LayerError::io("writing the layer", e)
}

/// The result of [`encode_layer`] or [`copy_layer`].
#[derive(Debug)]
pub struct LayerOutput<W> {
    /// What the stored input was: its compression, and the digest and size of its tar (diff_id).
    pub diff_id: DiffId,
    /// sha256 and size of the stored input bytes (check them against the descriptor).
    pub stored_digest: Digest,
    /// Size of the stored input, in bytes.
    pub stored_size: u64,
    /// The writer given, after the end of the stream was written.
    pub out: W,
}

fn read_chunk<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<usize, LayerError> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map_err(read_err),
        }
    }
}

/// A `Write` that counts what passes through it and, unless told not to, hashes it: the diff_id
/// side of a layer operation. An uncompressed input is its own tar, already hashed as it is read,
/// so hashing the same bytes again would only cost time (about 0.25 CPU-seconds per 300 MB).
struct TarHash<W> {
    inner: W,
    hash: Option<Sha256Writer<io::Sink>>,
    size: u64,
}

impl<W: Write> TarHash<W> {
    fn new(inner: W) -> Self {
        TarHash {
            inner,
            hash: Some(Sha256Writer::new(io::sink())),
            size: 0,
        }
    }

    /// The digest (`None` when hashing was turned off), the size, and the inner writer.
    fn finish(self) -> (Option<Digest>, u64, W) {
        (self.hash.map(|h| h.finish().0), self.size, self.inner)
    }
}

impl<W: Write> Write for TarHash<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hash {
            h.write_all(&buf[..n])?;
        }
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The diff_id of a layer operation: the tar's own hash, or (uncompressed input, not hashed twice)
/// the stored bytes' hash, which is then the same thing.
fn tar_digest(
    compression: Compression,
    tar: Option<Digest>,
    size: u64,
    stored: (Digest, u64),
) -> DiffId {
    let digest = match tar {
        Some(d) => d,
        None => {
            debug_assert_eq!((compression, size), (Compression::None, stored.1));
            stored.0
        }
    };
    DiffId {
        compression,
        digest,
        size,
    }
}

/// Decode `stored` (any compression, detected from its bytes), hash the uncompressed stream and
/// encode it to `out` as `encoding` says. The stored bytes are hashed too (once, when they are the
/// uncompressed stream).
pub fn encode_layer<R: Read + Send, W: Write>(
    stored: R,
    out: W,
    encoding: &Encoding,
) -> Result<LayerOutput<W>, LayerError> {
    let mut input = Sha256Reader::new(stored);
    let mut enc = TarHash::new(LayerEncoder::new(out, encoding).map_err(write_err)?);
    let compression = decode_into(&mut input, &mut enc)?;
    let (digest, size, enc) = enc.finish();
    let out = enc.finish().map_err(write_err)?;
    let (stored_digest, stored_size, _) = input.finish();
    Ok(LayerOutput {
        diff_id: tar_digest(compression, digest, size, (stored_digest, stored_size)),
        stored_digest,
        stored_size,
        out,
    })
}

/// Decode the stored layer (whatever its compression) into `sink`; returns the compression found.
/// An uncompressed layer is not hashed again on the tar side (see [`TarHash`]).
fn decode_into<R: Read + Send, W: Write>(
    input: &mut Sha256Reader<R>,
    sink: &mut TarHash<W>,
) -> Result<Compression, LayerError> {
    let (compression, mut tar) = decoder(input).map_err(read_err)?;
    if compression == Compression::None {
        sink.hash = None;
    }
    let mut buf = vec![0u8; BUF_LEN];
    loop {
        let n = read_chunk(&mut tar, &mut buf)?;
        if n == 0 {
            return Ok(compression);
        }
        sink.write_all(&buf[..n]).map_err(write_err)?;
    }
}

/// The result of [`encode_layer_clamped`].
#[derive(Debug)]
pub struct ClampedOutput<W> {
    /// The input as it was (its diff_id is the one the old config has).
    pub layer: LayerOutput<W>,
    /// sha256 and size of the rewritten tar: the new diff_id.
    pub new_diff_id: Digest,
    /// Size of the rewritten tar, in bytes.
    pub new_size: u64,
    /// Tar headers whose times were clamped (0: the tar is unchanged).
    pub clamped: u64,
}

/// Like [`encode_layer`], with every tar entry time clamped to `epoch` (see [`MtimeClamp`]) on
/// the way between decoding and encoding.
pub fn encode_layer_clamped<R: Read + Send, W: Write>(
    stored: R,
    out: W,
    encoding: &Encoding,
    epoch: u64,
) -> Result<ClampedOutput<W>, LayerError> {
    let mut input = Sha256Reader::new(stored);
    let enc = Sha256Writer::new(LayerEncoder::new(out, encoding).map_err(write_err)?);
    let mut chain = TarHash::new(MtimeClamp::new(enc, epoch));
    let compression = decode_into(&mut input, &mut chain)?;
    let (digest, size, clamp) = chain.finish();
    let clamped = clamp.clamped();
    let enc = clamp
        .finish()
        .map_err(|e| LayerError::io("rewriting the layer's tar", e))?;
    let (new_diff_id, new_size, enc) = enc.finish();
    let out = enc.finish().map_err(write_err)?;
    let (stored_digest, stored_size, _) = input.finish();
    Ok(ClampedOutput {
        layer: LayerOutput {
            diff_id: tar_digest(compression, digest, size, (stored_digest, stored_size)),
            stored_digest,
            stored_size,
            out,
        },
        new_diff_id,
        new_size,
        clamped,
    })
}

/// Copy `stored` to `out` unchanged (pass `io::sink()` to only check), decoding it on the way to
/// compute the diff_id.
pub fn copy_layer<R: Read, W: Write>(mut stored: R, out: W) -> Result<LayerOutput<W>, LayerError> {
    let mut out = Sha256Writer::new(out);
    let mut check = DiffIdWriter::new();
    let mut buf = vec![0u8; BUF_LEN];
    loop {
        let n = read_chunk(&mut stored, &mut buf)?;
        if n == 0 {
            break;
        }
        check.write_all(&buf[..n]).map_err(read_err)?;
        out.write_all(&buf[..n]).map_err(write_err)?;
    }
    let diff_id = check.finish()?;
    let (stored_digest, stored_size, mut out) = out.finish();
    out.flush().map_err(write_err)?;
    Ok(LayerOutput {
        diff_id,
        stored_digest,
        stored_size,
        out,
    })
}

impl DiffId {
    /// Fail with [`LayerError::DiffIdMismatch`] unless this is `expected`; `layer` names the blob.
    pub fn check(&self, layer: &Digest, expected: &Digest) -> Result<(), LayerError> {
        if self.digest == *expected {
            Ok(())
        } else {
            Err(LayerError::DiffIdMismatch {
                layer: *layer,
                expected: *expected,
                actual: self.digest,
            })
        }
    }
}
