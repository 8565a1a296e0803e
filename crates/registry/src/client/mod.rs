//! The registry client: one per registry host, shared by all upload threads (`Client` is `Sync`).
//!
//! Every request goes through `Client::send` ([`http`]): it adds the `Authorization` the registry
//! asked for ([`token`]: Basic, or a Bearer token for the scopes asked for so far) when the URL is
//! on the registry's own origin (an upload `Location` elsewhere is followed without it), answers a
//! 401 by fetching a new token once, follows redirects itself (dropping `Authorization` at the
//! first hop to another origin, never re-posting a token request's form) and keeps the final URL
//! so that `Location` headers resolve against it. Operations ([`blob`]: HEAD, mount, GET;
//! [`upload`]: monolithic and chunked uploads with resume; [`stream`]: streamed ones; [`manifest`]: manifest PUT,
//! HEAD and GET) wrap their requests in `Client::retrying` ([`retrying`]): connection errors,
//! 408, 429 and 5xx are retried with backoff and jitter, honouring `Retry-After`. Blobs to upload
//! are [`BlobSource`]s ([`source`]).
//!
//! This file holds the client itself: construction, the registry's origin, scopes and the ping
//! that chooses the scheme and learns the authentication challenge.

mod blob;
mod http;
mod manifest;
mod ping;
mod referrers;
mod retrying;
mod source;
mod stream;
mod token;
mod upload;

pub use blob::MountResult;
pub(crate) use http::resolve_location;
pub use source::{BlobSource, BytesSource, ContentMismatch, FileSource, VerifyingSource};
pub use stream::StreamError;
pub use upload::{UploadEvent, UploadOptions};
pub(crate) use upload::{offset_after_patch, parse_range_end, resume_offset, resume_point};

use crate::auth::{self, AuthState, Scope};
use crate::credentials::{Credential, Secret};
use crate::error::Error;
use crate::retry::RetryPolicy;
use crate::transport::{self, Scheme, TransportOptions};
use std::sync::{Mutex, RwLock};
use std::time::Duration;
use url::Url;

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
    /// The request body size the registry (or what is in front of it) refused as too large,
    /// halved: what later uploads keep to (0: none refused yet).
    body_cap: std::sync::atomic::AtomicU64,
    /// A streamed upload failed here: blobs go up from files (`stream.rs`).
    streams_refused: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.registry)
            .field("credential", &self.credential.describe())
            .finish_non_exhaustive()
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
            body_cap: std::sync::atomic::AtomicU64::new(0),
            streams_refused: Default::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
