//! Copying a byte range of a file into another file or a pipe by the kernel, while a thread of
//! its own hashes the same bytes (sha256): how pack copies a layout's blobs into an archive.
//!
//! - Into a regular file the kernel copies with `copy_file_range` at the destination's position
//!   (no copy through this process), piece by piece; the hashing thread reads back each piece
//!   once it is written (`pread` into one reused buffer), so the digest is that of the bytes now
//!   in the destination. With `writeback`, each piece is handed to the disk once hashed
//!   (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the caller's fsync at the end waits for
//!   the last pieces only.
//! - Into anything else (a pipe, a socket) the kernel copies with `sendfile`; there is nothing to
//!   read back, so the hashing thread reads the source range itself, alongside.
//! - Where the kernel refuses (another OS, a filesystem or file kind without the call), the bytes
//!   are read and written here and hashed on this thread; the digest is the same.
//!
//! Ranges under [`THREAD_MIN`] bytes are hashed on the caller's thread after the copy. The caller
//! compares the digest before it lets the copy count: the bytes are in the destination by then.

use layerlift_manifest::Digest;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::mpsc::sync_channel;

/// Bytes per kernel copy call: also how far the hashing thread may trail the copy.
const PIECE: usize = 8 << 20;
/// The hashing thread's read buffer.
const READ_BUF: usize = 1 << 20;
/// Ranges this short are hashed on the caller's thread.
pub const THREAD_MIN: u64 = 1 << 20;

/// Copy `len` bytes of `src` from `offset` to `dst` at its current position (which advances by
/// `len`); the sha256 of the bytes copied. With `writeback`, a file destination's pieces go to
/// the disk as they are copied.
pub fn copy_range(
    src: &File,
    offset: u64,
    len: u64,
    dst: &File,
    writeback: bool,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Digest> {
    let hash = copy_range_hashed(src, offset, len, dst, writeback, Sha256::new(), progress)?;
    Ok(Digest::from_bytes(hash.finalize().into()))
}

/// Copy `len` bytes of `src` from `offset` to `dst` at its current position (which advances by
/// `len`), feeding them to `hash` and returning it; `progress` is told of every piece copied. A
/// source that ends before `offset + len` is an `UnexpectedEof` error (what was copied stays in
/// `dst`). With `writeback`, a regular-file destination's written pieces are sent to the disk as
/// the copy goes (see the [module docs](self)).
pub(crate) fn copy_range_hashed(
    src: &File,
    offset: u64,
    len: u64,
    dst: &File,
    writeback: bool,
    hash: Sha256,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Sha256> {
    let into_file = dst.metadata()?.file_type().is_file();
    let start = if into_file {
        io::Seek::stream_position(&mut &*dst)?
    } else {
        0
    };
    match kernel_copy(
        src, offset, len, dst, into_file, start, hash, writeback, progress,
    )? {
        Copied::All(hash) => Ok(hash),
        Copied::Refused(hash) => copy_here(src, offset, len, dst, hash, progress),
    }
}

/// What [`kernel_copy`] did: copied and hashed everything, or nothing because the kernel refused
/// the first call (the hash is given back as it came).
enum Copied {
    All(Sha256),
    Refused(Sha256),
}

fn short(left: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the source ended {left} bytes early"),
    )
}

/// Read `len` bytes of `file` from `offset` into `hash`, through `buf`.
fn hash_range(
    file: &File,
    mut offset: u64,
    len: u64,
    buf: &mut [u8],
    hash: &mut Sha256,
) -> io::Result<()> {
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match file.read_at(&mut buf[..want], offset) {
            Ok(0) => return Err(short(left)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.update(&buf[..n]);
        offset += n as u64;
        left -= n as u64;
    }
    Ok(())
}

/// The copy without the kernel's help: read, write, hash, here.
fn copy_here(
    src: &File,
    mut offset: u64,
    len: u64,
    mut dst: &File,
    mut hash: Sha256,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Sha256> {
    let mut buf = vec![0u8; READ_BUF.min(len.max(1) as usize)];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match src.read_at(&mut buf[..want], offset) {
            Ok(0) => return Err(short(left)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        hash.update(&buf[..n]);
        progress(n as u64);
        offset += n as u64;
        left -= n as u64;
    }
    Ok(hash)
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

/// Whether `file` was opened for reading as well as writing.
#[cfg(target_os = "linux")]
fn readable(file: &File) -> bool {
    use rustix::fs::OFlags;
    rustix::fs::fcntl_getfl(file).is_ok_and(|f| f & OFlags::ACCMODE == OFlags::RDWR)
}

/// Errors that mean "this kernel, filesystem or file kind cannot do it": copy here instead.
#[cfg(target_os = "linux")]
fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL | libc::EBADF)
    )
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

#[cfg(target_os = "linux")]
#[allow(clippy::too_many_arguments)]
fn kernel_copy(
    src: &File,
    offset: u64,
    len: u64,
    dst: &File,
    into_file: bool,
    start: u64,
    mut hash: Sha256,
    writeback: bool,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Copied> {
    if len == 0 {
        return Ok(Copied::All(hash));
    }
    let mut pos = offset;
    // The first piece tells whether the kernel copies here at all.
    let first = len.min(PIECE as u64) as usize;
    let n = match kernel_piece(src, &mut pos, dst, into_file, first) {
        Ok(0) => return Err(short(len)),
        Ok(n) => n as u64,
        Err(e) if refused(&e) => return Ok(Copied::Refused(hash)),
        Err(e) => return Err(e),
    };
    progress(n);
    // What was written lands at `start..`: read back from there, or from the source for a pipe
    // or a file open for writing only (standard output sent to a file).
    let read_back = into_file && readable(dst);
    let (read_from, read_at) = if read_back {
        (dst, start)
    } else {
        (src, offset)
    };
    if len < THREAD_MIN {
        copy_rest(
            src,
            &mut pos,
            offset + len,
            dst,
            into_file,
            progress,
            |_| Ok(()),
        )?;
        hash_range(
            read_from,
            read_at,
            len,
            &mut vec![0; len as usize],
            &mut hash,
        )?;
        if writeback && read_back {
            start_writeback(dst, start, len);
        }
        return Ok(Copied::All(hash));
    }
    std::thread::scope(|scope| {
        // Pieces written (their length), for the thread to read back in order; a pipe's source
        // is read in one go.
        let (written, pieces) = sync_channel::<u64>(4);
        let hasher = std::thread::Builder::new()
            .name("layerlift-sha256".into())
            .spawn_scoped(scope, move || -> io::Result<Sha256> {
                let mut buf = vec![0u8; READ_BUF];
                let mut hashed = 0;
                if !read_back {
                    hash_range(read_from, read_at, len, &mut buf, &mut hash)?;
                    return Ok(hash);
                }
                for piece in pieces {
                    hash_range(read_from, read_at + hashed, piece, &mut buf, &mut hash)?;
                    if writeback {
                        start_writeback(dst, read_at + hashed, piece);
                    }
                    hashed += piece;
                }
                Ok(hash)
            })?;
        let stopped = || io::Error::other("the sha256 thread stopped");
        let copied = (|| {
            if read_back {
                written.send(n).map_err(|_| stopped())?;
            }
            copy_rest(src, &mut pos, offset + len, dst, into_file, progress, |k| {
                if read_back {
                    written.send(k).map_err(|_| stopped())?;
                }
                Ok(())
            })
        })();
        drop(written);
        // The thread's error first: a copy that stopped because the thread did says less.
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the sha256 thread panicked")))?;
        copied?;
        Ok(Copied::All(hashed))
    })
}

/// Kernel-copy from `*pos` up to `end`, telling `done` of every piece.
#[cfg(target_os = "linux")]
fn copy_rest(
    src: &File,
    pos: &mut u64,
    end: u64,
    dst: &File,
    into_file: bool,
    progress: &mut dyn FnMut(u64),
    mut done: impl FnMut(u64) -> io::Result<()>,
) -> io::Result<()> {
    while *pos < end {
        let want = (end - *pos).min(PIECE as u64) as usize;
        let n = match kernel_piece(src, pos, dst, into_file, want) {
            Ok(0) => return Err(short(end - *pos)),
            Ok(n) => n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        progress(n);
        done(n)?;
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
#[allow(clippy::too_many_arguments)]
fn kernel_copy(
    _src: &File,
    _offset: u64,
    _len: u64,
    _dst: &File,
    _into_file: bool,
    _start: u64,
    hash: Sha256,
    _writeback: bool,
    _progress: &mut dyn FnMut(u64),
) -> io::Result<Copied> {
    Ok(Copied::Refused(hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 131 % 251) as u8).collect()
    }

    fn source(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    /// Into a file that already holds a prefix: the range lands after it, the digest is that of
    /// the range (continuing the given hash), for ranges below and above the thread's threshold.
    #[test]
    fn a_range_lands_at_the_position_and_hashes_right() {
        let bytes = data(3 * PIECE + 12345);
        let src = source(&bytes);
        for (offset, len) in [
            (0usize, 0usize),
            (7, 1000),
            (100, 3 * PIECE),
            (0, bytes.len()),
        ] {
            let mut dst = tempfile::tempfile().unwrap();
            dst.write_all(b"head").unwrap();
            let mut seen = 0;
            let hash = copy_range_hashed(
                src.as_file(),
                offset as u64,
                len as u64,
                &dst,
                true,
                Sha256::new_with_prefix(b"head"),
                &mut |n| seen += n,
            )
            .unwrap();
            let range = &bytes[offset..offset + len];
            let mut expected = Sha256::new_with_prefix(b"head");
            expected.update(range);
            assert_eq!(hash.finalize(), expected.finalize(), "{offset} {len}");
            assert_eq!(seen, len as u64);
            assert_eq!(dst.stream_position().unwrap(), 4 + len as u64);
            dst.rewind().unwrap();
            let mut out = Vec::new();
            dst.read_to_end(&mut out).unwrap();
            assert!(out[4..] == *range && &out[..4] == b"head");
        }
    }

    /// Into a file open for writing only (standard output sent to a file): nothing can be read
    /// back, the source is hashed instead.
    #[test]
    fn a_write_only_file_is_not_read_back() {
        let bytes = data(2 * PIECE + 7);
        let src = source(&bytes);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let dst = File::create(&path).unwrap();
        let digest = copy_range(
            src.as_file(),
            0,
            bytes.len() as u64,
            &dst,
            false,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(digest, Digest::of(&bytes));
        assert!(std::fs::read(&path).unwrap() == bytes);
    }

    /// Into a pipe (sendfile): the reader gets the range, the digest is the range's.
    #[test]
    fn a_range_goes_down_a_pipe() {
        let bytes = data(2 * PIECE + 99);
        let src = source(&bytes);
        let (mut rx, tx) = std::io::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got
        });
        let tx = File::from(std::os::fd::OwnedFd::from(tx));
        let hash = copy_range_hashed(
            src.as_file(),
            5,
            bytes.len() as u64 - 5,
            &tx,
            false,
            Sha256::new(),
            &mut |_| {},
        )
        .unwrap();
        drop(tx);
        let got = reader.join().unwrap();
        assert!(got == bytes[5..]);
        assert_eq!(hash.finalize(), Sha256::digest(&bytes[5..]));
    }

    /// A source shorter than the range is an error, whichever side notices.
    #[test]
    fn a_short_source_is_an_error() {
        let bytes = data(PIECE + 10);
        let src = source(&bytes);
        for len in [bytes.len() + 1, 2 * PIECE] {
            let dst = tempfile::tempfile().unwrap();
            let err = copy_range_hashed(
                src.as_file(),
                0,
                len as u64,
                &dst,
                false,
                Sha256::new(),
                &mut |_| {},
            )
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{len}");
        }
    }

    /// The copy made here (what runs where the kernel refuses) gives the same bytes and digest.
    #[test]
    fn the_copy_here_matches() {
        let bytes = data(READ_BUF * 2 + 3);
        let src = source(&bytes);
        let mut dst = tempfile::tempfile().unwrap();
        let hash = copy_here(
            src.as_file(),
            1,
            bytes.len() as u64 - 1,
            &dst,
            Sha256::new(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(hash.finalize(), Sha256::digest(&bytes[1..]));
        dst.rewind().unwrap();
        let mut out = Vec::new();
        dst.read_to_end(&mut out).unwrap();
        assert!(out == bytes[1..]);
    }
}
