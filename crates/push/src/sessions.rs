//! The journal of unfinished chunked uploads, so that a push that was killed or lost its network
//! resumes with the next run: the session URL of every chunked upload in progress is recorded
//! under `CACHE/uploads-v1/` (one small file per registry, repository and blob, mode 0600, written
//! as [`super::cache::write_private`] writes), the next run asks the registry how far that session
//! got and sends only the rest, and a finished upload removes its entry. Kept in the cache
//! directory (checked to be private to this user, [`super::cache::checked_dir`]; not used with
//! `--no-cache`), never beside the source: pushing must not change the layout it reads.
//!
//! A recorded session is only a hint: the registry says how many bytes it holds (or that the
//! session is gone, and the upload starts again). Session URLs carry no credentials; one on
//! another origin than the registry's is never recorded, and one found in the journal is dropped,
//! never resumed.

use crate::cache::{UPLOADS, write_private};
use layerlift_manifest::Digest;
use layerlift_registry::Url;
use std::path::{Path, PathBuf};

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Uploads of one cache directory to one registry.
#[derive(Debug, Clone)]
pub struct Sessions {
    dir: PathBuf,
    /// The registry's origin: sessions elsewhere are not recorded.
    origin: Url,
}

impl Sessions {
    /// The journal under the cache directory `cache_dir` (see [`super::cache`]) of uploads to
    /// the registry at `origin` ([`layerlift_registry::Client::origin`]).
    pub fn new(cache_dir: &Path, origin: Url) -> Self {
        Sessions {
            dir: cache_dir.join(UPLOADS),
            origin,
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

    /// Record the session now in use, when it is on the registry's origin (one elsewhere would
    /// only be dropped by [`Self::get`]: it is not written, and an older entry for the blob is
    /// removed). Best effort.
    pub fn put(&self, registry: &str, repository: &str, digest: &Digest, url: &str) {
        if !Url::parse(url).is_ok_and(|u| same_origin(&u, &self.origin)) {
            self.remove(registry, repository, digest);
            return;
        }
        let path = self.file(registry, repository, digest);
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            let _ = write_private(&self.dir, name, url.as_bytes());
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
    use crate::cache::tests::mode;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn records_and_forgets_sessions_per_registry_repository_and_blob() {
        let tmp = tempfile::tempdir().unwrap();
        let origin = Url::parse("http://r:5000/").unwrap();
        let s = Sessions::new(tmp.path(), origin.clone());
        let d = Digest::of(b"blob");
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
        // Something that is not a URL of the registry is not recorded.
        s.put("r:5000", "app", &d, "file:///etc/passwd");
        assert_eq!(get("r:5000", "app"), None);
    }

    /// Credentials go only to the registry's origin: a session on another host, port or scheme
    /// found in the journal (written by someone else, or before the registry moved) is never
    /// resumed (the request would carry them there), and its entry is removed.
    #[test]
    fn a_session_on_another_origin_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let origin = Url::parse("https://127.0.0.1:5000/").unwrap();
        let s = Sessions::new(tmp.path(), origin.clone());
        let d = Digest::of(b"blob");
        let file = s.file("127.0.0.1:5000", "app", &d);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        for other in [
            "https://127.0.0.2:5000/v2/app/blobs/uploads/u1",
            "https://127.0.0.1:5001/v2/app/blobs/uploads/u1",
            "http://127.0.0.1:5000/v2/app/blobs/uploads/u1",
        ] {
            std::fs::write(&file, other).unwrap();
            assert_eq!(s.get("127.0.0.1:5000", "app", &d, &origin), None, "{other}");
            assert!(!file.exists(), "{other}: entry kept");
        }
        s.put(
            "127.0.0.1:5000",
            "app",
            &d,
            "https://127.0.0.1:5000/v2/app/blobs/uploads/u1",
        );
        assert!(s.get("127.0.0.1:5000", "app", &d, &origin).is_some());
    }

    /// A session on another origin is not written to the journal at all (a registry whose upload
    /// Location names another host): nothing of it is left on disk, and an older entry for the
    /// same blob is removed.
    #[test]
    fn a_session_on_another_origin_is_not_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let origin = Url::parse("https://127.0.0.1:5000/").unwrap();
        let s = Sessions::new(tmp.path(), origin);
        let d = Digest::of(b"blob");
        let file = s.file("127.0.0.1:5000", "app", &d);
        for other in [
            "https://127.0.0.2:5000/v2/app/blobs/uploads/u1",
            "https://127.0.0.1:5001/v2/app/blobs/uploads/u1",
            "http://127.0.0.1:5000/v2/app/blobs/uploads/u1",
        ] {
            s.put(
                "127.0.0.1:5000",
                "app",
                &d,
                "https://127.0.0.1:5000/v2/app/blobs/uploads/u0",
            );
            assert!(file.exists());
            s.put("127.0.0.1:5000", "app", &d, other);
            assert!(!file.exists(), "{other} recorded");
        }
    }

    /// Journal entries are 0600 in a 0700 directory, written through a temporary file of a
    /// random name: a link planted at the name the temporary file used to get is not followed.
    #[test]
    fn journal_entries_are_private_and_not_written_through_links() {
        let tmp = tempfile::tempdir().unwrap();
        let origin = Url::parse("http://r:5000/").unwrap();
        let s = Sessions::new(tmp.path(), origin);
        let d = Digest::of(b"blob");
        let file = s.file("r:5000", "app", &d);
        let dir = file.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let planted = file.with_extension(format!("{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        s.put("r:5000", "app", &d, "http://r:5000/v2/app/blobs/uploads/u1");
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(mode(&file), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
        s.put("r:5000", "app", &d, "http://r:5000/v2/app/blobs/uploads/u1");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
    }
}
