//! One HTTP exchange with the registry: requests and responses, `send` (credentials for the
//! registry's origin only, one new token after a 401) and `execute` (redirects, with the origin
//! rules for `Authorization` and a token request's form), `Location` resolution, and the errors
//! a response or a transport failure becomes.

use super::Client;
use super::source::BlobSource;
use crate::error::{Error, RegistryErrorBody, display_url};
use crate::method::Method;
use crate::retry::parse_retry_after;
use layerlift_manifest::Digest;
use std::io::Read;
use ureq::http;
use url::Url;

/// Largest response body read into memory (manifests are at most 4 MiB by convention).
pub(super) const MAX_BODY: u64 = 16 << 20;

pub(super) enum ReqBody<'a> {
    Empty,
    Bytes(&'a [u8]),
    Source {
        src: &'a dyn BlobSource,
        offset: u64,
        len: u64,
        progress: Option<&'a (dyn Fn(u64) + Sync)>,
    },
    Form(String),
}

pub(super) struct Req<'a> {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: ReqBody<'a>,
    /// Leave a 200 answer's body unread for the caller ([`Resp::stream`]): blobs of any size.
    pub(super) stream: bool,
}

impl<'a> Req<'a> {
    pub(super) fn new(method: Method, url: Url) -> Self {
        Req {
            method,
            url,
            headers: Vec::new(),
            body: ReqBody::Empty,
            stream: false,
        }
    }
    pub(super) fn streamed(mut self) -> Self {
        self.stream = true;
        self
    }
    pub(super) fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    pub(super) fn body(mut self, b: ReqBody<'a>) -> Self {
        self.body = b;
        self
    }
}

/// A response with its body read (small bodies only) and the URL that produced it.
pub(super) struct Resp {
    pub(super) status: u16,
    pub(super) headers: http::HeaderMap,
    pub(super) url: Url,
    pub(super) body: Vec<u8>,
    /// The unread body of a 200 answer to a [`Req::streamed`] request.
    pub(super) stream: Option<ureq::Body>,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resp")
            .field("status", &self.status)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Resp {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How a transport error's reason starts when the connection ended without an answer (closed,
/// reset, broken pipe), as opposed to one that could not be made or timed out.
pub(super) const NO_ANSWER: &str = "the connection was closed without an answer";

pub(super) fn transport_error(method: Method, url: &Url, e: ureq::Error) -> Error {
    let closed = matches!(&e, ureq::Error::Io(io) if matches!(
        io.kind(),
        std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    ));
    let transient = match &e {
        // TLS failures (bad certificate, wrong protocol) surface as InvalidData: not transient.
        ureq::Error::Io(io) => io.kind() != std::io::ErrorKind::InvalidData,
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_) => true,
        _ => false,
    };
    let refused = match &e {
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        ureq::Error::ConnectionFailed => true,
        _ => false,
    };
    Error::Transport {
        method,
        url: display_url(url),
        reason: if closed {
            format!("{NO_ANSWER} ({e})")
        } else {
            e.to_string()
        },
        transient,
        refused,
    }
}

pub(super) fn status_error(method: Method, resp: &Resp) -> Error {
    let body = RegistryErrorBody::parse(&resp.body);
    if resp.status == 401 || resp.status == 403 {
        return Error::Unauthorized {
            method,
            url: display_url(&resp.url),
            status: resp.status,
            body,
            hint: String::new(),
        };
    }
    Error::Status {
        method,
        url: display_url(&resp.url),
        status: resp.status,
        body,
        retry_after: resp.header("retry-after").and_then(parse_retry_after),
    }
}

/// A reader that reports how many bytes went through it, and remembers whether reading failed
/// (the blob's fault, not the registry's).
pub(super) struct Counting<'a, R> {
    inner: R,
    pub(super) sent: u64,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
    pub(super) failed: bool,
}

impl<'a, R> Counting<'a, R> {
    pub(super) fn new(inner: R, progress: Option<&'a (dyn Fn(u64) + Sync)>) -> Self {
        Counting {
            inner,
            sent: 0,
            progress,
            failed: false,
        }
    }
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        self.sent += n as u64;
        if let Some(p) = self.progress {
            p(self.sent);
        }
        Ok(n)
    }
}

pub(super) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A `Location` header resolved against the URL of the response that carried it.
/// Only http and https are followed: anything else (`file:`, `ftp:`, `javascript:`) is refused.
pub(crate) fn resolve_location(base: &Url, location: &str) -> Result<Url, String> {
    let url = base.join(location).map_err(|e| e.to_string())?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("scheme `{other}` is not http or https")),
    }
}

impl Client {
    /// Send a request to the registry with authentication (one retry after a 401). Credentials go
    /// only to the registry's own origin.
    pub(super) fn send(&self, req: &Req<'_>) -> Result<Resp, Error> {
        let mut retried_auth = false;
        // An upload Location on another origin (another host or port, or http after https) is
        // followed without credentials, as Docker does.
        let own = self.on_registry_origin(&req.url);
        loop {
            let (auth_value, generation) = if own {
                self.authorization()?
            } else {
                (None, 0)
            };
            let sent_auth = auth_value.is_some();
            let resp = self.execute(req, auth_value)?;
            // Only the registry's own challenges change our credentials, not those of a host a
            // Location or a redirect led to.
            if resp.status == 401 && !retried_auth && own && self.on_registry_origin(&resp.url) {
                retried_auth = true;
                if self.handle_unauthorized(&resp, generation, sent_auth)? {
                    continue;
                }
            }
            // HEAD has no body to read an error from, and its callers read a 401 themselves
            // (Docker Hub answers so for repositories that do not exist yet).
            if (resp.status == 401 || resp.status == 403) && req.method != Method::Head {
                let mut e = status_error(req.method, &resp);
                if let Error::Unauthorized { hint, .. } = &mut e {
                    *hint = if own && self.on_registry_origin(&resp.url) {
                        let mut h = format!(" as {}", self.credential.describe());
                        // Harbor refuses an upload into a project that does not exist so.
                        if req.method == Method::Post && req.url.path().ends_with("/blobs/uploads/")
                        {
                            h.push_str(&format!(
                                "; if these credentials may push there, the repository or its \
                                 project may not exist on {} (create it first)",
                                self.registry
                            ));
                        }
                        h
                    } else {
                        format!(
                            " on another origin than the registry's ({}): credentials are not \
                             sent there",
                            display_url(&self.origin())
                        )
                    };
                }
                return Err(e);
            }
            return Ok(resp);
        }
    }

    /// Whether `url` is on the registry's own origin (scheme, host, port): the only place its
    /// credentials go.
    pub(super) fn on_registry_origin(&self, url: &Url) -> bool {
        same_origin(url, &self.base())
    }

    /// One HTTP exchange, following redirects. `auth` (the `Authorization` value) goes only to
    /// the request's own origin: a redirect to another scheme, host or port drops it for that hop
    /// and every later one. A 303, and a 301 or 302 answering a POST, continue as a GET without
    /// the body (a token request's form is never posted again); a 307 or 308 keeps method and
    /// body, except that a form (which holds a refresh token) is never sent to another origin.
    pub(super) fn execute(&self, req: &Req<'_>, auth: Option<String>) -> Result<Resp, Error> {
        let mut hop = Hop {
            url: req.url.clone(),
            method: req.method,
            auth,
            body_dropped: false,
        };
        for _ in 0..10 {
            let resp = self.exchange(req, &hop)?;
            if matches!(resp.status, 301 | 302 | 303 | 307 | 308)
                && let Some(loc) = resp.headers.get("location").and_then(|v| v.to_str().ok())
            {
                hop.follow(req, resp.status, loc)?;
                continue;
            }
            return Ok(resp);
        }
        Err(Error::Protocol {
            method: hop.method,
            url: display_url(&hop.url),
            reason: "more than 10 redirects".into(),
        })
    }

    /// One hop sent and its answer read: the body in full (at most `MAX_BODY`; none for `HEAD`),
    /// or left unread for a streamed request's 200.
    fn exchange(&self, req: &Req<'_>, hop: &Hop) -> Result<Resp, Error> {
        let mut resp = self.send_hop(req, hop)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let url = hop.url.clone();
        if req.stream && status == 200 {
            return Ok(Resp {
                status,
                headers,
                url,
                body: Vec::new(),
                stream: Some(resp.into_body()),
            });
        }
        let body = if hop.method == Method::Head {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()
                .map_err(|e| transport_error(hop.method, &url, e))?
        };
        Ok(Resp {
            status,
            headers,
            url,
            body,
            stream: None,
        })
    }

    /// Build one hop's request — the request's headers (no `Content-Type` once its body is
    /// dropped), `Authorization` while it goes to the request's origin, the body with its
    /// `Content-Length` — and run it.
    fn send_hop(&self, req: &Req<'_>, hop: &Hop) -> Result<http::Response<ureq::Body>, Error> {
        let (method, url) = (hop.method, &hop.url);
        let mut builder = http::Request::builder()
            .method(method.as_str())
            .uri(url.as_str());
        for (k, v) in &req.headers {
            if hop.body_dropped && k.eq_ignore_ascii_case("content-type") {
                continue;
            }
            builder = builder.header(*k, v.as_str());
        }
        if let Some(a) = &hop.auth {
            builder = builder.header("Authorization", a.as_str());
        }
        let body = if hop.body_dropped {
            &ReqBody::Empty
        } else {
            &req.body
        };
        // A request ureq's builder refuses (a header value it cannot send, say).
        let unbuildable = |e: http::Error| Error::Protocol {
            method,
            url: display_url(url),
            reason: e.to_string(),
        };
        let result = match body {
            ReqBody::Empty => {
                let b = if method.sends_body() {
                    builder.header("Content-Length", "0")
                } else {
                    builder
                };
                let r = b.body(()).map_err(unbuildable)?;
                self.agent.run(r)
            }
            ReqBody::Bytes(bytes) => {
                let r = builder
                    .header("Content-Length", bytes.len().to_string())
                    .body(*bytes)
                    .map_err(unbuildable)?;
                self.agent.run(r)
            }
            ReqBody::Form(text) => {
                let r = builder
                    .header("Content-Length", text.len().to_string())
                    .body(text.as_bytes())
                    .map_err(unbuildable)?;
                self.agent.run(r)
            }
            ReqBody::Source {
                src,
                offset,
                len,
                progress,
            } => {
                let reader = src.open_at(*offset).map_err(|source| Error::Io {
                    what: "cannot read blob",
                    path: src.describe(),
                    source,
                })?;
                let mut counting = Counting::new(reader.take(*len), *progress);
                let r = builder
                    .header("Content-Length", len.to_string())
                    .body(ureq::SendBody::from_reader(&mut counting))
                    .map_err(unbuildable)?;
                let res = self.agent.run(r);
                if res.is_ok() && counting.sent < *len {
                    return Err(Error::Io {
                        what: "blob is shorter than its descriptor says",
                        path: src.describe(),
                        source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                    });
                }
                res
            }
        };
        result.map_err(|e| transport_error(method, url, e))
    }

    pub(super) fn location(&self, resp: &Resp, method: Method) -> Result<Url, Error> {
        let l = resp.header("location").ok_or_else(|| Error::Protocol {
            method,
            url: display_url(&resp.url),
            reason: format!("HTTP {} without a Location header", resp.status),
        })?;
        resolve_location(&resp.url, l).map_err(|e| Error::Protocol {
            method,
            url: display_url(&resp.url),
            reason: format!("Location `{l}` is not a URL: {e}"),
        })
    }

    pub(super) fn check_digest(&self, resp: &Resp, expected: &Digest) -> Result<(), Error> {
        if let Some(got) = resp.header("docker-content-digest")
            && got.trim() != expected.to_string()
        {
            return Err(Error::DigestMismatch {
                url: display_url(&resp.url),
                expected: *expected,
                got: got.trim().to_string(),
            });
        }
        Ok(())
    }
}

/// Where one hop of a request goes and what it carries; a redirect changes it.
struct Hop {
    url: Url,
    method: Method,
    /// The `Authorization` value, until a redirect leaves the request's origin.
    auth: Option<String>,
    /// A redirect turned the request into a `GET` without its body.
    body_dropped: bool,
}

impl Hop {
    /// Follow a redirect (`status`, with `location`) from this hop: `Authorization` is dropped
    /// when it leaves the origin; a 303, and a 301 or 302 answering a POST, continue as a GET
    /// without the body; a token request's form is never sent to another origin.
    fn follow(&mut self, req: &Req<'_>, status: u16, location: &str) -> Result<(), Error> {
        let next = resolve_location(&self.url, location).map_err(|e| Error::Protocol {
            method: self.method,
            url: display_url(&self.url),
            reason: format!("redirect Location is not a URL: {e}"),
        })?;
        let cross = !same_origin(&self.url, &next);
        if cross {
            self.auth = None;
        }
        if status == 303 || (matches!(status, 301 | 302) && self.method == Method::Post) {
            if self.method != Method::Head {
                self.method = Method::Get;
            }
            self.body_dropped = true;
        } else if cross && !self.body_dropped && matches!(req.body, ReqBody::Form(_)) {
            return Err(Error::Protocol {
                method: self.method,
                url: display_url(&self.url),
                reason: format!(
                    "HTTP {status} redirects the token request to {}, another origin: its form \
                     (which holds a refresh token) is not sent there",
                    display_url(&next)
                ),
            });
        }
        self.url = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/fuzz_targets/upload_headers.rs: `Location: G:>` resolved to `g:>`.
    #[test]
    fn locations_are_http_or_https() {
        let base = Url::parse("https://r.example/v2/a/blobs/uploads/").unwrap();
        assert!(resolve_location(&base, "G:>").is_err());
        assert!(resolve_location(&base, "file:///etc/passwd").is_err());
        assert!(resolve_location(&base, "javascript:alert(1)").is_err());
        assert_eq!(
            resolve_location(&base, "http://other:5000/u?x=1")
                .unwrap()
                .as_str(),
            "http://other:5000/u?x=1"
        );
        assert_eq!(
            resolve_location(&base, "u2").unwrap().as_str(),
            "https://r.example/v2/a/blobs/uploads/u2"
        );
    }

    #[test]
    fn origins() {
        let a = Url::parse("https://h:443/x").unwrap();
        assert!(same_origin(&a, &Url::parse("https://h/y").unwrap()));
        assert!(!same_origin(&a, &Url::parse("https://h:444/y").unwrap()));
        assert!(!same_origin(&a, &Url::parse("http://h/y").unwrap()));
        assert!(!same_origin(&a, &Url::parse("https://g/y").unwrap()));
    }
}
