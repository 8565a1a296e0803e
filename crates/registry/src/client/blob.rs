//! Blobs on the registry: whether one exists (`HEAD`), cross-repository mounts, and reading one
//! (small ones into memory, any size as a stream), verified against its digest.

use super::Client;
use super::http::{Req, Resp, resolve_location, status_error};
use crate::auth::Scope;
use crate::error::{Error, ErrorCode, display_url};
use crate::method::Method;
use layerlift_manifest::Digest;
use std::io::Read;
use url::Url;

/// Result of a cross-repository mount attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountResult {
    /// The registry linked the blob into the repository.
    Mounted,
    /// Not mounted; the registry opened an upload session at this URL instead (or none).
    NotMounted(Option<Url>),
}

impl Client {
    /// `HEAD /v2/<repo>/blobs/<digest>`: true when the registry has the blob. A 401 after the
    /// token refresh reads as "absent" (Docker Hub and Harbor answer so for new repositories).
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool, Error> {
        Ok(self.head_blob(repo, digest)?.is_some())
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`, read as [`Client::blob_exists`] does: the blob's size
    /// (its `Content-Length`) when the registry has it, `None` when it does not; an answer
    /// without `Content-Length` is a protocol error.
    pub fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, Error> {
        let Some(resp) = self.head_blob(repo, digest)? else {
            return Ok(None);
        };
        match resp.header("content-length").map(|v| v.trim().parse()) {
            Some(Ok(n)) => Ok(Some(n)),
            _ => Err(Error::Protocol {
                method: Method::Head,
                url: display_url(&resp.url),
                reason: "the answer has no Content-Length".into(),
            }),
        }
    }

    fn head_blob(&self, repo: &str, digest: &Digest) -> Result<Option<Resp>, Error> {
        let url = self.api_url(&format!("v2/{repo}/blobs/{digest}"));
        self.retrying(None, |_| {
            let resp = self.send(&Req::new(Method::Head, url.clone()))?;
            match resp.status {
                200 => Ok(Some(resp)),
                404 | 401 => Ok(None),
                _ => Err(status_error(Method::Head, &resp)),
            }
        })
    }

    /// Whether the registry says that `repo` does not exist at all: `GET /v2/<repo>/tags/list?n=1`
    /// answered `404 NAME_UNKNOWN` (distribution's answer for a repository that no tag was ever
    /// pushed to; it may still hold the blobs of a push that stopped before its manifest). Any
    /// other answer, and any failure, is `false`.
    pub fn repository_unknown(&self, repo: &str) -> bool {
        let mut url = self.api_url(&format!("v2/{repo}/tags/list"));
        url.query_pairs_mut().append_pair("n", "1");
        match self.retrying(None, |_| self.send(&Req::new(Method::Get, url.clone()))) {
            Ok(resp) => {
                resp.status == 404
                    && status_error(Method::Get, &resp).code() == Some(&ErrorCode::NameUnknown)
            }
            Err(_) => false,
        }
    }

    /// Try to mount `digest` from `from` into `repo`. Any answer but `201`, and any failure that
    /// retries do not mend, reads as "not mounted"; a `201` counts as far as it names the blob
    /// (`mounted`).
    pub fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<MountResult, Error> {
        self.authorize(&[Scope::pull(from)]);
        let mut url = self.api_url(&format!("v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let resp = match self.retrying(None, |_| {
            let r = self.send(&Req::new(Method::Post, url.clone()))?;
            if crate::error::is_retryable_status(r.status) {
                return Err(status_error(Method::Post, &r));
            }
            Ok(r)
        }) {
            Ok(r) => r,
            // A mount is only worth trying: a source the credentials cannot read (Docker Hub's
            // `insufficient_scope`, Harbor's missing project) or a token server that will not
            // say so leaves the ordinary upload.
            Err(e) if !e.is_transient() => return Ok(MountResult::NotMounted(None)),
            Err(e) => return Err(e),
        };
        match resp.status {
            201 => self.mounted(repo, digest, &resp),
            202 => {
                let loc = resp
                    .header("location")
                    .and_then(|l| resolve_location(&resp.url, l).ok());
                Ok(MountResult::NotMounted(loc))
            }
            _ => Ok(MountResult::NotMounted(None)),
        }
    }

    /// What a `201` to a mount linked: the blob when `Docker-Content-Digest` names it, or else
    /// the `Location` does (`…/blobs/<digest>`); one that names another blob mounted nothing we
    /// asked for. An answer that names nothing is checked with a `HEAD` in `repo`.
    fn mounted(&self, repo: &str, digest: &Digest, resp: &Resp) -> Result<MountResult, Error> {
        let named = match (
            resp.header("docker-content-digest"),
            resp.header("location"),
        ) {
            (Some(d), _) => Some(d.trim() == digest.to_string()),
            (None, Some(l)) => Some(
                resolve_location(&resp.url, l)
                    .is_ok_and(|u| u.path().ends_with(&format!("/blobs/{digest}"))),
            ),
            (None, None) => None,
        };
        let held = match named {
            Some(named) => named,
            None => self.blob_exists(repo, digest)?,
        };
        Ok(if held {
            MountResult::Mounted
        } else {
            MountResult::NotMounted(None)
        })
    }

    /// `GET` a small blob (an image config), verified against `digest`. `Ok(None)` when the
    /// registry does not have it. Bodies are capped at 16 MiB.
    pub fn get_small_blob(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        let url = self.api_url(&format!("v2/{repo}/blobs/{digest}"));
        self.retrying(None, |_| {
            let resp = self.send(&Req::new(Method::Get, url.clone()))?;
            match resp.status {
                200 => {}
                404 => return Ok(None),
                _ => return Err(status_error(Method::Get, &resp)),
            }
            let got = Digest::of(&resp.body);
            if got != *digest {
                return Err(Error::DigestMismatch {
                    url: display_url(&resp.url),
                    expected: *digest,
                    got: got.to_string(),
                });
            }
            Ok(Some(resp.body))
        })
    }

    /// `GET` a blob of any size and hand its bytes to `consume` as they arrive; afterwards the
    /// bytes are checked against `digest` (what `consume` left unread is read for that). A failed
    /// attempt is retried from the start with a new reader, so `consume` must start its work
    /// afresh on every call. `Ok(None)` when the registry does not have the blob.
    pub fn read_blob<T>(
        &self,
        repo: &str,
        digest: &Digest,
        mut consume: impl FnMut(&mut dyn Read) -> std::io::Result<T>,
    ) -> Result<Option<T>, Error> {
        let url = self.api_url(&format!("v2/{repo}/blobs/{digest}"));
        self.retrying(None, |_| {
            let resp = self.send(&Req::new(Method::Get, url.clone()).streamed())?;
            let Some(body) = resp.stream else {
                return match resp.status {
                    404 => Ok(None),
                    _ => Err(status_error(Method::Get, &resp)),
                };
            };
            let shown = display_url(&resp.url);
            let io_error = |source: std::io::Error| Error::Io {
                what: "cannot read blob",
                path: shown.clone(),
                source,
            };
            let mut hashing = layerlift_manifest::Sha256Reader::new(body.into_reader());
            let value = consume(&mut hashing).map_err(io_error)?;
            std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io_error)?;
            let (got, _, _) = hashing.finish();
            if got != *digest {
                return Err(Error::DigestMismatch {
                    url: shown,
                    expected: *digest,
                    got: got.to_string(),
                });
            }
            Ok(Some(value))
        })
    }
}
