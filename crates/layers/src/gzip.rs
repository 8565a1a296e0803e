//! Deterministic parallel gzip, pigz-style.
//!
//! The uncompressed stream is cut into fixed [`GZIP_BLOCK`]-byte blocks. Each block is deflated on its
//! own (raw deflate, zlib-rs backend) with the previous 32 KiB of input as the preset dictionary, and
//! ends with a sync flush (an empty stored block) so that it ends on a byte boundary; the last block
//! is finished instead. The blocks are concatenated behind a fixed 10-byte gzip header (no name, mtime
//! 0, OS 255) and followed by the CRC32 and length of the whole input: one ordinary gzip member that
//! `gzip -t`, Go's `compress/gzip` and every runtime read.
//!
//! **Determinism contract.** The output bytes depend only on the input bytes, the level, the block
//! size, and the deflate implementation (flate2's `zlib-rs` backend, pinned in Cargo.lock). They do
//! not depend on the thread count, on how the input is chunked into `write` calls, or on the machine:
//! block boundaries are fixed offsets, every block is compressed from the same (dictionary, input)
//! pair whichever thread does it, and zlib-rs's CPU-specific code paths (compare256, slide_hash) are
//! exact equivalents of each other. `tests/golden.rs` pins the digests; if it fails, the compressed
//! digest of every layer changes and registries will see them as new blobs.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Bytes of input per independently compressed block (pigz uses the same). Changing it changes
/// every gzip digest layerlift produces.
pub const GZIP_BLOCK: usize = 128 * 1024;
/// Dictionary: the previous block's last 32 KiB (the deflate window).
const DICT_LEN: usize = 32 * 1024;
/// The gzip header: magic, CM=deflate, no flags, mtime 0, XFL 0, OS 255 (unknown).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Deflate `input` as one block of a larger raw deflate stream: `dict` is the preceding input (up
/// to 32 KiB), `last` finishes the stream. Appends to `out`.
fn deflate_block(
    level: u32,
    dict: &[u8],
    input: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    // A fresh compressor for every block: zlib-rs's reset() leaves state behind that changes the
    // output, so reusing one made a block's bytes depend on which block that thread compressed
    // before (found with 2 threads on a 1.3 MiB layer); a new one costs little next to 128 KiB.
    let mut c = flate2::Compress::new(flate2::Compression::new(level), false);
    let c = &mut c;
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        flate2::FlushCompress::Finish
    } else {
        flate2::FlushCompress::Sync
    };
    let start = c.total_in();
    out.reserve(input.len() + input.len() / 8 + 1024);
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(64 * 1024);
        }
        let consumed = (c.total_in() - start) as usize;
        let status = c
            .compress_vec(&input[consumed..], out, flush)
            .map_err(io::Error::other)?;
        let consumed = (c.total_in() - start) as usize;
        if last {
            if status == flate2::Status::StreamEnd {
                return Ok(());
            }
        } else if consumed == input.len() && out.len() < out.capacity() {
            // A sync flush is complete when deflate stops with output space left.
            return Ok(());
        }
    }
}

struct Job {
    dict: Vec<u8>,
    input: Vec<u8>,
    last: bool,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

/// Worker threads that deflate blocks; each keeps its own compressor.
struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize, level: u32) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let handle = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let mut out = Vec::new();
                        let result =
                            deflate_block(level, &job.dict, &job.input, job.last, &mut out)
                                .map(|()| out);
                        let _ = job.reply.send(result);
                    }
                })?;
            workers.push(handle);
        }
        Ok(Pool {
            jobs: Some(tx),
            workers,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

enum Engine {
    /// Compress on the calling thread, at this level.
    Inline(u32),
    Pool {
        pool: Pool,
        pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
        max_pending: usize,
    },
}

/// A `Write` that gzips deterministically on `threads` threads (see the module docs). Call
/// [`GzipEncoder::finish`] to write the end of the stream; dropping it without does not.
pub struct GzipEncoder<W: Write> {
    out: W,
    engine: Engine,
    block: Vec<u8>,
    dict: Vec<u8>,
    crc: flate2::Crc,
    /// Scratch output buffer for the inline engine.
    scratch: Vec<u8>,
}

impl<W: Write> std::fmt::Debug for GzipEncoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipEncoder")
            .field("input", &self.crc.amount())
            .finish_non_exhaustive()
    }
}

impl<W: Write> GzipEncoder<W> {
    /// `level` 1–9 (clamped); `threads` 0 or 1 compresses on the calling thread.
    pub fn new(mut out: W, level: u32, threads: usize) -> io::Result<Self> {
        let level = level.clamp(1, 9);
        out.write_all(&HEADER)?;
        let engine = if threads <= 1 {
            Engine::Inline(level)
        } else {
            Engine::Pool {
                pool: Pool::new(threads, level)?,
                pending: VecDeque::new(),
                max_pending: threads * 2,
            }
        };
        Ok(GzipEncoder {
            out,
            engine,
            block: Vec::with_capacity(GZIP_BLOCK),
            dict: Vec::new(),
            crc: flate2::Crc::new(),
            scratch: Vec::new(),
        })
    }

    /// Hand the current block over for compression.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::replace(&mut self.block, Vec::with_capacity(GZIP_BLOCK));
        let tail = input.len().saturating_sub(DICT_LEN);
        let next_dict = input[tail..].to_vec();
        let dict = std::mem::replace(&mut self.dict, next_dict);
        match &mut self.engine {
            Engine::Inline(level) => {
                self.scratch.clear();
                deflate_block(*level, &dict, &input, last, &mut self.scratch)?;
                self.out.write_all(&self.scratch)?;
                // Keep the allocation for the next block.
                self.block = input;
                self.block.clear();
            }
            Engine::Pool {
                pool,
                pending,
                max_pending,
            } => {
                let (reply, rx) = mpsc::sync_channel(1);
                let job = Job {
                    dict,
                    input,
                    last,
                    reply,
                };
                let sent = pool.jobs.as_ref().map(|tx| tx.send(job).is_ok());
                if sent != Some(true) {
                    return Err(io::Error::other("gzip worker threads have stopped"));
                }
                pending.push_back(rx);
                while pending.len() > *max_pending || (last && !pending.is_empty()) {
                    let rx = pending.pop_front().expect("pending is not empty");
                    let block = rx
                        .recv()
                        .map_err(|_| io::Error::other("a gzip worker thread died"))??;
                    self.out.write_all(&block)?;
                }
            }
        }
        Ok(())
    }

    /// Write the last block and the trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.out.write_all(&trailer)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

impl<W: Write> Write for GzipEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(GZIP_BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..take]);
        self.crc.update(&buf[..take]);
        if self.block.len() == GZIP_BLOCK {
            self.submit(false)?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks have fixed boundaries; flushing early would change the output.
        Ok(())
    }
}
