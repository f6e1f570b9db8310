//! The body of a folder upload, as handed from `capture` to the Oz client.
//!
//! Kept as a list of chunks (multipart head, ZIP, tail…) so the ZIP is never copied into one big
//! buffer again, and sent with an exact `Content-Length`: whether Oz accepts chunked uploads is
//! unknown (docs/oz-api.md §8), and a known length makes a resend cheap since `Bytes` clones share.

use bytes::Bytes;

/// A ready-to-send upload body.
#[derive(Clone, Debug)]
pub struct UploadBody {
    /// `multipart/form-data; boundary=…` for frames, `application/octet-stream` for a container.
    pub content_type: String,
    /// The body, in order.
    pub chunks: Vec<Bytes>,
}

impl UploadBody {
    /// Total length in bytes, sent as `Content-Length`.
    pub fn content_length(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }

    /// The body as one contiguous buffer (tests and the simulator's golden checks).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content_length() as usize);
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out
    }
}
