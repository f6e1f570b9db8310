//! Dispatch: the per-request entry point. Cleans the request, decides its route and hands it on.
//!
//! Steps, named after Pingora's phases:
//! 1. request filter: refuse `CONNECT` and ambiguous framing, drop forged `x-oz-*` fields, decide
//!    the route, remove hop-by-hop fields (keeping `Upgrade` only on an upgrade), set `Host` from
//!    an absolute-form target or `:authority`, then add the forwarding headers and a request id;
//! 2. route: `POST` on a capture path (matched on the normalized path, see `proxy::path`) goes to
//!    `capture`; an HTTP/1.1 upgrade goes to the tunnel; everything else is passthrough;
//! 3. upstream request filter: the backend URI, then the backend client;
//! 4. response filter: hop-by-hop removal on the way back; failures become problem responses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::body::{Body, Streamed};
use crate::capture::handler::CaptureService;
use crate::config::CaptureRoute;
use crate::error::Error;
use crate::metrics::{Metrics, RouteKind};
use crate::problem;
use crate::proxy::headers::{self, Forwarding, Peer};
use crate::proxy::observe::{Observation, ObservedBody};
use crate::proxy::passthrough::Passthrough;
use crate::proxy::path;
use crate::proxy::upgrade::Tunnels;
use crate::telemetry::AccessLog;

/// Capture routes by normalized path.
#[derive(Default)]
pub struct RouteTable {
    by_path: HashMap<String, Arc<CaptureRoute>>,
}

impl RouteTable {
    /// Indexes `routes` by their normalized path.
    pub fn new(routes: Vec<CaptureRoute>) -> Self {
        RouteTable {
            by_path: routes
                .into_iter()
                .map(|r| (path::normalize(r.path.as_bytes()), Arc::new(r)))
                .collect(),
        }
    }

    /// The capture route that `target` (path and query, raw) hits, if any.
    pub fn lookup(&self, target: &str) -> Option<&Arc<CaptureRoute>> {
        if self.by_path.is_empty() {
            return None;
        }
        self.by_path.get(&path::normalize(target.as_bytes()))
    }
}

/// What a config reload may swap: routes and everything the capture path uses.
pub struct Live {
    pub routes: RouteTable,
    pub capture: Option<CaptureService>,
}

/// The proxy service shared by all connections. Cloning is cheap.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    passthrough: Passthrough,
    forwarding: Forwarding,
    metrics: Metrics,
    access: AccessLog,
    tunnels: Tunnels,
    live: Arc<ArcSwap<Live>>,
    /// `server.body_idle_timeout`; `None` when turned off.
    body_idle: Option<Duration>,
}

impl Proxy {
    /// Builds the service; `live` is shared with the config reloader.
    pub fn new(
        passthrough: Passthrough,
        forwarding: Forwarding,
        metrics: Metrics,
        access: AccessLog,
        tunnels: Tunnels,
        live: Arc<ArcSwap<Live>>,
        body_idle: Option<Duration>,
    ) -> Self {
        Proxy {
            inner: Arc::new(Inner {
                passthrough,
                forwarding,
                metrics,
                access,
                tunnels,
                live,
                body_idle,
            }),
        }
    }

    /// Handles one request from `peer`. Never fails: failures become problem responses.
    pub async fn handle(&self, mut req: Request<Incoming>, peer: Peer) -> Response<ObservedBody> {
        let me = &*self.inner;
        let mut obs = Observation::start(
            &me.metrics,
            &me.access,
            req.method().clone(),
            req.uri().path_and_query().cloned(),
        );

        // Framing is judged on the headers as received, before anything is removed.
        let checked = check_request(&req);
        headers::strip_oz_headers(req.headers_mut());
        let route = self.capture_route(&req);
        let upgrade = route.is_none()
            && req.version() == Version::HTTP_11
            && headers::is_upgrade_request(req.headers());
        // Hop-by-hop removal comes before the proxy adds its own fields: otherwise a client could
        // name `X-Forwarded-For` or `X-Request-Id` in `Connection` and have them stripped.
        headers::strip_hop_by_hop(req.headers_mut(), upgrade);
        host_from_target(&mut req);
        if req.version() == Version::HTTP_2 {
            join_cookies(req.headers_mut());
        }
        let request_id = me.forwarding.apply(req.headers_mut(), &peer);
        obs.set_request_id(request_id.clone());
        let id = request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");

        let result = if let Err(e) = checked {
            Err(e)
        } else if let Some(route) = route {
            obs.set_kind(RouteKind::Capture);
            let live = me.live.load_full();
            match &live.capture {
                Some(capture) => capture.handle(&route, req, id).await,
                None => Err(Error::Capture(crate::capture::Error::Internal)),
            }
        } else if upgrade {
            obs.set_kind(RouteKind::Upgrade);
            self.upgrade(req).await
        } else {
            self.passthrough(req).await
        };

        let rsp = result.unwrap_or_else(|e| {
            log_failure(&e, id);
            problem::respond(&e, id)
        });
        obs.finish(rsp)
    }

    fn capture_route(&self, req: &Request<Incoming>) -> Option<Arc<CaptureRoute>> {
        if req.method() != Method::POST {
            return None;
        }
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        self.inner.live.load().routes.lookup(target).cloned()
    }

    /// Forwards a request whose headers the request filter has already rewritten.
    async fn passthrough(&self, req: Request<Incoming>) -> Result<Response<Body>, Error> {
        let (parts, body) = req.into_parts();
        let body = Body::streamed(body, self.inner.body_idle);
        let rsp = self
            .inner
            .passthrough
            .send(Request::from_parts(parts, body))
            .await?;
        Ok(response_filter(rsp, false, self.inner.body_idle))
    }

    async fn upgrade(&self, mut req: Request<Incoming>) -> Result<Response<Body>, Error> {
        let client_side = hyper::upgrade::on(&mut req);
        let (parts, _body) = req.into_parts();
        let mut rsp = self
            .inner
            .passthrough
            .send(Request::from_parts(parts, Body::Empty))
            .await?;
        if rsp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response_filter(rsp, false, self.inner.body_idle));
        }
        let backend_side = hyper::upgrade::on(&mut rsp);
        self.inner.tunnels.spawn(client_side, backend_side);
        Ok(response_filter(rsp, true, None))
    }
}

/// Strips hop-by-hop fields from a backend response and makes it ours; its body is cut when the
/// backend stalls for `body_idle`.
pub(crate) fn response_filter(
    rsp: Response<Streamed>,
    upgraded: bool,
    body_idle: Option<Duration>,
) -> Response<Body> {
    let (mut parts, body) = rsp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, upgraded);
    // We speak HTTP/1.1 (or 2) to the client whatever the backend spoke (RFC 9110 §2.5).
    parts.version = Version::HTTP_11;
    let body = if upgraded {
        Body::Empty
    } else {
        Body::streamed(body, body_idle)
    };
    Response::from_parts(parts, body)
}

/// Refuses what must never be forwarded.
fn check_request(req: &Request<Incoming>) -> Result<(), Error> {
    if req.method() == Method::CONNECT {
        return Err(Error::MethodNotAllowed);
    }
    // RFC 9112 §6.1: a message with both is a smuggling attempt. On HTTP/1 hyper never lets one
    // through: it frames the request by Transfer-Encoding alone, drops Content-Length and closes
    // the connection after the response (the RFC's other permitted answer), so the backend gets
    // one clean chunked request. This guards every other way in.
    let h = req.headers();
    if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        return Err(Error::BadRequest(
            "a request must not carry both Content-Length and Transfer-Encoding",
        ));
    }
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, with more
    // than one, or with an invalid one; forwarding it would leave the backend to guess.
    if req.version() == Version::HTTP_11 {
        let mut hosts = h.get_all(header::HOST).iter();
        let valid = match (hosts.next(), hosts.next()) {
            (Some(host), None) => valid_host(host),
            _ => false,
        };
        if !valid {
            return Err(Error::BadRequest(
                "an HTTP/1.1 request needs exactly one valid Host header",
            ));
        }
    }
    Ok(())
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2); userinfo has no place in Host.
fn valid_host(v: &HeaderValue) -> bool {
    !v.is_empty()
        && !v.as_bytes().contains(&b'@')
        && http::uri::Authority::try_from(v.as_bytes()).is_ok()
}

/// Sets `Host` from the request target when the target carries an authority: absolute-form on
/// HTTP/1.1, where the recipient must ignore `Host` and use the target's authority (RFC 9112
/// §3.2.2), and `:authority` on HTTP/2, which an intermediary must use as `Host` when it makes
/// an HTTP/1.1 request (RFC 9113 §8.3.1). Userinfo is never part of `Host`.
fn host_from_target(req: &mut Request<Incoming>) {
    let Some(authority) = req.uri().authority() else {
        return;
    };
    let value = match authority.as_str().rsplit_once('@') {
        None => HeaderValue::from_str(authority.as_str()),
        Some((_, host)) => HeaderValue::from_str(host),
    };
    if let Ok(v) = value {
        req.headers_mut().insert(header::HOST, v);
    }
}

/// Joins split `cookie` fields with "; " for an HTTP/1.1 backend (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut http::HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_some() {
        let joined: Vec<u8> = headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect::<Vec<_>>()
            .join(&b"; "[..]);
        if let Ok(v) = HeaderValue::from_bytes(&joined) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// Client mistakes are not the operator's problem; upstream failures are.
fn log_failure(err: &Error, request_id: &str) {
    match err {
        Error::BackendConnect(_)
        | Error::BackendTimeout
        | Error::BackendFailed(_)
        | Error::Oz(_) => {
            tracing::warn!(error = %err, request_id, "request failed upstream")
        }
        Error::Capture(crate::capture::Error::Internal) => {
            tracing::error!(error = %err, request_id, "capture failed")
        }
        _ => tracing::debug!(error = %err, request_id, "request refused"),
    }
}
