//! [`Listing`]: what an archive holds, as data: the images chosen of what [`read`](crate::read)
//! found; its `Serialize` is the JSON of `layerlift-unpack --list --json`. The text of `--list` is
//! written by the command line (`crates/cli`), from the same fields.

use crate::model::{ArchiveInfo, ImageInfo};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The archive `name` as [`read`](crate::read) found it, showing the images at the positions
/// `chosen` (all of them, or those [`select`](crate::select) picked).
#[derive(Debug, Clone, Copy)]
pub struct Listing<'a> {
    /// How the archive is named (its path, or `standard input`).
    pub name: &'a str,
    /// What [`read`](crate::read) found.
    pub info: &'a ArchiveInfo,
    /// Positions in `info.images` to show.
    pub chosen: &'a [usize],
}

impl Serialize for Listing<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let info = self.info;
        let images: Vec<&ImageInfo> = self.chosen.iter().map(|&n| &info.images[n]).collect();
        let links: Vec<_> = info
            .links
            .iter()
            .map(|l| {
                serde_json::json!({
                    "path": l.path,
                    "target": l.target,
                    "kind": l.kind,
                    "resolvesTo": l.resolves_to.as_ref().ok(),
                    "error": l.resolves_to.as_ref().err(),
                })
            })
            .collect();
        // Keys in alphabetical order, as serde_json prints a `Value`.
        let mut map = serializer.serialize_map(Some(8))?;
        map.serialize_entry("compression", info.compression.name())?;
        map.serialize_entry("defects", &info.defects)?;
        map.serialize_entry("entries", &info.entries)?;
        map.serialize_entry("era", &info.origin.describe())?;
        map.serialize_entry("format", &info.format)?;
        map.serialize_entry("images", &images)?;
        map.serialize_entry("links", &links)?;
        map.serialize_entry("origin", &info.origin)?;
        map.end()
    }
}

impl<'a> Listing<'a> {
    /// The images to show, in order.
    pub fn images(&self) -> impl Iterator<Item = &'a ImageInfo> + '_ {
        self.chosen.iter().map(|&n| &self.info.images[n])
    }
}
