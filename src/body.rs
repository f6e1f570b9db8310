//! The one body type that flows through the proxy, in both directions.
//!
//! An enum rather than a boxed trait object, so the passthrough hot path neither allocates nor
//! dispatches dynamically: a streamed `Incoming` from either peer, or bytes the proxy made itself
//! (problem responses, admin answers, a buffered capture forwarded to the backend).

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use std::future::Future;

use std::fmt;

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};

use crate::proxy::pool::Lease;

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
    Incoming(Streamed),
    /// A streamed body that fails if no byte arrives for a while.
    Idle(IdleBody),
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

impl Body {
    /// A streamed body, cut with an error when the peer sends nothing for `idle`
    /// (`server.body_idle_timeout`): a stalled upload or download must not hold a connection on
    /// each side forever. `None` streams without a limit.
    pub fn streamed(body: impl Into<Streamed>, idle: Option<Duration>) -> Self {
        let body = body.into();
        if hyper::body::Body::is_end_stream(&body) {
            return Body::Empty;
        }
        match idle {
            Some(idle) => Body::Idle(IdleBody {
                inner: body,
                idle,
                last: tokio::time::Instant::now(),
                timer: Box::pin(tokio::time::sleep(idle)),
            }),
            None => Body::Incoming(body),
        }
    }
}

/// A body streamed from a peer. From the backend it holds the connection's lease, and gives the
/// connection back to the pool as soon as the body has been read to its end; dropped before that,
/// the connection is closed, as its rest of the response is still on the wire.
pub struct Streamed {
    body: Incoming,
    lease: Option<Lease>,
}

impl Streamed {
    /// A backend response body on the connection `lease`.
    pub fn leased(body: Incoming, lease: Lease) -> Self {
        Streamed {
            body,
            lease: Some(lease),
        }
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl From<Incoming> for Streamed {
    fn from(body: Incoming) -> Self {
        Streamed { body, lease: None }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        // A body with nothing left (HEAD, 204, 304, `Content-Length: 0`, or read to the end
        // without the final poll) leaves a connection ready for the next exchange.
        if self.lease.is_some() && hyper::body::Body::is_end_stream(&self.body) {
            self.release();
        }
    }
}

impl fmt::Debug for Streamed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streamed")
            .field("body", &self.body)
            .field("leased", &self.lease.is_some())
            .finish()
    }
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.body).poll_frame(cx);
        if this.lease.is_some() {
            match &r {
                Poll::Ready(None) => this.release(),
                // Trailers are the last frame; the final `None` may never be asked for.
                Poll::Ready(Some(Ok(frame)))
                    if frame.is_trailers() || this.body.is_end_stream() =>
                {
                    this.release()
                }
                // The exchange failed half-way: the connection must not serve another.
                Poll::Ready(Some(Err(_))) => drop(this.lease.take()),
                _ => {}
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A streamed body with an idle timeout.
#[derive(Debug)]
pub struct IdleBody {
    inner: Streamed,
    idle: Duration,
    /// When the last frame arrived; the timer is only re-armed when it fires, not per frame.
    last: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// The error an idle body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?} (server.body_idle_timeout)")]
pub struct BodyIdleTimeout(pub Duration);

impl IdleBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = hyper::body::Body::poll_frame(Pin::new(&mut self.inner), cx) {
            self.last = tokio::time::Instant::now();
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let deadline = self.last + self.idle;
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(Some(Err(BodyIdleTimeout(self.idle).into())));
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl From<Incoming> for Body {
    fn from(b: Incoming) -> Self {
        Body::Incoming(b.into())
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
            Body::Idle(b) => b.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Incoming(b) => b.is_end_stream(),
            Body::Idle(b) => b.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Incoming(b) => b.size_hint(),
            Body::Idle(b) => b.inner.size_hint(),
        }
    }
}
