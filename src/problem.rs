//! The one place where failures are classified, and become `application/problem+json` responses
//! (RFC 9457).
//!
//! [`classify`] decides everything the proxy does with a `crate::Error`: its status and stable
//! `code` (clients and dashboards rely on the codes, so they are never renamed), the level it is
//! logged at, the capture outcome it counts as, and whether the connection may still hold unread
//! request bytes. Details never contain request data.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::Body;
use crate::error::Error;
use crate::metrics::CaptureOutcome;
use crate::{capture, oz};

/// Seconds a client is asked to wait after a 503.
const RETRY_AFTER_SECS: &str = "1";

/// Status, stable code and extension members of a problem.
pub struct Problem {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Extra members (`field`, `frame`, `limit`, `oz_error_code`) that help a client act on it.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    fn new(status: StatusCode, code: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            code,
            title,
            detail,
            extra: serde_json::Map::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

/// How the proxy treats one failure.
pub struct Class {
    /// What the client is told.
    pub problem: Problem,
    /// The level of its log line.
    pub severity: Severity,
    /// What it counts as in `oz_proxy_captures_total`, for a failure on a capture route.
    pub capture_outcome: Option<CaptureOutcome>,
    /// Whether the request body may still be unread when it is answered: the proxy refused the
    /// request before reading it, or a passthrough failed part-way. The connection cannot carry
    /// another request then, and the answer says so (`Connection: close`) rather than leaving
    /// the client to find it closed under its next request. A capture has read its whole body
    /// before any other refusal.
    pub may_leave_body_unread: bool,
}

/// Who should look at a failure, which decides its log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The client's mistake (debug): not the operator's problem.
    Refusal,
    /// The backend or Oz failed (warn): the operator's problem.
    Upstream,
    /// The proxy itself failed (error): a bug.
    Bug,
}

/// Classifies a failure: the one place that decides how the proxy treats it.
pub fn classify(err: &Error) -> Class {
    use capture::Error as C;
    let severity = match err {
        Error::BackendConnect(_)
        | Error::BackendTimeout
        | Error::BackendFailed(_)
        | Error::Oz(_) => Severity::Upstream,
        Error::Capture(C::Internal) => Severity::Bug,
        // The store's failure is logged where it happened (`capture::guard`), at warn.
        Error::Capture(C::StateUnavailable) => Severity::Upstream,
        _ => Severity::Refusal,
    };
    let capture_outcome = match err {
        Error::Capture(C::Busy) => Some(CaptureOutcome::Overloaded),
        Error::Capture(C::Replayed) => Some(CaptureOutcome::Replayed),
        Error::Capture(C::RateLimited { .. }) => Some(CaptureOutcome::RateLimited),
        Error::Capture(C::StateUnavailable) => Some(CaptureOutcome::StateUnavailable),
        Error::Capture(_) => Some(CaptureOutcome::Rejected),
        Error::Oz(_) => Some(CaptureOutcome::OzError),
        _ => None,
    };
    let may_leave_body_unread = match err {
        Error::Capture(c) => matches!(
            c,
            C::UnsupportedMediaType
                | C::BodyTooLarge { .. }
                | C::BodyRead(_)
                | C::Busy
                | C::MissingBinding { .. }
                | C::RateLimited { .. }
                | C::AmbiguousClientKey { .. }
                // Refused before the body is read when the rate limits could not be asked.
                | C::StateUnavailable
        ),
        Error::Oz(_) => false,
        _ => true,
    };
    Class {
        problem: problem_for(err),
        severity,
        capture_outcome,
        may_leave_body_unread,
    }
}

/// Maps a failure to its problem. The single `match` of the crate that decides statuses.
fn problem_for(err: &Error) -> Problem {
    use StatusCode as S;
    let detail = err.to_string();
    match err {
        Error::BackendConnect(_) => Problem::new(
            S::BAD_GATEWAY,
            "backend_unreachable",
            "Backend unreachable",
            "the backend could not be reached".into(),
        ),
        Error::BackendTimeout => Problem::new(
            S::GATEWAY_TIMEOUT,
            "backend_timeout",
            "Backend timeout",
            detail,
        ),
        Error::BackendFailed(_) => Problem::new(
            S::BAD_GATEWAY,
            "backend_failed",
            "Backend failed",
            "the backend sent an invalid or incomplete response".into(),
        ),
        Error::ClientBody { .. } => Problem::new(
            S::BAD_REQUEST,
            "body_read_failed",
            "Body could not be read",
            detail,
        ),
        Error::BadRequest(_) => Problem::new(S::BAD_REQUEST, "bad_request", "Bad request", detail),
        Error::HeadTooLarge(_) => Problem::new(
            S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_header_fields_too_large",
            "Request header fields too large",
            detail,
        ),
        Error::CaptureMethod { .. } => Problem::new(
            S::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            detail,
        ),
        Error::ReservedPath => Problem::new(S::FORBIDDEN, "reserved_path", "Reserved path", detail),
        Error::MethodNotAllowed => Problem::new(
            S::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            detail,
        ),
        Error::InvalidFolderId => Problem::new(
            S::BAD_REQUEST,
            "invalid_folder_id",
            "Invalid folder id",
            detail,
        )
        .with("field", "folder_id"),
        Error::FolderNotFound => {
            Problem::new(S::NOT_FOUND, "folder_not_found", "Folder not found", detail)
        }
        Error::NoVideo => Problem::new(S::NOT_FOUND, "no_video", "No video", detail),
        Error::UnknownPath => Problem::new(S::NOT_FOUND, "not_found", "Not found", detail),
        Error::Capture(c) => capture_problem(c, detail),
        Error::Oz(o) => oz_problem(o, detail),
    }
}

fn capture_problem(err: &capture::Error, detail: String) -> Problem {
    use capture::Error as E;
    use StatusCode as S;
    match err {
        E::BodyTooLarge { limit } => Problem::new(
            S::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "Capture too large",
            detail,
        )
        .with("limit", *limit),
        E::UnsupportedMediaType => Problem::new(
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported content type",
            detail,
        ),
        E::BadJson { .. } => Problem::new(
            S::BAD_REQUEST,
            "invalid_json",
            "Invalid capture JSON",
            detail,
        ),
        E::BadField { field, .. } => Problem::new(
            S::BAD_REQUEST,
            "invalid_field",
            "Invalid capture field",
            detail,
        )
        .with("field", field.as_str()),
        E::BadFrame { field, index, .. } => {
            Problem::new(S::BAD_REQUEST, "invalid_frame", "Invalid frame", detail)
                .with("field", *field)
                .with("frame", *index)
        }
        E::NoFrames { field } => {
            Problem::new(S::BAD_REQUEST, "no_frames", "No frames", detail).with("field", *field)
        }
        E::TooManyFrames { field, limit, .. } => {
            Problem::new(S::BAD_REQUEST, "too_many_frames", "Too many frames", detail)
                .with("field", *field)
                .with("limit", *limit)
        }
        E::FrameTooLarge {
            field,
            index,
            limit,
        } => Problem::new(S::BAD_REQUEST, "frame_too_large", "Frame too large", detail)
            .with("field", *field)
            .with("frame", *index)
            .with("limit", *limit),
        E::UnknownAction => {
            Problem::new(S::BAD_REQUEST, "unknown_action", "Unknown action", detail)
                .with("field", "action")
        }
        E::EmptyContainer => {
            Problem::new(S::BAD_REQUEST, "empty_container", "Empty container", detail)
        }
        E::MissingBinding { name, .. } => Problem::new(
            S::BAD_REQUEST,
            "missing_binding",
            "Missing session binding",
            detail,
        )
        .with("field", name.as_str()),
        E::BodyRead(_) => Problem::new(
            S::BAD_REQUEST,
            "body_read_failed",
            "Body could not be read",
            "the request body could not be read completely".into(),
        ),
        E::Busy => Problem::new(S::SERVICE_UNAVAILABLE, "overloaded", "Overloaded", detail),
        E::Replayed => Problem::new(
            S::CONFLICT,
            "capture_replayed",
            "Capture already sent",
            detail,
        ),
        E::RateLimited {
            limit,
            retry_after_secs,
            ..
        } => Problem::new(S::TOO_MANY_REQUESTS, "rate_limited", "Rate limited", detail)
            .with("limit", *limit)
            .with("retry_after", *retry_after_secs),
        E::AmbiguousClientKey { name, .. } => Problem::new(
            S::BAD_REQUEST,
            "ambiguous_client_key",
            "Ambiguous client key",
            detail,
        )
        .with("field", name.as_str()),
        E::StateUnavailable => Problem::new(
            S::SERVICE_UNAVAILABLE,
            "state_unavailable",
            "Capture controls unavailable",
            detail,
        ),
        E::Internal => Problem::new(
            S::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        ),
    }
}

fn oz_problem(err: &oz::Error, detail: String) -> Problem {
    use oz::Error as E;
    use StatusCode as S;
    match err {
        E::Api {
            status,
            error_code,
            endpoint,
            ..
        } => {
            let mut p = Problem::new(
                S::BAD_GATEWAY,
                "oz_error",
                "Oz API error",
                format!("Oz API answered {status} to {endpoint}"),
            )
            .with("oz_status", *status);
            if let Some(c) = error_code {
                p = p.with("oz_error_code", *c);
            }
            p
        }
        E::Auth { error_code } => {
            let mut p = Problem::new(
                S::BAD_GATEWAY,
                "oz_auth_failed",
                "Oz API authentication failed",
                "Oz API refused the proxy's credentials".into(),
            );
            if let Some(c) = error_code {
                p = p.with("oz_error_code", *c);
            }
            p
        }
        E::Timeout { .. } => {
            Problem::new(S::GATEWAY_TIMEOUT, "oz_timeout", "Oz API timeout", detail)
        }
        E::ResultTimeout => Problem::new(
            S::GATEWAY_TIMEOUT,
            "oz_result_timeout",
            "Oz verdict timeout",
            detail,
        ),
        E::Unreachable { endpoint, .. } => Problem::new(
            S::BAD_GATEWAY,
            "oz_unreachable",
            "Oz API unreachable",
            format!("Oz API could not be reached for {endpoint}"),
        ),
        E::BadResponse { endpoint, .. } => Problem::new(
            S::BAD_GATEWAY,
            "oz_bad_response",
            "Oz API answer unreadable",
            format!("Oz API sent an unreadable answer to {endpoint}"),
        ),
        // An answer the proxy will not act on is classed with the unreadable ones; the detail
        // says which limit, never what Oz sent.
        E::TooManyAnalyses { endpoint, .. } => Problem::new(
            S::BAD_GATEWAY,
            "oz_bad_response",
            "Oz API answer unreadable",
            format!(
                "Oz API listed more analyses in its answer to {endpoint} than one capture may use"
            ),
        )
        .with("limit", oz::client::MAX_ANALYSES),
    }
}

/// Builds the response for `err`, classified as `class`. `request_id` lets an operator find the
/// matching log line.
pub fn respond<S>(err: &Error, class: Class, request_id: &str) -> Response<Body<S>> {
    let mut rsp = render(class.problem, request_id);
    let h = rsp.headers_mut();
    match err {
        // RFC 9110 §15.5.6: a 405 names the methods the target supports.
        Error::CaptureMethod { allow } => {
            h.insert(header::ALLOW, allow.clone());
        }
        // RFC 6585 §4 and draft-ietf-httpapi-ratelimit-headers: when to come back, and the
        // limits that apply.
        Error::Capture(capture::Error::RateLimited {
            retry_after_secs,
            policy,
            state,
            ..
        }) => {
            h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
                if let Ok(v) = HeaderValue::from_str(value) {
                    h.insert(name, v);
                }
            }
        }
        _ => {}
    }
    rsp
}

/// Renders a problem as `application/problem+json`.
pub fn render<S>(p: Problem, request_id: &str) -> Response<Body<S>> {
    let mut doc = serde_json::Map::new();
    doc.insert(
        "type".into(),
        format!("urn:oz-capture-proxy:problem:{}", p.code).into(),
    );
    doc.insert("title".into(), p.title.into());
    doc.insert("status".into(), p.status.as_u16().into());
    doc.insert("detail".into(), p.detail.into());
    doc.insert("code".into(), p.code.into());
    if !request_id.is_empty() {
        doc.insert("request_id".into(), request_id.into());
    }
    doc.extend(p.extra);
    let body =
        serde_json::to_vec(&serde_json::Value::Object(doc)).expect("a JSON map always serializes");
    let mut rsp = Response::new(Body::full(Bytes::from(body)));
    *rsp.status_mut() = p.status;
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if p.status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_gets_retry_after_and_code() {
        let err = Error::Capture(capture::Error::Busy);
        let rsp: Response<Body> = respond(&err, classify(&err), "r1");
        assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(rsp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            rsp.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[test]
    fn a_rate_limited_capture_says_when_to_come_back() {
        let err = Error::Capture(capture::Error::RateLimited {
            limit: "per_client",
            retry_after_secs: 6,
            policy: "\"per_client\";q=10;w=60".into(),
            state: "\"per_client\";r=0;t=60".into(),
        });
        let class = classify(&err);
        assert!(class.may_leave_body_unread);
        let rsp: Response<Body> = respond(&err, class, "r1");
        assert_eq!(rsp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(rsp.headers()[header::RETRY_AFTER], "6");
        assert_eq!(
            rsp.headers()["ratelimit-policy"],
            "\"per_client\";q=10;w=60"
        );
        assert_eq!(rsp.headers()["ratelimit"], "\"per_client\";r=0;t=60");
    }

    #[test]
    fn frame_problem_names_the_frame() {
        let p = problem_for(&Error::Capture(capture::Error::BadFrame {
            field: "frame_list",
            index: 3,
            reason: "not base64".into(),
        }));
        assert_eq!(p.status, StatusCode::BAD_REQUEST);
        assert_eq!(p.code, "invalid_frame");
        assert_eq!(p.extra["frame"], 3);
        assert!(p.detail.contains("frame 3"));
    }
}
