//! Test certificates: a CA and a server certificate for `127.0.0.1` / `localhost` signed by it
//! (and a client certificate for mutual TLS), and a standalone ECDSA key + self-signed certificate for signing tokens.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A CA and a leaf certificate for 127.0.0.1, all PEM.
#[derive(Debug, Clone)]
pub struct TestCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A client certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct ClientCertPem {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generate a fresh CA and a server certificate for 127.0.0.1 and localhost.
pub fn generate_server_certs() -> TestCerts {
    generate_certs(false).0
}

/// [`generate_server_certs`] plus a client certificate signed by the same CA (for a registry
/// that requires mutual TLS with `http.tls.clientcas`).
pub fn generate_mtls_certs() -> (TestCerts, ClientCertPem) {
    let (certs, client) = generate_certs(true);
    (certs, client.expect("client certificate"))
}

fn generate_certs(with_client: bool) -> (TestCerts, Option<ClientCertPem>) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "layerlift test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let client = with_client.then(|| {
        let ckey = KeyPair::generate().expect("client key");
        let mut cparams = CertificateParams::new(Vec::<String>::new()).expect("params");
        cparams
            .distinguished_name
            .push(DnType::CommonName, "layerlift test client");
        cparams.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let ccert = cparams.signed_by(&ckey, &issuer).expect("client cert");
        ClientCertPem {
            cert_pem: ccert.pem(),
            key_pem: ckey.serialize_pem(),
        }
    });
    (
        TestCerts {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
        client,
    )
}

/// An ES256 signing key with a self-signed certificate (the registry's `rootcertbundle`).
pub struct SigningKey {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    key: ring::signature::EcdsaKeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey")
    }
}

impl SigningKey {
    pub fn generate() -> Self {
        let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("token key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "layerlift test token issuer");
        let cert = params.self_signed(&kp).expect("token cert");
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &kp.serialize_der(),
            &rng,
        )
        .expect("ring accepts rcgen's PKCS#8");
        SigningKey {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        }
    }

    /// An ES256 signature (r || s) of `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        self.key
            .sign(&rng, msg)
            .expect("ECDSA signing")
            .as_ref()
            .to_vec()
    }
}

/// A self-signed certificate for 127.0.0.1 marked as a CA (as `openssl req -x509` makes them),
/// valid from `not_before` to `not_after` (`(year, month, day)`): certificate and key, PEM.
pub fn self_signed_ca_server_cert(
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem())
}
