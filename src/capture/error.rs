//! Why a capture was refused or failed before Oz was involved.
//!
//! Messages name the field, the frame index or the limit, and never quote frame data,
//! `additional_info` or any other value the client sent: they reach the client and the logs.

/// A capture-side failure. `crate::problem` maps each variant to a status and a stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `Content-Length` or the bytes read so far exceed the route's `max_body_bytes`.
    #[error("request body exceeds the limit of {limit} bytes (capture.max_body_bytes)")]
    BodyTooLarge { limit: u64 },
    /// Neither `application/json` nor `application/octet-stream`.
    #[error("content type must be application/json (frames) or application/octet-stream (OzCapsula container)")]
    UnsupportedMediaType,
    /// The body is not valid JSON, or not of the expected shape; `detail` names the position or field.
    #[error("capture body is not valid JSON: {detail}")]
    BadJson { detail: String },
    /// A field is missing or has the wrong type or value.
    #[error("field `{field}`: {reason}")]
    BadField { field: String, reason: String },
    /// A frame of `frame_list` is not a usable image.
    #[error("frame {index} of `{field}`: {reason}")]
    BadFrame {
        field: &'static str,
        index: usize,
        reason: String,
    },
    /// `frame_list` is missing, null or empty.
    #[error("`{field}` holds no frames")]
    NoFrames { field: &'static str },
    /// More frames than `max_frames`.
    #[error("`{field}` holds {count} frames, more than the limit of {limit} (capture.max_frames)")]
    TooManyFrames {
        field: &'static str,
        count: usize,
        limit: usize,
    },
    /// One decoded frame is larger than `max_frame_bytes`.
    #[error(
        "frame {index} of `{field}` exceeds the limit of {limit} bytes (capture.max_frame_bytes)"
    )]
    FrameTooLarge {
        field: &'static str,
        index: usize,
        limit: usize,
    },
    /// The `action` has no Oz tag.
    #[error("field `action`: unknown action code (expected one of the Web SDK's video_selfie_* or photo_id_* codes)")]
    UnknownAction,
    /// Tokens are bound to the host app's session (`verdict.bind`) and the capture request does
    /// not carry exactly one non-empty value of `name` (a cookie or header name).
    #[error("the capture must carry the {kind} `{name}` the verdict is bound to (verdict.bind)")]
    MissingBinding { kind: &'static str, name: String },
    /// The container body is empty.
    #[error("the OzCapsula container body is empty")]
    EmptyContainer,
    /// The client stopped sending or the body could not be read.
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    /// Oz already accepted a capture with the same media inside `capture.replay.window`, or one
    /// is being checked right now (`capture::guard`).
    #[error("this capture was already sent (capture.replay): the same media is checked once; take a new capture")]
    Replayed,
    /// Beyond a rate limit of the route (`capture::guard`). `policy` and `state` are the
    /// `RateLimit-Policy` and `RateLimit` field values.
    #[error("too many captures: beyond the {limit} rate limit (capture.rate_limit.{limit}); retry in {retry_after_secs} s")]
    RateLimited {
        limit: &'static str,
        retry_after_secs: u64,
        policy: String,
        state: String,
    },
    /// The capture carries the rate limit's client key (`header:NAME`, `cookie:NAME`) more than
    /// once: which one counts would be the client's choice.
    #[error("the capture carries the {kind} `{name}` more than once, so which one identifies the client is ambiguous (capture.rate_limit.per_client.key)")]
    AmbiguousClientKey { kind: &'static str, name: String },
    /// The state store did not answer and `state.on_error` is `fail_closed`.
    #[error("the store of the replay guard and rate limits is unavailable; retry later")]
    StateUnavailable,
    /// Concurrency limit or memory budget reached.
    #[error("too many captures in progress; retry later")]
    Busy,
    /// The blocking worker failed (a bug, never expected).
    #[error("internal error while processing the capture")]
    Internal,
}

/// Why a capture ended without an outcome: the proxy refused it, or Oz failed it. The proxy's
/// `crate::Error` takes both apart again; `crate::problem` classifies them.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Refused(#[from] Error),
    #[error(transparent)]
    Oz(#[from] crate::oz::Error),
}
