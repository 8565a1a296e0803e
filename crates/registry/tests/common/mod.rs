//! What the registry client's integration tests share: a small image, a push of it the way
//! layerlift-push pushes (HEAD, upload what is missing, manifest, tag read back), and a client for
//! a plain-HTTP registry on loopback with quick retries.

use layerlift_manifest::Digest;
use layerlift_registry::{
    BlobSource, BytesSource, Client, Credential, Error, RetryPolicy, Scope, TransportOptions,
    UploadEvent, UploadOptions,
};
use std::time::Duration;

/// The manifest media type of [`Image`].
pub const MT: &str = "application/vnd.oci.image.manifest.v1+json";

/// A config and some layers of a few KiB each, with an OCI manifest over them.
pub struct Image {
    /// The config first, then the layers.
    pub blobs: Vec<BytesSource>,
    pub manifest: Vec<u8>,
}

/// An image of `layers` layers whose bytes depend on `seed`.
pub fn image(seed: u8, layers: u8) -> Image {
    let config = BytesSource::new(format!(r#"{{"os":"linux","seed":{seed}}}"#).into_bytes());
    let layers: Vec<BytesSource> = (0..layers)
        .map(|i| {
            BytesSource::new(
                (0..(2500 + 1000 * usize::from(i)))
                    .map(|j| (j as u8) ^ seed ^ i.wrapping_mul(17))
                    .collect::<Vec<u8>>(),
            )
        })
        .collect();
    let d = |s: &BytesSource, mt: &str| serde_json::json!({"mediaType": mt, "digest": s.digest().to_string(), "size": s.size()});
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": MT,
        "config": d(&config, "application/vnd.oci.image.config.v1+json"),
        "layers": layers.iter().map(|l| d(l, "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let mut blobs = vec![config];
    blobs.extend(layers);
    Image { blobs, manifest }
}

/// Push `img` to `repo:latest` (blobs the registry lacks, then the manifest) and read the tag back.
pub fn push(
    c: &Client,
    repo: &str,
    img: &Image,
    opts: &UploadOptions,
    events: &(dyn Fn(UploadEvent) + Sync),
) -> Result<Digest, Error> {
    c.ping()?;
    c.authorize(&[Scope::pull_push(repo)]);
    for b in &img.blobs {
        if !c.blob_exists(repo, &b.digest())? {
            c.upload_blob(repo, b, opts, None, events)?;
        }
    }
    c.put_manifest(repo, "latest", MT, &img.manifest)?;
    Ok(c.manifest_digest(repo, "latest")?.expect("tag exists"))
}

/// Retries quick enough for tests, many enough to ride out injected faults.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
        max_total: Duration::from_secs(60),
        max_retry_after: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}

/// A client for the plain-HTTP registry (or proxy) at `addr`.
pub fn plain_http_client(addr: &str, cred: Credential, retry: RetryPolicy) -> Client {
    Client::new(
        addr,
        cred,
        TransportOptions {
            plain_http: true,
            ..TransportOptions::default()
        },
        retry,
    )
    .unwrap()
}
