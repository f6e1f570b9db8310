//! Dispatch: the per-request entry point. Cleans the request, decides its route and hands it on.
//!
//! Steps, named after Pingora's phases:
//! 1. request filter: refuse what two parsers could read two ways (see [`check_request`]:
//!    `CONNECT`, lower-case methods, authority-form and `//` targets, ambiguous framing and
//!    `Host`, heads over the limits on HTTP/2 as on HTTP/1), drop forged `x-oz-*` fields in every
//!    spelling, decide the route, remove hop-by-hop fields (keeping `Upgrade` only on an allowed
//!    upgrade), set `Host` from an absolute-form target or `:authority`, then add the forwarding
//!    headers and a request id;
//! 2. route: a capture method on a capture path (matched on the normalized path, see
//!    `proxy::path`) goes to `capture`; another method with a body there gets 405; a spelling
//!    that some framework folds onto a capture path gets 400 (`capture.strict_paths`); an
//!    HTTP/1.1 upgrade to an allowed protocol goes to the tunnel; everything else is passthrough;
//! 3. request body filter: a capture is checked by `capture` (Oz's verdict), which answers the
//!    client itself or gives back the request the backend is to get; any other body streams;
//! 4. upstream request: the one place a request goes to the backend (`proxy::passthrough`), for
//!    passthrough and checked captures alike;
//! 5. response filter: hop-by-hop removal on the way back; failures are classified once
//!    (`crate::problem`) and become problem responses, log lines and metrics.
//!
//! A traced request (`crate::trace`) gets its server span once the route is known, before
//! anything is sent on: its head then carries the proxy's `traceparent`, a capture runs inside the
//! span's context (so its Oz calls are children of it), and the span ends with the observation.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::{Body as _, Incoming};
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::capture::handler::{CaptureService, Checked, FollowUp, Outcome, Summary};
use crate::capture::timing::SERVER_TIMING;
use crate::config::{CaptureRoute, ServerConfig};
use crate::error::Error;
use crate::metrics::{Metrics, RouteKind};
use crate::problem::{self, Severity};
use crate::proxy::headers::{self, Forwarding, Peer};
use crate::proxy::late::LateVerdicts;
use crate::proxy::observe::{Observation, ObservedBody};
use crate::proxy::passthrough::Passthrough;
use crate::proxy::pool::Leased;
use crate::proxy::upgrade::Tunnels;
use crate::proxy::ResponseBody;
use crate::telemetry::AccessLog;
use crate::trace::{RequestSpan, Tracing};

pub use crate::proxy::routes::{Captures, Hit, Live, RouteTable};

/// The request rules of the traffic listener (`server.*`), fixed until a restart.
#[derive(Clone, Debug)]
pub struct RequestRules {
    /// `server.upgrade_protocols`.
    pub upgrade_protocols: Vec<String>,
    /// `server.underscores_in_headers`.
    pub keep_underscores: bool,
    /// `server.max_headers`, enforced here for HTTP/2 (hyper enforces it for HTTP/1).
    pub max_headers: usize,
    /// `server.max_header_bytes`, the same.
    pub max_header_bytes: usize,
}

impl RequestRules {
    /// The rules of `server`.
    pub fn from_config(server: &ServerConfig) -> Self {
        RequestRules {
            upgrade_protocols: server.upgrade_protocols.clone(),
            keep_underscores: server.underscores_in_headers,
            max_headers: server.max_headers,
            max_header_bytes: server.max_header_bytes,
        }
    }
}

/// The proxy service shared by all connections. Cloning is cheap.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    passthrough: Passthrough,
    forwarding: Forwarding,
    rules: RequestRules,
    metrics: Metrics,
    access: AccessLog,
    tunnels: Tunnels,
    /// Captures followed for their late verdict.
    late: LateVerdicts,
    live: Arc<ArcSwap<Live>>,
    /// `server.body_idle_timeout`; `None` when turned off.
    body_idle: Option<Duration>,
    /// Cancelled by the shutdown signal: from then on HTTP/1 answers carry `Connection: close`,
    /// so keep-alive clients move to another pod before the listener closes under them.
    draining: CancellationToken,
    tracing: Tracing,
}

/// Where a request goes once its head is clean; a capture goes with what runs it.
#[derive(Debug)]
pub enum Route<S = ()> {
    Capture {
        route: Arc<CaptureRoute>,
        service: S,
        /// The client's address for the rate limits (`Forwarding::client_ip`).
        client_ip: std::net::IpAddr,
    },
    /// A tunnel for the allowed protocols of the offer, as forwarded in `Upgrade`.
    Upgrade(HeaderValue),
    Passthrough,
}

impl Proxy {
    /// Builds the service; `live` is shared with the config reloader.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        passthrough: Passthrough,
        forwarding: Forwarding,
        rules: RequestRules,
        metrics: Metrics,
        access: AccessLog,
        tunnels: Tunnels,
        live: Arc<ArcSwap<Live>>,
        body_idle: Option<Duration>,
        draining: CancellationToken,
        tracing: Tracing,
    ) -> Self {
        let late = LateVerdicts::new(
            passthrough.clone(),
            forwarding.request_id.clone(),
            live.clone(),
            metrics.clone(),
        );
        Proxy {
            inner: Arc::new(Inner {
                late,
                passthrough,
                forwarding,
                rules,
                metrics,
                access,
                tunnels,
                live,
                body_idle,
                draining,
                tracing,
            }),
        }
    }

    /// The captures followed for their late verdict, for the drain to list and cancel.
    pub fn late_verdicts(&self) -> LateVerdicts {
        self.inner.late.clone()
    }

    /// Handles one request from `peer`. Never fails: failures become problem responses.
    pub async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<ObservedBody> {
        let me = &*self.inner;
        let mut obs = Observation::start(
            &me.metrics,
            &me.access,
            req.method().clone(),
            req.uri().path_and_query().cloned(),
        );

        let (mut head, body) = req.into_parts();
        let has_body = !body.is_end_stream();
        let http1 = head.version <= Version::HTTP_11;
        let filtered = request_filter(
            &mut head,
            has_body,
            &me.rules,
            me.live.load().captures.as_ref(),
            &me.forwarding,
            &peer,
        );
        if me.tracing.is_on() {
            let route = match &filtered.route {
                Ok(Route::Capture { route, .. }) => Some(route.path.as_str()),
                _ => None,
            };
            obs.set_trace(me.tracing.server_span(&mut head, route));
        }
        let req = Request::from_parts(head, body);
        obs.set_request_id(filtered.request_id.clone());
        let id = filtered
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");

        let result = match filtered.route {
            Err(e) => Err(e),
            Ok(Route::Capture {
                route,
                service,
                client_ip,
            }) => {
                obs.set_kind(RouteKind::Capture);
                let trace = obs.trace();
                let capture = self.capture(&service, &route, req, client_ip, id, trace);
                match trace {
                    Some(span) => {
                        use opentelemetry::context::FutureExt as _;
                        use tracing::Instrument as _;
                        // The capture's log lines carry the trace's ids; its Oz calls are children
                        // of the span.
                        let (trace_id, span_id) = span.ids();
                        let lines = tracing::info_span!("trace", trace_id, span_id);
                        capture
                            .with_context(span.context().clone())
                            .instrument(lines)
                            .await
                    }
                    None => capture.await,
                }
            }
            Ok(Route::Upgrade(offer)) => {
                obs.set_kind(RouteKind::Upgrade);
                self.upgrade(req, offer).await
            }
            Ok(Route::Passthrough) => {
                let (parts, body) = req.into_parts();
                let body = Body::streamed(body, me.body_idle);
                self.upstream_request(Request::from_parts(parts, body))
                    .await
            }
        };

        let mut rsp = result.unwrap_or_else(|e| {
            let class = problem::classify(&e);
            let ids = obs.trace().map(|span| {
                span.fail(class.problem.code);
                span.ids()
            });
            log_failure(&e, class.severity, id, ids.as_ref());
            // Only a capture's own failures (refused, or Oz failed) have a capture outcome.
            if let Some(outcome) = class.capture_outcome {
                me.metrics.capture_done(outcome);
            }
            let may_leave_body_unread = class.may_leave_body_unread;
            let mut rsp = problem::respond(&e, class, id);
            // An error answered before the body has been read ends the connection (HTTP/1).
            if http1 && has_body && may_leave_body_unread {
                rsp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            rsp
        });
        if http1 && me.draining.is_cancelled() && rsp.status() != StatusCode::SWITCHING_PROTOCOLS {
            rsp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        obs.finish(rsp)
    }

    /// The upstream request: sends a request whose head the request filter has already
    /// rewritten (and, for a capture, whose body it has checked) to the backend, and passes the
    /// answer through the response filter.
    async fn upstream_request(&self, req: Request<Body>) -> Result<Response<ResponseBody>, Error> {
        let rsp = self.inner.passthrough.send(req).await?;
        Ok(response_filter(rsp, false, self.inner.body_idle))
    }

    /// Has `service` check a capture, then answers the client or forwards the checked request
    /// upstream. A failed capture is counted where every failure is classified, in
    /// [`Proxy::handle`]. A verdict still `PROCESSING` on a route with `late_verdict_path` is followed from here
    /// (`proxy::late`): in respond mode at once, in forward mode once the forward has ended
    /// however it ended (answered, timed out, or the client gone, which drops this future: the
    /// backend may have the capture all the same), except when the backend could not be reached
    /// at all (the client will send again). On a route with `capture.server_timing` the answer
    /// gets the capture's phases and, in forward mode, the backend's time, as one more
    /// `Server-Timing` field beside any the backend sent; a failure's problem answer gets none.
    async fn capture(
        &self,
        service: &Arc<CaptureService>,
        route: &CaptureRoute,
        req: Request<Incoming>,
        client_ip: std::net::IpAddr,
        request_id: &str,
        trace: Option<&RequestSpan>,
    ) -> Result<Response<ResponseBody>, Error> {
        let Checked {
            outcome,
            follow_up,
            mut timings,
            summary,
        } = service
            .handle(route, req, client_ip, request_id)
            .await
            .map_err(Error::from)?;
        if let Some(span) = trace {
            trace_capture(span, &timings, &summary);
        }
        let mut follow = FollowWhenDone {
            late: &self.inner.late,
            service,
            follow_up,
        };
        let rsp = match outcome {
            Outcome::Respond(rsp) => Ok(rsp.map(Body::full)),
            Outcome::Forward(mut req) => {
                let backend_span = trace.and_then(|span| {
                    let method = req.method().clone();
                    span.backend_span(&method, req.headers_mut())
                });
                // Up to the response head: the body streams on after this returns.
                let sent = tokio::time::Instant::now();
                let rsp = self.upstream_request(req.map(Body::full)).await;
                timings.backend = Some(sent.elapsed());
                if let Some(span) = backend_span {
                    match &rsp {
                        Ok(r) => span.end(Some(r.status().as_u16()), None),
                        Err(e) => span.end(None, Some(problem::classify(e).problem.code)),
                    }
                }
                rsp
            }
        };
        if let Err(Error::BackendConnect(_)) = &rsp {
            follow.follow_up = None;
        }
        let mut rsp = rsp?;
        if let Some(t) = route
            .server_timing
            .then_some(timings)
            .filter(|t| !t.is_empty())
        {
            // `append`, not `insert`: the backend's own entries stay (RFC 9110 §5.3 makes the
            // fields one list).
            rsp.headers_mut().append(SERVER_TIMING, t.header_value());
        }
        Ok(rsp)
    }

    /// Offers the upgrade to the backend and splices the two connections once it has accepted
    /// one of the protocols the client offered. The backend connection is never pooled again,
    /// whatever the answer.
    async fn upgrade(
        &self,
        mut req: Request<Incoming>,
        offer: HeaderValue,
    ) -> Result<Response<ResponseBody>, Error> {
        let client_side = hyper::upgrade::on(&mut req);
        let (parts, _empty) = req.into_parts();
        let mut rsp = self
            .inner
            .passthrough
            .send_upgrade(Request::from_parts(parts, Body::Empty))
            .await?;
        if rsp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response_filter(rsp, false, self.inner.body_idle));
        }
        if !headers::upgrade_accepted(&offer, rsp.headers()) {
            self.inner
                .metrics
                .backend_error(crate::metrics::BackendErrorKind::Failed);
            return Err(Error::BackendFailed(
                "the backend switched to a protocol the client did not offer".into(),
            ));
        }
        let backend_side = hyper::upgrade::on(&mut rsp);
        self.inner.tunnels.spawn(client_side, backend_side);
        Ok(response_filter(rsp, true, None))
    }
}

/// Starts following a capture's late verdict when dropped: at the end of [`Proxy::capture`],
/// whichever way it ends, the client going away included.
struct FollowWhenDone<'a> {
    late: &'a LateVerdicts,
    service: &'a Arc<CaptureService>,
    follow_up: Option<FollowUp>,
}

impl Drop for FollowWhenDone<'_> {
    fn drop(&mut self) {
        // A future dropped outside the runtime (never the case while serving) has nowhere to
        // run the follow-up.
        if let (Some(follow_up), Ok(_)) =
            (self.follow_up.take(), tokio::runtime::Handle::try_current())
        {
            self.late.spawn(follow_up, self.service.max_follow_ups());
        }
    }
}

/// What the request filter decided about one head.
pub struct Filtered<S = ()> {
    /// Where the request goes, or why it is refused.
    pub route: Result<Route<S>, Error>,
    /// The request id as forwarded (the client's when acceptable, else a fresh one).
    pub request_id: Option<HeaderValue>,
}

/// The request filter: everything the proxy decides from a request head alone, and the head
/// rewritten as the backend will get it. Refusals still get the forwarding headers and a request
/// id, so that the problem answer names one. A pure function of the head (no I/O), so a fuzz
/// target can hold it to the same invariants as the bypass suite.
pub fn request_filter<S: Clone>(
    head: &mut http::request::Parts,
    has_body: bool,
    rules: &RequestRules,
    routes: Option<&RouteTable<S>>,
    forwarding: &Forwarding,
    peer: &Peer,
) -> Filtered<S> {
    // Framing is judged on the headers as received, before anything is removed.
    let route = check_request(head, rules).and_then(|()| {
        headers::strip_forged(&mut head.headers, rules.keep_underscores);
        route(head, has_body, rules, routes, forwarding, peer)
    });
    // Hop-by-hop removal comes before the proxy adds its own fields: otherwise a client could
    // name `X-Forwarded-For` or `X-Request-Id` in `Connection` and have them stripped.
    let offer = match &route {
        Ok(Route::Upgrade(offer)) => Some(offer.clone()),
        _ => None,
    };
    headers::strip_hop_by_hop(&mut head.headers, offer.is_some());
    if let Some(offer) = offer {
        head.headers.insert(header::UPGRADE, offer);
    }
    host_from_target(head);
    if head.version == Version::HTTP_2 {
        join_cookies(&mut head.headers);
    }
    let request_id = forwarding.apply(&mut head.headers, peer);
    Filtered { route, request_id }
}

/// Decides the route of a head that passed [`check_request`]; without `routes` there are no
/// capture routes.
fn route<S: Clone>(
    head: &http::request::Parts,
    has_body: bool,
    rules: &RequestRules,
    routes: Option<&RouteTable<S>>,
    forwarding: &Forwarding,
    peer: &Peer,
) -> Result<Route<S>, Error> {
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let upgrade = head.version == Version::HTTP_11 && headers::is_upgrade_request(&head.headers);
    if let Some(table) = routes {
        match table.hit(&head.method, target, has_body, upgrade) {
            Hit::Capture(route) => {
                return Ok(Route::Capture {
                    route: route.clone(),
                    service: table.service().clone(),
                    // Before `Forwarding::apply` adds the peer to `X-Forwarded-For`.
                    client_ip: forwarding.client_ip(&head.headers, peer),
                })
            }
            Hit::WrongMethod(allow) => return Err(Error::CaptureMethod { allow }),
            Hit::Spelling => {
                return Err(Error::BadRequest(
                    "this spelling of a capture path is refused (capture.strict_paths): send the path exactly as configured",
                ))
            }
            Hit::Reserved => return Err(Error::ReservedPath),
            // Never an upgrade on a capture path: nothing inside a tunnel is checked.
            Hit::Bodiless => return Ok(Route::Passthrough),
            Hit::Miss => {}
        }
    }
    if !upgrade {
        return Ok(Route::Passthrough);
    }
    // Protocols not on the allow-list are not offered to the backend; with none left the
    // request is an ordinary one (a server may ignore `Upgrade`, RFC 9110 §7.8).
    let Some(offer) = headers::allowed_upgrade(&head.headers, &rules.upgrade_protocols) else {
        return Ok(Route::Passthrough);
    };
    // An upgrade request is sent without a body: one that declares a body would leave its
    // bytes on the backend connection to be read as the next request (request smuggling).
    if has_body {
        return Err(Error::BadRequest(
            "an upgrade request must not carry a body (Content-Length above 0 or Transfer-Encoding)",
        ));
    }
    Ok(Route::Upgrade(offer))
}

/// The response filter: strips hop-by-hop fields from a backend response and makes it ours; its
/// body is cut when the backend stalls for `body_idle`.
fn response_filter(
    rsp: Response<Leased>,
    upgraded: bool,
    body_idle: Option<Duration>,
) -> Response<ResponseBody> {
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

/// Refuses what must never be forwarded: every request that the proxy and a backend could read
/// two ways. Collapses repeated identical `Content-Length` fields, as hyper does on HTTP/1.
fn check_request(req: &mut http::request::Parts, rules: &RequestRules) -> Result<(), Error> {
    if req.method == Method::CONNECT {
        return Err(Error::MethodNotAllowed);
    }
    // RFC 9110 §9.1: methods are case-sensitive, so `post` is not POST; but Werkzeug and Django
    // upper-case it and run their POST view. nginx refuses such methods too.
    if req.method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(Error::BadRequest(
            "a method must be written in upper case (backends disagree on what `post` means)",
        ));
    }
    let uri = &req.uri;
    // RFC 9112 §3.2.3: the authority form is only for CONNECT. Forwarding `GET host:443` as
    // `GET /` with that Host would make up a request the client never sent.
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Err(Error::BadRequest(
            "the authority form of a request target is only for CONNECT",
        ));
    }
    // `//a/b` is a path to this proxy but a network-path reference to `new URL(target, base)`
    // and `urlsplit`, which read `a` as a host and route `/b`.
    let path = uri.path().as_bytes();
    if path.len() >= 2 && path[0] == b'/' && matches!(path[1], b'/' | b'\\') {
        return Err(Error::BadRequest(
            "a request target must not start with `//`: backends read it as a host name",
        ));
    }
    if req.version == Version::HTTP_2 {
        check_h2_head_limits(&req.headers, rules)?;
    }
    // RFC 9112 §6.1: a message with both is a smuggling attempt. On HTTP/1 hyper never lets one
    // through: it frames the request by Transfer-Encoding alone, drops Content-Length and closes
    // the connection after the response (the RFC's other permitted answer), so the backend gets
    // one clean chunked request. This guards every other way in.
    let h = &mut req.headers;
    if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        return Err(Error::BadRequest(
            "a request must not carry both Content-Length and Transfer-Encoding",
        ));
    }
    collapse_content_length(h)?;
    check_host(req)
}

/// `server.max_headers` and `server.max_header_bytes` for HTTP/2, where hyper checks neither the
/// count nor (beyond the decoder's table) the size the way it does for HTTP/1. Size as RFC 9113
/// §6.5.2 counts it: name, value and 32 bytes per field.
fn check_h2_head_limits(h: &http::HeaderMap, rules: &RequestRules) -> Result<(), Error> {
    if h.len() > rules.max_headers {
        return Err(Error::HeadTooLarge(
            "more header fields than server.max_headers",
        ));
    }
    let size: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len() + 32).sum();
    if size > rules.max_header_bytes {
        return Err(Error::HeadTooLarge(
            "header fields larger than server.max_header_bytes",
        ));
    }
    Ok(())
}

/// Several `Content-Length` fields (or a list in one) are one length when all agree, and a
/// smuggling attempt when not (RFC 9112 §6.3).
fn collapse_content_length(h: &mut http::HeaderMap) -> Result<(), Error> {
    let mut values = h.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(());
    };
    if values.next().is_none() && !first.as_bytes().contains(&b',') {
        return Ok(());
    }
    let mut length: Option<&[u8]> = None;
    for item in h
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
    {
        let item = item.trim_ascii();
        if item.is_empty()
            || !item.iter().all(u8::is_ascii_digit)
            || length.is_some_and(|l| l != item)
        {
            return Err(Error::BadRequest(
                "a request must not carry differing Content-Length values",
            ));
        }
        length = Some(item);
    }
    let one = HeaderValue::from_bytes(length.expect("one value at least")).expect("digits");
    h.insert(header::CONTENT_LENGTH, one);
    Ok(())
}

/// One valid `Host` for every version, so the backend never has to pick one:
/// - HTTP/1.1: exactly one (RFC 9112 §3.2; an absolute-form target then replaces it);
/// - HTTP/1.0: at most one (a missing one becomes the backend's own authority);
/// - HTTP/2: `:authority`, which becomes `Host` (RFC 9113 §8.3.1), else exactly one `host`.
fn check_host(req: &http::request::Parts) -> Result<(), Error> {
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    let valid = match req.version {
        Version::HTTP_2 if req.uri.authority().is_some() => true,
        Version::HTTP_10 | Version::HTTP_09 => match (first, second) {
            (None, _) => true,
            (Some(host), None) => valid_host(host),
            _ => false,
        },
        _ => matches!((first, second), (Some(host), None) if valid_host(host)),
    };
    if valid {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "a request needs exactly one valid Host header",
        ))
    }
}

/// `uri-host [ ":" port ]` (RFC 9110 §7.2); userinfo has no place in Host.
///
/// Stricter than the RFC's `reg-name` on purpose: no sub-delims (`good,evil` is one host to the
/// URI grammar and a list to Express and Werkzeug's ProxyFix, which take different ends of it),
/// no percent-encoding, and a port of digits only.
fn valid_host(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    let (host, port) = match b.first() {
        Some(b'[') => match b.iter().position(|&c| c == b']') {
            Some(end) => {
                let literal = &b[1..end];
                let ok = !literal.is_empty()
                    && literal
                        .iter()
                        .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'));
                if !ok {
                    return false;
                }
                (&b[..=end], &b[end + 1..])
            }
            None => return false,
        },
        _ => match b.iter().position(|&c| c == b':') {
            Some(i) => (&b[..i], &b[i..]),
            None => (b, &b[b.len()..]),
        },
    };
    let host_ok = !host.is_empty()
        && (host[0] == b'['
            || host
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'~')));
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => {
            (1..=5).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    host_ok && port_ok
}

/// Sets `Host` from the request target when the target carries an authority: absolute-form on
/// HTTP/1.1, where the recipient must ignore `Host` and use the target's authority (RFC 9112
/// §3.2.2), and `:authority` on HTTP/2, which an intermediary must use as `Host` when it makes
/// an HTTP/1.1 request (RFC 9113 §8.3.1). Userinfo is never part of `Host`.
fn host_from_target(req: &mut http::request::Parts) {
    let Some(authority) = req.uri.authority() else {
        return;
    };
    let value = match authority.as_str().rsplit_once('@') {
        None => HeaderValue::from_str(authority.as_str()),
        Some((_, host)) => HeaderValue::from_str(host),
    };
    if let Ok(v) = value {
        req.headers.insert(header::HOST, v);
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

/// Logs a failure at the level its classification gives it, with the trace's ids when the
/// request is traced.
fn log_failure(err: &Error, severity: Severity, request_id: &str, ids: Option<&(String, String)>) {
    let trace_id = ids.map(|(t, _)| t.as_str());
    let span_id = ids.map(|(_, s)| s.as_str());
    match severity {
        Severity::Upstream => {
            tracing::warn!(error = %err, request_id, trace_id, span_id, "request failed upstream")
        }
        Severity::Bug => {
            tracing::error!(error = %err, request_id, trace_id, span_id, "capture failed")
        }
        Severity::Refusal => {
            tracing::debug!(error = %err, request_id, trace_id, span_id, "request refused")
        }
    }
}

/// A checked capture in its trace: `capture.parse` and `capture.zip` as child spans (they ran
/// on a capture thread, timed there), and what Oz made of it on the server span.
fn trace_capture(span: &RequestSpan, timings: &crate::capture::timing::Timings, s: &Summary) {
    use opentelemetry::KeyValue;
    if let Some([parse, zip]) = timings.transform_spans() {
        let mut parsed = vec![KeyValue::new("http.request.body.size", s.body_bytes as i64)];
        if let Some(frames) = s.frames {
            parsed.push(KeyValue::new("capture.frames", frames as i64));
        }
        span.phase("capture.parse", parse.0, parse.1, parsed);
        let zipped = vec![KeyValue::new("oz.upload.size", s.upload_bytes as i64)];
        span.phase("capture.zip", zip.0, zip.1, zipped);
    }
    let mut attributes = vec![
        KeyValue::new("http.request.body.size", s.body_bytes as i64),
        KeyValue::new("oz.upload.size", s.upload_bytes as i64),
    ];
    if let Some(folder) = &s.folder_id {
        attributes.push(KeyValue::new("oz.folder_id", folder.clone()));
    }
    if let Some(resolution) = s.resolution {
        attributes.push(KeyValue::new("oz.resolution", resolution));
    }
    if let Some(action) = &s.action {
        attributes.push(KeyValue::new("oz.action", action.clone()));
    }
    if let Some(frames) = s.frames {
        attributes.push(KeyValue::new("capture.frames", frames as i64));
    }
    span.record(attributes);
}
