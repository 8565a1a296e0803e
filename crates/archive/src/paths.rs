//! Entry names inside an archive: normalisation, and resolving symlinks and hard links without ever
//! leaving the archive's root.

use layerlift_manifest::Digest;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How many links one path may pass through before we call it a loop.
const MAX_HOPS: usize = 40;
/// Longest entry name or link target (Linux's `PATH_MAX`); longer ones are refused.
pub const MAX_PATH: usize = 4096;

/// A link entry: where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Symlink target as written (relative to the link's directory).
    Symlink(String),
    /// Hard link target as written (relative to the archive root).
    Hard(String),
}

impl Link {
    /// The target as the entry writes it, whichever kind of link this is.
    pub fn target(&self) -> &str {
        match self {
            Link::Symlink(t) | Link::Hard(t) => t,
        }
    }
}

/// Why an entry name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The entry name starts with `/`.
    #[error("entry `{0}` has an absolute path")]
    Absolute(String),
    /// The name (or the path being resolved) climbs above the archive's root with `..`.
    #[error("entry `{0}` escapes the archive (`..`)")]
    Escapes(String),
    /// A link's target is absolute or climbs above the archive's root.
    #[error("link `{link}` -> `{target}` points outside the archive")]
    LinkEscapes {
        /// The link entry's path.
        link: String,
        /// Its target as written.
        target: String,
    },
    /// Resolving came back to this link: the links form a loop.
    #[error("link `{0}` is part of a symlink loop")]
    Loop(String),
    /// Resolving this path follows more than 40 links.
    #[error("`{0}` goes through more than 40 links")]
    TooManyLinks(String),
    /// A name or link target is longer than 4096 bytes (Linux's `PATH_MAX`); holds the first 64 characters of the
    /// name (or the link concerned).
    #[error("entry `{0}…` has a name or link target longer than 4096 bytes")]
    TooLong(String),
}

/// The start of an over-long name, for a message.
fn too_long(name: &str) -> PathError {
    PathError::TooLong(name.chars().take(64).collect())
}

/// Normalise an entry name: strip `./` and trailing `/`, refuse absolute names and `..`.
/// `Ok(None)` is the archive root itself.
pub fn normalize(raw: &str) -> Result<Option<String>, PathError> {
    if raw.len() > MAX_PATH {
        return Err(too_long(raw));
    }
    if raw.starts_with('/') {
        return Err(PathError::Absolute(raw.to_string()));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(PathError::Escapes(raw.to_string())),
            p => parts.push(p),
        }
    }
    Ok(if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    })
}

/// Resolve `path` through the links of the archive, component by component, so that links in
/// directory positions are followed too. The result is a path with no link in it (it may not exist).
pub fn resolve(links: &BTreeMap<String, Link>, path: &str) -> Result<String, PathError> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: VecDeque<String> = path.split('/').map(str::to_string).collect();
    let mut seen = BTreeSet::new();
    let mut hops = 0;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                if done.pop().is_none() {
                    return Err(PathError::Escapes(path.to_string()));
                }
                continue;
            }
            _ => done.push(part),
        }
        let here = done.join("/");
        let Some(link) = links.get(&here) else {
            continue;
        };
        hops += 1;
        if hops > MAX_HOPS {
            return Err(PathError::TooManyLinks(path.to_string()));
        }
        if !seen.insert(here.clone()) {
            return Err(PathError::Loop(here));
        }
        let escape = || PathError::LinkEscapes {
            link: here.clone(),
            target: link.target().to_string(),
        };
        let target = link.target();
        if target.len() > MAX_PATH || here.len() + todo.len() > MAX_PATH {
            return Err(too_long(&here));
        }
        if target.starts_with('/') {
            return Err(escape());
        }
        match link {
            Link::Symlink(_) => {
                done.pop();
            }
            Link::Hard(_) => done.clear(),
        }
        // Splice the target in front of what is left, and check it does not climb above the root.
        let mut depth = done.len() as isize;
        for t in target.split('/') {
            match t {
                "" | "." => {}
                ".." => depth -= 1,
                _ => depth += 1,
            }
            if depth < 0 {
                return Err(escape());
            }
        }
        for t in target.split('/').rev() {
            todo.push_front(t.to_string());
        }
    }
    Ok(done.join("/"))
}

/// The digest a file name states: `<hex>`, `<hex>.json`, `<hex>.tar[.gz]`, `sha256:<hex>`,
/// `blobs/sha256/<hex>`. Legacy `<v1id>/layer.tar` names state none (v1 ids are not digests).
pub(crate) fn digest_in_name(path: &str) -> Option<Digest> {
    let name = path.rsplit('/').next()?;
    let name = name.strip_prefix("sha256:").unwrap_or(name);
    let hex = name.get(..64)?;
    let rest = &name[64..];
    if !(rest.is_empty() || rest.starts_with('.')) {
        return None;
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Digest::from_hex(&hex.to_ascii_lowercase()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_in_names() {
        let hex = "75ae28a28d5e0d3d1e1d7e8ee2ef8db0b3cb26e5b6a27f3b4c1f3c0e0c0e0c0e";
        assert!(digest_in_name(&format!("{hex}.json")).is_some());
        assert!(digest_in_name(&format!("sha256:{hex}")).is_some());
        assert!(digest_in_name(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_in_name(&format!("{hex}.tar.gz")).is_some());
        assert!(digest_in_name(&format!("{hex}/layer.tar")).is_none());
        assert!(digest_in_name("repositories").is_none());
    }

    fn links(list: &[(&str, Link)]) -> BTreeMap<String, Link> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize("./a/b/").unwrap().as_deref(), Some("a/b"));
        assert_eq!(normalize("./").unwrap(), None);
        assert!(matches!(
            normalize("/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(normalize("a/../../x"), Err(PathError::Escapes(_))));
    }

    #[test]
    fn follows_docker_layer_symlink() {
        let l = links(&[("b/layer.tar", Link::Symlink("../a/layer.tar".into()))]);
        assert_eq!(resolve(&l, "b/layer.tar").unwrap(), "a/layer.tar");
        assert_eq!(resolve(&l, "a/layer.tar").unwrap(), "a/layer.tar");
    }

    #[test]
    fn follows_chains_and_directory_links() {
        let l = links(&[
            ("c/layer.tar", Link::Symlink("../b/layer.tar".into())),
            ("b/layer.tar", Link::Symlink("../a/layer.tar".into())),
            ("d", Link::Symlink("c".into())),
            ("h", Link::Hard("d/layer.tar".into())),
        ]);
        assert_eq!(resolve(&l, "c/layer.tar").unwrap(), "a/layer.tar");
        assert_eq!(resolve(&l, "d/layer.tar").unwrap(), "a/layer.tar");
        assert_eq!(resolve(&l, "h").unwrap(), "a/layer.tar");
    }

    #[test]
    fn refuses_loops_and_escapes() {
        let l = links(&[
            ("a", Link::Symlink("b".into())),
            ("b", Link::Symlink("a".into())),
            ("up", Link::Symlink("../../etc/passwd".into())),
            ("abs", Link::Symlink("/etc/passwd".into())),
            ("x/deep", Link::Symlink("../../y".into())),
        ]);
        assert!(matches!(resolve(&l, "a"), Err(PathError::Loop(_))));
        assert!(matches!(
            resolve(&l, "up"),
            Err(PathError::LinkEscapes { .. })
        ));
        assert!(matches!(
            resolve(&l, "abs"),
            Err(PathError::LinkEscapes { .. })
        ));
        assert!(matches!(
            resolve(&l, "x/deep"),
            Err(PathError::LinkEscapes { .. })
        ));
    }

    #[test]
    fn refuses_names_and_targets_past_path_max() {
        let long = "a/".repeat(MAX_PATH / 2 + 1);
        assert!(matches!(normalize(&long), Err(PathError::TooLong(_))));
        assert!(normalize(&long[..MAX_PATH]).is_ok());
        let l = links(&[("s", Link::Symlink(long.clone()))]);
        assert!(matches!(resolve(&l, "s"), Err(PathError::TooLong(_))));
        // A chain that doubles the path at each hop stops at the limit, not after 40 hops.
        let l = links(&[("d", Link::Symlink("d/d/d/d/d/d/d/d/d/d/d/d/d/d/d/d".into()))]);
        assert!(resolve(&l, "d/x").is_err());
    }

    #[test]
    fn self_loop() {
        let l = links(&[("s", Link::Symlink("./s".into()))]);
        assert!(matches!(resolve(&l, "s"), Err(PathError::Loop(_))));
    }
}
