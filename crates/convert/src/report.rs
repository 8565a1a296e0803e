//! [`Report`]: what a conversion did, image by image and layer by layer. It serialises (serde,
//! camelCase keys) to the JSON summary `layerlift-convert --json` prints.

use crate::error::ConvertError;
use layerlift_layers::Compression;
use layerlift_manifest::convert::{Format, drop_compressed_bytes_annotations};
use layerlift_manifest::{Descriptor, Digest};
use serde::{Serialize, Serializer};
use std::path::{Path, PathBuf};

/// What [`convert`](crate::convert) did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The source given.
    #[serde(serialize_with = "display_path")]
    pub input: PathBuf,
    /// The layout written (the source when in place).
    #[serde(serialize_with = "display_path")]
    pub output: PathBuf,
    /// The source layout itself was converted (or an archive was unpacked into the destination
    /// and converted there).
    pub in_place: bool,
    /// Target compression.
    #[serde(serialize_with = "compression_name")]
    pub compression: Compression,
    /// The level used; `None` without compression.
    pub level: Option<i32>,
    /// Target manifest format; `None`: each image kept its own (`"keep"` in JSON).
    #[serde(serialize_with = "format_name")]
    pub format: Option<Format>,
    /// Encoder threads used.
    pub threads: usize,
    /// The `index.json` entries converted, in index order.
    pub images: Vec<ImageReport>,
    /// Every distinct layer converted, in the order the images reach them.
    pub layers: Vec<LayerReport>,
    /// Blobs removed because only the old images used them.
    pub removed_blobs: usize,
    /// The [`Options::source_date_epoch`](crate::Options::source_date_epoch) applied.
    pub source_date_epoch: Option<u64>,
    /// Configs rewritten by the epoch (so those image IDs changed).
    pub configs_rewritten: usize,
    /// Wall-clock time of the whole conversion.
    pub seconds: f64,
    /// Removing the blobs only the old images used failed (the conversion itself is done and
    /// published; only unreferenced blobs were left behind). Not serialised.
    #[serde(skip)]
    pub cleanup_error: Option<ConvertError>,
}

impl Report {
    /// How many layers ended with `action`.
    pub fn count(&self, action: Action) -> usize {
        self.layers.iter().filter(|l| l.action == action).count()
    }

    /// [`source_date_epoch`](Self::source_date_epoch) as an RFC 3339 time (`2001-09-09T01:46:40Z`);
    /// `None` without one, or past year 9999.
    pub fn source_date_epoch_rfc3339(&self) -> Option<String> {
        self.source_date_epoch
            .and_then(crate::config_time::epoch_time)
            .map(|t| t.to_string())
    }
}

/// One sentence: how many images and layers, what was encoded and kept, and whether image IDs
/// changed (`3 image(s) into out in 1.2 s: 9 layer(s), 4 encoded to gzip, 5 kept`).
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} image(s) into {} in {:.1} s: {} layer(s), {} encoded to {}, {} kept",
            self.images.len(),
            self.output.display(),
            self.seconds,
            self.layers.len(),
            self.count(Action::Encoded),
            self.compression.name(),
            self.count(Action::Kept),
        )?;
        let foreign = self.count(Action::Foreign);
        if foreign > 0 {
            write!(f, ", {foreign} foreign kept as described")?;
        }
        if self.configs_rewritten > 0 {
            write!(
                f,
                "; times clamped to {}: {} config(s) rewritten, so the image IDs changed",
                self.source_date_epoch_rfc3339().unwrap_or_default(),
                self.configs_rewritten
            )?;
        }
        Ok(())
    }
}

/// One converted `index.json` entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageReport {
    /// Its position in `index.json` (from 0).
    pub entry: usize,
    /// Its `org.opencontainers.image.ref.name`.
    pub name: Option<String>,
    /// What it pointed at.
    pub from: Blob,
    /// What it points at now.
    pub to: Blob,
    /// Whether the entry's digest changed.
    pub changed: bool,
}

/// A blob as a descriptor names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

impl From<&Descriptor> for Blob {
    fn from(d: &Descriptor) -> Self {
        Blob {
            media_type: d.media_type.clone(),
            digest: d.digest,
            size: d.size,
        }
    }
}

/// A source layer: its descriptor and its stored compression as detected from its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceLayer {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Detected compression; `None` for foreign layers (not read).
    #[serde(serialize_with = "optional_compression_name")]
    pub compression: Option<Compression>,
}

/// One converted layer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerReport {
    /// The layer as the source described it.
    pub from: SourceLayer,
    /// The layer as the result describes it.
    pub to: Blob,
    /// Its diff_id in the source config.
    pub diff_id: Digest,
    /// Its new diff_id, when it changed (times clamped by the epoch).
    pub new_diff_id: Option<Digest>,
    /// What was done.
    pub action: Action,
    /// Time spent on it.
    pub seconds: f64,
}

/// What happened to a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Stored bytes kept (already in the target compression), their diff_id checked.
    Kept,
    /// Decoded, checked and encoded to the target.
    Encoded,
    /// Foreign (non-distributable): the descriptor is kept as it says, the blob not read.
    Foreign,
}

fn display_path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&p.display())
}

fn compression_name<S: Serializer>(c: &Compression, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.name())
}

fn optional_compression_name<S: Serializer>(
    c: &Option<Compression>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_some(c.name()),
        None => s.serialize_none(),
    }
}

fn format_name<S: Serializer>(f: &Option<Format>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(f.map(Format::name).unwrap_or("keep"))
}

/// What a converted layer became (cached by source digest and format: images share layers).
#[derive(Debug, Clone)]
pub(crate) struct LayerDone {
    /// The diff_id of the layer as stored now (differs from the old one when times were clamped).
    pub diff_id: Digest,
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub reencoded: bool,
}

impl LayerDone {
    /// The descriptor of the converted layer, annotations of the source's kept (except the ones
    /// that describe compressed bytes that are no longer there).
    pub fn descriptor(&self, source: &Descriptor) -> Descriptor {
        let mut to = Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest,
            size: self.size,
            ..source.clone()
        };
        if self.reencoded {
            drop_compressed_bytes_annotations(&mut to);
        }
        to
    }
}
