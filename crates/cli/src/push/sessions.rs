//! The journal of unfinished chunked uploads, so that a push that was killed or lost its network
//! resumes with the next run: the session URL of every chunked upload in progress is recorded
//! under `CACHE/uploads-v1/` (one small file per registry, repository and blob, written to a
//! temporary name and renamed), the next run asks the registry how far that session got and sends
//! only the rest, and a finished upload removes its entry. Kept in the cache directory, never
//! beside the source: pushing must not change the layout it reads.
//!
//! A recorded session is only a hint: the registry says how many bytes it holds (or that the
//! session is gone, and the upload starts again). Session URLs carry no credentials.

use layerlift_manifest::Digest;
use std::path::{Path, PathBuf};

/// Uploads of one cache directory.
#[derive(Debug, Clone)]
pub struct Sessions {
    dir: PathBuf,
}

impl Sessions {
    /// The journal under the cache directory `cache_dir` (see [`super::cache`]).
    pub fn new(cache_dir: &Path) -> Self {
        Sessions {
            dir: cache_dir.join("uploads-v1"),
        }
    }

    fn file(&self, registry: &str, repository: &str, digest: &Digest) -> PathBuf {
        let key = format!("{registry}\n{repository}\n{digest}");
        self.dir
            .join(format!("{}.url", Digest::of(key.as_bytes()).hex()))
    }

    /// The session a previous run recorded for this blob.
    pub fn get(&self, registry: &str, repository: &str, digest: &Digest) -> Option<String> {
        let text = std::fs::read_to_string(self.file(registry, repository, digest)).ok()?;
        let url = text.trim();
        (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_string())
    }

    /// Record the session now in use. Best effort.
    pub fn put(&self, registry: &str, repository: &str, digest: &Digest, url: &str) {
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let path = self.file(registry, repository, digest);
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        if std::fs::write(&tmp, url).is_err() || std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// The upload finished (or the session is no use): forget it.
    pub fn remove(&self, registry: &str, repository: &str, digest: &Digest) {
        let _ = std::fs::remove_file(self.file(registry, repository, digest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_forgets_sessions_per_registry_repository_and_blob() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Sessions::new(tmp.path());
        let d = Digest::of(b"blob");
        assert_eq!(s.get("r:5000", "app", &d), None);
        s.put(
            "r:5000",
            "app",
            &d,
            "http://r:5000/v2/app/blobs/uploads/u1?_state=x",
        );
        assert_eq!(
            s.get("r:5000", "app", &d).as_deref(),
            Some("http://r:5000/v2/app/blobs/uploads/u1?_state=x")
        );
        assert_eq!(s.get("r:5000", "other", &d), None);
        assert_eq!(s.get("r:5001", "app", &d), None);
        s.put(
            "r:5000",
            "app",
            &d,
            "http://r:5000/v2/app/blobs/uploads/u1?_state=y",
        );
        assert!(s.get("r:5000", "app", &d).unwrap().ends_with("=y"));
        s.remove("r:5000", "app", &d);
        assert_eq!(s.get("r:5000", "app", &d), None);
        // Something that is not a URL is ignored.
        s.put("r:5000", "app", &d, "file:///etc/passwd");
        assert_eq!(s.get("r:5000", "app", &d), None);
    }
}
