//! Forwarding to the backend over pooled keep-alive connections (`proxy::pool`), bodies streamed
//! both ways.
//!
//! The pool's idle timeout is kept below the backend's keep-alive (hyper#2136: a backend that
//! closes an idle connection first makes the next request on it fail with `IncompleteMessage`).
//! A request that never left because its pooled connection had just closed is sent on another
//! one. On top of that, exactly one more try is made for an idempotent request without a body whose exchange
//! failed after it was sent (the same keep-alive race, seen from the other side): repeating such a
//! request cannot change anything on the backend (RFC 9110 §9.2.2). Nothing else is retried.
//!
//! The head sent to the backend always frames the body that is sent: a body the proxy replaced
//! (none for an upgrade, a buffered capture) gets its own `Content-Length`, so no declared length
//! can leave bytes on the connection for the backend to read as the next request. A connection
//! on which an upgrade was offered is never pooled again, whatever the backend answered, and a
//! 101 to a request that offered no upgrade is a failed exchange.
//!
//! Request trailers pass the same rules as headers (`headers::filter_trailers`) on their way.
//!
//! `backend.timeout` is the time the backend may take to answer, so its clock starts once the
//! request body has been handed over completely (as Envoy's route timeout does): a client that
//! uploads slowly is not a slow backend, and must not get a 504 half-way through its upload.

use std::time::Duration;

use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};

use super::outgoing::Outgoing;
use super::pool::{Leased, Pool};
use crate::body::{Body, BoxError};
use crate::config::BackendConfig;
use crate::error::Error;
use crate::error_chain;
use crate::metrics::{BackendErrorKind, Metrics};

/// How often a request that never left is moved to another pooled connection before giving up:
/// each try takes a connection the backend had already closed, which a restarted backend can
/// leave several of.
const UNSENT_TRIES: usize = 4;

/// The backend client and where it points.
#[derive(Clone)]
pub struct Passthrough {
    pool: Pool,
    /// `Host` for requests that arrive without one: the backend's own authority.
    host: HeaderValue,
    timeout: Duration,
    metrics: Metrics,
    /// `server.underscores_in_headers`, for request trailers.
    keep_underscores: bool,
}

impl Passthrough {
    /// Builds the connection pool from `backend.*`; `preserve_header_case` keeps the case of the
    /// field names both ways (`forwarding.preserve_header_case`).
    pub fn new(
        cfg: &BackendConfig,
        preserve_header_case: bool,
        keep_underscores: bool,
        metrics: Metrics,
    ) -> Self {
        let authority = cfg.url.authority().expect("validated by config");
        let port = authority.port_u16().unwrap_or(80);
        let pool = Pool::new(
            format!("{}:{port}", authority.host()),
            cfg.connect_timeout,
            cfg.pool_idle_timeout,
            cfg.pool_max_idle,
            preserve_header_case,
        );
        Passthrough {
            pool,
            host: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            timeout: cfg.timeout,
            metrics,
            keep_underscores,
        }
    }

    /// Sends `req` (headers already rewritten) and returns the backend's response head.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Leased>, Error> {
        // A body on a method whose body has no defined meaning (RFC 9110 §9.3) is framed and
        // sent, but a backend route may ignore it and read it as the next request: its
        // connection is not reused.
        let kind = if matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::DELETE
        ) && !matches!(req.body(), Body::Empty)
        {
            Exchange::Unpooled
        } else {
            Exchange::Plain
        };
        self.send_as(req, kind).await
    }

    /// Sends an upgrade offer (no body, `Upgrade` already filtered). A 101 hands the connection
    /// to the caller; any other answer is relayed and its connection closed afterwards.
    pub async fn send_upgrade(&self, req: Request<Body>) -> Result<Response<Leased>, Error> {
        self.send_as(req, Exchange::Upgrade).await
    }

    async fn send_as(
        &self,
        mut req: Request<Body>,
        kind: Exchange,
    ) -> Result<Response<Leased>, Error> {
        *req.uri_mut() = origin_form(req.uri());
        frame_as_sent(&mut req);
        // The backend speaks HTTP/1.1 whatever the client spoke, and HTTP/1.1 requires Host
        // (RFC 9112 §3.2): a request that came without one (HTTP/1.0, or HTTP/2 without
        // `:authority`) names the backend, as any client of the backend URL would.
        *req.version_mut() = Version::HTTP_11;
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut().insert(header::HOST, self.host.clone());
        }
        let replay = Replay::capture(&req);
        match self.try_send(req, kind).await {
            Err(Failure::Exchange(e)) if replay.is_some() => {
                tracing::debug!(error = %error_chain::chain(&*e), "retrying idempotent request once after a failed exchange");
                let req = replay.expect("checked above").into_request();
                self.try_send(req, kind).await.map_err(|f| self.classify(f))
            }
            other => other.map_err(|f| self.classify(f)),
        }
    }

    async fn try_send(
        &self,
        req: Request<Body>,
        kind: Exchange,
    ) -> Result<Response<Leased>, Failure> {
        let (req, sent) = Outgoing::watch(req, self.keep_underscores);
        let exchange = self.exchange(req, kind);
        tokio::pin!(exchange);
        let deadline = async {
            if let Some(sent) = sent {
                // A dropped sender means the body ended early (an error): start the clock anyway.
                let _ = sent.await;
            }
            tokio::time::sleep(self.timeout).await;
        };
        tokio::select! {
            r = &mut exchange => r,
            _ = deadline => Err(Failure::Timeout),
        }
    }

    /// One exchange on a pooled connection. A request that never left (its connection closed
    /// as it was taken) goes on another one, as hyper-util's client does; the backend never saw it.
    async fn exchange(
        &self,
        mut req: Request<Outgoing>,
        kind: Exchange,
    ) -> Result<Response<Leased>, Failure> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut lease = self.pool.checkout().await.map_err(Failure::Connect)?;
            match lease.sender().try_send_request(req).await {
                Ok(rsp) if rsp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    if kind != Exchange::Upgrade {
                        // What follows on this connection is no longer HTTP/1.1 as the proxy
                        // reads it; it is closed with the lease.
                        return Err(Failure::Exchange(
                            "the backend answered 101 to a request that offered no upgrade".into(),
                        ));
                    }
                    // The connection now belongs to the tunnel.
                    return Ok(rsp.map(Leased::from));
                }
                Ok(rsp) => {
                    if kind != Exchange::Plain {
                        lease.forbid_reuse();
                    }
                    return Ok(rsp.map(|body| Leased::on(lease, body)));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if lease.reused() && tries < UNSENT_TRIES => req = unsent,
                    _ => return Err(Failure::Exchange(e.into_error().into())),
                },
            }
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
                Error::BackendConnect(error_chain::chain(&*e))
            }
            Failure::Exchange(e) => match client_body_failure(&*e) {
                Some(stalled) => Error::ClientBody { stalled },
                None => {
                    self.metrics.backend_error(BackendErrorKind::Failed);
                    Error::BackendFailed(error_chain::chain(&*e))
                }
            },
        }
    }
}

/// What an exchange is to the connection it goes on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// An ordinary exchange: the connection is pooled again once both messages are complete.
    Plain,
    /// A body on a method whose body a backend may ignore: the connection closes afterwards.
    Unpooled,
    /// An upgrade offer: the connection goes to the tunnel, or closes.
    Upgrade,
}

/// Makes the framing fields say what is sent: a body the proxy replaced must not keep the
/// client's `Content-Length` (hyper sends a user's `Content-Length` as it is, even over an empty
/// body), and `Transfer-Encoding` is hyper's to write. A streamed body keeps the length the
/// client declared, which hyper holds it to.
fn frame_as_sent(req: &mut Request<Body>) {
    let length = match req.body() {
        Body::Empty => 0,
        Body::Full(Some(b)) => b.len() as u64,
        Body::Full(None) => 0,
        Body::Streamed(_) | Body::Idle(_) => return,
    };
    let h = req.headers_mut();
    h.remove(header::TRANSFER_ENCODING);
    if length > 0 || h.contains_key(header::CONTENT_LENGTH) {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
}

/// Whether an exchange failed because the client's request body did (`Some(true)` when it
/// stalled for `server.body_idle_timeout`): hyper reports a failing request body as a user error
/// with the body's error as its cause. That is the client's doing, not the backend's.
fn client_body_failure(e: &(dyn std::error::Error + 'static)) -> Option<bool> {
    let hyper = e.downcast_ref::<hyper::Error>()?;
    let cause = std::error::Error::source(hyper)?;
    if !hyper.is_user() {
        return None;
    }
    let mut cur = Some(cause);
    while let Some(c) = cur {
        if c.is::<crate::body::BodyIdleTimeout>() {
            return Some(true);
        }
        cur = c.source();
    }
    Some(false)
}

/// The request target as the backend gets it: origin form (RFC 9112 §3.2.1), the bytes of the
/// path and query exactly as received (no decoding of `%2F`, no dot-segment removal); `*` stays.
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

enum Failure {
    Timeout,
    Connect(BoxError),
    Exchange(BoxError),
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
