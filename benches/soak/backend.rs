//! The soak's backend: a hyper HTTP/1.1 server in the driver's process that records every request
//! by its `x-soak-id`, and can be killed and started again on the same port.
//!
//! | request | answer |
//! |---|---|
//! | `GET /pt/get?len=N&at=K[&chunked=1]` | `N` bytes (1 KiB or 1 MiB) of the shared random block from offset `K × 4099`, with `x-soak-hash` and `x-soak-len`; `Content-Length` framing, or chunked |
//! | `POST /pt/echo` | `ok`, with the hash and length of the body it read in `x-soak-hash`, `x-soak-len` |
//! | `GET /ws` with `Upgrade: websocket` | `101`, then every frame echoed until a close frame |
//! | `POST` on a forward capture route | `{"backend":"soak"}`, with the `X-Oz-Resolution` it got echoed in `x-soak-verdict` |
//!
//! What must never happen is written down as a violation, with the request id: a request without
//! an id, a capture on a forward route without `X-Oz-Resolution` and `X-Oz-Folder-Id`, anything on
//! the respond route (the proxy answers those itself), an `x-oz-*` header on any other request (the
//! client forges some; the proxy must strip them), and a request body whose hash is not the one the
//! client computed.
//!
//! A kill cancels the instance: the accept loop stops and drops the listener, and every
//! connection task and WebSocket echo drops its socket at once, mid-request or mid-body, as a
//! crashed process would. The records survive, so requests seen before the kill still count.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::hash::{hash, Hasher};
use crate::ws;

/// Capture routes in forward mode (the second one is added by the valid reload).
pub const FORWARD_PATHS: [&str; 2] = ["/api/liveness/capture", "/api/liveness/extra"];
/// The capture route in respond mode: the proxy answers, the backend never sees one.
pub const RESPOND_PATH: &str = "/api/liveness/check";

/// Response body sizes `/pt/get` serves.
pub const SMALL: usize = 1024;
pub const LARGE: usize = 1024 * 1024;
/// Offsets into the random block are `at × STRIDE`, `at < OFFSETS`: unaligned, and few enough
/// that every body's hash is computed once, at start.
pub const STRIDE: usize = 4099;
pub const OFFSETS: usize = 64;

/// How much a slow backend delays each answer, and the gap between 64 KiB chunks of a body.
pub const SLOW_HEAD: Duration = Duration::from_millis(300);
pub const SLOW_GAP: Duration = Duration::from_millis(20);
const CHUNK: usize = 64 * 1024;

/// What the backend saw of one request id.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Request heads with this id (more than one: a duplicate).
    pub count: u32,
    /// Whether a body was read to its end at least once.
    pub body_complete: bool,
}

pub struct Shared {
    seen: Mutex<HashMap<String, Seen>>,
    violations: Mutex<Vec<String>>,
    /// Answer slowly (the slow-backend phase).
    pub slow: AtomicBool,
    /// Answers delayed so far.
    pub slowed: AtomicU64,
    /// Ids of the 1 MiB answers being sent right now (the kill waits for its probes to be here).
    pub streaming: Arc<Mutex<HashSet<String>>>,
    /// The random block bodies are cut from, and the hashes of the bodies `/pt/get` serves.
    data: Bytes,
    hashes: HashMap<(usize, usize), String>,
}

impl Shared {
    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

/// The backend, started or killed.
pub struct Backend {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    instance: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Backend {
    /// Binds `127.0.0.1:0` and serves `data` (at least `OFFSETS × STRIDE + LARGE` bytes).
    pub async fn start(data: Bytes) -> std::io::Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut hashes = HashMap::new();
        for at in 0..OFFSETS {
            for len in [SMALL, LARGE] {
                hashes.insert((at, len), hash(&data[at * STRIDE..at * STRIDE + len]));
            }
        }
        let shared = Arc::new(Shared {
            seen: Mutex::new(HashMap::new()),
            violations: Mutex::new(Vec::new()),
            slow: AtomicBool::new(false),
            slowed: AtomicU64::new(0),
            streaming: Arc::new(Mutex::new(HashSet::new())),
            data,
            hashes,
        });
        let mut backend = Backend {
            addr,
            shared,
            instance: None,
        };
        backend.serve(listener);
        Ok(backend)
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, self.shared.clone(), stop.clone()));
        self.instance = Some((stop, task));
    }

    /// Kills the backend: the listener closes and every open connection is dropped mid-flight.
    pub async fn kill(&mut self) {
        if let Some((stop, task)) = self.instance.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        let mut last = None;
        // The port was released a moment ago; a bind can fail briefly, so it is retried (bounded).
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    self.serve(listener);
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(last.expect("at least one bind attempt"))
    }

    /// Every request id seen so far.
    pub fn seen(&self) -> HashMap<String, Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Everything the backend saw that must never reach it.
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    // Connection tasks live in the set: when this task returns, dropping it aborts them all.
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let conn_stop = stop.clone();
            let service = service_fn(move |req| {
                let shared = shared.clone();
                let stop = stop.clone();
                async move { Ok::<_, Infallible>(handle(req, shared, stop).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = conn_stop.cancelled() => {}
            }
        });
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

fn text(status: StatusCode, body: &'static str) -> Response<RspBody> {
    let mut rsp = Response::new(RspBody::whole(Bytes::from_static(body.as_bytes())));
    *rsp.status_mut() = status;
    rsp
}

fn set(rsp: &mut Response<RspBody>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        rsp.headers_mut().insert(name, v);
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The value of `key` in a query string.
fn query<'a>(q: &'a str, key: &str) -> Option<&'a str> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn handle(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Response<RspBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let Some(id) = req
        .headers()
        .get("x-soak-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        shared.violation(format!(
            "{method} {path} reached the backend without x-soak-id"
        ));
        return text(StatusCode::BAD_REQUEST, "no x-soak-id\n");
    };
    shared
        .seen
        .lock()
        .unwrap()
        .entry(id.clone())
        .or_default()
        .count += 1;

    let is_capture = method == Method::POST && FORWARD_PATHS.contains(&path.as_str());
    let header = |name: &str| header_text(req.headers(), name);
    let verdict = header("x-oz-resolution");
    let folder = header("x-oz-folder-id");
    let key = header("sec-websocket-key").unwrap_or_default();
    let expected = header("x-soak-hash");
    if path == RESPOND_PATH {
        shared.violation(format!(
            "{id}: a capture on the respond route reached the backend"
        ));
    } else if is_capture {
        if verdict.is_none() || folder.is_none() {
            shared.violation(format!(
                "{id}: a capture reached the backend without a verdict (X-Oz-Resolution {verdict:?}, X-Oz-Folder-Id {folder:?})"
            ));
        }
    } else if let Some(name) = req.headers().keys().find(|k| {
        let k = k.as_str();
        k.starts_with("x-oz-") || k.starts_with("x_oz")
    }) {
        shared.violation(format!(
            "{id}: {method} {path} reached the backend with `{name}` (forged, must be stripped)"
        ));
    }

    if path == "/ws" {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            tokio::select! {
                upgraded = on_upgrade => {
                    if let Ok(upgraded) = upgraded {
                        tokio::select! {
                            _ = ws::echo(TokioIo::new(upgraded)) => {}
                            _ = stop.cancelled() => {}
                        }
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
        let mut rsp = Response::new(RspBody::whole(Bytes::new()));
        *rsp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        set(&mut rsp, "upgrade", "websocket");
        set(&mut rsp, "connection", "Upgrade");
        set(&mut rsp, "sec-websocket-accept", &ws::accept_key(&key));
        return rsp;
    }

    let query_str = req.uri().query().unwrap_or("").to_owned();
    let mut body = req.into_body();
    let mut h = Hasher::new();
    let mut complete = true;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    h.update(&data);
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    if !complete {
        // The proxy cut the upload; what the answer says no longer matters to anyone.
        return text(StatusCode::BAD_REQUEST, "request body cut\n");
    }
    shared
        .seen
        .lock()
        .unwrap()
        .entry(id.clone())
        .or_default()
        .body_complete = true;
    let got = h.finish();
    if let Some(expected) = &expected {
        if *expected != got {
            shared.violation(format!(
                "{id}: request body corrupted: {} bytes, hash {got}, the client sent {expected}",
                h.bytes()
            ));
        }
    }

    let slow = shared.slow.load(Ordering::Relaxed);
    if slow {
        shared.slowed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(SLOW_HEAD).await;
    }

    match (&method, path.as_str()) {
        (&Method::GET, "/pt/get") => {
            let len: usize = query(&query_str, "len")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let at: usize = query(&query_str, "at")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let Some(sum) = shared.hashes.get(&(at, len)) else {
                return text(StatusCode::NOT_FOUND, "no such body\n");
            };
            let chunked = query(&query_str, "chunked") == Some("1");
            let data = shared.data.slice(at * STRIDE..at * STRIDE + len);
            let mut rsp = Response::new(RspBody {
                data,
                exact: !chunked,
                gap: slow.then_some(SLOW_GAP),
                sleep: None,
                _streaming: (len == LARGE).then(|| Streaming::new(&shared.streaming, &id)),
            });
            set(&mut rsp, "x-soak-hash", sum);
            set(&mut rsp, "x-soak-len", &len.to_string());
            set(&mut rsp, "content-type", "application/octet-stream");
            rsp
        }
        (&Method::POST, "/pt/echo") => {
            let mut rsp = text(StatusCode::OK, "ok\n");
            set(&mut rsp, "x-soak-hash", &got);
            set(&mut rsp, "x-soak-len", &h.bytes().to_string());
            rsp
        }
        _ if is_capture => {
            let mut rsp = text(StatusCode::OK, "{\"backend\":\"soak\"}");
            set(&mut rsp, "content-type", "application/json");
            set(&mut rsp, "x-soak-verdict", verdict.as_deref().unwrap_or(""));
            rsp
        }
        _ => text(StatusCode::NOT_FOUND, "not a soak path\n"),
    }
}

/// A response body sent in 64 KiB chunks, with a gap between chunks when the backend is slow;
/// framed by `Content-Length` when `exact`, chunked otherwise.
pub struct RspBody {
    data: Bytes,
    exact: bool,
    gap: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    _streaming: Option<Streaming>,
}

impl RspBody {
    fn whole(data: Bytes) -> Self {
        RspBody {
            data,
            exact: true,
            gap: None,
            sleep: None,
            _streaming: None,
        }
    }
}

/// Lists a 1 MiB body's id from the moment its answer is handed to hyper until hyper drops it
/// (sent, or its connection gone).
struct Streaming(Arc<Mutex<HashSet<String>>>, String);

impl Streaming {
    fn new(set: &Arc<Mutex<HashSet<String>>>, id: &str) -> Self {
        set.lock().unwrap().insert(id.to_owned());
        Streaming(set.clone(), id.to_owned())
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.lock().unwrap().remove(&self.1);
    }
}

impl Body for RspBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.data.is_empty() {
            return Poll::Ready(None);
        }
        if let Some(sleep) = &mut this.sleep {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        let n = CHUNK.min(this.data.len());
        let out = this.data.split_to(n);
        if let Some(gap) = this.gap {
            if !this.data.is_empty() {
                this.sleep = Some(Box::pin(tokio::time::sleep(gap)));
            }
        }
        Poll::Ready(Some(Ok(Frame::data(out))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.data.len() as u64)
        } else {
            SizeHint::default()
        }
    }
}
