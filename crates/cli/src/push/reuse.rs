//! Re-push without re-reading: before an archive SOURCE is read, find the layers the destination
//! already holds in the form this push would produce, so that they are named by the registry's
//! descriptor and never read, hashed or compressed.
//!
//! Where the answers come from, in order:
//! 1. **The registry remembers for us**: the manifest DEST's tag points at now (and each
//!    `--reuse-from` reference), followed through an index to the platforms the archive's images
//!    have, and its config: a layer whose diff_id appears there, stored with the compression this
//!    push would produce (any compression with `--reuse-any-compression`), is a candidate.
//! 2. **The local cache** ([`super::cache`]): `diff_id, codec, level, encoder → digest`.
//! 3. A layer the archive stores compressed keeps its digest: it is a candidate as it is.
//!
//! A candidate is used only after a HEAD finds the blob in DEST's repository (or in the
//! `--reuse-from` repository it came from, which the push then mounts it from). The HEADs of all
//! candidates go out together, `--jobs` at a time, before the archive is read. Only archives that
//! can be walked without reading them (an uncompressed tar file, a directory) have a catalog; a pipe
//! or a compressed archive is read in full.
//!
//! What is trusted: an image DEST's own repository serves is trusted as DEST itself is (whoever
//! can write it can replace the pushed image anyway), so its diff_id → blob pairs are used unread.
//! A pair learnt anywhere else — an image of a `--reuse-from` repository, or the local cache, which
//! any process that can write the cache directory can change — is [`confirm`]ed before a manifest
//! names it: the blob is read back from the registry, decompressed and hashed against the diff_id.
//! A blob that does not match fails the push (and its cache entry is removed).

use super::cache::{Cache, Key};
use layerlift_archive::ReusedEntry;
use layerlift_archive::catalog::CatalogLayer;
use layerlift_layers::Compression;
use layerlift_manifest::convert::layer_compression_label;
use layerlift_manifest::{
    Descriptor, Digest, ImageConfig, Index, Manifest, media_types, parse_json, platform_matches,
};
use layerlift_registry::Client;
use std::collections::{BTreeMap, BTreeSet};

/// The compression of a layer blob of this media type (`None`: not a layer media type we know).
fn layer_compression(media_type: &str) -> Option<Compression> {
    layer_compression_label(media_type).map(Compression::from)
}
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a reused layer's descriptor came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An image the registry holds (DEST's tag or `--reuse-from`).
    Registry,
    /// The local cache.
    Cache,
    /// The archive's own metadata (a layer it stores compressed, whose digest is kept).
    Archive,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Registry => "registry",
            Origin::Cache => "cache",
            Origin::Archive => "archive-metadata",
        }
    }
}

/// A layer the push takes from the registry instead of reading it.
#[derive(Debug, Clone)]
pub struct Reused {
    pub path: String,
    pub diff_id: Digest,
    /// The blob pushed for it.
    pub digest: Digest,
    pub size: u64,
    pub origin: Origin,
    /// The repository of DEST's registry that holds the blob.
    pub repository: String,
    /// The blob's compression.
    pub compression: Compression,
    /// The layer's uncompressed size, when the archive stores it uncompressed.
    pub uncompressed_size: Option<u64>,
}

/// What to look for.
pub struct Wanted<'a> {
    /// DEST's repository: reused blobs must be there (or be mountable into it).
    pub repository: &'a str,
    /// References (`repository`, tag or digest) whose images may share layers: DEST's tags first.
    pub references: Vec<(String, String)>,
    /// The compression an uncompressed layer would get (`None`: pushed uncompressed).
    pub compression: Option<Compression>,
    /// Its level (for the cache key).
    pub level: i32,
    /// Accept a registry blob in any compression.
    pub any_compression: bool,
    pub cache: Option<&'a Cache>,
    /// HEAD requests in flight at once (`--jobs`).
    pub jobs: usize,
}

impl Wanted<'_> {
    /// The compression of a registry layer blob of this media type, if this push may use it in
    /// place of compressing a layer to `want`.
    fn accepts(&self, media_type: &str, want: Compression) -> Option<Compression> {
        let c = layer_compression(media_type)?;
        (c == want || (self.any_compression && matches!(c, Compression::Gzip | Compression::Zstd)))
            .then_some(c)
    }
}

/// The reuse plan: entries for the archive reader, and what each reused layer is.
#[derive(Debug, Default)]
pub struct Plan {
    pub entries: BTreeMap<String, ReusedEntry>,
    pub reused: Vec<Reused>,
    /// For an archive without a catalog (a pipe): diff_id → the registry's blob (digest, size,
    /// compression), confirmed by HEAD, and the repository that holds it.
    pub by_diff_id: BTreeMap<Digest, (Digest, u64, Compression, String)>,
    /// Notes for stderr (a reference that could not be read, and why).
    pub notes: Vec<String>,
}

/// A blob some repository of the registry holds for a diff_id.
#[derive(Debug, Clone)]
struct Known {
    descriptor: Descriptor,
    repository: String,
}

/// For an archive that cannot be walked ahead: every layer the registry's images (DEST's tags,
/// `--reuse-from`) have in the compression this push would produce, by diff_id, HEAD-confirmed.
/// The archive reader then only hashes a layer whose name states one of these diff_ids.
pub fn plan_by_diff_id(client: &Client, wanted: &Wanted<'_>) -> Plan {
    let mut plan = Plan::default();
    let Some(want) = wanted.compression else {
        return plan;
    };
    let mut known: BTreeMap<Digest, Vec<Known>> = BTreeMap::new();
    for (repo, reference) in &wanted.references {
        if let Err(note) = learn(client, repo, reference, &[], &mut known) {
            plan.notes.push(note);
        }
    }
    let candidates = known.values().flatten().filter_map(|k| {
        wanted.accepts(&k.descriptor.media_type, want)?;
        Some((k.repository.clone(), k.descriptor.digest))
    });
    let present = heads(client, candidates, wanted.jobs);
    for (diff_id, ks) in known {
        let usable = ks.into_iter().find_map(|k| {
            let c = wanted.accepts(&k.descriptor.media_type, want)?;
            present
                .contains(&(k.repository.clone(), k.descriptor.digest))
                .then_some((k, c))
        });
        if let Some((k, c)) = usable {
            plan.by_diff_id.insert(
                diff_id,
                (k.descriptor.digest, k.descriptor.size, c, k.repository),
            );
        }
    }
    plan
}

/// Which of `blobs` (repository, digest) the registry has: one HEAD each, up to `jobs` at once,
/// so that a plan of many layers does not wait for them one after the other before the archive
/// is read. A HEAD that fails counts as absent (the layer is then read and uploaded as usual).
fn heads(
    client: &Client,
    blobs: impl IntoIterator<Item = (String, Digest)>,
    jobs: usize,
) -> BTreeSet<(String, Digest)> {
    let todo: Vec<(String, Digest)> = blobs
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if todo.is_empty() {
        return BTreeSet::new();
    }
    let present = in_parallel(&todo, jobs, |(repo, digest)| {
        client.blob_exists(repo, digest).unwrap_or(false)
    });
    todo.into_iter()
        .zip(present)
        .filter_map(|(blob, present)| present.then_some(blob))
        .collect()
}

/// `f` of every item, `jobs` items at a time on scoped threads (HEADs and reads of blobs, which
/// wait on the registry), in the items' order.
fn in_parallel<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { return };
                    let r = f(item);
                    if let Ok(mut results) = results.lock() {
                        results[i] = Some(r);
                    }
                }
            });
        }
    });
    // A thread that panicked makes `scope` panic: every slot is filled here.
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Work out which of `layers` need not be read.
pub fn plan(client: &Client, layers: &[CatalogLayer], wanted: &Wanted<'_>) -> Plan {
    let mut plan = Plan::default();
    let platforms: Vec<&str> = layers
        .iter()
        .filter_map(|l| l.platform.as_deref())
        .collect();
    let mut known: BTreeMap<Digest, Vec<Known>> = BTreeMap::new();
    for (repo, reference) in &wanted.references {
        if let Err(note) = learn(client, repo, reference, &platforms, &mut known) {
            plan.notes.push(note);
        }
    }
    // Every blob that could stand for a layer, and then one HEAD each, all at once.
    let mut cached: BTreeMap<Digest, (Digest, u64)> = BTreeMap::new();
    let mut candidates: Vec<(String, Digest)> = Vec::new();
    for layer in layers {
        match (layer.compression, wanted.compression) {
            (Compression::None, None) | (Compression::Gzip | Compression::Zstd, _) => {
                candidates.push((wanted.repository.to_string(), layer.digest));
            }
            (Compression::None, Some(want)) => {
                for k in known.get(&layer.diff_id).into_iter().flatten() {
                    if wanted.accepts(&k.descriptor.media_type, want).is_some() {
                        candidates.push((k.repository.clone(), k.descriptor.digest));
                    }
                }
                let hint = wanted
                    .cache
                    .and_then(|cache| cache.get(&Key::new(layer.diff_id, want, wanted.level)));
                if let Some((digest, size)) = hint {
                    cached.insert(layer.diff_id, (digest, size));
                    candidates.push((wanted.repository.to_string(), digest));
                }
            }
            _ => {}
        }
    }
    let confirmed = heads(client, candidates, wanted.jobs);
    let present = |repo: &str, d: &Digest| confirmed.contains(&(repo.to_string(), *d));
    for layer in layers {
        if plan.entries.contains_key(&layer.path) {
            continue;
        }
        let found = match (layer.compression, wanted.compression) {
            // Stored compressed (pushed as it is), or pushed uncompressed: the digest is known.
            (Compression::None, None) | (Compression::Gzip | Compression::Zstd, _) => {
                present(wanted.repository, &layer.digest).then(|| {
                    (
                        None,
                        Reused {
                            path: layer.path.clone(),
                            diff_id: layer.diff_id,
                            digest: layer.digest,
                            size: layer.size,
                            origin: Origin::Archive,
                            repository: wanted.repository.to_string(),
                            compression: layer.compression,
                            uncompressed_size: (layer.compression == Compression::None)
                                .then_some(layer.size),
                        },
                    )
                })
            }
            (Compression::None, Some(want)) => {
                let from_registry = known.get(&layer.diff_id).and_then(|ks| {
                    ks.iter().find_map(|k| {
                        let c = wanted.accepts(&k.descriptor.media_type, want)?;
                        present(&k.repository, &k.descriptor.digest).then(|| {
                            (
                                k.descriptor.digest,
                                k.descriptor.size,
                                c,
                                Origin::Registry,
                                k.repository.clone(),
                            )
                        })
                    })
                });
                let from_cache = || {
                    let (digest, size) = *cached.get(&layer.diff_id)?;
                    present(wanted.repository, &digest).then(|| {
                        (
                            digest,
                            size,
                            want,
                            Origin::Cache,
                            wanted.repository.to_string(),
                        )
                    })
                };
                from_registry.or_else(from_cache).map(
                    |(digest, size, compression, origin, repository)| {
                        (
                            Some((digest, size, compression)),
                            Reused {
                                path: layer.path.clone(),
                                diff_id: layer.diff_id,
                                digest,
                                size,
                                origin,
                                repository,
                                compression,
                                uncompressed_size: Some(layer.size),
                            },
                        )
                    },
                )
            }
            // bzip2/xz layers are decompressed on the way: always read.
            _ => None,
        };
        if let Some((replacement, reused)) = found {
            plan.entries.insert(
                layer.path.clone(),
                ReusedEntry {
                    digest: layer.digest,
                    compression: layer.compression,
                    diff_id: layer.diff_id,
                    replacement,
                },
            );
            plan.reused.push(reused);
        }
    }
    plan
}

/// A reused blob whose pairing with a diff_id was learnt outside DEST's repository (an image of
/// another repository, or the local cache): it is read back before a manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconfirmed {
    pub diff_id: Digest,
    pub digest: Digest,
    pub compression: Compression,
    /// The repository the blob is read from.
    pub repository: String,
    pub origin: Origin,
    /// The layer's uncompressed size when known: decoding stops one byte past it.
    pub uncompressed_size: Option<u64>,
}

impl Unconfirmed {
    /// Whether a layer reused from `repository` by way of `origin` must be read back before a
    /// push to `dest_repository` names it.
    pub fn needed(origin: Origin, repository: &str, dest_repository: &str) -> bool {
        match origin {
            Origin::Cache => true,
            Origin::Registry => repository != dest_repository,
            // A blob the archive itself names by digest: content-addressed, nothing learnt.
            Origin::Archive => false,
        }
    }
}

/// A reused blob that is not what its pairing said.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error(
        "layer {diff_id}: blob {digest} in {repository}, named for it by {source_name}, {found}; nothing was tagged{cache_note}",
        source_name = describe(*origin),
        cache_note = if *origin == Origin::Cache { " (the cache entry is removed: run the push again)" } else { "" }
    )]
    Mismatch {
        diff_id: Digest,
        digest: Digest,
        repository: String,
        origin: Origin,
        /// What reading it back found.
        found: String,
    },
    #[error("cannot read back reused blob {digest} from {repository}: {source}")]
    Registry {
        digest: Digest,
        repository: String,
        source: Box<layerlift_registry::Error>,
    },
}

fn describe(origin: Origin) -> &'static str {
    match origin {
        Origin::Cache => "the local cache",
        Origin::Registry => "an image of that repository",
        Origin::Archive => "the archive",
    }
}

/// Read every blob of `blobs` back from the registry, `jobs` at a time, decompress it and check
/// it against its diff_id. The first mismatch (or read error), in `blobs`' order, is the answer.
pub fn confirm(client: &Client, blobs: &[Unconfirmed], jobs: usize) -> Result<(), ConfirmError> {
    in_parallel(blobs, jobs, |b| confirm_one(client, b))
        .into_iter()
        .collect()
}

fn confirm_one(client: &Client, b: &Unconfirmed) -> Result<(), ConfirmError> {
    let limit = b
        .uncompressed_size
        .map_or(u64::MAX, |n| n.saturating_add(1));
    let read = client.read_blob(&b.repository, &b.digest, |stored| {
        let decoded = layerlift_layers::DecodeReader::new(stored, b.compression)?;
        let mut hash = layerlift_manifest::Sha256Writer::new(std::io::sink());
        std::io::copy(&mut std::io::Read::take(decoded, limit), &mut hash)?;
        Ok(hash.finish())
    });
    let mismatch = |found: String| ConfirmError::Mismatch {
        diff_id: b.diff_id,
        digest: b.digest,
        repository: b.repository.clone(),
        origin: b.origin,
        found,
    };
    match read {
        Ok(Some((got, _, _))) if got == b.diff_id => Ok(()),
        Ok(Some((got, size, _))) if size >= limit => Err(mismatch(format!(
            "decompresses to more than the layer's {} bytes (sha256 of the first {size}: {got})",
            limit - 1
        ))),
        Ok(Some((got, _, _))) => Err(mismatch(format!("decompresses to {got}"))),
        Ok(None) => Err(mismatch("is not in the registry".into())),
        Err(layerlift_registry::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::InvalidData =>
        {
            Err(mismatch(format!(
                "does not decompress as {}",
                b.compression
            )))
        }
        Err(source) => Err(ConfirmError::Registry {
            digest: b.digest,
            repository: b.repository.clone(),
            source: Box::new(source),
        }),
    }
}

/// Add the layers of the image `repo:reference` to `known` (diff_id → blob).
fn learn(
    client: &Client,
    repo: &str,
    reference: &str,
    platforms: &[&str],
    known: &mut BTreeMap<Digest, Vec<Known>>,
) -> Result<(), String> {
    let what = format!("{}/{repo}:{reference}", client.registry());
    let what = what.replace(":sha256:", "@sha256:");
    let (media_type, bytes) = match client.get_manifest(repo, reference) {
        Ok(m) => m,
        Err(e) if absent(&e) => return Ok(()),
        Err(e) => return Err(format!("cannot read {what} to reuse its layers: {e}")),
    };
    let mut manifests = Vec::new();
    if media_types::is_index(&media_type) || looks_like_index(&bytes) {
        let index: Index = parse_json("image index", &bytes).map_err(|e| format!("{what}: {e}"))?;
        for child in index.manifests.iter().take(64) {
            let wanted = match &child.platform {
                Some(p) => {
                    platforms.is_empty()
                        || platforms
                            .iter()
                            .any(|w| platform_matches(&p.to_string(), w))
                }
                None => true,
            };
            if !wanted || !media_types::is_manifest(&child.media_type) {
                continue;
            }
            match client.get_manifest(repo, &child.digest.to_string()) {
                Ok((_, b)) if Digest::of(&b) == child.digest => manifests.push(b),
                Ok(_) => {
                    return Err(format!(
                        "{what}: manifest {} does not match its digest",
                        child.digest
                    ));
                }
                Err(e) => return Err(format!("cannot read {what} ({}): {e}", child.digest)),
            }
        }
    } else {
        manifests.push(bytes);
    }
    for bytes in manifests {
        let Ok(m) = parse_json::<Manifest>("image manifest", &bytes) else {
            continue;
        };
        let config = match client.get_small_blob(repo, &m.config.digest) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => return Err(format!("cannot read the config of {what}: {e}")),
        };
        let Ok(config) = parse_json::<ImageConfig>("image config", &config) else {
            continue;
        };
        if config.rootfs.diff_ids.len() != m.layers.len() {
            continue;
        }
        for (layer, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            known.entry(*diff_id).or_default().push(Known {
                descriptor: layer.clone(),
                repository: repo.to_string(),
            });
        }
    }
    Ok(())
}

fn looks_like_index(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| v.get("manifests").is_some())
}

/// A reference that does not exist (yet): nothing to reuse, no error. A registry with token auth
/// answers 401 for a repository that does not exist.
fn absent(e: &layerlift_registry::Error) -> bool {
    use layerlift_registry::Error as E;
    matches!(e, E::Status { status: 404, .. } | E::Unauthorized { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressions() {
        assert_eq!(
            layer_compression(media_types::OCI_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression(media_types::DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression(media_types::OCI_LAYER_ZSTD),
            Some(Compression::Zstd)
        );
        assert_eq!(
            layer_compression(media_types::OCI_LAYER),
            Some(Compression::None)
        );
        assert_eq!(layer_compression(media_types::OCI_CONFIG), None);
    }
}
