//! Name mapping rules for bulk pushes (`layerlift-push --all --map 'FROM=TO'`): which name an image
//! of an archive gets under the destination.
//!
//! A rule is `FROM=TO`. FROM is a pattern in which `*` stands for any run of characters (`/` and
//! `:` included); it is matched against every key of an image — the name as the archive writes it
//! (`bulk/app:1`), its fully qualified form (`docker.io/bulk/app:1`), and, for an image without a
//! name, its digests (`sha256:…`) — and the first rule that matches one of them wins. TO is the
//! new name relative to the destination: each `*` in it is replaced by what the `*` at the same
//! place in FROM matched (`docker.io/library/*=base/*` sends `alpine:3` to `base/alpine:3`); a TO
//! without a tag keeps the image's own tag.
//!
//! A rule file ([`parse_rules`]) holds one rule per line; blank lines and lines starting with `#`
//! are skipped.

use crate::reference::{DEFAULT_TAG, Reference, full_name, validate_repository, validate_tag};

/// The placeholder tag go-containerregistry writes for an image it knew only by digest.
pub const GGCR_PLACEHOLDER_TAG: &str = "i-was-a-digest";

/// Why a rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// A rule is not `FROM=TO`, or one of its sides is unusable.
    #[error("mapping rule `{rule}`: {reason}")]
    BadRule {
        /// The rule as given.
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of a rule file is not a rule.
    #[error("{file}, line {line}: {source}")]
    BadLine {
        /// The file, as given.
        file: String,
        /// Its line number (from 1).
        line: usize,
        /// What is wrong with the rule there.
        source: Box<MappingError>,
    },
    /// The name a rule gives an image is not a valid repository and tag.
    #[error("`{name}` (from rule `{rule}`) is not a valid name: {reason}")]
    BadTarget {
        /// The rule.
        rule: String,
        /// The name it produced.
        name: String,
        /// Why it is not valid.
        reason: String,
    },
}

/// One `FROM=TO` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The pattern (`*`: any run of characters).
    pub from: String,
    /// The name relative to the destination, each `*` replaced by FROM's captures.
    pub to: String,
}

impl Rule {
    /// Parse `FROM=TO`: both sides non-empty, and TO has no more `*` than FROM.
    pub fn parse(text: &str) -> Result<Self, MappingError> {
        let bad = |reason: &str| MappingError::BadRule {
            rule: text.to_string(),
            reason: reason.to_string(),
        };
        let (from, to) = text
            .split_once('=')
            .ok_or_else(|| bad("expected FROM=TO"))?;
        let (from, to) = (from.trim(), to.trim());
        if from.is_empty() || to.is_empty() {
            return Err(bad("FROM and TO must both be given"));
        }
        if to.contains('=') {
            return Err(bad("more than one `=`"));
        }
        if to.matches('*').count() > from.matches('*').count() {
            return Err(bad("TO has more `*` than FROM"));
        }
        if to.starts_with('/') || to.contains('@') {
            return Err(bad(
                "TO is a repository[:tag] relative to the destination (no leading `/`, no digest)",
            ));
        }
        Ok(Rule {
            from: from.to_string(),
            to: to.to_string(),
        })
    }

    /// The captures of FROM's `*`s when it matches `key` in full.
    fn captures<'k>(&self, key: &'k str) -> Option<Vec<&'k str>> {
        glob(&self.from, key)
    }

    /// TO with its `*`s replaced by `captures`, in order.
    fn fill(&self, captures: &[&str]) -> String {
        let mut out = String::new();
        let mut caps = captures.iter();
        for (i, part) in self.to.split('*').enumerate() {
            if i > 0 {
                out.push_str(caps.next().copied().unwrap_or(""));
            }
            out.push_str(part);
        }
        out
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.from, self.to)
    }
}

/// Rules read from a file's `text` (`file` names it in errors): one `FROM=TO` per line; blank
/// lines and `#` comments are skipped.
pub fn parse_rules(file: &str, text: &str) -> Result<Vec<Rule>, MappingError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        rules.push(Rule::parse(line).map_err(|e| MappingError::BadLine {
            file: file.to_string(),
            line: i + 1,
            source: Box::new(e),
        })?);
    }
    Ok(rules)
}

/// Match `pattern` (`*`: any run of characters, shortest first) against the whole of `text`;
/// the text each `*` matched.
fn glob<'t>(pattern: &str, text: &'t str) -> Option<Vec<&'t str>> {
    let parts: Vec<&str> = pattern.split('*').collect();
    let first = parts[0];
    let rest = text.strip_prefix(first)?;
    let mut caps = Vec::new();
    if glob_from(&parts[1..], rest, text.len() - rest.len(), text, &mut caps) {
        Some(caps)
    } else {
        None
    }
}

/// [`glob`] after the first literal part: each remaining part follows a `*`.
fn glob_from<'t>(
    parts: &[&str],
    rest: &'t str,
    at: usize,
    text: &'t str,
    caps: &mut Vec<&'t str>,
) -> bool {
    let Some((part, more)) = parts.split_first() else {
        return rest.is_empty();
    };
    for (start, _) in rest
        .char_indices()
        .chain(std::iter::once((rest.len(), ' ')))
    {
        let after = &rest[start..];
        if let Some(tail) = after.strip_prefix(part) {
            if more.is_empty() && !tail.is_empty() {
                continue;
            }
            caps.push(&text[at..at + start]);
            let next_at = at + start + part.len();
            if glob_from(more, tail, next_at, text, caps) {
                return true;
            }
            caps.pop();
        }
    }
    false
}

/// Where one image goes, as the rules say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// A rule matched: the repository and tag relative to the destination, and the rule.
    Rule {
        /// The repository (relative to the destination's prefix).
        repository: String,
        /// The tag.
        tag: String,
        /// The rule that matched (`FROM=TO`).
        rule: String,
    },
    /// No rule matched.
    NoRule,
}

/// Whether `name` (as an archive writes it) names no image: empty, `<none>` forms, a name pinned
/// only by digest, or ggcr's placeholder tag.
pub fn is_placeholder_name(name: &str) -> bool {
    let name = name.trim();
    if name.is_empty() || name.contains("<none>") || name.contains('@') {
        return true;
    }
    Reference::parse(name).is_ok_and(|r| r.tag.as_deref() == Some(GGCR_PLACEHOLDER_TAG))
}

/// The keys rules are matched against for an image named `name` (`None`: it has none) with these
/// digests (its manifest's, its config's): the name as written and its fully qualified form, and
/// for an image without a usable name, the digests.
pub fn keys(name: Option<&str>, digests: &[String]) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(n) = name {
        keys.push(n.to_string());
        if let Some(full) = full_name(n)
            && full != n
        {
            keys.push(full);
        }
    }
    if name.is_none_or(is_placeholder_name) {
        keys.extend(digests.iter().cloned());
    }
    keys
}

/// The tag of `name` when it has a usable one.
fn own_tag(name: Option<&str>) -> Option<String> {
    let name = name.filter(|n| !is_placeholder_name(n))?;
    let r = Reference::parse(name).ok()?;
    Some(r.tag.unwrap_or_else(|| DEFAULT_TAG.to_string()))
}

/// Apply `rules` to an image with these `keys` ([`keys`]) and name: the first rule matching any
/// key gives its repository and tag (TO's tag, else the image's own, else an error).
pub fn apply(rules: &[Rule], name: Option<&str>, keys: &[String]) -> Result<Mapped, MappingError> {
    for rule in rules {
        let Some(caps) = keys.iter().find_map(|k| rule.captures(k)) else {
            continue;
        };
        let target = rule.fill(&caps);
        let bad = |reason: String| MappingError::BadTarget {
            rule: rule.to_string(),
            name: target.clone(),
            reason,
        };
        let last_slash = target.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match target[last_slash..].rfind(':') {
            Some(i) => (
                target[..last_slash + i].to_string(),
                target[last_slash + i + 1..].to_string(),
            ),
            None => (
                target.clone(),
                own_tag(name).ok_or_else(|| {
                    bad("it names no tag, and the image has none of its own".into())
                })?,
            ),
        };
        validate_repository(&repository).map_err(&bad)?;
        validate_tag(&tag).map_err(&bad)?;
        return Ok(Mapped::Rule {
            repository,
            tag,
            rule: rule.to_string(),
        });
    }
    Ok(Mapped::NoRule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<Rule> {
        list.iter().map(|r| Rule::parse(r).unwrap()).collect()
    }

    fn map(list: &[&str], name: &str) -> Mapped {
        apply(&rules(list), Some(name), &keys(Some(name), &[])).unwrap()
    }

    fn to(repository: &str, tag: &str, rule: &str) -> Mapped {
        Mapped::Rule {
            repository: repository.into(),
            tag: tag.into(),
            rule: rule.into(),
        }
    }

    #[test]
    fn globs_capture_runs_of_characters() {
        assert_eq!(glob("a/*", "a/b:1"), Some(vec!["b:1"]));
        assert_eq!(glob("*/*:1", "x/y/z:1"), Some(vec!["x", "y/z"]));
        assert_eq!(glob("exact", "exact"), Some(vec![]));
        assert_eq!(glob("exact", "exactly"), None);
        assert_eq!(glob("*", ""), Some(vec![""]));
        assert_eq!(glob("a*c", "abbc"), Some(vec!["bb"]));
        assert_eq!(glob("a*c", "abbd"), None);
        assert_eq!(glob("*:1", "app:1"), Some(vec!["app"]));
        assert_eq!(glob("*:1", "app:10"), None);
    }

    #[test]
    fn first_matching_rule_wins_on_either_form_of_the_name() {
        let list = ["docker.io/library/*=base/*", "bulk/*=apps/*", "*=rest/*"];
        assert_eq!(
            map(&list, "alpine:3"),
            to("base/alpine", "3", "docker.io/library/*=base/*")
        );
        // As written and normalised: both forms match.
        assert_eq!(
            map(&list, "bulk/app:1"),
            to("apps/app", "1", "bulk/*=apps/*")
        );
        assert_eq!(
            map(&["docker.io/bulk/*=x/*"], "bulk/app:1"),
            to("x/app", "1", "docker.io/bulk/*=x/*")
        );
        assert_eq!(
            map(&list, "quay.io/org/tool:2"),
            to("rest/quay.io/org/tool", "2", "*=rest/*")
        );
        assert_eq!(map(&["nothing/*=x/*"], "bulk/app:1"), Mapped::NoRule);
    }

    #[test]
    fn a_target_without_a_tag_keeps_the_image_tag() {
        assert_eq!(
            map(&["bulk/app:1=renamed"], "bulk/app:1"),
            to("renamed", "1", "bulk/app:1=renamed")
        );
        assert_eq!(
            map(&["bulk/app=renamed:9"], "bulk/app"),
            to("renamed", "9", "bulk/app=renamed:9")
        );
        assert_eq!(
            map(&["bulk/app=renamed"], "bulk/app"),
            to("renamed", "latest", "bulk/app=renamed")
        );
    }

    #[test]
    fn unnamed_images_match_by_digest_and_need_a_tag_from_the_rule() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let k = keys(None, &[d.to_string()]);
        assert_eq!(
            apply(&rules(&["sha256:e3b0*=orphan:1"]), None, &k).unwrap(),
            to("orphan", "1", "sha256:e3b0*=orphan:1")
        );
        assert!(matches!(
            apply(&rules(&["sha256:e3b0*=orphan"]), None, &k),
            Err(MappingError::BadTarget { .. })
        ));
        // Placeholders are unnamed too, but their name is still matched.
        let ph = "ubuntu:i-was-a-digest";
        assert!(is_placeholder_name(ph));
        assert!(is_placeholder_name("<none>:<none>"));
        assert!(is_placeholder_name(&format!("app@{d}")));
        assert!(!is_placeholder_name("app:1"));
        let k = keys(Some(ph), &[d.to_string()]);
        assert_eq!(k.len(), 3, "{k:?}");
        assert_eq!(
            apply(
                &rules(&["ubuntu:i-was-a-digest=ubuntu:22.04"]),
                Some(ph),
                &k
            )
            .unwrap(),
            to("ubuntu", "22.04", "ubuntu:i-was-a-digest=ubuntu:22.04")
        );
    }

    #[test]
    fn bad_rules_and_targets_are_refused() {
        for bad in ["", "a", "=b", "a=", "a=b=c", "a=*", "a*=/x", "a=b@sha256:x"] {
            assert!(Rule::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            apply(
                &rules(&["*=UPPER/*"]),
                Some("app:1"),
                &keys(Some("app:1"), &[])
            ),
            Err(MappingError::BadTarget { .. })
        ));
    }

    #[test]
    fn rule_files_skip_comments_and_name_the_bad_line() {
        let text = "# base images\ndocker.io/library/*=base/*\n\n  bulk/*=apps/*  \n";
        let r = parse_rules("rules.txt", text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].to, "apps/*");
        let e = parse_rules("rules.txt", "a=b\nnot a rule\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules.txt, line 2: mapping rule `not a rule`: expected FROM=TO"
        );
    }
}
