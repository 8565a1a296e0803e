//! Copying blobs one after another into one archive (a file or a pipe) by the kernel, while a pool
//! of threads hashes them: how pack copies a layout's blobs into an archive.
//!
//! - Into a regular file the kernel copies with `copy_file_range` at the destination's position
//!   (no copy through this process), piece by piece; a hashing thread reads each piece back once
//!   it is written (`pread`), so the digest is that of the bytes now in the destination. With
//!   `writeback`, each piece is handed to the disk once hashed
//!   (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the caller's fsync at the end waits for
//!   the last pieces only.
//! - Into anything else (a pipe, a socket, a file open for writing only) the kernel copies with
//!   `sendfile`; there is nothing to read back, so a hashing thread reads the source instead.
//! - Each blob is hashed on one thread, but several blobs at once (one thread per core, at most
//!   [`MAX_HASHERS`]): sha256 runs at about the speed of the kernel's copy, so one thread would
//!   hold the copy back to its own speed. The copy runs at most [`LEAD`] bytes ahead of the
//!   hashing, so what is read back is still in the page cache.
//! - Where the kernel refuses (another OS, a filesystem or file kind without the call), the bytes
//!   are read, written and hashed on the caller's thread; the digest is the same.
//!
//! A blob's digest is compared with the one the caller expects as soon as it is hashed; a
//! mismatch stops the next [`Copier::copy`], and [`Copier::finish`] returns only when every blob
//! matched. The caller ends its archive only after that: a blob found wrong is in the
//! destination by then, but the archive is never complete.

use layerlift_manifest::Digest;
use sha2::{Digest as _, Sha256};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Bytes per kernel copy call.
const PIECE: usize = 8 << 20;
/// A hashing thread's read buffer.
const READ_BUF: usize = 1 << 20;
/// Most hashing threads one [`Copier`] runs.
pub(crate) const MAX_HASHERS: usize = 4;
/// How far the copy may run ahead of the hashing, per hashing thread.
pub(crate) const LEAD: u64 = 32 << 20;

/// Why a [`Copier`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading blob `digest` failed, or it ended before its size (`UnexpectedEof`).
    #[error("reading blob {digest}: {source}")]
    Read {
        /// The blob.
        digest: Digest,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// Writing the destination, or reading it back, failed.
    #[error("writing the archive: {0}")]
    Write(#[source] io::Error),
    /// The bytes copied for blob `digest` hash to `actual`.
    #[error("blob {digest}'s bytes hash to {actual}")]
    Mismatch {
        /// The digest the blob was copied under.
        digest: Digest,
        /// What its bytes hash to.
        actual: Digest,
    },
}

/// Copies blobs into one destination, one after another at its position, by the kernel
/// (`copy_file_range` into a file, `sendfile` into a pipe; read and write where it refuses), and
/// checks each against its digest on a pool of hashing threads, several blobs at once: read back
/// from a file destination (the digest is that of the bytes written), from the blob itself
/// otherwise. The copy runs at most 32 MiB per thread ahead of the hashing. Dropping it
/// unfinished stops the threads.
pub struct Copier {
    dst: Arc<File>,
    into_file: bool,
    read_back: bool,
    /// Whether the kernel copies here; false once it refused.
    kernel: bool,
    lead: u64,
    shared: Arc<Shared>,
    hashers: Vec<JoinHandle<()>>,
}

/// What the copying thread and the hashing threads share.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|p| p.into_inner())
    }
}

/// One blob to hash: `len` bytes, read back from the destination at `at`, or from `src` (from
/// its start) where nothing can be read back.
struct Job {
    index: usize,
    src: Arc<File>,
    len: u64,
    at: u64,
    digest: Digest,
}

#[derive(Default)]
struct State {
    /// Blobs not yet taken by a hashing thread.
    queue: VecDeque<Job>,
    /// Bytes of each blob in the destination so far.
    landed: Vec<u64>,
    /// Bytes hashed, of all blobs.
    hashed: u64,
    /// Blobs queued or being hashed.
    unfinished: usize,
    /// No blob will come ([`Copier::finish`]).
    no_more: bool,
    /// The copy was given up ([`Copier`] dropped): the threads leave.
    abandoned: bool,
    /// The first failure of a hashing thread, until the copying thread takes it.
    failure: Option<CopyError>,
}

impl State {
    fn stopped(&self) -> bool {
        self.abandoned || self.failure.is_some()
    }
}

impl Copier {
    /// A copier into `dst` (a file or a pipe), from its current position on. With `writeback`,
    /// a file destination's pieces go to the disk as they are hashed.
    pub fn new(dst: &File, writeback: bool) -> io::Result<Copier> {
        let into_file = dst.metadata()?.file_type().is_file();
        let read_back = into_file && readable(dst);
        let dst = Arc::new(dst.try_clone()?);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, MAX_HASHERS);
        let mut copier = Copier {
            dst,
            into_file,
            read_back,
            kernel: cfg!(target_os = "linux"),
            lead: LEAD * threads as u64,
            shared,
            hashers: Vec::with_capacity(threads),
        };
        for _ in 0..threads {
            let hasher = Hasher {
                shared: copier.shared.clone(),
                dst: copier.dst.clone(),
                read_back,
                writeback: writeback && read_back,
            };
            let handle = std::thread::Builder::new()
                .name("layerlift-sha256".into())
                .spawn(move || hasher.run())?;
            copier.hashers.push(handle);
        }
        Ok(copier)
    }

    /// Copy the first `len` bytes of `src` to the destination at its position (which advances
    /// by `len`), to be checked against `digest`; `progress` is told of every piece copied. An
    /// earlier blob found wrong in the meantime is this call's error.
    pub fn copy(
        &mut self,
        src: File,
        len: u64,
        digest: Digest,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), CopyError> {
        self.room()?;
        if !self.kernel {
            return self.copy_here(&src, len, digest, progress);
        }
        let at = if self.read_back {
            io::Seek::stream_position(&mut &*self.dst).map_err(CopyError::Write)?
        } else {
            0
        };
        let read_error = |source| CopyError::Read { digest, source };
        // The first piece tells whether the kernel copies here at all.
        let mut pos = 0;
        let first = len.min(PIECE as u64) as usize;
        if first > 0 {
            match kernel_piece(&src, &mut pos, &self.dst, self.into_file, first) {
                Ok(0) => return Err(read_error(short(len))),
                Ok(n) => progress(n as u64),
                Err(e) if refused(&e) => {
                    self.kernel = false;
                    return self.copy_here(&src, len, digest, progress);
                }
                Err(e) => return Err(CopyError::Write(e)),
            }
        }
        let src = Arc::new(src);
        let index = {
            let mut s = self.shared.lock();
            let index = s.landed.len();
            s.landed.push(pos);
            s.unfinished += 1;
            s.queue.push_back(Job {
                index,
                src: src.clone(),
                len,
                at,
                digest,
            });
            self.shared.changed.notify_all();
            index
        };
        while pos < len {
            self.room()?;
            let want = (len - pos).min(PIECE as u64) as usize;
            let before = pos;
            match kernel_piece(&src, &mut pos, &self.dst, self.into_file, want) {
                Ok(0) => return Err(read_error(short(len - pos))),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Write(e)),
            }
            progress(pos - before);
            let mut s = self.shared.lock();
            s.landed[index] = pos;
            self.shared.changed.notify_all();
        }
        Ok(())
    }

    /// Wait until every blob copied is hashed; the first one found wrong is the error.
    pub fn finish(self) -> Result<(), CopyError> {
        let mut s = self.shared.lock();
        s.no_more = true;
        self.shared.changed.notify_all();
        while s.unfinished > 0 && s.failure.is_none() {
            s = self.shared.wait(s);
        }
        match s.failure.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Wait while the copy is too far ahead of the hashing; a hashing thread's failure is the
    /// error.
    fn room(&self) -> Result<(), CopyError> {
        let mut s = self.shared.lock();
        loop {
            if let Some(e) = s.failure.take() {
                s.abandoned = true;
                self.shared.changed.notify_all();
                return Err(e);
            }
            let copied: u64 = s.landed.iter().sum();
            if copied.saturating_sub(s.hashed) < self.lead {
                return Ok(());
            }
            s = self.shared.wait(s);
        }
    }

    /// The copy without the kernel's help: read, write, hash, here.
    fn copy_here(
        &self,
        src: &File,
        len: u64,
        digest: Digest,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), CopyError> {
        let mut buf = vec![0u8; READ_BUF.min(len.max(1) as usize)];
        let mut hash = Sha256::new();
        let mut offset = 0;
        while offset < len {
            let want = (len - offset).min(buf.len() as u64) as usize;
            let n = read_some(src, &mut buf[..want], offset, len - offset)
                .map_err(|source| CopyError::Read { digest, source })?;
            (&*self.dst)
                .write_all(&buf[..n])
                .map_err(CopyError::Write)?;
            hash.update(&buf[..n]);
            progress(n as u64);
            offset += n as u64;
        }
        check(digest, hash)
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        self.shared.lock().abandoned = true;
        self.shared.changed.notify_all();
        for handle in self.hashers.drain(..) {
            let _ = handle.join();
        }
    }
}

/// `hash` of blob `digest`'s bytes, compared.
fn check(digest: Digest, hash: Sha256) -> Result<(), CopyError> {
    let actual = Digest::from_bytes(hash.finalize().into());
    if actual == digest {
        Ok(())
    } else {
        Err(CopyError::Mismatch { digest, actual })
    }
}

/// One hashing thread.
struct Hasher {
    shared: Arc<Shared>,
    dst: Arc<File>,
    read_back: bool,
    writeback: bool,
}

impl Hasher {
    fn run(self) {
        let _leaving = Leaving(&self.shared);
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let job = {
                let mut s = self.shared.lock();
                loop {
                    if s.stopped() {
                        return;
                    }
                    if let Some(job) = s.queue.pop_front() {
                        break job;
                    }
                    if s.no_more {
                        return;
                    }
                    s = self.shared.wait(s);
                }
            };
            let result = self.hash(&job, &mut buf);
            let mut s = self.shared.lock();
            s.unfinished -= 1;
            if let Err(e) = result {
                s.failure.get_or_insert(e);
            }
            self.shared.changed.notify_all();
        }
    }

    /// Hash `job`'s bytes as they land and compare; a stopped copy ends it early with `Ok`.
    fn hash(&self, job: &Job, buf: &mut [u8]) -> Result<(), CopyError> {
        let mut hash = Sha256::new();
        let mut done = 0;
        let mut sent = 0;
        while done < job.len {
            let until = if self.read_back {
                let mut s = self.shared.lock();
                loop {
                    if s.stopped() {
                        return Ok(());
                    }
                    if s.landed[job.index] > done {
                        break s.landed[job.index];
                    }
                    s = self.shared.wait(s);
                }
            } else {
                job.len
            };
            let want = (until - done).min(buf.len() as u64) as usize;
            let n = if self.read_back {
                read_some(&self.dst, &mut buf[..want], job.at + done, job.len - done)
                    .map_err(CopyError::Write)?
            } else {
                read_some(&job.src, &mut buf[..want], done, job.len - done).map_err(|source| {
                    CopyError::Read {
                        digest: job.digest,
                        source,
                    }
                })?
            };
            hash.update(&buf[..n]);
            done += n as u64;
            if self.writeback && (done - sent >= PIECE as u64 || done == job.len) {
                start_writeback(&self.dst, job.at + sent, done - sent);
                sent = done;
            }
            let mut s = self.shared.lock();
            s.hashed += n as u64;
            if s.stopped() {
                return Ok(());
            }
            self.shared.changed.notify_all();
        }
        check(job.digest, hash)
    }
}

/// Marks a hashing thread that panicked as a failure, so that nothing waits for it.
struct Leaving<'a>(&'a Shared);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut s = self.0.lock();
            s.failure.get_or_insert(CopyError::Write(io::Error::other(
                "the sha256 thread panicked",
            )));
            self.0.changed.notify_all();
        }
    }
}

fn short(left: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the source ended {left} bytes early"),
    )
}

/// One read of `file` at `offset` into `buf` (of which `left` bytes are still wanted): the bytes
/// read, never 0.
fn read_some(file: &File, buf: &mut [u8], offset: u64, left: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Ok(0) => return Err(short(left)),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One kernel copy call of at most `n` bytes from `src` at `*offset` (advanced) to `dst` at its
/// position.
#[cfg(target_os = "linux")]
fn kernel_piece(
    src: &File,
    offset: &mut u64,
    dst: &File,
    into_file: bool,
    n: usize,
) -> io::Result<usize> {
    let r = if into_file {
        rustix::fs::copy_file_range(src, Some(offset), dst, None, n)
    } else {
        rustix::fs::sendfile(dst, src, Some(offset), n)
    };
    r.map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn kernel_piece(_: &File, _: &mut u64, _: &File, _: bool, _: usize) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Whether `file` was opened for reading as well as writing.
#[cfg(target_os = "linux")]
fn readable(file: &File) -> bool {
    use rustix::fs::OFlags;
    rustix::fs::fcntl_getfl(file).is_ok_and(|f| f & OFlags::ACCMODE == OFlags::RDWR)
}

#[cfg(not(target_os = "linux"))]
fn readable(_: &File) -> bool {
    false
}

/// Errors that mean "this kernel, filesystem or file kind cannot do it": copy here instead.
#[cfg(target_os = "linux")]
fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL | libc::EBADF)
    )
}

#[cfg(not(target_os = "linux"))]
fn refused(_: &io::Error) -> bool {
    true
}

/// Start writing `len` bytes of `file` at `offset` back to the disk, without waiting. Best
/// effort: an error here shows again at the caller's fsync.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range reads no memory of ours; the descriptor is borrowed from a `File`
    // that outlives the call.
    let _ = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: u64) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    fn data(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i + seed) * 131 % 251) as u8).collect()
    }

    fn source(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    /// Copy `bytes` (from a file of their own) under their digest.
    fn put(copier: &mut Copier, bytes: &[u8]) -> Result<(), CopyError> {
        let digest = Digest::of(bytes);
        copier.copy(source(bytes), bytes.len() as u64, digest, &mut |_| {})
    }

    fn read_all(mut f: &File) -> Vec<u8> {
        f.rewind().unwrap();
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        out
    }

    /// Blobs of several sizes (empty, under a piece, several pieces) into a file that already
    /// holds a prefix, with and without writeback: each lands after the one before, every one
    /// hashes right, and the progress adds up.
    #[test]
    fn blobs_land_one_after_another_and_hash_right() {
        for writeback in [false, true] {
            let blobs: Vec<Vec<u8>> = [0, 1000, 3 * PIECE + 12345, PIECE, 7]
                .iter()
                .enumerate()
                .map(|(i, &len)| data(len, i))
                .collect();
            let mut dst = tempfile::tempfile().unwrap();
            dst.write_all(b"head").unwrap();
            let mut copier = Copier::new(&dst, writeback).unwrap();
            let mut seen = 0;
            for blob in &blobs {
                copier
                    .copy(
                        source(blob),
                        blob.len() as u64,
                        Digest::of(blob),
                        &mut |n| seen += n,
                    )
                    .unwrap();
                (&dst).write_all(b"|").unwrap();
            }
            copier.finish().unwrap();
            let total: usize = blobs.iter().map(Vec::len).sum();
            assert_eq!(seen, total as u64);
            let mut expected = b"head".to_vec();
            for blob in &blobs {
                expected.extend_from_slice(blob);
                expected.push(b'|');
            }
            assert!(read_all(&dst) == expected);
            assert_eq!(dst.stream_position().unwrap(), expected.len() as u64);
        }
    }

    /// A blob whose bytes are not its digest's is named, whichever blob it is; the copy of a
    /// later blob, or the finish, reports it.
    #[test]
    fn a_wrong_blob_is_named() {
        let good = data(2 * PIECE, 1);
        let bad = data(PIECE + 3, 2);
        let wrong = Digest::of(b"something else");
        for bad_at in [0, 1, 2] {
            let dst = tempfile::tempfile().unwrap();
            let mut copier = Copier::new(&dst, false).unwrap();
            let mut result = Ok(());
            for i in 0..3 {
                let (bytes, digest) = if i == bad_at {
                    (&bad, wrong)
                } else {
                    (&good, Digest::of(&good))
                };
                result = copier.copy(source(bytes), bytes.len() as u64, digest, &mut |_| {});
                if result.is_err() {
                    break;
                }
            }
            let err = result.and_then(|()| copier.finish()).unwrap_err();
            match err {
                CopyError::Mismatch { digest, actual } => {
                    assert_eq!((digest, actual), (wrong, Digest::of(&bad)), "{bad_at}")
                }
                other => panic!("{bad_at}: {other}"),
            }
        }
    }

    /// Into a file open for writing only (standard output sent to a file): nothing can be read
    /// back, the source is hashed instead.
    #[test]
    fn a_write_only_file_is_not_read_back() {
        let bytes = data(2 * PIECE + 7, 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let dst = File::create(&path).unwrap();
        let mut copier = Copier::new(&dst, true).unwrap();
        assert!(!copier.read_back);
        put(&mut copier, &bytes).unwrap();
        copier.finish().unwrap();
        assert!(std::fs::read(&path).unwrap() == bytes);
    }

    /// Into a pipe (sendfile): the reader gets the blobs, each hashed from its source.
    #[test]
    fn blobs_go_down_a_pipe() {
        let blobs = [data(2 * PIECE + 99, 0), data(5000, 1)];
        let (mut rx, tx) = std::io::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got
        });
        let tx = File::from(std::os::fd::OwnedFd::from(tx));
        let mut copier = Copier::new(&tx, false).unwrap();
        for blob in &blobs {
            put(&mut copier, blob).unwrap();
        }
        copier.finish().unwrap();
        drop(tx);
        assert!(reader.join().unwrap() == blobs.concat());
    }

    /// A source shorter than its size is a read error of that blob.
    #[test]
    fn a_short_source_is_an_error() {
        let bytes = data(PIECE + 10, 0);
        for len in [bytes.len() + 1, 2 * PIECE, PIECE + 11] {
            let dst = tempfile::tempfile().unwrap();
            let mut copier = Copier::new(&dst, false).unwrap();
            let digest = Digest::of(&bytes);
            let err = copier
                .copy(source(&bytes), len as u64, digest, &mut |_| {})
                .and_then(|()| copier.finish())
                .unwrap_err();
            match err {
                CopyError::Read { digest: d, source } => {
                    assert_eq!(d, digest);
                    assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof, "{len}");
                }
                other => panic!("{len}: {other}"),
            }
        }
    }

    /// The copy made here (what runs where the kernel refuses) gives the same bytes, and checks
    /// the digest too.
    #[test]
    fn the_copy_here_matches() {
        let bytes = data(READ_BUF * 2 + 3, 0);
        let dst = tempfile::tempfile().unwrap();
        let mut copier = Copier::new(&dst, false).unwrap();
        copier.kernel = false;
        put(&mut copier, &bytes).unwrap();
        let wrong = Digest::of(b"x");
        let err = copier
            .copy(source(&bytes), bytes.len() as u64, wrong, &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, CopyError::Mismatch { digest, .. } if digest == wrong));
        drop(copier);
        assert!(read_all(&dst)[..bytes.len()] == bytes);
    }
}
