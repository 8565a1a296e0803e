//! [`DiffIdWriter`]: the one-pass diff_id check. Feed it a layer's stored bytes as they stream past
//! (from an archive, a socket, a file); it detects the compression from the first bytes, decodes on
//! the fly and hashes the uncompressed stream, with memory bounded by one buffer.

use crate::decode::{BUF_LEN, Driver};
use crate::error::{DecodeError, LayerError};
use crate::{Compression, SNIFF_LEN, sniff};
use layerlift_manifest::{Digest, Sha256Writer};
use std::io::{self, Write};

/// What [`DiffIdWriter::finish`] found out about a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffId {
    /// The compression of the stored bytes.
    pub compression: Compression,
    /// sha256 of the uncompressed stream: the layer's diff_id.
    pub digest: Digest,
    /// Size of the uncompressed stream.
    pub size: u64,
}

enum State {
    /// Collecting the first bytes to sniff.
    Sniffing(Vec<u8>),
    /// Uncompressed: hash directly.
    Plain,
    Decoding(Box<Driver>, Box<[u8]>),
    Failed(DecodeError),
}

/// A `Write` sink that computes a layer's diff_id from its stored (possibly compressed) bytes.
///
/// Decode errors are returned from `write` as `io::Error`s of kind `InvalidData` carrying a
/// [`DecodeError`]; after one, every call fails the same way. A stream that stops in the middle is
/// an error at [`DiffIdWriter::finish`]. Zero bytes are an (empty) uncompressed layer.
pub struct DiffIdWriter {
    state: State,
    hasher: Sha256Writer<io::Sink>,
    stored: u64,
}

impl Default for DiffIdWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for DiffIdWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffIdWriter")
            .field("compression", &self.compression())
            .field("stored", &self.stored)
            .field("uncompressed", &self.hasher.written())
            .finish()
    }
}

impl DiffIdWriter {
    /// A writer that has seen no bytes yet; the compression is detected from the first ones.
    pub fn new() -> Self {
        DiffIdWriter {
            state: State::Sniffing(Vec::with_capacity(SNIFF_LEN)),
            hasher: Sha256Writer::new(io::sink()),
            stored: 0,
        }
    }

    /// The compression, once enough bytes have been seen to tell (`None` before).
    pub fn compression(&self) -> Option<Compression> {
        match &self.state {
            State::Sniffing(_) | State::Failed(_) => None,
            State::Plain => Some(Compression::None),
            State::Decoding(d, _) => Some(d.compression),
        }
    }

    /// Stored (compressed) bytes written so far.
    pub fn stored_bytes(&self) -> u64 {
        self.stored
    }

    /// Uncompressed bytes hashed so far.
    pub fn uncompressed_bytes(&self) -> u64 {
        self.hasher.written()
    }

    /// Leave the sniffing state given what has been collected.
    fn start(&mut self, prefix: Vec<u8>) -> Result<(), DecodeError> {
        let compression = sniff(&prefix);
        if compression == Compression::None {
            self.state = State::Plain;
            self.hash(&prefix);
            return Ok(());
        }
        let driver = Driver::new(compression).map_err(|e| DecodeError::Corrupt {
            compression,
            offset: 0,
            reason: format!("cannot start the decoder: {e}"),
        })?;
        self.state = State::Decoding(Box::new(driver), vec![0; BUF_LEN].into_boxed_slice());
        self.feed(&prefix)
    }

    fn hash(&mut self, bytes: &[u8]) {
        // Writing to a sink cannot fail.
        let _ = self.hasher.write_all(bytes);
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let hasher = &mut self.hasher;
        match &mut self.state {
            State::Plain => {
                let _ = hasher.write_all(bytes);
                Ok(())
            }
            State::Decoding(driver, buf) => driver.push(bytes, buf, &mut |out| {
                let _ = hasher.write_all(out);
            }),
            State::Failed(e) => Err(e.clone()),
            State::Sniffing(_) => unreachable!("feed is only called after sniffing"),
        }
    }

    fn fail(&mut self, e: DecodeError) -> DecodeError {
        self.state = State::Failed(e.clone());
        e
    }

    /// End of the stored bytes: check that the stream is complete and return the diff_id.
    pub fn finish(mut self) -> Result<DiffId, LayerError> {
        if let State::Sniffing(prefix) = &mut self.state {
            let prefix = std::mem::take(prefix);
            self.start(prefix)?;
        }
        let hasher = &mut self.hasher;
        let compression = match &mut self.state {
            State::Plain => Compression::None,
            State::Decoding(driver, buf) => {
                driver.push_end(buf, &mut |out| {
                    let _ = hasher.write_all(out);
                })?;
                driver.compression
            }
            State::Failed(e) => return Err(e.clone().into()),
            State::Sniffing(_) => unreachable!("sniffing ended above"),
        };
        let (digest, size, _) = self.hasher.finish();
        Ok(DiffId {
            compression,
            digest,
            size,
        })
    }
}

impl Write for DiffIdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = match &mut self.state {
            State::Sniffing(prefix) => {
                let take = buf.len().min(SNIFF_LEN - prefix.len());
                prefix.extend_from_slice(&buf[..take]);
                if prefix.len() == SNIFF_LEN {
                    let prefix = std::mem::take(prefix);
                    self.start(prefix).and_then(|()| self.feed(&buf[take..]))
                } else {
                    Ok(())
                }
            }
            _ => self.feed(buf),
        };
        match result {
            Ok(()) => {
                self.stored += buf.len() as u64;
                Ok(buf.len())
            }
            Err(e) => Err(self.fail(e).into_io()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
