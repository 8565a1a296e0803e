//! Which `index.json` entries a conversion touches ([`Options::images`](crate::Options::images)),
//! and how entries are named in errors and matched against each other.

use crate::error::SelectError;
use layerlift_manifest::annotations::{IMAGE_NAME, REF_NAME};
use layerlift_manifest::selector::{ImageSelector, SelectorError, select_entries};
use layerlift_manifest::{Descriptor, Index};

/// The index.json entries `selectors` pick (all when there are none), in index order: the one
/// `--image` selector of every command ([`layerlift_manifest::selector`]).
pub(crate) fn select(index: &Index, selectors: &[String]) -> Result<Vec<usize>, SelectError> {
    let entries = &index.manifests;
    // A position past the end says how many entries there are, rather than listing names.
    for s in selectors {
        if let Ok(ImageSelector::Position(n)) = ImageSelector::parse(s)
            && n >= entries.len()
        {
            return Err(SelectError::OutOfRange {
                selector: s.clone(),
                entries: entries.len(),
            });
        }
    }
    let mut chosen = select_entries(entries, selectors).map_err(|e| match e {
        SelectorError::Invalid { selector, reason } => SelectError::Invalid { selector, reason },
        SelectorError::NoMatch { selector } => SelectError::NoSuchImage {
            selector,
            names: entries
                .iter()
                .filter_map(|d| d.annotation(REF_NAME))
                .map(str::to_string)
                .collect(),
        },
    })?;
    chosen.sort_unstable();
    Ok(chosen)
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
