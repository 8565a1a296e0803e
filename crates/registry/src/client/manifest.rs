//! Manifests on the registry: `PUT` with the exact bytes (retried while the registry races
//! another push of a blob it names), `HEAD` for the digest a tag resolves to, and `GET`.

use super::Client;
use super::http::{Req, ReqBody, status_error};
use crate::error::{Error, ErrorCode, display_url};
use crate::method::Method;
use layerlift_manifest::Digest;
use std::time::Duration;

/// A manifest PUT refused because a blob it names is unknown (400 `MANIFEST_BLOB_UNKNOWN`,
/// `BLOB_UNKNOWN`, or distribution's `DIGEST_INVALID … blob unknown`).
pub(super) fn blob_unknown(e: &Error) -> bool {
    let Error::Status {
        status: 400, body, ..
    } = e
    else {
        return false;
    };
    let message = body.message.as_deref().unwrap_or_default();
    match body.code {
        Some(ErrorCode::ManifestBlobUnknown | ErrorCode::BlobUnknown) => true,
        Some(ErrorCode::DigestInvalid) => message.contains("blob unknown"),
        _ => false,
    }
}

pub(super) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

impl Client {
    /// `PUT /v2/<repo>/manifests/<reference>` with exactly `bytes` and `Content-Type`
    /// `media_type`. Returns the digest the registry confirmed.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, Error> {
        let digest = Digest::of(bytes);
        let url = self.api_url(&format!("v2/{repo}/manifests/{reference}"));
        let mut races = 0;
        self.retrying(None, |_| {
            loop {
                let req = Req::new(Method::Put, url.clone())
                    .header("Content-Type", media_type)
                    .body(ReqBody::Bytes(bytes));
                let resp = self.send(&req)?;
                if !(200..=299).contains(&resp.status) {
                    let e = status_error(Method::Put, &resp);
                    // "Blob unknown" for a blob this push has just uploaded or found: the registry is
                    // racing another push of the same blob (docker-registry 2.8 rewrites a
                    // repository's blob link in place when an upload of a blob it already has
                    // completes). Wait and try again, a few times.
                    if races < 4 && blob_unknown(&e) {
                        races += 1;
                        std::thread::sleep(Duration::from_millis(100 << races));
                        continue;
                    }
                    return Err(e);
                }
                self.check_digest(&resp, &digest)?;
                return Ok(digest);
            }
        })
    }

    /// The digest `reference` (tag or digest) resolves to, or None when absent: the
    /// `Docker-Content-Digest` of a `HEAD`, else the digest of the bytes a `GET` serves.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<Digest>, Error> {
        let url = self.api_url(&format!("v2/{repo}/manifests/{reference}"));
        self.retrying(None, |_| {
            let resp =
                self.send(&Req::new(Method::Head, url.clone()).header("Accept", ACCEPT_MANIFESTS))?;
            match resp.status {
                200 => match resp.header("docker-content-digest") {
                    Some(d) => d
                        .trim()
                        .parse::<Digest>()
                        .map(Some)
                        .map_err(|e| Error::Protocol {
                            method: Method::Head,
                            url: display_url(&resp.url),
                            reason: e.to_string(),
                        }),
                    // The header is optional (the spec says SHOULD): hash what a GET serves.
                    None => {
                        let resp = self.send(
                            &Req::new(Method::Get, url.clone()).header("Accept", ACCEPT_MANIFESTS),
                        )?;
                        match resp.status {
                            200 => Ok(Some(Digest::of(&resp.body))),
                            404 => Ok(None),
                            _ => Err(status_error(Method::Get, &resp)),
                        }
                    }
                },
                404 => Ok(None),
                _ => Err(status_error(Method::Head, &resp)),
            }
        })
    }

    /// `GET` a manifest: its media type and exact bytes.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<(String, Vec<u8>), Error> {
        let url = self.api_url(&format!("v2/{repo}/manifests/{reference}"));
        self.retrying(None, |_| {
            let resp =
                self.send(&Req::new(Method::Get, url.clone()).header("Accept", ACCEPT_MANIFESTS))?;
            if resp.status != 200 {
                return Err(status_error(Method::Get, &resp));
            }
            let mt = resp.header("content-type").unwrap_or_default().to_string();
            Ok((mt, resp.body))
        })
    }
}
