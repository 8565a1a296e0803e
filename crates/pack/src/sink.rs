//! The archive sink: it is given images — each as its config, manifest and layers, as blobs — and
//! writes them as one archive. It knows nothing of where the images come from: blob bytes are read
//! through a [`BlobSource`] (a [`Layout`] is one), so any source of images can feed it.
//!
//! - [`DockerArchive`]: a docker-archive (`manifest.json` with `Config`, `RepoTags`, `Layers`, the
//!   blobs under `blobs/sha256/`), what `docker save` of Docker 25+ writes minus its OCI half.
//!   Layers in gzip or uncompressed are kept as they are; others (zstd) are written decompressed,
//!   named by their diff_id, because `docker load` before Docker 23 reads no zstd.
//! - [`OciArchive`]: an OCI image layout as a tar (an oci-archive): `oci-layout`, `index.json`
//!   and every blob the entries reach, indexes kept whole.
//!
//! Both go through [`Prepared`]: every blob is checked (present, the size its descriptor says,
//! a decompressed layer decoded once to its diff_id and size) before the first byte is written,
//! then [`Prepared::write_to`] writes the entries sorted by name — `blobs/`, `blobs/sha256/`, the
//! blobs by digest, then the JSON files — each blob once, each copied blob hashed on the way and
//! checked against its digest before the end-of-archive blocks are written.

use crate::error::PackError;
use crate::observer::{Event, Observer, Step};
use crate::tar_out::{CopyError, TarOut};
use layerlift_layers::{Compression, DecodeReader, LayerError, SNIFF_LEN, sniff};
use layerlift_layout::{Copier, Layout, LayoutError};
use layerlift_manifest::{Descriptor, Digest, Index, Sha256Reader};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

/// Where the bytes of the blobs come from.
pub trait BlobSource {
    /// Open blob `digest` for reading from its start.
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, PackError>;
    /// The size of blob `digest` as stored.
    fn size(&self, digest: &Digest) -> Result<u64, PackError>;
    /// Blob `digest` as a file, when it is one: the kernel can then copy it into a file or
    /// pipe output (see [`layerlift_layout::Copier`]). `None`: read it with
    /// [`open`](Self::open).
    fn open_file(&self, digest: &Digest) -> Result<Option<std::fs::File>, PackError> {
        let _ = digest;
        Ok(None)
    }
}

impl BlobSource for Layout {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, PackError> {
        let file = self
            .open_blob(digest)
            .map_err(|e| PackError::blob(*digest, e))?;
        Ok(Box::new(file))
    }

    fn open_file(&self, digest: &Digest) -> Result<Option<std::fs::File>, PackError> {
        self.open_blob(digest)
            .map(Some)
            .map_err(|e| PackError::blob(*digest, e))
    }

    fn size(&self, digest: &Digest) -> Result<u64, PackError> {
        let path = self.blob_path(digest);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(m.len()),
            Ok(_) => Err(PackError::blob(
                *digest,
                LayoutError::MissingBlob {
                    digest: *digest,
                    path,
                },
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(PackError::blob(
                *digest,
                LayoutError::MissingBlob {
                    digest: *digest,
                    path,
                },
            )),
            Err(source) => Err(PackError::blob(*digest, LayoutError::Io { path, source })),
        }
    }
}

/// The content of one blob of the archive (named by the key it is stored under).
#[derive(Debug, Clone)]
enum Content {
    /// These bytes (a manifest, index or config already read and verified).
    Bytes(Vec<u8>),
    /// The source's blob of the same digest, copied; its size as the descriptor says.
    Stored { size: u64 },
    /// The source's blob `from` (`stored` bytes), decompressed (`size` bytes); the key is its
    /// diff_id.
    Decoded {
        from: Digest,
        stored: u64,
        size: u64,
    },
}

/// The blobs of an archive, each once, by digest (the order they are written in).
#[derive(Debug, Default)]
struct Blobs(BTreeMap<Digest, Content>);

impl Blobs {
    fn add(&mut self, digest: Digest, content: Content) {
        self.0.entry(digest).or_insert(content);
    }
}

/// One image for a [`DockerArchive`].
#[derive(Debug, Clone)]
pub struct DockerImage {
    /// Its `RepoTags` (`busybox:latest`, `registry:5000/app:1`); empty: untagged.
    pub repo_tags: Vec<String>,
    /// The config's descriptor.
    pub config: Descriptor,
    /// The config's bytes, exactly (their digest is the image ID).
    pub config_bytes: Vec<u8>,
    /// The layers, base first, with the config's diff_ids.
    pub layers: Vec<(Descriptor, Digest)>,
}

/// A docker-archive being assembled; see the [module docs](self).
#[derive(Debug, Default)]
pub struct DockerArchive {
    images: Vec<DockerImage>,
}

/// One item of `manifest.json`, as `docker save` writes it.
#[derive(Serialize)]
struct ManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

impl DockerArchive {
    /// An empty docker-archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an image (its blobs are written once however many images share them).
    pub fn add(&mut self, image: DockerImage) {
        self.images.push(image);
    }

    /// Check every blob against `source` (see [`Prepared`]); nothing is written yet.
    pub fn prepare(
        self,
        source: &dyn BlobSource,
        observer: &dyn Observer,
    ) -> Result<Prepared, PackError> {
        let mut blobs = Blobs::default();
        let mut items = Vec::new();
        let mut decompressed = 0;
        // Each layer's name in the archive: its digest, or its diff_id when written decompressed.
        let mut names: BTreeMap<Digest, Digest> = BTreeMap::new();
        for image in self.images {
            // The config comes as bytes (never re-read from the source): they must be its digest.
            let actual = Digest::of(&image.config_bytes);
            if actual != image.config.digest || image.config_bytes.len() as u64 != image.config.size
            {
                return Err(PackError::Changed {
                    digest: image.config.digest,
                    why: format!(
                        "the config given has {} bytes hashing to {actual}",
                        image.config_bytes.len()
                    ),
                });
            }
            blobs.add(image.config.digest, Content::Bytes(image.config_bytes));
            let mut layers = Vec::new();
            for (layer, diff_id) in &image.layers {
                let stored = check_size(source, layer)?;
                let name = match names.get(&layer.digest) {
                    Some(name) => *name,
                    None => {
                        let name = match sniff_blob(source, &layer.digest)? {
                            Compression::Gzip | Compression::None => {
                                blobs.add(layer.digest, Content::Stored { size: stored });
                                layer.digest
                            }
                            other => {
                                let size = measure(source, layer, *diff_id, other, observer)?;
                                decompressed += 1;
                                blobs.add(
                                    *diff_id,
                                    Content::Decoded {
                                        from: layer.digest,
                                        stored,
                                        size,
                                    },
                                );
                                *diff_id
                            }
                        };
                        names.insert(layer.digest, name);
                        name
                    }
                };
                layers.push(blob_path(&name));
            }
            items.push(ManifestItem {
                config: blob_path(&image.config.digest),
                repo_tags: (!image.repo_tags.is_empty()).then_some(image.repo_tags),
                layers,
            });
        }
        let mut manifest = serde_json::to_vec(&items).map_err(|e| PackError::Write(e.into()))?;
        manifest.push(b'\n');
        Prepared::new(blobs, vec![("manifest.json", manifest)], decompressed)
    }
}

/// An oci-archive being assembled; see the [module docs](self).
#[derive(Debug)]
pub struct OciArchive {
    index: Index,
    blobs: Blobs,
}

impl Default for OciArchive {
    fn default() -> Self {
        OciArchive {
            index: Index::empty(),
            blobs: Blobs::default(),
        }
    }
}

impl OciArchive {
    /// An empty oci-archive (its `index.json` lists nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// List `entry` in `index.json` (its blob added with [`add_document`](Self::add_document)).
    pub fn add_entry(&mut self, entry: Descriptor) {
        self.index.manifests.push(entry);
    }

    /// Add a manifest, index or config, as these exact bytes.
    pub fn add_document(&mut self, digest: Digest, bytes: Vec<u8>) {
        self.blobs.add(digest, Content::Bytes(bytes));
    }

    /// Add a blob copied from the source as it is (a layer).
    pub fn add_blob(&mut self, descriptor: &Descriptor) {
        self.blobs.add(
            descriptor.digest,
            Content::Stored {
                size: descriptor.size,
            },
        );
    }

    /// Check every blob against `source` (see [`Prepared`]); nothing is written yet.
    pub fn prepare(self, source: &dyn BlobSource) -> Result<Prepared, PackError> {
        for (digest, content) in &self.blobs.0 {
            if let Content::Stored { size } = content {
                let d = Descriptor::new("", *digest, *size);
                check_size(source, &d)?;
            }
        }
        let mut index =
            serde_json::to_vec_pretty(&self.index).map_err(|e| PackError::Write(e.into()))?;
        index.push(b'\n');
        let files = vec![
            ("index.json", index),
            (
                "oci-layout",
                layerlift_layout::OCI_LAYOUT_CONTENT.as_bytes().to_vec(),
            ),
        ];
        Prepared::new(self.blobs, files, 0)
    }
}

/// The blob's stored size, which must be the descriptor's.
fn check_size(source: &dyn BlobSource, d: &Descriptor) -> Result<u64, PackError> {
    let size = source.size(&d.digest)?;
    if size != d.size {
        return Err(PackError::Changed {
            digest: d.digest,
            why: format!("the descriptor says {} bytes, the blob has {size}", d.size),
        });
    }
    Ok(size)
}

/// The compression of a blob, from its first bytes.
fn sniff_blob(source: &dyn BlobSource, digest: &Digest) -> Result<Compression, PackError> {
    let mut prefix = Vec::with_capacity(SNIFF_LEN);
    source
        .open(digest)?
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| read_error(*digest, e))?;
    Ok(sniff(&prefix))
}

/// Decode a layer once, to check its diff_id and learn its uncompressed size (nothing is written).
fn measure(
    source: &dyn BlobSource,
    layer: &Descriptor,
    diff_id: Digest,
    compression: Compression,
    observer: &dyn Observer,
) -> Result<u64, PackError> {
    observer.event(&Event::BlobStarted {
        digest: layer.digest,
        size: layer.size,
        step: Step::Measure,
    });
    let reader = Progress::new(source.open(&layer.digest)?, observer);
    let mut decoded = Sha256Reader::new(
        DecodeReader::new(reader, compression).map_err(|e| read_error(layer.digest, e))?,
    );
    io::copy(&mut decoded, &mut io::sink()).map_err(|e| read_error(layer.digest, e))?;
    let (actual, size, _) = decoded.finish();
    if actual != diff_id {
        return Err(PackError::Layer {
            digest: layer.digest,
            source: Box::new(LayerError::DiffIdMismatch {
                layer: layer.digest,
                expected: diff_id,
                actual,
            }),
        });
    }
    observer.event(&Event::BlobFinished {
        digest: layer.digest,
    });
    Ok(size)
}

fn read_error(digest: Digest, e: io::Error) -> PackError {
    PackError::Layer {
        digest,
        source: Box::new(LayerError::io("reading the blob", e)),
    }
}

/// An archive whose every blob was checked, ready to be written (as many times as wanted: the
/// bytes are the same every time).
#[derive(Debug)]
pub struct Prepared {
    /// Each blob: its name's digest, content, and size in the archive.
    blobs: Vec<(Digest, Content, u64)>,
    files: Vec<(&'static str, Vec<u8>)>,
    decompressed: usize,
}

/// What [`Prepared::write_to`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Blobs written.
    pub blobs: usize,
    /// Layers written decompressed.
    pub decompressed: usize,
    /// Bytes of the archive.
    pub bytes: u64,
}

impl Prepared {
    fn new(
        blobs: Blobs,
        mut files: Vec<(&'static str, Vec<u8>)>,
        decompressed: usize,
    ) -> Result<Self, PackError> {
        let blobs = blobs
            .0
            .into_iter()
            .map(|(digest, content)| {
                let size = match &content {
                    Content::Bytes(b) => b.len() as u64,
                    Content::Stored { size } | Content::Decoded { size, .. } => *size,
                };
                (digest, content, size)
            })
            .collect();
        files.sort();
        Ok(Prepared {
            blobs,
            files,
            decompressed,
        })
    }

    /// Bytes read from the source while writing.
    fn bytes_to_read(&self) -> u64 {
        self.blobs
            .iter()
            .map(|(_, c, size)| match c {
                Content::Bytes(_) => 0,
                Content::Stored { .. } => *size,
                Content::Decoded { stored, .. } => *stored,
            })
            .sum()
    }

    /// Write the archive to `out`: every entry, then the end-of-archive blocks (only when all went
    /// well), then flush. With `direct` (the file or pipe that `out` writes to, unbuffered), blobs
    /// that are files in the source are copied into it by the kernel and hashed on threads of
    /// their own, several blobs at once (`out` is flushed before each); with `writeback` as well,
    /// a file's written bytes go to the disk as the copy goes (see [`layerlift_layout::Copier`]).
    /// Every blob matched its digest before the end-of-archive blocks are written.
    pub fn write_to(
        &self,
        source: &dyn BlobSource,
        out: &mut dyn Write,
        direct: Option<(&std::fs::File, bool)>,
        observer: &dyn Observer,
    ) -> Result<Written, PackError> {
        observer.event(&Event::Started {
            blobs: self.blobs.len(),
            bytes: self.bytes_to_read(),
        });
        let mut copier = match direct {
            Some((to, writeback)) => Some(Copier::new(to, writeback).map_err(PackError::Write)?),
            None => None,
        };
        let mut tar = TarOut::new(out);
        tar.dir("blobs/").map_err(PackError::Write)?;
        tar.dir("blobs/sha256/").map_err(PackError::Write)?;
        for (digest, content, size) in &self.blobs {
            let path = blob_path(digest);
            match content {
                Content::Bytes(bytes) => tar.file(&path, bytes).map_err(PackError::Write)?,
                Content::Stored { .. } => {
                    observer.event(&Event::BlobStarted {
                        digest: *digest,
                        size: *size,
                        step: Step::Copy,
                    });
                    let blob = match copier {
                        Some(_) => source.open_file(digest)?,
                        None => None,
                    };
                    if let (Some(copier), Some(blob)) = (copier.as_mut(), blob) {
                        copy_direct(&mut tar, &path, *size, blob, copier, digest, observer)?;
                        observer.event(&Event::BlobFinished { digest: *digest });
                        continue;
                    }
                    let mut reader =
                        Sha256Reader::new(Progress::new(source.open(digest)?, observer));
                    copy(&mut tar, &path, *size, &mut reader, digest)?;
                    let (actual, _, mut rest) = reader.finish();
                    check_end(&mut rest, digest)?;
                    if actual != *digest {
                        return Err(PackError::Changed {
                            digest: *digest,
                            why: format!("its bytes hash to {actual}"),
                        });
                    }
                    observer.event(&Event::BlobFinished { digest: *digest });
                }
                Content::Decoded { from, stored, .. } => {
                    observer.event(&Event::BlobStarted {
                        digest: *from,
                        size: *stored,
                        step: Step::Decompress,
                    });
                    let compression = sniff_blob(source, from)?;
                    let input = Progress::new(source.open(from)?, observer);
                    let mut reader = Sha256Reader::new(
                        DecodeReader::new(input, compression).map_err(|e| read_error(*from, e))?,
                    );
                    copy(&mut tar, &path, *size, &mut reader, from)?;
                    let (actual, _, mut rest) = reader.finish();
                    check_end(&mut rest, from)?;
                    if actual != *digest {
                        return Err(PackError::Changed {
                            digest: *from,
                            why: format!("it decompresses to {actual}, not {digest}"),
                        });
                    }
                    observer.event(&Event::BlobFinished { digest: *from });
                }
            }
        }
        if let Some(copier) = copier {
            copier.finish().map_err(copied_wrong)?;
        }
        for (name, bytes) in &self.files {
            tar.file(name, bytes).map_err(PackError::Write)?;
        }
        let bytes = tar.written() + 1024;
        tar.finish().map_err(PackError::Write)?;
        Ok(Written {
            blobs: self.blobs.len(),
            decompressed: self.decompressed,
            bytes,
        })
    }
}

fn copy(
    tar: &mut TarOut<&mut dyn Write>,
    path: &str,
    size: u64,
    reader: &mut dyn Read,
    digest: &Digest,
) -> Result<(), PackError> {
    tar.file_from(path, size, reader).map_err(|e| match e {
        CopyError::Read(e) if e.kind() == io::ErrorKind::UnexpectedEof => PackError::Changed {
            digest: *digest,
            why: format!("it is shorter than {size} bytes"),
        },
        CopyError::Read(e) => read_error(*digest, e),
        CopyError::Write(e) => PackError::Write(e),
    })
}

/// A blob copied by the kernel from the source's file `blob` into the file or pipe the tar stream
/// writes to, by `copier`, which checks it against `digest` (see [`copied_wrong`]).
fn copy_direct(
    tar: &mut TarOut<&mut dyn Write>,
    path: &str,
    size: u64,
    blob: std::fs::File,
    copier: &mut Copier,
    digest: &Digest,
    observer: &dyn Observer,
) -> Result<(), PackError> {
    let now = blob.metadata().map_err(|e| read_error(*digest, e))?.len();
    if now > size {
        return Err(PackError::Changed {
            digest: *digest,
            why: "it is longer than its descriptor says".into(),
        });
    }
    let progress = &mut |bytes| observer.event(&Event::Progress { bytes });
    tar.file_copied(path, size, blob, *digest, copier, progress)
        .map_err(copied_wrong)
}

/// What a [`Copier`]'s failure means for the pack.
fn copied_wrong(e: layerlift_layout::CopyError) -> PackError {
    use layerlift_layout::CopyError as E;
    match e {
        E::Read { digest, source } if source.kind() == io::ErrorKind::UnexpectedEof => {
            PackError::Changed {
                digest,
                why: "it is shorter than its descriptor says".into(),
            }
        }
        E::Read { digest, source } => read_error(digest, source),
        E::Write(e) => PackError::Write(e),
        E::Mismatch { digest, actual } => PackError::Changed {
            digest,
            why: format!("its bytes hash to {actual}"),
        },
    }
}

/// The source must hold nothing past the size written.
fn check_end(rest: &mut dyn Read, digest: &Digest) -> Result<(), PackError> {
    let mut one = [0u8; 1];
    match rest.read(&mut one) {
        Ok(0) => Ok(()),
        Ok(_) => Err(PackError::Changed {
            digest: *digest,
            why: "it is longer than its descriptor says".into(),
        }),
        Err(e) => Err(read_error(*digest, e)),
    }
}

/// A reader that reports the bytes read through it as [`Event::Progress`].
struct Progress<'a, R> {
    inner: R,
    observer: &'a dyn Observer,
}

impl<'a, R> Progress<'a, R> {
    fn new(inner: R, observer: &'a dyn Observer) -> Self {
        Progress { inner, observer }
    }
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.observer.event(&Event::Progress { bytes: n as u64 });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;
    use layerlift_manifest::media_types;

    /// Blobs in memory: the sink needs no layout.
    struct Memory(BTreeMap<Digest, Vec<u8>>);

    impl Memory {
        fn put(&mut self, bytes: Vec<u8>) -> Descriptor {
            let d = Digest::of(&bytes);
            let desc = Descriptor::new(media_types::OCI_LAYER, d, bytes.len() as u64);
            self.0.insert(d, bytes);
            desc
        }
    }

    impl BlobSource for Memory {
        fn open(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, PackError> {
            match self.0.get(digest) {
                Some(b) => Ok(Box::new(&b[..])),
                None => Err(PackError::blob(
                    *digest,
                    LayoutError::MissingBlob {
                        digest: *digest,
                        path: "memory".into(),
                    },
                )),
            }
        }
        fn size(&self, digest: &Digest) -> Result<u64, PackError> {
            self.open(digest)?;
            Ok(self.0[digest].len() as u64)
        }
    }

    fn layer_tar(text: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", text).unwrap();
        b.into_inner().unwrap()
    }

    fn entries(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(archive);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (e.path().unwrap().display().to_string(), data)
            })
            .collect()
    }

    /// Two images sharing a zstd layer: it is written once, decompressed, under its diff_id;
    /// the plain layer as it is; `manifest.json` names both images' layers in order.
    #[test]
    fn docker_archives_hold_each_blob_once_and_no_zstd() {
        let mut mem = Memory(BTreeMap::new());
        let shared = layer_tar(b"shared");
        let own = layer_tar(b"own");
        let shared_zstd = mem.put(zstd::encode_all(&shared[..], 3).unwrap());
        let own_plain = mem.put(own.clone());
        let mut archive = DockerArchive::new();
        for (tags, layers) in [
            (
                vec!["a:1".to_string()],
                vec![(shared_zstd.clone(), Digest::of(&shared))],
            ),
            (
                vec![],
                vec![
                    (shared_zstd.clone(), Digest::of(&shared)),
                    (own_plain.clone(), Digest::of(&own)),
                ],
            ),
        ] {
            let config = format!("{{\"n\":{}}}", layers.len()).into_bytes();
            let config_desc = mem.put(config.clone());
            archive.add(DockerImage {
                repo_tags: tags,
                config: config_desc,
                config_bytes: config,
                layers,
            });
        }
        let prepared = archive.prepare(&mem, &NoProgress).unwrap();
        let mut out = Vec::new();
        let written = prepared
            .write_to(&mem, &mut out, None, &NoProgress)
            .unwrap();
        assert_eq!((written.blobs, written.decompressed), (4, 1));
        assert_eq!(written.bytes, out.len() as u64);
        let got = entries(&out);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let shared_name = blob_path(&Digest::of(&shared));
        let shared_entry = got.iter().find(|(n, _)| *n == shared_name).unwrap();
        assert_eq!(shared_entry.1, shared);
        assert!(!names.contains(&blob_path(&shared_zstd.digest).as_str()));
        let manifest: serde_json::Value =
            serde_json::from_slice(&got.iter().find(|(n, _)| n == "manifest.json").unwrap().1)
                .unwrap();
        assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["a:1"]));
        assert_eq!(manifest[1]["RepoTags"], serde_json::Value::Null);
        assert_eq!(
            manifest[1]["Layers"],
            serde_json::json!([shared_name, blob_path(&own_plain.digest)])
        );
        // The same images give the same bytes.
        let mut again = Vec::new();
        prepared
            .write_to(&mem, &mut again, None, &NoProgress)
            .unwrap();
        assert_eq!(out, again);
    }

    /// A zstd layer whose diff_id is not the config's is refused by `prepare`, before anything
    /// is written.
    #[test]
    fn a_wrong_diff_id_is_found_before_writing() {
        let mut mem = Memory(BTreeMap::new());
        let tar = layer_tar(b"x");
        let layer = mem.put(zstd::encode_all(&tar[..], 3).unwrap());
        let config = b"{}".to_vec();
        let config_desc = mem.put(config.clone());
        let mut archive = DockerArchive::new();
        archive.add(DockerImage {
            repo_tags: vec![],
            config: config_desc,
            config_bytes: config,
            layers: vec![(layer, Digest::of(b"not the tar"))],
        });
        let err = archive.prepare(&mem, &NoProgress).unwrap_err();
        assert!(
            matches!(&err, PackError::Layer { source, .. } if matches!(**source, LayerError::DiffIdMismatch { .. })),
            "{err}"
        );
    }
}
