//! Which `index.json` entries a conversion touches ([`Options::images`](crate::Options::images)),
//! and how entries are named in errors and matched against each other.

use crate::error::SelectError;
use layerlift_manifest::annotations::{IMAGE_NAME, REF_NAME};
use layerlift_manifest::{Descriptor, Index};
use std::collections::BTreeSet;

/// The index.json entries `selectors` pick (all when there are none), in index order.
pub(crate) fn select(index: &Index, selectors: &[String]) -> Result<Vec<usize>, SelectError> {
    if selectors.is_empty() {
        return Ok((0..index.manifests.len()).collect());
    }
    let mut chosen = BTreeSet::new();
    for sel in selectors {
        if let Some(n) = sel.strip_prefix('@') {
            let n: usize = n.parse().map_err(|_| SelectError::NotANumber {
                selector: sel.clone(),
            })?;
            if n >= index.manifests.len() {
                return Err(SelectError::OutOfRange {
                    selector: sel.clone(),
                    entries: index.manifests.len(),
                });
            }
            chosen.insert(n);
            continue;
        }
        let found: Vec<usize> = index
            .manifests
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                [d.annotation(REF_NAME), d.annotation(IMAGE_NAME)]
                    .into_iter()
                    .flatten()
                    .any(|n| n == sel || normalise_name(n) == normalise_name(sel))
            })
            .map(|(i, _)| i)
            .collect();
        if found.is_empty() {
            return Err(SelectError::NoSuchImage {
                selector: sel.clone(),
                names: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.annotation(REF_NAME))
                    .map(str::to_string)
                    .collect(),
            });
        }
        chosen.extend(found);
    }
    Ok(chosen.into_iter().collect())
}

/// `docker.io/library/app:1` and `app:1` name the same image.
fn normalise_name(name: &str) -> &str {
    let n = name.strip_prefix("docker.io/").unwrap_or(name);
    n.strip_prefix("library/").unwrap_or(n)
}

/// How errors name entry `i`: `app:1 (@0)`, or `@0 sha256:…` when it has no name.
pub(crate) fn entry_name(d: &Descriptor, i: usize) -> String {
    match d.annotation(REF_NAME).or_else(|| d.annotation(IMAGE_NAME)) {
        Some(n) => format!("{n} (@{i})"),
        None => format!("@{i} {}", d.digest),
    }
}

/// Two index.json entries for the same image name (or the same unnamed content).
pub(crate) fn same_entry(a: &Descriptor, b: &Descriptor) -> bool {
    match (a.annotation(REF_NAME), b.annotation(REF_NAME)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.digest == b.digest,
        _ => false,
    }
}
