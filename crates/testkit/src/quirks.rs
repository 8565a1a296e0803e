//! A quirk registry: the real `docker-registry` behind a [`FaultProxy`] whose [`Exchange`] makes it
//! behave like another registry implementation, one named [`Quirk`] per deviation from the
//! distribution spec that public bug threads show (`docs/registries.md` lists them with their
//! threads). Whatever the quirk changes on the wire, the bytes that reach the registry are stored
//! there for real, so a test can pull the pushed image back from the registry itself.
//!
//! Upload sessions are told apart by the last segment of their path (distribution's upload UUID).
//! [`QuirkProxy::unmet`] names the quirks that changed no request, so that a test can check that
//! each deviation was met, not only that the push went through.

use crate::proxy::{Answer, Before, Exchange, Fault, FaultProxy, Message, ProxyLog};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// ECR's message for a part below its minimum (as CloudTrail records it).
pub const PART_TOO_SMALL: &str = "All layer parts except the last part should be at least 5MB";

/// GHCR's message for a PATCH body over its cap.
pub const BODY_TOO_LARGE: &str =
    "the request body is too large and exceeds the maximum permissible limit of 4.00MiB";

/// Where GAR puts upload sessions (outside `/v2`).
pub const GAR_UPLOADS: &str = "/artifacts-uploads/";

/// One deviation from the distribution spec, as a named behaviour of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quirk {
    /// Amazon ECR: a chunk `PATCH` is answered `201 Created` (the spec says `202`).
    PatchCreated,
    /// Amazon ECR: every part but the last must be at least `min` bytes; a `PATCH` that follows a
    /// smaller one in the same session is refused with `400 LayerPartTooSmallException`.
    /// `announce`: the upload `POST` says so in `OCI-Chunk-Min-Length` (as the spec suggests).
    MinPart { min: u64, announce: bool },
    /// GitHub Container Registry: a `PATCH` body over `max` bytes is refused with `416`
    /// `REQUESTED_RANGE_NOT_SATISFIABLE` "the request body is too large …".
    MaxPatchBody { max: u64 },
    /// A CDN or proxy in front of a registry: any request body over `max` bytes gets `413` with an
    /// HTML page.
    MaxRequestBody { max: u64 },
    /// Amazon ECR (2023, 2026): after the first `PATCH` of a session, `PATCH`es are answered `201`
    /// with the first one's `Range` again and their bytes are discarded.
    StaleRange,
    /// Amazon ECR (2023): an upload `POST` to a repository not listed is cut off without an answer.
    AbruptMissingRepository { existing: Vec<String> },
    /// The spec's answer (and ECR's in 2016 and 2024): an upload `POST` to a repository not listed
    /// gets `404 NAME_UNKNOWN`.
    NameUnknown { existing: Vec<String> },
    /// Quay before 3.8: an OCI index that lists Docker schema 2 manifests is refused with
    /// `400 MANIFEST_INVALID` and Quay's schema message.
    QuayDockerInOciIndex,
    /// Quay before 3.6: OCI manifests and indexes are refused with `400 MANIFEST_INVALID`.
    QuayNoOci,
    /// zot without its Docker compatibility (`http.compat: ["docker2s2"]`): Docker schema 2
    /// manifests and manifest lists are refused with `400 MANIFEST_INVALID`.
    RefuseDocker,
    /// A registry that does not take BuildKit's attestation manifests: a manifest `PUT` whose
    /// layers are in-toto statements (`application/vnd.in-toto+json`), or an index `PUT` that
    /// lists an attestation manifest (`vnd.docker.reference.type: attestation-manifest`), gets
    /// `400 MANIFEST_INVALID`.
    RefuseAttestations,
    /// A registry with the OCI 1.1 referrers API (zot and Harbor 2.8+ have one): the proxy
    /// notes every manifest `PUT` whose JSON has a `subject`, and answers
    /// `GET /v2/<name>/referrers/<digest>` itself with an image index of those manifests (the
    /// registry behind, distribution 2.8, has no such API).
    ReferrersApi,
    /// Artifactory 6: a blob sent in the `PUT` that closes an upload is refused with
    /// `404 BLOB_UNKNOWN`; only `PATCH`es carry blob bytes.
    MonolithicPutRefused,
    /// Nexus 3.95: a manifest `PUT` without `Content-Length` gets `411 MANIFEST_INVALID`
    /// "manifest upload requires Content-Length".
    ManifestContentLength,
    /// No `Docker-Content-Digest` on any answer.
    NoContentDigest,
    /// No `Range` on any answer.
    NoRange,
    /// No `Docker-Upload-UUID` on any answer.
    NoUploadUuid,
    /// A blob `HEAD` answers `404` although the registry has the blob.
    HeadBlob404,
    /// Upload `Location`s are relative (GHCR): `/v2/<name>/blobs/uploads/<id>?…`.
    RelativeLocation,
    /// Upload `Location`s on another origin (`to`, a base URL such as `http://127.0.0.2:1234`),
    /// keeping path and query.
    OtherOriginLocation { to: String },
    /// Azure ACR: upload `Location`s carry `_nouploadcache=false&_acr=<id>`; a request to a session
    /// without that state gets `404 BLOB_UPLOAD_INVALID`.
    AcrState,
    /// Azure ACR: a `Content-Range` with a `bytes` unit (RFC style) gets `400`
    /// "the Content-Range header format is invalid".
    AcrContentRange,
    /// Google Artifact Registry: no chunked uploads; a `PATCH` gets `405 UNSUPPORTED`.
    NoChunkedUploads,
    /// Google Artifact Registry: upload `Location`s are outside `/v2`
    /// (`/artifacts-uploads/<name>/blobs/uploads/<id>`).
    LocationOutsideV2,
    /// Docker Hub: a mount from `source` (a repository the user cannot read) gets `401` with a
    /// Bearer challenge `error="insufficient_scope"`.
    MountInsufficientScope { source: String },
    /// Harbor: a project (the first path component) must exist before a push; an upload `POST`
    /// elsewhere gets `401 UNAUTHORIZED` "project … not found".
    ProjectMustExist { projects: Vec<String> },
    /// A proxy that cuts a streamed body: a `PATCH` sent with chunked transfer encoding (no
    /// `Content-Length`) reaches the registry without its last `by` bytes.
    TruncateStream { by: u64 },
    /// A registry that does not verify digests: the `PUT ?digest=` that closes an upload, refused
    /// by the registry because the bytes do not match, is answered `201 Created` with the digest
    /// asked for (the registry behind still holds nothing under it).
    UncheckedDigest,
    /// A registry (or a proxy) that answers every cross-repository mount `201 Created` without
    /// linking anything and without naming a blob.
    BlindMount,
}

/// Per-session state (keyed by the upload's id).
#[derive(Debug, Default)]
struct Session {
    /// The size of each PATCH body received.
    parts: Vec<u64>,
    /// `StaleRange`: the `Range` the first PATCH got.
    first_range: Option<String>,
}

struct State {
    quirks: Vec<Quirk>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Requests each quirk changed (answered, refused, rewrote), by index in `quirks`.
    fired: Vec<AtomicUsize>,
    /// The registry's last Bearer challenge (realm and service), for `MountInsufficientScope`.
    challenge: Mutex<Option<String>>,
    /// `ReferrersApi`: (repository, subject digest) → descriptors of the manifests `PUT` with it.
    referrers: Mutex<HashMap<(String, String), Vec<serde_json::Value>>>,
}

/// The registry at `upstream` behind a proxy with these quirks; stops on drop.
pub struct QuirkProxy {
    proxy: FaultProxy,
    state: Arc<State>,
}

impl std::fmt::Debug for QuirkProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuirkProxy({:?}, {:?})", self.proxy, self.state.quirks)
    }
}

impl QuirkProxy {
    /// Start a proxy to `127.0.0.1:<upstream>` with `quirks`.
    pub fn start(upstream: u16, quirks: Vec<Quirk>) -> Self {
        let state = Arc::new(State {
            fired: quirks.iter().map(|_| AtomicUsize::new(0)).collect(),
            quirks,
            sessions: Mutex::new(HashMap::new()),
            challenge: Mutex::new(None),
            referrers: Mutex::new(HashMap::new()),
        });
        let proxy = FaultProxy::with_exchange(upstream, |_| Fault::Pass, state.clone());
        QuirkProxy { proxy, state }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        self.proxy.addr()
    }

    /// How many requests the quirks changed (answered, refused, rewrote) so far.
    pub fn fired(&self) -> usize {
        self.state
            .fired
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .sum()
    }

    /// The quirks that have changed no request so far.
    pub fn unmet(&self) -> Vec<Quirk> {
        self.state
            .quirks
            .iter()
            .zip(&self.state.fired)
            .filter(|(_, n)| n.load(Ordering::SeqCst) == 0)
            .map(|(q, _)| q.clone())
            .collect()
    }

    /// Every request seen.
    pub fn log(&self) -> Vec<ProxyLog> {
        self.proxy.log()
    }
}

/// `/v2/<name>/blobs/uploads/<id>?…` → (name, Some(id)); `…/uploads/` → (name, None).
fn upload_target(target: &str) -> Option<(String, Option<String>)> {
    let path = target.split('?').next()?;
    let rest = path
        .strip_prefix("/v2/")
        .or_else(|| path.strip_prefix(GAR_UPLOADS))?;
    let (name, id) = rest.split_once("/blobs/uploads/")?;
    Some((name.to_string(), (!id.is_empty()).then(|| id.to_string())))
}

/// `/v2/<name>/manifests/<ref>` → name.
fn manifest_target(target: &str) -> Option<&str> {
    let path = target.split('?').next()?;
    let rest = path.strip_prefix("/v2/")?;
    Some(rest.split_once("/manifests/")?.0)
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The first media type of an index's children that is not an OCI one.
fn docker_child(index: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(index).ok()?;
    v["manifests"].as_array()?.iter().find_map(|m| {
        let t = m["mediaType"].as_str()?;
        (t != OCI_MANIFEST && t != OCI_INDEX).then(|| t.to_string())
    })
}

/// A manifest with a `subject`: the subject's digest and the manifest's descriptor as a
/// referrers index lists it.
fn referrer_of(body: &[u8]) -> Option<(String, serde_json::Value)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let subject = v["subject"]["digest"].as_str()?.to_string();
    let hash = ring::digest::digest(&ring::digest::SHA256, body);
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let mut d = serde_json::json!({
        "mediaType": v["mediaType"],
        "digest": format!("sha256:{hex}"),
        "size": body.len(),
    });
    if let Some(t) = v["artifactType"]
        .as_str()
        .or(v["config"]["mediaType"].as_str())
    {
        d["artifactType"] = t.into();
    }
    if v["annotations"].is_object() {
        d["annotations"] = v["annotations"].clone();
    }
    Some((subject, d))
}

/// An attestation manifest (in-toto layers), or an index that lists one.
fn is_attestation_doc(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let in_toto = v["layers"].as_array().is_some_and(|ls| {
        ls.iter()
            .any(|l| l["mediaType"] == "application/vnd.in-toto+json")
    });
    let lists_one = v["manifests"].as_array().is_some_and(|ms| {
        ms.iter()
            .any(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
    });
    in_toto || lists_one
}

fn is_blob_target(target: &str) -> bool {
    target
        .split('?')
        .next()
        .is_some_and(|p| p.starts_with("/v2/") && p.contains("/blobs/sha256:"))
}

/// A query parameter's value (`%2F` decoded: repository names).
fn query_value(target: &str, key: &str) -> Option<String> {
    let (_, q) = target.split_once('?')?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.replace("%2F", "/").replace("%2f", "/"))
    })
}

fn query_has(target: &str, key: &str) -> bool {
    target
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv.split('=').next() == Some(key)))
}

/// A `Location` without `scheme://authority`.
fn location_path(loc: &str) -> String {
    match loc.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_string(),
        None => loc.to_string(),
    }
}

impl State {
    fn has(&self, f: impl Fn(&Quirk) -> bool) -> bool {
        self.quirks.iter().any(f)
    }

    fn fire(&self, quirk: &Quirk) {
        if let Some(i) = self.quirks.iter().position(|q| q == quirk) {
            self.fired[i].fetch_add(1, Ordering::SeqCst);
        }
    }

    fn session<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> T {
        let mut s = self.sessions.lock().unwrap();
        f(s.entry(id.to_string()).or_default())
    }
}

impl Exchange for State {
    fn before(&self, req: &mut Message) -> Before {
        let upload = upload_target(&req.target);
        // GAR: sessions live outside /v2; the registry behind knows them under /v2.
        if self.has(|q| *q == Quirk::LocationOutsideV2)
            && let Some(rest) = req.target.strip_prefix(GAR_UPLOADS)
        {
            req.target = format!("/v2/{rest}");
        }
        for q in &self.quirks {
            let answer = self
                .refuse_upload_start(q, req, &upload)
                .or_else(|| self.upload_quirk(q, req, &upload))
                .or_else(|| self.session_quirk(q, req, &upload))
                .or_else(|| self.manifest_quirk(q, req));
            if let Some(before) = answer {
                return before;
            }
        }
        Before::Forward
    }

    fn after(&self, req: &Message, a: &mut Answer) {
        if a.status == 401
            && let Some(ch) = a.header("www-authenticate")
            && ch.starts_with("Bearer ")
        {
            // Keep realm and service only.
            let kept: Vec<&str> = ch
                .split(',')
                .filter(|p| {
                    let p = p.trim_start_matches("Bearer ").trim();
                    p.starts_with("realm=") || p.starts_with("service=")
                })
                .collect();
            *self.challenge.lock().unwrap() = Some(kept.join(","));
        }
        let upload = upload_target(&req.target);
        for q in &self.quirks {
            match q {
                Quirk::PatchCreated if req.method == "PATCH" && a.status == 202 => {
                    self.fire(q);
                    a.status = 201;
                }
                Quirk::MinPart {
                    min,
                    announce: true,
                } if req.method == "POST" && a.status == 202 => {
                    self.fire(q);
                    a.set("OCI-Chunk-Min-Length", &min.to_string());
                }
                Quirk::StaleRange if req.method == "PATCH" && (200..300).contains(&a.status) => {
                    if let Some((_, Some(id))) = &upload
                        && let Some(r) = a.header("range").map(str::to_string)
                    {
                        self.session(id, |s| s.first_range.get_or_insert(r).clone());
                    }
                }
                Quirk::UncheckedDigest
                    if req.method == "PUT"
                        && matches!(upload, Some((_, Some(_))))
                        && a.status == 400
                        && String::from_utf8_lossy(&a.body).contains("DIGEST_INVALID") =>
                {
                    self.fire(q);
                    let digest = query_value(&req.target, "digest")
                        .unwrap_or_default()
                        .replace("%3A", ":")
                        .replace("%3a", ":");
                    *a = Answer {
                        status: 201,
                        headers: Vec::new(),
                        body: Vec::new(),
                    };
                    a.set("Docker-Content-Digest", &digest);
                }
                Quirk::NoContentDigest if a.header("docker-content-digest").is_some() => {
                    self.fire(q);
                    a.remove("docker-content-digest");
                }
                Quirk::NoRange if a.header("range").is_some() => {
                    self.fire(q);
                    a.remove("range");
                }
                Quirk::NoUploadUuid if a.header("docker-upload-uuid").is_some() => {
                    self.fire(q);
                    a.remove("docker-upload-uuid");
                }
                _ => {}
            }
        }
        // Location rewrites, after the status ones (they apply to every upload answer).
        let Some(loc) = a.header("location").map(str::to_string) else {
            return;
        };
        let mut path = location_path(&loc);
        let Some((_, id)) = upload_target(&path) else {
            return;
        };
        let origin = loc[..loc.len() - path.len()].to_string();
        let mut changed: Vec<Quirk> = Vec::new();
        if self.has(|q| *q == Quirk::AcrState)
            && let Some(id) = id
            && !path.contains("_acr=")
        {
            let sep = if path.contains('?') { '&' } else { '?' };
            path = format!("{path}{sep}_nouploadcache=false&_acr={id}");
            changed.push(Quirk::AcrState);
        }
        if self.has(|q| *q == Quirk::LocationOutsideV2)
            && let Some(rest) = path.strip_prefix("/v2/")
        {
            path = format!("{GAR_UPLOADS}{rest}");
            changed.push(Quirk::LocationOutsideV2);
        }
        let other = self
            .quirks
            .iter()
            .find(|q| matches!(q, Quirk::OtherOriginLocation { .. }));
        let relative = self.has(|q| *q == Quirk::RelativeLocation);
        let new = match other {
            Some(q @ Quirk::OtherOriginLocation { to }) => {
                changed.push(q.clone());
                format!("{}{path}", to.trim_end_matches('/'))
            }
            _ if relative => {
                changed.push(Quirk::RelativeLocation);
                path
            }
            _ => format!("{origin}{path}"),
        };
        for q in &changed {
            self.fire(q);
        }
        if new != loc {
            a.set("Location", &new);
        }
    }
}

/// The quirks' actions on the request, by the kind of request they concern.
impl State {
    /// What the quirk `q` does to a `POST` that starts an upload or a mount: refuse it (a repository or
    /// project that does not exist, a mount's scope) or answer it without the registry.
    fn refuse_upload_start(
        &self,
        q: &Quirk,
        req: &mut Message,
        upload: &Option<(String, Option<String>)>,
    ) -> Option<Before> {
        match q {
            Quirk::AbruptMissingRepository { existing } | Quirk::NameUnknown { existing } => {
                if req.method == "POST"
                    && let Some((name, None)) = &upload
                    && !existing.contains(name)
                {
                    self.fire(q);
                    if matches!(q, Quirk::AbruptMissingRepository { .. }) {
                        return Some(Before::Close);
                    }
                    return Some(Before::Answer(Answer::error(
                        404,
                        "NAME_UNKNOWN",
                        &format!("repository name not known to registry: {name}"),
                    )));
                }
            }
            Quirk::ProjectMustExist { projects } => {
                if req.method == "POST"
                    && let Some((name, None)) = &upload
                {
                    let project = name.split('/').next().unwrap_or_default();
                    if !projects.iter().any(|p| p == project) {
                        self.fire(q);
                        return Some(Before::Answer(Answer::error(
                            401,
                            "UNAUTHORIZED",
                            &format!("project {project} not found"),
                        )));
                    }
                }
            }
            Quirk::MountInsufficientScope { source }
                if req.method == "POST"
                    && upload.is_some()
                    && query_has(&req.target, "mount")
                    && query_value(&req.target, "from").as_deref() == Some(source.as_str()) =>
            {
                self.fire(q);
                let mut a = Answer::error(401, "UNAUTHORIZED", "authentication required");
                let base = self.challenge.lock().unwrap().clone().unwrap_or_else(|| {
                    r#"Bearer realm="http://127.0.0.1:9/token",service="quirks""#.into()
                });
                a.set(
                    "WWW-Authenticate",
                    &format!(
                        r#"{base},scope="repository:{source}:pull",error="insufficient_scope""#
                    ),
                );
                return Some(Before::Answer(a));
            }
            Quirk::BlindMount
                if req.method == "POST" && upload.is_some() && query_has(&req.target, "mount") =>
            {
                self.fire(q);
                return Some(Before::Answer(Answer {
                    status: 201,
                    headers: Vec::new(),
                    body: Vec::new(),
                }));
            }
            _ => {}
        }
        None
    }

    /// What the quirk `q` does to a blob request (`HEAD`, `PATCH`, `PUT` of an upload): answer it
    /// itself (a size limit, chunks refused), or truncate a streamed body before it is forwarded.
    fn upload_quirk(
        &self,
        q: &Quirk,
        req: &mut Message,
        upload: &Option<(String, Option<String>)>,
    ) -> Option<Before> {
        match q {
            Quirk::TruncateStream { by }
                if req.method == "PATCH" && !req.had_length && req.body.len() as u64 > *by =>
            {
                self.fire(q);
                let keep = req.body.len() - *by as usize;
                req.body.truncate(keep);
            }
            Quirk::HeadBlob404 if req.method == "HEAD" && is_blob_target(&req.target) => {
                self.fire(q);
                return Some(Before::Answer(Answer::error(
                    404,
                    "BLOB_UNKNOWN",
                    "blob unknown",
                )));
            }
            Quirk::MaxRequestBody { max } if req.body.len() as u64 > *max => {
                self.fire(q);
                return Some(Before::Answer(Answer {
                        status: 413,
                        headers: vec![("Content-Type".into(), "text/html".into())],
                        body: b"<html><head><title>413 Request Entity Too Large</title></head><body><center><h1>413 Request Entity Too Large</h1></center><hr><center>nginx</center></body></html>".to_vec(),
                    }));
            }
            Quirk::MaxPatchBody { max }
                if req.method == "PATCH" && req.body.len() as u64 > *max =>
            {
                self.fire(q);
                return Some(Before::Answer(Answer::error(
                    416,
                    "REQUESTED_RANGE_NOT_SATISFIABLE",
                    BODY_TOO_LARGE,
                )));
            }
            Quirk::NoChunkedUploads if req.method == "PATCH" => {
                self.fire(q);
                return Some(Before::Answer(Answer::error(
                    405,
                    "UNSUPPORTED",
                    "chunked uploads are not supported; use a monolithic upload",
                )));
            }
            Quirk::MonolithicPutRefused
                if req.method == "PUT"
                    && matches!(upload, Some((_, Some(_))))
                    && !req.body.is_empty() =>
            {
                self.fire(q);
                return Some(Before::Answer(Answer::error(
                    404,
                    "BLOB_UNKNOWN",
                    "blob unknown to registry",
                )));
            }
            _ => {}
        }
        None
    }

    /// What the quirk `q` does to a request of an upload session: check its form (ACR's
    /// `Content-Range` and query parameters, a minimum part size) or answer with a stale `Range`.
    fn session_quirk(
        &self,
        q: &Quirk,
        req: &mut Message,
        upload: &Option<(String, Option<String>)>,
    ) -> Option<Before> {
        match q {
            Quirk::AcrContentRange => {
                if let Some(cr) = req.header("content-range")
                    && !cr.trim().bytes().all(|b| b.is_ascii_digit() || b == b'-')
                {
                    self.fire(q);
                    return Some(Before::Answer(Answer::error(
                        400,
                        "BLOB_UPLOAD_INVALID",
                        "the Content-Range header format is invalid",
                    )));
                }
            }
            Quirk::AcrState => {
                if let Some((_, Some(id))) = &upload {
                    let want = format!("_acr={}", id.split('?').next().unwrap_or_default());
                    let query = req.target.split_once('?').map_or("", |(_, q)| q);
                    let kept = query.split('&').any(|kv| kv == want)
                        && query.split('&').any(|kv| kv == "_nouploadcache=false");
                    if !kept {
                        self.fire(q);
                        return Some(Before::Answer(Answer::error(
                            404,
                            "BLOB_UPLOAD_INVALID",
                            "blob upload invalid",
                        )));
                    }
                    // The registry behind does not know ACR's parameters.
                    let (path, q) = req.target.split_once('?').unwrap_or((&req.target, ""));
                    let rest: Vec<&str> = q
                        .split('&')
                        .filter(|kv| !kv.starts_with("_acr=") && !kv.starts_with("_nouploadcache="))
                        .collect();
                    req.target = if rest.is_empty() {
                        path.to_string()
                    } else {
                        format!("{path}?{}", rest.join("&"))
                    };
                }
            }
            Quirk::MinPart { min, .. } => {
                if req.method == "PATCH"
                    && let Some((_, Some(id))) = &upload
                {
                    let len = req.body.len() as u64;
                    let too_small = self.session(id, |s| {
                        let small = s.parts.iter().any(|p| p < min);
                        s.parts.push(len);
                        small
                    });
                    if too_small {
                        self.fire(q);
                        return Some(Before::Answer(Answer::error(
                            400,
                            "LayerPartTooSmallException",
                            PART_TOO_SMALL,
                        )));
                    }
                }
            }
            Quirk::StaleRange => {
                if req.method == "PATCH"
                    && let Some((_, Some(id))) = &upload
                    && let Some(range) = self.session(id, |s| s.first_range.clone())
                {
                    self.fire(q);
                    let mut a = Answer {
                        status: 201,
                        headers: Vec::new(),
                        body: Vec::new(),
                    };
                    a.set("Range", &range);
                    a.set("Location", &req.target);
                    return Some(Before::Answer(a));
                }
            }
            _ => {}
        }
        None
    }

    /// What the quirk `q` does to a manifest `PUT`: refuse media types or a body without
    /// `Content-Length` as the registry it mimics does.
    fn manifest_quirk(&self, q: &Quirk, req: &mut Message) -> Option<Before> {
        match q {
            Quirk::QuayNoOci
                if req.method == "PUT"
                    && manifest_target(&req.target).is_some()
                    && req
                        .header("content-type")
                        .is_some_and(|t| t.starts_with("application/vnd.oci.")) =>
            {
                self.fire(q);
                return Some(Before::Answer(Answer::error(
                    400,
                    "MANIFEST_INVALID",
                    "manifest invalid",
                )));
            }
            Quirk::RefuseDocker
                if req.method == "PUT"
                    && manifest_target(&req.target).is_some()
                    && req
                        .header("content-type")
                        .is_some_and(|t| t.starts_with("application/vnd.docker.")) =>
            {
                self.fire(q);
                let media_type = req.header("content-type").unwrap_or_default();
                return Some(Before::Answer(Answer::error(
                    400,
                    "MANIFEST_INVALID",
                    &format!(
                        "manifest invalid; map[description:During upload, manifests undergo several checks ensuring validity. If those checks fail, this error MAY be returned, unless a more specific error is included. The detail will contain information the failed validation. mediaType:{media_type}]"
                    ),
                )));
            }
            Quirk::ManifestContentLength
                if req.method == "PUT"
                    && manifest_target(&req.target).is_some()
                    && !req.had_length =>
            {
                self.fire(q);
                return Some(Before::Answer(Answer::error(
                    411,
                    "MANIFEST_INVALID",
                    "manifest upload requires Content-Length",
                )));
            }
            Quirk::QuayDockerInOciIndex => {
                if req.method == "PUT"
                    && manifest_target(&req.target).is_some()
                    && req.header("content-type") == Some(OCI_INDEX)
                    && let Some(bad) = docker_child(&req.body)
                {
                    self.fire(q);
                    return Some(Before::Answer(Answer::error(
                        400,
                        "MANIFEST_INVALID",
                        &format!(
                            "manifest invalid; map[message:failed to parse manifest: manifest data does not match schema: '{bad}' is not one of ['{OCI_MANIFEST}', '{OCI_INDEX}'] Failed validating 'enum' in schema['properties']['manifests']['items']['properties']['mediaType']]"
                        ),
                    )));
                }
            }
            Quirk::RefuseAttestations
                if req.method == "PUT"
                    && manifest_target(&req.target).is_some()
                    && is_attestation_doc(&req.body) =>
            {
                self.fire(q);
                return Some(Before::Answer(Answer::error(
                    400,
                    "MANIFEST_INVALID",
                    "manifest invalid: attestation manifests are not supported",
                )));
            }
            Quirk::ReferrersApi => {
                let path = req.target.split('?').next().unwrap_or_default();
                if req.method == "GET"
                    && let Some(rest) = path.strip_prefix("/v2/")
                    && let Some((name, subject)) = rest.split_once("/referrers/")
                {
                    self.fire(q);
                    let listed = self
                        .referrers
                        .lock()
                        .unwrap()
                        .get(&(name.to_string(), subject.to_string()))
                        .cloned()
                        .unwrap_or_default();
                    let body = serde_json::json!({
                        "schemaVersion": 2,
                        "mediaType": OCI_INDEX,
                        "manifests": listed,
                    });
                    return Some(Before::Answer(Answer {
                        status: 200,
                        headers: vec![("Content-Type".into(), OCI_INDEX.into())],
                        body: body.to_string().into_bytes(),
                    }));
                }
                if req.method == "PUT"
                    && let Some(name) = manifest_target(&req.target)
                    && let Some((subject, descriptor)) = referrer_of(&req.body)
                {
                    let mut all = self.referrers.lock().unwrap();
                    let list = all.entry((name.to_string(), subject)).or_default();
                    if !list.contains(&descriptor) {
                        list.push(descriptor);
                    }
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            upload_target("/v2/a/b/blobs/uploads/"),
            Some(("a/b".into(), None))
        );
        assert_eq!(
            upload_target("/v2/a/blobs/uploads/u1?_state=x"),
            Some(("a".into(), Some("u1".into())))
        );
        assert_eq!(
            upload_target("/artifacts-uploads/a/blobs/uploads/u1"),
            Some(("a".into(), Some("u1".into())))
        );
        assert_eq!(upload_target("/v2/a/blobs/sha256:00"), None);
        assert_eq!(manifest_target("/v2/a/b/manifests/1"), Some("a/b"));
        assert!(is_blob_target("/v2/a/blobs/sha256:00"));
        assert_eq!(location_path("http://h:1/v2/x?y=1"), "/v2/x?y=1");
        assert_eq!(location_path("/v2/x"), "/v2/x");
        assert!(query_has("/v2/a/blobs/uploads/?mount=x&from=y", "mount"));
    }
}
