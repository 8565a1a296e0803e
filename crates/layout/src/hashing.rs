//! A buffered writer that hashes (sha256) what it writes on a thread of its own, so that hashing a
//! large blob overlaps with reading it and writing it out instead of adding to them.
//!
//! Bytes are collected into buffers of [`CHUNK`] bytes. A full buffer is written to the inner
//! writer on the caller's thread and then handed to the hashing thread, which gives it back once
//! hashed; at most [`IN_FLIGHT`] buffers wait there, so memory stays at a few chunks per writer. The
//! thread starts with the first full buffer: a blob smaller than one chunk (a config, a manifest, a
//! small layer) is hashed on the caller's thread at [`HashingWriter::finish`], without a thread.
//! The digest is the same either way: sha256 of the bytes in the order they were written.

use layerlift_manifest::Digest;
use sha2::{Digest as _, Sha256};
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Bytes per buffer: what is written to the inner writer at once and handed to the hasher.
pub(crate) const CHUNK: usize = 256 << 10;
/// Full buffers waiting for the hashing thread before the writer waits for it.
const IN_FLIGHT: usize = 2;

/// The hashing thread: full buffers go in, hashed buffers come back (for reuse; still holding
/// their bytes).
struct Hasher {
    full: SyncSender<Vec<u8>>,
    hashed: Receiver<Vec<u8>>,
    thread: JoinHandle<Sha256>,
}

impl Hasher {
    fn start() -> Option<Self> {
        let (full, full_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (hashed_tx, hashed) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
        let thread = std::thread::Builder::new()
            .name("layerlift-sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for buf in full_rx {
                    h.update(&buf);
                    // The writer may have finished and stopped taking buffers back.
                    let _ = hashed_tx.try_send(buf);
                }
                h
            })
            .ok()?;
        Some(Hasher {
            full,
            hashed,
            thread,
        })
    }
}

/// How bytes are hashed once the first full buffer came: on the thread, or on the caller's thread
/// if none could start.
enum Hashing {
    Inline(Sha256),
    Thread(Hasher),
}

/// See the module docs. Call [`HashingWriter::finish`] for the digest; dropping it flushes nothing.
pub struct HashingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
    /// `None` until the first full buffer.
    hashing: Option<Hashing>,
    written: u64,
}

impl<W: Write> std::fmt::Debug for HashingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingWriter")
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<W: Write> HashingWriter<W> {
    /// Write through to `inner`, hashing everything.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            buf: Vec::with_capacity(CHUNK),
            hashing: None,
            written: 0,
        }
    }

    /// Bytes taken so far (written out or buffered).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Write the buffer out and hand it to the hasher; the next buffer is one it gave back.
    fn spill(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.buf)?;
        let full = std::mem::take(&mut self.buf);
        let mut next = self.hash_owned(full)?;
        next.clear();
        next.reserve(CHUNK);
        self.buf = next;
        Ok(())
    }

    /// Hash `full` (already written out): on the thread, started on the first call, or here if
    /// none could start. Returns a buffer the hasher is done with (any length) or an empty one.
    fn hash_owned(&mut self, full: Vec<u8>) -> io::Result<Vec<u8>> {
        let hashing = self.hashing.get_or_insert_with(|| match Hasher::start() {
            Some(thread) => Hashing::Thread(thread),
            None => Hashing::Inline(Sha256::new()),
        });
        match hashing {
            Hashing::Thread(t) => {
                let next = t.hashed.try_recv().unwrap_or_default();
                t.full
                    .send(full)
                    .map_err(|_| io::Error::other("the sha256 thread stopped"))?;
                Ok(next)
            }
            Hashing::Inline(h) => {
                h.update(&full);
                Ok(full)
            }
        }
    }

    /// Write `full` (at least a buffer's worth of bytes) and hash it on the thread without copying
    /// it; returns a buffer to fill next: one the hasher is done with (of any length) or an empty
    /// one. Bytes buffered by earlier [`write`](Write::write) calls go first. Shorter input is
    /// written as [`write`](Write::write) would and given back.
    pub fn write_owned(&mut self, full: Vec<u8>) -> io::Result<Vec<u8>> {
        if full.len() < CHUNK {
            self.write_all(&full)?;
            return Ok(full);
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        self.inner.write_all(&full)?;
        self.written += full.len() as u64;
        self.hash_owned(full)
    }

    /// Write what is buffered, wait for the hasher; the digest and size of everything written,
    /// and the inner writer (flushed).
    pub fn finish(mut self) -> io::Result<(Digest, u64, W)> {
        self.inner.write_all(&self.buf)?;
        self.inner.flush()?;
        let hash = match self.hashing {
            None => Sha256::new_with_prefix(&self.buf),
            Some(Hashing::Inline(mut h)) => {
                h.update(&self.buf);
                h
            }
            Some(Hashing::Thread(t)) => {
                let Hasher { full, thread, .. } = t;
                full.send(std::mem::take(&mut self.buf))
                    .map_err(|_| io::Error::other("the sha256 thread stopped"))?;
                drop(full);
                thread
                    .join()
                    .map_err(|_| io::Error::other("the sha256 thread panicked"))?
            }
        };
        Ok((
            Digest::from_bytes(hash.finalize().into()),
            self.written,
            self.inner,
        ))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let take = bytes.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&bytes[..take]);
        self.written += take as u64;
        if self.buf.len() == CHUNK {
            self.spill()?;
        }
        Ok(take)
    }

    /// Buffered bytes are written out (and handed to the hasher), then the inner writer is
    /// flushed: a reader of the file sees everything written so far.
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.spill()?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_sha256_of_the_bytes_whatever_their_size_and_chunking() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 7 * CHUNK + 12345] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            for step in [1usize << 20, 4096, 1000] {
                let mut w = HashingWriter::new(Vec::new());
                for (i, part) in data.chunks(step).enumerate() {
                    w.write_all(part).unwrap();
                    if i % 5 == 4 {
                        // A flush in between writes out a partial buffer.
                        w.flush().unwrap();
                    }
                }
                assert_eq!(w.written(), len as u64);
                let (digest, size, out) = w.finish().unwrap();
                assert_eq!((size, &out), (len as u64, &data), "len {len} step {step}");
                assert_eq!(digest, Digest::of(&data), "len {len} step {step}");
            }
        }
    }

    #[test]
    fn owned_buffers_and_small_writes_keep_their_order() {
        let data: Vec<u8> = (0..9 * CHUNK + 77).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = HashingWriter::new(Vec::new());
        let mut rest = &data[..];
        let mut spare = Vec::new();
        for size in [10, 3 * CHUNK, CHUNK - 1, 2 * CHUNK + 5, 100, CHUNK]
            .iter()
            .cycle()
        {
            let n = (*size).min(rest.len());
            if n == 0 {
                break;
            }
            if n % 2 == 0 {
                // A reused buffer of whatever length it comes back with.
                spare.clear();
                spare.extend_from_slice(&rest[..n]);
                spare = w.write_owned(std::mem::take(&mut spare)).unwrap();
            } else {
                w.write_all(&rest[..n]).unwrap();
            }
            rest = &rest[n..];
        }
        let (digest, size, out) = w.finish().unwrap();
        assert_eq!((size, digest), (data.len() as u64, Digest::of(&data)));
        assert!(out == data);
    }

    #[test]
    fn a_flush_writes_out_what_is_buffered() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        w.flush().unwrap();
        assert_eq!(w.inner, b"abc");
        w.write_all(b"def").unwrap();
        let (digest, size, out) = w.finish().unwrap();
        assert_eq!(
            (digest, size, &out[..]),
            (Digest::of(b"abcdef"), 6, &b"abcdef"[..])
        );
    }

    #[test]
    fn a_failing_inner_writer_is_an_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = HashingWriter::new(Full);
        let err = w.write_all(&vec![0; 2 * CHUNK]).unwrap_err();
        assert_eq!(err.to_string(), "disk full");
    }
}
