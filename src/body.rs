//! The one body type that flows through the proxy, in both directions.
//!
//! An enum rather than a boxed trait object, so the passthrough hot path neither allocates nor
//! dispatches dynamically: a body streamed from a peer, or bytes the proxy made itself (problem
//! responses, admin answers, a buffered capture forwarded to the backend). What streams is a type
//! parameter: a client's `Incoming` by default, and in `proxy` a backend body that gives its
//! connection back to the pool when it ends (`proxy::pool::Leased`), which this ground-floor
//! module need not know.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use std::future::Future;

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};

/// Errors a body can yield while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body; `S` is what streams.
#[derive(Debug)]
pub enum Body<S = Incoming> {
    /// No body at all.
    Empty,
    /// A complete body in memory; `None` once it has been yielded.
    Full(Option<Bytes>),
    /// A body streamed from a client or from the backend.
    Streamed(S),
    /// A streamed body that fails if no byte arrives for a while.
    Idle(IdleBody<S>),
}

impl<S> Body<S> {
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

impl<S: Stream> Body<S> {
    /// A streamed body, cut with an error when the peer sends nothing for `idle`
    /// (`server.body_idle_timeout`): a stalled upload or download must not hold a connection on
    /// each side forever. `None` streams without a limit.
    pub fn streamed(body: S, idle: Option<Duration>) -> Self {
        if hyper::body::Body::is_end_stream(&body) {
            return Body::Empty;
        }
        match idle {
            Some(idle) => Body::Idle(IdleBody {
                inner: body,
                idle,
                last: tokio::time::Instant::now(),
                timer: None,
            }),
            None => Body::Streamed(body),
        }
    }
}

/// What a [`Body`] can stream: a peer's body, as hyper gives it.
pub trait Stream: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Unpin {}

impl<T: hyper::body::Body<Data = Bytes, Error = hyper::Error> + Unpin> Stream for T {}

/// A streamed body with an idle timeout.
#[derive(Debug)]
pub struct IdleBody<S> {
    inner: S,
    idle: Duration,
    /// When the last frame arrived; the timer is only re-armed when it fires, not per frame.
    last: tokio::time::Instant,
    /// Made the first time the peer has nothing to give: most bodies (all of a small response)
    /// are there at once, and need no timer.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The error an idle body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?} (server.body_idle_timeout)")]
pub struct BodyIdleTimeout(pub Duration);

impl<S: Stream> IdleBody<S> {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = hyper::body::Body::poll_frame(Pin::new(&mut self.inner), cx) {
            self.last = tokio::time::Instant::now();
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let (last, idle) = (self.last, self.idle);
        let timer = self.timer.get_or_insert_with(|| {
            Box::pin(match last.checked_add(idle) {
                Some(deadline) => tokio::time::sleep_until(deadline),
                // An idle timeout beyond what an `Instant` holds: `sleep` saturates it.
                None => tokio::time::sleep(idle),
            })
        });
        loop {
            ready!(timer.as_mut().poll(cx));
            let deadline = self.last + self.idle;
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(Some(Err(BodyIdleTimeout(self.idle).into())));
            }
            timer.as_mut().reset(deadline);
        }
    }
}

impl From<Incoming> for Body {
    fn from(b: Incoming) -> Self {
        Body::Streamed(b)
    }
}

impl<S: Stream> hyper::body::Body for Body<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Streamed(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Body::Idle(b) => b.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Streamed(b) => b.is_end_stream(),
            Body::Idle(b) => b.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Streamed(b) => b.size_hint(),
            Body::Idle(b) => b.inner.size_hint(),
        }
    }
}
