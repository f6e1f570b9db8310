//! Getting finished spans to the collector without ever being in a request's way: a bounded
//! queue that drops (and counts) rather than waits, one background task that sends batches with
//! opentelemetry-otlp's OTLP/HTTP protobuf exporter, and the HTTP client that exporter sends with
//! (the proxy's own hyper and rustls, each request bounded in time).
//!
//! The SDK's own `BatchSpanProcessor` would do the batching on a thread of its own and count
//! drops only in its internal log; this queue runs on the proxy's runtime and counts every span
//! in `oz_proxy_trace_spans_total{result}`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter as _, SpanProcessor};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, SpanResult};

/// Spans waiting for export at most; beyond that a finished span is dropped and counted.
pub const MAX_QUEUED_SPANS: usize = 4096;
/// Spans in one export request at most.
pub const MAX_BATCH: usize = 512;
/// How long spans wait to fill a batch before it goes anyway.
pub const BATCH_DELAY: Duration = Duration::from_millis(1000);
/// The collector's answer is read up to this size (it is a small protobuf or JSON status).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The span processor the tracer provider calls on every span end: into the queue, or dropped.
pub(super) struct Queue {
    tx: mpsc::Sender<SpanData>,
    metrics: Metrics,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("queued", &(MAX_QUEUED_SPANS - self.tx.capacity()))
            .finish()
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        match self.tx.try_send(span) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.trace_spans(SpanResult::QueueFull, 1)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.trace_spans(SpanResult::Shutdown, 1)
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Flushing is the export task's, at shutdown ([`Exporting::stop`]).
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The export task and what stops it.
pub(super) struct Exporting {
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
    /// The queue, to count what is left in it when the flush time runs out; weak, so the task
    /// still sees the queue close when the tracer provider goes.
    queue: mpsc::WeakSender<SpanData>,
    metrics: Metrics,
}

impl Exporting {
    /// Starts exporting what `Queue` receives, on the current runtime.
    pub(super) fn start(
        exporter: opentelemetry_otlp::SpanExporter,
        metrics: Metrics,
        batch_delay: Duration,
    ) -> (Queue, Exporting) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_SPANS);
        let stop = CancellationToken::new();
        let task = tokio::spawn(export_loop(
            rx,
            exporter,
            metrics.clone(),
            stop.clone(),
            batch_delay,
        ));
        let queue = tx.downgrade();
        (
            Queue {
                tx,
                metrics: metrics.clone(),
            },
            Exporting {
                stop,
                task: Mutex::new(Some(task)),
                queue,
                metrics,
            },
        )
    }

    /// Sends what is queued, within `within`; what is still queued then is dropped and counted.
    pub(super) async fn stop(&self, within: Duration) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(within, &mut task).await.is_err() {
                task.abort();
                if let Some(queue) = self.queue.upgrade() {
                    let left = queue.max_capacity() - queue.capacity();
                    self.metrics.trace_spans(SpanResult::Shutdown, left);
                }
                tracing::warn!(
                    within_ms = within.as_millis() as u64,
                    "traces not all sent before the shutdown's flush time ran out"
                );
            }
        }
    }
}

/// Batches spans (up to [`MAX_BATCH`], or whatever came within `delay` of the first) and exports
/// them one batch at a time, as the exporter requires. On stop, sends what is queued.
async fn export_loop(
    mut rx: mpsc::Receiver<SpanData>,
    exporter: opentelemetry_otlp::SpanExporter,
    metrics: Metrics,
    stop: CancellationToken,
    delay: Duration,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
            _ = stop.cancelled() => break,
        }
        let until = tokio::time::Instant::now() + delay;
        while batch.len() < MAX_BATCH {
            let room = MAX_BATCH - batch.len();
            tokio::select! {
                n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                _ = tokio::time::sleep_until(until) => break,
                _ = stop.cancelled() => break,
            }
        }
        send_counted(&exporter, &metrics, std::mem::take(&mut batch)).await;
        if stop.is_cancelled() {
            break;
        }
    }
    // Stopping: what is queued goes out, batch by batch, until the caller's time runs out.
    rx.close();
    loop {
        let n = rx.recv_many(&mut batch, MAX_BATCH).await;
        if n == 0 {
            break;
        }
        send_counted(&exporter, &metrics, std::mem::take(&mut batch)).await;
    }
}

/// [`send`], and the batch counted as dropped at shutdown if the task is aborted mid-send (the
/// shutdown's flush time ran out).
async fn send_counted(
    exporter: &opentelemetry_otlp::SpanExporter,
    metrics: &Metrics,
    spans: Vec<SpanData>,
) {
    let guard = ShutdownCount {
        metrics,
        count: spans.len(),
    };
    send(exporter, metrics, spans).await;
    std::mem::forget(guard);
}

/// Counts a batch dropped at shutdown when the export task is aborted while sending it.
struct ShutdownCount<'a> {
    metrics: &'a Metrics,
    count: usize,
}

impl Drop for ShutdownCount<'_> {
    fn drop(&mut self) {
        self.metrics.trace_spans(SpanResult::Shutdown, self.count);
    }
}

async fn send(
    exporter: &opentelemetry_otlp::SpanExporter,
    metrics: &Metrics,
    spans: Vec<SpanData>,
) {
    let count = spans.len();
    if count == 0 {
        return;
    }
    match exporter.export(spans).await {
        Ok(()) => metrics.trace_spans(SpanResult::Exported, count),
        Err(e) => {
            metrics.trace_spans(SpanResult::ExportFailed, count);
            // The error names the collector's status or the connection failure, never a span.
            tracing::warn!(spans = count, error = %e, "trace export failed; spans dropped");
        }
    }
}

/// The exporter's HTTP client: the proxy's hyper client with rustls (webpki roots), each
/// request bounded by the export timeout, run on the runtime that started tracing.
#[derive(Debug, Clone)]
pub(super) struct ExportClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    pub(super) fn new(timeout: Duration) -> ExportClient {
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        ExportClient {
            http,
            timeout,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    async fn exchange(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let answer = self
            .http
            .request(http::Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = answer.into_parts();
        let body = Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

impl HttpClient for ExportClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.clone();
        let runtime = self.runtime.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            // Spawned on the proxy's runtime: the exporter may be polled from anywhere.
            let exchange = runtime.spawn(async move {
                match tokio::time::timeout(timeout, client.exchange(request)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {timeout:?}").into()),
                }
            });
            exchange.await.map_err(|e| -> HttpError { Box::new(e) })?
        })
    }
}
