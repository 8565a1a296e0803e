//! Streamed uploads: a blob whose digest is not known before its last byte (a layer being
//! compressed on the way) goes up as it is produced, `POST`, then one `PATCH` with chunked
//! transfer encoding, then `PUT ?digest=` with the digest its producer reports at the end (the
//! producer hashes the bytes anyway; the registry checks them against it). This is the sequence
//! `docker push` uses. What went up is checked before the `PUT` that commits it: the bytes sent
//! must be as many as the producer finished with, and as many as the `PATCH` answer's `Range` says
//! the registry holds; where the answer has no `Range`, the committed blob's size is asked with a
//! `HEAD` afterwards (a registry that does not check digests would otherwise keep a cut blob under
//! the right name). Registries that refuse it (a cap on the request size, no chunked uploads) make the
//! client remember that streams are refused ([`Client::streams_refused`]): the caller uploads
//! such blobs from a file ([`Client::upload_blob`]) instead.

use super::Client;
use super::http::{Counting, MAX_BODY, Req, Resp, status_error, transport_error};
use super::upload::{UploadEvent, parse_range_end};
use crate::error::{Error, display_url};
use crate::method::Method;
use layerlift_manifest::Digest;
use std::io::Read;
use std::sync::atomic::Ordering;
use ureq::http;
use url::Url;

/// A streamed upload that did not complete.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct StreamError {
    /// What failed.
    pub error: Error,
    /// The upload session the registry had opened, if any. It may hold a prefix of the stream:
    /// [`Client::upload_blob`] with it as `session` (chunked) resumes where the registry stands.
    pub session: Option<Url>,
    /// The stream itself failed (the reader's error, not the registry's): the registry is not
    /// to blame for it.
    pub read_failed: bool,
    /// The registry committed the blob under its digest, but holds another number of bytes than
    /// were streamed: it does not verify what it stores, and the blob it holds under that digest
    /// is wrong. Uploading again does not mend that (the registry would say it has the blob).
    pub committed_wrong: bool,
}

impl StreamError {
    /// An authentication failure (which says nothing about streams).
    pub fn is_auth(&self) -> bool {
        matches!(self.error, Error::Unauthorized { .. } | Error::Token { .. })
    }
}

/// What a streamed upload learnt on the way, for its error.
#[derive(Default)]
struct StreamRun {
    /// The session in use.
    session: Option<Url>,
    /// The registry committed the blob (see [`StreamError::committed_wrong`]).
    committed: bool,
}

impl Client {
    /// Whether a streamed upload to this registry failed before (other than for authentication):
    /// then blobs go up from files only.
    pub fn streams_refused(&self) -> bool {
        self.streams_refused.load(Ordering::Relaxed)
    }

    /// Upload a blob whose digest is not known in advance, streaming `reader` (see the module
    /// docs). Once `reader` has ended, `produced` gives the digest and size of what the producer
    /// finished (`None`: the producer failed after all, a failure of the reader); a reader that
    /// gave another number of bytes fails as the reader's failure. Returns the digest and the
    /// size sent.
    ///
    /// `resume` is a session an earlier run of the same stream opened (the producer makes the
    /// same bytes again): the stream continues at the offset the registry holds there, its first
    /// bytes read and not sent ([`UploadEvent::Resumed`]); a session the registry no longer knows
    /// is replaced by a new one. Every session the stream uses is reported
    /// ([`UploadEvent::Session`]) as soon as it is open, so that a run killed in the middle
    /// leaves it for the next.
    pub fn upload_stream(
        &self,
        repo: &str,
        reader: &mut dyn Read,
        produced: &dyn Fn() -> Option<(Digest, u64)>,
        resume: Option<Url>,
        events: &(dyn Fn(UploadEvent) + Sync),
    ) -> Result<(Digest, u64), Box<StreamError>> {
        let progress = |sent| events(UploadEvent::Progress { sent });
        let mut counting = Counting::new(reader, Some(&progress));
        let mut run = StreamRun::default();
        let result = self.stream_to(repo, &mut counting, produced, resume, events, &mut run);
        result.map_err(|error| {
            let e = Box::new(StreamError {
                error,
                session: run.session,
                read_failed: counting.failed,
                committed_wrong: run.committed,
            });
            if !e.read_failed && !e.is_auth() {
                self.streams_refused.store(true, Ordering::Relaxed);
            }
            e
        })
    }

    /// The session to stream into: `resume` where the registry still knows it (the bytes it
    /// holds are read from `counting` and not sent again), else a new one.
    fn stream_session(
        &self,
        repo: &str,
        counting: &mut Counting<'_, &mut dyn Read>,
        resume: Option<Url>,
        events: &(dyn Fn(UploadEvent) + Sync),
    ) -> Result<Url, Error> {
        if let Some(old) = resume
            && let Ok(Some((loc, offset))) = self.retrying(None, |_| self.upload_status(&old))
        {
            let skipped = std::io::copy(&mut (&mut *counting).take(offset), &mut std::io::sink())
                .map_err(|e| Error::Io {
                what: "streaming",
                path: "a blob".into(),
                source: e,
            })?;
            if skipped == offset && offset > 0 {
                events(UploadEvent::Resumed { offset });
            }
            // A stream shorter than what the session holds is not the same stream: the size
            // checks fail it, and the caller uploads the blob from its file.
            return Ok(loc);
        }
        let (loc, _) = self.retrying(None, |_| self.start_upload(repo))?;
        Ok(loc)
    }

    fn stream_to(
        &self,
        repo: &str,
        counting: &mut Counting<'_, &mut dyn Read>,
        produced: &dyn Fn() -> Option<(Digest, u64)>,
        resume: Option<Url>,
        events: &(dyn Fn(UploadEvent) + Sync),
        run: &mut StreamRun,
    ) -> Result<(Digest, u64), Error> {
        let loc = self.stream_session(repo, counting, resume, events)?;
        run.session = Some(loc.clone());
        events(UploadEvent::Session {
            location: loc.clone(),
        });
        let (auth, _) = if self.on_registry_origin(&loc) {
            self.authorization()?
        } else {
            (None, 0)
        };
        let mut builder = http::Request::builder()
            .method(Method::Patch.as_str())
            .uri(loc.as_str())
            .header("Content-Type", "application/octet-stream");
        if let Some(a) = &auth {
            builder = builder.header("Authorization", a.as_str());
        }
        let req = builder
            .body(ureq::SendBody::from_reader(&mut *counting))
            .map_err(|e| Error::Protocol {
                method: Method::Patch,
                url: display_url(&loc),
                reason: e.to_string(),
            })?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| transport_error(Method::Patch, &loc, e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| transport_error(Method::Patch, &loc, e))?;
        let resp = Resp {
            status,
            headers,
            url: loc,
            body,
            stream: None,
        };
        if !(200..=299).contains(&resp.status) {
            return Err(status_error(Method::Patch, &resp));
        }
        let loc = match resp.header("location") {
            Some(_) => self.location(&resp, Method::Patch)?,
            None => resp.url.clone(),
        };
        run.session = Some(loc.clone());
        events(UploadEvent::Session {
            location: loc.clone(),
        });
        let sent = counting.sent;
        // How much of it the registry holds, as it says (`0-0` is also its word for nothing).
        let held = resp
            .header("range")
            .and_then(parse_range_end)
            .map(|end| if sent == 0 { 0 } else { end + 1 });
        if let Some(held) = held
            && held != sent
        {
            return Err(Error::Protocol {
                method: Method::Patch,
                url: display_url(&resp.url),
                reason: format!(
                    "the registry holds {held} bytes of the stream, {sent} were sent (the body was cut on the way)"
                ),
            });
        }
        let Some((digest, size)) = produced() else {
            counting.failed = true;
            return Err(Error::Io {
                what: "streaming",
                path: "a blob".into(),
                source: std::io::Error::other("the blob was not produced to its end"),
            });
        };
        if size != sent {
            counting.failed = true;
            return Err(Error::Io {
                what: "streaming",
                path: format!("the blob {digest}"),
                source: std::io::Error::other(format!(
                    "{sent} bytes were read for a blob of {size} bytes"
                )),
            });
        }
        self.retrying(None, |_| {
            let resp = self.send(&Req::new(Method::Put, Self::with_digest(&loc, &digest)))?;
            if !(200..=299).contains(&resp.status) {
                return Err(status_error(Method::Put, &resp));
            }
            self.check_digest(&resp, &digest)
        })?;
        if held.is_none() {
            // Nothing said how much arrived: ask what was committed.
            let stored = self.blob_size(repo, &digest)?;
            if stored != Some(size) {
                run.committed = stored.is_some();
                return Err(Error::Protocol {
                    method: Method::Head,
                    url: display_url(&self.api_url(&format!("v2/{repo}/blobs/{digest}"))),
                    reason: match stored {
                        Some(n) => format!(
                            "the registry holds {n} bytes under {digest}, {size} were streamed"
                        ),
                        None => format!(
                            "the registry does not hold {digest} after its upload was committed"
                        ),
                    },
                });
            }
        }
        Ok((digest, size))
    }
}
