//! [`Report`]: what a pack wrote. It serialises (serde, camelCase keys) to the JSON summary
//! `layerlift-pack --json` prints.

use crate::options::ArchiveFormat;
use layerlift_manifest::Digest;
use serde::{Serialize, Serializer};
use std::path::{Path, PathBuf};

/// What [`pack_to_file`](crate::pack_to_file) or [`pack_to_writer`](crate::pack_to_writer) did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The layout read.
    #[serde(serialize_with = "display_path")]
    pub layout: PathBuf,
    /// The archive written; `None` for a stream (`"-"` in JSON).
    #[serde(serialize_with = "output_name")]
    pub output: Option<PathBuf>,
    /// Its format.
    pub format: ArchiveFormat,
    /// The images written, in archive order.
    pub images: Vec<PackedImage>,
    /// Blobs written (each once).
    pub blobs: usize,
    /// Layers written decompressed (a docker-archive holds no zstd layers).
    pub decompressed: usize,
    /// Blobs of other platforms of an index that the layout does not hold (`--format oci`: the
    /// index is kept whole, those blobs are left out as in the layout).
    pub missing: usize,
    /// Size of the archive in bytes.
    pub bytes: u64,
    /// Wall-clock time.
    pub seconds: f64,
}

/// One image of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackedImage {
    /// Its names: `RepoTags` (docker), or the `index.json` entry's ref.name (oci).
    pub names: Vec<String>,
    /// The manifest (docker) or the `index.json` entry (oci: a manifest or an index).
    pub digest: Digest,
    /// The config, whose digest is the image ID (docker; `None` for an index).
    pub config: Option<Digest>,
    /// The platform taken from an index (docker), when the entry was one.
    pub platform: Option<String>,
}

/// One sentence: `2 image(s) into out.tar (docker, 12 blobs, 5.2 MB) in 0.3 s`.
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let out = match &self.output {
            Some(p) => p.display().to_string(),
            None => "standard output".to_string(),
        };
        write!(
            f,
            "{} image(s) into {out} ({}, {} blob(s), {} bytes) in {:.1} s",
            self.images.len(),
            self.format.name(),
            self.blobs,
            self.bytes,
            self.seconds
        )?;
        if self.decompressed > 0 {
            write!(
                f,
                "; {} layer(s) decompressed (docker load before Docker 23 reads no zstd)",
                self.decompressed
            )?;
        }
        if self.missing > 0 {
            write!(
                f,
                "; {} blob(s) of other platforms are not in the layout and were left out",
                self.missing
            )?;
        }
        Ok(())
    }
}

fn display_path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&p.display())
}

fn output_name<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.collect_str(&p.display()),
        None => s.serialize_str("-"),
    }
}
