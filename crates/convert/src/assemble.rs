//! One multi-platform image from single-platform ones ([`assemble_index`]): the `index.json`
//! entries named NAME, one image manifest per platform (several single-platform archives unpacked
//! into one layout: Jib, ko, kaniko, BuildKit `type=docker`), are replaced by one image index (OCI,
//! or a Docker manifest list) listing each manifest as it is, with the platform its config names.
//! Manifests, configs and layers are not touched, so each platform's digest stays.

use crate::select::{entry_name, select};
use layerlift_layout::{Layout, LayoutError};
use layerlift_manifest::annotations::{IMAGE_NAME, REF_NAME};
use layerlift_manifest::convert::Format;
use layerlift_manifest::{Descriptor, Digest, Index, media_types};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why the images named NAME cannot be made one index.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// The layout cannot be opened or written.
    #[error("{}", path.display())]
    Layout {
        /// The layout.
        path: PathBuf,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// NAME is not a name, or no entry has it.
    #[error("--index {0}")]
    Select(#[from] crate::SelectError),
    /// An entry named NAME is not a single image manifest (an index already, or an artifact).
    #[error(
        "{entry} is a {media_type}, not an image manifest: only single-platform images are put in an index"
    )]
    NotAnImage {
        /// The entry (`app:1 (@0)`).
        entry: String,
        /// Its media type.
        media_type: String,
    },
    /// An image's config names no OS or architecture.
    #[error("{entry}: its config names no os/architecture, so it has no platform in an index")]
    NoPlatform {
        /// The entry.
        entry: String,
    },
    /// Two images of the same platform.
    #[error("{first} and {second} are both {platform}: an index holds one image per platform")]
    SamePlatform {
        /// The platform.
        platform: String,
        /// One entry.
        first: String,
        /// The other.
        second: String,
    },
    /// `--format docker` with an OCI manifest: a Docker manifest list lists Docker manifests.
    #[error(
        "{entry} is an OCI manifest: a Docker manifest list cannot list it (convert it with --format docker first, or make an OCI index)"
    )]
    NotDocker {
        /// The entry.
        entry: String,
    },
    /// A manifest, config or index.json cannot be read, or the index written.
    #[error("{entry}")]
    Read {
        /// The entry read.
        entry: String,
        /// Why.
        #[source]
        source: LayoutError,
    },
}

/// What [`assemble_index`] made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexReport {
    /// The name of the new `index.json` entry.
    pub name: String,
    /// The index.
    pub digest: Digest,
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// Each platform (`os/arch[/variant]`) and its manifest, in `index.json` order.
    pub platforms: Vec<(String, Digest)>,
}

/// Replace the entries of the layout at `path` named `name` (image manifests of different
/// platforms) by one index listing them: an OCI image index, or with `format`
/// [`Format::Docker`] a Docker manifest list (every manifest must then be Docker schema 2);
/// `None` makes a manifest list when every manifest is Docker schema 2, else an OCI index. The
/// new entry keeps the first entry's name annotations. `index.json` is replaced atomically.
pub fn assemble_index(
    path: &Path,
    name: &str,
    format: Option<Format>,
) -> Result<IndexReport, AssembleError> {
    let layout = Layout::open(path).map_err(|source| AssembleError::Layout {
        path: path.to_path_buf(),
        source,
    })?;
    let read = |entry: &str| {
        let entry = entry.to_string();
        move |source| AssembleError::Read { entry, source }
    };
    let index = layout.index().map_err(read("index.json"))?;
    let chosen = select(&index, &[name.to_string()])?;
    let mut children: Vec<Descriptor> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut platforms = Vec::new();
    for &i in &chosen {
        let d = &index.manifests[i];
        let entry = entry_name(d, i);
        if !media_types::is_manifest(&d.media_type) {
            return Err(AssembleError::NotAnImage {
                entry,
                media_type: d.media_type.clone(),
            });
        }
        let platform = layout
            .image_platform(d)
            .map_err(read(&entry))?
            .ok_or_else(|| AssembleError::NoPlatform {
                entry: entry.clone(),
            })?;
        let shown = platform.to_string();
        if let Some(first) = seen.insert(shown.clone(), entry.clone()) {
            return Err(AssembleError::SamePlatform {
                platform: shown,
                first,
                second: entry,
            });
        }
        if format == Some(Format::Docker) && d.media_type != media_types::DOCKER_MANIFEST {
            return Err(AssembleError::NotDocker { entry });
        }
        platforms.push((shown, d.digest));
        let mut child = Descriptor::new(d.media_type.clone(), d.digest, d.size);
        child.platform = Some(platform);
        children.push(child);
    }
    let docker = match format {
        Some(Format::Docker) => true,
        Some(Format::Oci) => false,
        None => children
            .iter()
            .all(|c| c.media_type == media_types::DOCKER_MANIFEST),
    };
    let media_type = if docker {
        media_types::DOCKER_MANIFEST_LIST
    } else {
        media_types::OCI_INDEX
    };
    let new = Index {
        schema_version: 2,
        media_type: Some(media_type.to_string()),
        artifact_type: None,
        manifests: children,
        subject: None,
        annotations: None,
        extra: BTreeMap::new(),
    };
    let bytes = serde_json::to_vec(&new).map_err(|e| AssembleError::Read {
        entry: "the new index".into(),
        source: LayoutError::Serialize(e.to_string()),
    })?;
    let digest = layout.write_blob(&bytes).map_err(read("the new index"))?;
    let first = &index.manifests[chosen[0]];
    let mut entry = Descriptor::new(media_type, digest, bytes.len() as u64);
    for key in [REF_NAME, IMAGE_NAME] {
        if let Some(v) = first.annotation(key) {
            entry
                .annotations
                .get_or_insert_default()
                .insert(key.to_string(), v.to_string());
        }
    }
    let replaced: Vec<Descriptor> = chosen.iter().map(|&i| index.manifests[i].clone()).collect();
    layout
        .update_index(|idx| {
            let at = idx
                .manifests
                .iter()
                .position(|e| replaced.contains(e))
                .unwrap_or(idx.manifests.len());
            idx.manifests.retain(|e| !replaced.contains(e));
            idx.manifests.insert(at.min(idx.manifests.len()), entry);
        })
        .map_err(read("index.json"))?;
    Ok(IndexReport {
        name: name.to_string(),
        digest,
        media_type: media_type.to_string(),
        size: bytes.len() as u64,
        platforms,
    })
}
