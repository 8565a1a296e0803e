//! What a push sends ([`PushPlan`]): the images chosen from the layout's index.json, grouped by
//! destination repository, with their blobs (deduplicated), their manifests children-first, and
//! their tags. Manifest bytes are read from the layout (digest-verified) and pushed unchanged.

use crate::names::{NameError, Naming, Placement, PlannedImage, place};
use layerlift_layout::{Layout, LayoutError};
use layerlift_manifest::annotations::{
    ATTESTATION_MANIFEST, IMAGE_NAME, REF_NAME, REFERENCE_DIGEST, REFERENCE_TYPE,
};
use layerlift_manifest::selector::{SelectorError, select};
use layerlift_manifest::{
    Descriptor, Digest, Index, Manifest, ManifestError, media_types, parse_json, platform_matches,
};
use layerlift_registry::Reference;
use std::collections::BTreeSet;

/// Why the images to push cannot be worked out.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// index.json cannot be read.
    #[error("{source_name}")]
    Index {
        /// SOURCE.
        source_name: String,
        /// Why.
        source: Box<LayoutError>,
    },
    /// index.json lists nothing.
    #[error("{source_name} holds no image (index.json is empty)")]
    Empty {
        /// SOURCE.
        source_name: String,
    },
    /// An `--image` value that is not a selector (empty, or `@` without a number).
    #[error("--image {0}")]
    BadSelector(SelectorError),
    /// An image selector matches no entry.
    #[error("no image `{selector}` in {source_name}; it holds: {listing}")]
    NoSuchImage {
        /// The selector.
        selector: String,
        /// SOURCE.
        source_name: String,
        /// The entries of index.json.
        listing: String,
    },
    /// Several images, each under its own name, but DEST or extra tags name a tag.
    #[error(
        "{count} images are pushed under their own names: give DEST as HOST/REPOSITORY, without a tag, and no --tag"
    )]
    OwnNamesWithTag {
        /// How many images.
        count: usize,
    },
    /// Several different images and nothing says which one.
    #[error(
        "{source_name} holds {count} different images; choose one with --image, or push them all under their own names with --all: {listing}"
    )]
    SeveralImages {
        /// SOURCE.
        source_name: String,
        /// How many.
        count: usize,
        /// The entries chosen.
        listing: String,
    },
    /// DEST names another digest than the image's.
    #[error("DEST names digest {want}, but the image to push is {have}")]
    DigestMismatch {
        /// DEST's digest.
        want: Digest,
        /// The image's.
        have: Digest,
    },
    /// An extra tag is not a valid tag.
    #[error("--tag: {reason}")]
    BadTag {
        /// Why.
        reason: String,
    },
    /// An image's name cannot be turned into a destination.
    #[error(transparent)]
    Name(#[from] NameError),
    /// An image chosen by name cannot be pushed under its own name.
    #[error("image {digest}: {reason}")]
    Unplaced {
        /// The image.
        digest: Digest,
        /// Why.
        reason: String,
    },
    /// Two different images would get the same tag.
    #[error("two different images would be tagged {registry}/{repository}:{tag}")]
    TagClash {
        /// DEST's registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag.
        tag: String,
    },
    /// A manifest or index cannot be read from the layout.
    #[error("reading {media_type} {digest}")]
    Read {
        /// Its media type.
        media_type: String,
        /// Its digest.
        digest: Digest,
        /// Why.
        source: Box<LayoutError>,
    },
    /// A manifest or index is not JSON.
    #[error("{digest} is not JSON")]
    NotJson {
        /// Its digest.
        digest: Digest,
        /// Why.
        source: serde_json::Error,
    },
    /// An index is not a valid index.
    #[error(transparent)]
    IndexJson(ManifestError),
    /// A manifest is not a valid image manifest.
    #[error("manifest {digest}")]
    Manifest {
        /// Its digest.
        digest: Digest,
        /// Why.
        source: ManifestError,
    },
    /// An index has no manifest for the platform asked for.
    #[error(
        "image {digest} in {source_name} has no manifest for platform {platform} (it lists: {listing})"
    )]
    NoPlatform {
        /// The index.
        digest: Digest,
        /// SOURCE.
        source_name: String,
        /// The platform asked for.
        platform: String,
        /// The platforms it lists.
        listing: String,
    },
    /// Indexes nest too deep.
    #[error("manifest {digest} nests indexes more than 8 deep")]
    TooDeep {
        /// The innermost index.
        digest: Digest,
    },
    /// A blob file of the layout leads outside it through a symbolic link.
    #[error(
        "{} leads through a symbolic link to {}, outside the layout: refusing to read or push it",
        path.display(),
        target.display()
    )]
    OutsideLayout {
        /// The blob's file in the layout.
        path: std::path::PathBuf,
        /// Where it leads.
        target: std::path::PathBuf,
    },
    /// An index lists manifests SOURCE does not hold.
    #[error(
        "index {index} lists {count} manifest{plural} not in {source_name}: {missing}; the registry would refuse the index (push one platform with --platform, or an index of the platforms present with --skip-absent-platforms)",
        plural = if *count == 1 { "" } else { "s" }
    )]
    ChildMissing {
        /// The index.
        index: Digest,
        /// How many of its entries are missing.
        count: usize,
        /// Each missing entry: `linux/arm64 (sha256:…)`, `attestation manifest sha256:… (…)`.
        missing: String,
        /// SOURCE.
        source_name: String,
    },
    /// An index rewritten by the options would list no image.
    #[error("index {digest} in {source_name} would list no image {what}")]
    NothingLeft {
        /// The index.
        digest: Digest,
        /// SOURCE.
        source_name: String,
        /// What was left out.
        what: String,
    },
    /// DEST names the digest of an index the options rewrite.
    #[error("DEST names digest {want}, but the options push a new index {have} in place of it")]
    RewrittenDigest {
        /// DEST's digest.
        want: Digest,
        /// The new index's.
        have: Digest,
    },
}

/// What to do with BuildKit's attestation manifests (provenance, SBOM: index entries with
/// `vnd.docker.reference.type: attestation-manifest` and platform `unknown/unknown`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Attestations {
    /// Push them with the index (the index keeps its digest).
    #[default]
    Keep,
    /// Push a new index without them (a new digest), for registries that refuse them.
    Drop,
}

/// An index pushed as a new index (new digest) because the options left entries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The index SOURCE holds.
    pub original: Digest,
    /// The index pushed in its place.
    pub digest: Digest,
    /// What was left out, one line each (`linux/arm64 (sha256:…): not in SOURCE`).
    pub dropped: Vec<String>,
}

/// Refuse a blob file of `layout` that resolves, through symbolic links (its own or a
/// directory's), to a file outside the layout: pushing it would upload a file the layout only
/// points at (one whose digest someone knows, not its content). A link that stays inside the
/// layout is followed (the bytes are hashed as they are uploaded either way). A blob the layout
/// lacks is no error here: the push says so when it needs it.
fn check_inside(layout: &Layout, digest: &Digest) -> Result<(), PlanError> {
    let path = layout.blob_path(digest);
    let Ok(real) = std::fs::canonicalize(&path) else {
        return Ok(());
    };
    let root = std::fs::canonicalize(layout.root()).unwrap_or_else(|_| layout.root().into());
    if real.starts_with(&root) {
        return Ok(());
    }
    Err(PlanError::OutsideLayout { path, target: real })
}

/// A blob to have in the repository.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Foreign / non-distributable layers need not be uploaded.
    pub non_distributable: bool,
}

/// A manifest or index to PUT by digest.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its bytes, as SOURCE stores them.
    pub bytes: Vec<u8>,
}

/// A tag to PUT.
#[derive(Debug, Clone)]
pub struct Tag {
    /// The tag.
    pub tag: String,
    /// The image it points at.
    pub digest: Digest,
    /// The image's media type.
    pub media_type: String,
    /// The image's bytes.
    pub bytes: Vec<u8>,
}

/// Everything for one repository.
#[derive(Debug, Default)]
pub struct RepoPlan {
    /// The repository.
    pub repository: String,
    /// Its blobs, each once.
    pub blobs: Vec<Blob>,
    /// Its manifests and indexes, children first.
    pub manifests: Vec<Doc>,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Top-level images pushed by digest only.
    pub untagged: Vec<Digest>,
    /// Indexes pushed as new indexes (the options left entries out).
    pub rewrites: Vec<Rewrite>,
    /// Manifests of SOURCE whose `subject` is pushed here (signatures, SBOMs, attestations),
    /// pushed with it (their documents are in [`RepoPlan::manifests`], their blobs in
    /// [`RepoPlan::blobs`]); the registry lists them by subject (referrers API or tag schema).
    pub referrers: Vec<Referrer>,
    seen_blobs: BTreeSet<Digest>,
    seen_docs: BTreeSet<Digest>,
}

/// A manifest that refers to another one through its `subject` (OCI 1.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    /// The manifest it refers to.
    pub subject: Digest,
    /// Its descriptor as a referrers index lists it: media type, digest, size, `artifactType`
    /// (the manifest's, else its config's media type) and the manifest's annotations.
    pub descriptor: Descriptor,
}

/// `sha256-<64 hex>`: a tag of the referrers tag schema, naming the index of the referrers of
/// `sha256:<hex>`.
pub fn referrers_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

fn is_referrers_tag(name: &str) -> bool {
    name.strip_prefix("sha256-")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The referrer a manifest of the layout is, when its JSON has a `subject`.
fn as_referrer(d: &Descriptor, value: &serde_json::Value) -> Option<Referrer> {
    let subject: Digest = value
        .get("subject")?
        .get("digest")?
        .as_str()?
        .parse()
        .ok()?;
    let mut descriptor = Descriptor::new(
        value
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or(&d.media_type),
        d.digest,
        d.size,
    );
    descriptor.artifact_type = value
        .get("artifactType")
        .or_else(|| value.get("config")?.get("mediaType"))
        .and_then(|t| t.as_str())
        .map(str::to_string);
    descriptor.annotations = value
        .get("annotations")
        .and_then(|a| serde_json::from_value(a.clone()).ok());
    Some(Referrer {
        subject,
        descriptor,
    })
}

/// The referrers `index.json` holds: entries whose manifest has a `subject`, and the manifests
/// listed by referrers-tag-schema entries (`sha256-<hex>`: what a copy to an OCI layout that
/// keeps referrers writes). Returns them and the positions of the entries that are only that.
fn layout_referrers(
    layout: &Layout,
    entries: &[Descriptor],
) -> (Vec<(Referrer, Descriptor)>, BTreeSet<usize>) {
    let mut found = Vec::new();
    let mut positions = BTreeSet::new();
    let read = |d: &Descriptor| -> Option<serde_json::Value> {
        let bytes = layout.read_blob(&d.digest).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    for (i, d) in entries.iter().enumerate() {
        let Some(value) = read(d) else { continue };
        if let Some(r) = as_referrer(d, &value) {
            found.push((r, d.clone()));
            positions.insert(i);
        } else if d.annotation(REF_NAME).is_some_and(is_referrers_tag)
            && let Ok(index) = serde_json::from_value::<Index>(value)
        {
            positions.insert(i);
            for child in &index.manifests {
                if let Some(r) = read(child).and_then(|v| as_referrer(child, &v)) {
                    found.push((r, child.clone()));
                }
            }
        }
    }
    (found, positions)
}

/// The whole push: what goes to each repository.
#[derive(Debug)]
pub struct PushPlan {
    /// The repositories, in push order.
    pub repos: Vec<RepoPlan>,
    /// Referrers of SOURCE left out because their subject is not pushed (another image, or an
    /// image pushed under a new digest): each referrer and its subject.
    pub unpushed_referrers: Vec<(Digest, Digest)>,
    /// With `all`: every image chosen, as SOURCE names it, and where it goes (or why not).
    pub images: Vec<PlannedImage>,
}

/// What to push, as the options say it.
#[derive(Debug, Clone, Copy)]
pub struct Choice<'a> {
    /// Image selectors (`--image`).
    pub selectors: &'a [String],
    /// Every image under its own name (`--all`).
    pub all: bool,
    /// Tags besides DEST's (`--tag`).
    pub extra_tags: &'a [String],
    /// Only this platform of a multi-platform image.
    pub platform: Option<&'a str>,
    /// An index listing manifests SOURCE does not hold is pushed as a new index of those it
    /// holds (instead of being refused).
    pub skip_absent: bool,
    /// Keep or drop attestation manifests.
    pub attestations: Attestations,
    /// How images pushed under their own names are named under DEST (`all`).
    pub naming: Naming<'a>,
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

fn listing<'a>(entries: impl IntoIterator<Item = &'a (usize, &'a Descriptor)>) -> String {
    entries
        .into_iter()
        .map(|(i, d)| describe(*i, d))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A push target: repository, tag (`None`: by digest only), and the image.
type Target<'a> = (String, Option<String>, &'a Descriptor);

/// The entries of index.json the selectors choose (all of them without selectors), in the order
/// the selectors name them: the one `--image` selector of every command
/// ([`layerlift_manifest::selector`]); `@N` counts every entry of index.json.
fn choose<'a>(
    entries: &[(usize, &'a Descriptor)],
    selectors: &[String],
    source: &str,
) -> Result<Vec<(usize, &'a Descriptor)>, PlanError> {
    let chosen = select(entries.len(), selectors, |sel, k| {
        let (position, d) = entries[k];
        sel.matches_entry(position, d)
    })
    .map_err(|e| match e {
        SelectorError::NoMatch { selector } => PlanError::NoSuchImage {
            selector,
            source_name: source.to_string(),
            listing: listing(entries),
        },
        invalid @ SelectorError::Invalid { .. } => PlanError::BadSelector(invalid),
    })?;
    Ok(chosen.into_iter().map(|k| entries[k]).collect())
}

/// Each chosen image under its own name (`--all`, or several images chosen), named as
/// `choice.naming` says; with `--all`, what cannot be pushed is left out (listed in the returned
/// images), else it is an error.
fn own_name_targets<'a>(
    layout: &Layout,
    dest: &Reference,
    chosen: &[(usize, &'a Descriptor)],
    choice: Choice<'_>,
) -> Result<(Vec<Target<'a>>, Vec<PlannedImage>), PlanError> {
    let mut targets = Vec::new();
    let mut images = Vec::new();
    for (_, d) in chosen {
        let name = d.annotation(REF_NAME).or_else(|| entry_name(d));
        let mut digests = vec![d.digest];
        if name.is_none_or(layerlift_manifest::mapping::is_placeholder_name)
            && let Some(config) = config_digest(layout, d)
        {
            digests.insert(0, config);
        }
        let placement = place(dest, name, &digests, choice.naming);
        match &placement {
            Placement::Tagged {
                repository, tag, ..
            } => targets.push((repository.clone(), Some(tag.clone()), *d)),
            Placement::Untagged { repository } => targets.push((repository.clone(), None, *d)),
            Placement::LeftOut(out) if !choice.all => {
                return Err(PlanError::Unplaced {
                    digest: d.digest,
                    reason: out.reason.clone(),
                });
            }
            Placement::LeftOut(_) => {}
        }
        images.push(PlannedImage {
            name: name.map(str::to_string),
            digest: d.digest,
            placement,
        });
    }
    Ok((targets, images))
}

/// The config digest of an image manifest entry (an unnamed image's ID, what rules for it match).
fn config_digest(layout: &Layout, d: &Descriptor) -> Option<Digest> {
    let bytes = layout.read_blob(&d.digest).ok()?;
    let m: Manifest = parse_json("image manifest", &bytes).ok()?;
    Some(m.config.digest)
}

/// The one chosen image under DEST's tag, the extra tags, or `latest`.
fn dest_targets<'a>(
    dest: &Reference,
    chosen: &[(usize, &'a Descriptor)],
    extra_tags: &[String],
    source: &str,
) -> Result<Vec<Target<'a>>, PlanError> {
    let digests: BTreeSet<Digest> = chosen.iter().map(|(_, d)| d.digest).collect();
    if digests.len() > 1 {
        return Err(PlanError::SeveralImages {
            source_name: source.to_string(),
            count: digests.len(),
            listing: listing(chosen),
        });
    }
    let d = chosen[0].1;
    if let Some(want) = dest.digest
        && want != d.digest
    {
        return Err(PlanError::DigestMismatch {
            want,
            have: d.digest,
        });
    }
    let mut tags: Vec<String> = dest.tag.iter().cloned().collect();
    for t in extra_tags {
        layerlift_registry::reference::validate_tag(t)
            .map_err(|reason| PlanError::BadTag { reason })?;
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    if tags.is_empty() && dest.digest.is_none() {
        tags.push("latest".into());
    }
    let mut targets = Vec::new();
    if tags.is_empty() {
        targets.push((dest.repository.clone(), None, d));
    }
    for t in tags {
        targets.push((dest.repository.clone(), Some(t), d));
    }
    Ok(targets)
}

impl PushPlan {
    /// The push of `layout`; `source` is how messages name it (the archive, for an archive read
    /// into a temporary layout).
    pub fn build(
        layout: &Layout,
        source: &str,
        dest: &Reference,
        choice: Choice<'_>,
    ) -> Result<Self, PlanError> {
        let index = layout.index().map_err(|e| PlanError::Index {
            source_name: source.to_string(),
            source: Box::new(e),
        })?;
        if index.manifests.is_empty() {
            return Err(PlanError::Empty {
                source_name: source.to_string(),
            });
        }
        // Referrers go with their subject, not as images of their own, unless chosen by name
        // (`--image`), or `--all` pushes every entry under its own name, or SOURCE holds nothing
        // else.
        let (referrers, only_referrers) = layout_referrers(layout, &index.manifests);
        let all: Vec<(usize, &Descriptor)> = index.manifests.iter().enumerate().collect();
        let mut entries: Vec<(usize, &Descriptor)> = all
            .iter()
            .filter(|(i, _)| !only_referrers.contains(i))
            .copied()
            .collect();
        if entries.is_empty() || choice.all || !choice.selectors.is_empty() {
            entries = all;
        }
        let chosen = choose(&entries, choice.selectors, source)?;
        // Several different images chosen with --image: each goes under its own name, as with
        // --all (DEST cannot give one tag to all of them).
        let distinct: BTreeSet<Digest> = chosen.iter().map(|(_, d)| d.digest).collect();
        let each_own_name = choice.all || (!choice.selectors.is_empty() && distinct.len() > 1);
        let (targets, images) = if each_own_name {
            if dest.tag.is_some() || dest.digest.is_some() || !choice.extra_tags.is_empty() {
                return Err(PlanError::OwnNamesWithTag {
                    count: distinct.len(),
                });
            }
            own_name_targets(layout, dest, &chosen, choice)?
        } else {
            (
                dest_targets(dest, &chosen, choice.extra_tags, source)?,
                Vec::new(),
            )
        };
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
            repos[idx].add(layout, source, dest, tag, d, choice)?;
        }
        for rp in &mut repos {
            rp.add_referrers(layout, source, &referrers)?;
        }
        let mut unpushed_referrers = Vec::new();
        for (r, d) in &referrers {
            let pushed = repos.iter().any(|rp| rp.seen_docs.contains(&d.digest));
            if !pushed && !unpushed_referrers.contains(&(d.digest, r.subject)) {
                unpushed_referrers.push((d.digest, r.subject));
            }
        }
        for blob in repos.iter().flat_map(|r| &r.blobs) {
            check_inside(layout, &blob.digest)?;
        }
        Ok(PushPlan {
            repos,
            unpushed_referrers,
            images,
        })
    }
}

impl RepoPlan {
    /// Add the referrers of what this repository gets (and theirs, transitively).
    fn add_referrers(
        &mut self,
        layout: &Layout,
        source: &str,
        referrers: &[(Referrer, Descriptor)],
    ) -> Result<(), PlanError> {
        loop {
            let mut added = false;
            for (r, d) in referrers {
                if self.seen_docs.contains(&r.subject) && !self.seen_docs.contains(&d.digest) {
                    walk(layout, source, self, d, 0)?;
                    self.referrers.push(r.clone());
                    added = true;
                }
            }
            if !added {
                return Ok(());
            }
        }
    }

    /// Add image `d` (narrowed to `platform`), tagged `tag` or by digest only.
    fn add(
        &mut self,
        layout: &Layout,
        source: &str,
        dest: &Reference,
        tag: Option<String>,
        d: &Descriptor,
        choice: Choice<'_>,
    ) -> Result<(), PlanError> {
        let narrowed;
        let d = match choice.platform {
            Some(p) => {
                narrowed = narrow(layout, source, d, p)?;
                &narrowed
            }
            None => d,
        };
        let (bytes, value) = read_doc(layout, d)?;
        let rewritten = rewrite(layout, source, d, &bytes, &value, choice)?;
        let (d, top) = match rewritten {
            Some((descriptor, new_bytes, rewrite)) => {
                if let Some(want) = dest.digest
                    && want == rewrite.original
                {
                    return Err(PlanError::RewrittenDigest {
                        want,
                        have: rewrite.digest,
                    });
                }
                if !self.rewrites.contains(&rewrite) {
                    self.rewrites.push(rewrite);
                }
                let value = serde_json::from_slice(&new_bytes).map_err(|e| PlanError::NotJson {
                    digest: descriptor.digest,
                    source: e,
                })?;
                let top = walk_doc(layout, source, self, &descriptor, new_bytes, value, 0)?;
                (descriptor, top)
            }
            None => (
                d.clone(),
                walk_doc(layout, source, self, d, bytes, value, 0)?,
            ),
        };
        let d = &d;
        match tag {
            Some(tag) => {
                if let Some(other) = self.tags.iter().find(|t| t.tag == tag)
                    && other.digest != d.digest
                {
                    return Err(PlanError::TagClash {
                        registry: dest.registry.clone(),
                        repository: self.repository.clone(),
                        tag,
                    });
                }
                if !self.tags.iter().any(|t| t.tag == tag) {
                    self.tags.push(Tag {
                        tag,
                        digest: top.digest,
                        media_type: top.media_type,
                        bytes: top.bytes,
                    });
                }
            }
            None => {
                if !self.untagged.contains(&d.digest) {
                    self.untagged.push(d.digest);
                }
            }
        }
        Ok(())
    }
}

/// A manifest or index of the layout, and its JSON.
fn read_doc(layout: &Layout, d: &Descriptor) -> Result<(Vec<u8>, serde_json::Value), PlanError> {
    check_inside(layout, &d.digest)?;
    let bytes = layout.read_blob(&d.digest).map_err(|e| PlanError::Read {
        media_type: d.media_type.clone(),
        digest: d.digest,
        source: Box::new(e),
    })?;
    let value = serde_json::from_slice(&bytes).map_err(|e| PlanError::NotJson {
        digest: d.digest,
        source: e,
    })?;
    Ok((bytes, value))
}

/// With `--platform`: an index is replaced by its manifest for `platform` (`os/arch[/variant]`;
/// `linux/arm64` matches `linux/arm64/v8`); an image manifest is kept.
fn narrow(
    layout: &Layout,
    source: &str,
    d: &Descriptor,
    platform: &str,
) -> Result<Descriptor, PlanError> {
    let (bytes, value) = read_doc(layout, d)?;
    if value.get("manifests").is_none() {
        return Ok(d.clone());
    }
    let index: Index = parse_json("image index", &bytes).map_err(PlanError::IndexJson)?;
    let found = index.manifests.iter().find(|m| {
        m.platform
            .as_ref()
            .is_some_and(|p| platform_matches(&p.to_string(), platform))
            && layout.has_blob(&m.digest)
    });
    match found {
        Some(m) => Ok(m.clone()),
        None => Err(PlanError::NoPlatform {
            digest: d.digest,
            source_name: source.to_string(),
            platform: platform.to_string(),
            listing: index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref().map(|p| p.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Is this index entry a BuildKit attestation manifest?
fn is_attestation(d: &Descriptor) -> bool {
    d.annotation(REFERENCE_TYPE) == Some(ATTESTATION_MANIFEST)
}

fn entry_label(d: &Descriptor) -> String {
    let platform = d
        .platform
        .as_ref()
        .map_or("no platform".to_string(), |p| p.to_string());
    if is_attestation(d) {
        format!("attestation manifest {} ({platform})", d.digest)
    } else {
        format!("{platform} ({})", d.digest)
    }
}

/// The index `d` (bytes and JSON as read) as the options want it pushed: `None` when it is pushed
/// as it is; else its new descriptor, bytes and what was left out. Entries left out: attestation
/// manifests with [`Attestations::Drop`]; with `skip_absent`, manifests SOURCE does not hold and
/// the attestation manifests about them. Everything else of the index (its media type,
/// annotations, the entries kept and their order) is kept.
fn rewrite(
    layout: &Layout,
    source: &str,
    d: &Descriptor,
    bytes: &[u8],
    value: &serde_json::Value,
    choice: Choice<'_>,
) -> Result<Option<(Descriptor, Vec<u8>, Rewrite)>, PlanError> {
    if value.get("manifests").is_none()
        || (!choice.skip_absent && choice.attestations == Attestations::Keep)
    {
        return Ok(None);
    }
    let mut index: Index = parse_json("image index", bytes).map_err(PlanError::IndexJson)?;
    let is_doc = |m: &Descriptor| {
        media_types::is_index(&m.media_type) || media_types::is_manifest(&m.media_type)
    };
    let absent: BTreeSet<Digest> = index
        .manifests
        .iter()
        .filter(|m| choice.skip_absent && is_doc(m) && !layout.has_blob(&m.digest))
        .map(|m| m.digest)
        .collect();
    let mut dropped = Vec::new();
    index.manifests.retain(|m| {
        let why = if absent.contains(&m.digest) {
            Some(format!("not in {source}"))
        } else if is_attestation(m) && choice.attestations == Attestations::Drop {
            Some("--attestations drop".to_string())
        } else if is_attestation(m)
            && m.annotation(REFERENCE_DIGEST)
                .and_then(|r| r.parse::<Digest>().ok())
                .is_some_and(|r| absent.contains(&r))
        {
            Some(format!("its image is not in {source}"))
        } else {
            None
        };
        match why {
            Some(why) => {
                dropped.push(format!("{}: {why}", entry_label(m)));
                false
            }
            None => true,
        }
    });
    if dropped.is_empty() {
        return Ok(None);
    }
    if !index.manifests.iter().any(|m| !is_attestation(m)) {
        return Err(PlanError::NothingLeft {
            digest: d.digest,
            source_name: source.to_string(),
            what: format!("(left out: {})", dropped.join("; ")),
        });
    }
    let new_bytes = serde_json::to_vec(&index).map_err(|e| PlanError::NotJson {
        digest: d.digest,
        source: e,
    })?;
    let digest = Digest::of(&new_bytes);
    let mut descriptor = d.clone();
    descriptor.digest = digest;
    descriptor.size = new_bytes.len() as u64;
    Ok(Some((
        descriptor,
        new_bytes,
        Rewrite {
            original: d.digest,
            digest,
            dropped,
        },
    )))
}

/// Collect the blobs and documents under `d` (children first); returns `d`'s own document.
fn walk(
    layout: &Layout,
    source: &str,
    rp: &mut RepoPlan,
    d: &Descriptor,
    depth: usize,
) -> Result<Doc, PlanError> {
    if depth > 8 {
        return Err(PlanError::TooDeep { digest: d.digest });
    }
    let (bytes, value) = read_doc(layout, d)?;
    walk_doc(layout, source, rp, d, bytes, value, depth)
}

/// [`walk`] with `d`'s document already read (or made: a rewritten index).
fn walk_doc(
    layout: &Layout,
    source: &str,
    rp: &mut RepoPlan,
    d: &Descriptor,
    bytes: Vec<u8>,
    value: serde_json::Value,
    depth: usize,
) -> Result<Doc, PlanError> {
    let own_type = value.get("mediaType").and_then(|v| v.as_str());
    let media_type = match own_type {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => d.media_type.clone(),
    };
    let is_index = media_types::is_index(&media_type)
        || (media_type.is_empty() && value.get("manifests").is_some());
    if is_index {
        let idx: Index = parse_json("image index", &bytes).map_err(PlanError::IndexJson)?;
        let is_doc = |child: &Descriptor| {
            media_types::is_index(&child.media_type)
                || media_types::is_manifest(&child.media_type)
                || child.media_type.ends_with("+json") && layout.has_blob(&child.digest)
        };
        let missing: Vec<String> = idx
            .manifests
            .iter()
            .filter(|c| is_doc(c) && !layout.has_blob(&c.digest))
            .map(entry_label)
            .collect();
        if !missing.is_empty() {
            return Err(PlanError::ChildMissing {
                index: d.digest,
                count: missing.len(),
                missing: missing.join(", "),
                source_name: source.to_string(),
            });
        }
        for child in &idx.manifests {
            if is_doc(child) {
                walk(layout, source, rp, child, depth + 1)?;
            } else {
                add_blob(rp, child);
            }
        }
    } else {
        let m: Manifest =
            parse_json("image manifest", &bytes).map_err(|e| PlanError::Manifest {
                digest: d.digest,
                source: e,
            })?;
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

    fn entry(name: &str, seed: &[u8]) -> Descriptor {
        let mut d: Descriptor = serde_json::from_value(serde_json::json!({
            "mediaType": layerlift_manifest::media_types::OCI_MANIFEST,
            "digest": layerlift_manifest::Digest::of(seed).to_string(),
            "size": 1,
        }))
        .unwrap();
        d.annotations
            .get_or_insert_default()
            .insert(REF_NAME.to_string(), name.to_string());
        d
    }

    #[test]
    fn selectors_choose_by_name_position_or_digest_each_image_once() {
        let a = entry("app:1", b"a");
        let b = entry("docker.io/library/busybox:latest", b"b");
        let entries = [(0, &a), (1, &b)];
        let positions = |sel: &[&str]| -> Result<Vec<usize>, PlanError> {
            let sel: Vec<String> = sel.iter().map(|s| s.to_string()).collect();
            Ok(choose(&entries, &sel, "x")?
                .iter()
                .map(|(i, _)| *i)
                .collect())
        };
        assert_eq!(positions(&[]).unwrap(), vec![0, 1]);
        assert_eq!(positions(&["busybox"]).unwrap(), vec![1]);
        assert_eq!(positions(&["@1", "app:1"]).unwrap(), vec![1, 0]);
        assert_eq!(positions(&[&b.digest.to_string()]).unwrap(), vec![1]);
        // The same image twice is chosen once, and is no error.
        assert_eq!(positions(&["@0", "app:1"]).unwrap(), vec![0]);
        assert!(matches!(
            positions(&["nothing"]),
            Err(PlanError::NoSuchImage { .. })
        ));
        assert!(matches!(positions(&["@x"]), Err(PlanError::BadSelector(_))));
    }

    #[test]
    fn referrers_tags() {
        let d = Digest::of(b"image");
        let tag = referrers_tag(&d);
        assert_eq!(tag, format!("sha256-{}", d.hex()));
        assert!(is_referrers_tag(&tag));
        assert!(!is_referrers_tag("sha256-abc"));
        assert!(!is_referrers_tag(&format!("{tag}.meta")));
        assert!(!is_referrers_tag("latest"));
    }

    /// An index of amd64 (present), arm64 (absent) and an attestation manifest for each (amd64's
    /// present, arm64's absent), with an annotation of its own.
    fn partial_index(layout: &Layout) -> (Descriptor, Vec<u8>, [Digest; 4]) {
        let amd64 = layout.write_blob(b"amd64 manifest").unwrap();
        let att_amd64 = layout.write_blob(b"amd64 attestation").unwrap();
        let arm64 = Digest::of(b"arm64 manifest");
        let att_arm64 = Digest::of(b"arm64 attestation");
        let entry = |d: &Digest, arch: &str, about: Option<&Digest>| {
            let mut v = serde_json::json!({
                "mediaType": media_types::OCI_MANIFEST,
                "digest": d.to_string(),
                "size": 1,
                "platform": {"os": if about.is_some() { "unknown" } else { "linux" }, "architecture": arch},
            });
            if let Some(about) = about {
                v["annotations"] = serde_json::json!({
                    REFERENCE_TYPE: ATTESTATION_MANIFEST,
                    REFERENCE_DIGEST: about.to_string(),
                });
            }
            v
        };
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": [
                entry(&amd64, "amd64", None),
                entry(&arm64, "arm64", None),
                entry(&att_amd64, "unknown", Some(&amd64)),
                entry(&att_arm64, "unknown", Some(&arm64)),
            ],
            "annotations": {"org.opencontainers.image.created": "2026-12-06T00:00:00Z"},
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        let digest = layout.write_blob(&bytes).unwrap();
        let d = Descriptor::new(media_types::OCI_INDEX, digest, bytes.len() as u64);
        (d, bytes, [amd64, arm64, att_amd64, att_arm64])
    }

    #[test]
    fn rewrites_leave_out_what_the_options_say_and_keep_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path().join("oci")).unwrap();
        let (d, bytes, [amd64, arm64, att_amd64, _]) = partial_index(&layout);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let choice = |skip_absent, attestations| Choice {
            selectors: &[],
            all: false,
            extra_tags: &[],
            platform: None,
            skip_absent,
            attestations,
            naming: Naming::default(),
        };
        let kept = |skip, att| -> Option<(Vec<Digest>, Rewrite, serde_json::Value)> {
            let (desc, new, rw) =
                rewrite(&layout, "src", &d, &bytes, &value, choice(skip, att)).unwrap()?;
            assert_eq!(desc.digest, Digest::of(&new));
            assert_eq!(rw.original, d.digest);
            assert_eq!(rw.digest, desc.digest);
            let v: serde_json::Value = serde_json::from_slice(&new).unwrap();
            let index: Index = serde_json::from_slice(&new).unwrap();
            Some((index.manifests.iter().map(|m| m.digest).collect(), rw, v))
        };
        assert!(
            kept(false, Attestations::Keep).is_none(),
            "no option: as it is"
        );
        let (digests, rw, v) = kept(true, Attestations::Keep).unwrap();
        assert_eq!(digests, [amd64, att_amd64]);
        assert_eq!(rw.dropped.len(), 2, "{:?}", rw.dropped);
        assert_eq!(v["mediaType"], media_types::OCI_INDEX);
        assert_eq!(
            v["annotations"]["org.opencontainers.image.created"],
            "2026-12-06T00:00:00Z"
        );
        let (digests, _, _) = kept(true, Attestations::Drop).unwrap();
        assert_eq!(digests, [amd64]);
        let (digests, _, _) = kept(false, Attestations::Drop).unwrap();
        assert_eq!(
            digests,
            [amd64, arm64],
            "drop alone leaves the absent platform listed"
        );
    }
}
