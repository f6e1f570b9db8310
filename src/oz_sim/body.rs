//! Request bodies as the simulated Oz reads them: the whole body under a limit, and JSON under its
//! content type; a body it will not take is Oz's error answer.

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_LENGTH};
use hyper::StatusCode;
use serde_json::Value;

use super::error::{ApiError, ErrorCode};
use super::wire::{content_type, essence};

/// Reads a whole body, refusing one larger than `limit` with 413.
pub async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidValue,
            format!("request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::structure(format!(
            "request body could not be read: {e}"
        ))),
    }
}

/// Parses a JSON request body, which must be labelled `application/json`.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    match content_type(headers).map(essence) {
        Some(ct) if ct == "application/json" => {}
        Some(ct) => {
            return Err(ApiError::kind(format!(
                "Content-Type is {ct:?}; this endpoint takes application/json"
            )))
        }
        None => {
            return Err(ApiError::kind(
                "Content-Type is missing; this endpoint takes application/json",
            ))
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::structure(format!("request body is not valid JSON: {e}")))
}
