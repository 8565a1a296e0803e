//! Authorization for the registry's requests: Basic, a registry token, or a Bearer token fetched
//! from the challenge's realm (by refresh token with a POST, else a GET with Basic credentials)
//! for the scopes asked for so far; what a 401 teaches (new challenge, wider scopes).

use super::Client;
use super::http::{Req, ReqBody, Resp, status_error};
use crate::auth::{self, AuthState, Challenge, Scope, Token, TokenResponse};
use crate::credentials::Credential;
use crate::error::{Error, display_url};
use crate::method::Method;
use crate::transport::{self, Scheme};
use url::Url;

/// Whether a token request to `realm` may carry credentials (a password, a refresh token) for a
/// registry reached over `registry`: not in clear text (an `http:` realm) to a host that is not
/// loopback when the registry itself speaks https.
pub(crate) fn realm_may_carry_credentials(registry: Scheme, realm: &Url) -> bool {
    realm.scheme() == "https"
        || registry == Scheme::Http
        || realm.host_str().is_some_and(transport::is_loopback)
}

impl Client {
    /// The `Authorization` value for a request to the registry, fetching a token if needed.
    /// Returns the auth generation it belongs to.
    pub(super) fn authorization(&self) -> Result<(Option<String>, u64), Error> {
        let mut st = self.auth.lock().unwrap();
        let value = match (&st.challenge, &self.credential) {
            (_, Credential::RegistryToken(t)) => Some(format!("Bearer {}", t.expose())),
            (Some(Challenge::Basic), Credential::Basic { username, password }) => Some(
                http_auth::basic::encode_credentials(username, password.expose()),
            ),
            (Some(Challenge::Bearer { .. }), _) => {
                if !st.token.as_ref().is_some_and(Token::fresh) {
                    self.fetch_token(&mut st)?;
                }
                st.token
                    .as_ref()
                    .map(|t| format!("Bearer {}", t.value.expose()))
            }
            _ => None,
        };
        // The generation of the token actually sent (read after a possible fetch above).
        Ok((value, st.generation))
    }

    /// Get a token for the scopes in `st` from the challenge's realm.
    pub(super) fn fetch_token(&self, st: &mut AuthState) -> Result<(), Error> {
        let Some(Challenge::Bearer { realm, service, .. }) = st.challenge.clone() else {
            return Ok(());
        };
        let realm_url = self.base().join(&realm).map_err(|e| Error::Token {
            url: realm.clone(),
            reason: format!("realm is not a URL: {e}"),
        })?;
        let scopes = st.scope_strings();
        let refresh = match &self.credential {
            Credential::IdentityToken(t) => Some(t.clone()),
            _ => st.refresh_token.clone(),
        };
        let secret = refresh.is_some() || matches!(self.credential, Credential::Basic { .. });
        if secret
            && !realm_may_carry_credentials(self.scheme().unwrap_or(Scheme::Https), &realm_url)
        {
            return Err(Error::Token {
                url: display_url(&realm_url),
                reason: "the registry speaks https but its token realm is plain http: credentials \
                         are not sent in clear text"
                    .into(),
            });
        }
        let resp = if let Some(refresh) = refresh {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token");
            form.append_pair("refresh_token", refresh.expose());
            if let Some(s) = &service {
                form.append_pair("service", s);
            }
            form.append_pair("scope", &scopes.join(" "));
            form.append_pair("client_id", "layerlift");
            let req = Req::new(Method::Post, realm_url.clone())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(ReqBody::Form(form.finish()));
            let resp = self.retrying(None, |_| self.execute(&req, None))?;
            if resp.status == 404 || resp.status == 405 {
                // This token server only does GET.
                st.refresh_token = None;
                self.token_get(&realm_url, service.as_deref(), &scopes)?
            } else {
                resp
            }
        } else {
            self.token_get(&realm_url, service.as_deref(), &scopes)?
        };
        if resp.status != 200 {
            let mut e = status_error(Method::Get, &resp);
            if let Error::Unauthorized { hint, .. } = &mut e {
                *hint = format!(" (token request as {})", self.credential.describe());
            }
            return Err(e);
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&resp.body).map_err(|e| Error::Token {
                url: display_url(&realm_url),
                reason: format!("answer is not token JSON: {e}"),
            })?;
        let (value, life, refresh) = parsed.into_token().ok_or_else(|| Error::Token {
            url: display_url(&realm_url),
            reason: "answer has neither `token` nor `access_token`".into(),
        })?;
        st.token = Some(Token::new(value, life));
        if let Some(r) = refresh {
            st.refresh_token = Some(r);
        }
        st.generation += 1;
        Ok(())
    }

    pub(super) fn token_get(
        &self,
        realm_url: &Url,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Resp, Error> {
        let mut url = realm_url.clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let req = Req::new(Method::Get, url);
        // Passed as the request's credentials, not as a header: `execute` drops it when a
        // redirect leaves the realm's origin.
        let basic = match &self.credential {
            Credential::Basic { username, password } => Some(http_auth::basic::encode_credentials(
                username,
                password.expose(),
            )),
            _ => None,
        };
        self.retrying(None, |_| self.execute(&req, basic.clone()))
    }

    /// React to a 401: learn the challenge, widen scopes, get a new token. True when a retry
    /// with new credentials makes sense.
    pub(super) fn handle_unauthorized(
        &self,
        resp: &Resp,
        generation: u64,
        sent_auth: bool,
    ) -> Result<bool, Error> {
        let Some(ch) = resp
            .header("www-authenticate")
            .and_then(auth::parse_challenge)
        else {
            return Ok(false);
        };
        let mut st = self.auth.lock().unwrap();
        match &ch {
            Challenge::Basic => {
                let first = st.challenge != Some(Challenge::Basic);
                st.challenge = Some(Challenge::Basic);
                Ok(first && !sent_auth && matches!(self.credential, Credential::Basic { .. }))
            }
            Challenge::Bearer { scope, .. } => {
                // `error="insufficient_scope"` names the scope the request needs: ask for the
                // union of it and what we had.
                let mut grew = false;
                if let Some(s) = scope {
                    for one in s.split(' ') {
                        if let Some(sc) = Scope::parse(one) {
                            grew |= auth::merge_scopes(&mut st.scopes, &sc);
                        }
                    }
                }
                st.challenge = Some(ch.clone());
                if matches!(self.credential, Credential::RegistryToken(_)) {
                    return Ok(false);
                }
                // Unless another thread already got a new token for the same scopes.
                if grew || st.generation == generation {
                    self.fetch_token(&mut st)?;
                }
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_do_not_go_to_a_plain_http_realm_of_an_https_registry() {
        let url = |u: &str| Url::parse(u).unwrap();
        assert!(realm_may_carry_credentials(
            Scheme::Https,
            &url("https://auth.example/token")
        ));
        assert!(!realm_may_carry_credentials(
            Scheme::Https,
            &url("http://auth.example/token")
        ));
        assert!(realm_may_carry_credentials(
            Scheme::Http,
            &url("http://auth.example/token")
        ));
        assert!(realm_may_carry_credentials(
            Scheme::Https,
            &url("http://127.0.0.1:5001/token")
        ));
        assert!(realm_may_carry_credentials(
            Scheme::Https,
            &url("http://[::1]:5001/token")
        ));
    }
}
