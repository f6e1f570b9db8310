//! Forwarding to the backend through a pooled hyper-util client, bodies streamed both ways.
//!
//! The pool's idle timeout is kept below the backend's keep-alive (hyper#2136: a backend that
//! closes an idle connection first makes the next request on it fail with `IncompleteMessage`).
//! hyper-util already resends a request that never left on a closed pooled connection. On top of
//! that, exactly one more try is made for an idempotent request without a body whose exchange
//! failed after it was sent (the same keep-alive race, seen from the other side): repeating such a
//! request cannot change anything on the backend (RFC 9110 §9.2.2). Nothing else is retried.
//!
//! `backend.timeout` is the time the backend may take to answer, so its clock starts once the
//! request body has been handed over completely (as Envoy's route timeout does): a client that
//! uploads slowly is not a slow backend, and must not get a 504 half-way through its upload.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::oneshot;

use crate::body::{Body, BoxError};
use crate::config::BackendConfig;
use crate::error::Error;
use crate::metrics::{BackendErrorKind, Metrics};

/// The backend client and where it points.
#[derive(Clone)]
pub struct Passthrough {
    client: Client<HttpConnector, Outgoing>,
    scheme: Scheme,
    authority: Authority,
    /// `Host` for requests that arrive without one: the backend's own authority.
    host: HeaderValue,
    timeout: Duration,
    metrics: Metrics,
}

impl Passthrough {
    /// Builds the pooled client from `backend.*`; `preserve_header_case` keeps the case of the
    /// field names both ways (`forwarding.preserve_header_case`).
    pub fn new(cfg: &BackendConfig, preserve_header_case: bool, metrics: Metrics) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle)
            .http1_preserve_header_case(preserve_header_case)
            // The client's own `Host` is forwarded as is; never invent one from the backend URL.
            .set_host(false)
            .build(connector);
        let authority = cfg.url.authority().cloned().expect("validated by config");
        Passthrough {
            client,
            scheme: cfg.url.scheme().cloned().unwrap_or(Scheme::HTTP),
            host: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            authority,
            timeout: cfg.timeout,
            metrics,
        }
    }

    /// The absolute URI of `path_and_query` on the backend. The bytes of the path and query are
    /// kept exactly as received: no decoding of `%2F`, no dot-segment removal.
    pub fn backend_uri(&self, path_and_query: Option<&PathAndQuery>) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            path_and_query
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).expect("scheme, authority and a parsed path always form a URI")
    }

    /// Sends `req` (headers already rewritten) and returns the backend's response head.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Incoming>, Error> {
        *req.uri_mut() = self.backend_uri(req.uri().path_and_query());
        // The backend speaks HTTP/1.1 whatever the client spoke, and HTTP/1.1 requires Host
        // (RFC 9112 §3.2): a request that came without one (HTTP/1.0, or HTTP/2 without
        // `:authority`) names the backend, as any client of the backend URL would.
        *req.version_mut() = Version::HTTP_11;
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut().insert(header::HOST, self.host.clone());
        }
        let replay = Replay::capture(&req);
        match self.try_send(req).await {
            Err(Failure::Exchange(e)) if replay.is_some() => {
                tracing::debug!(error = %e, "retrying idempotent request once after a failed exchange");
                let req = replay.expect("checked above").into_request();
                self.try_send(req).await.map_err(|f| self.classify(f))
            }
            other => other.map_err(|f| self.classify(f)),
        }
    }

    async fn try_send(&self, req: Request<Body>) -> Result<Response<Incoming>, Failure> {
        let (req, sent) = Outgoing::watch(req);
        let exchange = self.client.request(req);
        tokio::pin!(exchange);
        let deadline = async {
            // A dropped sender means the body ended early (an error): start the clock anyway.
            let _ = sent.await;
            tokio::time::sleep(self.timeout).await;
        };
        let result = tokio::select! {
            r = &mut exchange => r,
            _ = deadline => return Err(Failure::Timeout),
        };
        match result {
            Ok(rsp) => Ok(rsp),
            Err(e) if e.is_connect() => Err(Failure::Connect(e)),
            Err(e) => Err(Failure::Exchange(e)),
        }
    }

    fn classify(&self, failure: Failure) -> Error {
        match failure {
            Failure::Timeout => {
                self.metrics.backend_error(BackendErrorKind::Timeout);
                Error::BackendTimeout
            }
            Failure::Connect(e) => {
                self.metrics.backend_error(BackendErrorKind::Connect);
                Error::BackendConnect(error_chain(&e))
            }
            Failure::Exchange(e) => {
                self.metrics.backend_error(BackendErrorKind::Failed);
                Error::BackendFailed(error_chain(&e))
            }
        }
    }
}

enum Failure {
    Timeout,
    Connect(hyper_util::client::legacy::Error),
    Exchange(hyper_util::client::legacy::Error),
}

/// What is needed to send a body-less idempotent request a second time.
struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    fn capture(req: &Request<Body>) -> Option<Replay> {
        let idempotent = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let bodyless = matches!(req.body(), Body::Empty);
        (idempotent && bodyless).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        })
    }

    fn into_request(self) -> Request<Body> {
        let mut req = Request::new(Body::Empty);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = self.headers;
        req
    }
}

/// The request body as sent to the backend: says when it has been handed over completely.
struct Outgoing {
    body: Body,
    sent: Option<oneshot::Sender<()>>,
}

impl Outgoing {
    /// Wraps the body of `req`; the receiver resolves once the body has ended.
    fn watch(req: Request<Body>) -> (Request<Outgoing>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut sent = Some(tx);
        if hyper::body::Body::is_end_stream(req.body()) {
            // Nothing to send: the clock starts now.
            let _ = sent.take().map(|tx| tx.send(()));
        }
        (req.map(|body| Outgoing { body, sent }), rx)
    }

    fn done(&mut self) {
        if let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
    }
}

impl hyper::body::Body for Outgoing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.body).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.done(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.done(),
            _ => {}
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

/// The error and its causes on one line, for logs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
