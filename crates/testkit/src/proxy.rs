//! A fault-injecting reverse proxy on 127.0.0.1, between a client and a real registry.
//!
//! Each request is numbered and handed to a rule that picks a [`Fault`]: pass it through, drop the
//! connection after part of the request body was forwarded, answer 5xx or 429 with `Retry-After`
//! itself, stall before forwarding, or redirect to another base URL (a second "host"). The `Host`
//! header is kept, so the registry's `Location` headers point back at the proxy. Every request is
//! logged with whether it carried `Authorization`, so tests can check where credentials went.
//! Bodies are re-framed with `Content-Length`; responses are buffered (the proxy is for uploads,
//! not for pulling large blobs through it).
//!
//! Used as a forward proxy (`HTTPS_PROXY`), it tunnels `CONNECT` to loopback targets and refuses
//! others with 403; [`FaultProxy::catching_remote`] instead serves a tunnel to any other host
//! itself, as if the client had connected to the proxy directly (TLS is refused, plain HTTP is
//! logged and forwarded to the upstream registry), so a test can see which protocol a client
//! speaks to a remote host without any traffic leaving the machine.

use crate::http::{self, Head};
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Forward the head and `after` bytes of the body, then close both connections.
    Drop { after: u64 },
    /// Answer this status without forwarding (`Retry-After` seconds when given).
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    /// Wait, then forward.
    Stall(Duration),
    /// Answer `401` with this `WWW-Authenticate` (a token that expired mid-upload).
    Unauthorized { challenge: String },
    /// Answer `307` with `Location: <to><path and query>`.
    Redirect { to: String },
    /// Forward it, and point the answer's `Location` (absolute or relative) at `to` (a base URL
    /// such as `http://127.0.0.2:1234`), keeping its path and query: an upload session on
    /// another origin.
    Relocate { to: String },
}

/// What a rule sees.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// 0-based request number across all connections.
    pub n: usize,
    pub method: String,
    /// Path and query.
    pub target: String,
    pub content_length: u64,
}

/// One logged request.
#[derive(Debug, Clone)]
pub struct ProxyLog {
    pub n: usize,
    pub method: String,
    pub target: String,
    pub authorization: bool,
    pub fault: Fault,
}

type Rule = dyn Fn(&RequestInfo) -> Fault + Send + Sync;

/// A request as the proxy read it (body whole), for an [`Exchange`].
#[derive(Debug, Clone)]
pub struct Message {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Framing headers (`Content-Length`, `Transfer-Encoding`, `Connection`) are left out.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client sent a `Content-Length` (not chunked transfer encoding, not nothing).
    pub had_length: bool,
}

impl Message {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
}

/// A response, built by an [`Exchange`] or read from the registry (body whole).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// A JSON error answer in the distribution envelope: `{"errors":[{"code","message"}]}`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
        Answer {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
    /// Set a header, replacing any of the same name.
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.headers.push((name.to_string(), value.to_string()));
    }
    /// Remove a header.
    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }
}

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What an [`Exchange`] does with a request before the registry sees it.
#[derive(Debug, Clone)]
pub enum Before {
    /// Forward it (as the exchange may have rewritten it).
    Forward,
    /// Answer this instead (the registry never sees the request).
    Answer(Answer),
    /// Close the connection without an answer.
    Close,
}

/// A programmable registry front: sees every request whole (after the rule passed it), may answer
/// it itself, rewrite it, or rewrite the registry's answer. Requests and answers are buffered.
pub trait Exchange: Send + Sync {
    /// Before forwarding `req` (which may be changed).
    fn before(&self, req: &mut Message) -> Before;
    /// After the registry answered `req` (the request as forwarded) with `answer`.
    fn after(&self, req: &Message, answer: &mut Answer);
}

struct Shared {
    upstream: u16,
    rule: Box<Rule>,
    exchange: Option<Arc<dyn Exchange>>,
    counter: AtomicUsize,
    log: Mutex<Vec<ProxyLog>>,
    stop: AtomicBool,
    /// Serve `CONNECT`s to non-loopback targets here instead of refusing them.
    catch_remote: bool,
}

/// A running proxy; stops on drop.
pub struct FaultProxy {
    ip: std::net::Ipv4Addr,
    port: u16,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FaultProxy(127.0.0.1:{} → {})",
            self.port, self.shared.upstream
        )
    }
}

impl FaultProxy {
    /// Proxy to `127.0.0.1:<upstream>`, applying `rule` to every request.
    pub fn start(
        upstream: u16,
        rule: impl Fn(&RequestInfo) -> Fault + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(upstream, Box::new(rule), false)
    }

    /// A transparent proxy that also answers `CONNECT` to hosts that are not loopback, serving the
    /// tunnel itself: a TLS handshake in it is closed (logged as the `CONNECT` alone), plain HTTP is
    /// logged like any request (target as the client sent it) and forwarded to `upstream`.
    pub fn catching_remote(upstream: u16) -> Self {
        Self::start_with(upstream, Box::new(|_: &RequestInfo| Fault::Pass), true)
    }

    /// Like [`FaultProxy::start`], listening on another loopback address (`127.0.0.2`): another
    /// origin for a client that talks to `127.0.0.1`.
    pub fn start_on(
        ip: std::net::Ipv4Addr,
        upstream: u16,
        rule: impl Fn(&RequestInfo) -> Fault + Send + Sync + 'static,
    ) -> Self {
        assert!(ip.is_loopback(), "test servers listen on loopback only");
        Self::start_at(ip, upstream, Box::new(rule), false)
    }

    /// A proxy whose passed requests go through `exchange` (see [`Exchange`]); `rule` still
    /// picks faults first.
    pub fn with_exchange(
        upstream: u16,
        rule: impl Fn(&RequestInfo) -> Fault + Send + Sync + 'static,
        exchange: Arc<dyn Exchange>,
    ) -> Self {
        Self::start_full(
            std::net::Ipv4Addr::LOCALHOST,
            upstream,
            Box::new(rule),
            false,
            Some(exchange),
        )
    }

    fn start_with(upstream: u16, rule: Box<Rule>, catch_remote: bool) -> Self {
        Self::start_at(std::net::Ipv4Addr::LOCALHOST, upstream, rule, catch_remote)
    }

    fn start_at(
        ip: std::net::Ipv4Addr,
        upstream: u16,
        rule: Box<Rule>,
        catch_remote: bool,
    ) -> Self {
        Self::start_full(ip, upstream, rule, catch_remote, None)
    }

    fn start_full(
        ip: std::net::Ipv4Addr,
        upstream: u16,
        rule: Box<Rule>,
        catch_remote: bool,
        exchange: Option<Arc<dyn Exchange>>,
    ) -> Self {
        let listener = TcpListener::bind((ip, 0)).expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            upstream,
            rule,
            exchange,
            counter: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            catch_remote,
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
        FaultProxy {
            ip,
            port,
            shared,
            thread: Some(thread),
        }
    }

    /// A proxy that passes everything.
    pub fn transparent(upstream: u16) -> Self {
        Self::start(upstream, |_| Fault::Pass)
    }

    /// `127.0.0.1:<port>` (or the address given to [`FaultProxy::start_on`]).
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests seen so far.
    pub fn log(&self) -> Vec<ProxyLog> {
        self.shared.log.lock().unwrap().clone()
    }

    /// How many requests got a fault other than `Pass`.
    pub fn faults(&self) -> usize {
        self.log().iter().filter(|l| l.fault != Fault::Pass).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((self.ip, self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        307 => "Temporary Redirect",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    // Heads and bodies go out in separate writes: without this, Nagle and delayed ACKs add 40 ms.
    client.set_nodelay(true)?;
    let w = client.try_clone()?;
    serve_stream(BufReader::new(client), w, shared)
}

/// Answer `head` with the injected error `status` (a registry's error body, `Retry-After` if
/// given; no body for a `HEAD`).
fn answer_status(
    head: &Head,
    w: &mut TcpStream,
    status: u16,
    retry_after: Option<u32>,
) -> std::io::Result<()> {
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if let Some(s) = retry_after {
        headers.push(("Retry-After", s.to_string()));
    }
    let code = match status {
        429 => "TOOMANYREQUESTS",
        404 => "BLOB_UPLOAD_UNKNOWN",
        _ => "UNAVAILABLE",
    };
    let body =
        format!(r#"{{"errors":[{{"code":"{code}","message":"injected by the fault proxy"}}]}}"#);
    if head.method() == "HEAD" {
        // A HEAD response has no body (its Content-Length still says how long).
        http::respond_head(w, status, reason(status), &headers, body.len())?;
    } else {
        http::respond(w, status, reason(status), &headers, body.as_bytes())?;
    }
    Ok(())
}

/// Answer `head` with an injected 401 carrying `challenge` (no body for a `HEAD`).
fn answer_unauthorized(head: &Head, w: &mut TcpStream, challenge: String) -> std::io::Result<()> {
    let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"token expired (injected by the fault proxy)"}]}"#;
    let headers = [
        ("WWW-Authenticate", challenge),
        ("Content-Type", "application/json".to_string()),
    ];
    if head.method() == "HEAD" {
        http::respond_head(w, 401, "Unauthorized", &headers, body.len())?;
    } else {
        http::respond(w, 401, "Unauthorized", &headers, body)?;
    }
    Ok(())
}

/// Serve requests read from `r` (a client connection, or a caught tunnel), answering on `w`.
fn serve_stream(
    mut r: BufReader<TcpStream>,
    mut w: TcpStream,
    shared: &Shared,
) -> std::io::Result<()> {
    loop {
        // A TLS ClientHello (a client probing HTTPS first): close at once, as a plain-HTTP
        // server that does not speak TLS would fail the handshake.
        match std::io::BufRead::fill_buf(&mut r) {
            Ok([0x16, ..]) | Ok([]) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
        let head = match http::read_head(&mut r) {
            Ok(Some(h)) if h.start.ends_with("HTTP/1.1") || h.start.ends_with("HTTP/1.0") => h,
            // EOF, garbage (a TLS ClientHello), or an error: close.
            _ => return Ok(()),
        };
        if head.method() == "CONNECT" {
            // Forward-proxy use (HTTPS_PROXY/HTTP_PROXY): a raw tunnel, loopback targets only.
            return tunnel(&head, r, w, shared);
        }
        let kind = http::body_kind(&head, false, head.method());
        let content_length = match kind {
            http::BodyKind::Length(n) => n,
            _ => 0,
        };
        let info = RequestInfo {
            n: shared.counter.fetch_add(1, Ordering::SeqCst),
            method: head.method().to_string(),
            target: head.target().to_string(),
            content_length,
        };
        let fault = (shared.rule)(&info);
        shared.log.lock().unwrap().push(ProxyLog {
            n: info.n,
            method: info.method.clone(),
            target: info.target.clone(),
            authorization: head.header("authorization").is_some(),
            fault: fault.clone(),
        });
        match fault {
            Fault::Status {
                status,
                retry_after,
            } => {
                http::read_body(&mut r, &kind)?;
                answer_status(&head, &mut w, status, retry_after)?;
            }
            Fault::Unauthorized { challenge } => {
                http::read_body(&mut r, &kind)?;
                answer_unauthorized(&head, &mut w, challenge)?;
            }
            Fault::Redirect { to } => {
                http::read_body(&mut r, &kind)?;
                let loc = format!("{}{}", to.trim_end_matches('/'), head.target());
                http::respond(&mut w, 307, reason(307), &[("Location", loc)], b"")?;
            }
            Fault::Drop { after } => {
                let mut up = TcpStream::connect(("127.0.0.1", shared.upstream))?;
                up.set_nodelay(true)?;
                let mut h = head.clone();
                h.set("Connection", "close");
                h.write_to(&mut up)?;
                let mut sink = Vec::new();
                http::copy_body(&mut r, &kind, &mut sink, after)?;
                up.write_all(&sink)?;
                up.flush()?;
                std::thread::sleep(Duration::from_millis(20));
                let _ = up.shutdown(Shutdown::Both);
                let _ = w.shutdown(Shutdown::Both);
                return Ok(());
            }
            Fault::Stall(d) => {
                std::thread::sleep(d);
                forward(&head, &kind, &mut r, &mut w, shared, None)?;
            }
            Fault::Pass => match &shared.exchange {
                Some(x) => {
                    if !exchange(&head, &kind, &mut r, &mut w, shared, x.as_ref())? {
                        let _ = w.shutdown(Shutdown::Both);
                        return Ok(());
                    }
                }
                None => forward(&head, &kind, &mut r, &mut w, shared, None)?,
            },
            Fault::Relocate { to } => forward(&head, &kind, &mut r, &mut w, shared, Some(&to))?,
        }
        if head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            return Ok(());
        }
    }
}

/// `CONNECT host:port`: log it, then copy bytes both ways (no faults inside the tunnel).
fn tunnel(
    head: &Head,
    mut r: BufReader<TcpStream>,
    mut w: TcpStream,
    shared: &Shared,
) -> std::io::Result<()> {
    let target = head.target().to_string();
    shared.log.lock().unwrap().push(ProxyLog {
        n: shared.counter.fetch_add(1, Ordering::SeqCst),
        method: "CONNECT".into(),
        target: target.clone(),
        authorization: head.header("authorization").is_some(),
        fault: Fault::Pass,
    });
    let loopback = target
        .rsplit_once(':')
        .and_then(|(h, _)| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    if !loopback {
        if shared.catch_remote {
            w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
            w.flush()?;
            return serve_stream(r, w, shared);
        }
        return http::respond(&mut w, 403, "Forbidden", &[], b"loopback targets only");
    }
    let up = TcpStream::connect(target.as_str())?;
    up.set_nodelay(true)?;
    w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let mut up_w = up.try_clone()?;
    let mut up_r = up;
    let to_client = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut w);
        let _ = w.shutdown(Shutdown::Both);
    });
    // Bytes the client already sent after the CONNECT head are in the BufReader.
    let _ = std::io::copy(&mut r, &mut up_w);
    let _ = up_w.shutdown(Shutdown::Both);
    let _ = to_client.join();
    Ok(())
}

/// Forward one request upstream (new connection) and its buffered response back (its `Location`
/// moved to the base URL `relocate` when given).
fn forward(
    head: &Head,
    kind: &http::BodyKind,
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    shared: &Shared,
    relocate: Option<&str>,
) -> std::io::Result<()> {
    let up = TcpStream::connect(("127.0.0.1", shared.upstream))?;
    up.set_nodelay(true)?;
    let mut upw = up.try_clone()?;
    let mut h = head.clone();
    h.set("Connection", "close");
    match kind {
        http::BodyKind::Chunked => {
            // Re-frame with Content-Length.
            let body = http::read_body(r, kind)?;
            h.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("transfer-encoding"));
            h.set("Content-Length", &body.len().to_string());
            h.write_to(&mut upw)?;
            upw.write_all(&body)?;
        }
        _ => {
            h.write_to(&mut upw)?;
            http::copy_body(r, kind, &mut upw, u64::MAX)?;
        }
    }
    upw.flush()?;
    let mut ur = BufReader::new(up);
    let Some(mut rh) = http::read_head(&mut ur)? else {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
    };
    let rkind = http::body_kind(&rh, true, head.method());
    let body = http::read_body(&mut ur, &rkind)?;
    if let Some(to) = relocate
        && let Some(loc) = rh.header("location").map(str::to_string)
    {
        // Keep the path and query: drop `scheme://authority` when there is one.
        let path = match loc.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_string(),
            None => loc,
        };
        rh.set("Location", &format!("{}{path}", to.trim_end_matches('/')));
    }
    rh.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("transfer-encoding"));
    rh.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("connection"));
    // HEAD and 204 keep their headers (a HEAD's Content-Length is the blob's size).
    if !matches!(rkind, http::BodyKind::None) {
        rh.set("Content-Length", &body.len().to_string());
    }
    rh.write_to(w)?;
    w.write_all(&body)?;
    w.flush()
}

/// One request through an [`Exchange`]: read whole, maybe answered or rewritten, forwarded on a new
/// connection, its answer maybe rewritten. `Ok(false)`: the connection is to be closed unanswered.
fn exchange(
    head: &Head,
    kind: &http::BodyKind,
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    shared: &Shared,
    x: &dyn Exchange,
) -> std::io::Result<bool> {
    let body = http::read_body(r, kind)?;
    let mut req = Message {
        method: head.method().to_string(),
        target: head.target().to_string(),
        headers: head
            .headers
            .iter()
            .filter(|(k, _)| {
                !k.eq_ignore_ascii_case("transfer-encoding")
                    && !k.eq_ignore_ascii_case("content-length")
                    && !k.eq_ignore_ascii_case("connection")
            })
            .cloned()
            .collect(),
        body,
        had_length: matches!(kind, http::BodyKind::Length(_)),
    };
    let mut answer = match x.before(&mut req) {
        Before::Close => return Ok(false),
        Before::Answer(a) => a,
        Before::Forward => {
            let up = TcpStream::connect(("127.0.0.1", shared.upstream))?;
            up.set_nodelay(true)?;
            let mut upw = up.try_clone()?;
            let mut h = Head {
                start: format!("{} {} HTTP/1.1", req.method, req.target),
                headers: req.headers.clone(),
            };
            h.set("Connection", "close");
            if !req.body.is_empty() || matches!(req.method.as_str(), "POST" | "PUT" | "PATCH") {
                h.set("Content-Length", &req.body.len().to_string());
            }
            h.write_to(&mut upw)?;
            upw.write_all(&req.body)?;
            upw.flush()?;
            let mut ur = BufReader::new(up);
            let Some(rh) = http::read_head(&mut ur)? else {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            };
            let rkind = http::body_kind(&rh, true, &req.method);
            let body = http::read_body(&mut ur, &rkind)?;
            let mut a = Answer {
                status: rh.status(),
                headers: rh.headers.clone(),
                body,
            };
            a.remove("transfer-encoding");
            a.remove("connection");
            x.after(&req, &mut a);
            a
        }
    };
    answer.remove("transfer-encoding");
    answer.remove("connection");
    let no_body = req.method == "HEAD" || answer.status == 204 || answer.status == 304;
    if !no_body {
        answer.set("Content-Length", &answer.body.len().to_string());
    }
    let h = Head {
        start: format!("HTTP/1.1 {} {}", answer.status, reason(answer.status)),
        headers: answer.headers,
    };
    h.write_to(w)?;
    if !no_body {
        w.write_all(&answer.body)?;
    }
    w.flush()?;
    Ok(true)
}
