//! Byte-level fixtures: a raw TCP backend that records the exact request head bytes and answers
//! with scripted bytes, and a raw client that sends exact bytes and reads exact responses.
//!
//! Used wherever hyper on the test side would hide what is on the wire: header case, the exact
//! request target, framing (`Content-Length` vs chunked vs close-delimited), bodies that must not
//! be there, and connections that must close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::within;

/// One request as it arrived on the wire.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Which accepted connection it came on (0 = first).
    pub conn: usize,
    /// The head bytes, request line to the empty line inclusive.
    pub head: Vec<u8>,
    /// The body bytes as framed on the wire (chunk sizes included when chunked).
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn head_str(&self) -> &str {
        std::str::from_utf8(&self.head).expect("request head is text")
    }

    /// `GET /x HTTP/1.1`.
    pub fn request_line(&self) -> &str {
        self.head_str().split("\r\n").next().unwrap()
    }

    /// Header lines in order, as sent (`Name: value`).
    pub fn header_lines(&self) -> Vec<&str> {
        self.head_str()
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect()
    }

    /// Values of `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        header_values(self.header_lines(), name)
    }
}

/// What the raw backend does with one request.
pub enum RawAction {
    /// Write these bytes and keep the connection for the next request.
    Reply(Vec<u8>),
    /// Write these bytes, then close.
    ReplyAndClose(Vec<u8>),
    /// Close without answering (the request has been read).
    Close,
}

type Script = dyn Fn(usize, &RawRequest) -> RawAction + Send + Sync;

/// A running raw backend. Stops when dropped.
pub struct RawBackend {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<RawRequest>,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    /// Starts a backend that answers request number `n` (counted over all connections, from 0)
    /// with `script(n, request)`.
    pub async fn start(
        script: impl Fn(usize, &RawRequest) -> RawAction + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw backend");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let script: Arc<Script> = Arc::new(script);
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            let counter = Arc::new(AtomicUsize::new(0));
            for conn in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(serve(
                    stream,
                    conn,
                    script.clone(),
                    counter.clone(),
                    tx.clone(),
                ));
                while conns.try_join_next().is_some() {}
            }
        });
        RawBackend {
            addr,
            requests: rx,
            task,
        }
    }

    /// A backend that answers every request with the same bytes, keeping connections open.
    pub async fn always(response: &'static [u8]) -> Self {
        Self::start(move |_, _| RawAction::Reply(response.to_vec())).await
    }

    /// The next request it received.
    pub async fn next(&mut self) -> RawRequest {
        within("the raw backend to receive a request", self.requests.recv())
            .await
            .expect("the raw backend is running")
    }

    /// A request already received and not yet taken, if any.
    pub fn try_next(&mut self) -> Option<RawRequest> {
        self.requests.try_recv().ok()
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    conn: usize,
    script: Arc<Script>,
    counter: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<RawRequest>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let lines: Vec<&str> = std::str::from_utf8(&head)
            .unwrap_or("")
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        let framing = request_framing(&lines);
        let Some(body) = read_body(&mut stream, &mut buf, framing).await else {
            return;
        };
        let req = RawRequest { conn, head, body };
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let action = script(n, &req);
        let _ = tx.send(req);
        match action {
            RawAction::Reply(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            RawAction::ReplyAndClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                return;
            }
            RawAction::Close => return,
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

fn request_framing(lines: &[&str]) -> Framing {
    if header_values(lines.to_vec(), "transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked
    } else if let Some(cl) = header_values(lines.to_vec(), "content-length").first() {
        Framing::Length(cl.trim().parse().expect("numeric Content-Length"))
    } else {
        Framing::None
    }
}

fn header_values<'a>(lines: Vec<&'a str>, name: &str) -> Vec<&'a str> {
    lines
        .into_iter()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// Reads one head (through `\r\n\r\n`) from `r`, keeping surplus bytes in `buf`. `None` at EOF.
async fn read_head<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Some(std::mem::replace(buf, rest));
        }
        let mut chunk = [0u8; 8192];
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads a body framed as `framing`, returning its wire bytes. `None` if the peer went away
/// first (except for `UntilClose`, which ends there).
async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    framing: Framing,
) -> Option<Vec<u8>> {
    match framing {
        Framing::None => Some(Vec::new()),
        Framing::Length(n) => {
            fill(r, buf, n).await?;
            let rest = buf.split_off(n);
            Some(std::mem::replace(buf, rest))
        }
        Framing::Chunked => {
            // Wire bytes through the last chunk and the (empty) trailer section.
            let mut at = 0;
            loop {
                let line_end = loop {
                    if let Some(i) = find(&buf[at..], b"\r\n") {
                        break at + i;
                    }
                    more(r, buf).await?;
                };
                let size_text = std::str::from_utf8(&buf[at..line_end]).ok()?;
                let size_text = size_text.split(';').next().unwrap().trim();
                let size = usize::from_str_radix(size_text, 16).ok()?;
                at = line_end + 2;
                if size == 0 {
                    // Trailer fields, then the empty line.
                    loop {
                        let end = loop {
                            if let Some(i) = find(&buf[at..], b"\r\n") {
                                break at + i;
                            }
                            more(r, buf).await?;
                        };
                        let empty = end == at;
                        at = end + 2;
                        if empty {
                            let rest = buf.split_off(at);
                            return Some(std::mem::replace(buf, rest));
                        }
                    }
                }
                fill(r, buf, at + size + 2).await?;
                at += size + 2;
            }
        }
        Framing::UntilClose => {
            loop {
                let mut chunk = [0u8; 8192];
                match r.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            Some(std::mem::take(buf))
        }
    }
}

async fn more<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match r.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, n: usize) -> Option<()> {
    while buf.len() < n {
        more(r, buf).await?;
    }
    Some(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body's wire bytes.
pub fn dechunk(wire: &[u8]) -> Vec<u8> {
    dechunk_with_trailers(wire).0
}

/// Decodes a chunked body's wire bytes into the body and its trailer field lines.
pub fn dechunk_with_trailers(wire: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let end = at + find(&wire[at..], b"\r\n").expect("chunk size line");
        let size_text = std::str::from_utf8(&wire[at..end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("hex chunk size");
        at = end + 2;
        if size == 0 {
            let trailers = std::str::from_utf8(&wire[at..])
                .expect("trailers are text")
                .split("\r\n")
                .take_while(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            return (out, trailers);
        }
        out.extend_from_slice(&wire[at..at + size]);
        at += size + 2;
    }
}

// === raw client ===

/// A response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    /// The head bytes, status line to the empty line inclusive.
    pub head: String,
    /// Every status line in order: interim `1xx` ones (only from [`RawConn::read_reply`]) and
    /// then this response's own.
    pub status_lines: Vec<String>,
    pub status: u16,
    /// How the body was delimited.
    pub framing: Framing,
    /// The decoded body.
    pub body: Vec<u8>,
    /// Trailer field lines of a chunked body, as sent.
    pub trailers: Vec<String>,
}

impl RawResponse {
    /// Header lines in order, as sent.
    pub fn header_lines(&self) -> Vec<&str> {
        self.head
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect()
    }

    /// Values of `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        header_values(self.header_lines(), name)
    }

    pub fn has_header(&self, name: &str) -> bool {
        !self.header_values(name).is_empty()
    }

    /// The first value of `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Splits a response head into its status line, status code and `(name, value)` header pairs.
pub fn parse_head(head: &str) -> (String, u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n").take_while(|l| !l.is_empty());
    let status_line = lines.next().expect("status line").to_owned();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (status_line, status, headers)
}

/// A request head for `method target` with `Host` and the given header lines.
pub fn raw_head(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: proxy.test\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// A complete request with a `Content-Length` body, closing the connection after it.
pub fn raw_request(method: &str, target: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let len = body.len().to_string();
    let mut req = raw_head(
        method,
        target,
        &[
            ("Content-Type", content_type),
            ("Content-Length", &len),
            ("Connection", "close"),
        ],
    );
    req.extend_from_slice(body);
    req
}

/// Sends `request` on a fresh connection to `addr`, then reads one final answer (after any
/// interim `1xx`; see [`RawConn::read_reply`]).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut conn = RawConn::connect(addr).await;
    conn.send(request).await;
    conn.read_reply().await
}

/// A client connection that speaks bytes.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = within("connecting", TcpStream::connect(addr))
            .await
            .expect("connect");
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        within("writing the request", self.stream.write_all(bytes))
            .await
            .expect("write");
    }

    /// Reads one response head only.
    pub async fn read_head(&mut self) -> String {
        let head = within(
            "a response head",
            read_head(&mut self.stream, &mut self.buf),
        )
        .await
        .expect("the connection closed before a response head arrived");
        String::from_utf8(head).expect("response head is text")
    }

    /// Reads one response. `to_head` says the request was `HEAD` (no body whatever the headers).
    pub async fn read_response(&mut self, to_head: bool) -> RawResponse {
        let head = self.read_head().await;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        let lines: Vec<&str> = head
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        let framing = if to_head || status / 100 == 1 || status == 204 || status == 304 {
            Framing::None
        } else if header_values(lines.clone(), "transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            Framing::Chunked
        } else if let Some(cl) = header_values(lines.clone(), "content-length").first() {
            Framing::Length(cl.parse().expect("numeric Content-Length"))
        } else {
            Framing::UntilClose
        };
        let wire = within(
            "a response body",
            read_body(&mut self.stream, &mut self.buf, framing),
        )
        .await
        .expect("the connection closed inside a response body");
        let (body, trailers) = if framing == Framing::Chunked {
            dechunk_with_trailers(&wire)
        } else {
            (wire, Vec::new())
        };
        RawResponse {
            status_lines: vec![head.split("\r\n").next().unwrap_or_default().to_owned()],
            head,
            status,
            framing,
            body,
            trailers,
        }
    }

    /// Reads one final response, recording and skipping interim `1xx` ones (`Expect:
    /// 100-continue`). The body must be framed by `Content-Length`, as every answer of the proxy
    /// itself and of the recording backend is.
    pub async fn read_reply(&mut self) -> RawResponse {
        let mut status_lines = Vec::new();
        loop {
            let mut rsp = self.read_response(false).await;
            status_lines.append(&mut rsp.status_lines);
            if (100..200).contains(&rsp.status) {
                continue;
            }
            assert!(
                matches!(rsp.framing, Framing::Length(_)),
                "the answer is framed with Content-Length: {}",
                rsp.head
            );
            rsp.status_lines = status_lines;
            return rsp;
        }
    }

    /// Reads until the peer closes; returns what came (bytes already buffered included).
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        within("the connection to close", async {
            let mut chunk = [0u8; 8192];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        out
    }

    /// Bytes read past the last response and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The stream, for protocols spoken after an upgrade; buffered bytes must be empty.
    pub fn into_stream(self) -> TcpStream {
        assert!(
            self.buf.is_empty(),
            "bytes arrived after the head before the tunnel was used: {:?}",
            self.buf
        );
        self.stream
    }
}
