//! Per-request observation: the in-flight gauge, the access log line and the request metrics.
//!
//! An `Observation` starts when the request head arrives and ends when the response body has been
//! handed to the connection, or when the exchange is dropped half-way (client gone): its `Drop`
//! writes exactly one log line, records the metrics and ends the request's trace span, so no path
//! can forget any of them. The line has method, path (never the query: it may carry secrets),
//! route kind, status, duration, bytes, request id and, for a traced request, its trace and span
//! ids; never a body.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method};
use hyper::body::{Frame, SizeHint};

use crate::body::BoxError;
use crate::metrics::{Metrics, RouteKind};
use crate::proxy::ResponseBody;
use crate::telemetry::{AccessLine, AccessLog};
use crate::trace::RequestSpan;

/// One request being observed.
pub struct Observation {
    method: Method,
    path: Option<PathAndQuery>,
    kind: RouteKind,
    status: Option<u16>,
    start: Instant,
    bytes: u64,
    request_id: Option<HeaderValue>,
    /// Boxed: an observation moves with every response body, and an untraced request (nearly
    /// all of them) should not carry a span's worth of bytes (callgrind: +189 instructions per
    /// request unboxed; BENCHMARKS.md, "Tracing cost").
    trace: Option<Box<RequestSpan>>,
    metrics: Metrics,
    access: AccessLog,
}

impl Observation {
    /// Starts observing; counts the request as in flight.
    pub fn start(
        metrics: &Metrics,
        access: &AccessLog,
        method: Method,
        path: Option<PathAndQuery>,
    ) -> Self {
        metrics.in_flight(RouteKind::Passthrough).inc();
        Observation {
            method,
            path,
            kind: RouteKind::Passthrough,
            status: None,
            start: Instant::now(),
            bytes: 0,
            request_id: None,
            trace: None,
            metrics: metrics.clone(),
            access: access.clone(),
        }
    }

    /// Re-files the request under another route kind (decided after routing).
    pub fn set_kind(&mut self, kind: RouteKind) {
        if kind != self.kind {
            self.metrics.in_flight(self.kind).dec();
            self.metrics.in_flight(kind).inc();
            self.kind = kind;
        }
    }

    /// The request id, once known.
    pub fn set_request_id(&mut self, id: Option<HeaderValue>) {
        self.request_id = id;
    }

    /// The request's server span, when it is traced; it ends with the observation.
    pub fn set_trace(&mut self, span: Option<RequestSpan>) {
        self.trace = span.map(Box::new);
    }

    /// The request's server span, when it is traced.
    pub fn trace(&self) -> Option<&RequestSpan> {
        self.trace.as_deref()
    }

    /// Wraps the response body so the observation ends with it.
    pub fn finish(mut self, rsp: http::Response<ResponseBody>) -> http::Response<ObservedBody> {
        self.status = Some(rsp.status().as_u16());
        rsp.map(|body| ObservedBody {
            body,
            observation: self,
        })
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        self.metrics.in_flight(self.kind).dec();
        self.metrics.request_done(self.kind, self.status, elapsed);
        let id = self
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let ids = self.trace.as_deref().map(RequestSpan::ids);
        self.access.write(&AccessLine {
            method: self.method.as_str(),
            path: self.path.as_ref().map_or("", |p| p.path()),
            route: self.kind.as_str(),
            status: self.status,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            bytes: self.bytes,
            request_id: id,
            trace_id: ids.as_ref().map(|(t, _)| t.as_str()),
            span_id: ids.as_ref().map(|(_, s)| s.as_str()),
        });
        if let Some(span) = self.trace.take() {
            span.end(self.status);
        }
    }
}

/// A response body that counts its bytes and ends the observation when dropped.
pub struct ObservedBody {
    body: ResponseBody,
    observation: Observation,
}

impl hyper::body::Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &r {
            if let Some(data) = frame.data_ref() {
                this.observation.bytes += data.len() as u64;
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
