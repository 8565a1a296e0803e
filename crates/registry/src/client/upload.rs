//! Blob uploads: monolithic (`POST` then one `PUT ?digest=`) and chunked (`PATCH` with
//! `Content-Range`) with resume from the offset the registry reports after a break. The header
//! arithmetic of resuming (`Range` answers) lives here too. Streamed uploads are in `stream.rs`.

use super::Client;
use super::http::{NO_ANSWER, Req, ReqBody, Resp, resolve_location, status_error};
use super::source::BlobSource;
use crate::error::{Error, ErrorCode, RegistryErrorBody, display_url};
use crate::method::Method;
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
/// A chunked upload's session with the registry: where it is and how far it got.
#[derive(Debug, Clone)]
pub(super) struct UploadSession {
    /// The session's URL (the last `Location` the registry gave).
    location: Url,
    /// Bytes the registry has acknowledged: the next chunk starts here.
    offset: u64,
    /// The smallest chunk the registry takes (`OCI-Chunk-Min-Length`), 0 if it said none.
    min_chunk: u64,
}

/// A chunked upload across the attempts of its retry loop.
pub(super) struct Chunked {
    /// The session to go on with, if the last attempt left one.
    session: Option<UploadSession>,
    /// The last attempt failed with the session possibly still good: ask the registry where it
    /// stands before sending more.
    broken: bool,
    /// The offset of the `PATCH` the registry refused with 416 (see [`resume_point`]).
    refused_at: Option<u64>,
}

impl Chunked {
    /// The attempt failed, but `session` may still be good: check it on the next one.
    fn keep(&mut self, session: UploadSession) {
        self.broken = true;
        self.session = Some(session);
    }
}

/// load balancer sent us to another instance). Transient: the retry opens a new session.
pub(super) fn session_lost(method: Method, resp: &Resp) -> Error {
    let body = RegistryErrorBody::parse(&resp.body);
    Error::Transport {
        method,
        url: display_url(&resp.url),
        reason: format!("the registry lost the upload session (HTTP 404{body}); starting it again"),
        transient: true,
        refused: false,
    }
}

/// How many times one blob's upload changes its way (smaller requests, one request instead of
/// chunks) before its error stands.
const MAX_ADAPTATIONS: u32 = 12;

/// The smallest request size a refusal as too large may teach: below it the registry (or what is
/// in front of it) is not taking uploads, whatever their size.
const MIN_LEARNED_CAP: u64 = 64 << 10;

/// A request body refused as too large: `413`, or a `416` whose message says so (GHCR's answer to
/// a `PATCH` over its cap; a plain `416` is a range out of order).
pub(super) fn body_too_large(e: &Error) -> bool {
    match e {
        Error::Status { status: 413, .. } => true,
        Error::Status {
            status: 416, body, ..
        } => body
            .message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("too large")),
        Error::GaveUp { last, .. } => body_too_large(last),
        _ => false,
    }
}

/// A chunked upload the registry refuses for good: a `PATCH` answered with a `4xx` that is not
/// about credentials, a lost session or a range out of order (a part below its minimum, no
/// chunked uploads at all), or a `PATCH` answer that breaks the protocol (a `Range` that does not
/// advance).
pub(super) fn chunks_refused(e: &Error) -> bool {
    match e {
        Error::Status {
            method: Method::Patch,
            status,
            ..
        } => {
            (400..500).contains(status)
                && !matches!(status, 401 | 403 | 404 | 408 | 413 | 416 | 429)
        }
        Error::Protocol {
            method: Method::Patch,
            ..
        } => true,
        Error::GaveUp { last, .. } => chunks_refused(last),
        _ => false,
    }
}

/// A monolithic upload the registry refuses for good: the `PUT` that carries the blob answered
/// `404 BLOB_UNKNOWN` (Artifactory 6 takes blobs only in `PATCH`es).
pub(super) fn monolithic_refused(e: &Error) -> bool {
    match e {
        Error::Status {
            method: Method::Put,
            status: 404,
            ..
        } => e.code() == Some(&ErrorCode::BlobUnknown),
        _ => false,
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
        let resp = self.send(&Req::new(Method::Post, url))?;
        if resp.status != 202 {
            let e = status_error(Method::Post, &resp);
            if resp.status == 404 && e.code() == Some(&ErrorCode::NameUnknown) {
                return Err(self.repository_missing(repo, e));
            }
            return Err(e);
        }
        let loc = self.location(&resp, Method::Post)?;
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
    ///
    /// Registries differ in what uploads they take, so the way adapts, for this blob and (what the
    /// registry told) for the client's later ones:
    /// - a request body refused as too large (`413`, or a `416` whose message says "too large")
    ///   halves the request size, which caps every later request of this client, and the blob
    ///   starts again in chunks of that size;
    /// - a chunked upload the registry refuses for good (a `PATCH` refused with a `4xx` other than
    ///   those, a part too small, a `Range` that does not advance) is abandoned (`DELETE`) and the
    ///   blob sent again in one `PUT`;
    /// - a monolithic upload whose `PUT` is answered `404 BLOB_UNKNOWN` is sent again in chunks
    ///   (of `default_chunk_size`);
    /// - an upload `POST` answered `404 NAME_UNKNOWN`, or cut off without an answer until retries
    ///   run out, is [`Error::RepositoryMissing`].
    pub fn upload_blob(
        &self,
        repo: &str,
        src: &dyn BlobSource,
        opts: &UploadOptions,
        session: Option<Url>,
        events: &(dyn Fn(UploadEvent) + Sync),
    ) -> Result<(), Error> {
        let size = src.size();
        let mut chunk = match opts.chunk_size {
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
        let mut session = session;
        let mut adapted = 0u32;
        loop {
            let cap = self.body_cap();
            if size > cap {
                chunk = Some(chunk.map_or(cap, |c| c.min(cap)));
            }
            let result = match chunk {
                None => self.retrying(Some(&on_retry), |_| {
                    let loc = match session.take() {
                        Some(l) => l,
                        None => self.start_upload(repo)?.0,
                    };
                    self.put_monolithic(&loc, src, events)
                }),
                Some(c) => {
                    self.upload_chunked(repo, src, c.min(cap), session.take(), events, &on_retry)
                }
            };
            let Err(e) = result else {
                return Ok(());
            };
            adapted += 1;
            if adapted > MAX_ADAPTATIONS {
                return Err(e);
            }
            let sent = match chunk {
                Some(c) => c.min(cap).min(size),
                None => size,
            };
            if body_too_large(&e) && sent > 1 {
                let smaller = (sent / 2).max(1);
                if smaller < MIN_LEARNED_CAP {
                    return Err(e);
                }
                self.lower_body_cap(smaller);
                chunk = Some(smaller);
                events(UploadEvent::Retry {
                    attempt: adapted,
                    delay: Duration::ZERO,
                    error: format!("{e}; sending requests of at most {smaller} bytes"),
                });
                continue;
            }
            if chunk.is_none() && monolithic_refused(&e) {
                chunk = Some(opts.default_chunk_size.max(1));
                events(UploadEvent::Retry {
                    attempt: adapted,
                    delay: Duration::ZERO,
                    error: format!("{e}; sending the blob in chunks instead of one request"),
                });
                continue;
            }
            if chunk.is_some() && chunks_refused(&e) && size <= cap {
                chunk = None;
                events(UploadEvent::Retry {
                    attempt: adapted,
                    delay: Duration::ZERO,
                    error: format!("{e}; sending the blob in one request instead of chunks"),
                });
                continue;
            }
            return Err(self.missing_if_cut_off(repo, e));
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
        let req = Req::new(Method::Put, Self::with_digest(loc, &digest))
            .header("Content-Type", "application/octet-stream")
            .body(ReqBody::Source {
                src,
                offset: 0,
                len: src.size(),
                progress: Some(&progress),
            });
        let resp = self.send(&req)?;
        if resp.status == 404 {
            let e = status_error(Method::Put, &resp);
            // Not the session but the blob unknown: the registry does not take a blob in the
            // `PUT` (Artifactory 6); `upload_blob` sends it in chunks instead.
            if e.code() == Some(&ErrorCode::BlobUnknown) {
                return Err(e);
            }
            return Err(session_lost(Method::Put, &resp));
        }
        if resp.status != 201 && resp.status != 204 && resp.status != 200 {
            return Err(status_error(Method::Put, &resp));
        }
        self.check_digest(&resp, &digest)
    }

    /// Upload `src` in `PATCH` chunks of (at least) `chunk` bytes, in the upload `session` if one
    /// is handed in, under the retry policy: each attempt checks where a broken session stands
    /// ([`Client::check_session`]), opens one if there is none ([`Client::initiate_session`]),
    /// streams the chunks ([`Client::patch_chunk`]) and commits the blob
    /// ([`Client::commit_chunked`]).
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
        // A session handed in (a failed mount's, or one a killed run recorded) may hold bytes
        // already: ask the registry where it stands before sending anything.
        let mut up = Chunked {
            broken: session.is_some(),
            session: session.map(|location| UploadSession {
                location,
                offset: 0,
                min_chunk: 0,
            }),
            refused_at: None,
        };
        // Bytes the registry has accepted, summed over every session of this blob (a session the
        // registry loses restarts at 0, and what it accepted then was progress too): whenever it
        // grows, the retry budget starts again, so that it bounds each failing request, not the
        // blob. What bounds the blob is the bytes: sending it `max_attempts` times over is enough.
        let accepted = std::cell::Cell::new(0u64);
        let sent_limit = size
            .max(1)
            .saturating_mul(u64::from(self.retry.max_attempts));
        self.retrying_progress(Some(on_retry), Some(&accepted), |_| {
            if std::mem::take(&mut up.broken) {
                up.session = match up.session.take() {
                    Some(s) => self.check_session(s, size, &mut up.refused_at, events),
                    None => None,
                };
            }
            let mut session = match up.session.take() {
                Some(s) => s,
                None => {
                    if accepted.get() >= sent_limit {
                        return Err(self.gave_up(repo, accepted.get(), size));
                    }
                    self.initiate_session(repo, events)?
                }
            };
            // The registry's announced minimum, or the one known for its host.
            let chunk = chunk
                .max(session.min_chunk)
                .max(crate::hosts::min_chunk(&self.registry));
            while session.offset < size {
                let base = session.offset;
                session =
                    self.patch_chunk(session, src, chunk.min(size - base), events, &mut up)?;
                accepted.set(accepted.get() + session.offset.saturating_sub(base));
                events(UploadEvent::Session {
                    location: session.location.clone(),
                });
            }
            self.commit_chunked(session, &src.digest(), &mut up)
        })
    }

    /// Where a broken `session` stands (`GET` on it): the session to continue, at the offset
    /// [`resume_point`] picks, or `None` to start again.
    fn check_session(
        &self,
        session: UploadSession,
        size: u64,
        refused_at: &mut Option<u64>,
        events: &(dyn Fn(UploadEvent) + Sync),
    ) -> Option<UploadSession> {
        match self.upload_status(&session.location) {
            Ok(Some((location, offset))) if offset <= size => {
                let offset = resume_point(session.offset, offset, refused_at.take())?;
                if offset > 0 {
                    events(UploadEvent::Resumed { offset });
                }
                Some(UploadSession {
                    location,
                    offset,
                    min_chunk: session.min_chunk,
                })
            }
            _ => None,
        }
    }

    /// A new upload session (`POST`), announced to `events` so that a later run can resume it.
    fn initiate_session(
        &self,
        repo: &str,
        events: &(dyn Fn(UploadEvent) + Sync),
    ) -> Result<UploadSession, Error> {
        let (location, min_chunk) = self.start_upload(repo)?;
        events(UploadEvent::Session {
            location: location.clone(),
        });
        Ok(UploadSession {
            location,
            offset: 0,
            min_chunk,
        })
    }

    /// The error that ends a chunked upload whose sessions the registry kept losing after it had
    /// accepted `accepted` bytes, as many as the retry policy would send the blob over.
    fn gave_up(&self, repo: &str, accepted: u64, size: u64) -> Error {
        Error::Transport {
            method: Method::Post,
            url: display_url(&self.api_url(&format!("v2/{repo}/blobs/uploads/"))),
            reason: format!(
                "gave up: the registry lost this blob's upload sessions after accepting \
                 {accepted} bytes of its {size}"
            ),
            transient: false,
            refused: false,
        }
    }

    /// Send the `len` bytes of `src` at the session's offset (`PATCH` with `Content-Range`): the
    /// session after it (its new `Location`, the offset the registry acknowledged). A failure
    /// that leaves the session usable (transient, or a refused range: 416) keeps it in `up` for
    /// the next attempt; a refusal for good abandons it.
    fn patch_chunk(
        &self,
        mut session: UploadSession,
        src: &dyn BlobSource,
        len: u64,
        events: &(dyn Fn(UploadEvent) + Sync),
        up: &mut Chunked,
    ) -> Result<UploadSession, Error> {
        let offset = session.offset;
        let progress = |sent: u64| {
            events(UploadEvent::Progress {
                sent: offset + sent,
            })
        };
        let req = Req::new(Method::Patch, session.location.clone())
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
                return Err(session_lost(Method::Patch, &r));
            }
            Ok(r) => {
                let e = status_error(Method::Patch, &r);
                if body_too_large(&e) || !(e.is_transient() || r.status == 416) {
                    // Refused for good: this session is of no more use.
                    self.abandon(&session.location);
                    return Err(e);
                }
                up.keep(session);
                if r.status == 416 {
                    up.refused_at = Some(offset);
                    return Err(Error::Transport {
                        method: Method::Patch,
                        url: display_url(&r.url),
                        reason: "registry refused the chunk's range (416)".into(),
                        transient: true,
                        refused: false,
                    });
                }
                return Err(e);
            }
            Err(e) => {
                if e.is_transient() {
                    up.keep(session);
                }
                return Err(e);
            }
        };
        if let Some(l) = resp.header("location") {
            session.location = resolve_location(&resp.url, l).map_err(|e| Error::Protocol {
                method: Method::Patch,
                url: display_url(&resp.url),
                reason: format!("Location `{l}` is not a URL: {e}"),
            })?;
        }
        match offset_after_patch(resp.header("range"), offset, len) {
            Ok(o) => session.offset = o,
            Err(reason) => {
                self.abandon(&session.location);
                return Err(Error::Protocol {
                    method: Method::Patch,
                    url: display_url(&resp.url),
                    reason,
                });
            }
        }
        Ok(session)
    }

    /// Close the session with the blob's `digest` (`PUT ?digest=`) and check the digest the
    /// registry answers; a transient failure keeps the session in `up` for the next attempt.
    fn commit_chunked(
        &self,
        session: UploadSession,
        digest: &Digest,
        up: &mut Chunked,
    ) -> Result<(), Error> {
        let req = Req::new(Method::Put, Self::with_digest(&session.location, digest));
        let resp = self.send(&req)?;
        if resp.status == 404 {
            return Err(session_lost(Method::Put, &resp));
        }
        if resp.status != 201 && resp.status != 204 && resp.status != 200 {
            let e = status_error(Method::Put, &resp);
            if e.is_transient() {
                up.keep(session);
            }
            return Err(e);
        }
        self.check_digest(&resp, digest)
    }

    /// The largest request body the registry took so far without complaint: `u64::MAX` until
    /// one was refused as too large.
    fn body_cap(&self) -> u64 {
        match self.body_cap.load(std::sync::atomic::Ordering::Relaxed) {
            0 => u64::MAX,
            n => n,
        }
    }

    fn lower_body_cap(&self, cap: u64) {
        let _ = self.body_cap.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |old| (old == 0 || cap < old).then_some(cap),
        );
    }

    /// `DELETE` an upload session that is of no more use (best effort: registries may not
    /// support it, and an abandoned session expires anyway).
    fn abandon(&self, loc: &Url) {
        let _ = self.send(&Req::new(Method::Delete, loc.clone()));
    }

    /// [`Error::RepositoryMissing`] for `repo`, with the registry's answer as evidence.
    pub(super) fn repository_missing(&self, repo: &str, evidence: Error) -> Error {
        Error::RepositoryMissing {
            repository: repo.to_string(),
            registry: self.registry.clone(),
            evidence: Box::new(evidence),
        }
    }

    /// An upload whose every `POST` was cut off without an answer (while the registry answers
    /// other requests) reads as a repository that does not exist: Amazon ECR closes the
    /// connection so instead of answering `NAME_UNKNOWN`.
    pub(super) fn missing_if_cut_off(&self, repo: &str, e: Error) -> Error {
        let last = match &e {
            Error::GaveUp { last, .. } => last.as_ref(),
            other => other,
        };
        match last {
            Error::Transport {
                method: Method::Post,
                url,
                reason,
                ..
            } if url.ends_with("/blobs/uploads/") && reason.starts_with(NO_ANSWER) => {
                self.repository_missing(repo, e)
            }
            _ => e,
        }
    }

    /// `GET <upload>` → the newest Location and the next offset, if the session still exists.
    pub(super) fn upload_status(&self, loc: &Url) -> Result<Option<(Url, u64)>, Error> {
        let resp = self.send(&Req::new(Method::Get, loc.clone()))?;
        if resp.status != 204 && resp.status != 200 {
            return Ok(None);
        }
        let Some(next) = resume_offset(resp.header("range")) else {
            return Ok(None);
        };
        let loc = match resp.header("location") {
            Some(_) => self.location(&resp, Method::Get)?,
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

    fn status(method: Method, status: u16, body: &[u8]) -> Error {
        Error::Status {
            method,
            url: "http://r/v2/a/blobs/uploads/u".into(),
            status,
            body: RegistryErrorBody::parse(body),
            retry_after: None,
        }
    }

    /// Which refusals teach a smaller request and which end chunking for the blob.
    #[test]
    fn refusals() {
        let ghcr = br#"{"errors":[{"code":"REQUESTED_RANGE_NOT_SATISFIABLE","message":"the request body is too large and exceeds the maximum permissible limit of 4.00MiB"}]}"#;
        assert!(body_too_large(&status(Method::Patch, 416, ghcr)));
        assert!(body_too_large(&status(
            Method::Put,
            413,
            b"<html>413</html>"
        )));
        // A plain 416 is a range out of order: resume, do not shrink.
        assert!(!body_too_large(&status(Method::Patch, 416, b"")));
        let wrapped = Error::GaveUp {
            attempts: 2,
            seconds: 0,
            last: Box::new(status(Method::Put, 413, b"")),
        };
        assert!(body_too_large(&wrapped));
        let small = br#"{"errors":[{"code":"LayerPartTooSmallException","message":"All layer parts except the last part should be at least 5MB"}]}"#;
        assert!(chunks_refused(&status(Method::Patch, 400, small)));
        assert!(chunks_refused(&status(Method::Patch, 405, b"")));
        assert!(chunks_refused(&Error::Protocol {
            method: Method::Patch,
            url: String::new(),
            reason: "stale Range".into(),
        }));
        for kept in [401, 403, 404, 408, 413, 416, 429, 500] {
            assert!(!chunks_refused(&status(Method::Patch, kept, b"")), "{kept}");
        }
        let unknown =
            br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#;
        assert!(monolithic_refused(&status(Method::Put, 404, unknown)));
        assert!(!monolithic_refused(&status(Method::Put, 404, b"")));
        assert!(!monolithic_refused(&status(Method::Patch, 404, unknown)));
        // Only a PATCH refusal ends chunking: a refused PUT or POST is the blob's own error.
        assert!(!chunks_refused(&status(Method::Put, 400, small)));
        assert!(!chunks_refused(&status(Method::Post, 405, b"")));
    }

    /// An upload POST cut off without an answer reads as a missing repository; other failures stay.
    #[test]
    fn cut_off_posts() {
        let c = Client::new(
            "127.0.0.1:5000",
            crate::Credential::Anonymous,
            crate::TransportOptions::default(),
            crate::RetryPolicy::none(),
        )
        .unwrap();
        let transport = |method: Method, url: &str, reason: String| Error::Transport {
            method,
            url: url.into(),
            reason,
            transient: true,
            refused: false,
        };
        let post = "http://127.0.0.1:5000/v2/a/blobs/uploads/";
        let cut = transport(
            Method::Post,
            post,
            format!("{NO_ANSWER} (io: Peer disconnected)"),
        );
        let e = c.missing_if_cut_off(
            "a",
            Error::GaveUp {
                attempts: 3,
                seconds: 1,
                last: Box::new(cut),
            },
        );
        assert!(
            e.to_string()
                .starts_with("repository a does not exist on 127.0.0.1:5000 (create it first): "),
            "{e}"
        );
        let timeout = transport(Method::Post, post, "timeout: global".into());
        assert!(matches!(
            c.missing_if_cut_off("a", timeout),
            Error::Transport { .. }
        ));
        let patch = transport(
            Method::Patch,
            "http://127.0.0.1:5000/v2/a/blobs/uploads/u",
            NO_ANSWER.into(),
        );
        assert!(matches!(
            c.missing_if_cut_off("a", patch),
            Error::Transport { .. }
        ));
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
