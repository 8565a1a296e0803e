//! Streamed uploads: a blob whose digest is not known before its last byte (a layer being
//! compressed on the way) goes up as it is produced: `POST`, then one `PATCH` with chunked
//! transfer encoding while it is hashed, then `PUT ?digest=`.

use super::Client;
use super::http::{MAX_BODY, Req, Resp, status_error, transport_error};
use super::upload::UploadEvent;
use crate::error::{Error, display_url};
use layerlift_manifest::Digest;
use std::io::Read;
use ureq::http;

/// A reader that hashes what passes through it and reports progress.
struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: layerlift_manifest::Sha256Writer<std::io::Sink>,
    events: &'a (dyn Fn(UploadEvent) + Sync),
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        std::io::Write::write_all(&mut self.hasher, &buf[..n])?;
        (self.events)(UploadEvent::Progress {
            sent: self.hasher.written(),
        });
        Ok(n)
    }
}

impl Client {
    /// Upload a blob whose digest is not known in advance (a layer being compressed on the way):
    /// POST, one PATCH streaming `reader` with chunked transfer encoding while hashing it, then
    /// `PUT ?digest=` with the digest computed. This is the sequence `docker push` uses. Returns
    /// the digest and size. The stream cannot be rewound, so nothing is retried here: a caller
    /// that can produce the stream again retries the call.
    pub fn upload_stream(
        &self,
        repo: &str,
        reader: &mut dyn Read,
        events: &(dyn Fn(UploadEvent) + Sync),
    ) -> Result<(Digest, u64), Error> {
        let (loc, _) = self.retrying(None, |_| self.start_upload(repo))?;
        let mut hashing = HashingReader {
            inner: reader,
            hasher: layerlift_manifest::Sha256Writer::new(std::io::sink()),
            events,
        };
        let (auth, _) = if self.on_registry_origin(&loc) {
            self.authorization()?
        } else {
            (None, 0)
        };
        let mut builder = http::Request::builder()
            .method("PATCH")
            .uri(loc.as_str())
            .header("Content-Type", "application/octet-stream");
        if let Some(a) = &auth {
            builder = builder.header("Authorization", a.as_str());
        }
        let req = builder
            .body(ureq::SendBody::from_reader(&mut hashing))
            .map_err(|e| Error::Protocol {
                method: "PATCH",
                url: display_url(&loc),
                reason: e.to_string(),
            })?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| transport_error("PATCH", &loc, e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| transport_error("PATCH", &loc, e))?;
        let resp = Resp {
            status,
            headers,
            url: loc,
            body,
            stream: None,
        };
        if !(200..=299).contains(&resp.status) {
            return Err(status_error("PATCH", &resp));
        }
        let loc = match resp.header("location") {
            Some(_) => self.location(&resp, "PATCH")?,
            None => resp.url.clone(),
        };
        let (digest, size, _) = hashing.hasher.finish();
        self.retrying(None, |_| {
            let resp = self.send(&Req::new("PUT", Self::with_digest(&loc, &digest)))?;
            if !(200..=299).contains(&resp.status) {
                return Err(status_error("PUT", &resp));
            }
            self.check_digest(&resp, &digest)
        })?;
        Ok((digest, size))
    }
}
