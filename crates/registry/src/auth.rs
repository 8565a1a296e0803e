//! Authentication: `WWW-Authenticate` challenges (parsed with http-auth), scopes, and the state of
//! the Bearer token flow (one token for the union of the scopes asked for so far, refreshed before
//! it expires and whenever the registry answers 401).

use crate::credentials::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// `repository:<name>:<actions>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    /// The repository, e.g. `library/ubuntu`.
    pub repository: String,
    /// `pull`, `push` (kept sorted, no duplicates).
    pub actions: Vec<String>,
}

impl Scope {
    /// `pull` on `repository`.
    pub fn pull(repository: &str) -> Self {
        Scope {
            repository: repository.to_string(),
            actions: vec!["pull".into()],
        }
    }
    /// `pull,push` on `repository`.
    pub fn pull_push(repository: &str) -> Self {
        Scope {
            repository: repository.to_string(),
            actions: vec!["pull".into(), "push".into()],
        }
    }

    /// Parse `repository:name:a,b` (other resource types are ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("repository:")?;
        let (name, actions) = rest.rsplit_once(':')?;
        let mut actions: Vec<String> = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        actions.sort();
        actions.dedup();
        Some(Scope {
            repository: name.to_string(),
            actions,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "repository:{}:{}",
            self.repository,
            self.actions.join(",")
        )
    }
}

/// Merge scopes: one entry per repository with the union of actions.
pub fn merge_scopes(into: &mut BTreeMap<String, Vec<String>>, scope: &Scope) -> bool {
    let actions = into.entry(scope.repository.clone()).or_default();
    let mut grew = false;
    for a in &scope.actions {
        if !actions.contains(a) {
            actions.push(a.clone());
            grew = true;
        }
    }
    actions.sort();
    grew
}

/// What the registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic with the credential's user and password.
    Basic,
    /// A Bearer token from `realm`.
    Bearer {
        /// The token server's URL.
        realm: String,
        /// The `service` to ask the token server for.
        service: Option<String>,
        /// A scope the registry says it needs (`insufficient_scope` or first 401).
        scope: Option<String>,
        /// The registry's `error` (`invalid_token`, `insufficient_scope`).
        error: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` value; a Bearer challenge is preferred over Basic when both appear.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let challenges = http_auth::parse_challenges(value).ok()?;
    let mut basic = None;
    for c in challenges {
        if c.scheme.eq_ignore_ascii_case("bearer") {
            let get = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            let realm = get("realm")?;
            return Some(Challenge::Bearer {
                realm,
                service: get("service"),
                scope: get("scope"),
                error: get("error"),
            });
        }
        if c.scheme.eq_ignore_ascii_case("basic") {
            basic = Some(Challenge::Basic);
        }
    }
    basic
}

/// A token server's answer.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl TokenResponse {
    /// The bearer token (`token` or `access_token`) and its lifetime (60 s if not given).
    pub fn into_token(self) -> Option<(Secret, Duration, Option<Secret>)> {
        let t = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        let life = Duration::from_secs(self.expires_in.unwrap_or(60).max(1));
        Some((Secret::new(t), life, self.refresh_token.map(Secret::new)))
    }
}

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: Secret,
    pub expires: Instant,
}

/// Longest lifetime believed: a token server may say anything in `expires_in` (up to `u64::MAX`
/// seconds, which `Instant` cannot hold); a day is longer than any push.
pub const MAX_TOKEN_LIFE: Duration = Duration::from_secs(24 * 3600);

impl Token {
    /// A token that expires `life` from now (at most [`MAX_TOKEN_LIFE`]).
    pub fn new(value: Secret, life: Duration) -> Self {
        let now = Instant::now();
        let expires = now
            .checked_add(life.min(MAX_TOKEN_LIFE))
            .unwrap_or(now + Duration::from_secs(60));
        Token { value, expires }
    }

    /// Still usable for a while (10 s margin, or a tenth of a short lifetime).
    pub fn fresh(&self) -> bool {
        let now = Instant::now();
        now + Duration::from_secs(10).min(self.expires.saturating_duration_since(now) / 10)
            < self.expires
    }
}

/// The authentication state of one client.
#[derive(Debug, Default)]
pub struct AuthState {
    pub challenge: Option<Challenge>,
    /// Scopes asked for so far: repository → actions.
    pub scopes: BTreeMap<String, Vec<String>>,
    pub token: Option<Token>,
    /// A refresh token the token server handed out (used instead of the password next time).
    pub refresh_token: Option<Secret>,
    /// Bumped whenever the token changes, so that a thread knows whether another one already
    /// refreshed it.
    pub generation: u64,
}

impl AuthState {
    /// Scopes as `scope=` values.
    pub fn scope_strings(&self) -> Vec<String> {
        self.scopes
            .iter()
            .map(|(repo, actions)| format!("repository:{repo}:{}", actions.join(",")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
                error: Some("insufficient_scope".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        // Several challenges: Bearer wins.
        let c =
            parse_challenge(r#"Basic realm="x", Bearer realm="http://127.0.0.1:1/t",service="s""#);
        assert!(matches!(c, Some(Challenge::Bearer { .. })));
        // Escaped quote inside a quoted value.
        let c = parse_challenge(r#"Bearer realm="http://h/t?a=\"b\"""#).unwrap();
        assert!(matches!(c, Challenge::Bearer { realm, .. } if realm == "http://h/t?a=\"b\""));
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn scopes_merge() {
        let mut m = BTreeMap::new();
        assert!(merge_scopes(&mut m, &Scope::pull("a")));
        assert!(merge_scopes(&mut m, &Scope::pull_push("a")));
        assert!(!merge_scopes(&mut m, &Scope::pull("a")));
        assert!(merge_scopes(&mut m, &Scope::pull("b")));
        let s = AuthState {
            scopes: m,
            ..Default::default()
        };
        assert_eq!(
            s.scope_strings(),
            vec!["repository:a:pull,push", "repository:b:pull"]
        );
        assert_eq!(
            Scope::parse("repository:x/y:push,pull")
                .unwrap()
                .to_string(),
            "repository:x/y:pull,push"
        );
    }

    /// `expires_in` up to `u64::MAX` seconds: no `Instant` overflow (it panicked while the auth
    /// lock was held, poisoning it).
    #[test]
    fn any_token_lifetime_fits_an_instant() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"token":"x","expires_in":18446744073709551615}"#).unwrap();
        let (v, life, _) = t.into_token().unwrap();
        let token = Token::new(v, life);
        assert!(token.fresh());
        assert!(token.expires <= Instant::now() + MAX_TOKEN_LIFE);
    }

    #[test]
    fn token_fields() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"abc"}"#).unwrap();
        let (v, life, _) = t.into_token().unwrap();
        assert_eq!(v.expose(), "abc");
        assert_eq!(life, Duration::from_secs(60));
        let t: TokenResponse =
            serde_json::from_str(r#"{"token":"x","access_token":"y","expires_in":300}"#).unwrap();
        assert_eq!(t.into_token().unwrap().0.expose(), "x");
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(t.into_token().is_none());
    }
}
