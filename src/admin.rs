//! The admin listener, apart from traffic so the backend's own `/metrics` stays the backend's.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /live` | `200 live` while the process runs |
//! | `GET /ready` | `200 ready` once the listeners are bound; `503 starting` before, `503 draining` after SIGTERM/SIGINT |
//! | `GET /metrics` | the Prometheus text format of every metric in `crate::metrics` |
//! | `GET /.well-known/jwks.json` | the public keys of the verdict tokens (`crate::verdict_token`); `{"keys":[]}` with tokens off |
//!
//! Anything else gets 404, and methods other than GET and HEAD get 405.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;

use crate::body::Body;
use crate::verdict_token::Signer;

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// Whether the proxy should receive traffic. Shared between the server and the admin endpoint.
#[derive(Clone, Default)]
pub struct Readiness {
    state: Arc<AtomicU8>,
}

impl Readiness {
    /// Ready: the listeners are bound and the config is loaded.
    pub fn set_ready(&self) {
        // Never leave draining: once shutting down, the pod must not come back into rotation.
        let _ = self
            .state
            .compare_exchange(STARTING, READY, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Draining: `/ready` answers 503 from now on.
    pub fn set_draining(&self) {
        self.state.store(DRAINING, Ordering::SeqCst);
    }

    /// Whether `/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::SeqCst) == READY
    }

    fn label(&self) -> &'static str {
        match self.state.load(Ordering::SeqCst) {
            STARTING => "starting",
            READY => "ready",
            _ => "draining",
        }
    }
}

/// The admin service.
#[derive(Clone)]
pub struct Admin {
    readiness: Readiness,
    registry: Arc<Registry>,
    /// The verdict signer in force, whose public keys `/.well-known/jwks.json` publishes.
    published: Arc<ArcSwapOption<Signer>>,
}

impl Admin {
    pub fn new(
        readiness: Readiness,
        registry: Arc<Registry>,
        published: Arc<ArcSwapOption<Signer>>,
    ) -> Self {
        Admin {
            readiness,
            registry,
            published,
        }
    }

    /// Answers one admin request.
    pub fn handle(&self, req: &Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut rsp = text_rsp(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            rsp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return rsp;
        }
        match req.uri().path() {
            "/live" => text_rsp(StatusCode::OK, "live\n"),
            "/ready" => self.ready_rsp(),
            "/metrics" => self.metrics_rsp(),
            "/.well-known/jwks.json" => self.jwks_rsp(),
            _ => text_rsp(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    fn ready_rsp(&self) -> Response<Body> {
        if self.readiness.is_ready() {
            text_rsp(StatusCode::OK, "ready\n")
        } else {
            text_rsp(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}\n", self.readiness.label()),
            )
        }
    }

    /// The JWKS of the verdict keys (RFC 7517); with tokens off, an empty key set.
    fn jwks_rsp(&self) -> Response<Body> {
        let jwks = match &*self.published.load() {
            Some(signer) => signer.jwks(),
            None => bytes::Bytes::from_static(br#"{"keys":[]}"#),
        };
        let mut rsp = Response::new(Body::full(jwks));
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        // Short: a rotation shows within a minute, and verifiers refetch on an unknown `kid`.
        rsp.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        rsp
    }

    fn metrics_rsp(&self) -> Response<Body> {
        let mut rsp = Response::new(Body::full(crate::metrics::render(&self.registry)));
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        rsp
    }
}

fn text_rsp(status: StatusCode, text: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut rsp = Response::new(Body::full(text));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_flips_to_ready_then_draining_and_never_back() {
        let r = Readiness::default();
        assert!(!r.is_ready());
        r.set_ready();
        assert!(r.is_ready());
        r.set_draining();
        assert!(!r.is_ready());
        r.set_ready();
        assert!(!r.is_ready());
        assert_eq!(r.label(), "draining");
    }
}
