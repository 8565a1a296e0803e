//! Garbage collection after an in-place conversion: the blobs only the old images used are
//! removed, under [`Layout::exclusively`] so that a concurrent writer into the same layout either
//! finishes first (and its `index.json` names what it relies on) or waits.

use crate::error::ConvertError;
use layerlift_layout::Layout;
use layerlift_manifest::{Descriptor, Digest, Index, Manifest, media_types, parse_json};
use std::collections::BTreeSet;

/// Every blob reachable from `roots` in `layout` (manifests, indexes, configs, layers, subjects).
/// Blobs that are absent are listed but not followed.
pub(crate) fn reachable(
    layout: &Layout,
    roots: &[Descriptor],
) -> Result<BTreeSet<Digest>, ConvertError> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<Descriptor> = roots.to_vec();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.digest) {
            continue;
        }
        let is_index = media_types::is_index(&d.media_type);
        let is_manifest = media_types::is_manifest(&d.media_type);
        if !(is_index || is_manifest) || !layout.has_blob(&d.digest) {
            continue;
        }
        let bytes = layout.read_blob(&d.digest)?;
        if is_index {
            let idx: Index = parse_json("image index", &bytes)?;
            todo.extend(idx.manifests);
            todo.extend(idx.subject);
        } else {
            let m: Manifest = parse_json("image manifest", &bytes)?;
            todo.push(m.config);
            todo.extend(m.layers);
            todo.extend(m.subject);
        }
    }
    Ok(seen)
}

/// Delete the blobs that `old_entries` reach and that nothing in the current `index.json`
/// reaches; return how many were removed. Blobs the old entries do not reach are never touched.
/// Takes the layout's exclusive lock for the whole walk and deletion.
pub(crate) fn remove_unreferenced(
    layout: &Layout,
    old_entries: &[Descriptor],
) -> Result<usize, ConvertError> {
    layout.exclusively(|| {
        let old = reachable(layout, old_entries)?;
        let index = layout.index()?;
        let new = reachable(layout, &index.manifests)?;
        let mut removed = 0;
        for digest in old.difference(&new) {
            let path = layout.blob_path(digest);
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ConvertError::Io { path, source }),
            }
        }
        Ok(removed)
    })?
}
