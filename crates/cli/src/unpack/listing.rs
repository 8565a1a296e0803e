//! The text of `layerlift-unpack --list`: a [`Listing`] (what the archive crate found, as data)
//! worded for a person, sizes in human units.

use bytesize::ByteSize;
use layerlift_archive::{Defect, ImageInfo, Listing, ManifestInfo};
use std::fmt::{self, Display, Formatter};

/// A [`Listing`] as the text `--list` prints.
pub(crate) struct Text<'a>(pub Listing<'a>);

impl Display for Text<'_> {
    fn fmt(&self, o: &mut Formatter<'_>) -> fmt::Result {
        let Text(listing) = self;
        let info = listing.info;
        let outer = match info.compression.name() {
            "none" => String::new(),
            c => format!(", {c}-compressed"),
        };
        writeln!(o, "{}: {}{outer}", listing.name, info.format.name())?;
        writeln!(o, "  written by: {}", info.origin.describe())?;
        writeln!(
            o,
            "  {} entries, {} image(s), {} link(s)",
            info.entries,
            info.images.len(),
            info.links.len()
        )?;
        for img in listing.images() {
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
