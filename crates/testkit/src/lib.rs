//! layerlift-testkit: helpers for tests that need a real registry (not published).
//!
//! - [`Registry`]: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with a free port and
//!   fresh storage, anonymous, htpasswd Basic, or token auth, optionally behind TLS with a
//!   generated CA; killed on drop. [`mutual_tls_registry`]: one that requires a client certificate.
//! - [`TokenServer`]: a small token server signing ES256 JWTs the registry trusts.
//! - [`FaultProxy`]: a loopback HTTP proxy that drops connections, injects 5xx/429, stalls and
//!   redirects, to test retries and resume.
//! - [`QuirkProxy`]: the registry behind a proxy that behaves like other registry implementations
//!   (ECR, GHCR, Quay, ACR, GAR, Docker Hub, Harbor), one named [`Quirk`] per deviation.
//! - [`tls`]: a CA and a server certificate for 127.0.0.1 (and a client certificate).
//!
//! Everything listens on 127.0.0.1 only.

mod http;
mod proxy;
mod quirks;
mod registry;
pub mod tls;
mod token;

pub use proxy::{Answer, Before, Exchange, Fault, FaultProxy, Message, ProxyLog, RequestInfo};
pub use quirks::{BODY_TOO_LARGE, GAR_UPLOADS, PART_TOO_SMALL, Quirk, QuirkProxy};
pub use registry::{
    Auth, MutualTls, Registry, RegistryOptions, TlsFiles, mutual_tls_registry, registry_binary,
};
pub use token::{TokenRequest, TokenServer};

/// Reserve a free TCP port on 127.0.0.1 (the listener is closed again; a small race remains).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}
