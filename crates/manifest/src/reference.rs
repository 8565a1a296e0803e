//! Image references: `host[:port]/repo[:tag|@digest]`, with Docker Hub's normalisation
//! (`ubuntu` → `docker.io/library/ubuntu`, `index.docker.io` → `docker.io`, API host
//! `registry-1.docker.io`) and the distribution grammar for repository names and tags.
//!
//! This is the one definition of an image name for every crate: the registry client parses
//! destinations with it, and archives and layouts compare the names they carry with
//! [`full_name`] and [`same_image`].

use crate::Digest;
use std::fmt;
use std::str::FromStr;

/// The tag a reference without tag or digest stands for.
pub const DEFAULT_TAG: &str = "latest";
/// Docker Hub's canonical name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The key Docker Hub credentials are stored under in config.json.
pub const DOCKER_HUB_CREDENTIAL_KEY: &str = "https://index.docker.io/v1/";

/// A parsed image reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]` as written (normalised for Docker Hub).
    pub registry: String,
    /// Repository path, e.g. `library/ubuntu`.
    pub repository: String,
    /// The tag, when the reference names one (`1.0` in `app:1.0`).
    pub tag: Option<String>,
    /// The digest, when the reference pins one (`app@sha256:…`).
    pub digest: Option<Digest>,
}

/// Why a string is not a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{reference}`: {reason}")]
pub struct ReferenceError {
    /// The string as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: String,
}

fn err(reference: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

impl Reference {
    /// Parse `host[:port]/repo[:tag][@digest]`. A first component without `.` or `:` that is not
    /// `localhost` is not a host: the reference is on Docker Hub.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(err(input, "empty"));
        }
        let s = s.strip_prefix("docker://").unwrap_or(s);
        let (name_tag, digest) = match s.split_once('@') {
            Some((a, d)) => (
                a,
                Some(d.parse::<Digest>().map_err(|e| err(input, e.to_string()))?),
            ),
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&name_tag[..i], Some(name_tag[i + 1..].to_string()))
            }
            None => (name_tag, None),
        };
        if let Some(t) = &tag {
            validate_tag(t).map_err(|r| err(input, r))?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        validate_host(&registry).map_err(|r| err(input, r))?;
        let registry = if registry == "index.docker.io" || registry == DOCKER_HUB_API {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository).map_err(|r| err(input, r))?;
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host (and port) to send API requests to.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The key to look up credentials under (config.json / auth.json).
    pub fn credential_key(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_CREDENTIAL_KEY
        } else {
            &self.registry
        }
    }

    /// The host part without the port (for loopback checks and certs.d lookups).
    pub fn hostname(&self) -> &str {
        host_without_port(&self.registry)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        validate_tag(tag).map_err(|r| err(tag, r))?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to a digest, no tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The fully qualified name: `registry/repository`, then `:tag` and `@digest` as given, and
    /// `:latest` when the reference has neither (`busybox` → `docker.io/library/busybox:latest`).
    pub fn full_name(&self) -> String {
        if self.tag.is_none() && self.digest.is_none() {
            format!("{}:{DEFAULT_TAG}", self.name())
        } else {
            self.to_string()
        }
    }

    /// The repository as Docker shows it on Docker Hub: without the `library/` of official images
    /// (`docker.io/library/busybox` → `busybox`); other registries' repositories as they are.
    pub fn familiar_repository(&self) -> &str {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
        } else {
            &self.repository
        }
    }
}

/// The fully qualified form of an image name ([`Reference::full_name`]): `busybox` →
/// `docker.io/library/busybox:latest`, `quay.io/a/b:1` stays. `None` when `name` is not a valid
/// reference.
pub fn full_name(name: &str) -> Option<String> {
    Reference::parse(name).ok().map(|r| r.full_name())
}

/// Whether two image names name the same image: equal as written, or equal once fully qualified
/// (`busybox`, `busybox:latest`, `docker.io/busybox` and `docker.io/library/busybox:latest` are
/// one image). Names that are not valid references only match themselves.
pub fn same_image(a: &str, b: &str) -> bool {
    a == b || full_name(a).is_some_and(|fa| full_name(b).is_some_and(|fb| fa == fb))
}

/// `host[:port]` → `host` (IPv6 literals keep their brackets).
pub fn host_without_port(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.find(']').map_or(registry, |i| &registry[..=i]);
    }
    registry.split(':').next().unwrap_or(registry)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        Reference::parse(s)
    }
}

/// Tags: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` must be 1-128 characters of [A-Za-z0-9_.-], not starting with . or -"
        ))
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    let (h, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(i) => (&host[1..i], host[i + 1..].strip_prefix(':')),
            None => return Err(format!("registry host `{host}` has an unclosed `[`")),
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    if h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
    {
        return Err(format!("registry host `{host}` is not a valid host name"));
    }
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err(format!("registry port `{p}` is not a number 0-65535"));
    }
    Ok(())
}

/// Repository names: `/`-separated components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn validate_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("repository name is empty".into());
    }
    if repo.len() > 255 {
        return Err("repository name is longer than 255 characters".into());
    }
    if repo.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository name `{repo}` must be lower-case"));
    }
    for comp in repo.split('/') {
        if !valid_component(comp) {
            return Err(format!(
                "repository component `{comp}` must match [a-z0-9]+((.|_|__|-+)[a-z0-9]+)*"
            ));
        }
    }
    Ok(())
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`.
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = p("ubuntu");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/ubuntu");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.credential_key(), "https://index.docker.io/v1/");
        assert_eq!(p("index.docker.io/foo/bar:1").registry, "docker.io");
        assert_eq!(
            p("docker.io/ubuntu:22.04").to_string(),
            "docker.io/library/ubuntu:22.04"
        );
        assert_eq!(p("user/app").repository, "user/app");
    }

    #[test]
    fn hosts_ports_tags_digests() {
        let r = p("127.0.0.1:5000/a/b:v1");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.hostname(), "127.0.0.1");
        let r = p("localhost/x");
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.tag, None);
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = p(&format!("host.example:443/x@{d}"));
        assert_eq!(r.digest.unwrap().to_string(), d);
        let r = p(&format!("[::1]:5000/x:t@{d}"));
        assert_eq!(r.registry, "[::1]:5000");
        assert_eq!(r.hostname(), "[::1]");
        assert_eq!(r.tag.as_deref(), Some("t"));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "127.0.0.1:5000/Upper",
            "host:99999/x",
            "h/a..b",
            "h/-a",
            "h/a:",
            "h/a:.x",
            "h/a@sha256:abc",
            "h/a___b",
            "h//a",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(Reference::parse("h.x/a__b/c-d/e---f.g").is_ok());
    }

    #[test]
    fn upper_case_first_component_is_a_host() {
        // docker's grammar treats it as a domain; the repository is still validated.
        assert_eq!(p("MyHost/x").registry, "MyHost");
    }

    #[test]
    fn full_names_default_to_latest() {
        assert_eq!(p("busybox").full_name(), "docker.io/library/busybox:latest");
        assert_eq!(p("a/b:1").full_name(), "docker.io/a/b:1");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            p(&format!("h.x/a@{d}")).full_name(),
            format!("h.x/a@{d}"),
            "a digest needs no tag"
        );
        assert_eq!(full_name("Bad Name"), None);
        assert_eq!(p("busybox").familiar_repository(), "busybox");
        assert_eq!(p("user/app").familiar_repository(), "user/app");
        assert_eq!(p("quay.io/library/x").familiar_repository(), "library/x");
    }

    #[test]
    fn same_image_compares_full_names() {
        for (a, b) in [
            ("busybox", "busybox:latest"),
            ("busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox:1", "busybox:1"),
            ("index.docker.io/library/busybox", "busybox"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("not a name", "not a name"),
        ] {
            assert!(same_image(a, b), "{a} = {b}");
            assert!(same_image(b, a), "{b} = {a}");
        }
        for (a, b) in [
            ("busybox:1", "busybox:2"),
            ("busybox", "library/busybox:1"),
            ("quay.io/busybox", "busybox"),
            ("localhost/x", "x"),
            ("not a name", "not-a-name"),
        ] {
            assert!(!same_image(a, b), "{a} != {b}");
        }
    }

    #[test]
    fn retag() {
        let r = p("h.x/a:1").with_tag("2").unwrap();
        assert_eq!(r.to_string(), "h.x/a:2");
        assert!(p("h.x/a").with_tag("-bad").is_err());
    }
}
