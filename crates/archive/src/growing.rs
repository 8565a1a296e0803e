//! A layer that is still being compressed into the layout, readable while it grows
//! ([`crate::Layer::Streaming`]): the reader follows the staged file as the encoder writes it
//! and ends where the finished blob ends, so that push can upload the layer while it is being
//! compressed, from the very bytes that land in the layout.

use layerlift_manifest::Digest;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

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
    state: Mutex<Growth>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Growth> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, g: Growth) {
        *self.lock() = g;
        self.changed.notify_all();
    }

    /// Wait for a change, at most [`POLL`].
    fn wait<'a>(&self, g: MutexGuard<'a, Growth>) -> MutexGuard<'a, Growth> {
        self.changed
            .wait_timeout(g, POLL)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }
}

/// A layer being compressed into the layout: [`Read`] gives its bytes as they are written and
/// ends at the end of the finished blob, or fails if the writer stopped before the end.
#[derive(Debug)]
pub struct GrowingBlob {
    file: File,
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

    /// The staged file (open before it was renamed into the layout, so still readable whatever
    /// its name is now): to read the finished blob again from any offset.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Another reader of the same blob, from its start: the same file and writer, a position of
    /// its own (a layer streamed to several registries at once).
    pub fn try_clone(&self) -> io::Result<GrowingBlob> {
        Ok(GrowingBlob {
            file: self.file.try_clone()?,
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
            let now = *g;
            match now {
                Growth::Done { digest, size } => return Some((digest, size)),
                Growth::Failed => return None,
                Growth::Writing(_) => g = self.0.wait(g),
            }
        }
    }
}

impl Read for GrowingBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let before = *self.shared.lock();
            // Positioned: readers of one blob share the file handle's offset otherwise.
            let n = std::os::unix::fs::FileExt::read_at(&self.file, buf, self.read)?;
            if n > 0 {
                self.read += n as u64;
                return Ok(n);
            }
            let g = self.shared.lock();
            let now = *g;
            match now {
                Growth::Done { size, .. } if self.read >= size => return Ok(0),
                // Finished after the read above: read the rest.
                Growth::Done { .. } => continue,
                Growth::Failed => {
                    return Err(io::Error::other(
                        "the layer was not written to its end (reading the archive failed)",
                    ));
                }
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
        let shared = Arc::new(Shared {
            state: Mutex::new(Growth::Writing(0)),
            changed: Condvar::new(),
        });
        let blob = GrowingBlob {
            file,
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

    fn grew(&self) {
        let mut g = self.shared.lock();
        if let Growth::Writing(n) = *g {
            *g = Growth::Writing(n.wrapping_add(1));
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
