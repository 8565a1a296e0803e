//! How to push: [`Options`], what the caller chooses.

use crate::plan::Attestations;
use layerlift_layers::Compression;
use layerlift_registry::{Reference, Scope};
use std::path::PathBuf;

/// How to push.
#[derive(Debug, Clone)]
pub struct Options {
    /// Push only these images of SOURCE: each a name (`org.opencontainers.image.ref.name`), full
    /// name, digest, or `@N` for the N-th entry of index.json. Several different images are each
    /// pushed under their own name, as with [`Options::all`].
    pub images: Vec<String>,
    /// Push every image of SOURCE, each under its own name retargeted to DEST's registry and
    /// repository prefix.
    pub all: bool,
    /// With `all`: `FROM=TO` rules naming the images under DEST, first match wins
    /// ([`layerlift_manifest::mapping`]); an image no rule matches keeps its own name.
    pub map: Vec<layerlift_manifest::mapping::Rule>,
    /// With `all`: push only the images a rule in `map` matches (the others are skipped).
    pub only_mapped: bool,
    /// Push only this platform (`os/arch[/variant]`) of a multi-platform image.
    pub platform: Option<String>,
    /// An index that lists manifests SOURCE does not hold (a containerd-store `docker save` of
    /// an image pulled for one platform) is pushed as a new index of the manifests SOURCE holds,
    /// with a new digest ([`Event::NewIndex`](crate::Event::NewIndex)). Without this, such an index is refused
    /// ([`PlanError::ChildMissing`](crate::PlanError::ChildMissing)).
    pub skip_absent_platforms: bool,
    /// Keep BuildKit's attestation manifests in the indexes pushed (the default), or push each
    /// index that has some as a new index without them ([`Event::NewIndex`](crate::Event::NewIndex)).
    pub attestations: Attestations,
    /// Tags besides DEST's. Without any, DEST's tag or `latest`.
    pub tags: Vec<String>,
    /// For an archive SOURCE: the compression of the layers it stores uncompressed (`None`: as
    /// they are). An OCI layout SOURCE is always pushed as it is.
    pub compression: Option<Compression>,
    /// The level of `compression` (`None`: its default, [`layerlift_layers::Encoding`]).
    pub compression_level: Option<i32>,
    /// Blobs uploaded in parallel (and blobs asked about at once when planning a re-push).
    pub jobs: usize,
    /// Upload in chunks of this size (PATCH). `None`: one PUT per blob.
    pub chunk_size: Option<u64>,
    /// Blobs larger than this are uploaded in chunks (of `chunk_size`, default 64 MiB).
    pub max_single_upload: Option<u64>,
    /// Repositories of DEST's registry to try to mount blobs from first.
    pub mount_from: Vec<String>,
    /// Images (on DEST's registry) to look for reusable layers in, besides DEST's own tags. A
    /// layer found only through them is read back and checked before a manifest names it.
    pub reuse_from: Vec<Reference>,
    /// Reuse a layer the registry has in another compression than `compression` would produce.
    pub reuse_any_compression: bool,
    /// Read and verify every layer of an archive SOURCE, even those the registry already has.
    pub verify_all: bool,
    /// Use the local layer cache (diff_id → compressed digest) and the resume journal of
    /// chunked uploads; `false`: nothing under the cache directory is read or written.
    pub use_cache: bool,
    /// The local layer cache's directory (`None`: `LAYERLIFT_CACHE_DIR`,
    /// `$XDG_CACHE_HOME/layerlift`, `~/.cache/layerlift`). The resume journal lives there too.
    /// One another user can write to is refused ([`PushError::CacheDir`](crate::PushError::CacheDir)), except the default
    /// (without this or `LAYERLIFT_CACHE_DIR`), which is then not used.
    pub cache_dir: Option<PathBuf>,
    /// Say what would be uploaded (after asking the registry what it has); change nothing.
    pub dry_run: bool,
    /// When the registry refuses a manifest or index for its media type (`400 MANIFEST_INVALID`
    /// or `415`), push it converted to the other format (OCI ⇄ Docker schema 2), which changes
    /// its digest and the digests of the indexes above it. Without this, such a refusal fails
    /// the push and says what the conversion would change.
    pub convert_refused: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            images: Vec::new(),
            all: false,
            map: Vec::new(),
            only_mapped: false,
            platform: None,
            skip_absent_platforms: false,
            attestations: Attestations::Keep,
            tags: Vec::new(),
            compression: Some(Compression::Gzip),
            compression_level: None,
            jobs: 4,
            chunk_size: None,
            max_single_upload: None,
            mount_from: Vec::new(),
            reuse_from: Vec::new(),
            reuse_any_compression: false,
            verify_all: false,
            use_cache: true,
            cache_dir: None,
            dry_run: false,
            convert_refused: false,
        }
    }
}

impl Options {
    /// The scope of a token for `repository`: pull, and push unless it is a dry run.
    pub(crate) fn repository_scope(&self, repository: &str) -> Scope {
        if self.dry_run {
            Scope::pull(repository)
        } else {
            Scope::pull_push(repository)
        }
    }
}
