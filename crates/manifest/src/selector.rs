//! The image selector of `--image`: which images of an archive or an OCI layout a user means.
//!
//! A selector is `@N` (the N-th image, counting from 0), a digest (`sha256:…`, the image's
//! manifest or index), or a name. A name chooses every image one of whose names is the same image
//! ([`same_image`]: equal as written or once fully qualified, so `busybox`, `busybox:latest` and
//! `docker.io/library/busybox:latest` choose the same entry). An `index.json` entry's names are
//! its `org.opencontainers.image.ref.name` and `io.containerd.image.name` annotations.

use crate::annotations::{IMAGE_NAME, REF_NAME};
use crate::reference::same_image;
use crate::{Descriptor, Digest};
use std::fmt;
use std::str::FromStr;

/// One `--image` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSelector {
    /// `@N`: the image at this position (0-based).
    Position(usize),
    /// `sha256:…`: the image whose descriptor has this digest.
    Digest(Digest),
    /// Anything else: an image name, compared with [`same_image`].
    Name(String),
}

/// Why a selector cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Empty, or `@` not followed by a number.
    #[error("image selector `{selector}`: {reason}")]
    Invalid {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Nothing matches it.
    #[error("no image `{selector}`")]
    NoMatch {
        /// The selector as given.
        selector: String,
    },
}

impl ImageSelector {
    /// Parse `@N`, a `sha256:` digest, or a name.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let invalid = |reason| SelectorError::Invalid {
            selector: s.to_string(),
            reason,
        };
        if s.trim().is_empty() {
            return Err(invalid("empty"));
        }
        if let Some(n) = s.strip_prefix('@') {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("expected @ followed by a number"));
            }
            return n
                .parse()
                .map(ImageSelector::Position)
                .map_err(|_| invalid("position is too large"));
        }
        if s.starts_with("sha256:")
            && let Ok(d) = s.parse::<Digest>()
        {
            return Ok(ImageSelector::Digest(d));
        }
        Ok(ImageSelector::Name(s.to_string()))
    }

    /// Whether this selector chooses the image at `position` with descriptor digest `digest` and
    /// these names.
    pub fn matches<'a>(
        &self,
        position: usize,
        digest: &Digest,
        names: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        match self {
            ImageSelector::Position(n) => *n == position,
            ImageSelector::Digest(d) => d == digest,
            ImageSelector::Name(name) => names.into_iter().any(|n| same_image(n, name)),
        }
    }

    /// Whether this selector chooses `entry`, the `position`-th entry of an `index.json`; its names
    /// are its `ref.name` and `io.containerd.image.name` annotations.
    pub fn matches_entry(&self, position: usize, entry: &Descriptor) -> bool {
        let names = [entry.annotation(REF_NAME), entry.annotation(IMAGE_NAME)];
        self.matches(position, &entry.digest, names.into_iter().flatten())
    }
}

impl FromStr for ImageSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, SelectorError> {
        ImageSelector::parse(s)
    }
}

impl fmt::Display for ImageSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSelector::Position(n) => write!(f, "@{n}"),
            ImageSelector::Digest(d) => write!(f, "{d}"),
            ImageSelector::Name(n) => f.write_str(n),
        }
    }
}

/// The positions of the images `selectors` choose among `count` images, in the order the
/// selectors name them, each once; all of them when there are no selectors. `matches(selector,
/// position)` says whether a selector chooses an image (e.g. [`ImageSelector::matches_entry`]).
/// A selector that chooses nothing is an error.
pub fn select(
    count: usize,
    selectors: &[String],
    matches: impl Fn(&ImageSelector, usize) -> bool,
) -> Result<Vec<usize>, SelectorError> {
    if selectors.is_empty() {
        return Ok((0..count).collect());
    }
    let mut chosen = Vec::new();
    for s in selectors {
        let sel = ImageSelector::parse(s)?;
        let mut found = false;
        for i in 0..count {
            if matches(&sel, i) {
                found = true;
                if !chosen.contains(&i) {
                    chosen.push(i);
                }
            }
        }
        if !found {
            return Err(SelectorError::NoMatch {
                selector: s.clone(),
            });
        }
    }
    Ok(chosen)
}

/// The `index.json` entries `selectors` choose ([`select`] over [`ImageSelector::matches_entry`]).
pub fn select_entries(
    entries: &[Descriptor],
    selectors: &[String],
) -> Result<Vec<usize>, SelectorError> {
    select(entries.len(), selectors, |sel, i| {
        sel.matches_entry(i, &entries[i])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn entry(bytes: &[u8], names: &[(&str, &str)]) -> Descriptor {
        let annotations: BTreeMap<String, String> = names
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut d: Descriptor = serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": Digest::of(bytes),
            "size": bytes.len(),
        }))
        .unwrap();
        d.annotations = (!annotations.is_empty()).then_some(annotations);
        d
    }

    fn sel(s: &str) -> ImageSelector {
        ImageSelector::parse(s).unwrap()
    }

    #[test]
    fn parses_positions_digests_and_names() {
        assert_eq!(sel("@0"), ImageSelector::Position(0));
        assert_eq!(sel("@12"), ImageSelector::Position(12));
        let d = Digest::of(b"x");
        assert_eq!(sel(&d.to_string()), ImageSelector::Digest(d));
        assert_eq!(sel("busybox"), ImageSelector::Name("busybox".into()));
        // Not a digest: a name (which matches only itself).
        assert_eq!(sel("sha256:abc"), ImageSelector::Name("sha256:abc".into()));
        for bad in ["", " ", "@", "@x", "@-1", "@1x", "@99999999999999999999999"] {
            assert!(ImageSelector::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(sel("@3").to_string(), "@3");
    }

    #[test]
    fn names_match_as_written_or_fully_qualified() {
        let a = entry(
            b"a",
            &[
                (REF_NAME, "busybox:latest"),
                (IMAGE_NAME, "docker.io/library/busybox:latest"),
            ],
        );
        for s in [
            "busybox",
            "busybox:latest",
            "docker.io/busybox",
            "docker.io/library/busybox:latest",
        ] {
            assert!(sel(s).matches_entry(5, &a), "{s}");
        }
        for s in ["busybox:1", "quay.io/busybox", "@4"] {
            assert!(!sel(s).matches_entry(5, &a), "{s}");
        }
        assert!(sel("@5").matches_entry(5, &a));
        assert!(sel(&a.digest.to_string()).matches_entry(5, &a));
        // A layout whose ref.name is only a tag.
        let b = entry(b"b", &[(REF_NAME, "v1")]);
        assert!(sel("v1").matches_entry(0, &b));
        assert!(!sel("v2").matches_entry(0, &b));
        // No names: only a position or the digest choose it.
        let c = entry(b"c", &[]);
        assert!(!sel("busybox").matches_entry(0, &c));
        assert!(sel("@0").matches_entry(0, &c));
    }

    #[test]
    fn select_keeps_selector_order_and_reports_misses() {
        let entries = vec![
            entry(b"a", &[(REF_NAME, "a:1")]),
            entry(b"b", &[(REF_NAME, "b:1")]),
            entry(b"a", &[(REF_NAME, "a:2")]),
        ];
        assert_eq!(select_entries(&entries, &[]).unwrap(), vec![0, 1, 2]);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            select_entries(&entries, &s(&["b:1", "@0", "a:1"])).unwrap(),
            vec![1, 0]
        );
        // A digest chooses every entry with it.
        let da = entries[0].digest.to_string();
        assert_eq!(select_entries(&entries, &s(&[&da])).unwrap(), vec![0, 2]);
        assert_eq!(
            select_entries(&entries, &s(&["c"])),
            Err(SelectorError::NoMatch {
                selector: "c".into()
            })
        );
        assert_eq!(
            select_entries(&entries, &s(&["@3"])),
            Err(SelectorError::NoMatch {
                selector: "@3".into()
            })
        );
        assert!(matches!(
            select_entries(&entries, &s(&["@x"])),
            Err(SelectorError::Invalid { .. })
        ));
    }
}
