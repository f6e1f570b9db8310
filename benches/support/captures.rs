//! Realistic capture bodies for the benchmarks: `on_capture_complete` JSON whose frames are real,
//! valid JPEGs of 30–60 KB.
//!
//! `testdata::sample_jpeg` makes valid 8×8 baseline JPEGs of under 200 bytes; a Web SDK frame is a
//! camera picture of tens of kilobytes. Each frame here is a sample JPEG with a comment (COM,
//! `FF FE`) segment of random bytes inserted after its APP0 segment, which is still a valid JPEG
//! (ITU T.81 §B.2.4.5: a COM segment may carry any bytes) and, being random, base64-encodes like
//! entropy-coded image data. Everything is deterministic from the seed. Shared by
//! `benches/capture.rs` and `examples/bench_captures.rs` (via `#[path]`).

#![allow(dead_code)]

use oz_capture_proxy::capture::testdata::{data_url, sample_jpeg, SampleCapture};

/// Smallest and largest generated frame, in bytes.
pub const FRAME_BYTES: (usize, usize) = (30_000, 60_000);

/// A 64-bit xorshift generator: deterministic, dependency-free, good enough for padding.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A valid JPEG of exactly `size` bytes (at least the sample's size plus one segment header).
pub fn padded_jpeg(seed: u64, size: usize) -> Vec<u8> {
    let base = sample_jpeg(seed as u8);
    // SOI (2) + APP0 marker, length and 14-byte JFIF body (18): insert right after them.
    const AFTER_APP0: usize = 20;
    let mut pad = size.saturating_sub(base.len());
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&base[..AFTER_APP0]);
    while pad > 0 {
        // One COM segment carries at most 65,533 bytes; a segment needs 4 bytes of header.
        let body = (pad.min(65_533 + 4)).saturating_sub(4).max(1);
        let len = u16::try_from(body + 2).expect("segment length fits");
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&len.to_be_bytes());
        let start = out.len();
        out.resize(start + body, 0);
        rng.fill(&mut out[start..]);
        pad = pad.saturating_sub(body + 4);
    }
    out.extend_from_slice(&base[AFTER_APP0..]);
    out
}

/// A plain-shape capture body of at most `target` bytes (and within one frame of it), with frames
/// of 30–60 KB. With `escape_slashes`, every `/` is written `\/` (PHP's `json_encode` style), so
/// every frame must be unescaped before it is decoded: the transform's slow path.
pub fn capture_body(target: usize, escape_slashes: bool) -> (Vec<u8>, usize) {
    let mut rng = XorShift::new(target as u64);
    let mut c = SampleCapture::new(0, false, "video_selfie_blank");
    c.escape_slashes = escape_slashes;
    let empty = c.to_json().len();
    // Per frame: the data URL plus its quotes and comma, and a bounding box and landmarks entry.
    const PER_FRAME_EXTRA: usize = 3 + 48 + 121 + 2;
    let mut total = empty;
    let mut seed = 1u64;
    loop {
        let (lo, hi) = FRAME_BYTES;
        let size = lo + (rng.next_u64() as usize) % (hi - lo + 1);
        let url = data_url("image/jpeg", &padded_jpeg(seed, size));
        let escapes = if escape_slashes {
            url.bytes().filter(|&b| b == b'/').count()
        } else {
            0
        };
        let grow = url.len() + PER_FRAME_EXTRA + escapes;
        if total + grow > target && !c.frames.is_empty() {
            break;
        }
        total += grow;
        c.frames.push(url);
        seed += 1;
    }
    // The per-frame estimate is close, not exact: drop frames until the body fits.
    let mut body = c.to_json();
    while body.len() > target && c.frames.len() > 1 {
        c.frames.pop();
        body = c.to_json();
    }
    (body, c.frames.len())
}
