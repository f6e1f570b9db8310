//! Every failure the proxy turns into its own response, in one enum.
//!
//! Each module keeps its own error type (`capture::Error`, `oz::Error`); this enum gathers them
//! with the passthrough failures so that `crate::problem` can classify all of them in one place
//! (status, code, log level, metric outcome). It says what failed, never how to treat it.

use crate::{capture, oz};

/// A failure answered by the proxy itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend refused or dropped the connection.
    #[error("backend unreachable: {0}")]
    BackendConnect(String),
    /// The backend did not send response headers within `backend.timeout`.
    #[error("backend did not answer within the timeout")]
    BackendTimeout,
    /// The backend sent something that is not a valid HTTP response, or failed mid-exchange.
    #[error("backend failed: {0}")]
    BackendFailed(String),
    /// The client's request body failed on its way to the backend: it stalled for
    /// `server.body_idle_timeout`, or the client went away mid-upload. The client's fault, not
    /// the backend's.
    #[error("{}", if *stalled { "the request body stalled (server.body_idle_timeout)" } else { "the request body could not be read completely" })]
    ClientBody { stalled: bool },
    /// The request is not one the proxy forwards (framing, smuggling attempt, bad target).
    #[error("{0}")]
    BadRequest(&'static str),
    /// The request head is over `server.max_headers` or `server.max_header_bytes`.
    #[error("{0}")]
    HeadTooLarge(&'static str),
    /// A capture path asked with a method that is not a capture method, with a body.
    #[error("this capture path accepts only {}", allow.to_str().unwrap_or("POST"))]
    CaptureMethod { allow: http::HeaderValue },
    /// A client's request, with a body or a capture method, on a `late_verdict_path`: only the
    /// proxy delivers verdicts there.
    #[error("this path receives the proxy's late verdicts; clients cannot send to it")]
    ReservedPath,
    /// `CONNECT` and other methods a reverse proxy does not serve.
    #[error("method not allowed through this proxy")]
    MethodNotAllowed,
    /// A verdict lookup named a folder id that is not a UUID (`crate::lookup`); Oz was not asked.
    #[error("folder_id must be a UUID (8-4-4-4-12 hexadecimal digits)")]
    InvalidFolderId,
    /// Oz has no such folder (a verdict lookup).
    #[error("Oz API has no folder with this id")]
    FolderNotFound,
    /// The folder has no video to hand out (yet): no media with a `preview_url`.
    #[error("the folder has no video")]
    NoVideo,
    /// A path the verdict listener does not serve.
    #[error("no such endpoint on the verdict listener")]
    UnknownPath,
    /// A capture was refused.
    #[error(transparent)]
    Capture(#[from] capture::Error),
    /// Oz API failed.
    #[error(transparent)]
    Oz(#[from] oz::Error),
}

impl From<capture::Failure> for Error {
    fn from(f: capture::Failure) -> Self {
        match f {
            capture::Failure::Refused(e) => Error::Capture(e),
            capture::Failure::Oz(e) => Error::Oz(e),
        }
    }
}
