//! OCI image-spec and Docker schema 2 types: digests, descriptors, manifests, indexes, the parts of an
//! image config that layerlift reads, media types, image references ([`reference`](mod@reference): the
//! distribution grammar and Docker Hub's name normalisation) and the `--image` selector
//! ([`selector`]) and the name mapping rules of bulk pushes ([`mapping`]).
//!
//! The types are small serde structs of our own: annotations are `BTreeMap`s (so a manifest we
//! generate serialises the same way every run) and every struct keeps unknown fields in a flattened
//! map. Bytes we did not create are never re-serialised: parse them to read them, keep the original
//! bytes to store or push them.

#![warn(missing_docs)]

pub mod annotations;
pub mod convert;
mod digest;
pub mod mapping;
pub mod media_types;
pub mod reference;
pub mod selector;
mod types;

pub use digest::{Digest, DigestError, Sha256Reader, Sha256Writer, sha256};
pub use reference::{Reference, ReferenceError};
pub use selector::{ImageSelector, SelectorError};
pub use types::{
    Descriptor, ImageConfig, Index, Manifest, ManifestError, Platform, RootFs, host_platform,
    is_platform, parse_json, platform_matches,
};
