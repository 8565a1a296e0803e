//! The per-image side of a push under own names (`all`, a bundle of many images): a repository
//! whose tags already point at its images is not pushed again, each image's outcome is an
//! [`Event::Image`], and a repository that fails fails only its own images ([`FailedImage`]); the
//! others go on.

use crate::event::{Event, FailedImage, ImageStatus, Observer, Pushed};
use crate::names::{LeftOutKind, Placement, PlannedImage, display_chain};
use crate::plan::{Blob, PushPlan, RepoPlan};
use layerlift_manifest::Digest;
use layerlift_registry::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex, MutexGuard};

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
/// each; a failed request counts as "not there".
pub(crate) fn already_there(client: &Client, repo: &RepoPlan) -> bool {
    let at = |reference: &str, digest: Digest| {
        client
            .manifest_digest(&repo.repository, reference)
            .is_ok_and(|d| d == Some(digest))
    };
    (!repo.tags.is_empty() || !repo.untagged.is_empty())
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
