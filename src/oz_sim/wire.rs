//! Small HTTP helpers shared by the simulator's handlers: JSON answers, content-type essences,
//! the origin answers link back to, and timestamps. Request bodies are read in `body`.
//!
//! JSON endpoints (docs/oz-api.md §1.1, §3.1) are sent as `application/json`; the simulator insists on
//! that header, as a form-parsing server would not find JSON fields otherwise.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, HOST};
use hyper::http::uri::Authority;
use hyper::http::Uri;
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

/// `http://{authority}` as the client addressed the simulator, for URLs in answers the client
/// should be able to follow: the request target's authority (HTTP/2 `:authority`, absolute
/// form), else `Host`, else the address the connection arrived on. An authority that does not
/// parse as one, or that carries user info, is passed over, so an answer never links elsewhere
/// than a host and port. Plain `http`: the simulator serves no TLS.
pub fn origin(uri: &Uri, headers: &HeaderMap, local: SocketAddr) -> String {
    let usable = |a: &Authority| !a.as_str().contains('@');
    let authority = uri.authority().filter(|a| usable(a)).cloned().or_else(|| {
        let host = headers.get(HOST)?.to_str().ok()?;
        host.parse::<Authority>().ok().filter(usable)
    });
    match authority {
        Some(a) => format!("http://{a}"),
        None => format!("http://{local}"),
    }
}

/// Seconds since the Unix epoch, with a fractional part. Oz documents its time filters as
/// UNIX timestamps (docs/oz-api.md §3.6), so timestamps go out in that unit.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_prefers_the_target_then_host_then_the_local_address() {
        let local: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let mut headers = HeaderMap::new();
        let path: Uri = "/api/folders/f".parse().unwrap();
        assert_eq!(origin(&path, &headers, local), "http://127.0.0.1:9000");
        headers.insert(HOST, HeaderValue::from_static("oz.example:8080"));
        assert_eq!(origin(&path, &headers, local), "http://oz.example:8080");
        let absolute: Uri = "http://other.example/api/folders/f".parse().unwrap();
        assert_eq!(origin(&absolute, &headers, local), "http://other.example");
        for bad in ["user@evil.example", "a b", "x/y"] {
            headers.insert(HOST, HeaderValue::from_static(bad));
            assert_eq!(
                origin(&path, &headers, local),
                "http://127.0.0.1:9000",
                "{bad}"
            );
        }
    }
}
