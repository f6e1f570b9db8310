//! A recording backend on hyper (HTTP/1.1 only, like the legacy backends the proxy fronts).
//!
//! Each request is recorded once its body has been read: method, raw target, version, headers in
//! arrival order, and the body (kept in memory only up to [`KEEP_BODY`]; beyond that only its
//! length and, if a [`Pattern`] was given, whether it matched). The answer comes from a closure
//! that sees the recorded request and returns a [`Reply`] (or a future of one, for a stand-in
//! that must wait on something). With [`BackendBuilder::tls`] the backend speaks TLS and offers
//! HTTP/2 as well, as a real HTTPS service such as Oz does. If that closure panics, the request
//! gets a 500 and the panic is raised again in the test when the [`Backend`] is dropped, so the
//! test fails at the real cause rather than at a puzzling status.
//!
//! Requests can be taken one at a time in arrival order ([`Backend::next`]) or looked at all
//! together without taking them ([`Backend::seen`], [`Backend::only`], [`Backend::wait_for`]).
//!
//! Why `demo` keeps its own stand-in (`src/demo.rs`, `StandIn`) instead of sharing this one:
//! what the two have in common is only the hyper accept loop (about 20 lines). Everything else
//! here is a test knob — reply closures that can panic and re-raise in the test, gates that hold
//! a reply, pattern bodies checked while they stream, channel-fed bodies, WebSocket echo after a
//! 101, a log of every request with its HTTP version — and would have to ship in the binary for
//! `demo` to use it. The demo's backend does one fixed thing the tests never want: it answers a
//! JSON document naming the `X-Oz-Resolution` it saw, and keeps only the last request for its
//! printout. The nearest test twin, the capture stack's backend ([`super::stack::legacy_backend`]),
//! answers a fixed body with `X-Backend: yes` that `Reply::assert_from_backend` checks byte for
//! byte: sharing the demo's would mean either changing those assertions or giving the shipped
//! stand-in a configurable answer, a test knob. Sharing the accept loop alone would move code
//! into the library for no behaviour gained.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::pattern::{Pattern, PatternCheck};
use super::{within, ws};

/// Bodies up to this size are kept whole in [`Recorded::body`].
pub const KEEP_BODY: u64 = 4 * 1024 * 1024;

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// Path and query exactly as received (or the whole target, if not origin-form).
    pub target: String,
    /// The path alone (also of an absolute-form target, as HTTP/2 requests carry).
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The body, if it was at most [`KEEP_BODY`] bytes.
    pub body: Bytes,
    pub body_len: u64,
    /// Whether the body equalled the configured pattern (`None` without one).
    pub body_matches: Option<Result<(), String>>,
}

impl Recorded {
    /// The single value of `name` as text; panics if it is absent or repeated.
    pub fn header(&self, name: &str) -> &str {
        let mut all = self.headers.get_all(name).iter();
        let v = all
            .next()
            .unwrap_or_else(|| panic!("backend saw no `{name}` header: {:?}", self.headers));
        assert!(all.next().is_none(), "backend saw `{name}` more than once");
        v.to_str().expect("header value is text")
    }

    /// The single value of `name` as text, `None` if absent; panics if it is repeated.
    pub fn get(&self, name: &str) -> Option<&str> {
        let mut all = self.headers.get_all(name).iter();
        let first = all.next()?;
        assert!(all.next().is_none(), "{name} appears more than once");
        Some(first.to_str().expect("ASCII header value"))
    }

    /// Header names in the order they arrived (each name once).
    pub fn header_names(&self) -> Vec<&str> {
        self.headers.keys().map(|k| k.as_str()).collect()
    }
}

/// What the response body is made of.
pub enum ReplyBody {
    Empty,
    Bytes(Bytes),
    /// A deterministic body of the pattern's length, produced chunk by chunk.
    Pattern(Pattern),
    /// Chunks from a channel; the body ends when the sender is dropped.
    Channel(mpsc::Receiver<Bytes>),
}

/// What happens after a 101.
pub enum AfterUpgrade {
    /// Echo every WebSocket frame back (unmasked, as a server sends), until a close frame.
    WebSocketEcho,
}

/// The backend's answer to one request.
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: ReplyBody,
    /// Hold the response until this turns `true` (a gate the test opens).
    pub hold: Option<watch::Receiver<bool>>,
    pub upgrade: Option<AfterUpgrade>,
}

impl Reply {
    /// `200` with `text` as body.
    pub fn text(text: &str) -> Self {
        Reply::status(StatusCode::OK)
            .header("content-type", "text/plain")
            .body(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// `status` with no body.
    pub fn status(status: StatusCode) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Empty,
            hold: None,
            upgrade: None,
        }
    }

    /// Adds a header (repeat the call for repeated fields such as `Set-Cookie`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
            HeaderValue::from_str(value).expect("valid header value"),
        ));
        self
    }

    pub fn body(mut self, bytes: Bytes) -> Self {
        self.body = ReplyBody::Bytes(bytes);
        self
    }

    pub fn pattern(mut self, p: Pattern) -> Self {
        self.body = ReplyBody::Pattern(p);
        self
    }

    pub fn channel(mut self, rx: mpsc::Receiver<Bytes>) -> Self {
        self.body = ReplyBody::Channel(rx);
        self
    }

    /// Holds the response until `gate` opens.
    pub fn hold(mut self, gate: &Gate) -> Self {
        self.hold = Some(gate.0.subscribe());
        self
    }

    /// `101 Switching Protocols` to WebSocket, then echo frames.
    pub fn websocket(key: &str) -> Self {
        let mut r = Reply::status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", &ws::accept_key(key));
        r.upgrade = Some(AfterUpgrade::WebSocketEcho);
        r
    }
}

/// A gate a held reply waits on; the test opens it.
pub struct Gate(watch::Sender<bool>);

impl Gate {
    pub fn new() -> Self {
        Gate(watch::channel(false).0)
    }

    pub fn open(&self) {
        self.0.send_replace(true);
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

/// The answer to one request, once it is ready.
type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

type Handler = dyn Fn(&Recorded) -> ReplyFuture + Send + Sync;

/// Builds a [`Backend`].
pub struct BackendBuilder {
    handler: Arc<Handler>,
    pattern: Option<Pattern>,
    tls: Option<TlsAcceptor>,
}

/// A backend that answers `200 ok` to everything.
pub fn backend() -> BackendBuilder {
    BackendBuilder {
        handler: Arc::new(|_| Box::pin(std::future::ready(Reply::text("ok")))),
        pattern: None,
        tls: None,
    }
}

impl BackendBuilder {
    /// Answers with `f(request)`.
    pub fn reply(mut self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        self.handler = Arc::new(move |r| Box::pin(std::future::ready(f(r))));
        self
    }

    /// Answers with what `f(request)` resolves to, for a stand-in that waits before answering
    /// (on a barrier, say, or forever).
    pub fn reply_async<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Recorded) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        self.handler = Arc::new(move |r| Box::pin(f(r.clone())));
        self
    }

    /// Serves over TLS with `acceptor`, HTTP/1.1 or HTTP/2 as ALPN settles.
    pub fn tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Checks request bodies against `p` while they stream in.
    pub fn expect_body(mut self, p: Pattern) -> Self {
        self.pattern = Some(p);
        self
    }

    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(self) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(0u64);
        let (count_tx, count) = watch::channel(0usize);
        let panicked = Arc::new(Mutex::new(None));
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            handler: self.handler,
            pattern: self.pattern,
            recorded: tx,
            log: log.clone(),
            count: count_tx,
            progress: progress_tx,
            panicked: panicked.clone(),
        });
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(accept_loop(listener, shared, self.tls));
        Backend {
            addr,
            scheme,
            requests: rx,
            log,
            count,
            progress,
            panicked,
            task,
        }
    }
}

struct Shared {
    handler: Arc<Handler>,
    pattern: Option<Pattern>,
    recorded: mpsc::UnboundedSender<Recorded>,
    /// Every request recorded so far, oldest first.
    log: Arc<Mutex<Vec<Recorded>>>,
    /// How many requests have been recorded.
    count: watch::Sender<usize>,
    /// Request body bytes received so far, over all requests.
    progress: watch::Sender<u64>,
    /// The message of the first panic in `handler`.
    panicked: Arc<Mutex<Option<String>>>,
}

/// A running recording backend. Stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    scheme: &'static str,
    requests: mpsc::UnboundedReceiver<Recorded>,
    log: Arc<Mutex<Vec<Recorded>>>,
    count: watch::Receiver<usize>,
    progress: watch::Receiver<u64>,
    panicked: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// `http://{addr}`, or `https://` with TLS.
    pub fn uri(&self) -> http::Uri {
        format!("{}://{}", self.scheme, self.addr)
            .parse()
            .expect("a valid URI")
    }

    /// The next request the backend finished reading.
    pub async fn next(&mut self) -> Recorded {
        within("the backend to receive a request", self.requests.recv())
            .await
            .expect("the backend is running")
    }

    /// A request already received and not yet taken, if any.
    pub fn try_next(&mut self) -> Option<Recorded> {
        self.requests.try_recv().ok()
    }

    /// Waits until the backend has received at least `n` request body bytes in total.
    pub async fn wait_body_bytes(&mut self, n: u64) -> u64 {
        let got = within(
            "the backend to receive request body bytes",
            self.progress.wait_for(|&b| b >= n),
        )
        .await
        .expect("the backend is running");
        *got
    }

    /// Every request received so far, oldest first (whether or not taken by [`Backend::next`]).
    pub fn seen(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// The only request received; panics unless exactly one arrived.
    pub fn only(&self) -> Recorded {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "backend requests: {:?}", targets(&seen));
        seen.into_iter().next().expect("one request")
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) {
        let mut rx = self.count.clone();
        within("backend requests", rx.wait_for(|c| *c >= n))
            .await
            .expect("the backend is running");
    }

    /// Stops the backend (as dropping it does).
    pub async fn stop(self) {
        drop(self);
    }
}

/// `METHOD target` of each request, for failure messages.
pub fn targets(seen: &[Recorded]) -> Vec<String> {
    seen.iter()
        .map(|s| format!("{} {}", s.method, s.target))
        .collect()
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(msg) = self.panicked.lock().unwrap().take() {
            if !std::thread::panicking() {
                panic!("the backend's reply closure panicked: {msg}");
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    // Connection tasks live in the set, so aborting this task stops them too.
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(_) => continue,
        };
        let shared = shared.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, shared).await) }
            });
            match tls {
                None => {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
}

async fn handle(mut req: Request<Incoming>, shared: Arc<Shared>) -> Response<ReplyStream> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, mut body) = req.into_parts();
    let mut kept = Vec::new();
    let mut len = 0u64;
    let mut check = shared.pattern.clone().map(PatternCheck::new);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            len += data.len() as u64;
            if len <= KEEP_BODY {
                kept.extend_from_slice(&data);
            }
            if let Some(c) = &mut check {
                c.feed(&data);
            }
            shared.progress.send_modify(|b| *b += data.len() as u64);
        }
    }
    let recorded = Recorded {
        method: parts.method,
        target: parts.uri.to_string(),
        path: parts.uri.path().to_owned(),
        version: parts.version,
        headers: parts.headers,
        body: if len <= KEEP_BODY {
            kept.into()
        } else {
            Bytes::new()
        },
        body_len: len,
        body_matches: check.map(|c| c.complete_and_equal()),
    };
    let reply =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (shared.handler)(&recorded)));
    shared.log.lock().unwrap().push(recorded.clone());
    shared.count.send_modify(|c| *c += 1);
    let _ = shared.recorded.send(recorded);
    let reply = match reply {
        Ok(reply) => CatchUnwind(reply).await,
        Err(panic) => Err(panic),
    };
    let reply = match reply {
        Ok(reply) => reply,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            shared.panicked.lock().unwrap().get_or_insert(msg.clone());
            Reply::status(StatusCode::INTERNAL_SERVER_ERROR).body(Bytes::from(format!(
                "backend reply closure panicked: {msg}"
            )))
        }
    };

    if let Some(mut hold) = reply.hold {
        let _ = hold.wait_for(|open| *open).await;
    }
    if let Some(AfterUpgrade::WebSocketEcho) = reply.upgrade {
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                ws::echo(TokioIo::new(upgraded)).await;
            }
        });
    }
    let body = match reply.body {
        ReplyBody::Empty => ReplyStream::Empty,
        ReplyBody::Bytes(b) => ReplyStream::Bytes(Some(b)),
        ReplyBody::Pattern(p) => ReplyStream::Pattern { p, next: 0 },
        ReplyBody::Channel(rx) => ReplyStream::Channel(rx),
    };
    let mut rsp = Response::new(body);
    *rsp.status_mut() = reply.status;
    for (k, v) in reply.headers {
        rsp.headers_mut().append(k, v);
    }
    rsp
}

/// Resolves to the inner future's output, or to the panic payload if polling it panicked.
struct CatchUnwind(ReplyFuture);

impl Future for CatchUnwind {
    type Output = std::thread::Result<Reply>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(reply)) => Poll::Ready(Ok(reply)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The response body the backend streams.
pub enum ReplyStream {
    Empty,
    Bytes(Option<Bytes>),
    Pattern { p: Pattern, next: u64 },
    Channel(mpsc::Receiver<Bytes>),
}

impl Body for ReplyStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.get_mut() {
            ReplyStream::Empty => None,
            ReplyStream::Bytes(b) => b.take(),
            ReplyStream::Pattern { p, next } => {
                if *next < p.chunk_count() {
                    *next += 1;
                    Some(p.chunk(*next - 1))
                } else {
                    None
                }
            }
            ReplyStream::Channel(rx) => match rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(c) => c,
            },
        };
        Poll::Ready(frame.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplyStream::Empty => true,
            ReplyStream::Bytes(b) => b.is_none(),
            ReplyStream::Pattern { p, next } => *next >= p.chunk_count(),
            ReplyStream::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyStream::Empty => SizeHint::with_exact(0),
            ReplyStream::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            // A known length: the proxy must stream it, not learn it by buffering.
            ReplyStream::Pattern { p, next } => {
                let sent = (*next * super::pattern::BLOCK as u64).min(p.len());
                SizeHint::with_exact(p.len() - sent)
            }
            ReplyStream::Channel(_) => SizeHint::default(),
        }
    }
}

/// A value a reply closure hands out once (a channel receiver, say).
pub type Slot<T> = Arc<Mutex<Option<T>>>;

/// A slot holding `v`, to be taken once by a reply closure.
pub fn slot<T>(v: T) -> Slot<T> {
    Arc::new(Mutex::new(Some(v)))
}

/// A reply closure that holds its first request until `gate` opens (then answers `finished`),
/// and answers `ok` at once to every later one.
pub fn hold_first(gate: &Gate) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    let first = slot(Reply::text("finished").hold(gate));
    move |_| {
        first
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| Reply::text("ok"))
    }
}
