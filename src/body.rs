//! The one body type that flows through the proxy, in both directions.
//!
//! An enum rather than a boxed trait object, so the passthrough hot path neither allocates nor
//! dispatches dynamically: a streamed `Incoming` from either peer, or bytes the proxy made itself
//! (problem responses, admin answers, a buffered capture forwarded to the backend).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};

/// Errors a body can yield while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body.
#[derive(Debug)]
pub enum Body {
    /// No body at all.
    Empty,
    /// A complete body in memory; `None` once it has been yielded.
    Full(Option<Bytes>),
    /// A body streamed from a client or from the backend.
    Incoming(Incoming),
}

impl Body {
    /// A body made of `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        if b.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(b))
        }
    }
}

impl From<Incoming> for Body {
    fn from(b: Incoming) -> Self {
        Body::Incoming(b)
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Incoming(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(b) => b.size_hint(),
        }
    }
}
