//! A trace collector for the tracing tests: an OTLP/HTTP receiver on hyper that decodes each
//! `POST /v1/traces` body with the OTLP protobuf types (`opentelemetry-proto`, prost), as a real
//! collector does, and keeps the spans, the raw bodies (for "nothing sensitive in any export"
//! checks) and the request headers. It can also black-hole: accept connections and never answer.
//!
//! Tests wait for the spans they expect with [`Collector::spans_until`], which wakes on every
//! export received; nothing sleeps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::within;

/// What the collector does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers every export 200 with an empty `ExportTraceServiceResponse`.
    Accept,
    /// Accepts connections and never reads or answers: a collector hung behind a firewall.
    BlackHole,
}

/// One span as received, flattened with its resource's attributes.
#[derive(Clone, Debug)]
pub struct Span {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// `SpanKind` as its protobuf number: 1 internal, 2 server, 3 client.
    pub kind: i32,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: BTreeMap<String, String>,
    /// `StatusCode` as its protobuf number: 0 unset, 1 ok, 2 error; and its message.
    pub status: (i32, String),
    pub resource: BTreeMap<String, String>,
}

pub const SERVER: i32 = 2;
pub const CLIENT: i32 = 3;
pub const INTERNAL: i32 = 1;
pub const ERROR: i32 = 2;

impl Span {
    /// An attribute as text (numbers in decimal), or "" when absent.
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// One export request as received.
#[derive(Clone, Debug)]
pub struct Export {
    pub path: String,
    pub content_type: String,
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
}

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    exports: Vec<Export>,
}

/// A running collector; stops when dropped.
pub struct Collector {
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    changed: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    pub async fn start(mode: Mode) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Received::default()));
        let (tx, changed) = watch::channel(0usize);
        let tx = Arc::new(tx);
        let shared = received.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                if mode == Mode::BlackHole {
                    held.push(stream);
                    continue;
                }
                let (shared, tx) = (shared.clone(), tx.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (shared, tx) = (shared.clone(), tx.clone());
                        async move { Ok::<_, hyper::Error>(receive(req, &shared, &tx).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Collector {
            addr,
            received,
            changed,
            task,
        }
    }

    /// The base URL, as `telemetry.otlp.endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the spans received so far satisfy `done`, and returns them all.
    pub async fn spans_until(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let mut changed = self.changed.clone();
        within(what, async {
            loop {
                {
                    let r = self.received.lock().unwrap();
                    if done(&r.spans) {
                        return r.spans.clone();
                    }
                }
                changed.changed().await.expect("the collector runs");
            }
        })
        .await
    }

    /// Every export request received so far.
    pub fn exports(&self) -> Vec<Export> {
        self.received.lock().unwrap().exports.clone()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.received.lock().unwrap().spans.clone()
    }
}

async fn receive(
    req: Request<Incoming>,
    received: &Mutex<Received>,
    changed: &watch::Sender<usize>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect::<BTreeMap<_, _>>();
    let export = Export {
        path: parts.uri.path().to_owned(),
        content_type: headers.get("content-type").cloned().unwrap_or_default(),
        headers,
        body: body.clone(),
    };
    let decoded = ExportTraceServiceRequest::decode(body.as_ref());
    let mut r = received.lock().unwrap();
    r.exports.push(export);
    let Ok(request) = decoded else {
        changed.send_modify(|n| *n += 1);
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::from_static(
                b"not an ExportTraceServiceRequest",
            )))
            .unwrap();
    };
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for s in scope.spans {
                r.spans.push(Span {
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    kind: s.kind,
                    start_unix_nano: s.start_time_unix_nano,
                    end_unix_nano: s.end_time_unix_nano,
                    attributes: attributes(&s.attributes),
                    status: s.status.map(|st| (st.code, st.message)).unwrap_or_default(),
                    resource: resource.clone(),
                });
            }
        }
    }
    drop(r);
    changed.send_modify(|n| *n += 1);
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(answer)))
        .unwrap()
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(d)) => d.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A loopback port nothing listens on: a collector that is down.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap()
}
