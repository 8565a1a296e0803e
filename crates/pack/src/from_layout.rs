//! Feeding the archive sink from an OCI image layout: which `index.json` entries are chosen
//! (`--image`), which platform of an index a docker-archive takes, the names each image gets
//! (`RepoTags` from the entry's `io.containerd.image.name` or a full `ref.name`, or `--tag`), and
//! which blobs an oci-archive holds.

use crate::error::{OptionsError, PackError};
use crate::limits::MAX_DEPTH;
use crate::options::{Options, tag_name};
use crate::report::PackedImage;
use crate::sink::{DockerArchive, DockerImage, OciArchive};
use layerlift_layout::Layout;
use layerlift_manifest::annotations::{IMAGE_NAME, REF_NAME};
use layerlift_manifest::reference::DOCKER_HUB;
use layerlift_manifest::selector::{SelectorError, select_entries};
use layerlift_manifest::{
    Descriptor, Digest, ImageConfig, Index, Manifest, Reference, host_platform, media_types,
    parse_json, platform_matches,
};
use std::collections::BTreeSet;
use std::path::Path;

/// The `index.json` entries the options choose, in index order.
pub(crate) fn choose(
    path: &Path,
    index: &Index,
    options: &Options,
) -> Result<Vec<usize>, PackError> {
    let entries = &index.manifests;
    if entries.is_empty() {
        return Err(PackError::Empty {
            path: path.to_path_buf(),
        });
    }
    let mut chosen = select_entries(entries, &options.images).map_err(|e| match e {
        SelectorError::Invalid { selector, reason } => PackError::Select {
            selector,
            reason: reason.to_string(),
        },
        SelectorError::NoMatch { selector } => {
            let names: Vec<&str> = entries
                .iter()
                .filter_map(|d| d.annotation(REF_NAME))
                .collect();
            PackError::Select {
                selector,
                reason: format!(
                    "no such image in index.json of {} ({} entries; names: {})",
                    path.display(),
                    entries.len(),
                    if names.is_empty() {
                        "none; use @N".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            }
        }
    })?;
    chosen.sort_unstable();
    Ok(chosen)
}

/// How errors name entry `i`: `app:1 (@0)`, or `@0 sha256:…` when it has no name.
fn entry_name(d: &Descriptor, i: usize) -> String {
    match d.annotation(REF_NAME).or_else(|| d.annotation(IMAGE_NAME)) {
        Some(n) => format!("{n} (@{i})"),
        None => format!("@{i} {}", d.digest),
    }
}

fn in_entry<T>(d: &Descriptor, i: usize, r: Result<T, PackError>) -> Result<T, PackError> {
    r.map_err(|e| PackError::Image {
        name: entry_name(d, i),
        source: Box::new(e),
    })
}

/// The `RepoTags` name of an `index.json` entry: its `io.containerd.image.name`, else its
/// `ref.name` when that is a whole reference (not only a tag, as Docker and BuildKit write it),
/// as Docker shows names (`busybox:latest`, `registry:5000/app:1`). `None` when it has neither, or
/// only a digest.
fn repo_tag(d: &Descriptor) -> Option<String> {
    let name = d.annotation(IMAGE_NAME).or_else(|| {
        d.annotation(REF_NAME)
            .filter(|n| n.contains(':') || n.contains('/'))
    })?;
    docker_name(&Reference::parse(name).ok()?)
}

/// `r` as `RepoTags` writes it: familiar on Docker Hub, `:latest` when it has no tag; `None` for a
/// digest alone.
fn docker_name(r: &Reference) -> Option<String> {
    let tag = match (&r.tag, &r.digest) {
        (Some(t), _) => t.as_str(),
        (None, Some(_)) => return None,
        (None, None) => "latest",
    };
    Some(if r.registry == DOCKER_HUB {
        format!("{}:{tag}", r.familiar_repository())
    } else {
        format!("{}/{}:{tag}", r.registry, r.repository)
    })
}

/// A manifest or index of the layout, read and verified, and what its JSON says it is.
enum Doc {
    Manifest(Box<Manifest>),
    Index(Box<Index>),
    /// JSON that is neither (or no JSON: an artifact's blob).
    Other,
}

fn read_doc(layout: &Layout, d: &Descriptor) -> Result<(Vec<u8>, Doc), PackError> {
    let bytes = layout
        .read_blob(&d.digest)
        .map_err(|e| PackError::blob(d.digest, e))?;
    // Content decides: an index has `manifests`, an image manifest `config` and `layers`.
    let value: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    let doc = match value {
        Some(v) if v.get("manifests").is_some() => {
            Doc::Index(Box::new(parse_json("image index", &bytes)?))
        }
        Some(v) if v.get("config").is_some() && v.get("layers").is_some() => {
            Doc::Manifest(Box::new(parse_json("image manifest", &bytes)?))
        }
        _ => Doc::Other,
    };
    Ok((bytes, doc))
}

/// The image manifest `d` is, or the one of its index for `platform` (indexes nested up to
/// [`MAX_DEPTH`]); with the platform taken, when `d` was an index.
fn resolve(
    layout: &Layout,
    d: &Descriptor,
    platform: &str,
    depth: usize,
) -> Result<(Descriptor, Manifest, Option<String>), PackError> {
    let (_, doc) = read_doc(layout, d)?;
    match doc {
        Doc::Manifest(m) => Ok((d.clone(), *m, None)),
        Doc::Index(index) => {
            if depth >= MAX_DEPTH {
                return Err(PackError::TooDeep { digest: d.digest });
            }
            let present = |m: &&Descriptor| layout.has_blob(&m.digest);
            let found = index.manifests.iter().filter(present).find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| platform_matches(&p.to_string(), platform))
            });
            match found {
                Some(child) => {
                    let (desc, m, inner) = resolve(layout, child, platform, depth + 1)?;
                    let taken = inner.or_else(|| child.platform.as_ref().map(|p| p.to_string()));
                    Ok((desc, m, taken))
                }
                None => Err(PackError::NoPlatform {
                    digest: d.digest,
                    platform: platform.to_string(),
                    available: {
                        let list: Vec<String> = index
                            .manifests
                            .iter()
                            .filter(present)
                            .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
                            .collect();
                        if list.is_empty() {
                            "none".to_string()
                        } else {
                            list.join(", ")
                        }
                    },
                }),
            }
        }
        Doc::Other => Err(PackError::NotAnImage {
            digest: d.digest,
            media_type: d.media_type.clone(),
        }),
    }
}

/// The docker-archive of the chosen entries: one image per distinct manifest (entries naming the
/// same manifest give one image with all their names).
pub(crate) fn docker(
    layout: &Layout,
    index: &Index,
    chosen: &[usize],
    options: &Options,
) -> Result<(DockerArchive, Vec<PackedImage>), PackError> {
    let platform = options.platform.clone().unwrap_or_else(host_platform);
    let mut images: Vec<(DockerImage, PackedImage)> = Vec::new();
    for &i in chosen {
        let entry = &index.manifests[i];
        let found = in_entry(entry, i, docker_image(layout, entry, &platform))?;
        let tag = repo_tag(entry);
        let same = images
            .iter_mut()
            .find(|(_, p)| p.digest == found.manifest.digest);
        let (img, packed) = match same {
            Some((img, packed)) => (img, packed),
            None => {
                let packed = PackedImage {
                    names: Vec::new(),
                    digest: found.manifest.digest,
                    config: Some(found.image.config.digest),
                    platform: found.platform,
                };
                images.push((found.image, packed));
                let last = images.last_mut().expect("just pushed");
                (&mut last.0, &mut last.1)
            }
        };
        if let Some(t) = tag
            && !img.repo_tags.contains(&t)
        {
            img.repo_tags.push(t.clone());
            packed.names.push(t);
        }
    }
    if !options.tags.is_empty() {
        if images.len() != 1 {
            return Err(OptionsError::TagsNeedOneImage {
                images: images.len(),
            }
            .into());
        }
        let mut tags = Vec::new();
        for t in &options.tags {
            let name = docker_name(&tag_name(t)?).expect("a tag name has no digest");
            if !tags.contains(&name) {
                tags.push(name);
            }
        }
        images[0].0.repo_tags = tags.clone();
        images[0].1.names = tags;
    }
    let mut archive = DockerArchive::new();
    let mut packed = Vec::new();
    for (img, p) in images {
        archive.add(img);
        packed.push(p);
    }
    Ok((archive, packed))
}

/// An image of a docker-archive as found from an `index.json` entry.
struct Found {
    /// The manifest chosen.
    manifest: Descriptor,
    /// Its config and layers (no names yet).
    image: DockerImage,
    /// The platform taken, when the entry was an index.
    platform: Option<String>,
}

/// One image of a docker-archive: the manifest chosen for `platform`, its config and layers.
fn docker_image(layout: &Layout, entry: &Descriptor, platform: &str) -> Result<Found, PackError> {
    let (desc, manifest, taken) = resolve(layout, entry, platform, 0)?;
    let config_bytes = layout
        .read_blob(&manifest.config.digest)
        .map_err(|e| PackError::blob(manifest.config.digest, e))?;
    let config: ImageConfig = parse_json("image config", &config_bytes)?;
    let diff_ids = config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(PackError::LayerCount {
            layers: manifest.layers.len(),
            config: manifest.config.digest,
            diff_ids: diff_ids.len(),
        });
    }
    Ok(Found {
        manifest: desc,
        image: DockerImage {
            repo_tags: Vec::new(),
            config: manifest.config,
            config_bytes,
            layers: manifest.layers.into_iter().zip(diff_ids).collect(),
        },
        platform: taken,
    })
}

/// The oci-archive of the chosen entries: each entry as `index.json` lists it (renamed by
/// `--tag`), every blob it reaches. Blobs of an index's other platforms that the layout does not
/// hold are left out (counted in the second value), as the layout left them out.
pub(crate) fn oci(
    layout: &Layout,
    index: &Index,
    chosen: &[usize],
    options: &Options,
) -> Result<(OciArchive, Vec<PackedImage>, usize), PackError> {
    let mut archive = OciArchive::new();
    let mut missing = 0;
    let mut walked = BTreeSet::new();
    let mut entries: Vec<Descriptor> = Vec::new();
    for &i in chosen {
        let entry = &index.manifests[i];
        in_entry(
            entry,
            i,
            walk(
                layout,
                entry,
                true,
                0,
                &mut archive,
                &mut missing,
                &mut walked,
            ),
        )?;
        entries.push(entry.clone());
    }
    if !options.tags.is_empty() {
        let distinct: BTreeSet<Digest> = entries.iter().map(|e| e.digest).collect();
        if distinct.len() != 1 {
            return Err(OptionsError::TagsNeedOneImage {
                images: distinct.len(),
            }
            .into());
        }
        let base = entries[0].clone();
        entries = Vec::new();
        for t in &options.tags {
            let r = tag_name(t)?;
            let mut d = base.clone();
            let mut annotations = d.annotations.take().unwrap_or_default();
            annotations.insert(REF_NAME.to_string(), t.clone());
            annotations.insert(IMAGE_NAME.to_string(), r.full_name());
            d.annotations = Some(annotations);
            if !entries.contains(&d) {
                entries.push(d);
            }
        }
    }
    let mut packed = Vec::new();
    for e in entries {
        packed.push(PackedImage {
            names: e
                .annotation(REF_NAME)
                .map(str::to_string)
                .into_iter()
                .collect(),
            digest: e.digest,
            config: None,
            platform: None,
        });
        archive.add_entry(e);
    }
    Ok((archive, packed, missing))
}

/// Add `d` and every blob it reaches to the archive. A blob missing from the layout is an error
/// for a top-level image; below an index, it is another platform the layout does not hold.
fn walk(
    layout: &Layout,
    d: &Descriptor,
    top: bool,
    depth: usize,
    archive: &mut OciArchive,
    missing: &mut usize,
    walked: &mut BTreeSet<Digest>,
) -> Result<(), PackError> {
    if !walked.insert(d.digest) {
        return Ok(());
    }
    if !top && !layout.has_blob(&d.digest) {
        *missing += 1;
        return Ok(());
    }
    let (bytes, doc) = read_doc(layout, d)?;
    archive.add_document(d.digest, bytes);
    match doc {
        Doc::Index(index) => {
            if depth >= MAX_DEPTH {
                return Err(PackError::TooDeep { digest: d.digest });
            }
            for child in &index.manifests {
                walk(layout, child, false, depth + 1, archive, missing, walked)?;
            }
        }
        Doc::Manifest(m) => {
            let config = layout
                .read_blob(&m.config.digest)
                .map_err(|e| PackError::blob(m.config.digest, e));
            match config {
                Ok(bytes) => archive.add_document(m.config.digest, bytes),
                Err(_) if !top && !layout.has_blob(&m.config.digest) => *missing += 1,
                Err(e) => return Err(e),
            }
            for layer in &m.layers {
                if layout.has_blob(&layer.digest) {
                    archive.add_blob(layer);
                } else if !top || media_types::is_non_distributable(&layer.media_type) {
                    *missing += 1;
                } else {
                    return Err(PackError::blob(
                        layer.digest,
                        layerlift_layout::LayoutError::MissingBlob {
                            digest: layer.digest,
                            path: layout.blob_path(&layer.digest),
                        },
                    ));
                }
            }
        }
        Doc::Other => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(names: &[(&str, &str)]) -> Descriptor {
        let mut d = Descriptor::new(media_types::OCI_MANIFEST, Digest::of(b"m"), 1);
        d.annotations = Some(
            names
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        d
    }

    #[test]
    fn repo_tags_come_from_full_names_only() {
        let full = entry(&[
            (REF_NAME, "latest"),
            (IMAGE_NAME, "docker.io/library/busybox:latest"),
        ]);
        assert_eq!(repo_tag(&full).as_deref(), Some("busybox:latest"));
        let podman = entry(&[(REF_NAME, "localhost/app:1")]);
        assert_eq!(repo_tag(&podman).as_deref(), Some("localhost/app:1"));
        let ours = entry(&[
            (REF_NAME, "127.0.0.1:5000/a/b:2"),
            (IMAGE_NAME, "127.0.0.1:5000/a/b:2"),
        ]);
        assert_eq!(repo_tag(&ours).as_deref(), Some("127.0.0.1:5000/a/b:2"));
        let user = entry(&[(REF_NAME, "me/app")]);
        assert_eq!(repo_tag(&user).as_deref(), Some("me/app:latest"));
        // A tag alone (BuildKit, regctl) names no repository; a digest alone is no tag.
        assert_eq!(repo_tag(&entry(&[(REF_NAME, "v1")])), None);
        let by_digest = format!("busybox@{}", Digest::of(b"x"));
        assert_eq!(repo_tag(&entry(&[(REF_NAME, by_digest.as_str())])), None);
    }
}
