//! Tracing, the choice of API (`cargo bench --bench trace`): what the server span of one traced
//! passthrough request costs made directly with the OpenTelemetry API, as `src/trace` makes it,
//! against the same span made from a `tracing` span through tracing-opentelemetry's bridge (the
//! issue asked for the bridge unless the direct way is measurably cheaper).
//!
//! Each iteration does what a traced request does to its span: read the client's `traceparent`,
//! start a server span with the six attributes of `trace::Tracing::server_span` as its child,
//! write the span's own `traceparent` into the outgoing head, add the status code and end it. Both
//! ways use the same SDK tracer provider (always-on sampler) whose only processor drops the span,
//! so the export, which is the same for both, is left out and only the making is measured. A
//! third bench is the cost when tracing is off: `Tracing::off().server_span(…)`.
//!
//! BENCHMARKS.md, "Tracing cost", has the numbers and the end-to-end CPU per request.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    SpanBuilder, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Span, SpanData, SpanProcessor};
use oz_capture_proxy::trace::Tracing;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

fn main() {
    divan::main();
}

/// Drops every span: the export is the same either way and is not what is compared.
#[derive(Debug)]
struct Discard;

impl SpanProcessor for Discard {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        divan::black_box(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn provider() -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .with_span_processor(Discard)
        .build()
}

/// A client's head: a sampled `traceparent`, a `Host`.
fn client_head() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    h.insert("host", HeaderValue::from_static("app.example.com:8080"));
    h
}

#[divan::bench]
fn direct(bencher: divan::Bencher) {
    let provider = provider();
    let tracer = provider.tracer("bench");
    let propagator = TraceContextPropagator::new();
    bencher
        .with_inputs(client_head)
        .bench_local_values(|mut headers| {
            let parent = propagator.extract(&HeaderExtractor(&headers));
            let span = tracer.build_with_context(
                SpanBuilder::from_name("GET")
                    .with_kind(SpanKind::Server)
                    .with_attributes([
                        KeyValue::new("http.request.method", "GET"),
                        KeyValue::new("url.path", "/api/orders/42".to_owned()),
                        KeyValue::new("network.protocol.version", "1.1"),
                        KeyValue::new("server.address", "app.example.com".to_owned()),
                        KeyValue::new("server.port", 8080_i64),
                    ]),
                &parent,
            );
            let cx = parent.with_span(span);
            headers.remove("traceparent");
            propagator.inject_context(&cx, &mut HeaderInjector(&mut headers));
            let span = cx.span();
            span.set_attribute(KeyValue::new("http.response.status_code", 200_i64));
            span.end();
            headers
        });
}

#[divan::bench]
fn bridged(bencher: divan::Bencher) {
    let provider = provider();
    let tracer = provider.tracer("bench");
    let propagator = TraceContextPropagator::new();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    let _default = tracing::subscriber::set_default(subscriber);
    bencher
        .with_inputs(client_head)
        .bench_local_values(|mut headers| {
            let parent = propagator.extract(&HeaderExtractor(&headers));
            let span = tracing::info_span!(
                "GET",
                otel.kind = "server",
                http.request.method = "GET",
                url.path = "/api/orders/42",
                network.protocol.version = "1.1",
                server.address = "app.example.com",
                server.port = 8080_i64,
                http.response.status_code = tracing::field::Empty,
            );
            let _ = span.set_parent(parent);
            let cx = span.context();
            headers.remove("traceparent");
            propagator.inject_context(&cx, &mut HeaderInjector(&mut headers));
            span.record("http.response.status_code", 200_i64);
            drop(span);
            headers
        });
}

#[divan::bench]
fn off(bencher: divan::Bencher) {
    let tracing = Tracing::off();
    bencher
        .with_inputs(|| {
            let (parts, ()) = Request::builder()
                .method(Method::GET)
                .uri("/api/orders/42")
                .body(())
                .unwrap()
                .into_parts();
            let mut parts = parts;
            parts.headers = client_head();
            parts
        })
        .bench_local_refs(|head| divan::black_box(tracing.server_span(head, None)).is_none());
}
