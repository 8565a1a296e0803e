//! Re-push without re-reading: before an archive SOURCE is read, find the layers the destination
//! already holds in the form this push would produce, so that they are named by the registry's
//! descriptor and never read, hashed or compressed.
//!
//! Where the answers come from, in order:
//! 1. **The registry remembers for us**: the manifest DEST's tag points at now (and each
//!    `--reuse-from` reference), followed through an index to the platforms the archive's images
//!    have, and its config: a layer whose diff_id appears there, stored with the compression this
//!    push would produce (any compression with `--reuse-any-compression`), is a candidate.
//! 2. **The local cache** ([`crate::cache`]): `diff_id, codec, level, encoder → digest`.
//!
//! (With a directory of archives, the layers earlier files of the run read and left in the
//! registry come in with the first kind, from [`Wanted::carried`]: pairs this process made.)
//! 3. A layer the archive stores compressed keeps its digest: it is a candidate as it is.
//!
//! A candidate is used only after a HEAD finds the blob in DEST's repository (or in the
//! `--reuse-from` repository it came from, which the push then mounts it from). The HEADs of all
//! candidates go out together, `--jobs` at a time, before the archive is read. Only archives that
//! can be walked without reading them (an uncompressed tar file, a directory) have a catalog; a pipe
//! or a compressed archive is read in full.
//!
//! What is trusted: an image DEST's own repository serves is trusted as DEST itself is (whoever
//! can write it can replace the pushed image anyway), so its diff_id → blob pairs are used unread,
//! as are the pairs carried from earlier pushes of the run (this process made them).
//! A pair learnt anywhere else — an image of a `--reuse-from` repository, or the local cache, which
//! any process that can write the cache directory can change — is [`confirm`]ed before a manifest
//! names it: the blob is read back from the registry, decompressed and hashed against the diff_id.
//! A blob that does not match fails the push (and its cache entry is removed).

use crate::cache::{Cache, Key};
use layerlift_archive::CatalogLayer;
use layerlift_archive::{Replacement, ReusedEntry};
use layerlift_layers::Compression;
use layerlift_manifest::convert::layer_compression_label;
use layerlift_manifest::{
    Descriptor, Digest, ImageConfig, Index, Manifest, media_types, parse_json, platform_matches,
};
use layerlift_registry::{Client, Error as RegistryError};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// The compression of a layer blob of this media type (`None`: not a layer media type we know).
fn layer_compression(media_type: &str) -> Option<Compression> {
    layer_compression_label(media_type).map(Compression::from)
}

/// What the registry has, as the reuse plan asks it: the [`Client`], or a table in tests.
pub(crate) trait RegistryView: Sync {
    /// The registry's name (`host[:port]`), for messages.
    fn registry(&self) -> &str;
    /// Whether `repo` holds the blob (a HEAD; a failed request counts as absent).
    fn has_blob(&self, repo: &str, digest: &Digest) -> bool;
    /// The manifest `repo:reference` (media type, bytes); `None` when it does not exist.
    fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>)>, RegistryError>;
    /// A small blob (a config); `None` when the repository does not hold it.
    fn small_blob(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<u8>>, RegistryError>;
    /// Whether the registry says that `repo` does not exist ([`Client::repository_unknown`]).
    fn repository_unknown(&self, repo: &str) -> bool;
}

impl RegistryView for Client {
    fn registry(&self) -> &str {
        Client::registry(self)
    }

    fn has_blob(&self, repo: &str, digest: &Digest) -> bool {
        self.blob_exists(repo, digest).unwrap_or(false)
    }

    fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<(String, Vec<u8>)>, RegistryError> {
        match self.get_manifest(repo, reference) {
            Ok(m) => Ok(Some(m)),
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn small_blob(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<u8>>, RegistryError> {
        self.get_small_blob(repo, digest)
    }

    fn repository_unknown(&self, repo: &str) -> bool {
        Client::repository_unknown(self, repo)
    }
}

/// Why an image named for reuse could not be looked at (the push goes on without its layers).
#[derive(Debug, thiserror::Error)]
pub enum ReuseNote {
    /// Its manifest cannot be read.
    #[error("cannot read {what} to reuse its layers: {error}")]
    Unreadable {
        /// `REGISTRY/REPOSITORY:TAG`.
        what: String,
        /// Why.
        error: RegistryError,
    },
    /// Its index is not valid.
    #[error("{what}: {error}")]
    Invalid {
        /// `REGISTRY/REPOSITORY:TAG`.
        what: String,
        /// Why.
        error: layerlift_manifest::ManifestError,
    },
    /// A manifest its index lists does not match its digest.
    #[error("{what}: manifest {child} does not match its digest")]
    ChildMismatch {
        /// `REGISTRY/REPOSITORY:TAG`.
        what: String,
        /// The manifest.
        child: Digest,
    },
    /// A manifest its index lists cannot be read.
    #[error("cannot read {what} ({child}): {}", error.as_ref().map_or("not found".to_string(), |e| e.to_string()))]
    ChildUnreadable {
        /// `REGISTRY/REPOSITORY:TAG`.
        what: String,
        /// The manifest.
        child: Digest,
        /// Why (`None`: the registry does not have it).
        error: Option<RegistryError>,
    },
    /// Its config cannot be read.
    #[error("cannot read the config of {what}: {error}")]
    Config {
        /// `REGISTRY/REPOSITORY:TAG`.
        what: String,
        /// Why.
        error: RegistryError,
    },
}

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
    /// The `source` of the `layer` event of a layer reused this way.
    pub fn layer_source(self) -> crate::event::LayerSource {
        use crate::event::LayerSource;
        match self {
            Origin::Registry => LayerSource::Registry,
            Origin::Cache => LayerSource::Cache,
            Origin::Archive => LayerSource::ArchiveMetadata,
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
    /// Layers an earlier push of this run read and left in the registry ([`crate::Holdings`]):
    /// (diff_id, the blob pushed for it, a repository holding it). Candidates like an image's
    /// layers, for the layers of an archive with a catalog.
    pub carried: Vec<(Digest, Descriptor, String)>,
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
pub struct ReusePlan {
    pub entries: BTreeMap<String, ReusedEntry>,
    pub reused: Vec<Reused>,
    /// For an archive without a catalog (a pipe): diff_id → the registry's blob, confirmed by
    /// HEAD, and the repository that holds it.
    pub by_diff_id: BTreeMap<Digest, HeldBlob>,
    /// Notes for stderr (a reference that could not be read, and why).
    pub notes: Vec<ReuseNote>,
    /// Blobs a HEAD found absent from DEST's repository while planning: their upload need not
    /// ask again.
    pub absent: BTreeSet<Digest>,
    /// The registry says that DEST's repository does not exist yet
    /// ([`Client::repository_unknown`]): none of the blobs it could hold were asked about (a
    /// HEAD each would only find them absent); their uploads ask with a mount from DEST's own
    /// repository instead, which also opens the upload (see `crate::upload`).
    pub new_repository: bool,
    /// A push under own names (`all`): the repositories it pushes to, each DEST's own as much as
    /// DEST's repository is (their images' diff_id → blob pairs are trusted the same way).
    pub own_repositories: BTreeSet<String>,
    /// The references looked at (repository, tag or digest) that the registry said it has no
    /// manifest for: a push under own names need not ask about them again.
    pub missing: BTreeSet<(String, String)>,
}

/// A blob of the registry that stands for a layer, and the repository that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBlob {
    pub blob: Replacement,
    pub repository: String,
}

impl ReusePlan {
    /// Whether a layer reused from `repository` by way of `origin` must be read back before a
    /// push to `dest_repository` names it ([`Unconfirmed::needed`], with
    /// [`ReusePlan::own_repositories`] as trusted as DEST's).
    pub(crate) fn needs_confirming(
        &self,
        origin: Origin,
        repository: &str,
        dest_repository: &str,
    ) -> bool {
        let own = origin == Origin::Registry && self.own_repositories.contains(repository);
        !own && Unconfirmed::needed(origin, repository, dest_repository)
    }

    /// Keep in each of `plans` (one per destination of one read) only what all of them reuse
    /// the same way: a layer can be left unread only when every destination has it, as the same
    /// blob. What a plan learnt for its own destination alone (blobs found absent, a new
    /// repository) stays.
    pub(crate) fn keep_common(plans: &mut [ReusePlan]) {
        let Some((first, rest)) = plans.split_first() else {
            return;
        };
        let blob = |e: &ReusedEntry| (e.digest, e.replacement.as_ref().map(|r| r.digest));
        let paths: BTreeSet<String> = first
            .entries
            .iter()
            .filter(|(path, e)| {
                rest.iter()
                    .all(|o| o.entries.get(*path).is_some_and(|f| blob(f) == blob(e)))
            })
            .map(|(path, _)| path.clone())
            .collect();
        let ids: BTreeSet<Digest> = first
            .by_diff_id
            .iter()
            .filter(|(id, held)| {
                rest.iter().all(|o| {
                    o.by_diff_id
                        .get(*id)
                        .is_some_and(|h| h.blob.digest == held.blob.digest)
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for plan in plans {
            plan.entries.retain(|path, _| paths.contains(path));
            plan.reused.retain(|r| paths.contains(&r.path));
            plan.by_diff_id.retain(|id, _| ids.contains(id));
        }
    }
}

/// A blob some repository of the registry holds for a diff_id.
#[derive(Debug, Clone)]
struct Known {
    descriptor: Descriptor,
    repository: String,
}

/// For an archive that cannot be walked ahead: every layer the registry's images (DEST's tags,
/// `--reuse-from`) have in the compression this push would produce, by diff_id, HEAD-confirmed,
/// and those [`carried_by_diff_id`] gives. The archive reader then only hashes a layer whose name
/// states one of these diff_ids.
pub(crate) fn plan_by_diff_id(client: &dyn RegistryView, wanted: &Wanted<'_>) -> ReusePlan {
    let mut plan = ReusePlan::default();
    let Some(want) = wanted.compression else {
        return plan;
    };
    let known = learn_all(client, wanted, &[], &mut plan);
    let mut candidates: Vec<(String, Digest)> = known
        .values()
        .flatten()
        .filter_map(|k| {
            wanted.accepts(&k.descriptor.media_type, want)?;
            Some((k.repository.clone(), k.descriptor.digest))
        })
        .collect();
    skip_new_repository(client, wanted, &known, &mut candidates, &mut plan);
    let present = heads(client, candidates.iter().cloned(), wanted.jobs);
    plan.absent = absent_from(wanted.repository, &candidates, &present);
    for (diff_id, ks) in known {
        let usable = ks.into_iter().find_map(|k| {
            let c = wanted.accepts(&k.descriptor.media_type, want)?;
            present
                .contains(&(k.repository.clone(), k.descriptor.digest))
                .then_some((k, c))
        });
        if let Some((k, c)) = usable {
            let blob = Replacement {
                digest: k.descriptor.digest,
                size: k.descriptor.size,
                compression: c,
            };
            plan.by_diff_id.insert(
                diff_id,
                HeldBlob {
                    blob,
                    repository: k.repository,
                },
            );
        }
    }
    for (diff_id, held) in carried_by_diff_id(wanted) {
        plan.by_diff_id.entry(diff_id).or_insert(held);
    }
    plan
}

/// The layers earlier pushes of the run left in the registry ([`Wanted::carried`]) in the
/// compression this push would produce, by diff_id, for an archive that cannot be walked ahead.
/// Not asked about: which of them the archive holds is known only as it is read, and the run
/// put them there.
pub(crate) fn carried_by_diff_id(wanted: &Wanted<'_>) -> BTreeMap<Digest, HeldBlob> {
    let Some(want) = wanted.compression else {
        return BTreeMap::new();
    };
    wanted
        .carried
        .iter()
        .filter_map(|(diff_id, descriptor, repository)| {
            let compression = wanted.accepts(&descriptor.media_type, want)?;
            let blob = Replacement {
                digest: descriptor.digest,
                size: descriptor.size,
                compression,
            };
            let repository = repository.clone();
            Some((*diff_id, HeldBlob { blob, repository }))
        })
        .collect()
}

/// When the registry says that DEST's repository does not exist, drop the candidates in it: a
/// HEAD each would only find them absent ([`ReusePlan::new_repository`]). Not asked when DEST's
/// tag already named an image (`known` holds layers of DEST's repository).
fn skip_new_repository(
    client: &dyn RegistryView,
    wanted: &Wanted<'_>,
    known: &BTreeMap<Digest, Vec<Known>>,
    candidates: &mut Vec<(String, Digest)>,
    plan: &mut ReusePlan,
) {
    let dest_exists = known
        .values()
        .flatten()
        .any(|k| k.repository == wanted.repository);
    if !dest_exists && client.repository_unknown(wanted.repository) {
        plan.new_repository = true;
        candidates.retain(|(repo, _)| repo != wanted.repository);
    }
}

/// Which of `blobs` (repository, digest) the registry has: one HEAD each, up to `jobs` at once,
/// so that a plan of many layers does not wait for them one after the other before the archive
/// is read. A HEAD that fails counts as absent (the layer is then read and uploaded as usual).
fn heads(
    client: &dyn RegistryView,
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
    let present = in_parallel(&todo, jobs, |(repo, digest)| client.has_blob(repo, digest));
    todo.into_iter()
        .zip(present)
        .filter_map(|(blob, present)| present.then_some(blob))
        .collect()
}

/// The blobs of `asked` in `repository` that are not in `present`.
fn absent_from(
    repository: &str,
    asked: &[(String, Digest)],
    present: &BTreeSet<(String, Digest)>,
) -> BTreeSet<Digest> {
    asked
        .iter()
        .filter(|b| b.0 == repository && !present.contains(b))
        .map(|b| b.1)
        .collect()
}

/// `f` of every item, `jobs` items at a time on a rayon pool (HEADs and reads of blobs, which
/// wait on the registry), in the items' order; one by one if no thread can be started.
fn in_parallel<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    match rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
    {
        Ok(pool) => pool.install(|| items.par_iter().map(&f).collect()),
        Err(_) => items.iter().map(f).collect(),
    }
}

/// Work out which of `layers` need not be read: learn what the registry's images hold
/// ([`learn`]), list every blob that could stand for a layer ([`candidates`]), ask the registry
/// about them all at once ([`heads`]), then pick each layer's stand-in ([`reuse_of`]).
pub(crate) fn plan(
    client: &dyn RegistryView,
    layers: &[CatalogLayer],
    wanted: &Wanted<'_>,
) -> ReusePlan {
    let mut plan = ReusePlan::default();
    let platforms: Vec<&str> = layers
        .iter()
        .filter_map(|l| l.platform.as_deref())
        .collect();
    let mut known = learn_all(client, wanted, &platforms, &mut plan);
    let diff_ids: BTreeSet<&Digest> = layers.iter().map(|l| &l.diff_id).collect();
    for (diff_id, descriptor, repository) in &wanted.carried {
        if diff_ids.contains(diff_id) {
            known.entry(*diff_id).or_default().push(Known {
                descriptor: descriptor.clone(),
                repository: repository.clone(),
            });
        }
    }
    let (mut candidates, cached) = candidates(layers, wanted, &known);
    skip_new_repository(client, wanted, &known, &mut candidates, &mut plan);
    let confirmed = heads(client, candidates.iter().cloned(), wanted.jobs);
    plan.absent = absent_from(wanted.repository, &candidates, &confirmed);
    let seen = Seen {
        known: &known,
        cached: &cached,
        confirmed: &confirmed,
    };
    for layer in layers {
        if plan.entries.contains_key(&layer.path) {
            continue;
        }
        if let Some((replacement, reused)) = reuse_of(layer, wanted, &seen) {
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

/// A layer's compressed blob as the local cache remembers it for its diff_id (not confirmed).
#[derive(Debug, Clone, Copy)]
struct CachedBlob {
    digest: Digest,
    size: u64,
}

/// Every blob (repository, digest) that could stand for one of `layers` — the layer itself, a
/// blob an image of the registry has for its diff_id, the one the cache remembers — and the
/// cache's blobs by diff_id.
fn candidates(
    layers: &[CatalogLayer],
    wanted: &Wanted<'_>,
    known: &BTreeMap<Digest, Vec<Known>>,
) -> (Vec<(String, Digest)>, BTreeMap<Digest, CachedBlob>) {
    let mut cached = BTreeMap::new();
    let mut candidates = Vec::new();
    for layer in layers {
        match (layer.compression, wanted.compression) {
            (Compression::None, None) | (Compression::Gzip | Compression::Zstd, _) => {
                candidates.push((wanted.repository.to_string(), layer.digest));
            }
            (Compression::None, Some(want)) => {
                // Each blob asked about once, in the first repository known to hold it (a base
                // layer of a bundle is in every image's repository).
                let mut asked = BTreeSet::new();
                for k in known.get(&layer.diff_id).into_iter().flatten() {
                    if wanted.accepts(&k.descriptor.media_type, want).is_some()
                        && asked.insert(k.descriptor.digest)
                    {
                        candidates.push((k.repository.clone(), k.descriptor.digest));
                    }
                }
                let hint = wanted
                    .cache
                    .and_then(|cache| cache.get(&Key::new(layer.diff_id, want, wanted.level)));
                if let Some((digest, size)) = hint {
                    cached.insert(layer.diff_id, CachedBlob { digest, size });
                    candidates.push((wanted.repository.to_string(), digest));
                }
            }
            _ => {}
        }
    }
    (candidates, cached)
}

/// What planning learnt: the registry's blobs by diff_id, the cache's, and which (repository,
/// digest) the registry confirmed.
struct Seen<'a> {
    known: &'a BTreeMap<Digest, Vec<Known>>,
    cached: &'a BTreeMap<Digest, CachedBlob>,
    confirmed: &'a BTreeSet<(String, Digest)>,
}

impl Seen<'_> {
    fn present(&self, repo: &str, d: &Digest) -> bool {
        self.confirmed.contains(&(repo.to_string(), *d))
    }
}

/// The blob that stands for `layer`, if the registry has one: the layer's own (stored
/// compressed, or pushed uncompressed), or for a layer this push would compress, a blob an image
/// of the registry has for its diff_id, else the one the cache remembers. With the replacement
/// the archive reader stages in its place (none when it is the layer's own bytes).
fn reuse_of(
    layer: &CatalogLayer,
    wanted: &Wanted<'_>,
    seen: &Seen<'_>,
) -> Option<(Option<Replacement>, Reused)> {
    match (layer.compression, wanted.compression) {
        // Stored compressed (pushed as it is), or pushed uncompressed: the digest is known.
        (Compression::None, None) | (Compression::Gzip | Compression::Zstd, _) => {
            seen.present(wanted.repository, &layer.digest).then(|| {
                let reused = Reused {
                    path: layer.path.clone(),
                    diff_id: layer.diff_id,
                    digest: layer.digest,
                    size: layer.size,
                    origin: Origin::Archive,
                    repository: wanted.repository.to_string(),
                    compression: layer.compression,
                    uncompressed_size: (layer.compression == Compression::None)
                        .then_some(layer.size),
                };
                (None, reused)
            })
        }
        (Compression::None, Some(want)) => {
            let from_registry = seen.known.get(&layer.diff_id).and_then(|ks| {
                ks.iter().find_map(|k| {
                    let c = wanted.accepts(&k.descriptor.media_type, want)?;
                    seen.present(&k.repository, &k.descriptor.digest).then(|| {
                        let blob = Replacement {
                            digest: k.descriptor.digest,
                            size: k.descriptor.size,
                            compression: c,
                        };
                        (blob, Origin::Registry, k.repository.clone())
                    })
                })
            });
            let from_cache = || {
                let cached = *seen.cached.get(&layer.diff_id)?;
                seen.present(wanted.repository, &cached.digest).then(|| {
                    let blob = Replacement {
                        digest: cached.digest,
                        size: cached.size,
                        compression: want,
                    };
                    (blob, Origin::Cache, wanted.repository.to_string())
                })
            };
            let (blob, origin, repository) = from_registry.or_else(from_cache)?;
            let reused = Reused {
                path: layer.path.clone(),
                diff_id: layer.diff_id,
                digest: blob.digest,
                size: blob.size,
                origin,
                repository,
                compression: blob.compression,
                uncompressed_size: Some(layer.size),
            };
            Some((Some(blob), reused))
        }
        // bzip2/xz layers are decompressed on the way: always read.
        _ => None,
    }
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
    /// The blob does not decompress to the diff_id.
    Mismatch {
        /// The layer.
        diff_id: Digest,
        /// The blob named for it.
        digest: Digest,
        /// The repository read from.
        repository: String,
        /// Where the pairing was learnt.
        origin: Origin,
        /// What reading it back found.
        found: String,
    },
    #[error("cannot read back reused blob {digest} from {repository}: {source}")]
    /// The blob cannot be read.
    Registry {
        /// The blob.
        digest: Digest,
        /// The repository read from.
        repository: String,
        /// Why.
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

/// The layers of the images of `wanted.references` (diff_id → blobs, in the references' order),
/// learnt `wanted.jobs` references at a time (a bulk push has one per image); what could not be
/// learnt goes to `plan`'s notes, the references without a manifest to its `missing`.
fn learn_all(
    client: &dyn RegistryView,
    wanted: &Wanted<'_>,
    platforms: &[&str],
    plan: &mut ReusePlan,
) -> BTreeMap<Digest, Vec<Known>> {
    let learnt = in_parallel(&wanted.references, wanted.jobs, |(repo, reference)| {
        let mut one = BTreeMap::new();
        learn(client, repo, reference, platforms, &mut one).map(|there| there.then_some(one))
    });
    let mut known: BTreeMap<Digest, Vec<Known>> = BTreeMap::new();
    for (result, reference) in learnt.into_iter().zip(&wanted.references) {
        match result {
            Ok(Some(one)) => {
                for (diff_id, ks) in one {
                    known.entry(diff_id).or_default().extend(ks);
                }
            }
            Ok(None) => {
                plan.missing.insert(reference.clone());
            }
            Err(note) => plan.notes.push(note),
        }
    }
    known
}

/// Add the layers of the image `repo:reference` to `known` (diff_id → blob); `false` when the
/// registry has no manifest there.
fn learn(
    client: &dyn RegistryView,
    repo: &str,
    reference: &str,
    platforms: &[&str],
    known: &mut BTreeMap<Digest, Vec<Known>>,
) -> Result<bool, ReuseNote> {
    let what = format!("{}/{repo}:{reference}", client.registry());
    let what = what.replace(":sha256:", "@sha256:");
    let (media_type, bytes) = match client.manifest(repo, reference) {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(false),
        Err(error) => return Err(ReuseNote::Unreadable { what, error }),
    };
    let manifests = if media_types::is_index(&media_type) || looks_like_index(&bytes) {
        platform_manifests(client, repo, &what, &bytes, platforms)?
    } else {
        vec![bytes]
    };
    for bytes in manifests {
        let Ok(m) = parse_json::<Manifest>("image manifest", &bytes) else {
            continue;
        };
        let config = match client.small_blob(repo, &m.config.digest) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(error) => return Err(ReuseNote::Config { what, error }),
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
    Ok(true)
}

/// The image manifests of the index `bytes` (named `what`) for `platforms` (all without).
fn platform_manifests(
    client: &dyn RegistryView,
    repo: &str,
    what: &str,
    bytes: &[u8],
    platforms: &[&str],
) -> Result<Vec<Vec<u8>>, ReuseNote> {
    let index: Index = parse_json("image index", bytes).map_err(|error| ReuseNote::Invalid {
        what: what.to_string(),
        error,
    })?;
    let mut manifests = Vec::new();
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
        let unreadable = |error| ReuseNote::ChildUnreadable {
            what: what.to_string(),
            child: child.digest,
            error,
        };
        match client.manifest(repo, &child.digest.to_string()) {
            Ok(Some((_, b))) if Digest::of(&b) == child.digest => manifests.push(b),
            Ok(Some(_)) => {
                return Err(ReuseNote::ChildMismatch {
                    what: what.to_string(),
                    child: child.digest,
                });
            }
            Ok(None) => return Err(unreadable(None)),
            Err(e) => return Err(unreadable(Some(e))),
        }
    }
    Ok(manifests)
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
    use std::sync::Mutex;

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

    /// What the registry has, as a table: manifests by (repository, reference), blobs by
    /// (repository, digest); the HEADs asked are recorded.
    #[derive(Default)]
    struct Table {
        manifests: BTreeMap<(String, String), (String, Vec<u8>)>,
        blobs: BTreeMap<(String, Digest), Vec<u8>>,
        heads: Mutex<Vec<(String, Digest)>>,
        /// The repositories whose tags list was asked for.
        tags_lists: Mutex<Vec<String>>,
    }

    impl RegistryView for Table {
        fn registry(&self) -> &str {
            "registry.test"
        }
        fn has_blob(&self, repo: &str, digest: &Digest) -> bool {
            self.heads.lock().unwrap().push((repo.to_string(), *digest));
            self.blobs.contains_key(&(repo.to_string(), *digest))
        }
        fn manifest(
            &self,
            repo: &str,
            reference: &str,
        ) -> Result<Option<(String, Vec<u8>)>, RegistryError> {
            Ok(self
                .manifests
                .get(&(repo.to_string(), reference.to_string()))
                .cloned())
        }
        fn small_blob(
            &self,
            repo: &str,
            digest: &Digest,
        ) -> Result<Option<Vec<u8>>, RegistryError> {
            Ok(self.blobs.get(&(repo.to_string(), *digest)).cloned())
        }
        /// As distribution: a repository without a tag is unknown, whatever blobs it holds.
        fn repository_unknown(&self, repo: &str) -> bool {
            self.tags_lists.lock().unwrap().push(repo.to_string());
            !self.manifests.keys().any(|(r, _)| r == repo)
        }
    }

    impl Table {
        /// Give `repo` a tag (of an image that does not matter here), so that it exists.
        fn tag_something(&mut self, repo: &str) {
            self.manifests.insert(
                (repo.to_string(), "other".to_string()),
                (media_types::OCI_MANIFEST.to_string(), b"{}".to_vec()),
            );
        }

        /// Store an image tagged `repo:tag` whose layers are `(diff_id, blob bytes, media type)`;
        /// the blobs are stored too when `with_blobs`.
        fn image(
            &mut self,
            repo: &str,
            tag: &str,
            layers: &[(Digest, &[u8], &str)],
            with_blobs: bool,
        ) {
            let config = serde_json::to_vec(&serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.0.to_string()).collect::<Vec<_>>()},
            }))
            .unwrap();
            let config_digest = Digest::of(&config);
            let manifest = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_types::OCI_MANIFEST,
                "config": {"mediaType": media_types::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
                "layers": layers.iter().map(|(_, bytes, media_type)| serde_json::json!({
                    "mediaType": media_type, "digest": Digest::of(bytes).to_string(), "size": bytes.len(),
                })).collect::<Vec<_>>(),
            }))
            .unwrap();
            self.blobs.insert((repo.to_string(), config_digest), config);
            if with_blobs {
                for (_, bytes, _) in layers {
                    self.blobs
                        .insert((repo.to_string(), Digest::of(bytes)), bytes.to_vec());
                }
            }
            self.manifests.insert(
                (repo.to_string(), tag.to_string()),
                (media_types::OCI_MANIFEST.to_string(), manifest),
            );
        }
    }

    fn wanted<'a>(references: &[(&str, &str)], cache: Option<&'a Cache>) -> Wanted<'a> {
        Wanted {
            repository: "app",
            references: references
                .iter()
                .map(|(r, t)| (r.to_string(), t.to_string()))
                .collect(),
            compression: Some(Compression::Gzip),
            level: 4,
            any_compression: false,
            cache,
            jobs: 3,
            carried: Vec::new(),
        }
    }

    /// An uncompressed layer of the archive, `n` bytes, with this diff_id.
    fn tar_layer(path: &str, diff_id: Digest, n: u64) -> CatalogLayer {
        CatalogLayer {
            path: path.to_string(),
            compression: Compression::None,
            digest: diff_id,
            size: n,
            diff_id,
            platform: Some("linux/amd64".into()),
        }
    }

    #[test]
    fn a_layer_dest_serves_in_the_wanted_compression_is_not_read() {
        let (a, b) = (Digest::of(b"layer a"), Digest::of(b"layer b"));
        let mut registry = Table::default();
        registry.image(
            "app",
            "1",
            &[(a, b"gzip of a", media_types::OCI_LAYER_GZIP)],
            true,
        );
        let layers = [
            tar_layer("a/layer.tar", a, 100),
            tar_layer("b/layer.tar", b, 200),
        ];
        let plan = plan(&registry, &layers, &wanted(&[("app", "1")], None));
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
        assert_eq!(plan.reused.len(), 1);
        let r = &plan.reused[0];
        assert_eq!((r.path.as_str(), r.diff_id), ("a/layer.tar", a));
        assert_eq!(r.digest, Digest::of(b"gzip of a"));
        assert_eq!((r.origin, r.repository.as_str()), (Origin::Registry, "app"));
        assert_eq!(r.uncompressed_size, Some(100));
        let entry = &plan.entries["a/layer.tar"];
        assert_eq!(
            entry.replacement,
            Some(Replacement {
                digest: Digest::of(b"gzip of a"),
                size: 9,
                compression: Compression::Gzip
            })
        );
        assert!(!plan.entries.contains_key("b/layer.tar"));
        // DEST's own image is trusted as DEST is: nothing to read back.
        assert!(!Unconfirmed::needed(r.origin, &r.repository, "app"));
        // DEST's tag named an image: the repository exists, its tags list is not asked for.
        assert!(registry.tags_lists.lock().unwrap().is_empty());
        assert!(!plan.new_repository);
    }

    #[test]
    fn a_layer_is_reused_only_when_a_head_finds_its_blob() {
        let a = Digest::of(b"layer a");
        let mut registry = Table::default();
        registry.image(
            "app",
            "1",
            &[(a, b"gzip of a", media_types::OCI_LAYER_GZIP)],
            false,
        );
        let plan = plan(
            &registry,
            &[tar_layer("a", a, 1)],
            &wanted(&[("app", "1")], None),
        );
        assert!(plan.reused.is_empty());
        assert!(plan.entries.is_empty());
        let heads = registry.heads.lock().unwrap();
        assert_eq!(*heads, vec![("app".to_string(), Digest::of(b"gzip of a"))]);
    }

    #[test]
    fn another_compression_is_reused_only_when_any_compression_is_accepted() {
        let a = Digest::of(b"layer a");
        let mut registry = Table::default();
        registry.image(
            "app",
            "1",
            &[(a, b"zstd of a", media_types::OCI_LAYER_ZSTD)],
            true,
        );
        let layers = [tar_layer("a", a, 1)];
        let mut want = wanted(&[("app", "1")], None);
        assert!(plan(&registry, &layers, &want).reused.is_empty());
        want.any_compression = true;
        let p = plan(&registry, &layers, &want);
        assert_eq!(p.reused.len(), 1);
        assert_eq!(p.reused[0].compression, Compression::Zstd);
    }

    #[test]
    fn layers_of_another_repository_are_mounted_and_read_back() {
        let a = Digest::of(b"layer a");
        let mut registry = Table::default();
        registry.image(
            "base",
            "3",
            &[(a, b"gzip of a", media_types::OCI_LAYER_GZIP)],
            true,
        );
        // DEST's tag does not exist yet: no note, nothing learnt from it.
        let p = plan(
            &registry,
            &[tar_layer("a", a, 1)],
            &wanted(&[("app", "latest"), ("base", "3")], None),
        );
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        assert_eq!(p.reused.len(), 1);
        assert_eq!(p.reused[0].repository, "base");
        assert!(Unconfirmed::needed(Origin::Registry, "base", "app"));
    }

    /// A layer whose gzip (level 4) a cache in `dir` names, and a registry whose `app` holds that
    /// blob but no tag (give it one with [`Table::tag_something`]): the layer's diff_id, the
    /// blob's digest, the cache, the registry.
    fn cached_and_stored(dir: &std::path::Path) -> (Digest, Digest, Cache, Table) {
        let a = Digest::of(b"layer a");
        let blob = Digest::of(b"cached gzip of a");
        let cache = Cache::new(dir);
        cache.put(&Key::new(a, Compression::Gzip, 4), blob, 16);
        let mut registry = Table::default();
        registry
            .blobs
            .insert(("app".into(), blob), b"cached gzip of a".to_vec());
        (a, blob, cache, registry)
    }

    #[test]
    fn the_cache_names_a_blob_dest_holds_and_it_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, blob, cache, mut registry) = cached_and_stored(dir.path());
        registry.tag_something("app");
        let p = plan(
            &registry,
            &[tar_layer("a", a, 1)],
            &wanted(&[], Some(&cache)),
        );
        assert_eq!(p.reused.len(), 1);
        assert_eq!(
            (p.reused[0].origin, p.reused[0].digest),
            (Origin::Cache, blob)
        );
        assert!(Unconfirmed::needed(Origin::Cache, "app", "app"));
        assert!(p.absent.is_empty());
        // A cached blob DEST lacks is known absent: its upload need not ask again.
        let b = Digest::of(b"layer b");
        let b_blob = Digest::of(b"cached gzip of b");
        cache.put(&Key::new(b, Compression::Gzip, 4), b_blob, 16);
        let p = plan(
            &registry,
            &[tar_layer("a", a, 1), tar_layer("b", b, 2)],
            &wanted(&[], Some(&cache)),
        );
        assert_eq!(p.reused.len(), 1);
        assert_eq!(p.absent.into_iter().collect::<Vec<_>>(), [b_blob]);
        // Another level is another key: no hint.
        let mut other = wanted(&[], Some(&cache));
        other.level = 9;
        assert!(
            plan(&registry, &[tar_layer("a", a, 1)], &other)
                .reused
                .is_empty()
        );
    }

    #[test]
    fn in_a_repository_the_registry_does_not_know_no_blob_is_asked_about() {
        // Blobs of a push that stopped before its manifest: the repository has no tag.
        let dir = tempfile::tempdir().unwrap();
        let (a, _, cache, mut registry) = cached_and_stored(dir.path());
        let p = plan(
            &registry,
            &[tar_layer("a", a, 1)],
            &wanted(&[], Some(&cache)),
        );
        assert!(p.new_repository);
        assert_eq!(*registry.tags_lists.lock().unwrap(), ["app"]);
        assert!(registry.heads.lock().unwrap().is_empty());
        // Read again, and not known absent: the upload asks (and finds it).
        assert!(p.reused.is_empty());
        assert!(p.absent.is_empty());
        // Once the repository has a tag, the cached blob is asked about and reused unread.
        registry.tag_something("app");
        let p = plan(
            &registry,
            &[tar_layer("a", a, 1)],
            &wanted(&[], Some(&cache)),
        );
        assert!(!p.new_repository);
        assert_eq!(p.reused.len(), 1);
        assert_eq!(registry.heads.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_compressed_layer_dest_holds_keeps_its_digest() {
        let mut registry = Table::default();
        registry.tag_something("app");
        let stored = Digest::of(b"gzip bytes");
        registry
            .blobs
            .insert(("app".into(), stored), b"gzip bytes".to_vec());
        let layer = CatalogLayer {
            compression: Compression::Gzip,
            digest: stored,
            ..tar_layer("a.tar.gz", Digest::of(b"layer"), 10)
        };
        let p = plan(&registry, &[layer], &wanted(&[], None));
        assert_eq!(p.reused.len(), 1);
        assert_eq!(p.reused[0].origin, Origin::Archive);
        assert_eq!(p.entries["a.tar.gz"].replacement, None);
        assert!(!Unconfirmed::needed(Origin::Archive, "app", "app"));
    }

    #[test]
    fn without_a_catalog_the_layers_are_known_by_diff_id() {
        let (a, b) = (Digest::of(b"layer a"), Digest::of(b"layer b"));
        let mut registry = Table::default();
        registry.image(
            "app",
            "1",
            &[
                (a, b"gzip of a", media_types::OCI_LAYER_GZIP),
                (b, b"zstd of b", media_types::OCI_LAYER_ZSTD),
            ],
            true,
        );
        let p = plan_by_diff_id(&registry, &wanted(&[("app", "1")], None));
        assert_eq!(p.by_diff_id.len(), 1);
        assert_eq!(
            p.by_diff_id[&a],
            HeldBlob {
                blob: Replacement {
                    digest: Digest::of(b"gzip of a"),
                    size: 9,
                    compression: Compression::Gzip
                },
                repository: "app".to_string()
            }
        );
    }

    #[test]
    fn a_manifest_that_does_not_match_its_digest_is_a_note() {
        let a = Digest::of(b"layer a");
        let mut registry = Table::default();
        registry.image(
            "app",
            "child",
            &[(a, b"gzip of a", media_types::OCI_LAYER_GZIP)],
            true,
        );
        let (_, child) = registry.manifests[&("app".to_string(), "child".to_string())].clone();
        let wrong = Digest::of(b"not the child");
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media_types::OCI_INDEX,
            "manifests": [{"mediaType": media_types::OCI_MANIFEST, "digest": wrong.to_string(), "size": child.len()}],
        }))
        .unwrap();
        registry.manifests.insert(
            ("app".into(), wrong.to_string()),
            (media_types::OCI_MANIFEST.into(), child),
        );
        registry.manifests.insert(
            ("app".into(), "1".into()),
            (media_types::OCI_INDEX.into(), index),
        );
        let p = plan(
            &registry,
            &[tar_layer("a", a, 1)],
            &wanted(&[("app", "1")], None),
        );
        assert!(p.reused.is_empty());
        assert_eq!(p.notes.len(), 1);
        assert_eq!(
            p.notes[0].to_string(),
            format!("registry.test/app:1: manifest {wrong} does not match its digest")
        );
    }
}
