//! A minimal HTTP/1.1 reader and writer for the test servers (token server, fault proxy): request
//! and response heads, bodies by Content-Length or chunked encoding.

use std::io::{self, BufRead, BufReader, Read, Write};

/// A request or response head.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// `GET /path HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn set(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }
    pub fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or("")
    }
    pub fn target(&self) -> &str {
        self.start.split(' ').nth(1).unwrap_or("")
    }
    pub fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut s = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        w.write_all(s.as_bytes())
    }
}

/// Read a head; None at a clean end of stream.
pub fn read_head(r: &mut BufReader<impl Read>) -> io::Result<Option<Head>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let start = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some(Head { start, headers }))
}

/// How a message's body is delimited.
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

pub fn body_kind(head: &Head, is_response: bool, request_method: &str) -> BodyKind {
    if is_response {
        let st = head.status();
        if request_method == "HEAD" || st == 204 || st == 304 || (100..200).contains(&st) {
            return BodyKind::None;
        }
    }
    if head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return BodyKind::Chunked;
    }
    match head.header("content-length").and_then(|v| v.parse().ok()) {
        Some(n) => BodyKind::Length(n),
        None if is_response => BodyKind::Close,
        None => BodyKind::None,
    }
}

/// Read a whole (small) body.
pub fn read_body(r: &mut BufReader<impl Read>, kind: &BodyKind) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    copy_body(r, kind, &mut out, u64::MAX)?;
    Ok(out)
}

/// Copy a body to `w` with its framing removed, stopping after `limit` bytes (returns the
/// number copied; fewer than the body's length means the limit was hit).
pub fn copy_body(
    r: &mut BufReader<impl Read>,
    kind: &BodyKind,
    w: &mut impl Write,
    limit: u64,
) -> io::Result<u64> {
    match kind {
        BodyKind::None => Ok(0),
        BodyKind::Length(n) => {
            let n = (*n).min(limit);
            io::copy(&mut r.take(n), w)
        }
        BodyKind::Close => io::copy(&mut r.take(limit), w),
        BodyKind::Chunked => {
            let mut total = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line)?;
                let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
                if size == 0 {
                    // trailers
                    loop {
                        line.clear();
                        r.read_line(&mut line)?;
                        if line.trim().is_empty() {
                            break;
                        }
                    }
                    return Ok(total);
                }
                let take = size.min(limit - total);
                let n = io::copy(&mut r.by_ref().take(take), w)?;
                total += n;
                if take < size {
                    return Ok(total);
                }
                line.clear();
                r.read_line(&mut line)?;
            }
        }
    }
}

/// Write a complete response with a body.
pub fn respond(
    w: &mut impl Write,
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    respond_head(w, status, reason, headers, body.len())?;
    w.write_all(body)?;
    w.flush()
}

/// Write a response's head only, its `Content-Length` saying `body_len` (the answer to a `HEAD`,
/// which has no body; or the start of a response whose body follows).
pub fn respond_head(
    w: &mut impl Write,
    status: u16,
    reason: &str,
    headers: &[(&str, String)],
    body_len: usize,
) -> io::Result<()> {
    let mut h = Head {
        start: format!("HTTP/1.1 {status} {reason}"),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    };
    h.set("Content-Length", &body_len.to_string());
    h.write_to(w)?;
    w.flush()
}
