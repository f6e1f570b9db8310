//! Harness for the end-to-end capture tests: the real proxy (`server::start`), the real Oz
//! simulator (`oz_sim::serve`) and a recording stand-in backend, all on `127.0.0.1:0`.
//!
//! [`Stack::start`] brings the three up and hands back their addresses once bound; a test talks
//! to the proxy with [`Stack::post`] (hyper's client) or [`raw_exchange`] (bytes on a
//! `TcpStream`, for odd paths, `Expect: 100-continue` and chunked bodies), reads what the
//! backend and Oz received, and ends with [`Stack::stop`], which stops all three and waits for
//! them. Every wait is under [`WAIT`], only there to turn a hang into a failure.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use oz_capture_proxy::capture::testdata::SampleCapture;
use oz_capture_proxy::config::Config;
use oz_capture_proxy::oz_sim::{self, CallRecord, OzSim, ReceivedUpload, SimConfig};
use oz_capture_proxy::server;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Upper bound of every wait; a correct run needs a fraction of it.
pub const WAIT: Duration = Duration::from_secs(15);

/// The static service token the default stack uses.
pub const TOKEN: &str = "capture-tests-service-token";

/// The default capture route.
pub const CAPTURE: &str = "/api/liveness/capture";

/// Awaits `f` under [`WAIT`], naming `what` if it hangs.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {WAIT:?}"))
}

// === Backend ===

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    /// The request target as it arrived (path and query, raw).
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// The single value of header `name`; panics if it appears more than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut all = self.headers.get_all(name).iter();
        let first = all.next()?;
        assert!(all.next().is_none(), "{name} appears more than once");
        Some(first.to_str().expect("ASCII header value"))
    }
}

/// A stand-in legacy backend: answers 200 with a fixed JSON and records every request.
pub struct Backend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: watch::Receiver<usize>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What the backend answers, so a test can tell its answer from the proxy's.
pub const BACKEND_ANSWER: &str = r#"{"backend":"legacy"}"#;

impl Backend {
    pub async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count_tx, count) = watch::channel(0usize);
        let count_tx = Arc::new(count_tx);
        let stop = CancellationToken::new();
        let task = tokio::spawn(backend_loop(listener, seen.clone(), count_tx, stop.clone()));
        Backend {
            addr,
            seen,
            count,
            stop,
            task,
        }
    }

    /// Every request received so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("backend lock").clone()
    }

    /// The only request received; panics unless exactly one arrived.
    pub fn only(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "backend requests: {:?}", targets(&seen));
        seen.into_iter().next().expect("one request")
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) {
        let mut rx = self.count.clone();
        within("backend requests", rx.wait_for(|c| *c >= n))
            .await
            .expect("backend alive");
    }

    pub async fn stop(self) {
        self.stop.cancel();
        within("backend stop", self.task)
            .await
            .expect("backend task did not panic");
    }
}

fn targets(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| format!("{} {}", s.method, s.target))
        .collect()
}

async fn backend_loop(
    listener: TcpListener,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<watch::Sender<usize>>,
    stop: CancellationToken,
) {
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let seen = seen.clone();
        let count = count.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                let count = count.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let target = parts
                        .uri
                        .path_and_query()
                        .map_or_else(|| parts.uri.to_string(), |p| p.to_string());
                    seen.lock().expect("backend lock").push(Seen {
                        method: parts.method,
                        target,
                        headers: parts.headers,
                        body,
                    });
                    count.send_modify(|c| *c += 1);
                    let mut rsp =
                        Response::new(Full::new(Bytes::from_static(BACKEND_ANSWER.as_bytes())));
                    rsp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    rsp.headers_mut()
                        .insert("x-backend", http::HeaderValue::from_static("yes"));
                    Ok::<_, Infallible>(rsp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    conns.shutdown().await;
}

// === Oz simulator ===

/// The simulator serving on an ephemeral port.
pub struct Sim {
    pub addr: SocketAddr,
    pub sim: OzSim,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Sim {
    pub async fn start(cfg: SimConfig) -> Sim {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sim");
        let addr = listener.local_addr().expect("sim addr");
        let sim = OzSim::new(cfg);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(oz_sim::serve(listener, sim.clone(), async move {
            stopped.cancelled().await
        }));
        Sim {
            addr,
            sim,
            stop,
            task,
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        within("simulator stop", self.task)
            .await
            .expect("simulator task did not panic")
            .expect("serve returns Ok");
    }
}

/// The default simulator for these tests: a static token, and analyses that are started,
/// then found final on the first poll.
pub fn sim_config() -> SimConfig {
    SimConfig {
        token: Some(TOKEN.to_owned()),
        polls_until_final: 0,
        ..SimConfig::default()
    }
}

// === The stack ===

/// A client of the proxy's traffic port; cheap to clone, so tests can send from many tasks.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Client {
    /// An HTTP/1.1 client, or with `h2c` an HTTP/2 client with prior knowledge.
    pub fn new(addr: SocketAddr, h2c: bool) -> Client {
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(h2c)
            .build_http::<Full<Bytes>>();
        Client { addr, http }
    }

    /// Sends `req` (a path-only URI is completed with the proxy's address) and reads the reply.
    pub async fn send(&self, mut req: Request<Full<Bytes>>) -> Reply {
        if req.uri().authority().is_none() {
            let uri = format!("http://{}{}", self.addr, req.uri());
            *req.uri_mut() = uri.parse().expect("valid URI");
        }
        let rsp = within("proxy answer", self.http.request(req))
            .await
            .expect("proxy answers");
        let (parts, body) = rsp.into_parts();
        let body = within("proxy answer body", body.collect())
            .await
            .expect("answer body")
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// POSTs `body` with `content_type` to `path`, with extra `headers`.
    pub async fn post_with(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = Request::post(path).header(http::header::CONTENT_TYPE, content_type);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Full::new(body.into())).expect("valid request"))
            .await
    }

    /// POSTs a JSON capture body to `path`.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.post_with(path, "application/json", &[], body).await
    }
}

/// Proxy, simulator and backend, started together.
pub struct Stack {
    pub proxy: server::Running,
    pub sim: Sim,
    pub backend: Backend,
    client: Client,
}

/// The `oz:` section for a static token, with `extra` lines (indented two spaces) appended.
pub fn oz_token(extra: &str) -> String {
    format!("oz:\n  url: \"http://{{oz}}\"\n  auth:\n    token: \"{TOKEN}\"\n{extra}")
}

/// One forward route on [`CAPTURE`] with `wait_for_result: 5s` and `unchecked_images: strip`,
/// plus `extra` capture lines. The sample captures carry both best frames, as the Web SDK's do,
/// and Oz gets at most one, so under the default (`refuse`) every one would be refused.
pub fn forward_route(extra: &str) -> String {
    format!(
        "capture:\n  wait_for_result: \"5s\"\n  unchecked_images: strip\n{extra}  routes:\n    - path: \"{CAPTURE}\"\n      on_result: forward\n"
    )
}

/// `capture` as the backend gets it from a route with `unchecked_images: strip` and
/// `best_frame: none`: both best frames `null`, every other byte as sent.
pub fn best_frames_nulled(capture: &SampleCapture) -> Vec<u8> {
    let mut c = capture.clone();
    c.best_frame = None;
    c.best_frame_png = None;
    c.to_json()
}

impl Stack {
    /// Starts the simulator, the backend and the proxy. `yaml` holds the proxy's `oz:` and
    /// `capture:` sections (and anything else); `{oz}` and `{backend}` are replaced by the
    /// addresses. Listeners, drain and reload settings are added here.
    pub async fn start(sim: SimConfig, yaml: &str) -> Stack {
        let sim = Sim::start(sim).await;
        let backend = Backend::start().await;
        let yaml = format!(
            concat!(
                "listen: \"127.0.0.1:0\"\n",
                "admin_listen: \"127.0.0.1:0\"\n",
                "backend:\n  url: \"http://{{backend}}\"\n",
                "shutdown:\n  drain_delay: \"0s\"\n  drain_deadline: \"5s\"\n",
                "reload:\n  interval: \"0s\"\n",
                "{}"
            ),
            yaml
        )
        .replace("{oz}", &sim.addr.to_string())
        .replace("{backend}", &backend.addr.to_string());
        let config = Config::from_yaml(&yaml, &Default::default())
            .unwrap_or_else(|e| panic!("test config is valid: {e}\n{yaml}"));
        let proxy = within("proxy start", server::start(config, None))
            .await
            .expect("proxy starts");
        let client = Client::new(proxy.traffic_addr, false);
        Stack {
            proxy,
            sim,
            backend,
            client,
        }
    }

    /// The default stack: static token, one forward route on [`CAPTURE`].
    pub async fn forward() -> Stack {
        Stack::start(
            sim_config(),
            &format!("{}{}", oz_token(""), forward_route("")),
        )
        .await
    }

    pub fn oz(&self) -> &OzSim {
        &self.sim.sim
    }

    /// Stops the proxy, then the simulator and the backend, waiting for each.
    pub async fn stop(self) {
        self.proxy.shutdown();
        within("proxy stop", self.proxy.wait())
            .await
            .expect("proxy stops cleanly");
        self.sim.stop().await;
        self.backend.stop().await;
    }

    /// An HTTP/1.1 client of the proxy, for sending from other tasks.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Sends `req` to the proxy (see [`Client::send`]).
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        self.client.send(req).await
    }

    /// POSTs `body` with `content_type` to `path`, with extra `headers`.
    pub async fn post_with(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.client
            .post_with(path, content_type, headers, body)
            .await
    }

    /// POSTs a JSON capture body to `path`.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.client.post(path, body).await
    }

    /// GETs `path` on the admin port.
    pub async fn admin_get(&self, path: &str) -> Reply {
        let uri = format!("http://{}{}", self.proxy.admin_addr, path);
        self.send(
            Request::get(uri)
                .body(Full::new(Bytes::new()))
                .expect("valid request"),
        )
        .await
    }

    /// The proxy's `/metrics` text from the admin port.
    pub async fn metrics(&self) -> MetricsText {
        let rsp = self.admin_get("/metrics").await;
        assert_eq!(rsp.status, StatusCode::OK);
        MetricsText(String::from_utf8(rsp.body.to_vec()).expect("UTF-8 metrics"))
    }

    /// Sends raw bytes to the proxy on a fresh connection (see [`raw_exchange`]).
    pub async fn raw(&self, request: &[u8]) -> RawReply {
        raw_exchange(self.proxy.traffic_addr, request).await
    }

    /// The only upload Oz accepted; panics unless exactly one arrived.
    pub fn only_upload(&self) -> ReceivedUpload {
        let uploads = self.oz().uploads();
        assert_eq!(uploads.len(), 1, "uploads: {uploads:?}");
        let u = uploads.into_iter().next().expect("one upload");
        assert!(u.accepted(), "upload refused: {u:?}");
        u
    }

    /// Oz calls on `endpoint` (the simulator's names: `auth`, `folders`, `start_analyses`…).
    pub fn calls_to(&self, endpoint: &str) -> Vec<CallRecord> {
        self.oz()
            .calls()
            .into_iter()
            .filter(|c| c.endpoint.as_deref() == Some(endpoint))
            .collect()
    }

    /// Asserts that neither Oz nor the backend saw anything.
    pub fn assert_nothing_sent(&self, case: &str) {
        assert!(
            self.oz().calls().is_empty(),
            "{case}: Oz was called: {:?}",
            self.oz().calls()
        );
        assert!(self.oz().uploads().is_empty(), "{case}: Oz got an upload");
        let seen = self.backend.seen();
        assert!(
            seen.is_empty(),
            "{case}: the backend got {:?}",
            targets(&seen)
        );
    }
}

// === Replies ===

/// The Prometheus text exposition of `/metrics`.
pub struct MetricsText(pub String);

impl MetricsText {
    /// The sample of the line that starts with `series` (name and labels, as written); panics
    /// if there is none.
    pub fn value(&self, series: &str) -> f64 {
        self.lines_of(series)
            .next()
            .unwrap_or_else(|| panic!("no sample {series} in\n{}", self.0))
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("numeric sample")
    }

    /// Every line that starts with `prefix`.
    pub fn lines_of<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.lines().filter(move |l| l.starts_with(prefix))
    }
}

/// An answer from the proxy.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII"))
    }

    /// Asserts a problem answer with `status` and `code`, and returns the problem document.
    pub fn problem(&self, status: u16, code: &str) -> Value {
        let doc = self.json();
        assert_eq!(self.status.as_u16(), status, "{doc}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{doc}"
        );
        assert_eq!(doc["code"], code, "{doc}");
        assert_eq!(doc["status"], status, "{doc}");
        doc
    }

    /// Asserts the backend's own answer came back.
    pub fn assert_from_backend(&self) {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("x-backend"), Some("yes"));
        assert_eq!(&self.body[..], BACKEND_ANSWER.as_bytes());
    }
}

/// An answer read off the wire: the status line, headers, and a body framed by
/// `Content-Length` (the proxy frames all of its own answers so).
#[derive(Debug)]
pub struct RawReply {
    /// Every status line in order, interim `1xx` ones included.
    pub status_lines: Vec<String>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `request` on a fresh connection to `addr`, then reads one final answer (after any
/// interim `1xx`).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut conn = RawConn::connect(addr).await;
    conn.send(request).await;
    conn.read_reply().await
}

/// One client connection driven byte by byte, for exchanges a client library would smooth
/// over: `Expect: 100-continue`, bodies sent in steps, answers before the body.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        within("write", self.stream.write_all(bytes))
            .await
            .expect("write request");
    }

    /// Reads one answer head: its status line and headers.
    pub async fn read_head(&mut self) -> (String, u16, Vec<(String, String)>) {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            self.fill("answer head").await;
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("ASCII head");
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
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

    /// Reads one final answer, recording and skipping interim `1xx` ones. The body must be
    /// framed by `Content-Length`, as every answer of the proxy and the test backend is.
    pub async fn read_reply(&mut self) -> RawReply {
        let mut status_lines = Vec::new();
        loop {
            let (line, status, headers) = self.read_head().await;
            status_lines.push(line);
            if (100..200).contains(&status) {
                continue;
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().expect("numeric Content-Length"))
                .expect("the answer is framed with Content-Length");
            while self.buf.len() < len {
                self.fill("answer body").await;
            }
            let body = self.buf.drain(..len).collect();
            return RawReply {
                status_lines,
                status,
                headers,
                body,
            };
        }
    }

    async fn fill(&mut self, what: &str) {
        let mut chunk = [0u8; 8192];
        let n = within(what, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
        assert!(
            n > 0,
            "{what}: connection closed; had {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }
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

/// A complete request with a `Content-Length` body.
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
