//! The request body of every Oz call: a list of `Bytes` chunks sent one after another.
//!
//! An upload (`UploadBody`, docs/oz-api.md §2.2) is already a list of chunks (multipart head, ZIP,
//! tail); sending them as separate frames means the ZIP is never copied into one buffer, and a
//! resend after a token renewal only clones `Bytes` handles. The exact size hint makes hyper
//! frame it with `Content-Length`, never chunked (whether Oz accepts chunked uploads is
//! unknown, §8).
//!
//! A multi-MB chunk goes out in slices of [`SLICE`], and the body returns `Pending` (waking
//! itself at once) between two slices. The connection task writes on the tokio worker that also
//! carries passthrough traffic: given a 4 MB `Bytes`, hyper writes it in one `writev` of
//! milliseconds (TLS encryption included, with https), and given smaller frames it still writes
//! them all in one poll. Yielding ends the poll after each slice, so requests that arrived
//! meanwhile run between two slices (BENCHMARKS.md, "Captures end to end").

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

/// Most bytes written in one poll of the connection: about 100 µs of copying on loopback.
const SLICE: usize = 256 * 1024;

/// A body of known length made of chunks; no chunks is an empty body (GET).
#[derive(Clone, Debug, Default)]
pub struct ChunkBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
    /// Whether the next poll yields the worker before sending more.
    yield_next: bool,
}

impl ChunkBody {
    /// A body that sends `chunks` in order; empty chunks are skipped.
    pub fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        ChunkBody {
            chunks,
            remaining,
            yield_next: false,
        }
    }
}

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.yield_next) {
            // Woken during its own poll, a tokio task goes to the back of the run queue.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Some(front) = this.chunks.front_mut() else {
            return Poll::Ready(None);
        };
        let slice = if front.len() > SLICE {
            front.split_to(SLICE)
        } else {
            this.chunks.pop_front().expect("front() was Some")
        };
        this.remaining -= slice.len() as u64;
        this.yield_next = slice.len() == SLICE && !this.chunks.is_empty();
        Poll::Ready(Some(Ok(Frame::data(slice))))
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

    #[tokio::test]
    async fn large_chunks_go_in_slices_with_the_same_bytes() {
        let big: Vec<u8> = (0..SLICE * 2 + 100).map(|i| (i % 251) as u8).collect();
        let body = ChunkBody::new([
            Bytes::from_static(b"head"),
            Bytes::from(big.clone()),
            Bytes::from_static(b"tail"),
        ]);
        let total = (big.len() + 8) as u64;
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(total));
        let mut body = std::pin::pin!(body);
        let mut sizes = Vec::new();
        let mut collected = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            sizes.push(data.len());
            collected.extend_from_slice(&data);
            let left = hyper::body::Body::size_hint(&*body).exact().unwrap();
            assert_eq!(left, total - collected.len() as u64);
        }
        assert_eq!(sizes, [4, SLICE, SLICE, 100, 4]);
        assert_eq!(&collected[..4], b"head");
        assert_eq!(&collected[4..4 + big.len()], &big[..]);
        assert_eq!(&collected[4 + big.len()..], b"tail");
    }

    #[test]
    fn empty_body_is_at_end() {
        let body = ChunkBody::new([]);
        assert!(hyper::body::Body::is_end_stream(&body));
        assert_eq!(hyper::body::Body::size_hint(&body).exact(), Some(0));
    }
}
