//! Oz error answers: the `{"error_code", "error_message", "details"}` body and its codes.
//!
//! Follows docs/oz-api.md §5 (codes 0–11, plus the OzCapsula codes 13 and 14). Every refusal the
//! simulator makes goes through [`ApiError`], so a client always sees the body shape Oz uses.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::json;

use super::wire::json_rsp;

/// The Oz error codes the simulator answers with (docs/oz-api.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: unknown server error; used for injected 5xx faults.
    Unknown = 0,
    /// 1: method not allowed (HTTP 405).
    NotAllowed = 1,
    /// 3: malformed request or missing required fields.
    InvalidStructure = 3,
    /// 4: bad parameter value.
    InvalidValue = 4,
    /// 5: wrong data type.
    InvalidType = 5,
    /// 6: access token missing.
    AuthNotProvided = 6,
    /// 7: access token not found.
    AuthInvalid = 7,
    /// 8: access token expired.
    AuthExpired = 8,
    /// 9: access denied for this user.
    AuthForbidden = 9,
    /// 10: resource not found.
    NotExist = 10,
    /// 13: "No data container provided" (OzCapsula).
    NoContainer = 13,
}

/// A refusal: HTTP status, Oz error code and a message that says exactly what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Oz `error_code`.
    pub code: ErrorCode,
    /// Oz `error_message`; never carries tokens, frame bytes or `additional_info`.
    pub message: String,
}

// === impl ApiError ===

impl ApiError {
    /// An error with any status and code.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400, code 3: the request is malformed or misses a required field.
    pub fn structure(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidStructure,
            message,
        )
    }

    /// 400, code 4: a value is not acceptable.
    pub fn value(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidValue, message)
    }

    /// 400, code 5: something has the wrong type (JSON type, content type, file format).
    pub fn kind(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidType, message)
    }

    /// 404, code 10: the named resource does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotExist, message)
    }

    /// 401 with one of the auth codes.
    pub fn unauthorized(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// The JSON body Oz sends with an error.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error_code": self.code as u16,
            "error_message": self.message,
            "details": null,
        })
    }

    /// The full answer.
    pub fn into_rsp(self) -> Response<Full<Bytes>> {
        json_rsp(self.status, &self.body())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (error_code {}): {}",
            self.status.as_u16(),
            self.code as u16,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}
