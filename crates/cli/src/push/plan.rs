//! What a push sends: the images chosen from the layout's index.json, grouped by destination
//! repository, with their blobs (deduplicated), their manifests children-first, and their tags.
//! Manifest bytes are read from the layout (digest-verified) and pushed unchanged.

use anyhow::{Context, bail};
use layerlift_layout::Layout;
use layerlift_manifest::annotations::{IMAGE_NAME, REF_NAME};
use layerlift_manifest::{
    Descriptor, Digest, Index, Manifest, media_types, parse_json, platform_matches,
};
use layerlift_registry::Reference;
use std::collections::BTreeSet;

/// A blob to have in the repository.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    /// Foreign / non-distributable layers need not be uploaded.
    pub non_distributable: bool,
}

/// A manifest or index to PUT by digest.
#[derive(Debug, Clone)]
pub struct Doc {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// A tag to PUT.
#[derive(Debug, Clone)]
pub struct Tag {
    pub tag: String,
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// Everything for one repository.
#[derive(Debug, Default)]
pub struct RepoPlan {
    pub repository: String,
    pub blobs: Vec<Blob>,
    pub manifests: Vec<Doc>,
    pub tags: Vec<Tag>,
    /// Top-level images pushed by digest only.
    pub untagged: Vec<Digest>,
    seen_blobs: BTreeSet<Digest>,
    seen_docs: BTreeSet<Digest>,
}

/// The whole push.
#[derive(Debug)]
pub struct Plan {
    pub repos: Vec<RepoPlan>,
}

fn entry_name(d: &Descriptor) -> Option<&str> {
    d.annotation(REF_NAME).or_else(|| d.annotation(IMAGE_NAME))
}

fn describe(i: usize, d: &Descriptor) -> String {
    match entry_name(d) {
        Some(n) => format!("@{i} {n} ({})", d.digest),
        None => format!("@{i} ({})", d.digest),
    }
}

/// Where `--all` sends an entry named `name`: a bare tag stays in DEST's repository; a name with a
/// repository goes under DEST's repository prefix (`app:1` → `DEST/app:1`).
fn retarget(dest: &Reference, name: &str) -> anyhow::Result<(String, String)> {
    if !name.contains(':') && !name.contains('/') && !name.contains('@') {
        layerlift_registry::Reference::parse(&format!("{}/x:{name}", dest.registry))
            .with_context(|| format!("image name `{name}` is not a usable tag"))?;
        return Ok((dest.repository.clone(), name.to_string()));
    }
    let r = Reference::parse(name).with_context(|| format!("image name `{name}`"))?;
    let path = if r.registry == "docker.io" {
        r.repository
            .strip_prefix("library/")
            .unwrap_or(&r.repository)
            .to_string()
    } else {
        r.repository.clone()
    };
    let repo = format!("{}/{path}", dest.repository);
    layerlift_registry::reference::validate_repository(&repo)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((repo, r.tag.unwrap_or_else(|| "latest".into())))
}

impl Plan {
    /// The push of `layout`; `source` is how messages name it (the archive, for an archive read
    /// into a temporary layout).
    pub fn build(
        layout: &Layout,
        source: &str,
        dest: &Reference,
        selectors: &[String],
        all: bool,
        extra_tags: &[String],
        platform: Option<&str>,
    ) -> anyhow::Result<Self> {
        let index = layout.index().with_context(|| source.to_string())?;
        let entries: Vec<(usize, &Descriptor)> = index.manifests.iter().enumerate().collect();
        if entries.is_empty() {
            bail!("{} holds no image (index.json is empty)", source);
        }
        let mut chosen: Vec<(usize, &Descriptor)> = Vec::new();
        for sel in selectors {
            let before = chosen.len();
            for (i, d) in &entries {
                let hit = match sel.strip_prefix('@') {
                    Some(n) if n.chars().all(|c| c.is_ascii_digit()) => n.parse() == Ok(*i),
                    _ => {
                        d.digest.to_string() == *sel
                            || d.annotation(REF_NAME) == Some(sel)
                            || d.annotation(IMAGE_NAME) == Some(sel)
                            || d.annotation(IMAGE_NAME).is_some_and(|full| {
                                Reference::parse(sel).is_ok_and(|r| r.to_string() == full)
                            })
                    }
                };
                if hit && !chosen.iter().any(|(j, _)| j == i) {
                    chosen.push((*i, d));
                }
            }
            if chosen.len() == before {
                bail!(
                    "no image `{sel}` in {}; it holds: {}",
                    source,
                    entries
                        .iter()
                        .map(|(i, d)| describe(*i, d))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        if selectors.is_empty() {
            chosen = entries.clone();
        }
        // Several different images chosen with --image: each goes under its own name, as with
        // --all (DEST cannot give one tag to all of them).
        let distinct: BTreeSet<Digest> = chosen.iter().map(|(_, d)| d.digest).collect();
        let each_own_name = all || (!selectors.is_empty() && distinct.len() > 1);
        if each_own_name && (dest.tag.is_some() || dest.digest.is_some() || !extra_tags.is_empty())
        {
            bail!(
                "{} images are pushed under their own names: give DEST as HOST/REPOSITORY, without a tag, and no --tag",
                distinct.len()
            );
        }
        // (repository, tag or None, descriptor)
        let mut targets: Vec<(String, Option<String>, &Descriptor)> = Vec::new();
        if each_own_name {
            for (_, d) in &chosen {
                match entry_name(d) {
                    Some(name) => {
                        let name = d.annotation(REF_NAME).unwrap_or(name);
                        let (repo, tag) = retarget(dest, name)?;
                        targets.push((repo, Some(tag), d));
                    }
                    None => targets.push((dest.repository.clone(), None, d)),
                }
            }
        } else {
            let digests: BTreeSet<Digest> = chosen.iter().map(|(_, d)| d.digest).collect();
            if digests.len() > 1 {
                bail!(
                    "{} holds {} different images; choose one with --image, or push them all under their own names with --all: {}",
                    source,
                    digests.len(),
                    chosen
                        .iter()
                        .map(|(i, d)| describe(*i, d))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let d = chosen[0].1;
            if let Some(want) = dest.digest
                && want != d.digest
            {
                bail!(
                    "DEST names digest {want}, but the image to push is {}",
                    d.digest
                );
            }
            let mut tags: Vec<String> = dest.tag.iter().cloned().collect();
            for t in extra_tags {
                layerlift_registry::reference::validate_tag(t)
                    .map_err(|e| anyhow::anyhow!("--tag: {e}"))?;
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            if tags.is_empty() && dest.digest.is_none() {
                tags.push("latest".into());
            }
            if tags.is_empty() {
                targets.push((dest.repository.clone(), None, d));
            }
            for t in tags {
                targets.push((dest.repository.clone(), Some(t), d));
            }
        }
        let mut repos: Vec<RepoPlan> = Vec::new();
        for (repo, tag, d) in targets {
            let idx = match repos.iter().position(|r| r.repository == repo) {
                Some(i) => i,
                None => {
                    repos.push(RepoPlan {
                        repository: repo.clone(),
                        ..RepoPlan::default()
                    });
                    repos.len() - 1
                }
            };
            let rp = &mut repos[idx];
            let narrowed;
            let d = match platform {
                Some(p) => {
                    narrowed = narrow(layout, source, d, p)?;
                    &narrowed
                }
                None => d,
            };
            let top = walk(layout, source, rp, d, 0)?;
            match tag {
                Some(tag) => {
                    if let Some(other) = rp.tags.iter().find(|t| t.tag == tag)
                        && other.digest != d.digest
                    {
                        bail!(
                            "two different images would be tagged {}/{repo}:{tag}",
                            dest.registry
                        );
                    }
                    if !rp.tags.iter().any(|t| t.tag == tag) {
                        rp.tags.push(Tag {
                            tag,
                            digest: top.digest,
                            media_type: top.media_type,
                            bytes: top.bytes,
                        });
                    }
                }
                None => {
                    if !rp.untagged.contains(&d.digest) {
                        rp.untagged.push(d.digest);
                    }
                }
            }
        }
        Ok(Plan { repos })
    }
}

/// With `--platform`: an index is replaced by its manifest for `platform` (`os/arch[/variant]`;
/// `linux/arm64` matches `linux/arm64/v8`); an image manifest is kept.
fn narrow(
    layout: &Layout,
    source: &str,
    d: &Descriptor,
    platform: &str,
) -> anyhow::Result<Descriptor> {
    let bytes = layout
        .read_blob(&d.digest)
        .with_context(|| format!("reading {} {}", d.media_type, d.digest))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", d.digest))?;
    if value.get("manifests").is_none() {
        return Ok(d.clone());
    }
    let index: Index = parse_json("image index", &bytes)?;
    let found = index.manifests.iter().find(|m| {
        m.platform
            .as_ref()
            .is_some_and(|p| platform_matches(&p.to_string(), platform))
            && layout.has_blob(&m.digest)
    });
    match found {
        Some(m) => Ok(m.clone()),
        None => bail!(
            "image {} in {source} has no manifest for platform {platform} (it lists: {})",
            d.digest,
            index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Collect the blobs and documents under `d` (children first); returns `d`'s own document.
fn walk(
    layout: &Layout,
    source: &str,
    rp: &mut RepoPlan,
    d: &Descriptor,
    depth: usize,
) -> anyhow::Result<Doc> {
    if depth > 8 {
        bail!("manifest {} nests indexes more than 8 deep", d.digest);
    }
    let bytes = layout
        .read_blob(&d.digest)
        .with_context(|| format!("reading {} {}", d.media_type, d.digest))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", d.digest))?;
    let own_type = value.get("mediaType").and_then(|v| v.as_str());
    let media_type = match own_type {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => d.media_type.clone(),
    };
    let is_index = media_types::is_index(&media_type)
        || (media_type.is_empty() && value.get("manifests").is_some());
    if is_index {
        let idx: Index = parse_json("image index", &bytes)?;
        for child in &idx.manifests {
            let child_is_doc = media_types::is_index(&child.media_type)
                || media_types::is_manifest(&child.media_type)
                || child.media_type.ends_with("+json") && layout.has_blob(&child.digest);
            if child_is_doc {
                if !layout.has_blob(&child.digest) {
                    bail!(
                        "index {} lists {} {} ({}), which is not in {}: the registry would refuse the index (push one platform with --platform)",
                        d.digest,
                        child.media_type,
                        child.digest,
                        child
                            .platform
                            .as_ref()
                            .map_or("no platform".to_string(), |p| p.to_string()),
                        source
                    );
                }
                walk(layout, source, rp, child, depth + 1)?;
            } else {
                add_blob(rp, child);
            }
        }
    } else {
        let m: Manifest = parse_json("image manifest", &bytes)
            .with_context(|| format!("manifest {}", d.digest))?;
        add_blob(rp, &m.config);
        for l in &m.layers {
            add_blob(rp, l);
        }
    }
    let doc = Doc {
        digest: d.digest,
        media_type,
        bytes,
    };
    if rp.seen_docs.insert(d.digest) {
        rp.manifests.push(doc.clone());
    }
    Ok(doc)
}

fn add_blob(rp: &mut RepoPlan, d: &Descriptor) {
    if rp.seen_blobs.insert(d.digest) {
        rp.blobs.push(Blob {
            digest: d.digest,
            size: d.size,
            non_distributable: media_types::is_non_distributable(&d.media_type),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retargeting() {
        let dest = Reference::parse("127.0.0.1:5000/mirror").unwrap();
        assert_eq!(
            retarget(&dest, "v1").unwrap(),
            ("mirror".to_string(), "v1".to_string())
        );
        assert_eq!(
            retarget(&dest, "busybox:latest").unwrap(),
            ("mirror/busybox".to_string(), "latest".to_string())
        );
        assert_eq!(
            retarget(&dest, "docker.io/library/alpine:3").unwrap(),
            ("mirror/alpine".to_string(), "3".to_string())
        );
        assert_eq!(
            retarget(&dest, "quay.io/org/app").unwrap(),
            ("mirror/org/app".to_string(), "latest".to_string())
        );
    }
}
