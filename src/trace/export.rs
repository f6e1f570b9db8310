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
use std::sync::{Arc, Mutex, OnceLock};
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
    stop: Stop,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The stop signal, and the time by which the task must have given up: set before the signal.
#[derive(Clone, Default)]
struct Stop {
    signal: CancellationToken,
    deadline: Arc<OnceLock<tokio::time::Instant>>,
}

impl Stop {
    /// Resolves when the stop's time has run out (never before the stop).
    async fn out_of_time(&self) {
        self.signal.cancelled().await;
        match self.deadline.get() {
            Some(d) => tokio::time::sleep_until(*d).await,
            None => std::future::pending().await,
        }
    }
}

impl Exporting {
    /// Starts exporting what `Queue` receives, on the current runtime.
    pub(super) fn start(
        exporter: opentelemetry_otlp::SpanExporter,
        metrics: Metrics,
        batch_delay: Duration,
    ) -> (Queue, Exporting) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_SPANS);
        let stop = Stop::default();
        let task = tokio::spawn(export_loop(
            rx,
            exporter,
            metrics.clone(),
            stop.clone(),
            batch_delay,
        ));
        (
            Queue { tx, metrics },
            Exporting {
                stop,
                task: Mutex::new(Some(task)),
            },
        )
    }

    /// Sends what is queued, within `within`; what is not sent by then is dropped and counted
    /// (by the task itself, which knows what it holds).
    pub(super) async fn stop(&self, within: Duration) {
        let _ = self.stop.deadline.set(tokio::time::Instant::now() + within);
        self.stop.signal.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut task) = task {
            // A backstop only: the task gives up at the deadline by itself.
            let grace = within + Duration::from_millis(200);
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

/// Batches spans (up to [`MAX_BATCH`], or whatever came within `delay` of the first) and exports
/// them one batch at a time, as the exporter requires. On stop, sends what is queued until the
/// stop's deadline, and counts what it could not send as dropped at shutdown.
async fn export_loop(
    mut rx: mpsc::Receiver<SpanData>,
    exporter: opentelemetry_otlp::SpanExporter,
    metrics: Metrics,
    stop: Stop,
    delay: Duration,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
            _ = stop.signal.cancelled() => break,
        }
        let until = tokio::time::Instant::now() + delay;
        while batch.len() < MAX_BATCH {
            let room = MAX_BATCH - batch.len();
            tokio::select! {
                n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                _ = tokio::time::sleep_until(until) => break,
                _ = stop.signal.cancelled() => break,
            }
        }
        if !send_in_time(&exporter, &metrics, std::mem::take(&mut batch), &stop).await {
            metrics.trace_spans(SpanResult::Shutdown, rx.len());
            return;
        }
        if stop.signal.is_cancelled() {
            break;
        }
    }
    // Stopping: what is queued goes out, batch by batch, until the deadline.
    rx.close();
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { return },
            _ = stop.out_of_time() => {
                metrics.trace_spans(SpanResult::Shutdown, batch.len() + rx.len());
                return;
            }
        }
        if !send_in_time(&exporter, &metrics, std::mem::take(&mut batch), &stop).await {
            metrics.trace_spans(SpanResult::Shutdown, rx.len());
            return;
        }
    }
}

/// [`send`], unless the stop's time runs out first: then the batch is counted as dropped at
/// shutdown and `false` returned.
async fn send_in_time(
    exporter: &opentelemetry_otlp::SpanExporter,
    metrics: &Metrics,
    spans: Vec<SpanData>,
    stop: &Stop,
) -> bool {
    let count = spans.len();
    tokio::select! {
        _ = send(exporter, metrics, spans) => true,
        _ = stop.out_of_time() => {
            metrics.trace_spans(SpanResult::Shutdown, count);
            false
        }
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

/// The exporter's HTTP client: the proxy's hyper client with rustls (Mozilla roots, plus the
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` CA), each request bounded by the export timeout, run on the
/// runtime that started tracing. It sends exactly the resolved export headers: the exporter also
/// reads `OTEL_EXPORTER_OTLP_HEADERS` from the process environment itself, which would bypass
/// the config's resolution (and, in tests, read the test runner's environment).
#[derive(Debug, Clone)]
pub(super) struct ExportClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    headers: http::HeaderMap,
    runtime: tokio::runtime::Handle,
}

/// The headers of an export request that the exporter itself sets and that are kept.
const EXPORTER_HEADERS: [http::HeaderName; 4] = [
    http::header::CONTENT_TYPE,
    http::header::CONTENT_LENGTH,
    http::header::CONTENT_ENCODING,
    http::header::USER_AGENT,
];

impl ExportClient {
    pub(super) fn new(settings: &crate::config::OtlpSettings) -> anyhow::Result<ExportClient> {
        let tls = crate::client_tls::config(settings.ca_file.as_deref())
            .map_err(|e| anyhow::anyhow!("OTEL_EXPORTER_OTLP_CERTIFICATE {e}"))?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in &settings.headers {
            // Checked when the config was loaded.
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(ExportClient {
            http,
            timeout: settings.export_timeout,
            headers,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    async fn exchange(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (mut parts, body) = request.into_parts();
        let mut headers = self.headers.clone();
        for name in EXPORTER_HEADERS {
            if let Some(v) = parts.headers.get(&name) {
                headers.insert(name, v.clone());
            }
        }
        parts.headers = headers;
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
