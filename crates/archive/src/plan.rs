//! Choosing images and publishing them into a layout: blobs first (verified, renamed into place),
//! index.json last, so that an interrupted unpack never leaves an index pointing at a missing blob.

use crate::error::ArchiveError;
use crate::model::{ArchiveInfo, BlobOrigin, ImageInfo};
use crate::names;
use crate::scan::Scan;
use layerlift_layout::Layout;
use layerlift_manifest::annotations::{IMAGE_NAME, REF_NAME};
use layerlift_manifest::{Descriptor, Digest, SelectorError, media_types, platform_matches};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

/// Which images `selectors` (`@N`, a digest or a name: see [`layerlift_manifest::selector`])
/// choose, in the order the selectors name them; all of them when there are no selectors.
pub fn select(info: &ArchiveInfo, selectors: &[String]) -> Result<Vec<usize>, ArchiveError> {
    layerlift_manifest::selector::select(info.images.len(), selectors, |sel, i| {
        names::selects(sel, &info.images[i])
    })
    .map_err(|e| match e {
        SelectorError::NoMatch { selector } | SelectorError::Invalid { selector, .. } => {
            ArchiveError::NoSuchImage(selector)
        }
    })
}

/// A short label for an image in messages: its first name, or `@N`.
pub fn label(img: &ImageInfo) -> String {
    img.names
        .first()
        .cloned()
        .unwrap_or_else(|| format!("@{}", img.position))
}

/// Publish the chosen images' blobs, then add their entries to index.json. Returns the entries added.
///
/// With `platform` (`os/arch[/variant]`), an image that is an index is narrowed to that platform's
/// manifest: its blobs must all be in the archive (platforms an archive leaves out are only notes
/// until one is chosen this way), and index.json names that manifest.
pub fn commit(
    info: &ArchiveInfo,
    scan: &mut Scan,
    layout: &Layout,
    chosen: &[usize],
    platform: Option<&str>,
) -> Result<Vec<Descriptor>, ArchiveError> {
    let mut plans = Vec::new();
    for &n in chosen {
        plans.push(plan_image(&info.images[n], platform)?);
    }
    let mut done: BTreeSet<Digest> = BTreeSet::new();
    let mut entries = Vec::new();
    for (img, blobs, descriptor) in plans {
        for (digest, source) in blobs {
            if done.contains(digest) {
                continue;
            }
            publish(scan, layout, digest, source)?;
            done.insert(*digest);
        }
        entries.extend(index_entries(img, descriptor));
    }
    let added = entries.clone();
    // An entry of the same name replaces the old one, unless both are single-platform images of
    // different platforms: those are kept side by side, for `layerlift-convert --index` to make
    // one multi-platform image of them. (Platforms are read before the lock: the blobs are there.)
    let old_index = layout.index()?;
    let platform = |d: &Descriptor| {
        media_types::is_manifest(&d.media_type)
            .then(|| layout.image_platform(d).ok().flatten())
            .flatten()
            .map(|p| p.to_string())
    };
    let platforms: BTreeMap<Digest, Option<String>> = old_index
        .manifests
        .iter()
        .chain(&entries)
        .map(|d| (d.digest, platform(d)))
        .collect();
    layout.update_index(|index| {
        for entry in entries {
            let name = entry.annotation(REF_NAME).map(str::to_string);
            let mine = platforms.get(&entry.digest).cloned().flatten();
            index.manifests.retain(|old| match &name {
                Some(name) => {
                    old.annotation(REF_NAME) != Some(name)
                        || matches!(
                            (&mine, platforms.get(&old.digest).cloned().flatten()),
                            (Some(a), Some(b)) if *a != b
                        )
                }
                None => *old != entry,
            });
            index.manifests.push(entry);
        }
    })?;
    Ok(added)
}

/// An image to publish: the image, the blobs it needs and its index.json descriptor.
type Publication<'a> = (&'a ImageInfo, &'a [(Digest, BlobOrigin)], Descriptor);

/// What one chosen image publishes, and the descriptor index.json gets for it.
fn plan_image<'a>(
    img: &'a ImageInfo,
    platform: Option<&str>,
) -> Result<Publication<'a>, ArchiveError> {
    let fatal = |why: String| ArchiveError::BadImage {
        image: label(img),
        why,
    };
    if let Some(d) = img.defects.iter().find(|d| d.fatal) {
        return Err(fatal(d.message.clone()));
    }
    let Some(wanted) = platform else {
        return Ok((img, &img.blobs, img.descriptor.clone()));
    };
    let found = img.manifests.iter().find(|m| {
        m.platform
            .as_deref()
            .is_some_and(|p| platform_matches(p, wanted))
    });
    let Some(m) = found else {
        let have: Vec<_> = img
            .manifests
            .iter()
            .filter_map(|m| m.platform.clone())
            .collect();
        return Err(fatal(format!(
            "no manifest for platform {wanted} (the image has: {})",
            have.join(", ")
        )));
    };
    if !m.complete {
        let what = if m.present {
            "some of its blobs are"
        } else {
            "its manifest is"
        };
        return Err(fatal(format!(
            "platform {wanted}: {what} not in the archive"
        )));
    }
    let mut descriptor = m
        .descriptor
        .clone()
        .unwrap_or_else(|| img.descriptor.clone());
    // Keep the names the image had.
    if let Some(a) = &img.descriptor.annotations {
        descriptor
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .extend(a.clone());
    }
    Ok((img, &img.blobs[m.blobs.clone()], descriptor))
}

fn publish(
    scan: &mut Scan,
    layout: &Layout,
    digest: &Digest,
    source: &BlobOrigin,
) -> Result<(), ArchiveError> {
    match source {
        BlobOrigin::Generated(bytes) => {
            layout.write_blob(bytes)?;
        }
        BlobOrigin::Entry(path) | BlobOrigin::Encoded(path) => {
            let entry = scan.files.get_mut(path).ok_or_else(|| missing(path))?;
            let staged = match source {
                BlobOrigin::Encoded(_) => entry.encoded.as_mut().and_then(|e| e.staged.take()),
                _ => entry.staged.take(),
            };
            match staged {
                Some(staged) => {
                    staged.verify(digest)?;
                    staged.commit()?;
                }
                // Left unread: the destination registry has it (push's reuse).
                None if entry.reused => {}
                // Streamed through memory only: push uploaded it, the layout does not hold it.
                None if entry.encoded.as_ref().is_some_and(|e| e.streamed_only) => {}
                // Already published under another name, or staging was off.
                None if layout.has_blob(digest) => {}
                None => return Err(missing(path)),
            }
        }
        BlobOrigin::Decompressed(path) => {
            let entry = scan.files.get(path).ok_or_else(|| missing(path))?;
            let staged = entry.staged.as_ref().ok_or_else(|| missing(path))?;
            let file = std::fs::File::open(staged.path())
                .map_err(|e| ArchiveError::io(format!("entry `{path}`"), e))?;
            let (_, mut decoded) = layerlift_layers::decoder(file)
                .map_err(|e| ArchiveError::io(format!("entry `{path}`"), e))?;
            let mut writer = layout.blob_writer()?;
            io::copy(&mut decoded as &mut dyn Read, &mut writer)
                .map_err(|e| ArchiveError::io(format!("decompressing `{path}`"), e))?;
            writer.commit(Some(digest))?;
        }
    }
    Ok(())
}

fn missing(path: &str) -> ArchiveError {
    ArchiveError::BadEntry {
        path: path.to_string(),
        why: "was not staged".into(),
    }
}

/// The index.json entries of an image: one per name for docker archives (ref.name = the name as
/// the archive writes it, io.containerd.image.name = the fully qualified name), the original
/// descriptor otherwise.
pub(crate) fn index_entries(img: &ImageInfo, descriptor: Descriptor) -> Vec<Descriptor> {
    if !img.annotate_names || img.names.is_empty() {
        return vec![descriptor];
    }
    img.names
        .iter()
        .map(|name| {
            let mut d = descriptor.clone();
            let mut annotations = BTreeMap::new();
            annotations.insert(REF_NAME.to_string(), name.clone());
            if let Some(full) = names::full_name(name) {
                annotations.insert(IMAGE_NAME.to_string(), full);
            }
            d.annotations = Some(annotations);
            d
        })
        .collect()
}
