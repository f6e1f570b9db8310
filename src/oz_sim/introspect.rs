//! `/_sim/…`: what the simulator saw, and fault injection over HTTP, for people and `demo`.
//!
//! - `GET /_sim/uploads`: a summary of each upload (folder id, endpoint, parts with names,
//!   content types and sizes, ZIP entry names, tags and folder metadata). Never frame bytes,
//!   never an `additional_info` value (docs/oz-api.md §2.6, §7: client data stays out).
//! - `GET /_sim/uploads/{folder_id}` (or `/_sim/uploads/last`): one upload in full, for the
//!   `demo` page: ZIP entries with their images as data URLs, tags and `additional_info`. It
//!   answers only a peer on loopback (403 otherwise): frames and client data stay on the machine.
//! - `GET /_sim/calls`: method, path, endpoint, status and injected delay of each Oz call.
//! - `GET /_sim/faults`: pending failures, latencies, the `PROCESSING` hold, verdict, polls and
//!   mode.
//! - `POST /_sim/faults`: change them; the body is described at [`super::faults`].
//!   Injected failures answer with Oz's generic error, `error_code` 0 (docs/oz-api.md §5), or the
//!   `error_code` the rule names.
//!
//! These paths need no token: they are the simulator's own controls, not Oz endpoints.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::body::read_body;
use super::config::Verdict;
use super::error::{ApiError, ErrorCode};
use super::faults::{check_fault_status, Endpoint, FaultRequest};
use super::state::OzSim;
use super::wire::{json_rsp, Rsp};

/// Largest `/_sim/faults` body read.
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// Answers a `/_sim/…` request from `peer`.
pub(crate) async fn handle(sim: &OzSim, req: Request<Incoming>, peer: SocketAddr) -> Rsp {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let one_upload = path
        .strip_prefix("/_sim/uploads/")
        .filter(|id| !id.is_empty() && !id.contains('/'));
    let rsp = match (&method, path.as_str()) {
        (&Method::GET, "/_sim/uploads") => Ok(uploads(sim)),
        (&Method::GET, _) if one_upload.is_some() => {
            upload_detail(sim, one_upload.unwrap_or_default(), peer)
        }
        (&Method::GET, "/_sim/calls") => Ok(calls(sim)),
        (&Method::GET, "/_sim/faults") => Ok(json_rsp(StatusCode::OK, &faults_view(sim))),
        (&Method::POST, "/_sim/faults") => {
            let (parts, body) = req.into_parts();
            match read_body(body, &parts.headers, MAX_CONTROL_BODY).await {
                Ok(body) => set_faults(sim, &body),
                Err(e) => Err(e),
            }
        }
        _ => Err(ApiError::not_found(format!(
            "no simulator control at {method} {path}; try GET /_sim/uploads, GET /_sim/calls, \
             GET or POST /_sim/faults"
        ))),
    };
    let rsp = rsp.unwrap_or_else(ApiError::into_rsp);
    tracing::debug!(%method, %path, status = rsp.status().as_u16(), "oz-sim control answered");
    rsp
}

fn uploads(sim: &OzSim) -> Rsp {
    let list: Vec<Value> = sim.uploads().iter().map(|u| u.summary()).collect();
    json_rsp(StatusCode::OK, &Value::Array(list))
}

/// One upload in full (frames and `additional_info` included), to a loopback peer only.
fn upload_detail(sim: &OzSim, id: &str, peer: SocketAddr) -> Result<Rsp, ApiError> {
    if !peer.ip().to_canonical().is_loopback() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AuthForbidden,
            "an upload's frames and additional_info are shown on loopback only",
        ));
    }
    let uploads = sim.uploads();
    let found = if id == "last" {
        uploads.last()
    } else {
        uploads.iter().rev().find(|u| u.folder_id == id)
    };
    found
        .map(|u| json_rsp(StatusCode::OK, &u.detail()))
        .ok_or_else(|| ApiError::not_found(format!("no upload made folder {id}")))
}

fn calls(sim: &OzSim) -> Rsp {
    let list: Vec<Value> = sim.calls().iter().map(|c| c.summary()).collect();
    json_rsp(StatusCode::OK, &Value::Array(list))
}

fn faults_view(sim: &OzSim) -> Value {
    let st = sim.lock();
    let mut v = st.faults.summary();
    v["verdict"] = json!(st.cfg.verdict.as_str());
    v["polls_until_final"] = json!(st.cfg.polls_until_final);
    v["single_request"] = json!(st.cfg.single_request);
    v
}

/// Checks the whole request first, then applies it, so a bad member changes nothing.
fn set_faults(sim: &OzSim, body: &[u8]) -> Result<Rsp, ApiError> {
    let req: FaultRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::structure(format!("faults body: {e}")))?;
    let fail_next = req
        .fail_next
        .map(|f| f.into_vec())
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let endpoint: Endpoint = f.endpoint.parse().map_err(ApiError::value)?;
            check_fault_status(f.status).map_err(ApiError::value)?;
            Ok((endpoint, f.status, f.count, f.error_code))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let latency = req
        .latency_ms
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ms)| {
            let endpoint: Endpoint = name.parse().map_err(ApiError::value)?;
            Ok((endpoint, Duration::from_millis(ms)))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let verdict = req
        .verdict
        .map(|v| v.parse::<Verdict>())
        .transpose()
        .map_err(|e| ApiError::value(e.to_string()))?;

    {
        let mut st = sim.lock();
        if req.clear {
            st.faults.clear();
        }
        for (endpoint, status, count, error_code) in fail_next {
            st.faults
                .fail_next_with_code(endpoint, status, count, error_code);
        }
        for (endpoint, d) in latency {
            st.faults.set_latency(endpoint, d);
        }
        if req.expire_tokens {
            st.sessions.expire_all();
        }
        if let Some(v) = verdict {
            st.cfg.verdict = v;
        }
        if let Some(n) = req.polls_until_final {
            st.cfg.polls_until_final = n;
        }
        if let Some(on) = req.single_request {
            st.cfg.single_request = on;
        }
        if let Some(n) = req.unfinished_analyses {
            st.faults.set_unfinished_analyses(n);
        }
        if let Some(ms) = req.processing_for_ms {
            st.faults.set_processing_for(Duration::from_millis(ms));
        }
    }
    Ok(json_rsp(StatusCode::OK, &faults_view(sim)))
}
