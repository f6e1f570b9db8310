//! Deterministic test data that can be produced and checked chunk by chunk, so a 100 MiB body
//! never has to exist in memory as a whole.
//!
//! The data is a sequence of 64 KiB blocks. Every block is the same pseudo-random template
//! except for its first 8 bytes, which carry the block number: a dropped, repeated or reordered
//! block is caught, and so is any byte that changed. Checking compares slices (memcmp), which
//! stays fast even in an unoptimized test build.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// Size of one block, and of the chunks [`Pattern::chunks`] yields.
pub const BLOCK: usize = 64 * 1024;

/// `len` bytes of deterministic data.
#[derive(Clone)]
pub struct Pattern {
    len: u64,
    template: Arc<[u8]>,
}

impl Pattern {
    /// The first `len` bytes of the sequence.
    pub fn new(len: u64) -> Self {
        // xorshift64: cheap, deterministic, and no byte pattern a proxy could "optimize".
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut template = Vec::with_capacity(BLOCK);
        while template.len() < BLOCK {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            template.extend_from_slice(&state.to_le_bytes());
        }
        Pattern {
            len,
            template: template.into(),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Number of chunks [`Pattern::chunk`] can produce.
    pub fn chunk_count(&self) -> u64 {
        self.len.div_ceil(BLOCK as u64)
    }

    /// Chunk `k` (block `k`, the last one possibly short).
    pub fn chunk(&self, k: u64) -> Bytes {
        let start = k * BLOCK as u64;
        assert!(start < self.len, "chunk {k} is past the end");
        let n = (self.len - start).min(BLOCK as u64) as usize;
        let mut b = BytesMut::with_capacity(n);
        b.extend_from_slice(&self.template[..n]);
        let stamp = k.to_le_bytes();
        let s = n.min(8);
        b[..s].copy_from_slice(&stamp[..s]);
        b.freeze()
    }

    /// Every chunk in order.
    pub fn chunks(&self) -> impl Iterator<Item = Bytes> + Send + 'static {
        let p = self.clone();
        (0..self.chunk_count()).map(move |k| p.chunk(k))
    }

    /// Whether `data` equals the sequence at `offset`; `Err` holds the first offset that differs.
    pub fn check(&self, offset: u64, data: &[u8]) -> Result<(), u64> {
        if offset + data.len() as u64 > self.len {
            return Err(self.len.max(offset));
        }
        let mut off = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let k = off / BLOCK as u64;
            let r = (off % BLOCK as u64) as usize;
            let n = (BLOCK - r).min(rest.len());
            let (here, next) = rest.split_at(n);
            // Bytes 0..8 of a block are its number; the rest is the template.
            let stamp = k.to_le_bytes();
            let mut i = 0;
            while r + i < 8 && i < n {
                if here[i] != stamp[r + i] {
                    return Err(off + i as u64);
                }
                i += 1;
            }
            if here[i..] != self.template[r + i..r + n] {
                let bad = here[i..]
                    .iter()
                    .zip(&self.template[r + i..r + n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(off + (i + bad) as u64);
            }
            off += n as u64;
            rest = next;
        }
        Ok(())
    }
}

/// Checks a stream of chunks against a [`Pattern`] as they arrive.
pub struct PatternCheck {
    pattern: Pattern,
    offset: u64,
    first_bad: Option<u64>,
}

impl PatternCheck {
    pub fn new(pattern: Pattern) -> Self {
        PatternCheck {
            pattern,
            offset: 0,
            first_bad: None,
        }
    }

    /// Feeds the next chunk.
    pub fn feed(&mut self, data: &[u8]) {
        if self.first_bad.is_none() {
            if let Err(at) = self.pattern.check(self.offset, data) {
                self.first_bad = Some(at);
            }
        }
        self.offset += data.len() as u64;
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// Whether everything fed so far matched and the whole pattern was fed.
    pub fn complete_and_equal(&self) -> Result<(), String> {
        if let Some(at) = self.first_bad {
            return Err(format!("data differs from the pattern at byte {at}"));
        }
        if self.offset != self.pattern.len() {
            return Err(format!(
                "got {} bytes, expected {}",
                self.offset,
                self.pattern.len()
            ));
        }
        Ok(())
    }
}
