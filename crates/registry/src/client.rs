//! The registry client: one per registry host, shared by all upload threads (`Client` is `Sync`).
//!
//! Every request goes through [`Client::send`]: it adds the `Authorization` the registry asked for
//! (Basic, or a Bearer token for the scopes asked for so far) when the URL is on the registry's own
//! origin (an upload `Location` elsewhere is followed without it), answers a 401 by fetching a new
//! token once, follows redirects itself (dropping `Authorization` at the first hop to another
//! origin, never re-posting a token request's form) and keeps the final URL so that `Location`
//! headers resolve against it. Operations (HEAD, mount, upload,
//! manifest PUT) wrap their requests in [`Client::retrying`]: connection errors, 408, 429 and 5xx
//! are retried with backoff and jitter, honouring `Retry-After`. A chunked upload that breaks
//! resumes from the offset the registry reports; a monolithic one starts a new session.

use crate::auth::{self, AuthState, Challenge, Scope, Token, TokenResponse};
use crate::credentials::{Credential, Secret};
use crate::error::{Error, RegistryErrorBody, display_url};
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::transport::{self, Scheme, TransportOptions};
use layerlift_manifest::Digest;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use ureq::http;
use url::Url;

/// Largest response body read into memory (manifests are at most 4 MiB by convention).
const MAX_BODY: u64 = 16 << 20;

/// A blob to upload: its digest, its size, and a way to read it from any offset (to retry and
/// to resume chunked uploads).
pub trait BlobSource: Sync {
    fn digest(&self) -> Digest;
    fn size(&self) -> u64;
    /// A reader positioned at `offset`.
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>>;
    /// For messages: a path or a description.
    fn describe(&self) -> String;
}

/// A blob stored in a file.
#[derive(Debug, Clone)]
pub struct FileSource {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

impl BlobSource for FileSource {
    fn digest(&self) -> Digest {
        self.digest
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f))
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// A blob held in memory (configs, small test blobs).
#[derive(Debug, Clone)]
pub struct BytesSource {
    pub bytes: Arc<[u8]>,
    pub digest: Digest,
}

impl BytesSource {
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes = bytes.into();
        let digest = Digest::of(&bytes);
        BytesSource { bytes, digest }
    }
}

impl BlobSource for BytesSource {
    fn digest(&self) -> Digest {
        self.digest
    }
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn open_at(&self, offset: u64) -> std::io::Result<Box<dyn Read + Send + '_>> {
        let start = (offset as usize).min(self.bytes.len());
        Ok(Box::new(&self.bytes[start..]))
    }
    fn describe(&self) -> String {
        format!("in-memory blob {}", self.digest)
    }
}

/// How to upload blobs.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Upload in PATCH chunks of this size (None: monolithic unless the blob is larger than
    /// `max_single_upload`).
    pub chunk_size: Option<u64>,
    /// Blobs larger than this go up in chunks of `default_chunk_size`.
    pub max_single_upload: u64,
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
    Progress { sent: u64 },
    /// A request failed and will be retried after `delay`.
    Retry {
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// A chunked upload continues from `offset` instead of starting again.
    Resumed { offset: u64 },
    /// A chunked upload's session is now at this URL: a later run can resume it
    /// ([`Client::upload_blob`] with it as `session`) if this one is cut off.
    Session { location: Url },
}

/// Result of a cross-repository mount attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountResult {
    Mounted,
    /// Not mounted; the registry opened an upload session at this URL instead (or none).
    NotMounted(Option<Url>),
}

enum ReqBody<'a> {
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

struct Req<'a> {
    method: &'static str,
    url: Url,
    headers: Vec<(&'static str, String)>,
    body: ReqBody<'a>,
    /// Leave a 200 answer's body unread for the caller ([`Resp::stream`]): blobs of any size.
    stream: bool,
}

impl<'a> Req<'a> {
    fn new(method: &'static str, url: Url) -> Self {
        Req {
            method,
            url,
            headers: Vec::new(),
            body: ReqBody::Empty,
            stream: false,
        }
    }
    fn streamed(mut self) -> Self {
        self.stream = true;
        self
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    fn body(mut self, b: ReqBody<'a>) -> Self {
        self.body = b;
        self
    }
}

/// A response with its body read (small bodies only) and the URL that produced it.
struct Resp {
    status: u16,
    headers: http::HeaderMap,
    url: Url,
    body: Vec<u8>,
    /// The unread body of a 200 answer to a [`Req::streamed`] request.
    stream: Option<ureq::Body>,
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
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Told about one retry: attempt number, the error, the wait before the next attempt.
type RetryHook<'a> = dyn Fn(u32, &Error, Duration) + 'a;

/// Told about every retry of an operation that has no hook of its own (HEAD, mount, manifest PUT,
/// token requests): attempt number, the error, and the wait before the next attempt.
pub type RetryObserver = Box<dyn Fn(u32, &Error, Duration) + Send + Sync>;

/// A client for one registry host.
pub struct Client {
    agent: ureq::Agent,
    /// `host[:port]` as written in references.
    registry: String,
    /// The API host (differs for Docker Hub).
    api_host: String,
    scheme: RwLock<Option<Scheme>>,
    opts: TransportOptions,
    credential: Credential,
    auth: Mutex<AuthState>,
    retry: RetryPolicy,
    observer: Option<RetryObserver>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.registry)
            .field("credential", &self.credential.describe())
            .finish_non_exhaustive()
    }
}

fn transport_error(method: &'static str, url: &Url, e: ureq::Error) -> Error {
    let transient = match &e {
        // TLS failures (bad certificate, wrong protocol) surface as InvalidData: not transient.
        ureq::Error::Io(io) => io.kind() != std::io::ErrorKind::InvalidData,
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::Protocol(_) => true,
        _ => false,
    };
    Error::Transport {
        method,
        url: display_url(url),
        reason: e.to_string(),
        transient,
    }
}

fn status_error(method: &'static str, resp: &Resp) -> Error {
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

/// A manifest PUT refused because a blob it names is unknown (400 `MANIFEST_BLOB_UNKNOWN`,
/// `BLOB_UNKNOWN`, or distribution's `DIGEST_INVALID … blob unknown`).
fn blob_unknown(e: &Error) -> bool {
    let Error::Status {
        status: 400, body, ..
    } = e
    else {
        return false;
    };
    let code = body.code.as_deref().unwrap_or_default();
    let message = body.message.as_deref().unwrap_or_default();
    code == "MANIFEST_BLOB_UNKNOWN"
        || code == "BLOB_UNKNOWN"
        || (code == "DIGEST_INVALID" && message.contains("blob unknown"))
}

/// The registry forgot an upload session (404, `BLOB_UPLOAD_UNKNOWN`: restarted, expired, or a
/// load balancer sent us to another instance). Transient: the retry opens a new session.
fn session_lost(method: &'static str, resp: &Resp) -> Error {
    let body = RegistryErrorBody::parse(&resp.body);
    Error::Transport {
        method,
        url: display_url(&resp.url),
        reason: format!("the registry lost the upload session (HTTP 404{body}); starting it again"),
        transient: true,
    }
}

/// A reader that hashes what passes through it and reports progress.
struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: layerlift_manifest::Sha256Writer<std::io::Sink>,
    events: &'a (dyn Fn(UploadEvent) + Sync),
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        std::io::Write::write_all(&mut self.hasher, &buf[..n])?;
        (self.events)(UploadEvent::Progress {
            sent: self.hasher.written(),
        });
        Ok(n)
    }
}

/// A reader that reports how many bytes went through it.
struct Counting<'a, R> {
    inner: R,
    sent: u64,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        if let Some(p) = self.progress {
            p(self.sent);
        }
        Ok(n)
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
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

/// Whether a token request to `realm` may carry credentials (a password, a refresh token) for a
/// registry reached over `registry`: not in clear text (an `http:` realm) to a host that is not
/// loopback when the registry itself speaks https.
pub(crate) fn realm_may_carry_credentials(registry: Scheme, realm: &Url) -> bool {
    realm.scheme() == "https"
        || registry == Scheme::Http
        || realm.host_str().is_some_and(transport::is_loopback)
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
    /// A client for `registry` (`host[:port]`; `docker.io` talks to `registry-1.docker.io`).
    /// Nothing is sent until the first request.
    pub fn new(
        registry: &str,
        credential: Credential,
        opts: TransportOptions,
        retry: RetryPolicy,
    ) -> Result<Self, Error> {
        let api_host = if registry == crate::reference::DOCKER_HUB {
            crate::reference::DOCKER_HUB_API.to_string()
        } else {
            registry.to_string()
        };
        // `base()` builds URLs from the host: refuse here what `Url` cannot hold.
        Url::parse(&format!("https://{api_host}/")).map_err(|e| Error::InvalidRegistry {
            registry: registry.to_string(),
            reason: e.to_string(),
        })?;
        let agent = transport::build_agent(&opts, registry, &api_host)?;
        let scheme = if opts.plain_http {
            Some(Scheme::Http)
        } else {
            None
        };
        Ok(Client {
            agent,
            registry: registry.to_string(),
            api_host,
            scheme: RwLock::new(scheme),
            opts,
            credential,
            auth: Mutex::new(AuthState::default()),
            retry,
            observer: None,
        })
    }

    /// Be told about retries of operations other than blob uploads (those report through their
    /// own event callback).
    pub fn set_retry_observer(&mut self, observer: RetryObserver) {
        self.observer = Some(observer);
    }

    /// The registry this client talks to.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The scheme in use (after [`Client::ping`]).
    pub fn scheme(&self) -> Option<Scheme> {
        *self.scheme.read().unwrap()
    }

    fn base(&self) -> Url {
        let scheme = self.scheme().unwrap_or(Scheme::Https);
        Url::parse(&format!("{}://{}/", scheme.as_str(), self.api_host))
            .expect("Client::new checked that the host parses")
    }

    /// The registry's origin (`scheme://host[:port]/`, the scheme as chosen by [`Client::ping`]):
    /// the only origin its credentials are sent to.
    pub fn origin(&self) -> Url {
        self.base()
    }

    /// Whether `url` is on the registry's own origin (scheme, host, port): the only place its
    /// credentials go.
    fn on_registry_origin(&self, url: &Url) -> bool {
        same_origin(url, &self.base())
    }

    fn api_url(&self, path: &str) -> Url {
        self.base().join(path).expect("API paths are valid")
    }

    /// Ask for these scopes from now on (e.g. `pull,push` on the target, `pull` on a mount
    /// source). A token covering them is fetched before the next request.
    pub fn authorize(&self, scopes: &[Scope]) {
        let mut st = self.auth.lock().unwrap();
        let mut grew = false;
        for s in scopes {
            grew |= auth::merge_scopes(&mut st.scopes, s);
        }
        if grew {
            st.token = None;
        }
    }

    /// `GET /v2/`: choose the scheme (HTTPS, or HTTP for `--plain-http` and, after HTTPS failed,
    /// loopback hosts) and learn the authentication challenge.
    pub fn ping(&self) -> Result<(), Error> {
        let loopback = self.opts.loopback_http_fallback
            && transport::is_loopback(crate::reference::host_without_port(&self.registry));
        if self.scheme().is_none() {
            *self.scheme.write().unwrap() = Some(Scheme::Https);
            if loopback {
                // One HTTPS attempt; when the connection itself fails, try plain HTTP. Only a
                // real registry answer (200 or 401) counts: a TLS server answers plain HTTP with
                // 400, and then the HTTPS error is the one to report.
                match self.ping_once() {
                    Ok(()) => return Ok(()),
                    Err(e @ Error::Transport { .. }) => {
                        *self.scheme.write().unwrap() = Some(Scheme::Http);
                        return match self.retrying(None, |_| self.ping_status()) {
                            Ok(200..=299 | 401) => self.ping_once(),
                            // Nothing answered plain HTTP either: report that attempt, the last
                            // one made (its URL says http://).
                            Err(http) if http.is_refused() => Err(http),
                            _ => {
                                *self.scheme.write().unwrap() = Some(Scheme::Https);
                                Err(e)
                            }
                        };
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.retrying(None, |_| self.ping_once())
    }

    fn ping_status(&self) -> Result<u16, Error> {
        let resp = self.execute(&Req::new("GET", self.api_url("v2/")), None)?;
        if crate::error::is_retryable_status(resp.status) {
            return Err(status_error("GET", &resp));
        }
        Ok(resp.status)
    }

    fn ping_once(&self) -> Result<(), Error> {
        let url = self.api_url("v2/");
        let resp = self.execute(&Req::new("GET", url), None)?;
        match resp.status {
            200..=299 => Ok(()),
            // Only the registry's own challenge says where its credentials go, not that of a
            // host `/v2/` redirected to.
            401 if self.on_registry_origin(&resp.url) => {
                let ch = resp
                    .header("www-authenticate")
                    .and_then(auth::parse_challenge);
                self.auth.lock().unwrap().challenge = ch;
                Ok(())
            }
            // Some registries answer 404 or 403 on /v2/; the real requests will tell.
            400..=499 => Ok(()),
            _ => Err(status_error("GET", &resp)),
        }
    }

    /// Run `op` until it succeeds, fails for good, or retries run out. `on_retry(attempt,
    /// error, delay)` is told before each wait (else the client's retry observer).
    pub(crate) fn retrying<T>(
        &self,
        on_retry: Option<&RetryHook<'_>>,
        op: impl FnMut(u32) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.retrying_progress(on_retry, None, op)
    }

    /// [`Self::retrying`] for an operation made of many requests (a chunked upload): whenever
    /// `progress` grew since the last failure, the retry budget (attempts and time) starts again,
    /// so that it bounds each failing request rather than the whole operation.
    pub(crate) fn retrying_progress<T>(
        &self,
        on_retry: Option<&RetryHook<'_>>,
        progress: Option<&std::cell::Cell<u64>>,
        mut op: impl FnMut(u32) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut start = Instant::now();
        let mut attempt = 1;
        let mut seen = progress.map_or(0, |p| p.get());
        loop {
            match op(attempt) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => {
                    if let Some(p) = progress
                        && p.get() > seen
                    {
                        seen = p.get();
                        attempt = 1;
                        start = Instant::now();
                    }
                    let delay = self.retry.delay(attempt, e.retry_after());
                    let budget = if e.is_refused() {
                        self.retry.max_total.min(self.retry.max_refused)
                    } else {
                        self.retry.max_total
                    };
                    if attempt >= self.retry.max_attempts || start.elapsed() + delay > budget {
                        if attempt == 1 {
                            return Err(e);
                        }
                        return Err(Error::GaveUp {
                            attempts: attempt,
                            seconds: start.elapsed().as_secs(),
                            last: Box::new(e),
                        });
                    }
                    match (on_retry, &self.observer) {
                        (Some(hook), _) => hook(attempt, &e, delay),
                        (None, Some(obs)) => obs(attempt, &e, delay),
                        (None, None) => {}
                    }
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The `Authorization` value for a request to the registry, fetching a token if needed.
    /// Returns the auth generation it belongs to.
    fn authorization(&self) -> Result<(Option<String>, u64), Error> {
        let mut st = self.auth.lock().unwrap();
        let value = match (&st.challenge, &self.credential) {
            (_, Credential::RegistryToken(t)) => Some(format!("Bearer {}", t.expose())),
            (Some(Challenge::Basic), Credential::Basic { username, password }) => Some(
                http_auth::basic::encode_credentials(username, password.expose()),
            ),
            (Some(Challenge::Bearer { .. }), _) => {
                if !st.token.as_ref().is_some_and(Token::fresh) {
                    self.fetch_token(&mut st)?;
                }
                st.token
                    .as_ref()
                    .map(|t| format!("Bearer {}", t.value.expose()))
            }
            _ => None,
        };
        // The generation of the token actually sent (read after a possible fetch above).
        Ok((value, st.generation))
    }

    /// Get a token for the scopes in `st` from the challenge's realm.
    fn fetch_token(&self, st: &mut AuthState) -> Result<(), Error> {
        let Some(Challenge::Bearer { realm, service, .. }) = st.challenge.clone() else {
            return Ok(());
        };
        let realm_url = self.base().join(&realm).map_err(|e| Error::Token {
            url: realm.clone(),
            reason: format!("realm is not a URL: {e}"),
        })?;
        let scopes = st.scope_strings();
        let refresh = match &self.credential {
            Credential::IdentityToken(t) => Some(t.clone()),
            _ => st.refresh_token.clone(),
        };
        let secret = refresh.is_some() || matches!(self.credential, Credential::Basic { .. });
        if secret
            && !realm_may_carry_credentials(self.scheme().unwrap_or(Scheme::Https), &realm_url)
        {
            return Err(Error::Token {
                url: display_url(&realm_url),
                reason: "the registry speaks https but its token realm is plain http: credentials \
                         are not sent in clear text"
                    .into(),
            });
        }
        let resp = if let Some(refresh) = refresh {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token");
            form.append_pair("refresh_token", refresh.expose());
            if let Some(s) = &service {
                form.append_pair("service", s);
            }
            form.append_pair("scope", &scopes.join(" "));
            form.append_pair("client_id", "layerlift");
            let req = Req::new("POST", realm_url.clone())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(ReqBody::Form(form.finish()));
            let resp = self.retrying(None, |_| self.execute(&req, None))?;
            if resp.status == 404 || resp.status == 405 {
                // This token server only does GET.
                st.refresh_token = None;
                self.token_get(&realm_url, service.as_deref(), &scopes)?
            } else {
                resp
            }
        } else {
            self.token_get(&realm_url, service.as_deref(), &scopes)?
        };
        if resp.status != 200 {
            let mut e = status_error("GET", &resp);
            if let Error::Unauthorized { hint, .. } = &mut e {
                *hint = format!(" (token request as {})", self.credential.describe());
            }
            return Err(e);
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&resp.body).map_err(|e| Error::Token {
                url: display_url(&realm_url),
                reason: format!("answer is not token JSON: {e}"),
            })?;
        let (value, life, refresh) = parsed.into_token().ok_or_else(|| Error::Token {
            url: display_url(&realm_url),
            reason: "answer has neither `token` nor `access_token`".into(),
        })?;
        st.token = Some(Token::new(value, life));
        if let Some(r) = refresh {
            st.refresh_token = Some(r);
        }
        st.generation += 1;
        Ok(())
    }

    fn token_get(
        &self,
        realm_url: &Url,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Resp, Error> {
        let mut url = realm_url.clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let req = Req::new("GET", url);
        // Passed as the request's credentials, not as a header: `execute` drops it when a
        // redirect leaves the realm's origin.
        let basic = match &self.credential {
            Credential::Basic { username, password } => Some(http_auth::basic::encode_credentials(
                username,
                password.expose(),
            )),
            _ => None,
        };
        self.retrying(None, |_| self.execute(&req, basic.clone()))
    }

    /// React to a 401: learn the challenge, widen scopes, get a new token. True when a retry
    /// with new credentials makes sense.
    fn handle_unauthorized(
        &self,
        resp: &Resp,
        generation: u64,
        sent_auth: bool,
    ) -> Result<bool, Error> {
        let Some(ch) = resp
            .header("www-authenticate")
            .and_then(auth::parse_challenge)
        else {
            return Ok(false);
        };
        let mut st = self.auth.lock().unwrap();
        match &ch {
            Challenge::Basic => {
                let first = st.challenge != Some(Challenge::Basic);
                st.challenge = Some(Challenge::Basic);
                Ok(first && !sent_auth && matches!(self.credential, Credential::Basic { .. }))
            }
            Challenge::Bearer { scope, .. } => {
                // `error="insufficient_scope"` names the scope the request needs: ask for the
                // union of it and what we had.
                let mut grew = false;
                if let Some(s) = scope {
                    for one in s.split(' ') {
                        if let Some(sc) = Scope::parse(one) {
                            grew |= auth::merge_scopes(&mut st.scopes, &sc);
                        }
                    }
                }
                st.challenge = Some(ch.clone());
                if matches!(self.credential, Credential::RegistryToken(_)) {
                    return Ok(false);
                }
                // Unless another thread already got a new token for the same scopes.
                if grew || st.generation == generation {
                    self.fetch_token(&mut st)?;
                }
                Ok(true)
            }
        }
    }

    /// Send a request to the registry with authentication (one retry after a 401). Credentials go
    /// only to the registry's own origin.
    fn send(&self, req: &Req<'_>) -> Result<Resp, Error> {
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
            if (resp.status == 401 || resp.status == 403) && req.method != "HEAD" {
                let mut e = status_error(req.method, &resp);
                if let Error::Unauthorized { hint, .. } = &mut e {
                    *hint = if own && self.on_registry_origin(&resp.url) {
                        format!(" as {}", self.credential.describe())
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

    /// One HTTP exchange, following redirects. `auth` (the `Authorization` value) goes only to
    /// the request's own origin: a redirect to another scheme, host or port drops it for that hop
    /// and every later one. A 303, and a 301 or 302 answering a POST, continue as a GET without
    /// the body (a token request's form is never posted again); a 307 or 308 keeps method and
    /// body, except that a form (which holds a refresh token) is never sent to another origin.
    fn execute(&self, req: &Req<'_>, auth: Option<String>) -> Result<Resp, Error> {
        let mut url = req.url.clone();
        let mut method = req.method;
        let mut auth = auth;
        let mut body_dropped = false;
        for _ in 0..10 {
            let mut builder = http::Request::builder().method(method).uri(url.as_str());
            for (k, v) in &req.headers {
                if body_dropped && k.eq_ignore_ascii_case("content-type") {
                    continue;
                }
                builder = builder.header(*k, v.as_str());
            }
            if let Some(a) = &auth {
                builder = builder.header("Authorization", a.as_str());
            }
            let body = if body_dropped {
                &ReqBody::Empty
            } else {
                &req.body
            };
            let result = match body {
                ReqBody::Empty => {
                    let b = if matches!(method, "POST" | "PUT" | "PATCH") {
                        builder.header("Content-Length", "0")
                    } else {
                        builder
                    };
                    let r = b.body(()).map_err(|e| Error::Protocol {
                        method,
                        url: display_url(&url),
                        reason: e.to_string(),
                    })?;
                    self.agent.run(r)
                }
                ReqBody::Bytes(bytes) => {
                    let r = builder
                        .header("Content-Length", bytes.len().to_string())
                        .body(*bytes)
                        .map_err(|e| Error::Protocol {
                            method,
                            url: display_url(&url),
                            reason: e.to_string(),
                        })?;
                    self.agent.run(r)
                }
                ReqBody::Form(text) => {
                    let r = builder
                        .header("Content-Length", text.len().to_string())
                        .body(text.as_bytes())
                        .map_err(|e| Error::Protocol {
                            method,
                            url: display_url(&url),
                            reason: e.to_string(),
                        })?;
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
                    let mut counting = Counting {
                        inner: reader.take(*len),
                        sent: 0,
                        progress: *progress,
                    };
                    let r = builder
                        .header("Content-Length", len.to_string())
                        .body(ureq::SendBody::from_reader(&mut counting))
                        .map_err(|e| Error::Protocol {
                            method,
                            url: display_url(&url),
                            reason: e.to_string(),
                        })?;
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
            let mut resp = result.map_err(|e| transport_error(method, &url, e))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            if req.stream && status == 200 {
                return Ok(Resp {
                    status,
                    headers,
                    url,
                    body: Vec::new(),
                    stream: Some(resp.into_body()),
                });
            }
            let body = if method == "HEAD" {
                Vec::new()
            } else {
                resp.body_mut()
                    .with_config()
                    .limit(MAX_BODY)
                    .read_to_vec()
                    .map_err(|e| transport_error(method, &url, e))?
            };
            if matches!(status, 301 | 302 | 303 | 307 | 308)
                && let Some(loc) = headers.get("location").and_then(|v| v.to_str().ok())
            {
                let next = resolve_location(&url, loc).map_err(|e| Error::Protocol {
                    method,
                    url: display_url(&url),
                    reason: format!("redirect Location is not a URL: {e}"),
                })?;
                let cross = !same_origin(&url, &next);
                if cross {
                    auth = None;
                }
                if status == 303 || (matches!(status, 301 | 302) && method == "POST") {
                    if method != "HEAD" {
                        method = "GET";
                    }
                    body_dropped = true;
                } else if cross && !body_dropped && matches!(req.body, ReqBody::Form(_)) {
                    return Err(Error::Protocol {
                        method,
                        url: display_url(&url),
                        reason: format!(
                            "HTTP {status} redirects the token request to {}, another origin: \
                             its form (which holds a refresh token) is not sent there",
                            display_url(&next)
                        ),
                    });
                }
                url = next;
                continue;
            }
            return Ok(Resp {
                status,
                headers,
                url,
                body,
                stream: None,
            });
        }
        Err(Error::Protocol {
            method,
            url: display_url(&url),
            reason: "more than 10 redirects".into(),
        })
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: true when the registry has the blob. A 401 after the
    /// token refresh reads as "absent" (Docker Hub and Harbor answer so for new repositories).
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool, Error> {
        let url = self.api_url(&format!("v2/{repo}/blobs/{digest}"));
        self.retrying(None, |_| {
            let resp = self.send(&Req::new("HEAD", url.clone()))?;
            match resp.status {
                200 => Ok(true),
                404 | 401 => Ok(false),
                _ => Err(status_error("HEAD", &resp)),
            }
        })
    }

    /// Try to mount `digest` from `from` into `repo`. Any failure reads as "not mounted".
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
            let r = self.send(&Req::new("POST", url.clone()))?;
            if crate::error::is_retryable_status(r.status) {
                return Err(status_error("POST", &r));
            }
            Ok(r)
        }) {
            Ok(r) => r,
            Err(Error::Unauthorized { .. }) => return Ok(MountResult::NotMounted(None)),
            Err(e) => return Err(e),
        };
        match resp.status {
            201 => Ok(MountResult::Mounted),
            202 => {
                let loc = resp
                    .header("location")
                    .and_then(|l| resolve_location(&resp.url, l).ok());
                Ok(MountResult::NotMounted(loc))
            }
            _ => Ok(MountResult::NotMounted(None)),
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/` → the session URL and the registry's minimum chunk.
    fn start_upload(&self, repo: &str) -> Result<(Url, u64), Error> {
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

    fn location(&self, resp: &Resp, method: &'static str) -> Result<Url, Error> {
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

    fn check_digest(&self, resp: &Resp, expected: &Digest) -> Result<(), Error> {
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

    fn with_digest(loc: &Url, digest: &Digest) -> Url {
        let mut u = loc.clone();
        u.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        u
    }

    /// Upload a blob whose digest is not known in advance (a layer being compressed on the way):
    /// POST, one PATCH streaming `reader` with chunked transfer encoding while hashing it, then
    /// `PUT ?digest=` with the digest computed. This is the sequence `docker push` uses. Returns
    /// the digest and size. The stream cannot be rewound, so nothing is retried here: a caller
    /// that can produce the stream again retries the call.
    pub fn upload_stream(
        &self,
        repo: &str,
        reader: &mut dyn Read,
        events: &(dyn Fn(UploadEvent) + Sync),
    ) -> Result<(Digest, u64), Error> {
        let (loc, _) = self.retrying(None, |_| self.start_upload(repo))?;
        let mut hashing = HashingReader {
            inner: reader,
            hasher: layerlift_manifest::Sha256Writer::new(std::io::sink()),
            events,
        };
        let (auth, _) = if self.on_registry_origin(&loc) {
            self.authorization()?
        } else {
            (None, 0)
        };
        let mut builder = http::Request::builder()
            .method("PATCH")
            .uri(loc.as_str())
            .header("Content-Type", "application/octet-stream");
        if let Some(a) = &auth {
            builder = builder.header("Authorization", a.as_str());
        }
        let req = builder
            .body(ureq::SendBody::from_reader(&mut hashing))
            .map_err(|e| Error::Protocol {
                method: "PATCH",
                url: display_url(&loc),
                reason: e.to_string(),
            })?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| transport_error("PATCH", &loc, e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| transport_error("PATCH", &loc, e))?;
        let resp = Resp {
            status,
            headers,
            url: loc,
            body,
            stream: None,
        };
        if !(200..=299).contains(&resp.status) {
            return Err(status_error("PATCH", &resp));
        }
        let loc = match resp.header("location") {
            Some(_) => self.location(&resp, "PATCH")?,
            None => resp.url.clone(),
        };
        let (digest, size, _) = hashing.hasher.finish();
        self.retrying(None, |_| {
            let resp = self.send(&Req::new("PUT", Self::with_digest(&loc, &digest)))?;
            if !(200..=299).contains(&resp.status) {
                return Err(status_error("PUT", &resp));
            }
            self.check_digest(&resp, &digest)
        })?;
        Ok((digest, size))
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

    fn put_monolithic(
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

    fn upload_chunked(
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
    fn upload_status(&self, loc: &Url) -> Result<Option<(Url, u64)>, Error> {
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
                let req = Req::new("PUT", url.clone())
                    .header("Content-Type", media_type)
                    .body(ReqBody::Bytes(bytes));
                let resp = self.send(&req)?;
                if !(200..=299).contains(&resp.status) {
                    let e = status_error("PUT", &resp);
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

    /// The digest `reference` (tag or digest) resolves to, or None when absent.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<Digest>, Error> {
        let url = self.api_url(&format!("v2/{repo}/manifests/{reference}"));
        self.retrying(None, |_| {
            let resp =
                self.send(&Req::new("HEAD", url.clone()).header("Accept", ACCEPT_MANIFESTS))?;
            match resp.status {
                200 => {
                    let d =
                        resp.header("docker-content-digest")
                            .ok_or_else(|| Error::Protocol {
                                method: "HEAD",
                                url: display_url(&resp.url),
                                reason: "no Docker-Content-Digest header".into(),
                            })?;
                    d.trim()
                        .parse::<Digest>()
                        .map(Some)
                        .map_err(|e| Error::Protocol {
                            method: "HEAD",
                            url: display_url(&resp.url),
                            reason: e.to_string(),
                        })
                }
                404 => Ok(None),
                _ => Err(status_error("HEAD", &resp)),
            }
        })
    }

    /// `GET` a manifest: its media type and exact bytes.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<(String, Vec<u8>), Error> {
        let url = self.api_url(&format!("v2/{repo}/manifests/{reference}"));
        self.retrying(None, |_| {
            let resp =
                self.send(&Req::new("GET", url.clone()).header("Accept", ACCEPT_MANIFESTS))?;
            if resp.status != 200 {
                return Err(status_error("GET", &resp));
            }
            let mt = resp.header("content-type").unwrap_or_default().to_string();
            Ok((mt, resp.body))
        })
    }

    /// `GET` a small blob (an image config), verified against `digest`. `Ok(None)` when the
    /// registry does not have it. Bodies are capped at 16 MiB.
    pub fn get_small_blob(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<u8>>, Error> {
        let url = self.api_url(&format!("v2/{repo}/blobs/{digest}"));
        self.retrying(None, |_| {
            let resp = self.send(&Req::new("GET", url.clone()))?;
            match resp.status {
                200 => {}
                404 => return Ok(None),
                _ => return Err(status_error("GET", &resp)),
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
            let resp = self.send(&Req::new("GET", url.clone()).streamed())?;
            let Some(body) = resp.stream else {
                return match resp.status {
                    404 => Ok(None),
                    _ => Err(status_error("GET", &resp)),
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

    /// The credential in use, described without its secret.
    pub fn credential_description(&self) -> String {
        self.credential.describe()
    }

    #[doc(hidden)]
    pub fn current_token_for_tests(&self) -> Option<Secret> {
        self.auth
            .lock()
            .unwrap()
            .token
            .as_ref()
            .map(|t| t.value.clone())
    }
}

const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

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

    /// Credentials go to the registry's origin only: not to another host or port, and not over
    /// http once the registry speaks https.
    #[test]
    fn only_the_registry_origin_is_its_own() {
        let c = Client::new(
            "127.0.0.1:5000",
            Credential::Anonymous,
            TransportOptions::default(),
            RetryPolicy::none(),
        )
        .unwrap();
        let own = |u: &str| c.on_registry_origin(&Url::parse(u).unwrap());
        assert!(own("https://127.0.0.1:5000/v2/a/blobs/uploads/u"));
        assert!(!own("http://127.0.0.1:5000/v2/a/blobs/uploads/u"));
        assert!(!own("https://127.0.0.2:5000/v2/a/blobs/uploads/u"));
        assert!(!own("https://127.0.0.1:5001/v2/a/blobs/uploads/u"));
        let hub = Client::new(
            "docker.io",
            Credential::Anonymous,
            TransportOptions::default(),
            RetryPolicy::none(),
        )
        .unwrap();
        assert_eq!(hub.origin().as_str(), "https://registry-1.docker.io/");
    }

    #[test]
    fn credentials_do_not_go_to_a_plain_http_realm_of_an_https_registry() {
        let url = |u: &str| Url::parse(u).unwrap();
        assert!(realm_may_carry_credentials(
            Scheme::Https,
            &url("https://auth.example/token")
        ));
        assert!(!realm_may_carry_credentials(
            Scheme::Https,
            &url("http://auth.example/token")
        ));
        assert!(realm_may_carry_credentials(
            Scheme::Http,
            &url("http://auth.example/token")
        ));
        assert!(realm_may_carry_credentials(
            Scheme::Https,
            &url("http://127.0.0.1:5001/token")
        ));
        assert!(realm_may_carry_credentials(
            Scheme::Https,
            &url("http://[::1]:5001/token")
        ));
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
