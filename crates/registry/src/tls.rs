//! TLS for the registry client: which certificates are trusted and which client certificate is
//! presented, wired into ureq as its TLS connector (ureq's own rustls connector has no hook for a
//! certificate verifier of our own).
//!
//! - Roots: the system's (the OS trust store, as `rustls-native-certs` finds it: `SSL_CERT_FILE`,
//!   `SSL_CERT_DIR`, `/etc/ssl/certs`…, where a CA installed machine-wide lives), Mozilla's
//!   (webpki-roots, for machines without a store), and every CA the user gave (`--ca-cert`,
//!   `certs.d/<host>/*.crt`), so a redirect to a CDN or a token server with a public certificate
//!   still verifies.
//! - A server certificate byte-identical to one the user gave is accepted even when webpki refuses
//!   it as a chain (a self-signed certificate made by `openssl req -x509`, which marks it as a CA
//!   and fails with `CaUsedAsEndEntity`); its name and validity period are still checked.
//! - `--insecure` skips verification for the registry's own host only; every other host a session
//!   reaches (a token realm, a redirect) is verified as usual.
//! - A client certificate (`certs.d/<host>/*.cert` with the `*.key` of the same name, Docker's
//!   convention) is presented to the registry's host when it asks for one, never to another host
//!   (connections there use a configuration without it).

use crate::Error;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use ureq::tls::PemItem;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// What the user configured for one registry.
#[derive(Debug, Default)]
pub(crate) struct TlsSettings {
    /// Certificates from `--ca-cert` and `certs.d/<host>/*.crt`: added to the roots, and trusted
    /// as they are when a server presents one of them.
    pub trusted: Vec<CertificateDer<'static>>,
    /// The registry's own (API) host: `insecure` and `client_cert` apply to it alone.
    pub registry_name: Option<ServerName<'static>>,
    /// Skip verification for the registry's host (`--insecure`).
    pub insecure: bool,
    /// Certificate chain and key presented to the registry's host when it asks for one (never to
    /// another host: a token realm or a redirect).
    pub client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// The server name rustls sees for `host` (no port; IPv6 literals may keep their brackets).
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_string()).ok()
}

/// Read the certificates of a PEM file.
pub(crate) fn read_pem_certs(
    path: &Path,
    out: &mut Vec<CertificateDer<'static>>,
) -> Result<(), Error> {
    let before = out.len();
    for item in read_pem(path, "cannot read certificate")? {
        if let PemItem::Certificate(c) = item {
            out.push(CertificateDer::from(c.der().to_vec()));
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

fn read_pem(path: &Path, what: &'static str) -> Result<Vec<PemItem<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        what,
        path: path.display().to_string(),
        source,
    })?;
    ureq::tls::parse_pem(&bytes)
        .map(|item| {
            item.map_err(|e| Error::Tls(format!("{}: not a PEM file: {e}", path.display())))
        })
        .collect()
}

/// A client certificate from `cert` (PEM chain) and `key` (PEM private key).
pub(crate) fn read_client_cert(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let mut chain = Vec::new();
    read_pem_certs(cert, &mut chain)?;
    let bytes = std::fs::read(key).map_err(|source| Error::Io {
        what: "cannot read client key",
        path: key.display().to_string(),
        source,
    })?;
    let key_der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        Error::Tls(format!(
            "{}: no usable private key in the file: {e}",
            key.display()
        ))
    })?;
    Ok((chain, key_der))
}

/// The `*.cert` / `*.key` pair in a `certs.d/<host>` directory, if there is one. A `.cert` without
/// its `.key` (or the reverse) is an error, as in Docker.
pub(crate) fn client_cert_files(dir: &Path) -> Result<Option<(PathBuf, PathBuf)>, Error> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in &files {
        let ext = f.extension().and_then(|x| x.to_str());
        let (other, missing) = match ext {
            Some("cert") => (f.with_extension("key"), "key"),
            Some("key") => (f.with_extension("cert"), "cert"),
            _ => continue,
        };
        if !other.exists() {
            return Err(Error::Tls(format!(
                "{}: no matching .{missing} file {} for this client certificate pair",
                f.display(),
                other.display()
            )));
        }
    }
    Ok(files
        .iter()
        .find(|f| f.extension().is_some_and(|x| x == "cert"))
        .map(|f| (f.clone(), f.with_extension("key"))))
}

/// Mozilla's roots, the system's, and the user's certificates. A system store that cannot be read
/// (or holds certificates rustls cannot parse) adds what it can.
fn root_store(trusted: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(trusted.iter().cloned());
    roots
}

/// The TLS connector for one registry client: one rustls configuration for every host, and one
/// with the client certificate for the registry's host.
pub(crate) fn connector(settings: TlsSettings) -> Result<TlsConnector, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = root_store(&settings.trusted);
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Tls(format!("cannot set up certificate verification: {e}")))?;
    let verifier = Arc::new(Verifier {
        webpki,
        trusted: settings.trusted,
        insecure_name: settings
            .insecure
            .then(|| settings.registry_name.clone())
            .flatten(),
    });
    let builder = || {
        ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(verifier.clone())
            })
            .map_err(|e| Error::Tls(format!("cannot set up TLS: {e}")))
    };
    let config = Arc::new(builder()?.with_no_client_auth());
    let registry = match (settings.client_cert, settings.registry_name) {
        (Some((chain, key)), Some(name)) => {
            let c = builder()?
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Tls(format!("client certificate refused: {e}")))?;
            Some((name, Arc::new(c)))
        }
        _ => None,
    };
    Ok(TlsConnector { config, registry })
}

/// webpki verification, plus the user's own certificates as they are, minus the registry's host
/// under `--insecure`.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    trusted: Vec<CertificateDer<'static>>,
    insecure_name: Option<ServerName<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure_name.as_ref() == Some(&server_name.to_owned()) {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(e) => {
                if !self
                    .trusted
                    .iter()
                    .any(|t| t.as_ref() == end_entity.as_ref())
                {
                    return Err(e);
                }
                // The very certificate the user trusted: its name and dates still count.
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                check_validity(end_entity, now)?;
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The certificate's notBefore ≤ now ≤ notAfter.
fn check_validity(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    use rustls::CertificateError;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        ));
    }
    if now > validity.not_after.timestamp() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}

/// ureq connector: wraps the chained transport in TLS with our configuration when the URL is https.
pub(crate) struct TlsConnector {
    /// For every host.
    config: Arc<ClientConfig>,
    /// For the registry's host, with its client certificate.
    registry: Option<(ServerName<'static>, Arc<ClientConfig>)>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .authority()
            .map(|a| a.host())
            .ok_or(ureq::Error::Tls("URL without a host"))?;
        let name = server_name(host).ok_or(ureq::Error::Tls("not a valid TLS server name"))?;
        let config = match &self.registry {
            Some((registry, with_cert)) if *registry == name => with_cert.clone(),
            _ => self.config.clone(),
        };
        let mut conn = ClientConnection::new(config, name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        Ok(Some(Either::B(TlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// A TLS connection as a ureq transport.
pub(crate) struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA of the user's is added to the public roots, not used instead of them: a redirect to a
    /// CDN or a public token server still verifies.
    #[test]
    fn user_cas_are_added_to_the_public_roots() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, layerlift_testkit::tls::generate_server_certs().ca_pem).unwrap();
        let mut trusted = Vec::new();
        read_pem_certs(&ca, &mut trusted).unwrap();
        let without = root_store(&[]);
        assert!(without.len() >= webpki_roots::TLS_SERVER_ROOTS.len());
        assert_eq!(root_store(&trusted).len(), without.len() + 1);
    }

    #[test]
    fn client_certificate_pairs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(client_cert_files(dir.path()).unwrap(), None);
        assert_eq!(client_cert_files(&dir.path().join("absent")).unwrap(), None);
        std::fs::write(dir.path().join("ca.crt"), "x").unwrap();
        std::fs::write(dir.path().join("client.key"), "x").unwrap();
        let err = client_cert_files(dir.path()).unwrap_err().to_string();
        assert!(err.contains("client.cert"), "{err}");
        std::fs::write(dir.path().join("client.cert"), "x").unwrap();
        assert_eq!(
            client_cert_files(dir.path()).unwrap(),
            Some((
                dir.path().join("client.cert"),
                dir.path().join("client.key")
            ))
        );
    }
}
