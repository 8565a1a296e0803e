//! Manifests, indexes, image configs, descriptors and digests from untrusted JSON (archive
//! metadata, registry answers). Parsing never panics; what parses serialises to JSON that parses
//! back to the same value; conversion between Docker and OCI media types never panics.

#![no_main]

use layerlift_manifest::convert::{self, Format};
use layerlift_manifest::{Descriptor, Digest, ImageConfig, Index, Manifest, parse_json};
use libfuzzer_sys::fuzz_target;

fn roundtrip<T>(what: &'static str, value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = convert::to_json(value);
    let back: T =
        parse_json(what, &bytes).unwrap_or_else(|e| panic!("{what} we wrote does not parse: {e}"));
    assert_eq!(&back, value, "{what} changed in a round trip");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse_json::<Manifest>("image manifest", data) {
        roundtrip("image manifest", &m);
        let _ = Format::of(&m.media_type.clone().unwrap_or_default());
        for format in [Format::Oci, Format::Docker] {
            let converted = convert::convert_manifest(&m, format, m.layers.clone());
            roundtrip("converted manifest", &converted);
        }
        for l in &m.layers {
            let _ = convert::layer_compression_label(&l.media_type);
        }
    }
    if let Ok(i) = parse_json::<Index>("image index", data) {
        roundtrip("image index", &i);
        for format in [Format::Oci, Format::Docker] {
            let converted = convert::convert_index(&i, format, i.manifests.clone());
            roundtrip("converted index", &converted);
        }
    }
    if let Ok(d) = parse_json::<Descriptor>("descriptor", data) {
        roundtrip("descriptor", &d);
    }
    let _ = parse_json::<ImageConfig>("image config", data);
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(d) = s.parse::<Digest>()
    {
        assert_eq!(d.to_string(), s, "a digest prints as it was written");
        assert_eq!(d.short().len(), 12);
    }
});
