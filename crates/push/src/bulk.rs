//! The per-image side of a push under own names (`all`, a bundle of many images): while the
//! archive is read, each layer goes up to the first repository whose image has it ([`Owners`],
//! [`Early`]); then a repository whose tags already point at its images is not pushed again, each
//! image's outcome is an [`Event::Image`], and a repository that fails fails only its own images
//! ([`FailedImage`]); the others go on.

use crate::event::{Event, FailedImage, ImageStatus, Observer, Progress, Pushed};
use crate::names::{LeftOutKind, Naming, Placement, PlannedImage, display_chain, place};
use crate::plan::{Blob, PushPlan, RepoPlan};
use crate::upload::{Known, Uploader};
use layerlift_archive::{Contents, Layer, LayerReceiver};
use layerlift_layers::Compression;
use layerlift_manifest::Digest;
use layerlift_registry::{Client, Reference};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{Scope, ScopedJoinHandle};

/// The images of `plan` left out (no name and no rule, an invalid name, or unmapped with
/// `only_mapped`): one event each; the failures among them.
pub(crate) fn left_out(observer: &dyn Observer, plan: &PushPlan) -> Vec<FailedImage> {
    let mut failed = Vec::new();
    for image in &plan.images {
        let Placement::LeftOut(out) = &image.placement else {
            continue;
        };
        let status = match out.kind {
            LeftOutKind::Unmapped => ImageStatus::Skipped,
            LeftOutKind::Unnamed | LeftOutKind::Invalid => ImageStatus::Failed,
        };
        observer.event(&Event::Image {
            name: image.name.clone(),
            digest: image.digest,
            reference: None,
            status,
            rule: None,
            error: Some(out.reason.clone()),
        });
        if status == ImageStatus::Failed {
            failed.push(FailedImage {
                name: image.name.clone(),
                digest: image.digest,
                reference: None,
                error: out.reason.clone(),
            });
        }
    }
    failed
}

/// Whether every tag of `repo` already points at its image and every image it pushes by digest
/// only is there (and it has no referrers to push): then nothing of it is sent again. One HEAD
/// each; a failed request counts as "not there". A tag in `missing` (the reuse plan found no
/// manifest there before the read) is not asked about again.
pub(crate) fn already_there(
    client: &Client,
    repo: &RepoPlan,
    missing: &BTreeSet<(String, String)>,
) -> bool {
    let at = |reference: &str, digest: Digest| {
        client
            .manifest_digest(&repo.repository, reference)
            .is_ok_and(|d| d == Some(digest))
    };
    let known_missing = repo
        .tags
        .iter()
        .any(|t| missing.contains(&(repo.repository.clone(), t.tag.clone())));
    !known_missing
        && (!repo.tags.is_empty() || !repo.untagged.is_empty())
        && repo.referrers.is_empty()
        && repo.tags.iter().all(|t| at(&t.tag, t.digest))
        && repo.untagged.iter().all(|d| at(&d.to_string(), *d))
}

/// The images of a repository found [`already_there`]: a `tag` event per tag (as a push reads its
/// tags back) and an `untagged` one per image by digest, and what the report lists.
pub(crate) fn present_tags(
    observer: &dyn Observer,
    registry: &str,
    repo: &RepoPlan,
    dry_run: bool,
) -> Vec<Pushed> {
    let mut there = Vec::new();
    for t in &repo.tags {
        let reference = format!("{registry}/{}:{}", repo.repository, t.tag);
        observer.event(&Event::Tag {
            reference: reference.clone(),
            digest: t.digest,
            dry_run: dry_run.then_some(true),
        });
        there.push(Pushed {
            reference,
            digest: t.digest,
        });
    }
    for d in &repo.untagged {
        let reference = format!("{registry}/{}@{d}", repo.repository);
        if !dry_run {
            observer.event(&Event::Untagged {
                reference: reference.clone(),
                digest: *d,
            });
        }
        there.push(Pushed {
            reference,
            digest: *d,
        });
    }
    there
}

/// Where `image` went in `repo` (`None`: not this repository).
fn reference_in(registry: &str, repo: &RepoPlan, image: &PlannedImage) -> Option<String> {
    match &image.placement {
        Placement::Tagged {
            repository, tag, ..
        } if *repository == repo.repository => Some(format!("{registry}/{repository}:{tag}")),
        Placement::Untagged { repository } if *repository == repo.repository => {
            Some(format!("{registry}/{repository}@{}", image.digest))
        }
        _ => None,
    }
}

/// One event per image of `repo` once it is done: `present` (found [`already_there`]), pushed
/// (or would be, on a dry run), or failed with `error`; the failed ones.
pub(crate) fn repository_done(
    observer: &dyn Observer,
    registry: &str,
    plan: &PushPlan,
    repo: &RepoPlan,
    present: bool,
    dry_run: bool,
    error: Option<&dyn std::error::Error>,
) -> Vec<FailedImage> {
    let mut failed = Vec::new();
    for image in &plan.images {
        let Some(reference) = reference_in(registry, repo, image) else {
            continue;
        };
        let rule = match &image.placement {
            Placement::Tagged { rule, .. } => rule.clone(),
            _ => None,
        };
        let (status, error) = match error {
            Some(e) => (ImageStatus::Failed, Some(display_chain(e))),
            None if present => (ImageStatus::Present, None),
            None if dry_run => (ImageStatus::WouldPush, None),
            None => (ImageStatus::Pushed, None),
        };
        observer.event(&Event::Image {
            name: image.name.clone(),
            digest: image.digest,
            reference: Some(reference.clone()),
            status,
            rule,
            error: error.clone(),
        });
        if let Some(error) = error {
            failed.push(FailedImage {
                name: image.name.clone(),
                digest: image.digest,
                reference: Some(reference),
                error,
            });
        }
    }
    failed
}

/// Which repository of a push under own names uploads each layer while the archive is still
/// being read: that of the first image of the archive's metadata that has the layer and a name
/// placed in a repository (by the rules, or its own). Known before the read only when the
/// metadata can be read first (an archive file or directory, [`layerlift_archive::read_catalog`])
/// and lists its images (`manifest.json`); otherwise there are none, and nothing goes up before
/// the read is over.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    /// By archive entry (a layer compressed on the way: its digest is known at its end).
    by_entry: BTreeMap<String, String>,
    /// By digest (a layer stored compressed: its digest is the metadata's).
    by_digest: BTreeMap<Digest, String>,
}

impl Owners {
    /// The owners of `contents`' layers under DEST.
    pub(crate) fn new(contents: &Contents, dest: &Reference, naming: Naming<'_>) -> Owners {
        let mut owners = Owners::default();
        for item in &contents.items {
            let placed = item
                .names
                .iter()
                .find_map(|n| match place(dest, Some(n), &[], naming) {
                    Placement::Tagged { repository, .. } => Some(repository),
                    _ => None,
                });
            let Some(repository) = placed else {
                continue;
            };
            for layer in contents.layers.get(item.layers.clone()).unwrap_or_default() {
                owners
                    .by_entry
                    .entry(layer.path.clone())
                    .or_insert_with(|| repository.clone());
                if layer.compression != Compression::None {
                    owners
                        .by_digest
                        .entry(layer.digest)
                        .or_insert_with(|| repository.clone());
                }
            }
        }
        owners
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_entry.is_empty()
    }

    /// The repositories that upload a layer.
    pub(crate) fn repositories(&self) -> BTreeSet<&str> {
        self.by_entry.values().map(String::as_str).collect()
    }

    /// The repository `layer` goes up to, if one has it (a streamed layer, once published, is
    /// its stream's already).
    fn of(&self, layer: &Layer) -> Option<&String> {
        match layer {
            Layer::Ready(b) if b.streamed => None,
            Layer::Ready(b) => self
                .by_entry
                .get(&b.entry)
                .or_else(|| self.by_digest.get(&b.digest)),
            Layer::Streaming(g) => self.by_entry.get(g.entry()),
        }
    }
}

/// The uploads of a push under own names while its archive is read: a thread takes each layer
/// the reader hands over to its [`Owners`] repository's queue, `jobs` workers push them (a layer
/// being compressed streamed as it grows, [`Uploader::push_stream`]; one in a file as
/// [`Uploader::push_blob`] does: HEAD, mount, upload). Best effort: a layer whose upload fails
/// here, or that has no owner, is pushed after the read like the rest of the plan, whose failures
/// are the ones reported.
pub(crate) struct Early<'scope> {
    queue: Arc<EarlyQueue>,
    threads: Vec<ScopedJoinHandle<'scope, ()>>,
}

#[derive(Default)]
struct EarlyQueue {
    state: Mutex<EarlyState>,
    changed: Condvar,
}

#[derive(Default)]
struct EarlyState {
    jobs: VecDeque<(String, Layer)>,
    /// Nothing more comes (the read is over, or the push gave up on it).
    closed: bool,
    /// Each blob uploaded (or found there), and the repository that holds it.
    held: BTreeMap<Digest, String>,
}

impl EarlyQueue {
    fn lock(&self) -> MutexGuard<'_, EarlyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next(&self) -> Option<(String, Layer)> {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                return Some(job);
            }
            if st.closed {
                return None;
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

/// Closes the queue when the feeding thread ends, however it ends.
struct CloseOnDrop(Arc<EarlyQueue>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl<'scope> Early<'scope> {
    /// Start the feeding thread on `layers` and `jobs` workers on `scope` (their progress
    /// under `label`). The layers the registry holds already (`known`) were left unread; what
    /// `known` says spares the workers requests. A thread that cannot be started is the error.
    pub(crate) fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        uploader: &'env Uploader<'env>,
        label: &str,
        owners: Owners,
        known: Known,
        jobs: usize,
        layers: LayerReceiver,
    ) -> Result<Early<'scope>, std::io::Error> {
        uploader.observer.progress(&Progress::Started {
            repository: label.to_string(),
        });
        let queue = Arc::new(EarlyQueue::default());
        let mut early = Early {
            queue: Arc::clone(&queue),
            threads: Vec::new(),
        };
        let known = Arc::new(known);
        for n in 0..jobs.max(1) {
            let (mine, known) = (Arc::clone(&queue), Arc::clone(&known));
            let worker = std::thread::Builder::new()
                .name(format!("bulk-upload-{n}"))
                .spawn_scoped(scope, move || {
                    while let Some((repository, layer)) = mine.next() {
                        let done = match layer {
                            Layer::Streaming(growing) => {
                                uploader.push_stream(&repository, growing, &known)
                            }
                            Layer::Ready(b) => {
                                let blob = Blob {
                                    digest: b.digest,
                                    size: b.size,
                                    non_distributable: false,
                                };
                                uploader
                                    .push_blob(&repository, &blob, b.path, &known)
                                    .map(|o| Some((b.digest, o)))
                            }
                        };
                        if let Ok(Some((digest, outcome))) = done
                            && outcome.holds()
                        {
                            mine.lock().held.insert(digest, repository);
                        }
                    }
                });
            match worker {
                Ok(w) => early.threads.push(w),
                Err(e) => {
                    queue.close();
                    return Err(e);
                }
            }
        }
        let closer = CloseOnDrop(Arc::clone(&queue));
        let feeder = std::thread::Builder::new()
            .name("bulk-upload-feed".into())
            .spawn_scoped(scope, move || {
                while let Some(layer) = layers.recv() {
                    if let Some(repository) = owners.of(&layer) {
                        closer.0.lock().jobs.push_back((repository.clone(), layer));
                        closer.0.changed.notify_one();
                    }
                }
            });
        match feeder {
            Ok(f) => early.threads.push(f),
            Err(e) => {
                queue.close();
                return Err(e);
            }
        }
        Ok(early)
    }

    /// Wait for every layer handed over to be pushed (the read is over: every sender dropped),
    /// and add the blobs the registry now holds to `known`'s holders: each repository of the plan
    /// mounts them from there. Their own repository's pass leaves them out (`known.reported`):
    /// their `blob` event was sent here.
    pub(crate) fn add_holders(mut self, known: &mut Known) {
        for t in self.threads.drain(..) {
            // A worker that panicked took its layer with it: pushed after the read.
            let _ = t.join();
        }
        for (digest, repository) in std::mem::take(&mut self.queue.lock().held) {
            known.holders.entry(digest).or_insert(repository.clone());
            known.reported.insert(digest, repository);
        }
    }
}

impl Drop for Early<'_> {
    /// Not finished (the read failed): what is queued is dropped; uploads in flight end (the
    /// threads are the scope's).
    fn drop(&mut self) {
        let mut st = self.queue.lock();
        st.jobs.clear();
        st.closed = true;
        drop(st);
        self.queue.changed.notify_all();
    }
}

/// Which repository of a push under own names uploads each blob, when repositories are pushed
/// several at a time: the first to claim a blob uploads it; a later one waits until the claimer is
/// done and mounts it. When the claimer failed without it, the blob passes to the earliest later
/// claim that needs it, which uploads it while the others wait again. A repository waits only for
/// claims made before its own, so no two wait for each other.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    state: Mutex<ClaimState>,
    finished: Condvar,
}

#[derive(Debug, Default)]
struct ClaimState {
    /// Claims made so far.
    count: usize,
    /// Each blob claimed, and the claim that uploads it.
    owner: BTreeMap<Digest, usize>,
    /// Each blob, and every claim that needs it.
    needs: BTreeMap<Digest, BTreeSet<usize>>,
    /// Claims whose repository is done.
    done: BTreeSet<usize>,
}

impl Claims {
    fn state(&self) -> MutexGuard<'_, ClaimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claim the unclaimed ones of `blobs`; the claim's position (its order among claims).
    pub(crate) fn claim(&self, blobs: &[Blob]) -> usize {
        let mut st = self.state();
        let position = st.count;
        st.count += 1;
        for b in blobs {
            st.owner.entry(b.digest).or_insert(position);
            st.needs.entry(b.digest).or_default().insert(position);
        }
        position
    }

    /// Wait until every earlier claim holding one of `blobs` is done.
    pub(crate) fn wait_before(&self, position: usize, blobs: &[Blob]) {
        let mut st = self.state();
        loop {
            let waiting = blobs.iter().any(|b| {
                st.owner
                    .get(&b.digest)
                    .is_some_and(|o| *o < position && !st.done.contains(o))
            });
            if !waiting {
                return;
            }
            st = self.finished.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The claim at `position` is done (its repository pushed, or failed); `held` says which
    /// blobs the registry now has (the blobs it owned and failed to get there pass on).
    pub(crate) fn finish(&self, position: usize, held: impl Fn(&Digest) -> bool) {
        let mut st = self.state();
        st.done.insert(position);
        let orphans: Vec<Digest> = st
            .owner
            .iter()
            .filter(|(d, o)| **o == position && !held(d))
            .map(|(d, _)| *d)
            .collect();
        for d in orphans {
            let next = st.needs.get(&d).and_then(|n| {
                n.iter()
                    .copied()
                    .find(|p| *p > position && !st.done.contains(p))
            });
            match next {
                Some(p) => st.owner.insert(d, p),
                None => st.owner.remove(&d),
            };
        }
        drop(st);
        self.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(seed: &[u8]) -> Blob {
        Blob {
            digest: Digest::of(seed),
            size: 1,
            non_distributable: false,
        }
    }

    /// Each layer goes to the first image that has it and a name placed in a repository; a
    /// compressed entry is known by its digest too; a layer no named image has goes nowhere.
    #[test]
    fn each_layer_is_owned_by_the_first_named_image_that_has_it() {
        use layerlift_archive::{CatalogItem, CatalogLayer, PublishedBlob};
        let layer = |path: &str, compression| CatalogLayer {
            path: path.into(),
            compression,
            digest: Digest::of(path.as_bytes()),
            size: 1,
            diff_id: Digest::of(path.as_bytes()),
            platform: None,
        };
        let contents = Contents {
            layers: vec![
                layer("base.tar", Compression::None),
                layer("a.tar.gz", Compression::Gzip),
                layer("base.tar", Compression::None),
                layer("b.tar", Compression::None),
                layer("c.tar", Compression::None),
            ],
            images: 3,
            names: vec!["bulk/a:1".into(), "bulk/b:1".into()],
            items: vec![
                CatalogItem {
                    names: vec!["bulk/a:1".into()],
                    layers: 0..2,
                },
                CatalogItem {
                    names: vec!["bulk/b:1".into()],
                    layers: 2..4,
                },
                CatalogItem {
                    names: vec![],
                    layers: 4..5,
                },
            ],
        };
        let dest = Reference::parse("reg.local/mirror").unwrap();
        let naming = Naming {
            rules: &[],
            only_mapped: false,
        };
        let owners = Owners::new(&contents, &dest, naming);
        let ready = |entry: &str, digest: Digest| {
            Layer::Ready(PublishedBlob {
                streamed: false,
                digest,
                size: 1,
                path: "blob".into(),
                entry: entry.into(),
            })
        };
        let of = |l: Layer| owners.of(&l).cloned();
        let (a, b) = (
            Some("mirror/bulk/a".to_string()),
            Some("mirror/bulk/b".to_string()),
        );
        assert_eq!(of(ready("base.tar", Digest::of(b"x"))), a);
        assert_eq!(of(ready("b.tar", Digest::of(b"y"))), b);
        assert_eq!(of(ready("", Digest::of(b"a.tar.gz"))), a, "by digest");
        assert_eq!(of(ready("c.tar", Digest::of(b"z"))), None, "unnamed");
        assert_eq!(owners.repositories().len(), 2);
    }

    #[test]
    fn later_claims_wait_for_earlier_owners_only() {
        let claims = std::sync::Arc::new(Claims::default());
        let (base, a, b) = (blob(b"base"), blob(b"a"), blob(b"b"));
        let first = claims.claim(&[base.clone(), a.clone()]);
        let second = claims.claim(&[base.clone(), b.clone()]);
        // The first owns everything it needs: no wait.
        claims.wait_before(first, &[base.clone(), a]);
        let waiter = {
            let claims = claims.clone();
            std::thread::spawn(move || claims.wait_before(second, &[base, b]))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "the second waits for the base's owner"
        );
        claims.finish(first, |_| true);
        waiter.join().unwrap();
    }

    #[test]
    fn a_blob_whose_owner_failed_passes_to_the_next_claim() {
        let claims = std::sync::Arc::new(Claims::default());
        let base = blob(b"base");
        let positions: Vec<usize> = (0..3)
            .map(|_| claims.claim(std::slice::from_ref(&base)))
            .collect();
        let waiters: Vec<_> = positions[1..]
            .iter()
            .map(|p| {
                let (claims, base, p) = (claims.clone(), base.clone(), *p);
                std::thread::spawn(move || claims.wait_before(p, &[base]))
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        // The owner failed: the base passes to the second, the third waits for it.
        claims.finish(positions[0], |_| false);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(waiters[0].is_finished());
        assert!(!waiters[1].is_finished());
        claims.finish(positions[1], |_| true);
        for w in waiters {
            w.join().unwrap();
        }
    }
}
