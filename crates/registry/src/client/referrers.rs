//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>`, which a registry that has it
//! answers with an image index of the manifests whose `subject` is that digest (and fills by
//! itself as such manifests are pushed). A registry without it (distribution 2.8) answers 404, and
//! a client keeps the referrers tag schema instead (an index tagged `sha256-<hex>`).

use super::Client;
use super::http::{Req, status_error};
use crate::error::Error;
use crate::method::Method;
use layerlift_manifest::Digest;

impl Client {
    /// The referrers index of `subject` in `repo` (its exact bytes) when the registry has the
    /// referrers API; `None` when it answers 404 (no API). A 200 that is not an image index is
    /// taken as no API too (some registries answer unknown paths with a page).
    pub fn referrers(&self, repo: &str, subject: &Digest) -> Result<Option<Vec<u8>>, Error> {
        let url = self.api_url(&format!("v2/{repo}/referrers/{subject}"));
        self.retrying(None, |_| {
            let resp = self.send(
                &Req::new(Method::Get, url.clone())
                    .header("Accept", "application/vnd.oci.image.index.v1+json"),
            )?;
            match resp.status {
                200 => {
                    let is_index = resp
                        .header("content-type")
                        .is_some_and(|t| t.starts_with("application/vnd.oci.image.index.v1+json"));
                    Ok(is_index.then_some(resp.body))
                }
                404 | 405 => Ok(None),
                _ => Err(status_error(Method::Get, &resp)),
            }
        })
    }
}
