//! Where each image of a push under its own names goes (`all`): its name in SOURCE retargeted under
//! DEST (a registry alone, or a registry and a repository prefix), or the name the first matching
//! mapping rule gives it ([`layerlift_manifest::mapping`]); images without a name, and names no rule
//! matches with `only_mapped`, are [left out](LeftOut) with the reason.

use layerlift_manifest::Digest;
use layerlift_manifest::mapping::{self, Mapped, Rule};
use layerlift_registry::{Reference, ReferenceError};

/// Why an image's name cannot be turned into a destination.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// An image's name is not a valid tag.
    #[error("image name `{name}` is not a usable tag")]
    UnusableTag {
        /// The name.
        name: String,
        /// Why.
        source: ReferenceError,
    },
    /// An image's name is not a valid reference.
    #[error("image name `{name}`")]
    ImageName {
        /// The name.
        name: String,
        /// Why.
        source: ReferenceError,
    },
    /// The repository an image's name leads to is not valid.
    #[error("{reason}")]
    BadRepository {
        /// Why.
        reason: String,
    },
    /// A bare tag, and DEST is a registry alone: no repository to put it in.
    #[error(
        "image name `{name}` is a tag alone, and DEST names no repository: give DEST as HOST/REPOSITORY, or map it with --map"
    )]
    NoRepository {
        /// The name.
        name: String,
    },
}

/// How images are named under DEST: the mapping rules, first match wins.
#[derive(Debug, Clone, Copy, Default)]
pub struct Naming<'a> {
    /// `FROM=TO` rules.
    pub rules: &'a [Rule],
    /// Leave out images no rule matches (instead of keeping their own names).
    pub only_mapped: bool,
}

/// Why an image is not pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeftOutKind {
    /// No rule matched, and only mapped images are pushed (not a failure).
    Unmapped,
    /// It has no name (or a placeholder one) and no rule names it (a failure).
    Unnamed,
    /// The name it has or gets is not valid (a failure).
    Invalid,
}

/// An image not pushed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// Which kind of reason.
    pub kind: LeftOutKind,
    /// The reason, one line.
    pub reason: String,
}

/// Where one image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Tagged in this repository.
    Tagged {
        /// The repository.
        repository: String,
        /// The tag.
        tag: String,
        /// The rule that named it (`None`: its own name).
        rule: Option<String>,
    },
    /// Pushed by digest only to DEST's repository (an image without a name no rule matches).
    Untagged {
        /// The repository.
        repository: String,
    },
    /// Not pushed.
    LeftOut(LeftOut),
}

/// One image of a push under own names, as SOURCE names it and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedImage {
    /// Its name in SOURCE (`None`: it has none).
    pub name: Option<String>,
    /// Its digest in SOURCE (manifest or index).
    pub digest: Digest,
    /// Where it goes.
    pub placement: Placement,
}

/// A name that is only a tag (`v1`, as OCI layouts name their entries).
fn is_bare_tag(name: &str) -> bool {
    !name.contains(':') && !name.contains('/') && !name.contains('@')
}

/// `prefix/rest`, or `rest` when DEST is a registry alone; checked.
fn under(dest: &Reference, rest: &str) -> Result<String, NameError> {
    let repo = if dest.repository.is_empty() {
        rest.to_string()
    } else {
        format!("{}/{rest}", dest.repository)
    };
    layerlift_registry::reference::validate_repository(&repo)
        .map_err(|reason| NameError::BadRepository { reason })?;
    Ok(repo)
}

/// Where an image named `name` goes under DEST without rules: a bare tag stays in DEST's
/// repository; a name with a repository goes under DEST's repository prefix (`app:1` →
/// `DEST/app:1`, `docker.io/library/alpine:3` → `DEST/alpine:3`).
pub fn retarget(dest: &Reference, name: &str) -> Result<(String, String), NameError> {
    if is_bare_tag(name) {
        Reference::parse(&format!("{}/x:{name}", dest.registry)).map_err(|source| {
            NameError::UnusableTag {
                name: name.to_string(),
                source,
            }
        })?;
        if dest.repository.is_empty() {
            return Err(NameError::NoRepository {
                name: name.to_string(),
            });
        }
        return Ok((dest.repository.clone(), name.to_string()));
    }
    let r = Reference::parse(name).map_err(|source| NameError::ImageName {
        name: name.to_string(),
        source,
    })?;
    let repo = under(dest, r.familiar_repository())?;
    Ok((repo, r.tag.unwrap_or_else(|| "latest".into())))
}

/// Where an image named `name` in SOURCE (`None`: it has none), with these digests (its own, its
/// config's: what rules for unnamed images match), goes under DEST.
pub fn place(
    dest: &Reference,
    name: Option<&str>,
    digests: &[Digest],
    naming: Naming<'_>,
) -> Placement {
    let digest_keys: Vec<String> = digests.iter().map(Digest::to_string).collect();
    let keys = match name {
        Some(n) if is_bare_tag(n) => {
            let mut k = vec![n.to_string()];
            k.extend(digest_keys.iter().cloned());
            k
        }
        _ => mapping::keys(name, &digest_keys),
    };
    let invalid = |reason: String| {
        Placement::LeftOut(LeftOut {
            kind: LeftOutKind::Invalid,
            reason,
        })
    };
    match mapping::apply(naming.rules, name, &keys) {
        Err(e) => return invalid(e.to_string()),
        Ok(Mapped::Rule {
            repository,
            tag,
            rule,
        }) => {
            return match under(dest, &repository) {
                Ok(repository) => Placement::Tagged {
                    repository,
                    tag,
                    rule: Some(rule),
                },
                Err(e) => invalid(format!("rule `{rule}`: {e}")),
            };
        }
        Ok(Mapped::NoRule) => {}
    }
    if naming.only_mapped {
        return Placement::LeftOut(LeftOut {
            kind: LeftOutKind::Unmapped,
            reason: "no --map rule matches it (--only-mapped)".into(),
        });
    }
    let named = name.filter(|n| is_bare_tag(n) || !mapping::is_placeholder_name(n));
    match named {
        Some(n) => match retarget(dest, n) {
            Ok((repository, tag)) => Placement::Tagged {
                repository,
                tag,
                rule: None,
            },
            Err(e) => invalid(display_chain(&e)),
        },
        // Today's push of an unnamed image: by digest into DEST's repository.
        None if !dest.repository.is_empty() => Placement::Untagged {
            repository: dest.repository.clone(),
        },
        None => Placement::LeftOut(LeftOut {
            kind: LeftOutKind::Unnamed,
            reason: format!(
                "it has no name{}: give it one with --map '{}=REPOSITORY:TAG'",
                name.map(|n| format!(" (only `{n}`)")).unwrap_or_default(),
                digests.first().map_or_else(String::new, Digest::to_string),
            ),
        }),
    }
}

/// The (repository, tag) each of `names` (an archive's image names, before it is read) goes to
/// under DEST, each once: where a push under own names looks for the layers it may reuse.
pub fn own_references(
    dest: &Reference,
    names: &[String],
    naming: Naming<'_>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for name in names {
        if let Placement::Tagged {
            repository, tag, ..
        } = place(dest, Some(name), &[], naming)
            && !out.iter().any(|(r, t)| *r == repository && *t == tag)
        {
            out.push((repository, tag));
        }
    }
    out
}

/// An error and its causes on one line.
pub(crate) fn display_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(repository: &str, tag: &str, rule: Option<&str>) -> Placement {
        Placement::Tagged {
            repository: repository.into(),
            tag: tag.into(),
            rule: rule.map(str::to_string),
        }
    }

    #[test]
    fn retargeting() {
        let dest = Reference::parse("127.0.0.1:5000/mirror").unwrap();
        assert_eq!(
            retarget(&dest, "v1").unwrap(),
            ("mirror".to_string(), "v1".to_string())
        );
        assert_eq!(
            retarget(&dest, "busybox:latest").unwrap(),
            ("mirror/busybox".to_string(), "latest".to_string())
        );
        assert_eq!(
            retarget(&dest, "docker.io/library/alpine:3").unwrap(),
            ("mirror/alpine".to_string(), "3".to_string())
        );
        assert_eq!(
            retarget(&dest, "quay.io/org/app").unwrap(),
            ("mirror/org/app".to_string(), "latest".to_string())
        );
        let registry_alone = Reference {
            repository: String::new(),
            ..dest
        };
        assert_eq!(
            retarget(&registry_alone, "bulk/app:1").unwrap(),
            ("bulk/app".to_string(), "1".to_string())
        );
        assert!(matches!(
            retarget(&registry_alone, "v1"),
            Err(NameError::NoRepository { .. })
        ));
    }

    #[test]
    fn placements_follow_rules_then_own_names() {
        let dest = Reference::parse("reg.local/mirror").unwrap();
        let rules = vec![
            Rule::parse("docker.io/library/*=base/*").unwrap(),
            Rule::parse("sha256:*=orphans/x:1").unwrap(),
        ];
        let naming = Naming {
            rules: &rules,
            only_mapped: false,
        };
        let d = Digest::of(b"image");
        assert_eq!(
            place(&dest, Some("alpine:3"), &[d], naming),
            tagged(
                "mirror/base/alpine",
                "3",
                Some("docker.io/library/*=base/*")
            )
        );
        assert_eq!(
            place(&dest, Some("bulk/app:1"), &[d], naming),
            tagged("mirror/bulk/app", "1", None)
        );
        // An unnamed image matches by digest; a named one never does.
        assert_eq!(
            place(&dest, None, &[d], naming),
            tagged("mirror/orphans/x", "1", Some("sha256:*=orphans/x:1"))
        );
        let only = Naming {
            only_mapped: true,
            ..naming
        };
        assert!(matches!(
            place(&dest, Some("bulk/app:1"), &[d], only),
            Placement::LeftOut(LeftOut {
                kind: LeftOutKind::Unmapped,
                ..
            })
        ));
        let none = Naming::default();
        assert_eq!(
            place(&dest, None, &[d], none),
            Placement::Untagged {
                repository: "mirror".into()
            }
        );
        let registry_alone = Reference {
            repository: String::new(),
            ..dest
        };
        let Placement::LeftOut(out) = place(&registry_alone, Some("x:i-was-a-digest"), &[d], none)
        else {
            panic!("an unnamed image needs a rule");
        };
        assert_eq!(out.kind, LeftOutKind::Unnamed);
        assert!(out.reason.contains(&d.to_string()), "{}", out.reason);
    }
}
