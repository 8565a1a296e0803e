//! Transport: one ureq `Agent` per registry with one TLS configuration (verified by default; extra
//! CA files; `certs.d` directories like Docker's and containers'; `--insecure`), plain HTTP on
//! request, and the loopback rule Docker applies to 127.0.0.0/8: try HTTPS, fall back to HTTP.
//! Proxies come from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`),
//! except for loopback registries, which are always reached directly (as Go's
//! `ProxyFromEnvironment`, and so Docker and skopeo, do).
//! Redirects are not followed by ureq: the client follows them itself so that it knows the final
//! URL (to resolve `Location`) and drops `Authorization` when the host changes.

use crate::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// CA certificates (PEM files). When any are given (here or in `certs_dirs`), they are the
    /// roots trusted for this registry, instead of the public web roots.
    pub ca_certs: Vec<PathBuf>,
    /// Directories holding `<host[:port]>/*.crt` (Docker's `certs.d` convention).
    pub certs_dirs: Vec<PathBuf>,
    /// Skip TLS verification.
    pub insecure: bool,
    /// Speak plain HTTP.
    pub plain_http: bool,
    /// For loopback registries, fall back to HTTP when HTTPS fails (Docker's behaviour).
    pub loopback_http_fallback: bool,
    pub connect_timeout: Duration,
    /// Per read / per write on the socket (no whole-request timeout: blobs can be huge).
    pub io_timeout: Duration,
    pub user_agent: String,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            ca_certs: Vec::new(),
            certs_dirs: default_certs_dirs(),
            insecure: false,
            plain_http: false,
            loopback_http_fallback: true,
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(120),
            user_agent: format!("layerlift/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The scheme chosen for a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// `/etc/docker/certs.d`, `/etc/containers/certs.d`, `$XDG_CONFIG_HOME/containers/certs.d`.
pub fn default_certs_dirs() -> Vec<PathBuf> {
    let mut v = vec![
        PathBuf::from("/etc/docker/certs.d"),
        PathBuf::from("/etc/containers/certs.d"),
    ];
    let cfg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(c) = cfg {
        v.push(c.join("containers/certs.d"));
    }
    v
}

/// Whether `host` (no port) is a loopback name or address.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn read_pem_certs(path: &Path, out: &mut Vec<Certificate<'static>>) -> Result<(), Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        what: "cannot read CA certificate",
        path: path.display().to_string(),
        source,
    })?;
    let before = out.len();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Tls(format!(
                    "{}: not a PEM certificate file: {e}",
                    path.display()
                )));
            }
        }
    }
    if out.len() == before {
        return Err(Error::Tls(format!(
            "{}: no certificate found in the file",
            path.display()
        )));
    }
    Ok(())
}

/// Build the agent for `registry` (`host[:port]`).
pub fn build_agent(opts: &TransportOptions, registry: &str) -> Result<ureq::Agent, Error> {
    let mut extra = Vec::new();
    for p in &opts.ca_certs {
        read_pem_certs(p, &mut extra)?;
    }
    for dir in &opts.certs_dirs {
        let d = dir.join(registry);
        if let Ok(entries) = std::fs::read_dir(&d) {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect();
            files.sort();
            for f in files {
                read_pem_certs(&f, &mut extra)?;
            }
        }
    }
    let roots = if extra.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&extra)
    };
    let tls = TlsConfig::builder()
        .root_certs(roots)
        .disable_verification(opts.insecure)
        .build();
    let host = crate::reference::host_without_port(registry);
    let proxy = if is_loopback(host) {
        None
    } else {
        ureq::Proxy::try_from_env()
    };
    let config = ureq::Agent::config_builder()
        .proxy(proxy)
        .http_status_as_error(false)
        .max_redirects(0)
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .tls_config(tls)
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_per_read(Some(opts.io_timeout))
        .timeout_per_write(Some(opts.io_timeout))
        .user_agent(opts.user_agent.as_str())
        .max_idle_connections_per_host(16)
        .build();
    Ok(ureq::Agent::new_with_config(config))
}
