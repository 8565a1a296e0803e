//! The ping (`GET /v2/`) that chooses the scheme (HTTPS, or HTTP for loopback hosts when HTTPS
//! cannot connect) and learns the registry's authentication challenge.

use super::Client;
use super::http::{Req, status_error};
use crate::auth;
use crate::error::Error;
use crate::method::Method;
use crate::transport::{self, Scheme};

impl Client {
    /// `GET /v2/`: choose the scheme (HTTPS, or HTTP for `--plain-http` and, after HTTPS failed,
    /// loopback hosts) and learn the authentication challenge.
    pub fn ping(&self) -> Result<(), Error> {
        let loopback = self.opts.loopback_http_fallback
            && transport::is_loopback(crate::reference::host_without_port(&self.registry));
        if self.scheme().is_none() {
            *self.scheme.write().unwrap() = Some(Scheme::Https);
            if loopback {
                // One HTTPS attempt; when the connection itself fails, try plain HTTP. Only a
                // real registry answer (200 or 401) counts: a TLS server answers plain HTTP with
                // 400, and then the HTTPS error is the one to report.
                match self.ping_once() {
                    Ok(()) => return Ok(()),
                    Err(e @ Error::Transport { .. }) => {
                        *self.scheme.write().unwrap() = Some(Scheme::Http);
                        return match self.retrying(None, |_| self.ping_status()) {
                            Ok(200..=299 | 401) => self.ping_once(),
                            // Nothing answered plain HTTP either: report that attempt, the last
                            // one made (its URL says http://).
                            Err(http) if http.is_refused() => Err(http),
                            _ => {
                                *self.scheme.write().unwrap() = Some(Scheme::Https);
                                Err(e)
                            }
                        };
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.retrying(None, |_| self.ping_once())
    }

    fn ping_status(&self) -> Result<u16, Error> {
        let resp = self.execute(&Req::new(Method::Get, self.api_url("v2/")), None)?;
        if crate::error::is_retryable_status(resp.status) {
            return Err(status_error(Method::Get, &resp));
        }
        Ok(resp.status)
    }

    fn ping_once(&self) -> Result<(), Error> {
        let url = self.api_url("v2/");
        let resp = self.execute(&Req::new(Method::Get, url), None)?;
        match resp.status {
            200..=299 => Ok(()),
            // Only the registry's own challenge says where its credentials go, not that of a
            // host `/v2/` redirected to.
            401 if self.on_registry_origin(&resp.url) => {
                let ch = resp
                    .header("www-authenticate")
                    .and_then(auth::parse_challenge);
                self.auth.lock().unwrap().challenge = ch;
                Ok(())
            }
            // Some registries answer 404 or 403 on /v2/; the real requests will tell.
            400..=499 => Ok(()),
            _ => Err(status_error(Method::Get, &resp)),
        }
    }
}
