//! Why a call to Oz API failed.
//!
//! Nothing here carries a token, a password or media: Oz's `error_message` is kept only for
//! logs after being cut short, and the client sees the Oz `error_code` and a fixed text.

/// An Oz-side failure. `crate::problem` maps each variant to 502 or 504 with a stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Oz answered with an error status; `error_code` is Oz's own code when the body had one.
    #[error("Oz API answered {status} to {endpoint} (error_code {error_code:?})")]
    Api {
        endpoint: &'static str,
        status: u16,
        error_code: Option<i64>,
        /// Oz's `error_message`, truncated; for logs only.
        message: String,
    },
    /// Login failed or credentials were refused.
    #[error("Oz API refused the credentials (error_code {error_code:?})")]
    Auth { error_code: Option<i64> },
    /// A call did not finish within `oz.timeout`.
    #[error("Oz API call {endpoint} timed out")]
    Timeout { endpoint: &'static str },
    /// The verdict was not final within `wait_for_result` (not an error in forward mode).
    #[error("Oz analyses did not finish in time")]
    ResultTimeout,
    /// Connecting or sending failed.
    #[error("Oz API unreachable for {endpoint}: {reason}")]
    Unreachable {
        endpoint: &'static str,
        reason: String,
        /// Whether any of the request may have reached Oz (false: a failed connect, or a
        /// request the client refused to send).
        sent: bool,
    },
    /// Oz answered 2xx with a body the proxy cannot read.
    #[error("Oz API sent an unreadable answer to {endpoint}: {reason}")]
    BadResponse {
        endpoint: &'static str,
        reason: String,
    },
    /// Oz answered with more analyses than one capture may take
    /// ([`MAX_ANALYSES`](crate::config::MAX_ANALYSES)); they are neither used nor polled.
    #[error(
        "Oz API listed {listed} analyses in its answer to {endpoint}, more than the {} one capture may use",
        crate::config::MAX_ANALYSES
    )]
    TooManyAnalyses {
        endpoint: &'static str,
        listed: usize,
    },
}

impl Error {
    /// The HTTP status Oz answered with, when the failure is an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether Oz may have acted on a request that ended in this error: it may have been sent and
    /// no answer from Oz said it was refused. The replay guard keeps a capture spent when its
    /// upload ended so (`capture::guard`); an upload Oz refused, or that never left, lets it go.
    pub fn may_have_been_taken(&self) -> bool {
        match self {
            // Oz answered that it failed; but a gateway's 502 or 504 means no answer came from
            // behind it, which may have acted all the same.
            Error::Api { status, .. } => matches!(status, 502 | 504),
            Error::Auth { .. } => false,
            Error::Unreachable { sent, .. } => *sent,
            // No answer in time, or a 2xx answer the proxy would not use.
            Error::Timeout { .. }
            | Error::BadResponse { .. }
            | Error::TooManyAnalyses { .. }
            | Error::ResultTimeout => true,
        }
    }
}
