//! Bit masks of the bytes that matter in JSON string text (`"`, control characters, `\\`, `/`),
//! for a 64-byte block at a time.
//!
//! Frames are mostly long runs of base64 in which PHP's `json_encode` puts a `\/` about every 64
//! bytes. Code that stops at each escape pays a call or a mispredicted branch per escape; with
//! masks, `body::skim` checks a whole block with one branch and `frame` removes a block's
//! backslashes with fixed-size copies. SSE2 computes them on x86-64 (every such CPU has it);
//! elsewhere a plain loop does, with the same results.

/// The block length: one bit per byte in a `u64`.
pub const BLOCK: usize = 64;

/// One bit per byte of a block (bit `k` for byte `k`), for the bytes that matter in JSON string
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Masks {
    /// `"` and the control characters (below 0x20), which end string text or make it invalid.
    pub quote_or_control: u64,
    /// `\`, which starts an escape (or is the second byte of `\\`).
    pub backslash: u64,
    /// `/`, which follows the backslash in `\/`.
    pub slash: u64,
}

impl Masks {
    /// The masks of `block`.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    pub fn of(block: &[u8; BLOCK]) -> Masks {
        // SAFETY: the build targets CPUs with SSE2 (the `cfg` above; every x86-64 CPU has it).
        unsafe { Masks::of_sse2(block) }
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[target_feature(enable = "sse2")]
    fn of_sse2(block: &[u8; BLOCK]) -> Masks {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
            _mm_set_epi64x,
        };
        let bits = |v: __m128i| u64::from(_mm_movemask_epi8(v) as u16);
        let mut m = Masks {
            quote_or_control: 0,
            backslash: 0,
            slash: 0,
        };
        for (k, lane) in block.chunks_exact(16).enumerate() {
            let half =
                |h: usize| i64::from_le_bytes(lane[8 * h..8 * h + 8].try_into().expect("8 bytes"));
            let v = _mm_set_epi64x(half(1), half(0));
            let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v);
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            m.quote_or_control |= bits(_mm_or_si128(quote, control)) << (16 * k);
            m.backslash |= bits(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))) << (16 * k);
            m.slash |= bits(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'/' as i8))) << (16 * k);
        }
        m
    }

    /// The masks of `block`.
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    pub fn of(block: &[u8; BLOCK]) -> Masks {
        let bits = |f: fn(u8) -> bool| {
            (block.iter().enumerate()).fold(0, |m, (k, &b)| m | u64::from(f(b)) << k)
        };
        Masks {
            quote_or_control: bits(|b| b == b'"' || b < 0x20),
            backslash: bits(|b| b == b'\\'),
            slash: bits(|b| b == b'/'),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_masks_mark_exactly_their_bytes() {
        let block: [u8; BLOCK] = std::array::from_fn(|k| match k % 7 {
            0 => b'"',
            1 => b'\\',
            2 => b'/',
            3 => k as u8 % 0x20,
            4 => 0x80 | k as u8,
            _ => b'0' + (k % 10) as u8,
        });
        let bits = |f: &dyn Fn(u8) -> bool| {
            (block.iter().enumerate()).fold(0u64, |m, (k, &b)| m | u64::from(f(b)) << k)
        };
        let m = Masks::of(&block);
        assert_eq!(m.quote_or_control, bits(&|b| b == b'"' || b < 0x20));
        assert_eq!(m.backslash, bits(&|b| b == b'\\'));
        assert_eq!(m.slash, bits(&|b| b == b'/'));
    }
}
