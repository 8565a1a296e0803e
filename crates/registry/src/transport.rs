//! Transport: one ureq `Agent` per registry with one TLS configuration (see [`crate::tls`]: verified
//! by default; extra CA files added to the public roots; `certs.d` directories like Docker's and
//! containers', with client certificates; `--insecure` for the registry's host), plain HTTP on
//! request, and the loopback rule Docker applies to 127.0.0.0/8: try HTTPS, fall back to HTTP.
//! Proxies come from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`),
//! except for loopback registries, which are always reached directly (as Go's
//! `ProxyFromEnvironment`, and so Docker and skopeo, do).
//! Redirects are not followed by ureq: the client follows them itself so that it knows the final
//! URL (to resolve `Location`) and drops `Authorization` when the host changes.

use crate::{Error, tls};
use std::path::PathBuf;
use std::time::Duration;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector};

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// CA certificates (PEM files), trusted in addition to the public web roots (Mozilla's). A
    /// server certificate identical to one of them is trusted as it is (a self-signed
    /// certificate), its name and validity still checked.
    pub ca_certs: Vec<PathBuf>,
    /// Directories holding `<host[:port]>/*.crt` (CAs, as `ca_certs`) and a client certificate
    /// `<host[:port]>/*.cert` with its `*.key` (Docker's `certs.d` convention).
    pub certs_dirs: Vec<PathBuf>,
    /// Skip TLS verification for the registry's own host (not for token realms or redirects
    /// elsewhere).
    pub insecure: bool,
    /// Speak plain HTTP.
    pub plain_http: bool,
    /// For loopback registries, fall back to HTTP when HTTPS fails (Docker's behaviour).
    pub loopback_http_fallback: bool,
    /// How long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// Per read / per write on the socket (no whole-request timeout: blobs can be huge).
    pub io_timeout: Duration,
    /// The `User-Agent` header.
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
    /// TLS.
    Https,
    /// Plain HTTP (`--plain-http`, or the loopback fallback).
    Http,
}

impl Scheme {
    /// `https` or `http`.
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

/// Build the agent for `registry` (`host[:port]`; `api_host` is where its API is, which differs
/// for Docker Hub).
pub fn build_agent(
    opts: &TransportOptions,
    registry: &str,
    api_host: &str,
) -> Result<ureq::Agent, Error> {
    let mut settings = tls::TlsSettings::default();
    for p in &opts.ca_certs {
        tls::read_pem_certs(p, &mut settings.trusted)?;
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
                tls::read_pem_certs(&f, &mut settings.trusted)?;
            }
        }
        if settings.client_cert.is_none()
            && let Some((cert, key)) = tls::client_cert_files(&d)?
        {
            settings.client_cert = Some(tls::read_client_cert(&cert, &key)?);
        }
    }
    settings.registry_name = tls::server_name(crate::reference::host_without_port(api_host));
    settings.insecure = opts.insecure;
    let tls_connector = tls::connector(settings)?;
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
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_per_read(Some(opts.io_timeout))
        .timeout_per_write(Some(opts.io_timeout))
        .user_agent(opts.user_agent.as_str())
        .max_idle_connections_per_host(16)
        .build();
    let connector =
        ().chain(ConnectProxyConnector::default())
            .chain(TcpConnector::default())
            .chain(tls_connector);
    Ok(ureq::Agent::with_parts(
        config,
        connector,
        DefaultResolver::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use layerlift_testkit::{Auth, Registry, RegistryOptions};

    /// The client certificate from `certs.d` is presented to the registry's host only: the same
    /// mutual-TLS server reached under another name (as a token realm or a redirect would be)
    /// does not get it, and refuses the handshake.
    #[test]
    fn the_client_certificate_is_for_the_registry_host_only() {
        let mtls = layerlift_testkit::mutual_tls_registry();
        let (reg, ca, client) = (&mtls.registry, mtls.ca.clone(), &mtls.client);
        let certs_d = tempfile::tempdir().unwrap();
        let host_dir = certs_d.path().join(reg.addr());
        std::fs::create_dir_all(&host_dir).unwrap();
        std::fs::write(host_dir.join("client.cert"), &client.cert_pem).unwrap();
        std::fs::write(host_dir.join("client.key"), &client.key_pem).unwrap();
        let opts = TransportOptions {
            ca_certs: vec![ca],
            certs_dirs: vec![certs_d.path().to_path_buf()],
            ..TransportOptions::default()
        };
        let agent = build_agent(&opts, &reg.addr(), &reg.addr()).unwrap();
        let own = agent
            .get(format!("https://127.0.0.1:{}/v2/", reg.port()))
            .call();
        assert!(own.is_ok(), "{own:?}");
        assert!(
            agent
                .get(format!("https://localhost:{}/v2/", reg.port()))
                .call()
                .is_err(),
            "the client certificate went to another host name"
        );
    }

    /// `--insecure` trusts the registry's own host and no other: the same TLS server reached
    /// under another name (as a token realm or a redirect would be) is still verified.
    #[test]
    fn insecure_is_for_the_registry_host_only() {
        let reg = Registry::start(RegistryOptions {
            auth: Auth::Anonymous,
            tls: true,
        });
        let opts = TransportOptions {
            insecure: true,
            certs_dirs: Vec::new(),
            ..TransportOptions::default()
        };
        let agent = build_agent(&opts, &reg.addr(), &reg.addr()).unwrap();
        let own = agent
            .get(format!("https://127.0.0.1:{}/v2/", reg.port()))
            .call();
        assert!(own.is_ok(), "{own:?}");
        let other = agent
            .get(format!("https://localhost:{}/v2/", reg.port()))
            .call()
            .unwrap_err()
            .to_string();
        assert!(other.contains("certificate"), "{other}");
    }
}
