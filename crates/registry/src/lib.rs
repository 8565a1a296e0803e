//! layerlift-registry: an OCI distribution client over ureq 3.
//!
//! It knows references ([`Reference`]), transport ([`TransportOptions`]: TLS verified by default
//! against the public roots plus the user's CAs, certificates trusted as given, client certificates
//! from `certs.d`, `--insecure` for the registry's host, plain HTTP and the loopback fallback), credentials ([`credentials`]:
//! `--creds`, auth.json, Docker's config.json and its helpers), authentication (anonymous, Basic,
//! the Bearer token flow), blob uploads (HEAD, cross-repository mount, monolithic POST+PUT, chunked
//! PATCH with resume), manifest PUTs with the exact bytes, and retries with backoff. It never reads
//! tar: a blob is an opaque [`BlobSource`].
//!
//! Credentials go only to the registry's origin (scheme, host, port) and to the token realm its
//! challenge names. Errors are [`Error`]: they carry the method, URL, status and registry error
//! code, never a secret (credentials live in [`Secret`], whose `Debug`/`Display` print `***`).

#![warn(missing_docs)]

mod auth;
mod client;
pub mod credentials;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod hosts;
mod method;
mod retry;
mod tls;
mod transport;

pub use auth::Scope;
pub use client::{
    BlobSource, BytesSource, Client, ContentMismatch, FileSource, MountResult, RetryObserver,
    StreamError, UploadEvent, UploadOptions, VerifyingSource,
};
pub use credentials::{Credential, Secret};
pub use error::{Error, ErrorCode, RegistryErrorBody};
/// Image references live in `layerlift-manifest` (archives and layouts name images with them too).
pub use layerlift_manifest::reference;
pub use method::Method;
pub use reference::{Reference, ReferenceError};
pub use retry::RetryPolicy;
pub use transport::{Scheme, TransportOptions};
/// Upload session locations are URLs.
pub use url::Url;
