//! A layer that is still being compressed, readable while it grows ([`crate::Layer::Streaming`]),
//! so that push can upload the layer while it is being compressed. Two kinds:
//!
//! - **Staged** (a pipe, or staging asked for): the reader follows the staged file in the layout
//!   as the encoder writes it and ends where the finished blob ends; the finished blob can be read
//!   again from the file ([`Again::Staged`]).
//! - **In memory** (an entry of a seekable archive file or directory): the compressed bytes go
//!   through a bounded window ([`WINDOW`]) with one cursor per reader, and nothing is written to
//!   disk. The encoder waits while the slowest attached reader is a whole window behind; a reader
//!   that is dropped detaches, and one that moves not at all for [`STALL`] while the encoder waits
//!   is cut off (its reads fail from then on). The blob is made again by compressing the entry
//!   again from the archive ([`Again::Archive`], [`layerlift_layers::Reencoder`]).

use layerlift_layers::{Encoding, Reencoder};
use layerlift_manifest::Digest;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Compressed bytes an in-memory layer holds for its slowest reader before the encoder waits.
pub const WINDOW: usize = 8 << 20;
/// How long the encoder waits, with the window full, for a reader that does not move at all
/// before it cuts that reader off.
pub const STALL: Duration = Duration::from_secs(10);

/// Longest wait for the writer before the file is looked at again (a wake-up can be missed
/// between a read that found nothing and the wait).
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Growth {
    /// Still being written; the count goes up with every write.
    Writing(u64),
    /// Complete: the staged file holds exactly these bytes.
    Done { digest: Digest, size: u64 },
    /// The writer stopped before the end (a read error, a stopped read, a full disk).
    Failed,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug)]
struct State {
    growth: Growth,
    /// The compressed bytes of an in-memory layer that some reader has yet to read.
    window: Window,
}

/// The bytes of an in-memory layer from `start` on, in the chunks the encoder wrote, and where
/// each reader is.
#[derive(Debug, Default)]
struct Window {
    chunks: VecDeque<Vec<u8>>,
    /// Offset in the blob of the first byte of the first chunk.
    start: u64,
    /// Bytes held in `chunks`.
    held: usize,
    /// Each reader's offset, by reader number; `Detached` once it is dropped or cut off.
    cursors: Vec<Cursor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    At(u64),
    Detached,
    Cut,
}

impl Window {
    fn slowest(&self) -> Option<u64> {
        self.cursors
            .iter()
            .filter_map(|c| match c {
                Cursor::At(n) => Some(*n),
                _ => None,
            })
            .min()
    }

    /// Drop the chunks every attached reader is past (all of them when none is attached).
    fn trim(&mut self) {
        let slowest = self.slowest().unwrap_or(u64::MAX);
        while let Some(first) = self.chunks.front() {
            if self.start + first.len() as u64 > slowest {
                break;
            }
            self.start += first.len() as u64;
            self.held -= first.len();
            self.chunks.pop_front();
        }
    }

    /// Copy bytes from `pos` into `buf`; how many (0 when `pos` is at the end of what is held).
    fn copy(&self, pos: u64, buf: &mut [u8]) -> usize {
        let mut at = self.start;
        for chunk in &self.chunks {
            let end = at + chunk.len() as u64;
            if pos < end {
                let from = (pos - at) as usize;
                let n = (chunk.len() - from).min(buf.len());
                buf[..n].copy_from_slice(&chunk[from..from + n]);
                return n;
            }
            at = end;
        }
        0
    }
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State {
                growth: Growth::Writing(0),
                window: Window::default(),
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, g: Growth) {
        self.lock().growth = g;
        self.changed.notify_all();
    }

    /// Wait for a change, at most [`POLL`].
    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait_timeout(g, POLL)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

/// Where the bytes of a finished [`GrowingBlob`] can be read again.
#[derive(Debug, Clone)]
pub enum Again {
    /// The staged file (open before it was renamed into the layout, so still readable whatever
    /// its name is now).
    Staged(Arc<File>),
    /// Nothing staged: the entry's bytes in the archive, to compress again.
    Archive(ArchiveSpan),
}

/// An uncompressed layer's bytes in a seekable archive file (or a directory's file), and how it
/// was compressed: what [`Again::Archive`] compresses again.
#[derive(Debug, Clone)]
pub struct ArchiveSpan {
    pub(crate) file: Arc<File>,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) encoding: Encoding,
}

impl ArchiveSpan {
    /// The blob compressed again from the archive, from compressed offset `skip` on; the read
    /// fails at the end unless everything it produced hashes to `expected` (digest, size).
    pub fn reencode(
        &self,
        skip: u64,
        expected: (Digest, u64),
    ) -> io::Result<Reencoder<io::Take<ReadAt>>> {
        let raw = ReadAt {
            file: Arc::clone(&self.file),
            pos: self.offset,
        }
        .take(self.size);
        Reencoder::new(raw, &self.encoding, skip, expected)
    }
}

/// Reads a shared file from an offset with positioned reads.
#[derive(Debug)]
pub struct ReadAt {
    file: Arc<File>,
    pos: u64,
}

impl ReadAt {
    /// A reader of `file` from byte `pos` on.
    pub fn new(file: Arc<File>, pos: u64) -> Self {
        ReadAt { file, pos }
    }
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(&*self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[derive(Debug)]
enum Backing {
    Staged(Arc<File>),
    /// Reader number `usize` of the window, the entry to compress again.
    Window(usize, ArchiveSpan),
}

/// A layer being compressed into the layout: [`Read`] gives its bytes as they are written and
/// ends at the end of the finished blob, or fails if the writer stopped before the end.
#[derive(Debug)]
pub struct GrowingBlob {
    backing: Backing,
    shared: Arc<Shared>,
    read: u64,
    entry: String,
    raw_size: u64,
}

impl GrowingBlob {
    /// Wait until the blob is completely written: its digest and size, or `None` if the writer
    /// stopped before the end.
    pub fn wait_finished(&self) -> Option<(Digest, u64)> {
        self.completion().wait()
    }

    /// A handle that waits for the end of the blob while the blob itself is being read.
    pub fn completion(&self) -> Completion {
        Completion(Arc::clone(&self.shared))
    }

    /// Where the finished blob can be read again from any offset: its staged file, or the
    /// archive to compress it again from.
    pub fn again(&self) -> Again {
        match &self.backing {
            Backing::Staged(f) => Again::Staged(Arc::clone(f)),
            Backing::Window(_, span) => Again::Archive(span.clone()),
        }
    }

    /// Stop reading: an in-memory layer no longer waits for this reader (what dropping it does,
    /// while keeping [`GrowingBlob::again`] and [`GrowingBlob::completion`] at hand).
    pub fn detach(&mut self) {
        if let Backing::Window(id, _) = self.backing {
            let mut st = self.shared.lock();
            if let Some(c @ Cursor::At(_)) = st.window.cursors.get_mut(id) {
                *c = Cursor::Detached;
            }
            st.window.trim();
            drop(st);
            self.shared.changed.notify_all();
        }
    }

    /// Another reader of the same blob, from its start: the same file (or window) and writer, a
    /// position of its own (a layer streamed to several registries at once). An in-memory layer
    /// whose start the window no longer holds cannot have another reader.
    pub fn try_clone(&self) -> io::Result<GrowingBlob> {
        let backing = match &self.backing {
            Backing::Staged(f) => Backing::Staged(Arc::clone(f)),
            Backing::Window(_, span) => {
                let mut st = self.shared.lock();
                if st.window.start > 0 {
                    return Err(io::Error::other(
                        "the start of the layer is no longer held in memory",
                    ));
                }
                st.window.cursors.push(Cursor::At(0));
                Backing::Window(st.window.cursors.len() - 1, span.clone())
            }
        };
        Ok(GrowingBlob {
            backing,
            shared: Arc::clone(&self.shared),
            read: 0,
            entry: self.entry.clone(),
            raw_size: self.raw_size,
        })
    }

    /// The archive entry being compressed (its name in the archive).
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// The entry's size before compression.
    pub fn raw_size(&self) -> u64 {
        self.raw_size
    }
}

/// Waits for the end of a [`GrowingBlob`] ([`GrowingBlob::completion`]).
#[derive(Debug, Clone)]
pub struct Completion(Arc<Shared>);

impl Completion {
    /// Wait until the blob is completely written: its digest and size, or `None` if the writer
    /// stopped before the end.
    pub fn wait(&self) -> Option<(Digest, u64)> {
        let mut g = self.0.lock();
        loop {
            let now = g.growth;
            match now {
                Growth::Done { digest, size } => return Some((digest, size)),
                Growth::Failed => return None,
                Growth::Writing(_) => g = self.0.wait(g),
            }
        }
    }
}

impl Drop for GrowingBlob {
    fn drop(&mut self) {
        self.detach();
    }
}

fn not_written() -> io::Error {
    io::Error::other("the layer was not written to its end (reading the archive failed)")
}

impl GrowingBlob {
    /// [`Read::read`] of an in-memory layer: from the window, waiting for the encoder.
    fn read_window(&mut self, id: usize, buf: &mut [u8]) -> io::Result<usize> {
        let mut st = self.shared.lock();
        loop {
            match st.window.cursors.get(id) {
                Some(Cursor::At(_)) => {}
                _ => {
                    return Err(io::Error::other(
                        "this reader fell a whole window behind the compression and was cut off",
                    ));
                }
            }
            let n = st.window.copy(self.read, buf);
            if n > 0 {
                self.read += n as u64;
                st.window.cursors[id] = Cursor::At(self.read);
                let before = st.window.held;
                st.window.trim();
                let freed = st.window.held < before;
                drop(st);
                if freed {
                    self.shared.changed.notify_all();
                }
                return Ok(n);
            }
            match st.growth {
                Growth::Done { .. } => return Ok(0),
                Growth::Failed => return Err(not_written()),
                Growth::Writing(_) => {
                    st = self
                        .shared
                        .changed
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

impl Read for GrowingBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let file = match &self.backing {
            Backing::Staged(f) => Arc::clone(f),
            Backing::Window(id, _) => {
                let id = *id;
                return self.read_window(id, buf);
            }
        };
        loop {
            let before = self.shared.lock().growth;
            // Positioned: readers of one blob share the file handle's offset otherwise.
            let n = std::os::unix::fs::FileExt::read_at(&*file, buf, self.read)?;
            if n > 0 {
                self.read += n as u64;
                return Ok(n);
            }
            let g = self.shared.lock();
            let now = g.growth;
            match now {
                Growth::Done { size, .. } if self.read >= size => return Ok(0),
                // Finished after the read above: read the rest.
                Growth::Done { .. } => continue,
                Growth::Failed => return Err(not_written()),
                // Written meanwhile: look again.
                w if w != before => continue,
                Growth::Writing(_) => drop(self.shared.wait(g)),
            }
        }
    }
}

/// The writer's side of a [`GrowingBlob`]: tells readers that the file grew, that it is complete,
/// or (dropped before [`Feed::finish`]) that it never will be.
#[derive(Debug)]
pub(crate) struct Feed {
    shared: Arc<Shared>,
    done: bool,
}

impl Feed {
    /// A feed for the file at `path` (being written) that compresses archive entry `entry` of
    /// `raw_size` bytes, and the reader to hand out.
    pub(crate) fn new(
        path: &std::path::Path,
        entry: &str,
        raw_size: u64,
    ) -> io::Result<(Feed, GrowingBlob)> {
        let file = File::open(path)?;
        let shared = Shared::new();
        let blob = GrowingBlob {
            backing: Backing::Staged(Arc::new(file)),
            shared: Arc::clone(&shared),
            read: 0,
            entry: entry.to_string(),
            raw_size,
        };
        Ok((
            Feed {
                shared,
                done: false,
            },
            blob,
        ))
    }

    /// A feed whose bytes go through memory ([`InMemory`]) to one reader (more with
    /// [`GrowingBlob::try_clone`], before the first write), and can be made again from `span`.
    pub(crate) fn in_memory(
        span: ArchiveSpan,
        entry: &str,
        raw_size: u64,
    ) -> (InMemory, GrowingBlob) {
        let shared = Shared::new();
        shared.lock().window.cursors.push(Cursor::At(0));
        let blob = GrowingBlob {
            backing: Backing::Window(0, span),
            shared: Arc::clone(&shared),
            read: 0,
            entry: entry.to_string(),
            raw_size,
        };
        let feed = Feed {
            shared,
            done: false,
        };
        (InMemory { feed }, blob)
    }

    fn grew(&self) {
        let mut g = self.shared.lock();
        if let Growth::Writing(n) = g.growth {
            g.growth = Growth::Writing(n.wrapping_add(1));
        }
        drop(g);
        self.shared.changed.notify_all();
    }

    /// The file is complete (flushed) and holds `size` bytes hashing to `digest`.
    pub(crate) fn finish(mut self, digest: Digest, size: u64) {
        self.done = true;
        self.shared.set(Growth::Done { digest, size });
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if !self.done {
            self.shared.set(Growth::Failed);
        }
    }
}

/// The writer of an in-memory [`GrowingBlob`]: each write goes into the window, waiting while the
/// slowest attached reader is a whole [`WINDOW`] behind (cutting off a reader that stays put for
/// [`STALL`]). With no reader attached the bytes go nowhere.
#[derive(Debug)]
pub(crate) struct InMemory {
    feed: Feed,
}

impl InMemory {
    /// The blob is complete: `size` bytes hashing to `digest`.
    pub(crate) fn finish(self, digest: Digest, size: u64) {
        self.feed.finish(digest, size);
    }
}

impl Write for InMemory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let shared = &self.feed.shared;
        let mut st = shared.lock();
        let mut waited: Option<(Instant, Option<u64>)> = None;
        while st.window.held >= WINDOW && st.window.slowest().is_some() {
            let slowest = st.window.slowest();
            match waited {
                Some((since, at)) if at == slowest => {
                    if since.elapsed() >= STALL {
                        for c in &mut st.window.cursors {
                            if matches!(c, Cursor::At(n) if Some(*n) == slowest) {
                                *c = Cursor::Cut;
                            }
                        }
                        st.window.trim();
                        shared.changed.notify_all();
                        continue;
                    }
                }
                _ => waited = Some((Instant::now(), slowest)),
            }
            st = shared.wait(st);
        }
        if st.window.slowest().is_some() {
            st.window.held += buf.len();
            st.window.chunks.push_back(buf.to_vec());
        } else {
            st.window.start += buf.len() as u64;
        }
        if let Growth::Writing(n) = st.growth {
            st.growth = Growth::Writing(n.wrapping_add(1));
        }
        drop(st);
        shared.changed.notify_all();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that wakes a [`GrowingBlob`]'s reader after every write.
pub(crate) struct Watched<W: Write> {
    pub inner: W,
    pub feed: Option<Feed>,
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(f) = &self.feed {
            f.grew();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        if let Some(f) = &self.feed {
            f.grew();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_follows_the_writer_and_ends_with_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let mut out = File::create(&path).unwrap();
        let (feed, mut blob) = Feed::new(&path, "layer.tar", 0).unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            blob.read_to_end(&mut got).unwrap();
            (got, blob.wait_finished())
        });
        let mut all = Vec::new();
        for i in 0..50u8 {
            let chunk = vec![i; 1000];
            out.write_all(&chunk).unwrap();
            all.extend_from_slice(&chunk);
            feed.grew();
            std::thread::sleep(Duration::from_millis(1));
        }
        let digest = Digest::of(&all);
        feed.finish(digest, all.len() as u64);
        let (got, finished) = reader.join().unwrap();
        assert_eq!(got, all);
        assert_eq!(finished, Some((digest, all.len() as u64)));
    }

    #[test]
    fn two_readers_each_read_the_whole_blob() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let mut out = File::create(&path).unwrap();
        let (feed, mut a) = Feed::new(&path, "layer.tar", 0).unwrap();
        let mut b = a.try_clone().unwrap();
        let all: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let readers = [
            std::thread::spawn(move || {
                let mut got = Vec::new();
                a.read_to_end(&mut got).unwrap();
                got
            }),
            std::thread::spawn(move || {
                let mut got = Vec::new();
                b.read_to_end(&mut got).unwrap();
                got
            }),
        ];
        for chunk in all.chunks(7000) {
            out.write_all(chunk).unwrap();
            feed.grew();
        }
        feed.finish(Digest::of(&all), all.len() as u64);
        for r in readers {
            assert_eq!(r.join().unwrap(), all);
        }
    }

    fn span() -> ArchiveSpan {
        ArchiveSpan {
            file: Arc::new(tempfile::tempfile().unwrap()),
            offset: 0,
            size: 0,
            encoding: Encoding {
                compression: layerlift_layers::Compression::Gzip,
                level: None,
                threads: 1,
            },
        }
    }

    #[test]
    fn in_memory_readers_each_read_the_whole_blob_through_a_bounded_window() {
        let (mut memory, a) = Feed::in_memory(span(), "layer.tar", 0);
        let b = a.try_clone().unwrap();
        let dropped = a.try_clone().unwrap();
        drop(dropped);
        let all: Vec<u8> = (0..3 * WINDOW as u32 + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        let shared = Arc::clone(&a.shared);
        let readers = [a, b].map(|mut g| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = vec![0; 100_000];
                loop {
                    let n = g.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    std::thread::sleep(Duration::from_micros(200));
                }
                got
            })
        });
        let mut most_held = 0;
        for chunk in all.chunks(70_000) {
            memory.write_all(chunk).unwrap();
            most_held = most_held.max(shared.lock().window.held);
        }
        memory.finish(Digest::of(&all), all.len() as u64);
        for r in readers {
            assert_eq!(r.join().unwrap(), all);
        }
        assert!(
            most_held < WINDOW + 70_000,
            "held {most_held} bytes at most"
        );
        assert_eq!(
            shared.lock().window.held,
            0,
            "nothing held once all is read"
        );
    }

    #[test]
    fn an_in_memory_blob_with_no_reader_does_not_wait() {
        let (mut memory, blob) = Feed::in_memory(span(), "layer.tar", 0);
        let completion = blob.completion();
        drop(blob);
        for _ in 0..4 {
            memory.write_all(&vec![7; WINDOW]).unwrap();
        }
        memory.finish(Digest::of(b"x"), 4 * WINDOW as u64);
        assert!(completion.wait().is_some());
    }

    #[test]
    fn a_writer_that_stops_early_fails_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let mut out = File::create(&path).unwrap();
        let (feed, mut blob) = Feed::new(&path, "layer.tar", 0).unwrap();
        out.write_all(b"half").unwrap();
        drop(feed);
        let mut got = Vec::new();
        assert!(blob.read_to_end(&mut got).is_err());
        assert_eq!(got, b"half");
        assert_eq!(blob.wait_finished(), None);
    }
}
