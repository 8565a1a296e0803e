//! The one pass over an archive (or a directory): every regular entry is streamed once into a staged
//! blob (or only hashed, for `--list`), its sha256 computed as it goes; compressed entries are also
//! decoded on the fly to learn their uncompressed digest; small JSON documents are kept in memory so
//! that the manifest that comes last can be reconciled at the end without reading anything twice.
//! With a [`LayerSender`], layers are published as soon as they are staged and sent on it (see the
//! crate docs).

use crate::error::ArchiveError;
use crate::growing::{ArchiveSpan, Feed, InMemory, Watched};
use crate::handover::{Layer, LayerSender, PublishedBlob};
use crate::paths::{self, Link};
use layerlift_layers::{Compression, DiffIdWriter, Encoding, LayerEncoder, sniff};
use layerlift_layout::{Layout, StagedBlob};
use layerlift_manifest::{Digest, Sha256Writer};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

/// JSON documents up to this size are kept in memory while scanning.
const MAX_KEPT_JSON: u64 = 8 << 20;
/// Total memory for kept JSON documents.
const MAX_KEPT_TOTAL: u64 = 64 << 20;
const COPY_BUFFER: usize = 1 << 20;
/// Most entries (files, links, others; directories are not kept) one archive may hold: each is
/// kept in memory until the end of the pass. Image archives hold a few per layer.
pub const MAX_ENTRIES: usize = 1 << 16;
/// Most link entries: every one is resolved when the pass ends.
pub const MAX_LINKS: usize = 1 << 12;
/// Most bytes the tar reader may consume between two entries (headers, PAX records and GNU long
/// names, which it keeps in memory, and data of entries it skips).
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// A regular file of the archive, as seen while streaming it.
#[derive(Debug)]
pub struct FileEntry {
    /// Size of the entry's bytes as stored in the archive.
    pub size: u64,
    /// sha256 of the entry's bytes as stored (for a [`reused`](Self::reused) entry not read, the
    /// digest the archive's metadata gives).
    pub digest: Digest,
    /// How the stored bytes are compressed (sniffed from the first bytes).
    pub compression: Compression,
    /// Digest and size of the decoded stream for compressed entries (or why decoding failed).
    pub uncompressed: Option<Result<(Digest, u64), String>>,
    /// The bytes, when the entry looked like a small JSON document (see [`FileEntry::json`]).
    pub json: Option<Vec<u8>>,
    /// Where a small JSON document of a directory input is read again from when it was not kept
    /// in memory (the kept total, `MAX_KEPT_TOTAL`, was reached).
    pub json_path: Option<std::path::PathBuf>,
    /// The staged copy (unpack mode).
    pub staged: Option<StagedBlob>,
    /// The compressed copy staged instead of the bytes themselves, when the scan compresses
    /// uncompressed layers on the way (`Scan::encoding`).
    pub encoded: Option<Encoded>,
    /// Not staged: the registry already holds this layer ([`Scan::reuse`]). Either it was not read
    /// at all (its digests are the ones the archive's metadata claims, not verified in this run) or
    /// it was only hashed and matched the digest its name states.
    pub reused: bool,
}

/// What the scan need not read or compress because the destination already has it (push's reuse).
#[derive(Debug, Clone, Default)]
pub struct Reuse {
    /// Entries (by path) not to read at all: recorded as [`ReusedEntry`] says, skipped over
    /// (seeked past when the input can seek).
    pub by_path: BTreeMap<String, ReusedEntry>,
    /// For input that cannot be walked ahead (a pipe): an uncompressed layer entry whose name
    /// states its digest (`blobs/sha256/<hex>`, `<hex>.tar`) and whose digest is a key here is only
    /// hashed, not compressed or staged; if its content matches its name, the registry's blob
    /// stands in for it, otherwise the read fails.
    pub by_diff_id: BTreeMap<Digest, Replacement>,
}

impl Reuse {
    /// Nothing to skip: every entry is read (and compressed, if asked).
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty() && self.by_diff_id.is_empty()
    }
}

/// A layer entry the scan leaves unread because the destination already has it (push's reuse).
#[derive(Debug, Clone)]
pub struct ReusedEntry {
    /// The entry's digest as the archive's metadata gives it (the diff_id for an uncompressed
    /// layer, the blob digest for a compressed one).
    pub digest: Digest,
    /// How the entry is stored (sniffed from its first bytes).
    pub compression: Compression,
    /// The uncompressed digest the image config gives the layer.
    pub diff_id: Digest,
    /// For an uncompressed entry that would be compressed on the way: the blob the registry has
    /// in its place.
    pub replacement: Option<Replacement>,
}

/// The compressed blob the destination registry holds for an uncompressed layer entry: the
/// layout's manifest names it instead of a compressed copy of the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replacement {
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// How the blob is compressed.
    pub compression: Compression,
}

impl From<Replacement> for Encoded {
    /// A replacement as the compressed copy of its entry, with nothing staged.
    fn from(r: Replacement) -> Self {
        Encoded {
            digest: r.digest,
            size: r.size,
            compression: r.compression,
            staged: None,
            streamed_only: false,
        }
    }
}

/// An entry compressed while it streamed past: what is staged in its place.
#[derive(Debug)]
pub struct Encoded {
    /// sha256 of the compressed blob.
    pub digest: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// The compression it was written with.
    pub compression: Compression,
    /// The staged compressed copy; `None` when nothing was staged (the registry already has the
    /// blob, see [`Reuse`], or it was only streamed: `streamed_only`).
    pub staged: Option<StagedBlob>,
    /// Compressed from a seekable input and handed over through memory only
    /// ([`crate::growing`]): the layout does not hold it.
    pub streamed_only: bool,
}

impl FileEntry {
    /// The entry's bytes, when it is a JSON document of at most 8 MiB: kept from the scan, or
    /// (a directory input's, past the kept total) read again from its file, and then only if they
    /// are still the bytes the scan hashed.
    pub fn json(&self) -> Option<Cow<'_, [u8]>> {
        if let Some(bytes) = &self.json {
            return Some(Cow::Borrowed(bytes));
        }
        let path = self.json_path.as_ref()?;
        let mut bytes = Vec::new();
        fs::File::open(path)
            .ok()?
            .take(MAX_KEPT_JSON + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        (bytes.len() as u64 == self.size && Digest::of(&bytes) == self.digest)
            .then_some(Cow::Owned(bytes))
    }

    /// The sha256 and size of the uncompressed content.
    pub fn diff_id(&self) -> Result<(Digest, u64), String> {
        match &self.uncompressed {
            None => Ok((self.digest, self.size)),
            Some(r) => r.clone(),
        }
    }
}

/// How one pass treats what it reads (all off by default: stage or hash every entry as it is).
#[derive(Debug, Default, Clone)]
pub struct ScanSettings {
    /// Compress uncompressed tar entries (layers) to this while staging them.
    pub encoding: Option<Encoding>,
    /// What not to read, or not to compress ([`Reuse`]).
    pub reuse: Reuse,
    /// Publish each layer as soon as it is staged, and send it here ([`crate::Options::handover`]).
    pub handover: Option<LayerSender>,
}

/// Everything one pass learnt about the archive's entries.
#[derive(Debug, Default)]
pub struct Scan {
    /// The regular files, by normalised path.
    pub files: BTreeMap<String, FileEntry>,
    /// The link entries (symlinks and hard links), by normalised path.
    pub links: BTreeMap<String, Link>,
    /// Entries of other kinds (devices, fifos) that were skipped, for --list.
    pub skipped: Vec<String>,
    /// Compress uncompressed tar entries (layers) to this while staging them: no uncompressed copy
    /// of a layer is ever written.
    pub encoding: Option<Encoding>,
    /// What not to read, or not to compress ([`Reuse`]).
    pub reuse: Reuse,
    /// Publish each layer as soon as it is staged, and send it here ([`crate::Options::handover`]).
    pub handover: Option<LayerSender>,
    kept_json: u64,
    copy_buf: CopyBuf,
    /// The archive file being read, when it can be read again at an entry's offset (an
    /// uncompressed tar file): where a streamed layer is compressed again from.
    archive: Option<Arc<fs::File>>,
}

/// The buffer entries are copied through, kept from one entry to the next: allocated (and zeroed)
/// once per pass, not once per entry.
#[derive(Default)]
struct CopyBuf(Vec<u8>);

impl std::fmt::Debug for CopyBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CopyBuf({} bytes)", self.0.len())
    }
}

impl Scan {
    /// An empty scan that will read as `settings` say.
    fn new(settings: ScanSettings) -> Self {
        let ScanSettings {
            encoding,
            reuse,
            handover,
        } = settings;
        Scan {
            encoding,
            reuse,
            handover,
            ..Scan::default()
        }
    }

    /// The regular file at `path` after following links, with the resolved path.
    pub fn file(&self, path: &str) -> Result<Option<(String, &FileEntry)>, ArchiveError> {
        let resolved = paths::resolve(&self.links, path)?;
        Ok(self.files.get(&resolved).map(|f| (resolved, f)))
    }

    /// The link entry at `path` itself (not followed), or `None` when `path` is not a link.
    pub fn link_of(&self, path: &str) -> Option<&Link> {
        self.links.get(path)
    }

    fn check_new(&self, path: &str) -> Result<(), ArchiveError> {
        if self.files.contains_key(path) || self.links.contains_key(path) {
            return Err(ArchiveError::Duplicate(path.to_string()));
        }
        Ok(())
    }

    /// Record an entry of `size` bytes that is not read (it is in [`Scan::reuse`]).
    fn add_reused(&mut self, path: String, size: u64, r: &ReusedEntry) -> Result<(), ArchiveError> {
        self.check_new(&path)?;
        let (uncompressed, encoded) = match (r.compression, r.replacement) {
            (Compression::None, Some(replacement)) => (None, Some(replacement.into())),
            (Compression::None, None) => (None, None),
            // The uncompressed size is unknown without reading; it is only ever shown.
            (_, _) => (Some(Ok((r.diff_id, 0))), None),
        };
        self.files.insert(
            path,
            FileEntry {
                size,
                digest: r.digest,
                compression: r.compression,
                uncompressed,
                json: None,
                json_path: None,
                staged: None,
                encoded,
                reused: true,
            },
        );
        Ok(())
    }

    fn add_link(&mut self, path: String, link: Link) -> Result<(), ArchiveError> {
        self.check_new(&path)?;
        self.links.insert(path, link);
        Ok(())
    }

    /// Stream one regular entry (of `declared` bytes): hash, stage (if `layout`), decode compressed
    /// content, keep JSON.
    fn add_file(
        &mut self,
        path: String,
        declared: u64,
        reader: &mut dyn Read,
        layout: Option<&Layout>,
        disk: Option<&Path>,
        at: Option<(Arc<fs::File>, u64)>,
    ) -> Result<(), ArchiveError> {
        self.check_new(&path)?;
        let mut buf = std::mem::take(&mut self.copy_buf.0);
        buf.resize(COPY_BUFFER, 0);
        let head = Head::read(reader, &mut buf).map_err(|e| entry_error(&path, e))?;
        // A directory's file can be read again: its JSON is collected (one document at a time)
        // to learn whether it is small, and kept only within the total.
        let mut taps = Taps {
            json: (head.looks_json && (self.kept_json < MAX_KEPT_TOTAL || disk.is_some()))
                .then(Vec::new),
            decode: (head.compression != Compression::None).then(DiffIdWriter::new),
            decode_err: None,
        };
        // A layer the registry has, named by its diff_id: only hashed (checked at the end).
        let named = (head.looks_tar && head.compression == Compression::None)
            .then(|| paths::digest_in_name(&path))
            .flatten()
            .and_then(|d| self.reuse.by_diff_id.get(&d).map(|r| (d, *r)));
        let (mut sink, streamed) =
            self.sink(&path, declared, &head, layout, named.is_some(), at)?;
        self.copy(
            reader, &mut buf, head.len, &mut sink, &mut taps, layout, &path,
        )?;
        self.copy_buf.0 = buf;
        let Stored {
            digest,
            size,
            mut staged,
            mut encoded,
        } = sink.finish()?;
        let reused = named.is_some();
        if let Some((stated, replacement)) = named {
            if digest != stated {
                return Err(ArchiveError::BadEntry {
                    path,
                    why: format!("its content is {digest}, not the {stated} its name states"),
                });
            }
            encoded = Some(replacement.into());
        }
        let uncompressed = taps.uncompressed();
        if let (Some(handover), Some(layout), Some(e)) = (&self.handover, layout, &encoded)
            && e.streamed_only
        {
            // Streamed through memory: its readers learn it is finished, nothing is published.
            handover.send(Layer::Ready(PublishedBlob {
                streamed: true,
                digest: e.digest,
                size: e.size,
                path: layout.blob_path(&e.digest),
                entry: path.clone(),
            }));
        }
        if let (Some(handover), Some(layout)) = (&self.handover, layout) {
            // Only layers (configs and manifests are told apart by the metadata that comes last);
            // bzip2/xz layers are decompressed at commit, from the staged copy.
            let layer = match head.compression {
                Compression::None => head.looks_tar,
                Compression::Gzip | Compression::Zstd => matches!(uncompressed, Some(Ok(_))),
                Compression::Bzip2 | Compression::Xz => false,
            };
            let blob = match encoded.as_mut() {
                _ if !layer => None,
                Some(e) => e.staged.take(),
                None => staged.take(),
            };
            if let Some(blob) = blob {
                publish_now(layout, blob, handover, streamed, &path)?;
            }
        }
        let (json, json_path) = self.keep_json(taps.json, disk);
        self.files.insert(
            path,
            FileEntry {
                size,
                digest,
                compression: head.compression,
                uncompressed,
                json,
                json_path,
                staged,
                encoded,
                reused,
            },
        );
        Ok(())
    }

    /// Where an entry's bytes go, and whether it was handed over while compressed: only
    /// a hasher (no layout, or a layer the registry has), a compressor staging into the layout (an
    /// uncompressed layer, with an encoding), or the layout as they are.
    fn sink(
        &self,
        path: &str,
        declared: u64,
        head: &Head,
        layout: Option<&Layout>,
        hash_only: bool,
        at: Option<(Arc<fs::File>, u64)>,
    ) -> Result<(Sink, bool), ArchiveError> {
        let compress = head.looks_tar && head.compression == Compression::None;
        Ok(match (layout, self.encoding) {
            _ if hash_only => (Sink::Hash(Sha256Writer::new(io::sink())), false),
            (Some(_), Some(encoding)) if compress => {
                // Handed over now, read as it is written.
                let stream = self.handover.as_ref().filter(|h| h.streams(declared));
                // From a seekable input, through memory only (unless staging is asked for).
                if let (Some(handover), Some((file, offset))) = (stream, at)
                    && !handover.stages_streams()
                {
                    let span = ArchiveSpan {
                        file,
                        offset,
                        size: declared,
                        encoding,
                    };
                    let (memory, blob) = Feed::in_memory(span, path, declared);
                    handover.send(Layer::Streaming(blob));
                    let encoder =
                        LayerEncoder::new(Out::Memory(Sha256Writer::new(memory)), &encoding)
                            .map_err(|e| {
                                ArchiveError::io(format!("compressing entry `{path}`"), e)
                            })?;
                    let sink = Sink::Encode {
                        raw: Sha256Writer::new(io::sink()),
                        encoder: Box::new(encoder),
                        compression: encoding.compression,
                    };
                    return Ok((sink, true));
                }
                let writer = layout.expect("matched Some").blob_writer()?;
                let feed = match stream {
                    Some(handover) => {
                        let (feed, blob) = Feed::new(writer.temp_path(), path, declared)
                            .map_err(|e| ArchiveError::io(format!("staging entry `{path}`"), e))?;
                        handover.send(Layer::Streaming(blob));
                        Some(feed)
                    }
                    None => None,
                };
                let streamed = feed.is_some();
                let watched = Watched {
                    inner: writer,
                    feed,
                };
                let encoder = LayerEncoder::new(Out::Staged(watched), &encoding)
                    .map_err(|e| ArchiveError::io(format!("compressing entry `{path}`"), e))?;
                let sink = Sink::Encode {
                    raw: Sha256Writer::new(io::sink()),
                    encoder: Box::new(encoder),
                    compression: encoding.compression,
                };
                (sink, streamed)
            }
            (Some(l), _) => (Sink::Stage(l.blob_writer()?), false),
            (None, _) => (Sink::Hash(Sha256Writer::new(io::sink())), false),
        })
    }

    /// Copy the entry to `sink` and `taps`: the `head` bytes already in `buf`, then the rest of
    /// `reader` a whole buffer at a time, stopping after any buffer once every receiver of the
    /// handover is gone.
    #[allow(clippy::too_many_arguments)]
    fn copy(
        &self,
        reader: &mut dyn Read,
        buf: &mut Vec<u8>,
        head: usize,
        sink: &mut Sink,
        taps: &mut Taps,
        layout: Option<&Layout>,
        path: &str,
    ) -> Result<(), ArchiveError> {
        let write_err = |e: io::Error| ArchiveError::Write {
            what: format!("entry `{path}`"),
            dir: layout.map(|l| l.root().to_path_buf()).unwrap_or_default(),
            source: e,
        };
        let mut chunk = head;
        loop {
            if chunk > 0 {
                taps.write(&buf[..chunk]);
                sink.write_chunk(buf, chunk).map_err(write_err)?;
            }
            if self.handover.as_ref().is_some_and(LayerSender::stopped) {
                return Err(ArchiveError::Stopped);
            }
            chunk = read_up_to(reader, buf).map_err(|e| entry_error(path, e))?;
            if chunk == 0 {
                return Ok(());
            }
        }
    }

    /// Keep a small JSON document in memory within the total; past it, a directory's file is read
    /// again from `disk` when needed. Returns the kept bytes and the path to read again.
    fn keep_json(
        &mut self,
        json: Option<Vec<u8>>,
        disk: Option<&Path>,
    ) -> (Option<Vec<u8>>, Option<std::path::PathBuf>) {
        let Some(j) = json else {
            return (None, None);
        };
        if self.kept_json + j.len() as u64 > MAX_KEPT_TOTAL
            && let Some(disk) = disk
        {
            return (None, Some(disk.to_path_buf()));
        }
        self.kept_json += j.len() as u64;
        (Some(j), None)
    }
}

/// Read until `buf` is full or the reader ends; how many bytes were read.
pub(crate) fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn entry_error(path: &str, e: io::Error) -> ArchiveError {
    ArchiveError::io(format!("entry `{path}`"), e)
}

/// The first (up to 512) bytes of an entry, which decide how it is treated.
struct Head {
    /// How many bytes were read into the buffer.
    len: usize,
    compression: Compression,
    /// Starts like a JSON document (`{`, `[`, `null`).
    looks_json: bool,
    /// An uncompressed tar (a layer; an empty tar is all zeros), which can be compressed on the way.
    looks_tar: bool,
}

impl Head {
    /// Read up to 512 bytes into the start of `buf`.
    fn read(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<Head> {
        let mut len = 0;
        while len < 512 {
            match reader.read(&mut buf[len..512]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let bytes = &buf[..len];
        Ok(Head {
            len,
            compression: sniff(bytes),
            looks_json: matches!(
                bytes.iter().find(|b| !b.is_ascii_whitespace()),
                Some(b'{' | b'[' | b'n')
            ),
            looks_tar: len == 512
                && (&bytes[257..262] == b"ustar" || bytes.iter().all(|b| *b == 0)),
        })
    }
}

/// What an entry's bytes are fed to besides its sink: the decoder of a compressed entry (for its
/// diff_id) and the collector of a small JSON document.
struct Taps {
    json: Option<Vec<u8>>,
    decode: Option<DiffIdWriter>,
    decode_err: Option<String>,
}

impl Taps {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(d) = self.decode.as_mut()
            && let Err(e) = d.write_all(bytes)
        {
            self.decode_err = Some(e.to_string());
            self.decode = None;
        }
        if let Some(j) = self.json.as_mut() {
            if (j.len() + bytes.len()) as u64 <= MAX_KEPT_JSON {
                j.extend_from_slice(bytes);
            } else {
                self.json = None;
            }
        }
    }

    /// The decoded stream's digest and size (or why decoding failed), for a compressed entry.
    fn uncompressed(&mut self) -> Option<Result<(Digest, u64), String>> {
        match (self.decode.take(), self.decode_err.take()) {
            (_, Some(e)) => Some(Err(e)),
            (Some(d), None) => Some(
                d.finish()
                    .map(|id| (id.digest, id.size))
                    .map_err(|e| e.to_string()),
            ),
            (None, None) => None,
        }
    }
}

/// Rename a staged layer into the layout now and send it on, once per digest (a second copy of
/// the same bytes is dropped by [`StagedBlob::commit`]). Its name is the digest it was hashed to.
fn publish_now(
    layout: &Layout,
    blob: StagedBlob,
    handover: &LayerSender,
    streamed: bool,
    entry: &str,
) -> Result<(), ArchiveError> {
    let (digest, size) = (blob.digest(), blob.size());
    let path = layout.blob_path(&digest);
    let new = !path.is_file();
    blob.commit()?;
    if new {
        handover.send(Layer::Ready(PublishedBlob {
            digest,
            size,
            path,
            streamed,
            entry: entry.to_string(),
        }));
    }
    Ok(())
}

/// Where an entry's bytes go: a staged blob in the layout (which hashes them), or only a hasher.
enum Sink {
    Stage(layerlift_layout::BlobWriter),
    Hash(Sha256Writer<io::Sink>),
    /// Hash the bytes, stage them compressed.
    Encode {
        raw: Sha256Writer<io::Sink>,
        encoder: Box<LayerEncoder<Out>>,
        compression: Compression,
    },
}

/// Where a compressed layer goes: staged into the layout (and read from there while it grows, if
/// handed over), or through memory only to its readers, hashed on the way.
enum Out {
    Staged(Watched<layerlift_layout::BlobWriter>),
    Memory(Sha256Writer<InMemory>),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Staged(w) => w.write(buf),
            Out::Memory(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Out::Staged(w) => w.write_all(buf),
            Out::Memory(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Staged(w) => w.flush(),
            Out::Memory(w) => w.flush(),
        }
    }
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stage(w) => w.write_all(bytes),
            Sink::Hash(w) => w.write_all(bytes),
            Sink::Encode { raw, encoder, .. } => {
                raw.write_all(bytes)?;
                encoder.write_all(bytes)
            }
        }
    }

    /// [`write_all`](Self::write_all) of `buf[..len]`; a staged blob takes the buffer itself
    /// (hashed on the blob writer's thread, not copied) and `buf` becomes another one of
    /// [`COPY_BUFFER`] bytes.
    fn write_chunk(&mut self, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
        match self {
            Sink::Stage(w) => {
                buf.truncate(len);
                let mut next = w.write_owned(std::mem::take(buf))?;
                next.resize(COPY_BUFFER, 0);
                *buf = next;
                Ok(())
            }
            other => other.write_all(&buf[..len]),
        }
    }

    /// Digest and size of the bytes; the staged blob (as they are, or compressed).
    #[allow(clippy::type_complexity)]
    fn finish(self) -> Result<Stored, ArchiveError> {
        Ok(match self {
            Sink::Stage(w) => {
                let staged = w.finish()?;
                Stored {
                    digest: staged.digest(),
                    size: staged.size(),
                    staged: Some(staged),
                    encoded: None,
                }
            }
            Sink::Hash(w) => {
                let (digest, size, _) = w.finish();
                Stored {
                    digest,
                    size,
                    staged: None,
                    encoded: None,
                }
            }
            Sink::Encode {
                raw,
                encoder,
                compression,
            } => {
                let (digest, size, _) = raw.finish();
                let out = encoder
                    .finish()
                    .map_err(|e| ArchiveError::io("finishing a compressed layer", e))?;
                let Watched {
                    inner: writer,
                    feed,
                } = match out {
                    Out::Staged(w) => w,
                    Out::Memory(hashed) => {
                        let (blob, blob_size, memory) = hashed.finish();
                        memory.finish(blob, blob_size);
                        return Ok(Stored {
                            digest,
                            size,
                            staged: None,
                            encoded: Some(Encoded {
                                digest: blob,
                                size: blob_size,
                                compression,
                                staged: None,
                                streamed_only: true,
                            }),
                        });
                    }
                };
                // The blob writer hashed the compressed bytes as they were staged.
                let staged = writer.finish()?;
                if let Some(feed) = feed {
                    feed.finish(staged.digest(), staged.size());
                }
                let encoded = Encoded {
                    digest: staged.digest(),
                    size: staged.size(),
                    compression,
                    staged: Some(staged),
                    streamed_only: false,
                };
                Stored {
                    digest,
                    size,
                    staged: None,
                    encoded: Some(encoded),
                }
            }
        })
    }
}

/// What a [`Sink`] made of an entry: the digest and size of its bytes as stored, and its staged
/// copy or the compressed copy staged in its place.
struct Stored {
    digest: Digest,
    size: u64,
    staged: Option<StagedBlob>,
    encoded: Option<Encoded>,
}

/// Read a tar stream to its end, feeding every entry into a [`Scan`].
pub fn scan_tar(
    reader: &mut dyn Read,
    layout: Option<&Layout>,
    encoding: Option<Encoding>,
) -> Result<Scan, ArchiveError> {
    let settings = ScanSettings {
        encoding,
        ..ScanSettings::default()
    };
    scan_tar_with(reader, layout, settings)
}

/// [`scan_tar`] with all of [`ScanSettings`] (the entries of its [`Reuse`] by path are read past
/// and dropped).
pub fn scan_tar_with(
    reader: &mut dyn Read,
    layout: Option<&Layout>,
    settings: ScanSettings,
) -> Result<Scan, ArchiveError> {
    scan_tar_again(reader, layout, settings, None)
}

/// [`scan_tar_with`] over the bytes of `archive`, an uncompressed tar file, read from its start:
/// a streamed layer is compressed again from there when its upload needs it.
pub(crate) fn scan_tar_again(
    reader: &mut dyn Read,
    layout: Option<&Layout>,
    settings: ScanSettings,
    archive: Option<Arc<fs::File>>,
) -> Result<Scan, ArchiveError> {
    let budget = Rc::new(HeaderBudget::default());
    let mut counting = EofTracker {
        inner: reader,
        hit_eof: false,
        budget: Rc::clone(&budget),
    };
    let mut scan = Scan::new(settings);
    scan.archive = archive;
    {
        let mut archive = tar::Archive::new(&mut counting);
        let entries = archive
            .entries()
            .map_err(|e| tar_error(e, "reading the first header"))?;
        scan_entries(entries, &mut scan, layout, &budget)?;
    }
    if counting.hit_eof {
        return Err(ArchiveError::Truncated(
            "the stream ended without the tar end-of-archive blocks".into(),
        ));
    }
    // Read what follows the end blocks, so that a compressed stream's trailer (CRC, size) is checked
    // and a writer on the other end of a pipe is not cut off.
    io::copy(&mut counting, &mut io::sink())
        .map_err(|e| read_error(e, "the end of the archive"))?;
    Ok(scan)
}

/// [`scan_tar_with`] over an uncompressed tar file: the entries of the settings' [`Reuse`] are
/// seeked past, never read.
pub fn scan_tar_file(
    file: &mut fs::File,
    layout: Option<&Layout>,
    settings: ScanSettings,
) -> Result<Scan, ArchiveError> {
    let mut scan = Scan::new(settings);
    scan.archive = file.try_clone().ok().map(Arc::new);
    let end = file
        .metadata()
        .map_err(|e| ArchiveError::io("the archive", e))?
        .len();
    let budget = Rc::new(HeaderBudget::default());
    let mut archive = tar::Archive::new(BufSeek::with_budget(file, Rc::clone(&budget)));
    let entries = archive
        .entries_with_seek()
        .map_err(|e| tar_error(e, "reading the first header"))?;
    let last = scan_entries(entries, &mut scan, layout, &budget)?;
    if last > end {
        return Err(ArchiveError::Truncated(
            "the file ends inside its last entry".into(),
        ));
    }
    Ok(scan)
}

/// Feed every entry of a tar into `scan`; returns the offset just past the last entry's data.
fn scan_entries<R: Read>(
    mut entries: tar::Entries<'_, R>,
    scan: &mut Scan,
    layout: Option<&Layout>,
    budget: &HeaderBudget,
) -> Result<u64, ArchiveError> {
    let mut last = 0;
    loop {
        budget.left.set(Some(MAX_HEADER_BYTES));
        let next = entries.next();
        budget.left.set(None);
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(|e| {
            if budget.exceeded.get() {
                ArchiveError::Limit(format!(
                    "more than {} KiB of tar headers and extended records (PAX, GNU long \
                     names) before entry {}",
                    MAX_HEADER_BYTES >> 10,
                    scan.files.len() + scan.links.len() + scan.skipped.len() + 1
                ))
            } else {
                tar_error(e, "reading an entry header")
            }
        })?;
        if scan.files.len() + scan.links.len() + scan.skipped.len() >= MAX_ENTRIES {
            return Err(ArchiveError::Limit(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        last = entry.raw_file_position() + entry.size();
        let Some(path) = paths::normalize(&raw)? else {
            continue;
        };
        let kind = entry.header().entry_type();
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous => {
                let declared = entry.size();
                if let Some(r) = scan.reuse.by_path.get(&path).cloned() {
                    // Not read: a seeking reader jumps over it, a stream reads past it.
                    scan.add_reused(path, declared, &r)?;
                    continue;
                }
                let at = scan
                    .archive
                    .as_ref()
                    .map(|f| (Arc::clone(f), entry.raw_file_position()));
                scan.add_file(path.clone(), declared, &mut entry, layout, None, at)?;
                let got = scan.files[&path].size;
                if got != declared {
                    return Err(ArchiveError::Truncated(format!(
                        "entry `{path}` should hold {declared} bytes, the stream ended after {got}"
                    )));
                }
            }
            T::Symlink | T::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .ok_or_else(|| ArchiveError::BadEntry {
                        path: path.clone(),
                        why: "link without a target".into(),
                    })?;
                if scan.links.len() >= MAX_LINKS {
                    return Err(ArchiveError::Limit(format!("more than {MAX_LINKS} links")));
                }
                let link = if kind == T::Symlink {
                    Link::Symlink(target)
                } else {
                    Link::Hard(target)
                };
                scan.add_link(path, link)?;
            }
            T::Directory => {}
            T::GNUSparse => {
                return Err(ArchiveError::BadEntry {
                    path,
                    why: "sparse files are not supported".into(),
                });
            }
            _ => scan.skipped.push(path),
        }
    }
    Ok(last)
}

/// A buffered reader that can also seek (the tar reader jumps over entries it is not asked to
/// read): `BufReader`'s seek discards its buffer, which is what a jump needs anyway.
pub(crate) struct BufSeek<'a> {
    inner: io::BufReader<&'a mut fs::File>,
    budget: Rc<HeaderBudget>,
}

impl<'a> BufSeek<'a> {
    /// Reads count against `budget` while it is armed (see [`HeaderBudget`]).
    pub(crate) fn with_budget(file: &'a mut fs::File, budget: Rc<HeaderBudget>) -> Self {
        BufSeek {
            inner: io::BufReader::with_capacity(COPY_BUFFER, file),
            budget,
        }
    }
}

impl Read for BufSeek<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.budget.spend(n)?;
        Ok(n)
    }
}

impl io::Seek for BufSeek<'_> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        match pos {
            // Relative jumps inside the buffer keep it.
            io::SeekFrom::Current(n) => self
                .inner
                .seek_relative(n)
                .and_then(|()| self.inner.stream_position()),
            other => self.inner.seek(other),
        }
    }
}

fn tar_error(e: io::Error, doing: &str) -> ArchiveError {
    // The tar crate says "failed to read entire block" when the stream ends inside a header.
    let msg = e.to_string();
    if e.kind() == io::ErrorKind::UnexpectedEof
        || msg.contains("unexpected EOF")
        || msg.contains("failed to read entire block")
    {
        return ArchiveError::Truncated(format!("unexpected end of data while {doing}"));
    }
    if let Some(d) = layerlift_layers::DecodeError::from_io(&e) {
        return ArchiveError::CorruptCompression {
            compression: "outer",
            detail: d.to_string(),
        };
    }
    if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::Other {
        // The tar library's text quotes the header's raw bytes: say what is wrong in our words.
        let msg = e.to_string();
        let what = if msg.contains("cksum") {
            "a header's checksum is wrong"
        } else if msg.contains("numeric field") || msg.contains("size") {
            "a header holds a number field that is not a number"
        } else {
            "a header is not a valid tar header"
        };
        return ArchiveError::NotTar {
            compression: "-",
            detail: format!("{what} (while {doing})"),
        };
    }
    ArchiveError::io(doing.to_string(), e)
}

fn read_error(e: io::Error, what: &str) -> ArchiveError {
    tar_error(e, &format!("reading {what}"))
}

/// Tracks whether the tar reader met end-of-stream (rather than the end-of-archive blocks), and
/// holds it to [`MAX_HEADER_BYTES`] while it looks for the next entry.
struct EofTracker<'a> {
    inner: &'a mut dyn Read,
    hit_eof: bool,
    budget: Rc<HeaderBudget>,
}

/// What the tar reader may still read before the entry it is looking for (`None`: no limit, an
/// entry's data is being read).
#[derive(Default)]
pub(crate) struct HeaderBudget {
    pub(crate) left: Cell<Option<u64>>,
    pub(crate) exceeded: Cell<bool>,
}

impl HeaderBudget {
    /// Count `n` bytes read while the budget is armed; an error once it is spent.
    fn spend(&self, n: usize) -> io::Result<()> {
        if let Some(left) = self.left.get() {
            let Some(rest) = left.checked_sub(n as u64) else {
                self.exceeded.set(true);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "tar headers larger than the limit",
                ));
            };
            self.left.set(Some(rest));
        }
        Ok(())
    }
}

impl Read for EofTracker<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        self.budget.spend(n)?;
        Ok(n)
    }
}

/// What [`walk_dir`] found at a path below the root.
pub(crate) enum DirEntry<'a> {
    File { path: &'a Path, size: u64 },
    Symlink(String),
    Other,
}

/// Every entry under `root` but directories, in name order, with its path relative to `root`
/// (`/`-separated). Symlinks are reported, never followed.
pub(crate) fn walk_dir(
    root: &Path,
    f: &mut dyn FnMut(String, DirEntry<'_>) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let io = |e| ArchiveError::io(dir.display().to_string(), e);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        names.sort_by_key(|e| e.file_name());
        for item in names {
            let name = item.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let path = item.path();
            let io = |e| ArchiveError::io(path.display().to_string(), e);
            let meta = fs::symlink_metadata(&path).map_err(io)?;
            if meta.is_dir() {
                stack.push((path, rel));
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).map_err(io)?;
                f(
                    rel,
                    DirEntry::Symlink(target.to_string_lossy().into_owned()),
                )?;
            } else if meta.is_file() {
                f(
                    rel,
                    DirEntry::File {
                        path: &path,
                        size: meta.len(),
                    },
                )?;
            } else {
                f(rel, DirEntry::Other)?;
            }
        }
    }
    Ok(())
}

/// Walk a directory (an OCI layout, a `dir:` transport directory or an extracted archive) as if it
/// were an archive: regular files are streamed like entries, symlinks are recorded (never followed
/// on disk).
pub fn scan_dir(
    root: &Path,
    layout: Option<&Layout>,
    settings: ScanSettings,
) -> Result<Scan, ArchiveError> {
    let mut scan = Scan::new(settings);
    walk_dir(root, &mut |rel, entry| match entry {
        DirEntry::Symlink(target) => scan.add_link(rel, Link::Symlink(target)),
        DirEntry::File { path, size } => match scan.reuse.by_path.get(&rel).cloned() {
            Some(r) => scan.add_reused(rel, size, &r),
            None => {
                let mut file = fs::File::open(path)
                    .map_err(|e| ArchiveError::io(path.display().to_string(), e))?;
                let again = file.try_clone().ok().map(|f| (Arc::new(f), 0));
                scan.add_file(rel, size, &mut file, layout, Some(path), again)
            }
        },
        DirEntry::Other => {
            scan.skipped.push(rel);
            Ok(())
        }
    })?;
    Ok(scan)
}
