//! The annotation keys layerlift reads and writes on descriptors.

/// The OCI image-spec name of an `index.json` entry: a tag (`1.0`) or a full reference.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// containerd's full image name on an `index.json` entry (`docker.io/library/app:1`).
pub const IMAGE_NAME: &str = "io.containerd.image.name";

/// BuildKit's kind of an index entry that is not an image (`attestation-manifest`).
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// BuildKit's subject of an index entry that is not an image: the image manifest an attestation
/// manifest is about.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// The [`REFERENCE_TYPE`] of a BuildKit attestation manifest (provenance, SBOM) in an index.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
