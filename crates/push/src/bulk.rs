//! The per-image side of a push under own names (`all`, a bundle of many images): a repository
//! whose tags already point at its images is not pushed again, each image's outcome is an
//! [`Event::Image`], and a repository that fails fails only its own images ([`FailedImage`]); the
//! others go on.

use crate::event::{Event, FailedImage, ImageStatus, Observer, Pushed};
use crate::names::{LeftOutKind, Placement, PlannedImage, display_chain};
use crate::plan::{PushPlan, RepoPlan};
use layerlift_registry::Client;

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

/// Whether every tag of `repo` already points at its image (and it has nothing else to push:
/// no untagged image, no referrers): then nothing of it is sent again. Each tag is one HEAD;
/// a failed request counts as "not there".
pub(crate) fn already_there(client: &Client, repo: &RepoPlan) -> bool {
    !repo.tags.is_empty()
        && repo.untagged.is_empty()
        && repo.referrers.is_empty()
        && repo.tags.iter().all(|t| {
            client
                .manifest_digest(&repo.repository, &t.tag)
                .is_ok_and(|d| d == Some(t.digest))
        })
}

/// The tags of a repository found [`already_there`]: a `tag` event each (as a push reads its
/// tags back), and what the report lists.
pub(crate) fn present_tags(
    observer: &dyn Observer,
    registry: &str,
    repo: &RepoPlan,
    dry_run: bool,
) -> Vec<Pushed> {
    repo.tags
        .iter()
        .map(|t| {
            let reference = format!("{registry}/{}:{}", repo.repository, t.tag);
            observer.event(&Event::Tag {
                reference: reference.clone(),
                digest: t.digest,
                dry_run: dry_run.then_some(true),
            });
            Pushed {
                reference,
                digest: t.digest,
            }
        })
        .collect()
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
