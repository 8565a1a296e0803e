//! The journal of unfinished chunked uploads, so that a push that was killed or lost its network
//! resumes with the next run: the session URL of every chunked upload in progress is recorded
//! under `CACHE/uploads-v1/` (one small file per registry, repository and blob, written to a
//! temporary name and renamed), the next run asks the registry how far that session got and sends
//! only the rest, and a finished upload removes its entry. Kept in the cache directory, never
//! beside the source: pushing must not change the layout it reads.
//!
//! A recorded session is only a hint: the registry says how many bytes it holds (or that the
//! session is gone, and the upload starts again). Session URLs carry no credentials, and one on
//! another origin than the registry's is dropped, never resumed.

use layerlift_manifest::Digest;
use layerlift_registry::Url;
use std::path::{Path, PathBuf};

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

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

    /// The session a previous run recorded for this blob, when it is on `origin` (the
    /// registry's own scheme, host and port: the only place its credentials go). An entry that is
    /// not a URL or names another origin (a journal written by someone else, or a registry that
    /// moved to https) is removed.
    pub fn get(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        origin: &Url,
    ) -> Option<Url> {
        let path = self.file(registry, repository, digest);
        let text = std::fs::read_to_string(&path).ok()?;
        match Url::parse(text.trim()) {
            Ok(url) if same_origin(&url, origin) => Some(url),
            _ => {
                let _ = std::fs::remove_file(&path);
                None
            }
        }
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
        let origin = Url::parse("http://r:5000/").unwrap();
        let get = |reg: &str, repo: &str| s.get(reg, repo, &d, &origin).map(String::from);
        assert_eq!(get("r:5000", "app"), None);
        s.put(
            "r:5000",
            "app",
            &d,
            "http://r:5000/v2/app/blobs/uploads/u1?_state=x",
        );
        assert_eq!(
            get("r:5000", "app").as_deref(),
            Some("http://r:5000/v2/app/blobs/uploads/u1?_state=x")
        );
        assert_eq!(get("r:5000", "other"), None);
        assert_eq!(get("r:5001", "app"), None);
        s.put(
            "r:5000",
            "app",
            &d,
            "http://r:5000/v2/app/blobs/uploads/u1?_state=y",
        );
        assert!(get("r:5000", "app").unwrap().ends_with("=y"));
        s.remove("r:5000", "app", &d);
        assert_eq!(get("r:5000", "app"), None);
        // Something that is not a URL is ignored.
        s.put("r:5000", "app", &d, "file:///etc/passwd");
        assert_eq!(get("r:5000", "app"), None);
    }

    /// Credentials go only to the registry's origin: a recorded session on another host, port or
    /// scheme is never resumed (the request would carry them there), and its entry is removed.
    #[test]
    fn a_session_on_another_origin_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Sessions::new(tmp.path());
        let d = Digest::of(b"blob");
        let origin = Url::parse("https://127.0.0.1:5000/").unwrap();
        for other in [
            "https://127.0.0.2:5000/v2/app/blobs/uploads/u1",
            "https://127.0.0.1:5001/v2/app/blobs/uploads/u1",
            "http://127.0.0.1:5000/v2/app/blobs/uploads/u1",
        ] {
            s.put("127.0.0.1:5000", "app", &d, other);
            assert_eq!(s.get("127.0.0.1:5000", "app", &d, &origin), None, "{other}");
            assert!(
                !s.file("127.0.0.1:5000", "app", &d).exists(),
                "{other}: entry kept"
            );
        }
        s.put(
            "127.0.0.1:5000",
            "app",
            &d,
            "https://127.0.0.1:5000/v2/app/blobs/uploads/u1",
        );
        assert!(s.get("127.0.0.1:5000", "app", &d, &origin).is_some());
    }
}
