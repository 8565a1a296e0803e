//! The tar stream of an archive, written entry by entry with headers that depend on nothing but
//! the entry: GNU headers, uid and gid 0 without user or group names, mtime 0 (1970), mode 0644 for
//! files and 0755 for directories. So the same entries in the same order give the same bytes on any
//! machine, at any time, as any user.
//!
//! Headers are written here rather than through `tar::Builder`, whose `Drop` writes the
//! end-of-archive blocks: an archive cut by an error must never end like a complete one.

use std::io::{self, Read, Write};

/// Buffer of one copy step (what a blob is read and written in).
pub(crate) const COPY_BUF: usize = 1 << 20;

/// Why copying an entry's content failed: on the side of its source, or of the archive.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// Reading the source failed or it ended early (`UnexpectedEof`).
    Read(io::Error),
    /// Writing the archive failed.
    Write(io::Error),
}

/// A tar stream being written to `out`.
pub(crate) struct TarOut<W> {
    out: W,
    written: u64,
    buf: Vec<u8>,
}

impl<W: Write> TarOut<W> {
    pub(crate) fn new(out: W) -> Self {
        TarOut {
            out,
            written: 0,
            buf: vec![0; COPY_BUF],
        }
    }

    /// Bytes of the archive written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    fn header(&mut self, path: &str, kind: tar::EntryType, size: u64) -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_path(path)?;
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h.set_cksum();
        self.put(h.as_bytes())
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rest = (512 - size % 512) % 512;
        self.put(&[0; 512][..rest as usize])
    }

    /// A directory entry (`path` ends with `/`).
    pub(crate) fn dir(&mut self, path: &str) -> io::Result<()> {
        self.header(path, tar::EntryType::Directory, 0)
    }

    /// A regular file holding `bytes`.
    pub(crate) fn file(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.header(path, tar::EntryType::Regular, bytes.len() as u64)?;
        self.put(bytes)?;
        self.pad(bytes.len() as u64)
    }

    /// A regular file of exactly `size` bytes read from `from` (which may hold more; the caller
    /// checks that it does not).
    pub(crate) fn file_from(
        &mut self,
        path: &str,
        size: u64,
        from: &mut dyn Read,
    ) -> Result<(), CopyError> {
        self.header(path, tar::EntryType::Regular, size)
            .map_err(CopyError::Write)?;
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match from.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(CopyError::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("ended {left} bytes early"),
                    )));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.out
                .write_all(&self.buf[..n])
                .map_err(CopyError::Write)?;
            self.written += n as u64;
            left -= n as u64;
        }
        self.pad(size).map_err(CopyError::Write)
    }

    /// A regular file of exactly `size` bytes of the file `from` (from its start), copied by
    /// `copier` into the file or pipe that `out` writes to (flushed first), to be checked against
    /// `digest` ([`layerlift_layout::Copier`]). `from` may hold more; the caller checks.
    pub(crate) fn file_copied(
        &mut self,
        path: &str,
        size: u64,
        from: std::fs::File,
        digest: layerlift_layout::Digest,
        copier: &mut layerlift_layout::Copier,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), layerlift_layout::CopyError> {
        use layerlift_layout::CopyError::Write;
        self.header(path, tar::EntryType::Regular, size)
            .map_err(Write)?;
        self.out.flush().map_err(Write)?;
        copier.copy(from, size, digest, progress)?;
        self.written += size;
        self.pad(size).map_err(Write)
    }

    /// The end-of-archive blocks; flush; the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.put(&[0; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_with_fixed_headers() {
        let mut t = TarOut::new(Vec::new());
        t.dir("blobs/").unwrap();
        t.file("a.json", b"{}").unwrap();
        let big = vec![7u8; 1000];
        t.file_from("b", 1000, &mut &big[..]).unwrap();
        let bytes = t.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                (0, 0, 0)
            );
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                data.len(),
            ));
        }
        assert_eq!(
            seen,
            [
                ("blobs/".into(), 0o755, 0),
                ("a.json".into(), 0o644, 2),
                ("b".into(), 0o644, 1000)
            ]
        );
    }

    #[test]
    fn a_short_source_is_an_error_not_a_short_entry() {
        let mut t = TarOut::new(Vec::new());
        let err = t.file_from("b", 10, &mut &b"abc"[..]).unwrap_err();
        assert!(matches!(err, CopyError::Read(e) if e.kind() == io::ErrorKind::UnexpectedEof));
    }
}
