//! Blobs to upload: the [`BlobSource`] trait (digest, size, a reader from any offset), its two
//! implementations, a file ([`FileSource`]) and bytes in memory ([`BytesSource`]), and
//! [`VerifyingSource`], which hashes another source's bytes as the upload reads them.

use layerlift_manifest::{Digest, Sha256Writer};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// A blob to upload: its digest, its size, and a way to read it from any offset (to retry and
/// to resume chunked uploads).
pub trait BlobSource: Sync {
    /// The blob's digest.
    fn digest(&self) -> Digest;
    /// The blob's size in bytes.
    fn size(&self) -> u64;
    /// A reader positioned at `offset`.
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>>;
    /// For messages: a path or a description.
    fn describe(&self) -> String;
}

/// A blob stored in a file.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The file holding exactly the blob's bytes.
    pub path: PathBuf,
    /// The blob's digest (not checked here: the registry checks it, and a [`VerifyingSource`]
    /// around this one checks it as it is sent).
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
}

impl BlobSource for FileSource {
    fn digest(&self) -> Digest {
        self.digest
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f))
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A blob held in memory (configs, small test blobs).
#[derive(Debug, Clone)]
pub struct BytesSource {
    /// The blob's bytes.
    pub bytes: Arc<[u8]>,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl BytesSource {
    /// A blob of these bytes; its digest is computed here.
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes = bytes.into();
        let digest = Digest::of(&bytes);
        BytesSource { bytes, digest }
    }
}

impl BlobSource for BytesSource {
    fn digest(&self) -> Digest {
        self.digest
    }
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let start = (offset as usize).min(self.bytes.len());
        Ok(Box::new(&self.bytes[start..]))
    }
    fn describe(&self) -> String {
        format!("in-memory blob {}", self.digest)
    }
}

/// The bytes of a blob source do not hash to its digest: the error of a [`VerifyingSource`]'s
/// reader (inside an [`std::io::Error`] of kind `InvalidData`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source_name} does not hold blob {digest}: its {size} bytes hash to {actual}")]
pub struct ContentMismatch {
    /// The source ([`BlobSource::describe`]).
    pub source_name: String,
    /// The digest the blob should have.
    pub digest: Digest,
    /// The digest of the bytes read.
    pub actual: Digest,
    /// The blob's size.
    pub size: u64,
}

/// A blob source whose bytes are hashed as an upload reads them, for bytes this process did not
/// hash before (a file of a layout it did not write). The read that would hand over the blob's
/// last byte fails instead ([`ContentMismatch`]) when the bytes do not hash to the digest, so
/// the request carrying them never completes and nothing of that digest is committed, whatever
/// the registry checks; every later [`BlobSource::open_at`] fails the same way.
///
/// Each byte is hashed once, in offset order: an upload that reads from an offset past what was
/// hashed (a session resumed at the registry's offset) has the gap read and hashed first; bytes
/// read again (a retried request) are not hashed again.
pub struct VerifyingSource<S> {
    inner: S,
    state: Mutex<Hashed>,
}

/// How far a [`VerifyingSource`] has hashed.
struct Hashed {
    /// Bytes `[0, pos)` are hashed.
    pos: u64,
    /// The hash of those bytes, until they are all hashed.
    hasher: Option<Sha256Writer<std::io::Sink>>,
    /// The digest of the whole blob, once hashed.
    actual: Option<Digest>,
}

impl<S: BlobSource> VerifyingSource<S> {
    /// Hash `inner` as it is read.
    pub fn new(inner: S) -> Self {
        VerifyingSource {
            inner,
            state: Mutex::new(Hashed {
                pos: 0,
                hasher: Some(Sha256Writer::new(std::io::sink())),
                actual: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hashed> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hash `bytes`, read at `offset`: the part past what is hashed already (nothing when
    /// `offset` is past it: [`Self::catch_up`] comes first). Once everything is hashed, an error
    /// when the digest is not the blob's.
    fn hash(&self, state: &mut Hashed, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let end = offset + bytes.len() as u64;
        if offset <= state.pos && end > state.pos {
            let skip = usize::try_from(state.pos - offset).unwrap_or(usize::MAX);
            if let Some(h) = state.hasher.as_mut() {
                h.write_all(&bytes[skip..])?;
            }
            state.pos = end;
        }
        if state.pos >= self.inner.size()
            && state.actual.is_none()
            && let Some(h) = state.hasher.take()
        {
            state.actual = Some(h.finish().0);
        }
        self.check(state)
    }

    /// An error once the whole blob is hashed and its digest is not the expected one.
    fn check(&self, state: &Hashed) -> std::io::Result<()> {
        match state.actual {
            Some(actual) if actual != self.inner.digest() => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                ContentMismatch {
                    source_name: self.inner.describe(),
                    digest: self.inner.digest(),
                    actual,
                    size: self.inner.size(),
                },
            )),
            _ => Ok(()),
        }
    }

    /// Read and hash the bytes between what is hashed and `offset`.
    fn catch_up(&self, state: &mut Hashed, offset: u64) -> std::io::Result<()> {
        if offset <= state.pos {
            return Ok(());
        }
        let from = state.pos;
        let mut reader = self.inner.open_at(from)?.take(offset - from);
        let mut buf = vec![0u8; 64 << 10];
        let mut at = from;
        while at < offset {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.hash(state, at, &buf[..n])?;
            at += n as u64;
        }
        Ok(())
    }
}

impl<S: BlobSource> BlobSource for VerifyingSource<S> {
    fn digest(&self) -> Digest {
        self.inner.digest()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let mut state = self.lock();
        self.catch_up(&mut state, offset.min(self.inner.size()))?;
        // An empty blob (or a read from its end) reads nothing: check it here.
        self.hash(&mut state, offset, &[])?;
        drop(state);
        Ok(Box::new(VerifyingReader {
            source: self,
            inner: self.inner.open_at(offset)?,
            at: offset,
        }))
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// A reader of a [`VerifyingSource`] from some offset.
struct VerifyingReader<'a, S> {
    source: &'a VerifyingSource<S>,
    inner: Box<dyn Read + Send + 'a>,
    at: u64,
}

impl<S: BlobSource> Read for VerifyingReader<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.source.size().saturating_sub(self.at);
        let cap = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if cap == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..cap])?;
        let mut state = self.source.lock();
        // A reader that started past what is hashed (another reader hashed less since it was
        // opened): hash the gap first.
        self.source.catch_up(&mut state, self.at)?;
        self.source.hash(&mut state, self.at, &buf[..n])?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(src: &dyn BlobSource, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        src.open_at(offset)?.take(len).read_to_end(&mut out)?;
        Ok(out)
    }

    fn mismatch(e: &std::io::Error) -> bool {
        e.kind() == std::io::ErrorKind::InvalidData
            && e.get_ref()
                .is_some_and(|e| e.downcast_ref::<ContentMismatch>().is_some())
    }

    /// Bytes that match pass through unchanged, however the upload reads them: whole, in
    /// chunks, again after a retry, or from an offset past what was read (a resumed session).
    #[test]
    fn matching_bytes_pass_in_any_read_pattern() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let whole = VerifyingSource::new(BytesSource::new(bytes.clone()));
        assert_eq!(read_all(&whole, 0, u64::MAX).unwrap(), bytes);
        let chunks = VerifyingSource::new(BytesSource::new(bytes.clone()));
        let mut got = Vec::new();
        for start in (0..100_000u64).step_by(30_000) {
            got.extend(read_all(&chunks, start, 30_000).unwrap());
        }
        assert_eq!(got, bytes);
        let retried = VerifyingSource::new(BytesSource::new(bytes.clone()));
        read_all(&retried, 0, 60_000).unwrap();
        read_all(&retried, 10_000, 50_000).unwrap();
        assert_eq!(
            read_all(&retried, 60_000, u64::MAX).unwrap(),
            bytes[60_000..]
        );
        let resumed = VerifyingSource::new(BytesSource::new(bytes.clone()));
        assert_eq!(
            read_all(&resumed, 70_000, u64::MAX).unwrap(),
            bytes[70_000..]
        );
        let empty = VerifyingSource::new(BytesSource::new(Vec::new()));
        assert_eq!(read_all(&empty, 0, u64::MAX).unwrap(), b"");
    }

    /// Bytes that do not hash to the digest: the read that would hand over the last byte fails
    /// (everything before it was handed over), and every later open fails; likewise when the
    /// upload starts past the altered byte, and for an empty blob with another digest.
    #[test]
    fn other_bytes_fail_before_the_last_byte_is_handed_over() {
        let bytes = vec![7u8; 10_000];
        let wrong = Digest::of(b"something else");
        let src = || {
            VerifyingSource::new(BytesSource {
                bytes: bytes.clone().into(),
                digest: wrong,
            })
        };
        let whole = src();
        let mut reader = whole.open_at(0).unwrap();
        let mut handed = 0usize;
        let mut buf = [0u8; 4096];
        let e = loop {
            match reader.read(&mut buf) {
                Ok(0) => panic!("all {handed} bytes handed over"),
                Ok(n) => handed += n,
                Err(e) => break e,
            }
        };
        assert!(mismatch(&e), "{e}");
        assert!(handed < bytes.len());
        assert!(e.to_string().contains(&wrong.to_string()), "{e}");
        drop(reader);
        assert!(mismatch(&whole.open_at(0).err().unwrap()));
        let resumed = src();
        assert!(mismatch(&read_all(&resumed, 9_000, u64::MAX).unwrap_err()));
        let empty = VerifyingSource::new(BytesSource {
            bytes: Vec::new().into(),
            digest: wrong,
        });
        assert!(mismatch(&empty.open_at(0).err().unwrap()));
    }
}
