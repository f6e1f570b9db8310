//! A streaming 64-bit hash of bodies, computed on both sides of the proxy.
//!
//! Not cryptographic: it only has to tell a body that crossed the proxy intact from one that lost,
//! repeated, reordered or changed bytes. Every step `h = rotl((h ^ word) * K, 29)` is a bijection
//! of the word for a given state, so two bodies that differ in one 8-byte word never collide;
//! the length goes in last, so a cut at a word boundary is caught as well. Word-wise, so it stays
//! cheap in an unoptimized build (the CI run uses one).

/// Odd multiplier (the 64-bit golden ratio).
const K: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(K).rotate_left(29)
}

/// A body hash fed chunk by chunk, chunks cut anywhere.
pub struct Hasher {
    h: u64,
    len: u64,
    pending: [u8; 8],
    npending: usize,
}

impl Hasher {
    pub fn new() -> Self {
        Hasher {
            h: 0x243F_6A88_85A3_08D3,
            len: 0,
            pending: [0; 8],
            npending: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.npending > 0 {
            let take = (8 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&data[..take]);
            self.npending += take;
            data = &data[take..];
            if self.npending < 8 {
                return;
            }
            self.h = mix(self.h, u64::from_le_bytes(self.pending));
            self.npending = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.h = mix(self.h, u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.npending = rest.len();
    }

    /// Bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// The hash as 16 hex digits (a header value).
    pub fn finish(&self) -> String {
        let mut last = [0u8; 8];
        last[..self.npending].copy_from_slice(&self.pending[..self.npending]);
        let h = mix(mix(self.h, u64::from_le_bytes(last)), self.len);
        format!("{h:016x}")
    }
}

/// The hash of a whole body.
pub fn hash(data: &[u8]) -> String {
    let mut h = Hasher::new();
    h.update(data);
    h.finish()
}
