//! The replay guard's fingerprint of a capture: SHA-256 over its decoded media, fed by the
//! transform while each frame is still in cache, so the guard costs no extra pass over the body.
//!
//! Frames mode hashes the frames of `frame_list` in order, each with its length in front (so
//! that no two different frame lists hash the same bytes); the best frame is left out, since it
//! is one of the same frames and a replay with another best frame is still a replay. Container
//! mode hashes the container as sent. The two are told apart by a label, so a container can
//! never match a frame list. What the digest cannot see: a capture whose frames were re-encoded
//! is other bytes, so a different capture to the proxy; Oz's liveness checks judge it.

use aws_lc_rs::digest;

/// A SHA-256 over the media of one capture, frame by frame.
pub struct MediaDigest(digest::Context);

impl MediaDigest {
    /// A digest of a frame list; feed it each decoded frame in order.
    pub fn frames() -> MediaDigest {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"oz-capture-proxy frames\0");
        MediaDigest(ctx)
    }

    /// Adds the next decoded frame.
    pub fn frame(&mut self, decoded: &[u8]) {
        self.0.update(&(decoded.len() as u64).to_be_bytes());
        self.0.update(decoded);
    }

    /// The digest of an OzCapsula container body.
    pub fn container(body: &[u8]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"oz-capture-proxy container\0");
        ctx.update(body);
        to_array(ctx.finish())
    }

    pub fn finish(self) -> [u8; 32] {
        to_array(self.0.finish())
    }
}

fn to_array(d: digest::Digest) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(frames: &[&[u8]]) -> [u8; 32] {
        let mut d = MediaDigest::frames();
        for f in frames {
            d.frame(f);
        }
        d.finish()
    }

    #[test]
    fn frames_are_told_apart_by_order_boundaries_and_mode() {
        assert_eq!(of(&[b"ab", b"c"]), of(&[b"ab", b"c"]));
        assert_ne!(of(&[b"ab", b"c"]), of(&[b"a", b"bc"]));
        assert_ne!(of(&[b"ab", b"c"]), of(&[b"c", b"ab"]));
        assert_ne!(of(&[b"abc"]), MediaDigest::container(b"abc"));
    }
}
