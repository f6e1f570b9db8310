//! Traces: the spans of a request (OpenTelemetry HTTP semantic conventions), joined to the
//! client's and the backend's by W3C Trace Context, and exported over OTLP/HTTP (`export`).
//!
//! - **Off costs nothing.** Without `telemetry.otlp` [`Tracing`] is empty: no span, no header,
//!   nothing read; a request pays one `Option` check.
//! - **Sampling is decided once, at the head.** A capture is always traced. A passthrough request
//!   follows the client's `traceparent` flag when it sent one and the sampler is parent-based
//!   (the default), else `sample_ratio`. A request not traced gets no span, and its
//!   `traceparent` goes to the backend as the client sent it.
//! - **A traced request's `traceparent` is the proxy's**: the backend gets one naming the proxy's
//!   span (the server span, or in forward mode the client span of the forward), so its own spans
//!   join the trace; Oz gets one naming the span of each call. `tracestate` rides along.
//! - **Spans carry no capture data**: method, configured route, path without the query, status,
//!   sizes, Oz's folder id, resolution and action, and failure codes. Never frames,
//!   `additional_info`, tokens, cookies, credentials, client addresses or query strings.
//! - The ambient OpenTelemetry `Context` carries the request's span into the Oz client: dispatch
//!   runs a traced capture inside it (`FutureExt::with_context`), and [`Tracing::oz_span`] reads
//!   it. Nothing is global: the tracer provider belongs to the [`Tracing`] handle.

mod export;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, Version};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt as _, TraceId,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::{OtlpSettings, Sampling};
use crate::metrics::Metrics;

pub use export::{BATCH_DELAY, MAX_BATCH, MAX_QUEUED_SPANS};

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Tracing for the process, or none. Cloning is cheap.
#[derive(Clone, Default)]
pub struct Tracing {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tracer: opentelemetry_sdk::trace::Tracer,
    sampling: Sampling,
    propagator: TraceContextPropagator,
    exporting: export::Exporting,
    /// Kept for its lifetime: the tracer stops making spans when the provider goes.
    _provider: SdkTracerProvider,
}

impl Tracing {
    /// No tracing.
    pub fn off() -> Tracing {
        Tracing::default()
    }

    /// Tracing as `settings` say (none when `None`), exporting from a task on the current
    /// runtime with batches sent after `batch_delay` at the latest (`OTEL_BSP_SCHEDULE_DELAY`
    /// is not read: the proxy passes [`BATCH_DELAY`]).
    pub fn start(
        settings: Option<&OtlpSettings>,
        metrics: &Metrics,
        batch_delay: Duration,
    ) -> anyhow::Result<Tracing> {
        let Some(s) = settings else {
            return Ok(Tracing::off());
        };
        let resource = Resource::builder_empty()
            .with_service_name(s.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .with_attributes(
                s.resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build();
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(export::ExportClient::new(s)?)
            .with_endpoint(s.traces_url.to_string())
            .with_timeout(s.export_timeout)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            // One attempt per batch: a retry would hold the next batches back behind a collector
            // that is struggling, and the queue drops what does not fit rather than wait.
            .with_retry_policy(opentelemetry_otlp::RetryPolicy::disabled())
            .build()
            .map_err(|e| anyhow::anyhow!("telemetry.otlp: cannot build the OTLP exporter: {e}"))?;
        opentelemetry_sdk::trace::SpanExporter::set_resource(&mut exporter, &resource);
        let (queue, exporting) = export::Exporting::start(exporter, metrics.clone(), batch_delay);
        let provider = SdkTracerProvider::builder()
            // Sampling is decided before a span is made (see `server_span`).
            .with_sampler(Sampler::AlwaysOn)
            .with_span_processor(queue)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("oz-capture-proxy");
        Ok(Tracing {
            inner: Some(Arc::new(Inner {
                tracer,
                sampling: s.sampling,
                propagator: TraceContextPropagator::new(),
                exporting,
                _provider: provider,
            })),
        })
    }

    /// Whether spans are made at all.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts the server span of a request whose head the request filter has made, if it is
    /// traced: `route` is the configured capture path (captures are always traced), `None` for
    /// passthrough. A traced request's head then carries the proxy's `traceparent`; one that is
    /// not keeps the client's untouched.
    pub fn server_span(
        &self,
        head: &mut http::request::Parts,
        route: Option<&str>,
    ) -> Option<RequestSpan> {
        let inner = self.inner.as_ref()?;
        let parent = client_context(&inner.propagator, &head.headers);
        let remote = parent.span().span_context().clone();
        let traced = route.is_some() || inner.sampling.decides(&remote);
        if !traced {
            return None;
        }
        let (method, original) = method_attribute(&head.method);
        let name = match route {
            Some(r) if original.is_none() => format!("{method} {r}"),
            Some(r) => format!("HTTP {r}"),
            None if original.is_none() => method.to_owned(),
            None => "HTTP".to_owned(),
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.path", clip(head.uri.path())),
            KeyValue::new("network.protocol.version", protocol_version(head.version)),
        ];
        if let Some(original) = original {
            attributes.push(KeyValue::new(
                "http.request.method_original",
                clip(&original),
            ));
        }
        if let Some(route) = route {
            attributes.push(KeyValue::new("http.route", route.to_owned()));
        }
        if let Some((host, port)) = server_address(&head.headers) {
            attributes.push(KeyValue::new("server.address", clip(&host)));
            if let Some(port) = port {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
        }
        let span = inner.tracer.build_with_context(
            SpanBuilder::from_name(name)
                .with_kind(SpanKind::Server)
                .with_attributes(attributes),
            &parent,
        );
        let cx = parent.with_span(span);
        inject(&inner.propagator, &cx, &mut head.headers);
        Some(RequestSpan {
            cx,
            tracing: self.clone(),
        })
    }

    /// A client span for a call to Oz at `endpoint` (`folders`, `analyses`, `poll`…) made inside
    /// a traced request (the ambient context), or `None`. A login or token refresh has none: it
    /// is shared by every request waiting for the token, not one request's work.
    pub fn oz_span(
        &self,
        endpoint: &'static str,
        method: &Method,
        url: &http::Uri,
    ) -> Option<ChildSpan> {
        let inner = self.inner.as_ref()?;
        if matches!(endpoint, "auth" | "refresh") {
            return None;
        }
        let parent = Context::current();
        if !parent.span().span_context().is_sampled() {
            return None;
        }
        let name = match endpoint {
            "folders" | "instant_folders" => "oz.upload",
            "analyses" => "oz.analyses",
            "poll" => "oz.poll",
            "folder" => "oz.folder",
            "video" => "oz.video",
            _ => "oz.call",
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.as_str().to_owned()),
            KeyValue::new("url.path", url.path().to_owned()),
            KeyValue::new("oz.endpoint", endpoint),
        ];
        if let Some(host) = url.host() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = url.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        Some(ChildSpan::start(
            inner,
            &parent,
            SpanBuilder::from_name(name)
                .with_kind(SpanKind::Client)
                .with_attributes(attributes),
        ))
    }

    /// Sends the spans still queued, within `within`; called once the drain is over.
    pub async fn shutdown(&self, within: Duration) {
        if let Some(inner) = &self.inner {
            inner.exporting.stop(within).await;
        }
    }
}

impl Sampling {
    /// Whether a passthrough request with `remote` (the client's span context, invalid when it
    /// sent none) is traced.
    fn decides(&self, remote: &SpanContext) -> bool {
        if remote.is_valid() && self.follow_parent {
            return remote.is_sampled();
        }
        if self.ratio >= 1.0 {
            return true;
        }
        if self.ratio <= 0.0 {
            return false;
        }
        if remote.is_valid() {
            // The trace id decides, as `traceidratio` does: every service with the same ratio
            // keeps the same traces.
            trace_id_ratio(remote.trace_id(), self.ratio)
        } else {
            fastrand::f64() < self.ratio
        }
    }
}

/// The spec's `TraceIdRatioBased` test: the trace id's low 8 bytes, as a number, below the ratio
/// of their range.
fn trace_id_ratio(id: TraceId, ratio: f64) -> bool {
    let bytes = id.to_bytes();
    let low = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) >> 1;
    (low as f64) < ratio * (1u64 << 63) as f64
}

/// The client's trace context, or an empty one when it sent none or more than one
/// `traceparent` (W3C Trace Context §3.2: several are invalid). Several `tracestate` fields are
/// one list (§3.3.1.1), joined before they are read.
fn client_context(propagator: &TraceContextPropagator, headers: &HeaderMap) -> Context {
    let mut parents = headers.get_all(&TRACEPARENT).iter();
    let (Some(parent), None) = (parents.next(), parents.next()) else {
        return Context::new();
    };
    let mut states = headers.get_all(&TRACESTATE).iter();
    if let (Some(_), Some(_)) = (states.next(), states.next()) {
        let joined: Vec<&[u8]> = headers
            .get_all(&TRACESTATE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let mut one = HeaderMap::new();
        one.insert(TRACEPARENT, parent.clone());
        if let Ok(v) = http::HeaderValue::from_bytes(&joined.join(&b","[..])) {
            one.insert(TRACESTATE, v);
        }
        return propagator.extract(&HeaderExtractor(&one));
    }
    propagator.extract(&HeaderExtractor(headers))
}

/// The longest attribute value taken from what a client sent (path, host, method): a span is
/// kept in the export queue, and the queue is bounded in spans, so each span must stay small.
const MAX_CLIENT_VALUE: usize = 256;

/// `value` cut to [`MAX_CLIENT_VALUE`] bytes on a character boundary, with `…` when cut.
fn clip(value: &str) -> String {
    if value.len() <= MAX_CLIENT_VALUE {
        return value.to_owned();
    }
    let mut end = MAX_CLIENT_VALUE;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// Records `oz.folder_id` on the traced request the current task works for (the ambient
/// context), if any: as soon as Oz created the folder, so a capture that fails after that still
/// names it.
pub fn record_folder_id(folder_id: &str) {
    let cx = Context::current();
    let span = cx.span();
    if span.is_recording() {
        span.set_attribute(KeyValue::new("oz.folder_id", folder_id.to_owned()));
    }
}

/// Replaces the head's trace context with `cx`'s.
fn inject(propagator: &TraceContextPropagator, cx: &Context, headers: &mut HeaderMap) {
    headers.remove(&TRACEPARENT);
    headers.remove(&TRACESTATE);
    propagator.inject_context(cx, &mut HeaderInjector(headers));
}

/// `http.request.method` as the conventions want it: a known method, else `_OTHER` with the
/// method as sent beside it.
fn method_attribute(m: &Method) -> (&'static str, Option<String>) {
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    match known.iter().find(|k| *k == m) {
        Some(k) => (static_method(k), None),
        None => ("_OTHER", Some(m.as_str().to_owned())),
    }
}

fn static_method(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        _ => "PATCH",
    }
}

fn protocol_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// `server.address` and `server.port` from `Host` (which the request filter has checked, and set
/// from `:authority` on HTTP/2).
fn server_address(headers: &HeaderMap) -> Option<(String, Option<u16>)> {
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let authority: http::uri::Authority = host.parse().ok()?;
    Some((authority.host().to_owned(), authority.port_u16()))
}

/// A traced request's server span. Ends when dropped: ended by [`RequestSpan::end`] with the
/// response status.
pub struct RequestSpan {
    cx: Context,
    tracing: Tracing,
}

impl RequestSpan {
    /// The context to run the request's work in, so its Oz calls are children of this span.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// The trace and span id, in hex, for log lines.
    pub fn ids(&self) -> (String, String) {
        let span = self.cx.span();
        let sc = span.span_context();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    }

    /// Adds attributes (`oz.folder_id`, sizes…).
    pub fn record(&self, attributes: impl IntoIterator<Item = KeyValue>) {
        self.cx.span().set_attributes(attributes);
    }

    /// Marks the request failed with a problem `code` (`capture_replayed`, `oz_unavailable`…).
    pub fn fail(&self, code: &'static str) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("error.type", code));
        span.set_status(Status::error(code));
    }

    /// A finished phase of this request that ran elsewhere (a capture thread), as a child span
    /// from `start` to `end`.
    pub fn phase(
        &self,
        name: &'static str,
        start: SystemTime,
        end: SystemTime,
        attributes: Vec<KeyValue>,
    ) {
        let Some(inner) = &self.tracing.inner else {
            return;
        };
        let mut span = inner.tracer.build_with_context(
            SpanBuilder::from_name(name)
                .with_kind(SpanKind::Internal)
                .with_start_time(start)
                .with_attributes(attributes),
            &self.cx,
        );
        span.end_with_timestamp(end);
    }

    /// A client span for the request this one sends to the backend; its `traceparent` goes
    /// into `headers`, replacing the server span's.
    pub fn backend_span(&self, method: &Method, headers: &mut HeaderMap) -> Option<ChildSpan> {
        let inner = self.tracing.inner.as_ref()?;
        let (name, original) = method_attribute(method);
        let span_name = if original.is_some() { "HTTP" } else { name };
        let mut attributes = vec![KeyValue::new("http.request.method", name)];
        if let Some(original) = original {
            attributes.push(KeyValue::new("http.request.method_original", original));
        }
        let child = ChildSpan::start(
            inner,
            &self.cx,
            SpanBuilder::from_name(span_name)
                .with_kind(SpanKind::Client)
                .with_attributes(attributes),
        );
        inject(&inner.propagator, &child.cx, headers);
        Some(child)
    }

    /// Ends the span with the response status (`None`: the exchange ended before an answer).
    /// A 5xx is an error, as the conventions say for a server span; a failure already marked
    /// by [`RequestSpan::fail`] keeps its code.
    pub fn end(self, status: Option<u16>) {
        let span = self.cx.span();
        match status {
            Some(code) => {
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                if code >= 500 {
                    span.set_status(Status::error(""));
                }
            }
            None => {
                span.set_attribute(KeyValue::new("error.type", "aborted"));
                span.set_status(Status::error("aborted"));
            }
        }
        span.end();
    }
}

/// A client span of a call the proxy makes (to Oz, or the backend), with the `traceparent`
/// naming it.
pub struct ChildSpan {
    cx: Context,
}

impl ChildSpan {
    fn start(inner: &Inner, parent: &Context, builder: SpanBuilder) -> ChildSpan {
        let span = inner.tracer.build_with_context(builder, parent);
        ChildSpan {
            cx: parent.with_span(span),
        }
    }

    /// Puts this span's `traceparent` into `headers`, and not the trace's `tracestate`: that is
    /// the client's, up to 32 entries it chose, and Oz is a third party (a call to Oz).
    pub fn inject_traceparent(&self, headers: &mut HeaderMap) {
        let mut both = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&self.cx, &mut HeaderInjector(&mut both));
        headers.remove(&TRACESTATE);
        if let Some(parent) = both.remove(&TRACEPARENT) {
            headers.insert(TRACEPARENT, parent);
        }
    }

    /// Ends the span: the answer's status if one came, else the failure's kind.
    pub fn end(self, status: Option<u16>, failure: Option<&'static str>) {
        let span = self.cx.span();
        if let Some(code) = status {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
            if code >= 400 {
                span.set_status(Status::error(""));
            }
        }
        if let Some(kind) = failure {
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(Status::error(kind));
        }
        span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceState};

    /// A client's sampled `traceparent`.
    const CLIENT_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn remote(sampled: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        )
    }

    #[test]
    fn passthrough_sampling_follows_the_parent_or_the_ratio() {
        let parent_based = Sampling {
            ratio: 0.0,
            follow_parent: true,
        };
        assert!(parent_based.decides(&remote(true)));
        assert!(!parent_based.decides(&remote(false)));
        assert!(!parent_based.decides(&SpanContext::empty_context()));
        let ratio_only = Sampling {
            ratio: 1.0,
            follow_parent: false,
        };
        assert!(ratio_only.decides(&remote(false)));
        let never = Sampling {
            ratio: 0.0,
            follow_parent: false,
        };
        assert!(!never.decides(&remote(true)));
    }

    #[test]
    fn the_trace_id_decides_the_same_way_every_time() {
        let id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        // Low 8 bytes a3ce929d0e0e4736, shifted: about 0.64 of the range.
        assert!(trace_id_ratio(id, 0.7));
        assert!(!trace_id_ratio(id, 0.6));
        let all: Vec<bool> = (0..10).map(|_| trace_id_ratio(id, 0.7)).collect();
        assert!(all.iter().all(|&b| b));
    }

    #[test]
    fn several_traceparents_are_none() {
        let p = TraceContextPropagator::new();
        let mut h = HeaderMap::new();
        h.append(TRACEPARENT, HeaderValue::from_static(CLIENT_PARENT));
        assert!(client_context(&p, &h).span().span_context().is_valid());
        h.append(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert!(!client_context(&p, &h).span().span_context().is_valid());
    }

    #[test]
    fn tracestate_fields_are_one_list() {
        let p = TraceContextPropagator::new();
        let mut h = HeaderMap::new();
        h.append(TRACEPARENT, HeaderValue::from_static(CLIENT_PARENT));
        h.append(TRACESTATE, "a=1".parse().unwrap());
        h.append(TRACESTATE, "b=2".parse().unwrap());
        let cx = client_context(&p, &h);
        let state = cx.span().span_context().trace_state().header();
        assert_eq!(state, "a=1,b=2");
    }

    #[test]
    fn client_values_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("/short"), "/short");
        let long = format!("/{}", "é".repeat(300));
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_CLIENT_VALUE + "…".len());
        assert!(clipped.ends_with('…'));
    }

    #[test]
    fn methods_outside_the_known_set_are_other() {
        assert_eq!(method_attribute(&Method::POST), ("POST", None));
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method_attribute(&purge), ("_OTHER", Some("PURGE".into())));
    }
}
