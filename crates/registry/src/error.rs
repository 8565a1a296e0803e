//! Errors of the registry client. Each names the request (method and URL without its query, which
//! may hold upload state), the HTTP status and the registry's error code when there is one. No
//! variant carries a credential or a token.

use crate::method::Method;
use layerlift_manifest::Digest;
use serde::Deserialize;
use std::fmt;

/// The registry's error body: `{"errors":[{"code","message","detail"}]}` (parsed leniently).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryErrorBody {
    /// First error code, e.g. `BLOB_UNKNOWN`, `DENIED`.
    pub code: Option<ErrorCode>,
    /// First error message, or a short excerpt of a non-JSON body.
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

impl RegistryErrorBody {
    /// Parse a response body: the JSON error envelope, or a one-line excerpt of anything else.
    pub fn parse(body: &[u8]) -> Self {
        if let Ok(e) = serde_json::from_slice::<Errors>(body)
            && !e.errors.is_empty()
        {
            // distribution sends several errors for one failure ("unknown error", then the
            // real reason): keep every distinct message.
            let code = e
                .errors
                .iter()
                .find_map(|x| x.code.as_deref().map(ErrorCode::parse));
            let mut messages: Vec<String> = Vec::new();
            for x in e.errors {
                let detail = match x.detail {
                    Some(serde_json::Value::String(d)) => Some(d),
                    _ => None,
                };
                for m in x.message.into_iter().chain(detail) {
                    if !m.is_empty() && !messages.contains(&m) {
                        messages.push(m);
                    }
                }
            }
            return RegistryErrorBody {
                code,
                message: (!messages.is_empty()).then(|| messages.join("; ")),
            };
        }
        let text = String::from_utf8_lossy(body);
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let message = if text.is_empty() {
            None
        } else if text.len() > 200 {
            let mut cut = 200;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            Some(format!("{}…", &text[..cut]))
        } else {
            Some(text)
        };
        RegistryErrorBody {
            code: None,
            message,
        }
    }
}

/// An error code of the distribution API (the OCI distribution specification's, and the few
/// that registries add), as a registry's error body gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN`: the repository does not hold the blob.
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID`: the upload was refused (a chunk out of order, say).
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN`: the upload session is not known (any more).
    BlobUploadUnknown,
    /// `DIGEST_INVALID`: the content does not match the digest sent with it.
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN`: a blob the manifest names is not in the repository.
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID`: the manifest was refused (also for a media type the registry does not
    /// take).
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN`: no manifest under that reference.
    ManifestUnknown,
    /// `NAME_INVALID`: the repository name is not valid.
    NameInvalid,
    /// `NAME_UNKNOWN`: the repository does not exist.
    NameUnknown,
    /// `SIZE_INVALID`: the content does not have the size sent with it.
    SizeInvalid,
    /// `UNAUTHORIZED`: authentication is needed.
    Unauthorized,
    /// `DENIED`: the credentials may not do this.
    Denied,
    /// `UNSUPPORTED`: the registry does not do this.
    Unsupported,
    /// `TOOMANYREQUESTS`: rate limited.
    TooManyRequests,
    /// `UNAVAILABLE`: the registry cannot answer now (distribution's, not the specification's).
    Unavailable,
    /// A code this client does not know, as the registry wrote it.
    Other(String),
}

impl ErrorCode {
    const KNOWN: [(&'static str, ErrorCode); 15] = [
        ("BLOB_UNKNOWN", ErrorCode::BlobUnknown),
        ("BLOB_UPLOAD_INVALID", ErrorCode::BlobUploadInvalid),
        ("BLOB_UPLOAD_UNKNOWN", ErrorCode::BlobUploadUnknown),
        ("DIGEST_INVALID", ErrorCode::DigestInvalid),
        ("MANIFEST_BLOB_UNKNOWN", ErrorCode::ManifestBlobUnknown),
        ("MANIFEST_INVALID", ErrorCode::ManifestInvalid),
        ("MANIFEST_UNKNOWN", ErrorCode::ManifestUnknown),
        ("NAME_INVALID", ErrorCode::NameInvalid),
        ("NAME_UNKNOWN", ErrorCode::NameUnknown),
        ("SIZE_INVALID", ErrorCode::SizeInvalid),
        ("UNAUTHORIZED", ErrorCode::Unauthorized),
        ("DENIED", ErrorCode::Denied),
        ("UNSUPPORTED", ErrorCode::Unsupported),
        ("TOOMANYREQUESTS", ErrorCode::TooManyRequests),
        ("UNAVAILABLE", ErrorCode::Unavailable),
    ];

    /// The code as the registry wrote it (known codes are matched exactly).
    pub fn parse(code: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(text, _)| *text == code)
            .map_or_else(|| ErrorCode::Other(code.to_string()), |(_, c)| c.clone())
    }

    /// The code as the registry wrote it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(code) => code,
            known => Self::KNOWN
                .iter()
                .find(|(_, c)| c == known)
                .map_or("", |(text, _)| text),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RegistryErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => write!(f, " ({c}: {m})"),
            (Some(c), None) => write!(f, " ({c})"),
            (None, Some(m)) => write!(f, " ({m})"),
            (None, None) => Ok(()),
        }
    }
}

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection failed (refused, reset, TLS, timeout...).
    #[error("{method} {url}: {reason}")]
    Transport {
        /// The request's method.
        method: Method,
        /// The request's URL, without its query.
        url: String,
        /// What failed.
        reason: String,
        /// Worth retrying (connection reset, timeout), as opposed to e.g. a certificate error.
        transient: bool,
        /// The host refused the connection (nothing listens there, yet).
        refused: bool,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: HTTP {status}{body}")]
    Status {
        /// The request's method.
        method: Method,
        /// The response's URL, without its query.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error body, if it sent one.
        body: RegistryErrorBody,
        /// The registry's `Retry-After`, if it sent one.
        retry_after: Option<std::time::Duration>,
    },
    /// Authentication failed or was refused.
    #[error("{method} {url}: authentication failed (HTTP {status}){body}{hint}")]
    Unauthorized {
        /// The request's method.
        method: Method,
        /// The response's URL, without its query.
        url: String,
        /// 401 or 403.
        status: u16,
        /// The registry's error body, if it sent one.
        body: RegistryErrorBody,
        /// e.g. " with user alice" / " anonymously".
        hint: String,
    },
    /// The token server's answer was not usable.
    #[error("token request to {url} failed: {reason}")]
    Token {
        /// The token server's URL, without its query.
        url: String,
        /// What is wrong with its answer.
        reason: String,
    },
    /// The registry stored something other than what we sent.
    #[error("{url}: registry reports digest {got}, expected {expected}")]
    DigestMismatch {
        /// The response's URL, without its query.
        url: String,
        /// The digest sent.
        expected: Digest,
        /// The digest the registry named.
        got: String,
    },
    /// The registry broke the protocol (no Location, unparsable header...).
    #[error("{method} {url}: {reason}")]
    Protocol {
        /// The request's method.
        method: Method,
        /// The response's URL, without its query.
        url: String,
        /// What the registry did wrong.
        reason: String,
    },
    /// A local file (blob, CA certificate) could not be read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file (or the blob's description).
        path: String,
        #[source]
        /// The I/O error.
        source: std::io::Error,
    },
    /// The registry name is not one a URL can hold (`reg.123:5000`: a numeric last label is
    /// neither a DNS name nor an IPv4 address).
    #[error("registry `{registry}` is not a valid host for a URL: {reason}")]
    InvalidRegistry {
        /// The registry as given.
        registry: String,
        /// Why a URL cannot hold it.
        reason: String,
    },
    /// TLS configuration (CA file) is unusable.
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error(transparent)]
    /// Credentials could not be read.
    Credentials(#[from] crate::credentials::CredentialError),
    /// The repository does not exist and the registry does not create it on push (ECR, Harbor
    /// projects, GitLab namespaces): it answered an upload with `404 NAME_UNKNOWN`, or cut it off
    /// without an answer every time.
    #[error("repository {repository} does not exist on {registry} (create it first): {evidence}")]
    RepositoryMissing {
        /// The repository.
        repository: String,
        /// The registry (`host[:port]`).
        registry: String,
        /// The registry's answer (or the failed requests).
        evidence: Box<Error>,
    },
    /// Retries ran out; the last error is the source.
    #[error("gave up after {attempts} attempts over {seconds}s: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Seconds spent.
        seconds: u64,
        /// The last attempt's error.
        last: Box<Error>,
    },
}

impl Error {
    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { transient, .. } => *transient,
            Error::Status { status, .. } => is_retryable_status(*status),
            _ => false,
        }
    }

    /// The registry's host refused the connection: nothing listens there (yet). Worth a short
    /// retry (a registry that is starting), not a long one.
    pub fn is_refused(&self) -> bool {
        match self {
            Error::Transport { refused, .. } => *refused,
            Error::GaveUp { last, .. } => last.is_refused(),
            _ => false,
        }
    }

    /// How long the registry asked us to wait.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, if the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } | Error::Unauthorized { status, .. } => Some(*status),
            Error::GaveUp { last, .. } => last.status(),
            Error::RepositoryMissing { evidence, .. } => evidence.status(),
            _ => None,
        }
    }

    /// The registry's error code (`DENIED`, `BLOB_UNKNOWN`...), if any.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Status { body, .. } | Error::Unauthorized { body, .. } => body.code.as_ref(),
            Error::GaveUp { last, .. } => last.code(),
            Error::RepositoryMissing { evidence, .. } => evidence.code(),
            _ => None,
        }
    }

    /// A manifest `PUT` refused in a way that another media type may pass: `415`, or `400`
    /// `MANIFEST_INVALID` (Quay before 3.6 for OCI types, Quay before 3.8 for Docker manifests in
    /// an OCI index, zot without its Docker compatibility for Docker types).
    pub fn is_media_type_refusal(&self) -> bool {
        match self {
            Error::Status { status: 415, .. } => true,
            Error::Status {
                status: 400, body, ..
            } => body.code == Some(ErrorCode::ManifestInvalid),
            Error::GaveUp { last, .. } => last.is_media_type_refusal(),
            _ => false,
        }
    }

    /// The registry's own error message, if it sent one.
    pub fn registry_message(&self) -> Option<&str> {
        match self {
            Error::Status { body, .. } | Error::Unauthorized { body, .. } => {
                body.message.as_deref()
            }
            Error::GaveUp { last, .. } => last.registry_message(),
            Error::RepositoryMissing { evidence, .. } => evidence.registry_message(),
            _ => None,
        }
    }
}

/// 408, 429 and the 5xx that mean "try again".
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// A URL for messages: no query (upload `_state`, tokens), no user info.
pub fn display_url(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_read_and_print_as_the_registry_wrote_them() {
        for (_, known) in ErrorCode::KNOWN {
            assert_eq!(ErrorCode::parse(known.as_str()), known);
        }
        assert_eq!(ErrorCode::parse("BLOB_UNKNOWN"), ErrorCode::BlobUnknown);
        assert_eq!(
            ErrorCode::parse("TOOMANYREQUESTS").to_string(),
            "TOOMANYREQUESTS"
        );
        // Unknown codes, and known ones spelt otherwise, are kept as they are.
        for odd in ["QUOTA_EXCEEDED", "blob_unknown", ""] {
            assert_eq!(ErrorCode::parse(odd), ErrorCode::Other(odd.to_string()));
            assert_eq!(ErrorCode::parse(odd).as_str(), odd);
        }
    }

    #[test]
    fn errors_name_the_request_by_its_method() {
        let e = Error::Status {
            method: Method::Put,
            url: "https://r.example/v2/app/manifests/1".into(),
            status: 400,
            body: RegistryErrorBody::parse(b""),
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "PUT https://r.example/v2/app/manifests/1: HTTP 400"
        );
        let e = Error::Transport {
            method: Method::Patch,
            url: "https://r.example/v2/app/blobs/uploads/u".into(),
            reason: "timeout: global".into(),
            transient: true,
            refused: false,
        };
        assert_eq!(
            e.to_string(),
            "PATCH https://r.example/v2/app/blobs/uploads/u: timeout: global"
        );
    }

    #[test]
    fn error_bodies() {
        let b = RegistryErrorBody::parse(
            br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied","detail":null}]}"#,
        );
        assert_eq!(b.code, Some(ErrorCode::Denied));
        assert_eq!(
            b.to_string(),
            " (DENIED: requested access to the resource is denied)"
        );
        assert_eq!(RegistryErrorBody::parse(b"").to_string(), "");
        let two = RegistryErrorBody::parse(
            br#"{"errors":[{"code":"UNKNOWN","message":"unknown error"},{"code":"UNKNOWN","message":"unknown error","detail":"invalid URL on layer"},{"code":"UNKNOWN","message":"unknown error"}]}"#,
        );
        assert_eq!(
            two.to_string(),
            " (UNKNOWN: unknown error; invalid URL on layer)"
        );
        let html = RegistryErrorBody::parse(b"<html>\n<body>411 Length Required</body></html>");
        assert_eq!(html.code, None);
        assert!(html.to_string().contains("411 Length Required"));
        let long = RegistryErrorBody::parse("é".repeat(500).as_bytes());
        assert!(long.message.unwrap().len() < 210);
    }

    #[test]
    fn urls_lose_query_and_userinfo() {
        let u = url::Url::parse("https://u:p@h/v2/x/blobs/uploads/abc?_state=zz&digest=1").unwrap();
        assert_eq!(display_url(&u), "https://h/v2/x/blobs/uploads/abc");
    }
}
