//! The request body of every Oz call: a list of `Bytes` chunks sent one after another.
//!
//! An upload (`UploadBody`, oz-api.md §2.2) is already a list of chunks (multipart head, ZIP,
//! tail); sending them as separate frames means the ZIP is never copied into one buffer, and a
//! resend after a token renewal only clones `Bytes` handles. The exact size hint makes hyper
//! frame it with `Content-Length`, never chunked (whether Oz accepts chunked uploads is
//! unknown, §8).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

/// A body of known length made of chunks; no chunks is an empty body (GET).
#[derive(Clone, Debug, Default)]
pub struct ChunkBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl ChunkBody {
    /// A body that sends `chunks` in order; empty chunks are skipped.
    pub fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        ChunkBody { chunks, remaining }
    }
}

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.chunks.pop_front().map(|c| {
            this.remaining -= c.len() as u64;
            Ok(Frame::data(c))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn yields_chunks_in_order_with_exact_size() {
        let body = ChunkBody::new([
            Bytes::from_static(b"head"),
            Bytes::new(),
            Bytes::from_static(b"-zip-"),
            Bytes::from_static(b"tail"),
        ]);
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(13));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"head-zip-tail");
    }

    #[test]
    fn empty_body_is_at_end() {
        let body = ChunkBody::new([]);
        assert!(hyper::body::Body::is_end_stream(&body));
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(0));
    }
}
