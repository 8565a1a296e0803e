//! A directory of archives as SOURCE of a push under own names (`all`): an air-gapped site's folder
//! of `docker save` bundles. A directory is one when it is not itself an image (no `oci-layout`,
//! `index.json`, `manifest.json`, `repositories` or `version`: an OCI layout, an extracted save or
//! a `dir:` transport directory) and holds regular files; each file is then its own SOURCE, read
//! once, in name order. A file that does not start like an archive is listed with the reason and
//! not read further.

use crate::error::PushError;
use std::path::{Path, PathBuf};

/// Entries that make a directory an image of its own rather than a folder of archives.
const IMAGE_MARKERS: &[&str] = &[
    "oci-layout",
    "index.json",
    "manifest.json",
    "repositories",
    "version",
];

/// One file of a directory of archives.
#[derive(Debug)]
pub struct FolderEntry {
    /// The file.
    pub path: PathBuf,
    /// `Err` when it does not start like an archive (it is not pushed).
    pub archive: Result<(), PushError>,
}

/// The files of `dir` when it is a directory of archives (see the module docs), in name order;
/// `None` when it is not one (not a directory, or an image directory of its own). Hidden files
/// (`.name`) and subdirectories are not looked at.
pub fn archives_in(dir: &Path) -> Result<Option<Vec<FolderEntry>>, PushError> {
    if !dir.is_dir() || IMAGE_MARKERS.iter().any(|m| dir.join(m).exists()) {
        return Ok(None);
    }
    let open = |e| PushError::Open {
        source_name: dir.display().to_string(),
        source: e,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(open)? {
        let entry = entry.map_err(open)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push(entry.path());
        }
    }
    if files.is_empty() {
        return Ok(None);
    }
    files.sort();
    Ok(Some(
        files
            .into_iter()
            .map(|path| {
                let archive = crate::source::check_source(&path.display().to_string());
                FolderEntry { path, archive }
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_archives_and_image_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(archives_in(dir.path()).unwrap().is_none(), "empty");
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_cksum();
        tar.append_data(&mut h, "manifest.json", &b"[]"[..])
            .unwrap();
        std::fs::write(dir.path().join("b.tar"), tar.into_inner().unwrap()).unwrap();
        std::fs::write(dir.path().join("a.txt"), b"checksums").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let found = archives_in(dir.path()).unwrap().unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.txt", "b.tar"]);
        assert!(found[0].archive.is_err());
        assert!(found[1].archive.is_ok());
        // An image directory of its own is not a folder of archives.
        std::fs::write(dir.path().join("manifest.json"), b"[]").unwrap();
        assert!(archives_in(dir.path()).unwrap().is_none());
    }
}
