//! Listeners, connection serving and graceful shutdown.
//!
//! The traffic listener serves HTTP/1.1 and HTTP/2 on one port (h2c prior knowledge, or h2 by
//! ALPN when TLS is on) with hyper-util's auto builder; the admin listener serves `crate::admin`,
//! and the verdict listener (`verdict_listen`, only when set) `crate::lookup`.
//! Shutdown follows what a Kubernetes sidecar needs (docs/proxy-rules.md,
//! "Graceful shutdown"): on the signal `/ready` turns 503 at once, traffic keeps flowing for
//! `shutdown.drain_delay` while endpoints update, then the listener closes, HTTP/1 connections
//! close after their current response and HTTP/2 ones get GOAWAY, in-flight requests and tunnels
//! get up to `shutdown.drain_deadline`, and `run` returns as soon as nothing is left. Whatever is
//! still open at the deadline is cut (its socket dropped) before `run` returns. Late verdict
//! follow-ups (`proxy::late`) are not waited for: their folder ids are logged on one line when
//! the listener closes, and they are cancelled when the drain ends.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::{ArcSwap, ArcSwapOption};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{Admin, Readiness};
use crate::body::Body;
use crate::config::{Config, ServerConfig, TlsConfig};
use crate::lookup::Lookup;
use crate::metrics::Metrics;
use crate::oz::OzClient;
use crate::proxy::dispatch::RequestRules;
use crate::proxy::headers::{Forwarding, Peer};
use crate::proxy::passthrough::Passthrough;
use crate::proxy::upgrade::Tunnels;
use crate::proxy::Proxy;
use crate::reload::{self, ConfigSource, Watched};
use crate::telemetry::AccessLog;
use crate::trace::{self, Tracing};

/// The bound listeners. Bound before anything else runs, so a port clash fails fast.
pub struct Listeners {
    pub traffic: TcpListener,
    pub admin: TcpListener,
    /// `verdict_listen`, when set (`crate::lookup`).
    pub verdict: Option<TcpListener>,
}

impl Listeners {
    /// Binds `listen`, `admin_listen` and, when set, `verdict_listen`.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        let traffic = listen(cfg.listen)
            .with_context(|| format!("cannot bind listen address {}", cfg.listen))?;
        let admin = TcpListener::bind(cfg.admin_listen)
            .await
            .with_context(|| format!("cannot bind admin_listen address {}", cfg.admin_listen))?;
        let verdict = match cfg.verdict_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot bind verdict_listen address {addr}"))?,
            ),
            None => None,
        };
        Ok(Listeners {
            traffic,
            admin,
            verdict,
        })
    }
}

/// Connections the kernel may hold completed but not yet accepted (capped by `somaxconn`): where
/// they wait while `server.max_connections` are open. tokio's `bind` asks for 128.
const LISTEN_BACKLOG: u32 = 1024;

/// A traffic listener on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As tokio's own `bind`: a restarted proxy can bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A proxy started in the background (tests, `demo`).
pub struct Running {
    pub traffic_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The verdict listener's address, when `verdict_listen` is set.
    pub verdict_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    readiness: Readiness,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Starts draining, as SIGTERM would. `/ready` answers 503 from the moment this returns.
    pub fn shutdown(&self) {
        self.readiness.set_draining();
        self.shutdown.cancel();
    }

    /// Waits until the proxy has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("proxy task panicked")?
    }
}

/// Binds the listeners and runs the proxy on a background task. Its access lines are `tracing`
/// events, for whatever subscriber the caller installed.
pub async fn start(config: Config, source: Option<ConfigSource>) -> anyhow::Result<Running> {
    let listeners = Listeners::bind(&config).await?;
    let traffic_addr = listeners.traffic.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    let verdict_addr = listeners
        .verdict
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let shutdown = CancellationToken::new();
    let readiness = Readiness::default();
    let task = tokio::spawn(run_with(
        config,
        source.map(ConfigSource::watched),
        listeners,
        shutdown.clone(),
        readiness.clone(),
        AccessLog::default(),
    ));
    Ok(Running {
        traffic_addr,
        admin_addr,
        verdict_addr,
        shutdown,
        readiness,
        task,
    })
}

/// Runs the proxy until `shutdown` is cancelled and the drain has finished, writing its access
/// lines to `access` (from `telemetry::init_deferred`).
pub async fn run(
    config: Config,
    source: Option<ConfigSource>,
    listeners: Listeners,
    shutdown: CancellationToken,
    access: AccessLog,
) -> anyhow::Result<()> {
    run_with(
        config,
        source.map(ConfigSource::watched),
        listeners,
        shutdown,
        Readiness::default(),
        access,
    )
    .await
}

/// `run`, with the readiness flag owned by the caller (so `Running::shutdown` can flip it
/// synchronously).
async fn run_with(
    config: Config,
    source: Option<Watched>,
    listeners: Listeners,
    shutdown: CancellationToken,
    readiness: Readiness,
    access: AccessLog,
) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let registry = Arc::new(registry);

    let passthrough = Passthrough::new(
        &config.backend,
        config.forwarding.preserve_header_case,
        config.server.underscores_in_headers,
        metrics.clone(),
    );
    let traces = start_tracing(&config, &metrics)?;
    let compiled = reload::compile(&config)?;
    match &compiled.signer {
        Some(signer) => tracing::info!(
            signing_kid = signer.signing_kid(),
            keys = config.verdict.keys.len(),
            "verdict tokens on"
        ),
        None => tracing::info!("verdict tokens off: no verdict.keys configured"),
    }
    let published = Arc::new(ArcSwapOption::new(compiled.signer.clone()));
    let live = Arc::new(ArcSwap::from_pointee(reload::build_live(
        &config, compiled, &metrics, &traces, None,
    )?));
    let tunnels = Tunnels {
        tracker: TaskTracker::new(),
        cancel: CancellationToken::new(),
        idle_timeout: config.server.tunnel_idle_timeout,
        max_lifetime: config.server.tunnel_max_lifetime,
        metrics: metrics.clone(),
    };
    let proxy = Proxy::new(
        passthrough,
        Forwarding::from_config(&config.forwarding),
        RequestRules::from_config(&config.server),
        metrics.clone(),
        access,
        tunnels.clone(),
        live.clone(),
        (!config.server.body_idle_timeout.is_zero()).then_some(config.server.body_idle_timeout),
        shutdown.clone(),
        traces.clone(),
    );
    let late = proxy.late_verdicts();
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;

    let admin_stop = CancellationToken::new();
    let admin_addr = listeners.admin.local_addr()?;
    let admin_service = Arc::new(Admin::new(
        readiness.clone(),
        registry.clone(),
        published.clone(),
    ));
    let admin = tokio::spawn(serve_side(
        listeners.admin,
        "admin",
        move |req: Request<Incoming>| {
            let answer = admin_service.handle(&req);
            async move { answer }
        },
        admin_stop.clone(),
    ));
    // The verdict listener: its own Oz client (built from the start-up `oz` section) and the
    // signer reload publishes. Stopped with the admin listener, after the drain.
    let verdict_addr = match listeners.verdict {
        Some(listener) => {
            let addr = listener.local_addr()?;
            if !addr.ip().is_loopback() {
                tracing::warn!(
                    verdict_listen = %addr,
                    "verdict_listen is not on loopback: whatever reaches it can read any folder's verdict and video with the proxy's Oz credentials"
                );
            }
            let oz = OzClient::new(&config.oz, metrics.clone())
                .map_err(|e| anyhow::anyhow!("oz client for verdict_listen: {e}"))?;
            let lookup = Lookup::new(oz, published.clone());
            tokio::spawn(serve_side(
                listener,
                "verdict",
                move |req: Request<Incoming>| {
                    let lookup = lookup.clone();
                    async move { lookup.handle(req).await }
                },
                admin_stop.clone(),
            ));
            Some(addr)
        }
        None => None,
    };
    if let Some(source) = source {
        tokio::spawn(reload::watch(
            source,
            config.clone(),
            live,
            published,
            metrics.clone(),
            traces.clone(),
            shutdown.clone(),
        ));
    }

    let traffic_addr = listeners.traffic.local_addr()?;
    // Ready first, then say so: whoever reads the line may probe `/ready` at once.
    readiness.set_ready();
    tracing::info!(
        listen = %traffic_addr,
        admin_listen = %admin_addr,
        verdict_listen = verdict_addr.map(|a| a.to_string()),
        backend = %config.backend.url,
        tls = tls.is_some(),
        capture_routes = config.capture.routes.len(),
        "oz-capture-proxy ready"
    );

    // Every connection task, so the drain deadline can cut them and wait until they are gone.
    let conns = TaskTracker::new();
    let (graceful, unheard) = serve_traffic(
        listeners.traffic,
        proxy,
        tls,
        &config.server,
        config.forwarding.preserve_header_case,
        metrics,
        Drain {
            readiness: &readiness,
            delay: config.shutdown.drain_delay,
            signal: &shutdown,
            cut: &tunnels.cancel,
            conns: &conns,
        },
    )
    .await;

    // The listener is closed now: wait for in-flight work, at most `drain_deadline`.
    tunnels.tracker.close();
    conns.close();
    let open = graceful.count();
    tracing::info!(open_connections = open, "listener closed, draining");
    let pending = late.pending();
    if !pending.is_empty() {
        tracing::info!(
            count = pending.len(),
            folder_ids = ?pending,
            "late verdicts pending: cancelled when the drain ends, GET /verdicts/{{folder_id}} has them"
        );
    }
    let deadline = tokio::time::sleep(config.shutdown.drain_deadline);
    tokio::pin!(deadline);
    let drained = tokio::select! {
        _ = async {
            // Connections accepted just before the listener closed get their first bytes read
            // before HTTP/1 connections are told to close; one that never sends is closed at
            // header_read_timeout anyway, and the drain deadline bounds it all.
            let _ = tokio::time::timeout(config.server.header_read_timeout, unheard.heard()).await;
            graceful.shutdown().await;
            tunnels.tracker.wait().await;
        } => true,
        _ = &mut deadline => false,
    };
    if drained {
        tracing::info!("drained, exiting");
    } else {
        tracing::warn!(deadline = ?config.shutdown.drain_deadline, "drain deadline passed, cutting remaining connections");
        // Connections and tunnels drop their sockets (and their backend requests) as soon as
        // they see this; wait for that, so nothing is still served once `run` returns.
        tunnels.cancel.cancel();
        conns.wait().await;
        tunnels.tracker.wait().await;
    }
    late.cancel().await;
    // The last spans go out within what is left of the drain deadline (at most
    // TRACE_FLUSH_LIMIT): a collector that is down never holds the exit up.
    let left = deadline
        .deadline()
        .saturating_duration_since(tokio::time::Instant::now());
    traces.shutdown(left.min(TRACE_FLUSH_LIMIT)).await;
    admin_stop.cancel();
    let _ = admin.await;
    Ok(())
}

/// The longest the shutdown waits for the last spans to be sent.
const TRACE_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Tracing as `telemetry.otlp` and the `OTEL_*` variables say; logs where traces go (never the
/// export headers).
fn start_tracing(config: &Config, metrics: &Metrics) -> anyhow::Result<Tracing> {
    let settings = config.telemetry.otlp_settings()?;
    let traces = Tracing::start(settings.as_ref(), metrics, trace::BATCH_DELAY)?;
    match &settings {
        Some(s) => tracing::info!(
            traces_url = %crate::config::redacted_url(&s.traces_url),
            service_name = %s.service_name,
            sample_ratio = s.sampling.ratio,
            follow_parent = s.sampling.follow_parent,
            "tracing on"
        ),
        None => tracing::debug!(
            "tracing off: no telemetry.otlp.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    }
    for warning in settings.iter().flat_map(|s| &s.warnings) {
        tracing::warn!("{warning}");
    }
    Ok(traces)
}

/// What `serve_traffic` needs to know about shutdown.
struct Drain<'a> {
    /// Flipped to draining when `signal` fires.
    readiness: &'a Readiness,
    /// How long to keep accepting after the signal.
    delay: Duration,
    /// The shutdown signal.
    signal: &'a CancellationToken,
    /// Cancelled when the drain deadline passes: every connection drops its socket.
    cut: &'a CancellationToken,
    /// Where connection tasks are spawned.
    conns: &'a TaskTracker,
}

/// Accepts traffic until the drain delay after the shutdown signal has passed; returns the
/// connection watcher so the caller can wait for the drain.
async fn serve_traffic(
    listener: TcpListener,
    proxy: Proxy,
    tls: Option<TlsAcceptor>,
    cfg: &ServerConfig,
    preserve_header_case: bool,
    metrics: Metrics,
    shutdown: Drain<'_>,
) -> (GracefulShutdown, Arc<Unheard>) {
    let builder = Arc::new(http_builder(cfg, preserve_header_case));
    let graceful = GracefulShutdown::new();
    let unheard = Arc::new(Unheard::default());
    let drain_delay = shutdown.delay;
    let drain = async {
        shutdown.signal.cancelled().await;
        shutdown.readiness.set_draining();
        tracing::info!(drain_delay = ?drain_delay, "shutdown signal: /ready is 503, still serving");
        tokio::time::sleep(drain_delay).await;
    };
    tokio::pin!(drain);
    let spawn = |stream: TcpStream, peer: SocketAddr, slot: tokio::sync::OwnedSemaphorePermit| {
        let conn = Conn {
            builder: builder.clone(),
            proxy: proxy.clone(),
            tls: tls.clone(),
            handshake_timeout: cfg.header_read_timeout,
            http2_idle_timeout: cfg.http2_idle_timeout,
            unheard: UnheardGuard::new(&unheard),
        };
        let watcher = graceful.watcher();
        let cut = shutdown.cut.clone();
        let open = metrics.connections_open().clone();
        open.inc();
        shutdown.conns.spawn(async move {
            tokio::select! {
                _ = conn.serve(stream, peer, watcher) => {}
                _ = cut.cancelled() => {
                    tracing::debug!(peer = %peer, "connection cut at the drain deadline");
                }
            }
            open.dec();
            drop(slot);
        });
    };
    // One permit per open connection: at `server.max_connections` the loop stops accepting and
    // new connections wait in the kernel's backlog until one closes.
    let slots = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics.connection_waited();
                tokio::select! {
                    biased;
                    _ = &mut drain => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        tokio::select! {
            biased;
            _ = &mut drain => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn(stream, peer, slot),
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning on the accept loop.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Connections the kernel has already completed are served, not reset with the listener:
    // their clients connected while the proxy was still listening.
    while let Ok(slot) = slots.clone().try_acquire_owned() {
        match now_or_never(listener.accept()) {
            Some(Ok((stream, peer))) => spawn(stream, peer, slot),
            _ => break,
        }
    }
    (graceful, unheard)
}

/// The output of `fut` if it is ready at its first poll.
fn now_or_never<F: Future>(fut: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Connections accepted whose first byte has not arrived. When the listener closes, HTTP/1
/// connections are told to shut down, and hyper closes one whose request it has not read yet:
/// the drain waits for these first, so that a client that connected just before the close gets
/// its answer instead of an EOF.
#[derive(Default)]
struct Unheard {
    count: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Unheard {
    /// Resolves once no accepted connection waits for its first byte.
    async fn heard(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            changed.await;
        }
    }
}

/// One connection counted in [`Unheard`] until its first byte (or its end).
struct UnheardGuard(Arc<Unheard>);

impl UnheardGuard {
    fn new(unheard: &Arc<Unheard>) -> Self {
        unheard
            .count
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        UnheardGuard(unheard.clone())
    }
}

impl Drop for UnheardGuard {
    fn drop(&mut self) {
        self.0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

fn http_builder(cfg: &ServerConfig, preserve_header_case: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Without a timer the header read timeout silently does nothing (docs/dependencies.md, "hyper: timeouts need a timer").
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .preserve_header_case(preserve_header_case)
        .max_headers(cfg.max_headers)
        // hyper answers 431 when the head does not fit; it needs at least 8 KiB of buffer, which
        // config validation guarantees (the `max` keeps a hand-built ServerConfig from panicking).
        .max_buf_size(cfg.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// One accepted connection.
struct Conn {
    builder: Arc<auto::Builder<TokioExecutor>>,
    proxy: Proxy,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    /// `server.http2_idle_timeout`.
    http2_idle_timeout: Duration,
    /// Counts the connection as unheard until its first byte.
    unheard: UnheardGuard,
}

impl Conn {
    async fn serve(
        self,
        stream: TcpStream,
        addr: SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let _ = stream.set_nodelay(true);
        let peer = Peer::new(addr, self.tls.is_some());
        let proxy = self.proxy;
        let service = service_fn(move |req| {
            let (proxy, peer) = (proxy.clone(), peer.clone());
            async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
        });
        let result = match self.tls {
            Some(acceptor) => {
                match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let io = ClientIo::new(
                            tls,
                            self.handshake_timeout,
                            self.http2_idle_timeout,
                            self.unheard,
                        );
                        let conn = self
                            .builder
                            .serve_connection_with_upgrades(TokioIo::new(io), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %addr, "TLS handshake timed out");
                        return;
                    }
                }
            }
            None => {
                let io = ClientIo::new(
                    stream,
                    self.handshake_timeout,
                    self.http2_idle_timeout,
                    self.unheard,
                );
                let conn = self
                    .builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service);
                watcher.watch(conn.into_owned()).await
            }
        };
        if let Err(e) = result {
            // Clients that vanish mid-request are routine for a proxy: debug, not warn.
            tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
        }
    }
}

pin_project_lite::pin_project! {
    /// A client connection with the two deadlines hyper does not keep for us:
    /// - its first read fails if no byte arrives within `server.header_read_timeout`: hyper's
    ///   header read timeout starts once HTTP/1 has been told apart from HTTP/2, which takes the
    ///   first bytes, so a connection that never sends one would be held forever (a file
    ///   descriptor per silent connection);
    /// - once it has shown itself as HTTP/2 (its first bytes are the preface), a read fails when
    ///   no byte has moved either way for `server.http2_idle_timeout`: an HTTP/2 connection has
    ///   no header timeout between requests. HTTP/1 keep-alive connections are closed by hyper's
    ///   header read timeout between requests.
    struct ClientIo<T> {
        #[pin]
        io: T,
        first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
        unheard: Option<UnheardGuard>,
        http2_idle: Duration,
        idle: Option<Idle>,
    }
}

/// The idle deadline of an HTTP/2 connection; the timer is only re-armed when it fires.
struct Idle {
    last: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<T> ClientIo<T> {
    fn new(io: T, first_byte: Duration, http2_idle: Duration, unheard: UnheardGuard) -> Self {
        ClientIo {
            io,
            first_byte: Some(Box::pin(tokio::time::sleep(first_byte))),
            unheard: Some(unheard),
            http2_idle,
            idle: None,
        }
    }
}

/// Notes a write that moved bytes as HTTP/2 activity.
fn wrote(idle: &mut Option<Idle>, r: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
    if let (Some(idle), Poll::Ready(Ok(n))) = (idle, &r) {
        if *n > 0 {
            idle.last = tokio::time::Instant::now();
        }
    }
    r
}

fn timed_out(what: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what)
}

impl<T: AsyncRead> AsyncRead for ClientIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.io.poll_read(cx, buf);
        let got = buf.filled().len() > before;
        if let Some(deadline) = this.first_byte {
            match r {
                Poll::Ready(_) if got => {
                    *this.first_byte = None;
                    *this.unheard = None;
                    let http2 = buf.filled()[before..].starts_with(b"PRI ");
                    if http2 && !this.http2_idle.is_zero() {
                        let last = tokio::time::Instant::now();
                        *this.idle = Some(Idle {
                            last,
                            timer: Box::pin(tokio::time::sleep_until(last + *this.http2_idle)),
                        });
                    }
                    return r;
                }
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(timed_out(
                        "no request byte within server.header_read_timeout",
                    )));
                }
                _ => return r,
            }
        }
        if let Some(idle) = this.idle {
            if got {
                idle.last = tokio::time::Instant::now();
            } else if r.is_pending() {
                loop {
                    if idle.timer.as_mut().poll(cx).is_pending() {
                        break;
                    }
                    let deadline = idle.last + *this.http2_idle;
                    if tokio::time::Instant::now() >= deadline {
                        return Poll::Ready(Err(timed_out(
                            "no HTTP/2 traffic for server.http2_idle_timeout",
                        )));
                    }
                    idle.timer.as_mut().reset(deadline);
                }
            }
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for ClientIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        wrote(this.idle, this.io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        wrote(this.idle, this.io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// Serves a side listener (admin, verdicts) until `stop`: `handle` answers every request, with
/// no traffic limits; connections in flight are closed gracefully then.
async fn serve_side<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    handle: F,
    stop: CancellationToken,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let builder = Arc::new(http_builder(&ServerConfig::default(), false));
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = handle(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    // Let an answer in flight (a video stream) end, but not hold the exit.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SIDE_DRAIN, conn.as_mut()).await;
                }
            }
        });
    }
}

/// How long a side listener's connection may take to finish its answer once the process stops.
const SIDE_DRAIN: Duration = Duration::from_secs(5);

/// A TLS acceptor from PEM files, with rustls' aws-lc-rs provider chosen explicitly (never a
/// process default: two providers in the tree would make rustls panic at runtime).
fn tls_acceptor(cfg: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&cfg.cert_file)
        .with_context(|| format!("tls.cert_file: cannot read {}", cfg.cert_file.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "tls.cert_file: {} is not a PEM certificate chain",
                cfg.cert_file.display()
            )
        })?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).with_context(|| {
        format!(
            "tls.key_file: cannot read a PEM private key from {}",
            cfg.key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls: certificate and key do not match")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}
