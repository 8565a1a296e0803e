//! [`verify_layout`]: check an OCI image layout whole — its structure, every blob against its
//! name, and everything index.json reaches (descriptors' digests and sizes, image layers against
//! their configs' diff_ids). What `layerlift check` reports and the crash-safety tests use to tell a
//! valid layout from a broken one.

use crate::{ArchiveError, Input, label, read};
use layerlift_layout::Layout;
use serde::Serialize;
use std::path::Path;

/// What [`verify_layout`] found. Serialises to the JSON of `layerlift check --json` (without its
/// `layout` key).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// The layout is valid: no problem found.
    pub ok: bool,
    /// Images in index.json.
    pub images: usize,
    /// Blobs hashed and found to match their names.
    pub blobs: usize,
    /// What makes the layout invalid, one line each (a blob whose content is not its name, a
    /// blob under an unsupported digest algorithm, an image whose layers do not match its config).
    pub problems: Vec<String>,
    /// Remarks that do not make it invalid.
    pub notes: Vec<String>,
}

/// Verify the layout `dir`. An error means it could not be read as a layout at all.
pub fn verify_layout(dir: &Path) -> Result<Verification, ArchiveError> {
    Layout::open(dir)?;
    let (info, scan) = read(&Input::Path(dir.to_path_buf()), None)?;
    let mut v = Verification {
        images: info.images.len(),
        ..Verification::default()
    };
    for (path, file) in &scan.files {
        let Some(hex) = path.strip_prefix("blobs/sha256/") else {
            // A blob under another algorithm's directory cannot be verified: say so.
            if let Some((algorithm, _)) = path
                .strip_prefix("blobs/")
                .and_then(|rest| rest.split_once('/'))
            {
                v.problems.push(format!(
                    "{path}: digest algorithm {algorithm} is not supported (layerlift verifies \
                     sha256 only), so this blob is not verified"
                ));
            }
            continue;
        };
        v.blobs += 1;
        if file.digest.hex() != hex {
            let digest = file.digest;
            v.problems.push(format!(
                "{path}: content is {digest}, not what its name says"
            ));
        }
    }
    v.notes
        .extend(info.defects.iter().map(|d| d.message.clone()));
    for img in &info.images {
        let label = label(img);
        for d in &img.defects {
            let line = format!("{label}: {}", d.message);
            if d.fatal {
                v.problems.push(line)
            } else {
                v.notes.push(line)
            }
        }
    }
    v.ok = v.problems.is_empty();
    Ok(v)
}
