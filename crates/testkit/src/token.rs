//! A small token server for the registry's `auth: token:` mode.
//!
//! `GET /token?service=…&scope=…` with optional Basic credentials, and `POST /token` with
//! `grant_type=refresh_token` (or `password`), answer `{"token","access_token","expires_in"}`
//! with an ES256 JWT whose `x5c` header carries the signing certificate, which the registry
//! trusts through `rootcertbundle`. Known users get every action they ask for; anonymous callers
//! get `pull` only. Every request is logged (user, scopes, whether credentials were sent) so that
//! tests can check what the client asked for.

use crate::http;
use crate::tls::SigningKey;
use base64::Engine as _;
use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// One request the token server saw.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    /// `/token`, or `/moved-token` after a redirect set by [`TokenServer::redirect`].
    pub path: String,
    pub scopes: Vec<String>,
    pub service: Option<String>,
    /// The authenticated user (None: anonymous or refused).
    pub user: Option<String>,
    pub had_authorization: bool,
    pub grant_type: Option<String>,
    pub status: u16,
}

struct Shared {
    key: SigningKey,
    issuer: String,
    service: String,
    users: BTreeMap<String, String>,
    expires_in: u64,
    refresh_tokens: Mutex<BTreeMap<String, String>>,
    log: Mutex<Vec<TokenRequest>>,
    counter: AtomicU64,
    stop: AtomicBool,
    /// Answer `/token` with this status and `Location: <base>/moved-token?<query>`.
    redirect: Mutex<Option<(u16, String)>>,
    /// `expires_in` to put in answers instead of the real lifetime.
    advertised_expires_in: Mutex<Option<u64>>,
}

/// A running token server on 127.0.0.1; stops on drop.
pub struct TokenServer {
    port: u16,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenServer(127.0.0.1:{})", self.port)
    }
}

impl TokenServer {
    /// Start a token server for `service`, trusting `users` (name → password).
    pub fn start(service: &str, users: &[(&str, &str)], expires_in: u64) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            key: SigningKey::generate(),
            issuer: "layerlift-testkit".into(),
            service: service.into(),
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            expires_in,
            refresh_tokens: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            counter: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            redirect: Mutex::new(None),
            advertised_expires_in: Mutex::new(None),
        });
        let s2 = shared.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let s3 = s2.clone();
                    std::thread::spawn(move || {
                        let _ = serve(c, &s3);
                    });
                }
            }
        });
        Ok(TokenServer {
            port,
            shared,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The realm URL for the registry's config.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// PEM of the certificate that signs tokens.
    pub fn cert_pem(&self) -> &str {
        &self.shared.key.cert_pem
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.log.lock().unwrap().clone()
    }

    /// From now on answer `/token` with `status` (301, 302, 307...) and
    /// `Location: <base>/moved-token?<query>`, where `base` is e.g. `http://127.0.0.2:<port>` (a proxy to this
    /// server on another origin) or this server's own `http://127.0.0.1:<port>`; `/moved-token`
    /// issues tokens like `/token`.
    pub fn redirect(&self, status: u16, base: &str) {
        *self.shared.redirect.lock().unwrap() = Some((status, base.trim_end_matches('/').into()));
    }

    /// Say this `expires_in` in answers (the JWT keeps its real lifetime): a token server that
    /// claims its tokens live for ever.
    pub fn advertise_expires_in(&self, seconds: u64) {
        *self.shared.advertised_expires_in.lock().unwrap() = Some(seconds);
    }

    /// Issue a refresh token for `user` (what `docker login` would store as `identitytoken`).
    pub fn issue_refresh_token(&self, user: &str) -> String {
        let n = self.shared.counter.fetch_add(1, Ordering::SeqCst);
        let t = format!("refresh-{n}-{user}");
        self.shared
            .refresh_tokens
            .lock()
            .unwrap()
            .insert(t.clone(), user.to_string());
        t
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    while let Some(head) = http::read_head(&mut r)? {
        let kind = http::body_kind(&head, false, head.method());
        let body = http::read_body(&mut r, &kind)?;
        let redirect = shared.redirect.lock().unwrap().clone();
        if let Some((status, base)) = redirect
            && head.target().split('?').next() == Some("/token")
        {
            let query = head.target().split_once('?').map_or("", |(_, q)| q);
            shared.log.lock().unwrap().push(TokenRequest {
                method: head.method().to_string(),
                path: "/token".into(),
                scopes: Vec::new(),
                service: None,
                user: None,
                had_authorization: head.header("authorization").is_some(),
                grant_type: None,
                status,
            });
            http::respond(
                &mut w,
                status,
                "Moved",
                &[("Location", format!("{base}/moved-token?{query}"))],
                b"",
            )?;
            continue;
        }
        let (status, body) = handle(&head, &body, shared);
        http::respond(
            &mut w,
            status,
            if status == 200 { "OK" } else { "Error" },
            &[("Content-Type", "application/json".to_string())],
            body.as_bytes(),
        )?;
    }
    Ok(())
}

/// The ES256 JWT (with the signing certificate in `x5c`) the registry trusts: `user`'s (or an
/// anonymous caller's: pull only) access to the repositories of `scopes`, numbered `n`.
fn sign_token(shared: &Shared, user: Option<&str>, scopes: &[String], n: u64) -> String {
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let rest = s.strip_prefix("repository:")?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions
                .split(',')
                .filter(|a| user.is_some() || *a == "pull")
                .collect();
            Some(serde_json::json!({"type":"repository","name":name,"actions":actions}))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(&shared.key.cert_der)],
    });
    let claims = serde_json::json!({
        "iss": shared.issuer,
        "sub": user.unwrap_or_default(),
        "aud": shared.service,
        "exp": now.saturating_add(shared.expires_in),
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": format!("jti-{n}"),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = shared.key.sign(signing_input.as_bytes());
    let jwt = format!("{signing_input}.{}", b64url(&sig));
    jwt
}

fn handle(head: &http::Head, body: &[u8], shared: &Shared) -> (u16, String) {
    let target = head.target();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params = query_pairs(query);
    if head.method() == "POST" {
        params.extend(query_pairs(&String::from_utf8_lossy(body)));
    }
    let get = |k: &str| params.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let mut scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    scopes.dedup();
    let authz = head.header("authorization");
    let grant_type = get("grant_type");
    let mut entry = TokenRequest {
        method: head.method().to_string(),
        path: path.to_string(),
        scopes: scopes.clone(),
        service: get("service"),
        user: None,
        had_authorization: authz.is_some(),
        grant_type: grant_type.clone(),
        status: 200,
    };
    let deny = |entry: &mut TokenRequest, status: u16, msg: &str| {
        entry.status = status;
        shared.log.lock().unwrap().push(entry.clone());
        (
            status,
            serde_json::json!({"errors":[{"code":"UNAUTHORIZED","message":msg}]}).to_string(),
        )
    };
    if path != "/token" && path != "/moved-token" {
        return deny(&mut entry, 404, "not found");
    }
    // Who is asking?
    let user: Option<String> = match (head.method(), grant_type.as_deref()) {
        ("POST", Some("refresh_token")) => {
            let t = get("refresh_token").unwrap_or_default();
            match shared.refresh_tokens.lock().unwrap().get(&t) {
                Some(u) => Some(u.clone()),
                None => return deny(&mut entry, 401, "invalid refresh token"),
            }
        }
        ("POST", Some("password")) => {
            let (u, p) = (
                get("username").unwrap_or_default(),
                get("password").unwrap_or_default(),
            );
            if shared.users.get(&u) == Some(&p) {
                Some(u)
            } else {
                return deny(&mut entry, 401, "invalid credentials");
            }
        }
        ("POST", _) => return deny(&mut entry, 400, "unsupported grant_type"),
        _ => match authz {
            Some(a) => {
                let Some(enc) = a.strip_prefix("Basic ") else {
                    return deny(&mut entry, 401, "only Basic credentials");
                };
                let dec = base64::engine::general_purpose::STANDARD
                    .decode(enc.trim())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok())
                    .unwrap_or_default();
                let (u, p) = dec.split_once(':').unwrap_or(("", ""));
                if shared.users.get(u).map(String::as_str) == Some(p) {
                    Some(u.to_string())
                } else {
                    return deny(&mut entry, 401, "invalid credentials");
                }
            }
            None => None,
        },
    };
    entry.user = user.clone();
    let n = shared.counter.fetch_add(1, Ordering::SeqCst);
    let jwt = sign_token(shared, user.as_deref(), &scopes, n);
    let mut answer = serde_json::json!({
        "token": jwt,
        "access_token": jwt,
        "expires_in": shared.advertised_expires_in.lock().unwrap().unwrap_or(shared.expires_in),
    });
    if let Some(u) = &user
        && get("offline_token").as_deref() == Some("true")
    {
        let t = format!("refresh-{n}-{u}");
        shared
            .refresh_tokens
            .lock()
            .unwrap()
            .insert(t.clone(), u.clone());
        answer["refresh_token"] = serde_json::Value::String(t);
    }
    shared.log.lock().unwrap().push(entry);
    (200, answer.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(
            percent_decode("repository%3Aa%2Fb%3Apull%2Cpush"),
            "repository:a/b:pull,push"
        );
        assert_eq!(percent_decode("a+b%"), "a b%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
