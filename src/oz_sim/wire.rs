//! Small HTTP helpers shared by the simulator's handlers: JSON answers, content-type essences
//! and timestamps. Request bodies are read in `body`.
//!
//! JSON endpoints (docs/oz-api.md §1.1, §3.1) are sent as `application/json`; the simulator insists on
//! that header, as a form-parsing server would not find JSON fields otherwise.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::Value;

/// The answer type of every handler.
pub(crate) type Rsp = Response<Full<Bytes>>;

/// A JSON answer with `status`.
pub fn json_rsp(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(Bytes::from(body.to_string())));
    *rsp.status_mut() = status;
    rsp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    rsp
}

/// The lowercase media type of a `Content-Type` value, without parameters.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The request's `Content-Type` as text, if present and visible ASCII.
pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

/// Seconds since the Unix epoch, with a fractional part. Oz documents its time filters as
/// UNIX timestamps (docs/oz-api.md §3.6), so timestamps go out in that unit.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
