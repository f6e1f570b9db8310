//! The request body as the backend client sends it: it says when it has been handed over
//! completely (the backend timeout starts then) and filters request trailers on the way.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use hyper::body::{Frame, SizeHint};
use tokio::sync::oneshot;

use super::headers;
use crate::body::{Body, BoxError};

/// The request body as sent to the backend: says when it has been handed over completely.
pub struct Outgoing {
    body: Body,
    sent: Option<oneshot::Sender<()>>,
    /// `server.underscores_in_headers`, for the trailers.
    keep_underscores: bool,
}

impl Outgoing {
    /// Wraps the body of `req`; the receiver resolves once the body has ended. A request with
    /// no body to send gets none: its clock starts now, and a channel would be one allocation
    /// per request for nothing.
    pub(crate) fn watch(
        req: Request<Body>,
        keep_underscores: bool,
    ) -> (Request<Outgoing>, Option<oneshot::Receiver<()>>) {
        let (sent, rx) = if hyper::body::Body::is_end_stream(req.body()) {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        (
            req.map(|body| Outgoing {
                body,
                sent,
                keep_underscores,
            }),
            rx,
        )
    }

    fn done(&mut self) {
        if let Some(tx) = self.sent.take() {
            let _ = tx.send(());
        }
    }
}

impl hyper::body::Body for Outgoing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut r = Pin::new(&mut this.body).poll_frame(cx);
        match &mut r {
            Poll::Ready(None) => this.done(),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_mut() {
                    headers::filter_trailers(trailers, this.keep_underscores);
                }
                if this.body.is_end_stream() || frame.is_trailers() {
                    this.done();
                }
            }
            _ => {}
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
