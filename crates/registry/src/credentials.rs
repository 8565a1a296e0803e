//! Credentials: what a push authenticates with and where it comes from.
//!
//! Sources, first match wins: the caller's explicit credential (`--creds`, `--username` +
//! `--password-stdin`), `DOCKER_AUTH_CONFIG`, `REGISTRY_AUTH_FILE`, containers' `auth.json`
//! (`$XDG_RUNTIME_DIR/containers/auth.json`, `$XDG_CONFIG_HOME/containers/auth.json`), Docker's
//! `config.json` (`$DOCKER_CONFIG` or `~/.docker`). In each file: `credHelpers[host]`, then the
//! longest matching `auths` key (keys may be URLs, host names or namespaced `host/org/repo`), then
//! `credsStore`. Helpers (`docker-credential-*`) are run through the `docker_credential` crate.
//!
//! Secrets are [`Secret`]s: `Debug` and `Display` print `***`, only [`Secret::expose`] reveals them.

use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A password or token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a password or token.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for building a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What to authenticate with.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Credential {
    #[default]
    /// No credentials: anonymous requests and anonymous tokens.
    Anonymous,
    /// User name and password (or a PAT): sent as Basic, or to the token server.
    Basic {
        /// The user name.
        username: String,
        /// The password or personal access token.
        password: Secret,
    },
    /// An OAuth2 refresh token (config.json `identitytoken`, helper user `<token>`).
    IdentityToken(Secret),
    /// A ready-made bearer token (config.json `registrytoken`).
    RegistryToken(Secret),
}

impl Credential {
    /// `user:password` as given to `--creds` (split at the first `:`).
    pub fn from_creds(creds: &str) -> Result<Self, CredentialError> {
        match creds.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credential::Basic {
                username: u.to_string(),
                password: Secret::new(p),
            }),
            _ => Err(CredentialError::Malformed {
                source_name: "--creds".into(),
                reason: "expected USER:PASSWORD".into(),
            }),
        }
    }

    /// Whether this is [`Credential::Anonymous`].
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credential::Anonymous)
    }

    /// A short description without the secret, e.g. `basic (alice)`.
    pub fn describe(&self) -> String {
        match self {
            Credential::Anonymous => "anonymous".into(),
            Credential::Basic { username, .. } => format!("user {username}"),
            Credential::IdentityToken(_) => "identity token".into(),
            Credential::RegistryToken(_) => "registry token".into(),
        }
    }
}

/// Credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read credentials file {path}: {source}")]
    /// A credentials file exists but cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        #[source]
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// Credentials are not in the form expected.
    #[error("credentials in {source_name} are malformed: {reason}")]
    Malformed {
        /// Where they came from (a file, `--creds`, an environment variable).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    #[error("credential helper docker-credential-{helper} failed for {server}: {reason}")]
    /// A `docker-credential-*` helper failed.
    Helper {
        /// The helper's name (after `docker-credential-`).
        helper: String,
        /// The server it was asked about.
        server: String,
        /// Why it failed (its message, without secrets).
        reason: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// The files searched, in order (only those that exist are read).
pub fn default_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut files = Vec::new();
    if let Some(p) = env("REGISTRY_AUTH_FILE") {
        files.push(p);
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        files.push(d.join("containers/auth.json"));
    }
    let home = env("HOME");
    if let Some(d) = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
        files.push(d.join("containers/auth.json"));
    }
    if let Some(d) = env("DOCKER_CONFIG").or_else(|| home.as_ref().map(|h| h.join(".docker"))) {
        files.push(d.join("config.json"));
    }
    files
}

/// Look up credentials for `registry` (as in [`crate::Reference::registry`]) and `repository`
/// in `DOCKER_AUTH_CONFIG` and then [`default_files`]. Anonymous when nothing matches.
pub fn lookup(registry: &str, repository: &str) -> Result<Credential, CredentialError> {
    if let Some(text) = std::env::var_os("DOCKER_AUTH_CONFIG").filter(|v| !v.is_empty()) {
        let text = text.to_string_lossy().into_owned();
        if let Some(c) = lookup_in_text(&text, "DOCKER_AUTH_CONFIG", registry, repository)? {
            return Ok(c);
        }
    }
    lookup_in_files(&default_files(), registry, repository)
}

/// Like [`lookup`], with `authfile` (`--authfile`) searched first when given.
pub fn lookup_with(
    authfile: Option<&Path>,
    registry: &str,
    repository: &str,
) -> Result<Credential, CredentialError> {
    match authfile {
        Some(f) => {
            if !f.is_file() {
                return Err(CredentialError::Read {
                    path: f.to_path_buf(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            }
            let c = lookup_in_files(&[f.to_path_buf()], registry, repository)?;
            if c.is_anonymous() {
                lookup(registry, repository)
            } else {
                Ok(c)
            }
        }
        None => lookup(registry, repository),
    }
}

/// Look up credentials in the given files (missing files are skipped).
pub fn lookup_in_files(
    files: &[PathBuf],
    registry: &str,
    repository: &str,
) -> Result<Credential, CredentialError> {
    for path in files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CredentialError::Read {
                    path: path.clone(),
                    source,
                });
            }
        };
        if let Some(c) = lookup_in_text(&text, &path.display().to_string(), registry, repository)? {
            return Ok(c);
        }
    }
    Ok(Credential::Anonymous)
}

fn lookup_in_text(
    text: &str,
    source_name: &str,
    registry: &str,
    repository: &str,
) -> Result<Option<Credential>, CredentialError> {
    let config: ConfigFile =
        serde_json::from_str(text).map_err(|e| CredentialError::Malformed {
            source_name: source_name.to_string(),
            // serde_json's message names a position, not the content.
            reason: e.to_string(),
        })?;
    let host = normalise_host(registry);
    let server = server_url(&host);
    for (key, helper) in &config.cred_helpers {
        if normalise_host(&key_host(key)) == host && !helper.is_empty() {
            return run_helper(helper, &server);
        }
    }
    // Longest matching auths key: `host`, or `host/namespace…` on a component boundary.
    let target = format!("{host}/{repository}");
    let mut best: Option<(usize, &AuthEntry)> = None;
    for (key, entry) in &config.auths {
        let k = normalise_key(key);
        let matches = k == host
            || (target.starts_with(&k) && target.as_bytes().get(k.len()) == Some(&b'/'))
            || k == target;
        if matches && best.is_none_or(|(len, _)| k.len() > len) {
            best = Some((k.len(), entry));
        }
    }
    if let Some((_, entry)) = best
        && let Some(c) = entry_credential(entry, source_name)?
    {
        return Ok(Some(c));
    }
    if let Some(store) = config.creds_store.as_deref().filter(|s| !s.is_empty()) {
        return run_helper(store, &server);
    }
    Ok(None)
}

fn entry_credential(
    entry: &AuthEntry,
    source_name: &str,
) -> Result<Option<Credential>, CredentialError> {
    if let Some(t) = entry.registrytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::RegistryToken(Secret::new(t))));
    }
    if let Some(t) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(Secret::new(t))));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let malformed = || CredentialError::Malformed {
            source_name: source_name.to_string(),
            reason: "an `auth` value is not base64 of USER:PASSWORD".into(),
        };
        let decoded = engine.decode(auth.trim()).map_err(|_| malformed())?;
        let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (u, p) = decoded.split_once(':').ok_or_else(malformed)?;
        return Ok(Some(Credential::Basic {
            username: u.to_string(),
            password: Secret::new(p),
        }));
    }
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(Some(Credential::Basic {
            username: u.clone(),
            password: Secret::new(p.clone()),
        }));
    }
    Ok(None)
}

/// Run `docker-credential-<helper> get` for `server`. "Not found" means no credential.
fn run_helper(helper: &str, server: &str) -> Result<Option<Credential>, CredentialError> {
    let config = serde_json::json!({ "credsStore": helper }).to_string();
    match docker_credential::get_credential_from_reader(config.as_bytes(), server) {
        Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => {
            Ok(Some(Credential::Basic {
                username: u,
                password: Secret::new(p),
            }))
        }
        Ok(docker_credential::DockerCredential::IdentityToken(t)) => {
            Ok(Some(Credential::IdentityToken(Secret::new(t))))
        }
        Err(docker_credential::CredentialRetrievalError::HelperFailure { stdout, .. })
            if stdout.to_ascii_lowercase().contains("not found") =>
        {
            Ok(None)
        }
        Err(e) => {
            // Never pass on the helper's output: it may echo what it was given.
            let reason = match e {
                docker_credential::CredentialRetrievalError::HelperFailure { .. } => {
                    "exited with an error".to_string()
                }
                other => other.to_string(),
            };
            Err(CredentialError::Helper {
                helper: helper.to_string(),
                server: server.to_string(),
                reason,
            })
        }
    }
}

/// The server string helpers are asked about.
fn server_url(host: &str) -> String {
    if host == crate::reference::DOCKER_HUB {
        crate::reference::DOCKER_HUB_CREDENTIAL_KEY.to_string()
    } else {
        host.to_string()
    }
}

/// `https://host/v1/` → `host`; a plain (possibly namespaced) key is kept.
fn key_host(key: &str) -> String {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"));
    match stripped {
        Some(rest) => rest.split('/').next().unwrap_or(rest).to_string(),
        None => key.split('/').next().unwrap_or(key).to_string(),
    }
}

/// A key as `host[/namespace…]`, with Docker Hub's aliases folded to `docker.io`.
fn normalise_key(key: &str) -> String {
    let key = key.trim_end_matches('/');
    if key.starts_with("https://") || key.starts_with("http://") {
        return normalise_host(&key_host(key));
    }
    match key.split_once('/') {
        Some((h, rest)) => format!("{}/{rest}", normalise_host(h)),
        None => normalise_host(key),
    }
}

fn normalise_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// Read a password from a reader (`--password-stdin`), dropping one trailing newline.
pub fn read_password(mut r: impl std::io::Read) -> std::io::Result<Secret> {
    let mut s = String::new();
    r.read_to_string(&mut s)?;
    let s = s
        .strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(&s)
        .to_string();
    Ok(Secret::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Credential::from_creds("alice:hunter2").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.describe(), "user alice");
        assert!(Credential::from_creds("nopassword").is_err());
        assert_eq!(
            Credential::from_creds("a:b:c").unwrap(),
            Credential::Basic {
                username: "a".into(),
                password: Secret::new("b:c")
            }
        );
    }

    #[test]
    fn auths_keys_match_by_host_and_namespace() {
        let text = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:pw1")},
                "quay.io": {"auth": b64("quay:pw2")},
                "quay.io/org": {"auth": b64("org:pw3")},
                "quay.io/org/repo": {"username": "repo", "password": "pw4"},
                "127.0.0.1:5000": {"identitytoken": "tok"},
                "reg.example": {"registrytoken": "bearer"},
                "empty.example": {}
            }
        })
        .to_string();
        let get = |reg: &str, repo: &str| lookup_in_text(&text, "t", reg, repo).unwrap();
        let user = |c: Option<Credential>| match c {
            Some(Credential::Basic { username, .. }) => username,
            other => format!("{other:?}"),
        };
        assert_eq!(user(get("docker.io", "library/ubuntu")), "hub");
        assert_eq!(user(get("quay.io", "other/x")), "quay");
        assert_eq!(user(get("quay.io", "org/x")), "org");
        assert_eq!(user(get("quay.io", "org/repo")), "repo");
        assert_eq!(user(get("quay.io", "org/repository")), "org");
        assert_eq!(
            get("127.0.0.1:5000", "a"),
            Some(Credential::IdentityToken(Secret::new("tok")))
        );
        assert_eq!(
            get("reg.example", "a"),
            Some(Credential::RegistryToken(Secret::new("bearer")))
        );
        assert_eq!(get("empty.example", "a"), None);
        assert_eq!(get("nowhere.example", "a"), None);
    }

    #[test]
    fn files_in_order_and_missing_files_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(
            &b,
            serde_json::json!({"auths": {"h.example": {"auth": b64("bob:pw")}}}).to_string(),
        )
        .unwrap();
        let c = lookup_in_files(&[dir.path().join("missing"), a, b], "h.example", "x").unwrap();
        assert_eq!(c.describe(), "user bob");
        let none = lookup_in_files(&[dir.path().join("missing")], "h.example", "x").unwrap();
        assert!(none.is_anonymous());
    }

    #[test]
    fn malformed_auth_does_not_echo_it() {
        let text = r#"{"auths":{"h":{"auth":"!!notbase64-secretish"}}}"#;
        let e = lookup_in_text(text, "t", "h", "x").unwrap_err().to_string();
        assert!(!e.contains("secretish"), "{e}");
    }

    #[test]
    fn helper_not_found_is_anonymous_and_helper_output_is_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-lltest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\ncase \"$server\" in\n  known.example) echo '{\"ServerURL\":\"known.example\",\"Username\":\"hal\",\"Secret\":\"s3cr3t\"}';;\n  broken.example) echo 'leaked s3cr3t'; exit 1;;\n  *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // The helper must be on PATH: run the lookups in a child test process with its own PATH
        // (changing this process's environment would race with other tests).
        let text = r#"{"credsStore":"lltest"}"#;
        let run = |host: &str| {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "credentials::tests::helper_child",
                    "--ignored",
                    "--nocapture",
                ])
                .env("PATH", &path)
                .env("LLTEST_HOST", host)
                .env("LLTEST_TEXT", text)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(run("known.example").contains("RESULT: user hal"));
        assert!(run("other.example").contains("RESULT: anonymous"));
        let broken = run("broken.example");
        assert!(broken.contains("RESULT: error"), "{broken}");
        assert!(!broken.contains("s3cr3t"), "{broken}");
    }

    /// Child half of the helper test, run by it in a process of its own (with the helper on PATH
    /// and LLTEST_HOST, LLTEST_TEXT set); ignored in an ordinary run.
    #[test]
    #[ignore = "the child process of helper_not_found_is_anonymous_and_helper_output_is_hidden"]
    fn helper_child() {
        let host = std::env::var("LLTEST_HOST").expect("run by the helper test, with LLTEST_HOST");
        let text = std::env::var("LLTEST_TEXT").expect("run by the helper test, with LLTEST_TEXT");
        match lookup_in_text(&text, "t", &host, "x") {
            Ok(Some(c)) => println!("RESULT: {}", c.describe()),
            Ok(None) => println!("RESULT: anonymous"),
            Err(e) => println!("RESULT: error {e}"),
        }
    }
}
