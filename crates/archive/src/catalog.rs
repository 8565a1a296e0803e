//! What a push needs to know before it reads any layer: which entries of an archive hold layers,
//! how each is stored, which diff_id the image config gives it (for re-push), and how many
//! different images the archive holds (for early uploads) — learnt from the archive's metadata
//! alone. An uncompressed tar file is walked header by header, seeking past every entry's
//! data (only the first 512 bytes of each are read, to see how it is stored, and small JSON
//! documents in full); a directory is listed. A compressed archive or a pipe cannot be walked
//! without reading all of it, so it has no catalog.
//!
//! Nothing here is verified: the diff_ids are the config's claims. A layer the destination
//! registry already has is then left unread ([`crate::Options::reuse`]); every other layer is read,
//! hashed and checked against its diff_id as usual.

use crate::docker::Item;
use crate::error::ArchiveError;
use crate::fanout::FanOut;
use crate::input::Input;
use crate::metadata::{self, Primary};
use crate::oci::platform_of;
use crate::paths::digest_in_name;
use crate::paths::{self, Link};
use crate::scan::{
    BufSeek, DirEntry, HeaderBudget, MAX_ENTRIES, MAX_HEADER_BYTES, read_up_to, walk_dir,
};
use layerlift_layers::{Compression, sniff};
use layerlift_manifest::{Digest, ImageConfig, Index, Manifest, media_types, parse_json};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Seek};
use std::path::Path;
use std::rc::Rc;

/// JSON documents up to this size are read (as in the full scan).
const MAX_JSON: u64 = 8 << 20;
/// Indexes nest at most this deep.
const MAX_DEPTH: usize = 8;

/// One layer of one image of the archive, as its metadata describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogLayer {
    /// The archive entry that holds the layer (links followed).
    pub path: String,
    /// How the entry is stored, from its first bytes.
    pub compression: Compression,
    /// The entry's digest as the metadata gives it: the layer descriptor's digest, or for a
    /// `manifest.json` layer the diff_id (uncompressed) or the digest in its name (compressed).
    pub digest: Digest,
    /// The entry's size as stored.
    pub size: u64,
    /// The uncompressed digest the image config gives the layer.
    pub diff_id: Digest,
    /// The image's `os/arch[/variant]`, from its config.
    pub platform: Option<String>,
}

/// What the metadata of an archive describes: the layers of every image, and how many different
/// images there are.
#[derive(Debug, Clone, PartialEq)]
pub struct Contents {
    /// Each image's layers in order, the images one after the other.
    pub layers: Vec<CatalogLayer>,
    /// Different images: `manifest.json` items with different configs or layers, or different
    /// manifest digests among index.json's entries (one multi-platform index is one image). The
    /// same image under two names counts once, as push counts them.
    pub images: usize,
    /// Every image name the metadata gives (`RepoTags`, index.json's `ref.name`s), in order:
    /// where a push under own names will send them, known before the archive is read.
    pub names: Vec<String>,
    /// Each `manifest.json` item: its names and which of `layers` are its own (empty for an
    /// OCI index): which image a layer belongs to before the archive is read.
    pub items: Vec<CatalogItem>,
}

/// One `manifest.json` item of a [`Contents`]: its `RepoTags`, and its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogItem {
    /// The item's `RepoTags`.
    pub names: Vec<String>,
    /// Its layers, as indices into [`Contents::layers`] (those the catalog could pair).
    pub layers: std::ops::Range<usize>,
}

/// A file entry of the catalog: its size, how it is stored, and its bytes if it is small JSON.
#[derive(Debug)]
struct Entry {
    size: u64,
    compression: Compression,
    json: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Catalog {
    files: BTreeMap<String, Entry>,
    links: BTreeMap<String, Link>,
}

/// Whether `file` is an uncompressed tar (a tar header at the start); leaves it at offset 0.
pub fn is_plain_tar(file: &mut fs::File) -> Result<bool, ArchiveError> {
    let mut head = [0u8; 512];
    let n = read_up_to(file, &mut head).map_err(|e| ArchiveError::io("the archive", e))?;
    file.rewind()
        .map_err(|e| ArchiveError::io("the archive", e))?;
    Ok(n == 512 && sniff(&head) == Compression::None && &head[257..262] == b"ustar")
}

/// The layers of every image of `input`, and how many different images it holds, from its
/// metadata, without reading the layers. `None` when the input cannot be walked that way (a pipe, a
/// compressed archive) or has neither `manifest.json` nor `index.json`.
pub fn read_catalog(input: &Input) -> Result<Option<Contents>, ArchiveError> {
    let catalog = match input {
        Input::Stdin => return Ok(None),
        Input::Path(p) if p.is_dir() => catalog_dir(p)?,
        Input::Path(p) => {
            let mut file = fs::File::open(p).map_err(|e| ArchiveError::io("the archive", e))?;
            if !is_plain_tar(&mut file)? {
                return Ok(None);
            }
            catalog_tar(&mut file)?
        }
    };
    catalog.contents()
}

fn catalog_tar(file: &mut fs::File) -> Result<Catalog, ArchiveError> {
    let mut catalog = Catalog::default();
    // The same bounds as the full scan: headers between entries, entries.
    let budget = Rc::new(HeaderBudget::default());
    let mut archive = tar::Archive::new(BufSeek::with_budget(file, Rc::clone(&budget)));
    let mut entries = archive
        .entries_with_seek()
        .map_err(|e| ArchiveError::io("reading the first header", e))?;
    let mut count = 0;
    loop {
        budget.left.set(Some(MAX_HEADER_BYTES));
        let next = entries.next();
        budget.left.set(None);
        let Some(entry) = next else { break };
        count += 1;
        if budget.exceeded.get() || count > MAX_ENTRIES {
            return Err(ArchiveError::Limit(
                "too many entries, or too large tar headers".into(),
            ));
        }
        let mut entry = entry.map_err(|e| ArchiveError::io("reading an entry header", e))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = paths::normalize(&raw)? else {
            continue;
        };
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular | T::Continuous => {
                let size = entry.size();
                let e = read_entry(&mut entry, size)
                    .map_err(|e| ArchiveError::io(format!("entry `{path}`"), e))?;
                catalog.files.insert(path, e);
            }
            kind @ (T::Symlink | T::Link) => {
                if let Some(target) = entry.link_name_bytes() {
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let link = if kind == T::Symlink {
                        Link::Symlink(target)
                    } else {
                        Link::Hard(target)
                    };
                    catalog.links.insert(path, link);
                }
            }
            _ => {}
        }
    }
    Ok(catalog)
}

fn catalog_dir(root: &Path) -> Result<Catalog, ArchiveError> {
    let mut catalog = Catalog::default();
    walk_dir(root, &mut |rel, entry| {
        match entry {
            DirEntry::Symlink(target) => {
                catalog.links.insert(rel, Link::Symlink(target));
            }
            DirEntry::File { path, size } => {
                let e = fs::File::open(path)
                    .and_then(|mut f| read_entry(&mut f, size))
                    .map_err(|e| ArchiveError::io(path.display().to_string(), e))?;
                catalog.files.insert(rel, e);
            }
            DirEntry::Other => {}
        }
        Ok(())
    })?;
    Ok(catalog)
}

/// Read an entry's first bytes; all of it if it is a small JSON document.
fn read_entry(reader: &mut dyn Read, size: u64) -> io::Result<Entry> {
    let mut head = [0u8; 512];
    let n = read_up_to(reader, &mut head)?;
    let compression = sniff(&head[..n]);
    let looks_json = matches!(
        head[..n].iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    let json = if looks_json && size <= MAX_JSON {
        let mut all = head[..n].to_vec();
        reader.take(MAX_JSON).read_to_end(&mut all)?;
        Some(all)
    } else {
        None
    };
    Ok(Entry {
        size,
        compression,
        json,
    })
}

impl Catalog {
    fn entry(&self, path: &str) -> Option<(String, &Entry)> {
        let resolved = paths::resolve(&self.links, path).ok()?;
        self.files.get(&resolved).map(|e| (resolved, e))
    }

    fn json(&self, path: &str) -> Option<&[u8]> {
        self.entry(path)?.1.json.as_deref()
    }

    /// The layers and images of the document that describes the images ([`metadata::primary`]);
    /// `None` when that is not a list of images or an OCI index, or is unreadable here (the full
    /// read reports what is wrong).
    fn contents(&self) -> Result<Option<Contents>, ArchiveError> {
        let manifest_json = match self.entry("manifest.json") {
            Some((_, entry)) => match entry.json.as_deref() {
                Some(bytes) => Some(bytes),
                None => return Ok(None),
            },
            None => None,
        };
        let index_json = self.json("index.json");
        let primary = match metadata::primary(manifest_json, index_json.is_some()) {
            Ok(Some(primary)) => primary,
            Ok(None) | Err(_) => return Ok(None),
        };
        let mut layers = Vec::new();
        let mut names = Vec::new();
        let mut catalog_items = Vec::new();
        let images: BTreeSet<String> = match (primary, index_json) {
            (Primary::DockerList(items), _) => {
                for item in &items {
                    let start = layers.len();
                    self.docker_item(item, &mut layers);
                    let item_names: Vec<String> =
                        item.repo_tags.iter().flatten().cloned().collect();
                    names.extend(item_names.iter().cloned());
                    catalog_items.push(CatalogItem {
                        names: item_names,
                        layers: start..layers.len(),
                    });
                }
                items
                    .iter()
                    .map(|i| format!("{} {:?}", i.config, i.layers))
                    .collect()
            }
            (Primary::OciIndex, Some(bytes)) => {
                let fanout = FanOut::default();
                self.oci_document(bytes, 0, &mut layers, &fanout);
                if fanout.exceeded() {
                    return Err(fanout.error());
                }
                let index = parse_json::<Index>("image index", bytes).ok();
                let entries = index.iter().flat_map(|i| &i.manifests);
                names.extend(
                    entries
                        .clone()
                        .filter_map(|d| d.annotation(layerlift_manifest::annotations::REF_NAME))
                        .map(str::to_string),
                );
                entries.map(|d| d.digest.to_string()).collect()
            }
            _ => return Ok(None),
        };
        Ok(Some(Contents {
            layers,
            images: images.len(),
            names,
            items: catalog_items,
        }))
    }

    /// The layers of one `manifest.json` item, paired with its config's diff_ids.
    fn docker_item(&self, item: &Item, out: &mut Vec<CatalogLayer>) {
        let Some(config) = self
            .json(&item.config)
            .and_then(|j| parse_json::<ImageConfig>("image config", j).ok())
        else {
            return;
        };
        let layers = item.layers.as_deref().unwrap_or_default();
        if layers.len() != config.rootfs.diff_ids.len() {
            return;
        }
        let platform = platform_of(&config);
        for (path, diff_id) in layers.iter().zip(&config.rootfs.diff_ids) {
            let Some((resolved, entry)) = self.entry(path) else {
                continue;
            };
            let digest = match entry.compression {
                Compression::None => *diff_id,
                _ => match digest_in_name(&resolved) {
                    Some(d) => d,
                    None => continue,
                },
            };
            out.push(CatalogLayer {
                path: resolved,
                compression: entry.compression,
                digest,
                size: entry.size,
                diff_id: *diff_id,
                platform: platform.clone(),
            });
        }
    }

    /// The layers under an index or manifest of an OCI layout, each manifest's once however
    /// often it is referenced; every reference is charged to `fanout` all the same (as unpack
    /// charges it), and the walk stops once that is exceeded.
    fn oci_document(
        &self,
        bytes: &[u8],
        depth: usize,
        out: &mut Vec<CatalogLayer>,
        fanout: &FanOut,
    ) {
        if depth > MAX_DEPTH || !fanout.take(1) {
            return;
        }
        let value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(_) => return,
        };
        if value.get("manifests").is_some() {
            let Ok(index) = parse_json::<Index>("image index", bytes) else {
                return;
            };
            for child in &index.manifests {
                if let Some(cost) = fanout.cost_of(&child.digest) {
                    // Walked already: its layers are listed; charge what it cost then.
                    if !fanout.take(cost) {
                        return;
                    }
                    continue;
                }
                if let Some(bytes) = self.json(&blob_path(&child.digest)) {
                    let left_before = fanout.left();
                    self.oci_document(bytes, depth + 1, out, fanout);
                    if fanout.exceeded() {
                        return;
                    }
                    fanout.remember(child.digest, left_before - fanout.left());
                } else if !fanout.take(1) {
                    return;
                }
            }
            return;
        }
        let Ok(manifest) = parse_json::<Manifest>("image manifest", bytes) else {
            return;
        };
        if !fanout.take(1 + manifest.layers.len()) {
            return;
        }
        let Some(config) = self
            .json(&blob_path(&manifest.config.digest))
            .and_then(|j| parse_json::<ImageConfig>("image config", j).ok())
        else {
            return;
        };
        if manifest.layers.len() != config.rootfs.diff_ids.len() {
            return;
        }
        let platform = platform_of(&config);
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if media_types::is_non_distributable(&layer.media_type) {
                continue;
            }
            let Some((resolved, entry)) = self.entry(&blob_path(&layer.digest)) else {
                continue;
            };
            out.push(CatalogLayer {
                path: resolved,
                compression: entry.compression,
                digest: layer.digest,
                size: entry.size,
                diff_id: *diff_id,
                platform: platform.clone(),
            });
        }
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A docker-save-like tar: a config, two layers (one behind a symlink), manifest.json last.
    fn archive(dir: &Path) -> (std::path::PathBuf, Vec<Digest>) {
        archive_with(
            dir,
            serde_json::json!([{
                "Config": "cfg.json", "RepoTags": ["app:1"], "Layers": ["a/layer.tar", "b/layer.tar"]
            }]),
        )
    }

    /// [`archive`] with another `manifest.json`.
    fn archive_with(dir: &Path, manifest: serde_json::Value) -> (std::path::PathBuf, Vec<Digest>) {
        let layer = |content: &[u8]| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "file", content).unwrap();
            b.into_inner().unwrap()
        };
        let (l1, l2) = (layer(b"one"), layer(b"two"));
        let ids = vec![Digest::of(&l1), Digest::of(&l2)];
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [ids[0].to_string(), ids[1].to_string()]}
        })
        .to_string();
        let manifest = manifest.to_string();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        add("cfg.json", config.as_bytes());
        add("a/layer.tar", &l1);
        add("c/layer.tar", &l2);
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "b/layer.tar", "../c/layer.tar")
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(manifest.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "manifest.json", manifest.as_bytes())
            .unwrap();
        let path = dir.join("a.tar");
        fs::write(&path, b.into_inner().unwrap()).unwrap();
        (path, ids)
    }

    #[test]
    fn docker_archive_layers_without_reading_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (path, ids) = archive(tmp.path());
        let Contents {
            layers,
            images,
            names,
            items,
        } = read_catalog(&Input::Path(path)).unwrap().unwrap();
        assert_eq!(images, 1);
        assert_eq!(names, ["app:1"]);
        assert_eq!(items.len(), 1);
        assert_eq!((&items[0].names, &items[0].layers), (&names, &(0..2)));
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[0].path, "a/layer.tar");
        assert_eq!(layers[1].path, "c/layer.tar", "the symlink is followed");
        assert_eq!(layers[0].diff_id, ids[0]);
        assert_eq!(layers[1].digest, ids[1]);
        assert_eq!(layers[0].compression, Compression::None);
        assert_eq!(layers[0].platform.as_deref(), Some("linux/amd64"));
    }

    #[test]
    fn images_are_counted_once_whatever_their_names() {
        let tmp = tempfile::tempdir().unwrap();
        let both = ["a/layer.tar", "b/layer.tar"];
        let (path, _) = archive_with(
            tmp.path(),
            serde_json::json!([
                {"Config": "cfg.json", "RepoTags": ["app:1"], "Layers": both},
                {"Config": "cfg.json", "RepoTags": ["app:latest"], "Layers": both},
            ]),
        );
        let c = read_catalog(&Input::Path(path)).unwrap().unwrap();
        assert_eq!(c.images, 1, "one image under two names");
        let (path, _) = archive_with(
            tmp.path(),
            serde_json::json!([
                {"Config": "cfg.json", "RepoTags": ["app:1"], "Layers": both},
                {"Config": "cfg.json", "RepoTags": ["base:1"], "Layers": ["a/layer.tar"]},
            ]),
        );
        let c = read_catalog(&Input::Path(path)).unwrap().unwrap();
        assert_eq!(c.images, 2, "different layers, a different image");
    }

    /// An OCI layout whose index.json has `entries` entries naming one manifest of `layers`
    /// layers (all the same one).
    fn fan_out_layout(dir: &Path, entries: usize, layers: usize) {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            let d = Digest::of(bytes);
            fs::write(blobs.join(d.hex()), bytes).unwrap();
            d
        };
        let layer = put(&[0u8; 1024]);
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": vec![layer.to_string(); layers]},
        })
        .to_string();
        let config_digest = put(config.as_bytes());
        let one = serde_json::json!({"mediaType": media_types::OCI_LAYER,
                                      "digest": layer.to_string(), "size": 1024});
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": media_types::OCI_MANIFEST,
            "config": {"mediaType": media_types::OCI_CONFIG,
                       "digest": config_digest.to_string(), "size": config.len()},
            "layers": vec![one; layers],
        })
        .to_string();
        let manifest_digest = put(manifest.as_bytes());
        let entry = serde_json::json!({"mediaType": media_types::OCI_MANIFEST,
                                        "digest": manifest_digest.to_string(), "size": manifest.len()});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": vec![entry; entries]});
        fs::write(dir.join("index.json"), index.to_string()).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    }

    /// The catalog follows the full read's rule for which document describes the images: a
    /// `manifest.json` that is no list of images is an error there, and no catalog here, even
    /// next to a good `index.json`.
    #[test]
    fn follows_the_full_reads_choice_of_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        fan_out_layout(&dir, 1, 2);
        assert!(read_catalog(&Input::Path(dir.clone())).unwrap().is_some());
        fs::write(dir.join("manifest.json"), r#"{"not": "a list"}"#).unwrap();
        assert_eq!(read_catalog(&Input::Path(dir.clone())).unwrap(), None);
        let err = crate::read(&Input::Path(dir), None).unwrap_err();
        assert!(err.to_string().contains("manifest.json"), "{err}");
    }

    /// A manifest referenced many times is walked once (its layers listed once), but every
    /// reference counts towards the fan-out limit, as in unpack's walk.
    #[test]
    fn repeated_manifests_are_walked_once_and_charged_every_time() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = tmp.path().join("ok");
        fan_out_layout(&ok, 50, 100);
        let c = read_catalog(&Input::Path(ok.clone())).unwrap().unwrap();
        assert_eq!(c.layers.len(), 100, "one manifest's layers, once");
        assert_eq!(c.images, 1);
        let (_, scan) = crate::read(&Input::Path(ok), None).unwrap();
        assert!(!scan.files.is_empty());

        let bomb = tmp.path().join("bomb");
        fan_out_layout(&bomb, 400, 400); // 160,000 descriptors through every reference
        let err = read_catalog(&Input::Path(bomb.clone())).unwrap_err();
        assert!(
            err.to_string().contains("fan out to more than 100000"),
            "{err}"
        );
        let err = crate::read(&Input::Path(bomb), None).unwrap_err();
        assert!(
            err.to_string().contains("fan out to more than 100000"),
            "{err}"
        );
    }

    #[test]
    fn compressed_archives_and_pipes_have_no_catalog() {
        let tmp = tempfile::tempdir().unwrap();
        let (path, _) = archive(tmp.path());
        let gz = tmp.path().join("a.tar.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut e, &fs::read(&path).unwrap()).unwrap();
        fs::write(&gz, e.finish().unwrap()).unwrap();
        assert_eq!(read_catalog(&Input::Path(gz)).unwrap(), None);
        assert_eq!(read_catalog(&Input::Stdin).unwrap(), None);
    }
}
