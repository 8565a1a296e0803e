//! Integration tests of the registry client against a real `docker-registry` (distribution 2.8)
//! started by layerlift-testkit: one registry per test, anonymous, htpasswd, token and TLS modes.

use layerlift_manifest::Digest;
use layerlift_registry::{
    BlobSource, BytesSource, Client, Credential, Error, ErrorCode, MountResult, RetryPolicy, Scope,
    TransportOptions, UploadEvent, UploadOptions,
};
use layerlift_testkit::{Auth, Registry, RegistryOptions};
use std::sync::Mutex;

const PASSWORD: &str = "pw-Zq8!rT3x";

/// A small image: a config, two layers, and an OCI manifest over them.
struct Image {
    config: BytesSource,
    layers: Vec<BytesSource>,
    manifest: Vec<u8>,
}

fn image(seed: u8) -> Image {
    let layers: Vec<BytesSource> = (0..2u8)
        .map(|i| {
            let bytes: Vec<u8> = (0..(3000 + 777 * usize::from(i)))
                .map(|j| (j as u8).wrapping_mul(31).wrapping_add(seed ^ i))
                .collect();
            BytesSource::new(bytes)
        })
        .collect();
    let config = BytesSource::new(
        format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":{seed}}}"#)
            .into_bytes(),
    );
    let desc = |mt: &str, s: &BytesSource| serde_json::json!({"mediaType": mt, "digest": s.digest().to_string(), "size": s.size()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar+gzip", l)).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    Image {
        config,
        layers,
        manifest,
    }
}

fn client(reg: &Registry, cred: Credential, opts: TransportOptions) -> Client {
    Client::new(&reg.addr(), cred, opts, RetryPolicy::none()).unwrap()
}

fn no_events(_: UploadEvent) {}

/// Push `img` to `repo:tag` the way layerlift-push does and check the tag.
fn push(c: &Client, repo: &str, img: &Image, upload: &UploadOptions) -> Result<Digest, Error> {
    c.ping()?;
    c.authorize(&[Scope::pull_push(repo)]);
    for blob in std::iter::once(&img.config).chain(&img.layers) {
        if !c.blob_exists(repo, &blob.digest())? {
            c.upload_blob(repo, blob, upload, None, &no_events)?;
        }
        assert!(
            c.blob_exists(repo, &blob.digest())?,
            "blob is there after upload"
        );
    }
    let d = c.put_manifest(
        repo,
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &img.manifest,
    )?;
    assert_eq!(d, Digest::of(&img.manifest));
    assert_eq!(c.manifest_digest(repo, "v1")?, Some(d));
    let (mt, bytes) = c.get_manifest(repo, &d.to_string())?;
    assert_eq!(mt, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(bytes, img.manifest, "the registry keeps our exact bytes");
    Ok(d)
}

#[test]
fn anonymous_monolithic_and_chunked() {
    let reg = Registry::anonymous();
    let c = client(&reg, Credential::Anonymous, TransportOptions::default());
    push(&c, "mono/app", &image(1), &UploadOptions::default()).unwrap();
    // Loopback without --plain-http: HTTPS failed, HTTP was used.
    assert_eq!(c.scheme(), Some(layerlift_registry::Scheme::Http));
    let chunked = UploadOptions {
        chunk_size: Some(1000),
        ..UploadOptions::default()
    };
    push(&c, "chunked/app", &image(2), &chunked).unwrap();
    // Chunked uploads go through PATCH: the registry's access log shows them.
    assert!(
        reg.log().contains("\"PATCH /v2/chunked/app/blobs/uploads/"),
        "PATCH used"
    );
    // Blobs over max_single_upload are chunked too.
    let auto = UploadOptions {
        max_single_upload: 2000,
        default_chunk_size: 1500,
        ..UploadOptions::default()
    };
    push(&c, "auto/app", &image(3), &auto).unwrap();
    assert!(reg.log().contains("\"PATCH /v2/auto/app/blobs/uploads/"));
}

#[test]
fn empty_blob_and_progress() {
    let reg = Registry::anonymous();
    let c = client(&reg, Credential::Anonymous, TransportOptions::default());
    c.ping().unwrap();
    let empty = BytesSource::new(Vec::new());
    c.upload_blob("e/x", &empty, &UploadOptions::default(), None, &no_events)
        .unwrap();
    assert!(c.blob_exists("e/x", &empty.digest()).unwrap());
    let big = BytesSource::new(vec![7u8; 300_000]);
    let seen = Mutex::new(0u64);
    c.upload_blob("e/x", &big, &UploadOptions::default(), None, &|e| {
        if let UploadEvent::Progress { sent } = e {
            *seen.lock().unwrap() = sent;
        }
    })
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), 300_000);
}

#[test]
fn digest_mismatch_is_refused() {
    // A source that lies about its digest: the registry refuses the PUT.
    struct Liar(BytesSource);
    impl BlobSource for Liar {
        fn digest(&self) -> Digest {
            Digest::of(b"something else")
        }
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn open_at(&self, o: u64) -> std::io::Result<Box<dyn std::io::Read + Send + '_>> {
            self.0.open_at(o)
        }
        fn describe(&self) -> String {
            "liar".into()
        }
    }
    let reg = Registry::anonymous();
    let c = client(&reg, Credential::Anonymous, TransportOptions::default());
    c.ping().unwrap();
    let err = c
        .upload_blob(
            "x/y",
            &Liar(BytesSource::new(b"abc".to_vec())),
            &UploadOptions::default(),
            None,
            &no_events,
        )
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert_eq!(err.code(), Some(&ErrorCode::DigestInvalid), "{err}");
}

#[test]
fn cross_repository_mount() {
    let reg = Registry::anonymous();
    let c = client(&reg, Credential::Anonymous, TransportOptions::default());
    let img = image(4);
    push(&c, "src/app", &img, &UploadOptions::default()).unwrap();
    let l = &img.layers[0];
    assert!(!c.blob_exists("dst/app", &l.digest()).unwrap());
    assert_eq!(
        c.mount_blob("dst/app", &l.digest(), "src/app").unwrap(),
        MountResult::Mounted
    );
    assert!(c.blob_exists("dst/app", &l.digest()).unwrap());
    // From a repository without the blob: not mounted, and a session to upload into.
    let other = BytesSource::new(b"not anywhere yet".to_vec());
    match c.mount_blob("dst/app", &other.digest(), "src/app").unwrap() {
        MountResult::NotMounted(Some(session)) => c
            .upload_blob(
                "dst/app",
                &other,
                &UploadOptions::default(),
                Some(session),
                &no_events,
            )
            .unwrap(),
        r => panic!("expected a session, got {r:?}"),
    }
    assert!(c.blob_exists("dst/app", &other.digest()).unwrap());
}

#[test]
fn htpasswd_basic_auth() {
    let reg = Registry::htpasswd("alice", PASSWORD);
    let good = client(
        &reg,
        Credential::from_creds(&format!("alice:{PASSWORD}")).unwrap(),
        TransportOptions::default(),
    );
    push(&good, "basic/app", &image(5), &UploadOptions::default()).unwrap();

    let wrong = client(
        &reg,
        Credential::from_creds("alice:not-the-password").unwrap(),
        TransportOptions::default(),
    );
    let err = push(&wrong, "basic/app2", &image(6), &UploadOptions::default()).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{text}"
    );
    assert!(text.contains("user alice"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");

    let anon = client(&reg, Credential::Anonymous, TransportOptions::default());
    let err = push(&anon, "basic/app3", &image(7), &UploadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
}

#[test]
fn token_auth_with_password_and_identity_token() {
    let reg = Registry::token("bob", PASSWORD);
    let ts = reg.token_server().unwrap();
    let c = client(
        &reg,
        Credential::from_creds(&format!("bob:{PASSWORD}")).unwrap(),
        TransportOptions::default(),
    );
    push(&c, "tok/app", &image(8), &UploadOptions::default()).unwrap();
    let reqs = ts.requests();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter().all(|r| r.had_authorization && r.status == 200),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().any(|r| r
            .scopes
            .contains(&"repository:tok/app:pull,push".to_string())),
        "{reqs:?}"
    );
    assert!(
        reqs.iter()
            .all(|r| r.service.as_deref() == Some("layerlift-test-registry"))
    );
    // One token serves the whole push.
    assert_eq!(reqs.len(), 1, "{reqs:?}");

    // A mount asks for pull on the source in the same token request.
    let l = image(8).layers[0].digest();
    c.authorize(&[Scope::pull_push("tok/other")]);
    assert_eq!(
        c.mount_blob("tok/other", &l, "tok/app").unwrap(),
        MountResult::Mounted
    );
    let last = ts.requests().last().unwrap().scopes.clone();
    assert!(
        last.contains(&"repository:tok/app:pull,push".to_string()),
        "{last:?}"
    );
    assert!(
        last.contains(&"repository:tok/other:pull,push".to_string()),
        "{last:?}"
    );

    // An identity token (OAuth2 refresh token) is exchanged with POST.
    let refresh = ts.issue_refresh_token("bob");
    let c2 = client(
        &reg,
        Credential::IdentityToken(layerlift_registry::Secret::new(refresh)),
        TransportOptions::default(),
    );
    push(&c2, "tok/app2", &image(9), &UploadOptions::default()).unwrap();
    assert!(ts.requests().iter().any(|r| r.method == "POST"
        && r.grant_type.as_deref() == Some("refresh_token")
        && r.status == 200));

    // Wrong password: the token server refuses, and the error names the user, not the password.
    let bad = client(
        &reg,
        Credential::from_creds("bob:wrong-secret-value").unwrap(),
        TransportOptions::default(),
    );
    let err = push(&bad, "tok/app3", &image(10), &UploadOptions::default()).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, Error::Unauthorized { .. }), "{text}");
    assert!(!text.contains("wrong-secret-value"), "{text}");

    // Anonymous: a pull-only token, so the push is refused by the registry.
    let anon = client(&reg, Credential::Anonymous, TransportOptions::default());
    let err = push(&anon, "tok/app4", &image(11), &UploadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
}

#[test]
fn tls_with_generated_ca() {
    let reg = Registry::start(RegistryOptions {
        auth: Auth::Anonymous,
        tls: true,
    });
    let ca = reg.ca_cert_path().unwrap();
    let with_ca = client(
        &reg,
        Credential::Anonymous,
        TransportOptions {
            ca_certs: vec![ca.clone()],
            ..TransportOptions::default()
        },
    );
    push(&with_ca, "tls/app", &image(12), &UploadOptions::default()).unwrap();
    assert_eq!(with_ca.scheme(), Some(layerlift_registry::Scheme::Https));

    // Without the CA the certificate is not trusted, and there is no silent downgrade.
    let without = client(&reg, Credential::Anonymous, TransportOptions::default());
    let err = push(&without, "tls/app2", &image(13), &UploadOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.to_lowercase().contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );

    // --insecure skips verification.
    let insecure = client(
        &reg,
        Credential::Anonymous,
        TransportOptions {
            insecure: true,
            ..TransportOptions::default()
        },
    );
    push(&insecure, "tls/app3", &image(14), &UploadOptions::default()).unwrap();

    // A certs.d directory works like --ca-cert.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(reg.addr())).unwrap();
    std::fs::copy(&ca, dir.path().join(reg.addr()).join("ca.crt")).unwrap();
    let certs_d = client(
        &reg,
        Credential::Anonymous,
        TransportOptions {
            certs_dirs: vec![dir.path().to_path_buf()],
            ..TransportOptions::default()
        },
    );
    push(&certs_d, "tls/app4", &image(15), &UploadOptions::default()).unwrap();
}

#[test]
fn plain_http_flag_and_unreachable_registry() {
    let reg = Registry::anonymous();
    let c = client(
        &reg,
        Credential::Anonymous,
        TransportOptions {
            plain_http: true,
            ..TransportOptions::default()
        },
    );
    push(&c, "plain/app", &image(16), &UploadOptions::default()).unwrap();
    let port = reg.port();
    drop(reg);
    let c = Client::new(
        &format!("127.0.0.1:{port}"),
        Credential::Anonymous,
        TransportOptions::default(),
        RetryPolicy::none(),
    )
    .unwrap();
    let err = c.ping().unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn token_is_refreshed_before_it_expires() {
    let reg = Registry::start(RegistryOptions {
        auth: Auth::Token {
            users: vec![("eve".into(), PASSWORD.into())],
            expires_in: 3,
        },
        tls: false,
    });
    let c = client(
        &reg,
        Credential::from_creds(&format!("eve:{PASSWORD}")).unwrap(),
        TransportOptions::default(),
    );
    push(&c, "exp/app", &image(20), &UploadOptions::default()).unwrap();
    let before = reg.token_server().unwrap().requests().len();
    assert!(before >= 1);
    std::thread::sleep(std::time::Duration::from_millis(3100));
    push(&c, "exp/app", &image(21), &UploadOptions::default()).unwrap();
    let after = reg.token_server().unwrap().requests().len();
    assert!(after > before, "a new token once the first one expired");
}

#[test]
fn streamed_upload_of_unknown_digest() {
    let reg = Registry::anonymous();
    let c = client(&reg, Credential::Anonymous, TransportOptions::default());
    c.ping().unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let sent = Mutex::new(0u64);
    let (digest, size) = c
        .upload_stream(
            "stream/x",
            &mut &data[..],
            &|| Some((Digest::of(&data), data.len() as u64)),
            None,
            &|e| {
                if let UploadEvent::Progress { sent: s } = e {
                    *sent.lock().unwrap() = s;
                }
            },
        )
        .unwrap();
    assert_eq!(digest, Digest::of(&data));
    assert_eq!(size, 1_000_000);
    assert_eq!(*sent.lock().unwrap(), 1_000_000);
    assert!(c.blob_exists("stream/x", &digest).unwrap());
    // One PATCH without Content-Length: chunked transfer encoding.
    assert!(reg.log().contains("\"PATCH /v2/stream/x/blobs/uploads/"));
    assert!(!c.streams_refused());
    // An empty stream is a valid (empty) blob.
    let (d, n) = c
        .upload_stream(
            "stream/x",
            &mut std::io::empty(),
            &|| Some((Digest::of(b""), 0)),
            None,
            &no_events,
        )
        .unwrap();
    assert_eq!((d, n), (Digest::of(b""), 0));
}

#[test]
fn streamed_upload_under_a_wrong_digest_is_refused_by_the_registry() {
    let reg = Registry::anonymous();
    let c = client(&reg, Credential::Anonymous, TransportOptions::default());
    c.ping().unwrap();
    let data = b"the bytes that went up".to_vec();
    let wrong = Digest::of(b"other bytes");
    let e = c
        .upload_stream(
            "stream/w",
            &mut &data[..],
            &|| Some((wrong, data.len() as u64)),
            None,
            &no_events,
        )
        .unwrap_err();
    assert!(!e.read_failed, "{e}");
    assert!(e.to_string().contains("PUT"), "{e}");
    assert!(!c.blob_exists("stream/w", &wrong).unwrap());
    assert!(!c.blob_exists("stream/w", &Digest::of(&data)).unwrap());
    // Then blobs go up from files.
    assert!(c.streams_refused());
    // A producer that fails at the end is the reader's failure, not the registry's.
    let c = client(&reg, Credential::Anonymous, TransportOptions::default());
    c.ping().unwrap();
    let e = c
        .upload_stream("stream/w", &mut &data[..], &|| None, None, &no_events)
        .unwrap_err();
    assert!(e.read_failed, "{e}");
    assert!(!c.streams_refused());
}

#[test]
fn insufficient_scope_widens_the_token() {
    let reg = Registry::token("fay", PASSWORD);
    let c = client(
        &reg,
        Credential::from_creds(&format!("fay:{PASSWORD}")).unwrap(),
        TransportOptions::default(),
    );
    c.ping().unwrap();
    // Only pull asked for: the upload's 401 names the scope it needs, and the client asks again.
    c.authorize(&[Scope::pull("ins/app")]);
    let blob = BytesSource::new(b"needs push".to_vec());
    let r = c.upload_blob(
        "ins/app",
        &blob,
        &UploadOptions::default(),
        None,
        &no_events,
    );
    let reqs = reg.token_server().unwrap().requests();
    r.unwrap_or_else(|e| panic!("{e}: {reqs:?}"));
    assert!(c.blob_exists("ins/app", &blob.digest()).unwrap());
    assert_eq!(reqs[0].scopes, vec!["repository:ins/app:pull"], "{reqs:?}");
    assert!(
        reqs.iter()
            .any(|r| r.scopes == vec!["repository:ins/app:pull,push"]),
        "{reqs:?}"
    );
}
