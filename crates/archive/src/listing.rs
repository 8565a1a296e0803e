//! [`Listing`]: what an archive holds, for people (its `Display`: the text `layerlift-unpack --list`
//! prints) and for programs (its `Serialize`: the JSON of `--list --json`).

use crate::model::{ArchiveInfo, Defect, ImageInfo, ManifestInfo};
use bytesize::ByteSize;
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt::{self, Display, Formatter};

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

impl Display for Listing<'_> {
    fn fmt(&self, o: &mut Formatter<'_>) -> fmt::Result {
        let info = self.info;
        let outer = match info.compression.name() {
            "none" => String::new(),
            c => format!(", {c}-compressed"),
        };
        writeln!(o, "{}: {}{outer}", self.name, info.format.name())?;
        writeln!(o, "  written by: {}", info.origin.describe())?;
        writeln!(
            o,
            "  {} entries, {} image(s), {} link(s)",
            info.entries,
            info.images.len(),
            info.links.len()
        )?;
        for &n in self.chosen {
            let img = &info.images[n];
            let names = if img.names.is_empty() {
                "(untagged)".to_string()
            } else {
                img.names.join(", ")
            };
            writeln!(o, "\nimage @{}: {names}", img.position)?;
            let d = &img.descriptor;
            writeln!(o, "  {} {} ({})", d.media_type, d.digest, ByteSize(d.size))?;
            if let Some(p) = &img.parent {
                writeln!(o, "  parent: {p}")?;
            }
            for m in &img.manifests {
                manifest(o, img, m)?;
            }
            defects(o, &img.defects)?;
        }
        if !info.links.is_empty() {
            writeln!(o, "\nlinks:")?;
            for l in &info.links {
                let to = match &l.resolves_to {
                    Ok(p) if *p == l.target => String::new(),
                    Ok(p) => format!("  (= {p})"),
                    Err(e) => format!("  (broken: {e})"),
                };
                writeln!(o, "  {} -> {}  [{}]{to}", l.path, l.target, l.kind)?;
            }
        }
        if !info.defects.is_empty() {
            writeln!(o, "\narchive:")?;
            defects(o, &info.defects)?;
        }
        Ok(())
    }
}

/// One manifest of an image: its platform, config and layers.
fn manifest(o: &mut Formatter<'_>, img: &ImageInfo, m: &ManifestInfo) -> fmt::Result {
    let platform = m.platform.as_deref().unwrap_or("platform unknown");
    let indent = if img.manifests.len() > 1 || m.digest != img.descriptor.digest {
        let state = if m.present {
            ""
        } else {
            "  (not in the archive)"
        };
        let (media_type, digest) = (&m.media_type, &m.digest);
        writeln!(o, "  manifest {platform}: {media_type} {digest}{state}")?;
        "    "
    } else {
        writeln!(o, "  platform: {platform}")?;
        "  "
    };
    if let Some(c) = &m.config {
        let size = ByteSize(c.size);
        writeln!(o, "{indent}config {} ({size}) {}", c.digest, c.media_type)?;
    }
    if !m.layers.is_empty() {
        let total: u64 = m.layers.iter().map(|l| l.descriptor.size).sum();
        let count = m.layers.len();
        writeln!(o, "{indent}layers: {count} ({})", ByteSize(total))?;
    }
    for (i, l) in m.layers.iter().enumerate() {
        let path = l.path.as_deref().unwrap_or("-");
        let via = match &l.resolved {
            Some(r) => format!(" -> {r} (symlink)"),
            None => String::new(),
        };
        let state = if l.present { "" } else { "  NOT IN ARCHIVE" };
        writeln!(o, "{indent}  #{i} {path}{via}{state}")?;
        let unc = l
            .uncompressed_size
            .map(|s| format!(", {} uncompressed", ByteSize(s)))
            .unwrap_or_default();
        let d = &l.descriptor;
        let size = ByteSize(d.size);
        writeln!(
            o,
            "{indent}     {} ({size}{unc}, {})",
            d.digest, l.compression
        )?;
        if let Some(id) = &l.diff_id
            && *id != d.digest
        {
            writeln!(o, "{indent}     diff_id {id}")?;
        }
    }
    Ok(())
}

fn defects(o: &mut Formatter<'_>, defects: &[Defect]) -> fmt::Result {
    for d in defects {
        let tag = if d.fatal { "ERROR" } else { "note" };
        writeln!(o, "  {tag}: {}", d.message)?;
    }
    Ok(())
}
