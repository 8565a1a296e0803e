//! Trust-boundary tests of the registry client against a real `docker-registry`: which hosts see
//! credentials (upload sessions and token realms on another origin, redirects of token requests),
//! the TLS setups people run (a self-signed certificate made by `openssl req -x509`, mutual TLS
//! with a client certificate from `certs.d`), and answers that must not panic or loop (a token
//! that claims to live for ever, `Range: 0-0` for one byte held).
//!
//! Another origin on one machine: the client talks to `127.0.0.1`, the other host is a proxy
//! listening on `127.0.0.2` (loopback too) that records whether `Authorization` reached it.

use layerlift_manifest::Digest;
use layerlift_registry::{
    BlobSource, BytesSource, Client, Credential, Error, RetryPolicy, Secret, TransportOptions,
    UploadEvent, UploadOptions,
};
use layerlift_testkit::{Auth, Fault, FaultProxy, Registry, TlsFiles};

mod common;
use common::{fast_retries, plain_http_client};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

const OTHER_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A config, two layers and a manifest over them; pushed, the tag checked.
fn push(c: &Client, repo: &str, seed: u8, upload: &UploadOptions) -> Result<Digest, Error> {
    common::push(c, repo, &common::image(seed, 2), upload, &|_| {})
}

/// A client of `reg` (over TLS or plain HTTP, as ping finds) that does not retry.
fn token_client(reg: &Registry, cred: Credential) -> Client {
    Client::new(
        &reg.addr(),
        cred,
        TransportOptions::default(),
        RetryPolicy::none(),
    )
    .unwrap()
}

fn chunked(size: u64) -> UploadOptions {
    UploadOptions {
        chunk_size: Some(size),
        ..UploadOptions::default()
    }
}

// ---- credentials only to the registry's origin ----

/// The registry opens upload sessions on another origin (its POST answers `Location:
/// http://127.0.0.2:<port>/…`). The client follows it, as Docker does, but without credentials:
/// neither the monolithic PUT nor the chunked PATCHes carry `Authorization` there.
#[test]
fn an_upload_location_on_another_origin_gets_no_credentials() {
    let reg = Registry::htpasswd("dora", "pw-origin-1");
    let other = FaultProxy::start_on(OTHER_HOST, reg.port(), |_| Fault::Pass);
    let to = format!("http://{}", other.addr());
    let own = FaultProxy::start(reg.port(), move |r| {
        if r.method == "POST" && r.target.contains("/blobs/uploads/") {
            Fault::Relocate { to: to.clone() }
        } else {
            Fault::Pass
        }
    });
    let cred = || Credential::from_creds("dora:pw-origin-1").unwrap();
    for opts in [UploadOptions::default(), chunked(1000)] {
        let c = plain_http_client(&own.addr(), cred(), RetryPolicy::none());
        // The other host (the same registry behind it) refuses requests without credentials.
        let err = push(&c, "origin/x", 1, &opts).unwrap_err();
        assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
        assert!(err.to_string().contains("127.0.0.2"), "{err}");
        assert!(
            err.to_string().contains("credentials are not sent there"),
            "{err}"
        );
    }
    let seen = other.log();
    assert!(
        seen.iter().any(|l| l.method == "PUT") && seen.iter().any(|l| l.method == "PATCH"),
        "the Location was followed: {seen:?}"
    );
    assert!(
        seen.iter().all(|l| !l.authorization),
        "Authorization reached another origin: {seen:?}"
    );
    // The registry's own origin did get them.
    assert!(own.log().iter().any(|l| l.authorization));
}

/// The registry's `/v2/` redirects to another origin, which answers 401 with a challenge naming
/// its own realm: that challenge is not the registry's, and the password never goes to that realm
/// (the registry's own 401 on the next request says Basic, and the push works).
#[test]
fn a_challenge_from_another_origin_is_ignored() {
    let reg = Registry::htpasswd("fay", "pw-challenge-1");
    let sink = layerlift_testkit::TokenServer::start("elsewhere", &[], 60).unwrap();
    // The other origin's own realm, known once it listens.
    let realm = std::sync::Arc::new(Mutex::new(String::new()));
    let other = FaultProxy::start_on(OTHER_HOST, sink.port(), {
        let realm = realm.clone();
        move |r| {
            if r.target == "/v2/" {
                Fault::Unauthorized {
                    challenge: format!(
                        r#"Bearer realm="{}",service="elsewhere""#,
                        realm.lock().unwrap()
                    ),
                }
            } else {
                Fault::Pass
            }
        }
    });
    *realm.lock().unwrap() = format!("http://{}/token", other.addr());
    let to = format!("http://{}", other.addr());
    let own = FaultProxy::start(reg.port(), move |r| {
        if r.target == "/v2/" {
            Fault::Redirect { to: to.clone() }
        } else {
            Fault::Pass
        }
    });
    let c = plain_http_client(
        &own.addr(),
        Credential::from_creds("fay:pw-challenge-1").unwrap(),
        RetryPolicy::none(),
    );
    push(&c, "challenge/x", 12, &UploadOptions::default()).unwrap();
    assert!(
        sink.requests().is_empty(),
        "the other origin's realm was asked for a token: {:?}",
        sink.requests()
    );
    assert!(
        other.log().iter().all(|l| !l.authorization),
        "{:?}",
        other.log()
    );
}

/// Token requests with a password: a redirect of the realm to another origin drops the Basic
/// header; one on the realm's own origin keeps it.
#[test]
fn token_basic_credentials_stay_on_the_realm_origin() {
    let reg = Registry::token("ann", "pw-realm-1");
    let ts = reg.token_server().unwrap();
    let other = FaultProxy::start_on(OTHER_HOST, ts.port(), |_| Fault::Pass);
    let cred = || Credential::from_creds("ann:pw-realm-1").unwrap();

    // Same origin: followed with the credentials, and the push works.
    ts.redirect(307, &format!("http://127.0.0.1:{}", ts.port()));
    let c = token_client(&reg, cred());
    push(&c, "realm/same", 2, &UploadOptions::default()).unwrap();
    let moved: Vec<_> = ts
        .requests()
        .into_iter()
        .filter(|r| r.path == "/moved-token")
        .collect();
    assert!(
        !moved.is_empty() && moved.iter().all(|r| r.had_authorization),
        "{moved:?}"
    );

    // Another origin: followed without them (an anonymous, pull-only token, so the push is
    // refused), for 307 and 302 alike.
    for status in [307, 302] {
        ts.redirect(status, &format!("http://{}", other.addr()));
        let c = token_client(&reg, cred());
        let err = push(&c, "realm/other", 3, &UploadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    }
    let seen = other.log();
    assert!(seen.len() >= 2, "the redirects were followed: {seen:?}");
    assert!(
        seen.iter().all(|l| !l.authorization),
        "the password reached another origin: {seen:?}"
    );
}

/// Token requests with a refresh token (POSTed as a form): a 307 to another origin is refused
/// (the form holds the refresh token), and a 301/302 never re-POSTs the form: it continues as a
/// GET without a body.
#[test]
fn token_refresh_form_is_never_reposted() {
    let reg = Registry::token("bea", "pw-refresh-1");
    let ts = reg.token_server().unwrap();
    let other = FaultProxy::start_on(OTHER_HOST, ts.port(), |_| Fault::Pass);
    let cred = || Credential::IdentityToken(Secret::new(ts.issue_refresh_token("bea")));

    ts.redirect(307, &format!("http://{}", other.addr()));
    let c = token_client(&reg, cred());
    let err = push(&c, "refresh/x", 4, &UploadOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("another origin"), "{text}");
    assert!(
        !text.contains("refresh-"),
        "the error shows the refresh token: {text}"
    );
    assert!(other.log().is_empty(), "{:?}", other.log());

    for status in [301, 302] {
        ts.redirect(status, &format!("http://127.0.0.1:{}", ts.port()));
        let c = token_client(&reg, cred());
        // An anonymous token then: the push is refused, but nothing was posted twice.
        let _ = push(&c, "refresh/y", 5, &UploadOptions::default());
    }
    let moved: Vec<_> = ts
        .requests()
        .into_iter()
        .filter(|r| r.path == "/moved-token")
        .collect();
    assert!(!moved.is_empty(), "the redirects were followed");
    assert!(
        moved
            .iter()
            .all(|r| r.method == "GET" && r.grant_type.is_none()),
        "the form was posted again: {moved:?}"
    );
}

// ---- answers that must not panic or loop ----

/// A token server that says its tokens live for `u64::MAX` seconds: `Instant + Duration` would
/// overflow (a panic while holding the auth lock, poisoning it for every later request).
#[test]
fn a_token_that_claims_to_live_for_ever_does_not_panic() {
    let reg = Registry::token("cid", "pw-forever-1");
    reg.token_server().unwrap().advertise_expires_in(u64::MAX);
    let c = Client::new(
        &reg.addr(),
        Credential::from_creds("cid:pw-forever-1").unwrap(),
        TransportOptions::default(),
        RetryPolicy::none(),
    )
    .unwrap();
    push(&c, "forever/a", 6, &UploadOptions::default()).unwrap();
    // The client still works afterwards, with a wider scope (a new token).
    push(&c, "forever/b", 7, &UploadOptions::default()).unwrap();
}

/// A registry name that passes reference validation but that `Url` cannot hold (a numeric last
/// label is parsed as an IPv4 address and refused): an error naming it, not a panic.
#[test]
fn a_registry_name_url_cannot_hold_is_an_error() {
    let err = Client::new(
        "reg.123:5000",
        Credential::Anonymous,
        TransportOptions::default(),
        RetryPolicy::none(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidRegistry { .. }), "{err}");
    assert!(err.to_string().contains("reg.123:5000"), "{err}");
}

/// The registry holds one byte of a chunked upload when the connection breaks; its upload status
/// then says `Range: 0-0`, which also means "nothing". The upload must go on from byte 1: resent
/// from byte 0, docker-registry appends the chunk after the byte it holds (and the upload fails).
#[test]
fn range_0_0_for_one_byte_held_makes_progress() {
    let reg = Registry::anonymous();
    let patches = Mutex::new(0u32);
    // The second PATCH loses its connection before its body arrives.
    let proxy = FaultProxy::start(reg.port(), move |r| {
        if r.method != "PATCH" {
            return Fault::Pass;
        }
        let mut p = patches.lock().unwrap();
        *p += 1;
        if *p == 2 {
            Fault::Drop { after: 0 }
        } else {
            Fault::Pass
        }
    });
    let c = plain_http_client(&proxy.addr(), Credential::Anonymous, fast_retries());
    c.ping().unwrap();
    let blob = BytesSource::new(b"abcdef".to_vec());
    let resumed = Mutex::new(Vec::new());
    c.upload_blob("range/x", &blob, &chunked(1), None, &|e| {
        if let UploadEvent::Resumed { offset } = e {
            resumed.lock().unwrap().push(offset);
        }
    })
    .unwrap();
    assert!(c.blob_exists("range/x", &blob.digest()).unwrap());
    assert_eq!(*resumed.lock().unwrap(), vec![1]);
    let patches = proxy.log().iter().filter(|l| l.method == "PATCH").count();
    assert!(patches <= 9, "{patches} PATCHes for 6 bytes");
}

// ---- TLS as people run it ----

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate made exactly as Docker's documentation shows (`openssl req -x509`, which marks
/// it as a CA: webpki refuses it as a server certificate with `CaUsedAsEndEntity`), trusted with
/// `--ca-cert` or `certs.d`. Its name is still checked: the same server reached as `localhost`
/// (not in the certificate) is refused.
#[test]
fn a_self_signed_openssl_certificate_is_trusted_as_given() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:4096",
            "-nodes",
            "-sha256",
            "-keyout",
            "domain.key",
            "-x509",
            "-days",
            "365",
            "-out",
            "domain.crt",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        dir.path(),
    );
    let crt = dir.path().join("domain.crt");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&crt)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "the case under test: a certificate marked as a CA"
    );
    let reg = Registry::start_with_tls(
        Auth::Htpasswd(vec![("eli".into(), "pw-tls-1".into())]),
        TlsFiles {
            cert: crt.clone(),
            key: dir.path().join("domain.key"),
            client_ca: None,
        },
    );
    let cred = || Credential::from_creds("eli:pw-tls-1").unwrap();
    let with_ca = Client::new(
        &reg.addr(),
        cred(),
        TransportOptions {
            ca_certs: vec![crt.clone()],
            ..TransportOptions::default()
        },
        RetryPolicy::none(),
    )
    .unwrap();
    push(&with_ca, "openssl/a", 8, &UploadOptions::default()).unwrap();
    assert_eq!(with_ca.scheme(), Some(layerlift_registry::Scheme::Https));

    let certs_d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(certs_d.path().join(reg.addr())).unwrap();
    std::fs::copy(&crt, certs_d.path().join(reg.addr()).join("ca.crt")).unwrap();
    let with_dir = Client::new(
        &reg.addr(),
        cred(),
        TransportOptions {
            certs_dirs: vec![certs_d.path().to_path_buf()],
            ..TransportOptions::default()
        },
        RetryPolicy::none(),
    )
    .unwrap();
    push(&with_dir, "openssl/b", 9, &UploadOptions::default()).unwrap();

    // The name still counts.
    let by_name = Client::new(
        &format!("localhost:{}", reg.port()),
        cred(),
        TransportOptions {
            ca_certs: vec![crt.clone()],
            ..TransportOptions::default()
        },
        RetryPolicy::none(),
    )
    .unwrap();
    let err = by_name.ping().unwrap_err().to_string();
    assert!(err.contains("not valid for name"), "{err}");

    // Untrusted, it is refused as before.
    let untrusted = token_client(&reg, cred());
    let err = untrusted.ping().unwrap_err().to_string();
    assert!(err.contains("certificate"), "{err}");
}

/// A trusted self-signed certificate whose validity period is over is refused.
#[test]
fn an_expired_trusted_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) =
        layerlift_testkit::tls::self_signed_ca_server_cert((2000, 1, 1), (2001, 1, 1));
    std::fs::write(dir.path().join("old.crt"), cert).unwrap();
    std::fs::write(dir.path().join("old.key"), key).unwrap();
    let reg = Registry::start_with_tls(
        Auth::Anonymous,
        TlsFiles {
            cert: dir.path().join("old.crt"),
            key: dir.path().join("old.key"),
            client_ca: None,
        },
    );
    let c = Client::new(
        &reg.addr(),
        Credential::Anonymous,
        TransportOptions {
            ca_certs: vec![dir.path().join("old.crt")],
            ..TransportOptions::default()
        },
        RetryPolicy::none(),
    )
    .unwrap();
    let err = c.ping().unwrap_err().to_string();
    assert!(err.to_lowercase().contains("expired"), "{err}");
}

/// A registry that requires a client certificate (`http.tls.clientcas`): the one in
/// `certs.d/<host>/client.cert` + `client.key` is presented; without it the handshake fails.
#[test]
fn mutual_tls_with_a_client_certificate_from_certs_d() {
    let mtls = layerlift_testkit::mutual_tls_registry();
    let (reg, ca, client) = (&mtls.registry, &mtls.ca, &mtls.client);
    let certs_d = tempfile::tempdir().unwrap();
    let host_dir = certs_d.path().join(reg.addr());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(ca, host_dir.join("ca.crt")).unwrap();

    // Without a client certificate the registry refuses the connection.
    let opts = || TransportOptions {
        certs_dirs: vec![certs_d.path().to_path_buf()],
        ..TransportOptions::default()
    };
    let c = Client::new(
        &reg.addr(),
        Credential::Anonymous,
        opts(),
        RetryPolicy::none(),
    )
    .unwrap();
    assert!(push(&c, "mtls/a", 10, &UploadOptions::default()).is_err());

    // A `.cert` without its `.key` is a clear error.
    std::fs::write(host_dir.join("client.cert"), &client.cert_pem).unwrap();
    let err = Client::new(
        &reg.addr(),
        Credential::Anonymous,
        opts(),
        RetryPolicy::none(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("client.key"), "{err}");

    std::fs::write(host_dir.join("client.key"), &client.key_pem).unwrap();
    let c = Client::new(
        &reg.addr(),
        Credential::Anonymous,
        opts(),
        RetryPolicy::none(),
    )
    .unwrap();
    push(&c, "mtls/b", 11, &UploadOptions::default()).unwrap();
}
