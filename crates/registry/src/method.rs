//! The HTTP methods the registry client sends, as a type: requests carry one, and errors name the
//! request that failed by it (`PUT https://…/manifests/1: HTTP 400 …`).

use std::fmt;

/// An HTTP method of the distribution API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`: a manifest, a blob, an upload session's status, a token.
    Get,
    /// `HEAD`: whether a blob or manifest exists.
    Head,
    /// `POST`: an upload session or a cross-repository mount.
    Post,
    /// `PUT`: a manifest, or the last (or only) request of a blob upload.
    Put,
    /// `PATCH`: a chunk of a blob upload.
    Patch,
    /// `DELETE`: an abandoned upload session.
    Delete,
}

impl Method {
    /// The method as HTTP spells it (`GET`, `PUT`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// Whether a request of this method sends a body (possibly empty).
    pub fn sends_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Method;

    #[test]
    fn displays_as_http_spells_it() {
        assert_eq!(Method::Patch.to_string(), "PATCH");
        assert_eq!(format!("{} /v2/", Method::Get), "GET /v2/");
        assert_eq!(Method::Delete.as_str(), "DELETE");
    }
}
