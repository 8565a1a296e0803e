//! [`Options`]: which archive format to write, which images go in, under which names, and which
//! platform of a multi-platform image a docker-archive holds.

use crate::error::OptionsError;
use layerlift_manifest::{Reference, is_platform};
use serde::Serialize;

/// The kind of archive written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveFormat {
    /// What `docker save` writes and `docker load` / `podman load` read: `manifest.json`
    /// (`Config`, `RepoTags`, `Layers`) and the blobs under `blobs/sha256/`. One platform per
    /// image.
    #[default]
    Docker,
    /// An OCI image layout in a tar (an oci-archive): `oci-layout`, `index.json`, the blobs;
    /// multi-platform indexes kept whole.
    Oci,
}

impl ArchiveFormat {
    /// `docker` or `oci`.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveFormat::Docker => "docker",
            ArchiveFormat::Oci => "oci",
        }
    }
}

/// What to pack. [`Options::default`]: a docker-archive of every image, named as the layout
/// names them, for the machine's platform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// The archive format.
    pub format: ArchiveFormat,
    /// Only these `index.json` entries: a name (`app:1` and `docker.io/library/app:1` name the
    /// same image), a digest, or `@N` (the `--image` selector of every command,
    /// [`layerlift_manifest::selector`]). Empty: every entry.
    pub images: Vec<String>,
    /// Name the one image packed with these names instead of the layout's (`app:1`,
    /// `registry:5000/app:1`): its `RepoTags` (docker), or its `index.json` names (oci).
    pub tags: Vec<String>,
    /// Docker format: the platform (`os/arch[/variant]`) to take from a multi-platform index;
    /// `None`: the machine's ([`layerlift_manifest::host_platform`]).
    pub platform: Option<String>,
}

impl Options {
    /// Check the options against each other, before anything is read.
    pub fn validate(&self) -> Result<(), OptionsError> {
        for tag in &self.tags {
            tag_name(tag)?;
        }
        if let Some(p) = &self.platform {
            if !is_platform(p) {
                return Err(OptionsError::BadPlatform(p.clone()));
            }
            if self.format == ArchiveFormat::Oci {
                return Err(OptionsError::PlatformWithOci);
            }
        }
        Ok(())
    }
}

/// A `--tag` as a parsed reference with a tag and no digest.
pub(crate) fn tag_name(tag: &str) -> Result<Reference, OptionsError> {
    let bad = |reason: &str| OptionsError::BadTag {
        tag: tag.to_string(),
        reason: reason.to_string(),
    };
    let r = Reference::parse(tag).map_err(|e| bad(&e.reason))?;
    if r.digest.is_some() {
        return Err(bad("a digest cannot be a tag"));
    }
    Ok(r)
}
