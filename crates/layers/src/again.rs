//! A layer compressed again from its uncompressed bytes ([`Reencoder`]): the encoders are
//! deterministic, so compressing the same bytes with the same [`Encoding`] gives the blob a first
//! pass gave, byte for byte. Push uses it to resume a broken upload of a layer that was streamed
//! from a seekable archive without a copy of its compressed bytes being kept: it reads the
//! layer's entry again, compresses it, skips to the registry's offset, and checks the digest
//! and size of everything it produced (the skipped prefix included) against the first pass's
//! when it reaches the end.

use crate::encode::{Encoding, LayerEncoder};
use layerlift_manifest::{Digest, Sha256Writer};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

/// Uncompressed bytes read and compressed per step.
const STEP: usize = 1 << 20;

/// What the encoder wrote and the reader has not taken yet (the encoder owns its writer, so the
/// two share it).
#[derive(Clone, Default)]
struct Spill(Arc<Mutex<VecDeque<u8>>>);

impl Write for Spill {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A [`Read`] of the compressed blob made again from `raw` (the layer's uncompressed bytes), from
/// compressed offset `skip` on; it fails at the end if the whole output is not the blob `expected`
/// names (digest and size).
pub struct Reencoder<R: Read> {
    raw: R,
    encoder: Option<LayerEncoder<Spill>>,
    spill: Spill,
    /// Compressed bytes produced so far, and their hash.
    produced: u64,
    hash: Option<Sha256Writer<io::Sink>>,
    /// Compressed bytes still to drop before the first one returned.
    skip: u64,
    expected: (Digest, u64),
    buf: Vec<u8>,
    checked: bool,
}

impl<R: Read> std::fmt::Debug for Reencoder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reencoder(at {}, to skip {})", self.produced, self.skip)
    }
}

impl<R: Read> Reencoder<R> {
    /// Compress `raw` again as `encoding` says, returning the output from byte `skip` on, and
    /// check it against `expected` (digest, size) at the end.
    pub fn new(
        raw: R,
        encoding: &Encoding,
        skip: u64,
        expected: (Digest, u64),
    ) -> io::Result<Self> {
        let spill = Spill::default();
        Ok(Reencoder {
            raw,
            encoder: Some(LayerEncoder::new(spill.clone(), encoding)?),
            spill,
            produced: 0,
            hash: Some(Sha256Writer::new(io::sink())),
            skip,
            expected,
            buf: Vec::new(),
            checked: false,
        })
    }

    /// Compress one more step of `raw` (finishing the encoder at its end); false once nothing
    /// more will come.
    fn step(&mut self) -> io::Result<bool> {
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(false);
        };
        self.buf.resize(STEP, 0);
        let mut n = 0;
        while n < STEP {
            match self.raw.read(&mut self.buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if n > 0 {
            encoder.write_all(&self.buf[..n])?;
        }
        if n < STEP
            && let Some(e) = self.encoder.take()
        {
            e.finish()?;
        }
        Ok(true)
    }

    /// Take what the encoder wrote: hash it, drop what is to be skipped, copy the rest into
    /// `out`. How many bytes went into `out`.
    fn drain(&mut self, out: &mut [u8]) -> usize {
        let mut spilled = self.spill.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut given = 0;
        while !spilled.is_empty() && given < out.len() {
            let (front, _) = spilled.as_slices();
            let take = if self.skip > 0 {
                front
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX))
            } else {
                front.len().min(out.len() - given)
            };
            if let Some(h) = self.hash.as_mut() {
                // Writing to a hasher over a sink cannot fail.
                let _ = h.write_all(&front[..take]);
            }
            if self.skip > 0 {
                self.skip -= take as u64;
            } else {
                out[given..given + take].copy_from_slice(&front[..take]);
                given += take;
            }
            self.produced += take as u64;
            spilled.drain(..take);
        }
        given
    }

    /// At the end: the output must be the expected blob.
    fn check(&mut self) -> io::Result<()> {
        if self.checked {
            return Ok(());
        }
        self.checked = true;
        let (digest, size, _) = self.hash.take().expect("hashed once").finish();
        if (digest, size) != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "compressing the layer again gave {digest} ({size} bytes), not {} ({} bytes): \
                     its source changed",
                    self.expected.0, self.expected.1
                ),
            ));
        }
        Ok(())
    }
}

impl<R: Read> Read for Reencoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.drain(out);
            if n > 0 {
                return Ok(n);
            }
            if !self.step()? {
                self.check()?;
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Compression;

    fn layer() -> Vec<u8> {
        let mut x = 1u32;
        (0..3_500_000u32)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 7) as u8
            })
            .collect()
    }

    fn compressed(raw: &[u8], encoding: &Encoding) -> Vec<u8> {
        let mut e = LayerEncoder::new(Vec::new(), encoding).unwrap();
        e.write_all(raw).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn the_same_bytes_come_again_from_any_offset_and_are_checked() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let encoding = Encoding {
                compression,
                level: None,
                threads: 2,
            };
            let raw = layer();
            let blob = compressed(&raw, &encoding);
            let expected = (Digest::of(&blob), blob.len() as u64);
            for skip in [0, 1, 70_000, blob.len() as u64 - 1, blob.len() as u64] {
                let mut again = Reencoder::new(&raw[..], &encoding, skip, expected).unwrap();
                let mut got = Vec::new();
                again.read_to_end(&mut got).unwrap();
                assert_eq!(got, &blob[skip as usize..], "{compression} from {skip}");
            }
            // Other bytes than the first pass compressed: refused at the end.
            let mut changed = raw.clone();
            changed[2_000_000] ^= 1;
            let mut again = Reencoder::new(&changed[..], &encoding, 10, expected).unwrap();
            let err = again.read_to_end(&mut Vec::new()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{compression}");
        }
    }
}
