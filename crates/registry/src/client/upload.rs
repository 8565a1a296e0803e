//! Blob uploads: monolithic (`POST` then one `PUT ?digest=`) and chunked (`PATCH` with
//! `Content-Range`) with resume from the offset the registry reports after a break. The header
//! arithmetic of resuming (`Range` answers) lives here too. Streamed uploads are in `stream.rs`.

use super::Client;
use super::http::{Req, ReqBody, Resp, resolve_location, status_error};
use super::source::BlobSource;
use crate::error::{Error, RegistryErrorBody, display_url};
use layerlift_manifest::Digest;
use std::time::Duration;
use url::Url;

/// How to upload blobs.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Upload in PATCH chunks of this size (None: monolithic unless the blob is larger than
    /// `max_single_upload`).
    pub chunk_size: Option<u64>,
    /// Blobs larger than this go up in chunks of `default_chunk_size`.
    pub max_single_upload: u64,
    /// The chunk size for blobs larger than `max_single_upload`.
    pub default_chunk_size: u64,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            chunk_size: None,
            max_single_upload: u64::MAX,
            default_chunk_size: 64 << 20,
        }
    }
}

/// What happens during an upload, for progress and `--json`.
#[derive(Debug, Clone)]
pub enum UploadEvent {
    /// Bytes of the blob sent so far in this attempt (monotonic within an attempt).
    Progress {
        /// Bytes sent.
        sent: u64,
    },
    /// A request failed and will be retried after `delay`.
    Retry {
        /// Which attempt failed (1 is the first).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// What went wrong.
        error: String,
    },
    /// A chunked upload continues from `offset` instead of starting again.
    Resumed {
        /// The offset the upload continues from.
        offset: u64,
    },
    /// A chunked upload's session is now at this URL: a later run can resume it
    /// ([`Client::upload_blob`] with it as `session`) if this one is cut off.
    Session {
        /// The session's URL.
        location: Url,
    },
}

/// The registry forgot an upload session (404, `BLOB_UPLOAD_UNKNOWN`: restarted, expired, or a
/// load balancer sent us to another instance). Transient: the retry opens a new session.
pub(super) fn session_lost(method: &'static str, resp: &Resp) -> Error {
    let body = RegistryErrorBody::parse(&resp.body);
    Error::Transport {
        method,
        url: display_url(&resp.url),
        reason: format!("the registry lost the upload session (HTTP 404{body}); starting it again"),
        transient: true,
        refused: false,
    }
}

/// `Range: 0-<end>` → the next offset (`end + 1`); `0-0` on an empty session means 0 only when
/// nothing was sent, which callers know.
pub(crate) fn parse_range_end(v: &str) -> Option<u64> {
    let v = v.trim().trim_start_matches("bytes=");
    let (_, end) = v.split_once('-')?;
    end.trim().parse::<u64>().ok()
}

/// Where a chunked upload continues after a PATCH of `len` bytes at `offset`: after the end of the
/// registry's `Range`, or after the chunk when there is none.
/// An answer that acknowledges nothing new would make the upload loop forever, and one beyond the
/// chunk would skip bytes: both are protocol errors.
pub(crate) fn offset_after_patch(
    range: Option<&str>,
    offset: u64,
    len: u64,
) -> Result<u64, String> {
    let Some(end) = range.and_then(parse_range_end) else {
        return Ok(offset + len);
    };
    match end.checked_add(1) {
        Some(next) if next > offset && next <= offset + len => Ok(next),
        _ => Err(format!(
            "after a PATCH of bytes {offset}-{}, the registry's Range says it holds 0-{end}",
            offset + len - 1
        )),
    }
}

/// Where an upload session resumes, from the `Range` of `GET <session>`; `None` starts again.
pub(crate) fn resume_offset(range: Option<&str>) -> Option<u64> {
    match range.and_then(parse_range_end) {
        // `0-0` is what distribution says for an empty session as well as for one byte.
        Some(0) => Some(0),
        Some(end) => end.checked_add(1),
        None => None,
    }
}

/// Where a broken chunked upload resumes in the same session, given the offset the registry had
/// acknowledged before the break, the offset its upload status names now, and the offset of a
/// PATCH it refused with 416 just before (if any); `None` starts a new session.
///
/// - Status `0`: `Range: 0-0` is what distribution says for an empty session and for one byte
///   held alike. After bytes were acknowledged it can only be one byte: resume at 1. With nothing
///   acknowledged (a session from a failed mount or an earlier run) it cannot be told: start a new
///   session, which costs at most that byte. (Resuming at 0 on a session holding one byte makes
///   distribution append the chunk after it.)
/// - A status naming the offset the registry has just refused would loop until retries run out:
///   start a new session.
pub(crate) fn resume_point(acknowledged: u64, status: u64, refused: Option<u64>) -> Option<u64> {
    let offset = match status {
        0 if acknowledged >= 1 => 1,
        0 => return None,
        n => n,
    };
    (refused != Some(offset)).then_some(offset)
}

impl Client {
    /// `POST /v2/<repo>/blobs/uploads/` → the session URL and the registry's minimum chunk.
    pub(super) fn start_upload(&self, repo: &str) -> Result<(Url, u64), Error> {
        let url = self.api_url(&format!("v2/{repo}/blobs/uploads/"));
        let resp = self.send(&Req::new("POST", url))?;
        if resp.status != 202 {
            return Err(status_error("POST", &resp));
        }
        let loc = self.location(&resp, "POST")?;
        let min = resp
            .header("oci-chunk-min-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Ok((loc, min))
    }

    pub(super) fn with_digest(loc: &Url, digest: &Digest) -> Url {
        let mut u = loc.clone();
        u.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        u
    }

    /// Upload a blob into `repo` (the caller checked it is absent). `session` is an upload URL
    /// the registry already opened (from a mount that did not mount).
    pub fn upload_blob(
        &self,
        repo: &str,
        src: &dyn BlobSource,
        opts: &UploadOptions,
        session: Option<Url>,
        events: &(dyn Fn(UploadEvent) + Sync),
    ) -> Result<(), Error> {
        let size = src.size();
        let chunk = match opts.chunk_size {
            Some(c) => Some(c.max(1)),
            None if size > opts.max_single_upload => Some(opts.default_chunk_size.max(1)),
            None => None,
        };
        let on_retry = |attempt: u32, e: &Error, delay: Duration| {
            events(UploadEvent::Retry {
                attempt,
                delay,
                error: e.to_string(),
            })
        };
        match chunk {
            None => {
                let mut session = session;
                self.retrying(Some(&on_retry), |_| {
                    let loc = match session.take() {
                        Some(l) => l,
                        None => self.start_upload(repo)?.0,
                    };
                    self.put_monolithic(&loc, src, events)
                })
            }
            Some(chunk) => self.upload_chunked(repo, src, chunk, session, events, &on_retry),
        }
    }

    pub(super) fn put_monolithic(
        &self,
        loc: &Url,
        src: &dyn BlobSource,
        events: &(dyn Fn(UploadEvent) + Sync),
    ) -> Result<(), Error> {
        let digest = src.digest();
        let progress = |sent: u64| events(UploadEvent::Progress { sent });
        let req = Req::new("PUT", Self::with_digest(loc, &digest))
            .header("Content-Type", "application/octet-stream")
            .body(ReqBody::Source {
                src,
                offset: 0,
                len: src.size(),
                progress: Some(&progress),
            });
        let resp = self.send(&req)?;
        if resp.status == 404 {
            return Err(session_lost("PUT", &resp));
        }
        if resp.status != 201 && resp.status != 204 && resp.status != 200 {
            return Err(status_error("PUT", &resp));
        }
        self.check_digest(&resp, &digest)
    }

    pub(super) fn upload_chunked(
        &self,
        repo: &str,
        src: &dyn BlobSource,
        chunk: u64,
        session: Option<Url>,
        events: &(dyn Fn(UploadEvent) + Sync),
        on_retry: &dyn Fn(u32, &Error, Duration),
    ) -> Result<(), Error> {
        let size = src.size();
        let digest = src.digest();
        // (location, next offset, minimum chunk)
        // A session handed in (a failed mount's, or one a killed run recorded) may hold bytes
        // already: ask the registry where it stands before sending anything.
        let mut broken = session.is_some();
        let mut state: Option<(Url, u64, u64)> = session.map(|l| (l, 0, 0));
        // Bytes the registry has accepted, summed over every session of this blob (a session the
        // registry loses restarts at 0, and what it accepted then was progress too): whenever it
        // grows, the retry budget starts again, so that it bounds each failing request, not the
        // blob. What bounds the blob is the bytes: sending it `max_attempts` times over is enough.
        let accepted = std::cell::Cell::new(0u64);
        // The offset of the PATCH the registry refused with 416 (see `resume_point`).
        let mut refused_at: Option<u64> = None;
        let sent_limit = size
            .max(1)
            .saturating_mul(u64::from(self.retry.max_attempts));
        self.retrying_progress(Some(on_retry), Some(&accepted), |_| {
            if broken {
                broken = false;
                // Ask the registry how much it has; resume there, or start again.
                state = match state.take() {
                    Some((loc, acked, min)) => match self.upload_status(&loc) {
                        Ok(Some((loc, offset))) if offset <= size => {
                            match resume_point(acked, offset, refused_at.take()) {
                                Some(offset) => {
                                    if offset > 0 {
                                        events(UploadEvent::Resumed { offset });
                                    }
                                    Some((loc, offset, min))
                                }
                                None => None,
                            }
                        }
                        _ => None,
                    },
                    None => None,
                };
            }
            let (mut loc, mut offset, min) = match state.take() {
                Some(s) => s,
                None => {
                    if accepted.get() >= sent_limit {
                        return Err(Error::Transport {
                            method: "POST",
                            url: display_url(&self.api_url(&format!("v2/{repo}/blobs/uploads/"))),
                            reason: format!(
                                "gave up: the registry lost this blob's upload sessions after \
                                 accepting {} bytes of its {size}",
                                accepted.get()
                            ),
                            transient: false,
                            refused: false,
                        });
                    }
                    let (l, m) = self.start_upload(repo)?;
                    events(UploadEvent::Session {
                        location: l.clone(),
                    });
                    (l, 0, m)
                }
            };
            let chunk = chunk.max(min);
            while offset < size {
                let len = chunk.min(size - offset);
                let base = offset;
                let progress = |sent: u64| events(UploadEvent::Progress { sent: base + sent });
                let req = Req::new("PATCH", loc.clone())
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Range", format!("{}-{}", offset, offset + len - 1))
                    .body(ReqBody::Source {
                        src,
                        offset,
                        len,
                        progress: Some(&progress),
                    });
                let resp = match self.send(&req) {
                    Ok(r) if r.status == 202 || r.status == 201 || r.status == 204 => r,
                    Ok(r) if r.status == 404 => {
                        // Session gone: the next attempt starts a new one.
                        return Err(session_lost("PATCH", &r));
                    }
                    Ok(r) => {
                        let e = status_error("PATCH", &r);
                        if e.is_transient() || r.status == 416 {
                            broken = true;
                            state = Some((loc, offset, min));
                            if r.status == 416 {
                                refused_at = Some(offset);
                                return Err(Error::Transport {
                                    method: "PATCH",
                                    url: display_url(&r.url),
                                    reason: "registry refused the chunk's range (416)".into(),
                                    transient: true,
                                    refused: false,
                                });
                            }
                        }
                        return Err(e);
                    }
                    Err(e) => {
                        if e.is_transient() {
                            broken = true;
                            state = Some((loc, offset, min));
                        }
                        return Err(e);
                    }
                };
                if let Some(l) = resp.header("location") {
                    loc = resolve_location(&resp.url, l).map_err(|e| Error::Protocol {
                        method: "PATCH",
                        url: display_url(&resp.url),
                        reason: format!("Location `{l}` is not a URL: {e}"),
                    })?;
                }
                offset =
                    offset_after_patch(resp.header("range"), offset, len).map_err(|reason| {
                        Error::Protocol {
                            method: "PATCH",
                            url: display_url(&resp.url),
                            reason,
                        }
                    })?;
                accepted.set(accepted.get() + offset.saturating_sub(base));
                events(UploadEvent::Session {
                    location: loc.clone(),
                });
            }
            let req = Req::new("PUT", Self::with_digest(&loc, &digest));
            let resp = self.send(&req)?;
            if resp.status == 404 {
                return Err(session_lost("PUT", &resp));
            }
            if resp.status != 201 && resp.status != 204 && resp.status != 200 {
                let e = status_error("PUT", &resp);
                if e.is_transient() {
                    broken = true;
                    state = Some((loc, offset, min));
                }
                return Err(e);
            }
            self.check_digest(&resp, &digest)
        })
    }

    /// `GET <upload>` → the newest Location and the next offset, if the session still exists.
    pub(super) fn upload_status(&self, loc: &Url) -> Result<Option<(Url, u64)>, Error> {
        let resp = self.send(&Req::new("GET", loc.clone()))?;
        if resp.status != 204 && resp.status != 200 {
            return Ok(None);
        }
        let Some(next) = resume_offset(resp.header("range")) else {
            return Ok(None);
        };
        let loc = match resp.header("location") {
            Some(_) => self.location(&resp, "GET")?,
            None => loc.clone(),
        };
        Ok(Some((loc, next)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range_end("0-99"), Some(99));
        assert_eq!(parse_range_end("bytes=0-4"), Some(4));
        assert_eq!(parse_range_end("junk"), None);
    }

    /// Found by fuzz/fuzz_targets/upload_headers.rs (fuzz/regressions/upload_headers/).
    #[test]
    fn range_answers_must_make_progress_within_the_chunk() {
        assert_eq!(offset_after_patch(None, 10, 5), Ok(15));
        assert_eq!(offset_after_patch(Some("0-14"), 10, 5), Ok(15));
        assert_eq!(offset_after_patch(Some("bytes=0-11"), 10, 5), Ok(12));
        // No progress: the upload would send the same chunk for ever.
        assert!(offset_after_patch(Some("0-9"), 10, 5).is_err());
        assert!(offset_after_patch(Some("0-0"), 10, 5).is_err());
        // More than was sent.
        assert!(offset_after_patch(Some("0-15"), 10, 5).is_err());
        // `end + 1` overflowed (a panic in debug builds, offset 0 in release).
        assert!(offset_after_patch(Some("0-18446744073709551615"), 10, 5).is_err());
        assert_eq!(resume_offset(Some("0-18446744073709551615")), None);
        assert_eq!(resume_offset(Some("0-0")), Some(0));
        assert_eq!(resume_offset(Some("0-99")), Some(100));
        assert_eq!(resume_offset(Some("junk")), None);
    }

    #[test]
    fn location_resolution() {
        let base = Url::parse("https://r.example/v2/a/blobs/uploads/").unwrap();
        assert_eq!(
            base.join("/v2/a/blobs/uploads/u1?_state=x")
                .unwrap()
                .as_str(),
            "https://r.example/v2/a/blobs/uploads/u1?_state=x"
        );
        assert_eq!(
            base.join("u2").unwrap().as_str(),
            "https://r.example/v2/a/blobs/uploads/u2"
        );
        assert_eq!(
            base.join("/artifacts-uploads/namespaces/p/u3")
                .unwrap()
                .as_str(),
            "https://r.example/artifacts-uploads/namespaces/p/u3"
        );
        let loc = Url::parse("https://r.example/up/u1?_state=x").unwrap();
        let d = Digest::of(b"");
        assert_eq!(
            Client::with_digest(&loc, &d).as_str(),
            format!(
                "https://r.example/up/u1?_state=x&digest=sha256%3A{}",
                d.hex()
            )
        );
    }

    /// Found with docker-registry: `Range: 0-0` (one byte held) resumed at 0, and the registry
    /// appended the chunk after its byte. A status naming an offset just refused with 416 would
    /// loop until retries run out.
    #[test]
    fn resume_points() {
        assert_eq!(resume_point(4000, 4000, None), Some(4000));
        assert_eq!(resume_point(4000, 2000, None), Some(2000));
        // `0-0`: one byte after bytes were acknowledged; unknown (a new session) otherwise.
        assert_eq!(resume_point(1, 0, None), Some(1));
        assert_eq!(resume_point(5, 0, None), Some(1));
        assert_eq!(resume_point(0, 0, None), None);
        // The registry names the offset it refused.
        assert_eq!(resume_point(5, 5, Some(5)), None);
        assert_eq!(resume_point(1, 0, Some(1)), None);
        assert_eq!(resume_point(5, 6, Some(5)), Some(6));
    }
}
