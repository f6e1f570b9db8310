//! One request through the simulator: route, read the body, injected latency and failures,
//! token check, handler, call record.
//!
//! The order follows what a client of a real Oz sees (docs/oz-api.md §5): an outage (injected 5xx,
//! `error_code` 0) answers before authentication is looked at; a missing, unknown or expired
//! `X-Forensic-Access-Token` (codes 6, 7, 8, §1.1) answers before the request is judged.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW};
use hyper::http::request::Parts;
use hyper::{Method, Request, StatusCode};

use super::body::read_body;
use super::error::{ApiError, ErrorCode};
use super::faults::Failure;
use super::records::CallRecord;
use super::routes::{self, Miss, Route};
use super::state::OzSim;
use super::wire::{json_rsp, origin, Rsp};
use super::{analyses, folders, introspect, login, preview};

/// Answers one request that arrived on a connection from `peer` to `local`.
pub(crate) async fn handle(
    sim: OzSim,
    req: Request<Incoming>,
    local: SocketAddr,
    peer: SocketAddr,
) -> Rsp {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if path == "/_sim" || path.starts_with("/_sim/") {
        return introspect::handle(&sim, req, peer).await;
    }
    let (rsp, endpoint, delayed) = match routes::route(&method, &path) {
        Ok(route) => {
            let endpoint = route.endpoint();
            let (rsp, delayed) = serve_route(&sim, route, req, local).await;
            (rsp, Some(endpoint.name().to_owned()), delayed)
        }
        Err(miss) => (miss_rsp(miss, &method, &path), None, Duration::ZERO),
    };
    // Method, path and status only: bodies carry frames and additional_info, headers tokens.
    tracing::debug!(%method, %path, status = rsp.status().as_u16(), "oz-sim answered");
    sim.record_call(CallRecord {
        method: method.to_string(),
        path,
        endpoint,
        status: rsp.status().as_u16(),
        delayed,
        traceparent,
    });
    rsp
}

async fn serve_route(
    sim: &OzSim,
    route: Route,
    req: Request<Incoming>,
    local: SocketAddr,
) -> (Rsp, Duration) {
    let endpoint = route.endpoint();
    let (parts, body) = req.into_parts();
    let limit = sim.lock().cfg.max_body_bytes;
    // The body is read in full before anything else, so that even a refusal leaves the
    // connection clean for the client's next request.
    let body = match read_body(body, &parts.headers, limit).await {
        Ok(b) => b,
        Err(e) => return (e.into_rsp(), Duration::ZERO),
    };
    let delay = sim.lock().faults.latency(endpoint);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let injected = sim.lock().faults.take_failure(endpoint);
    let rsp = match injected {
        Some(failure) => injected_failure(failure),
        None => call(sim, route, &parts, body, local)
            .await
            .unwrap_or_else(ApiError::into_rsp),
    };
    (rsp, delay)
}

async fn call(
    sim: &OzSim,
    route: Route,
    parts: &Parts,
    body: Bytes,
    local: SocketAddr,
) -> Result<Rsp, ApiError> {
    let headers = &parts.headers;
    if !matches!(route, Route::Auth | Route::Refresh) {
        sim.lock().sessions.check(headers)?;
    }
    let endpoint = route.endpoint();
    // Where preview URLs in the answer point: back at this simulator, as the client reached it.
    let origin = origin(&parts.uri, headers, local);
    match route {
        Route::Auth => login::login(sim, headers, &body),
        Route::Refresh => login::refresh(sim, headers, &body),
        Route::CreateFolder | Route::CreateInstantFolder => {
            folders::create(sim, endpoint, parts, body, &origin).await
        }
        Route::StartAnalyses(f) => analyses::start(sim, &f, headers, &body, &origin),
        Route::ListAnalyses(f) => analyses::list(sim, &f, &origin),
        Route::GetAnalysis(a) => analyses::get(sim, &a, &origin),
        Route::GetFolder(f) => folders::get(
            sim,
            &f,
            query_flag(parts.uri.query(), "with_analyses"),
            &origin,
        ),
        Route::GetPreview(f, m) => preview::get(sim, &f, &m),
    }
}

/// The answer to an injected failure: Oz's error body (docs/oz-api.md §5) with the failure's code,
/// by default 0 and Oz's generic server error message.
fn injected_failure(failure: Failure) -> Rsp {
    let status = StatusCode::from_u16(failure.status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = ApiError::new(
        status,
        ErrorCode::Unknown,
        "Unknown server side error occurred",
    )
    .body();
    body["error_code"] = failure.error_code.into();
    json_rsp(status, &body)
}

fn miss_rsp(miss: Miss, method: &Method, path: &str) -> Rsp {
    match miss {
        Miss::NotFound => {
            ApiError::not_found(format!("no Oz API endpoint at {path} in this simulator"))
                .into_rsp()
        }
        Miss::MethodNotAllowed(allowed) => {
            let mut rsp = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::NotAllowed,
                format!("method {method} is not allowed on {path}; use {allowed}"),
            )
            .into_rsp();
            // RFC 9110 §15.5.6: a 405 must list the allowed methods.
            if let Ok(v) = HeaderValue::from_str(allowed.as_str()) {
                rsp.headers_mut().insert(ALLOW, v);
            }
            rsp
        }
    }
}

/// True when the query has `name=true` (or `1`).
fn query_flag(query: Option<&str>, name: &str) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(k, v)| k == name && (v.eq_ignore_ascii_case("true") || v == "1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_flag_reads_true_and_one() {
        assert!(query_flag(Some("with_analyses=true"), "with_analyses"));
        assert!(query_flag(Some("a=b&with_analyses=1"), "with_analyses"));
        assert!(!query_flag(Some("with_analyses=false"), "with_analyses"));
        assert!(!query_flag(None, "with_analyses"));
    }

    #[test]
    fn injected_status_must_be_an_error() {
        let failure = |status, error_code| injected_failure(Failure { status, error_code });
        assert_eq!(failure(503, 0).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(failure(200, 0).status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
