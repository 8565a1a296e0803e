//! The annotation keys layerlift reads and writes on descriptors.

/// The OCI image-spec name of an `index.json` entry: a tag (`1.0`) or a full reference.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// containerd's full image name on an `index.json` entry (`docker.io/library/app:1`).
pub const IMAGE_NAME: &str = "io.containerd.image.name";
