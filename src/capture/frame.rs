//! One frame as it sits in the body, its JSON string literal, and its decoding into image bytes,
//! unescaping only the frames that need it, one at a time, into a buffer reused across frames.
//!
//! The parser keeps every frame (and `best_frame`, `best_frame_png`) as the literal it read,
//! borrowed from the body, whether or not it has escapes. An encoder that escapes `/` as `\/`
//! (PHP's `json_encode` by default) makes every frame escaped; unescaping them all up front
//! would copy the whole body (BENCHMARKS.md, "Open"). Here a frame is unescaped only when it is
//! decoded, into [`FrameDecoder`]'s buffer, so a capture holds at most one unescaped frame.
//!
//! `\/` is by far the most common escape in a data URL, and the only one a valid one can need
//! besides `\u` spellings of ASCII, so it has a fast path: drop the backslash of each `\/`,
//! 64 bytes at a time with fixed-size copies and no branch per escape (PHP's output has about one
//! per 64 bytes, so a branch on each would be mispredicted about as often), then eight at a time
//! for the last bytes. Any other escape sends the frame through serde_json, which unescapes
//! all of JSON exactly (RFC 8259 §7, surrogate pairs included). What the escapes produce is then
//! checked like any data URL: `\n`, `\"` or `\u00e9` in a frame give a non-base64 character and
//! the frame is refused with its index.

use std::fmt;

use serde::de::{self, Deserializer as _, Visitor};

use super::block::{Masks, BLOCK};
use super::data_url::{DataUrlDecoder, DataUrlError, ImageKind};

/// One data URL as the JSON string literal it was sent as, quotes included, escapes as sent.
///
/// Borrowed from the body: making a frame copies nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    literal: &'a str,
}

impl<'a> Frame<'a> {
    /// A frame from a JSON string literal (quotes included) that serde_json has validated, as
    /// the parser reads it; `None` if `literal` is not quoted.
    pub fn from_json_literal(literal: &'a str) -> Option<Frame<'a>> {
        let quoted = literal.len() >= 2 && literal.starts_with('"') && literal.ends_with('"');
        quoted.then_some(Frame { literal })
    }

    /// The JSON string literal, quotes included.
    pub fn json_literal(&self) -> &'a str {
        self.literal
    }

    /// The text between the quotes, escapes as sent: the data URL itself when there are none.
    pub fn raw(&self) -> &'a str {
        &self.literal[1..self.literal.len() - 1]
    }

    /// Whether the text has escapes, so decoding it means unescaping it first.
    pub fn has_escapes(&self) -> bool {
        self.raw().as_bytes().contains(&b'\\')
    }

    /// An upper bound of the data URL's length: escapes only ever shorten the text.
    pub fn max_url_len(&self) -> usize {
        self.raw().len()
    }
}

/// Decodes frames one at a time. Build one per capture and use it for every frame, so all of
/// them share one unescape buffer.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    data_url: DataUrlDecoder,
    /// The last escaped frame's data URL, unescaped; only its first bytes are meaningful.
    unescaped: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder with an empty unescape buffer (it grows to the largest escaped frame).
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// Decodes `frame` and appends the image bytes to `out`, as [`DataUrlDecoder::decode_into`]
    /// does; an escaped frame is unescaped first, and offsets in error reasons count in the
    /// unescaped text.
    pub fn decode_into(
        &mut self,
        frame: &Frame<'_>,
        max_bytes: usize,
        out: &mut Vec<u8>,
    ) -> Result<ImageKind, DataUrlError> {
        let start = out.len();
        // The decoder accepts only its two prefixes followed by base64, none of which has a
        // backslash: text it accepts has no escape and is the data URL itself. So a plain frame
        // is decoded straight from the body, with no scan for escapes. An escaped one fails at
        // once (at its prefix, `data:image\/jpeg`, in PHP's style) and is retried unescaped;
        // only a frame escaped after a plain prefix costs a wasted partial decode.
        match self
            .data_url
            .decode_into(frame.raw().as_bytes(), max_bytes, out)
        {
            Ok(kind) => return Ok(kind),
            Err(e) if !frame.has_escapes() => return Err(e),
            Err(_) => out.truncate(start),
        }
        let url = unescape(frame, &mut self.unescaped)?;
        self.data_url.decode_into(url, max_bytes, out)
    }
}

/// The data URL of an escaped frame, unescaped into `buf`.
fn unescape<'b>(frame: &Frame<'_>, buf: &'b mut Vec<u8>) -> Result<&'b [u8], DataUrlError> {
    // Escapes only shorten the text, so a buffer as long as the raw text always has room, plus
    // the block loop's overrun (see `unescape_slashes`). It is never shrunk, so once it fits the
    // largest frame nothing is allocated or zeroed again.
    if buf.len() < frame.raw().len() + BLOCK {
        buf.resize(frame.raw().len() + BLOCK, 0);
    }
    if let Some(len) = unescape_slashes(frame.raw().as_bytes(), buf) {
        return Ok(&buf[..len]);
    }
    unescape_json(frame.json_literal(), buf).map(|len| &buf[..len])
}

const LANE: usize = 8;
/// 0x01 in every byte.
const ONES: u64 = u64::MAX / 255;
/// 0x80 in every byte.
const HIGH: u64 = ONES << 7;

/// The high bit of every byte of `word` that is a backslash, exactly (no borrow between bytes,
/// unlike the shorter `(x - ONES) & !x` test, whose bits above a match can be false).
fn backslashes(word: u64) -> u64 {
    let x = word ^ (ONES * u64::from(b'\\'));
    // A byte of `x` is zero (a backslash) iff neither its high bit nor, after adding 0x7F to its
    // low seven bits, the carry into the high bit is set.
    !(((x & !HIGH) + !HIGH) | x) & HIGH
}

/// Writes `text` with the backslash of every `\/` removed to the start of `out` (at least
/// `BLOCK` bytes longer than `text`), and returns the length written; `None` if `text` has any
/// other escape.
///
/// Every backslash met here starts an escape: the one before it, if any, was `\/`, whose second
/// character is not a backslash. So `\/` is the only escape left, and it means `/`.
fn unescape_slashes(text: &[u8], out: &mut [u8]) -> Option<usize> {
    let (mut r, mut w) = unescape_slash_blocks(text, out)?;
    // A word at a time: copy it whole, then keep only the bytes before its first backslash and
    // restart at the `/` after it. `w <= r` throughout, so `out[w..w + LANE]` is in bounds.
    while let Some(chunk) = text.get(r..r + LANE) {
        let word: [u8; LANE] = chunk.try_into().expect("a LANE-byte slice");
        out[w..w + LANE].copy_from_slice(&word);
        let found = backslashes(u64::from_le_bytes(word));
        if found == 0 {
            r += LANE;
            w += LANE;
            continue;
        }
        let i = (found.trailing_zeros() / 8) as usize;
        if text.get(r + i + 1) != Some(&b'/') {
            return None;
        }
        r += i + 1;
        w += i;
    }
    // The last few bytes, one at a time.
    while let Some(&b) = text.get(r) {
        if b == b'\\' {
            if text.get(r + 1) != Some(&b'/') {
                return None;
            }
            r += 1;
            continue;
        }
        out[w] = b;
        r += 1;
        w += 1;
    }
    Some(w)
}

/// How many backslashes of a block `unescape_slash_blocks` removes without a loop: a block of
/// base64 from PHP has about one, and more than three in about 2 % of blocks.
const UNROLLED: usize = 3;

/// The block part of [`unescape_slashes`]: unescapes whole blocks from the start of `text` while
/// a block's source and its copies stay within `text`, and returns where it stopped in `text`
/// and `out` (never right after a backslash); `None` if an escape is not `\/`.
///
/// A block is copied whole, then, for its `j`-th backslash (from 0) at `k`, the 64 bytes after
/// it are copied again to `k - j` in `out`, which drops the backslash and moves the rest up. The
/// copies are fixed-size, so a block costs the same with no, one or three backslashes: there is
/// no branch on where or whether they are. A copy for a backslash a block does not have goes to
/// the end of the block's output, which the next block overwrites; `out` has `BLOCK` spare
/// bytes for the last one.
fn unescape_slash_blocks(text: &[u8], out: &mut [u8]) -> Option<(usize, usize)> {
    let (mut r, mut w) = (0, 0);
    // Whether the block before ended with a backslash, whose `/` is this block's first byte.
    let mut carry = 0;
    // The copy for a backslash at `k` reads up to `r + k + 1 + BLOCK`, and `k` is at most 64.
    while r + 2 * BLOCK < text.len() {
        let block: &[u8; BLOCK] = text[r..r + BLOCK].try_into().expect("a BLOCK-byte slice");
        let m = Masks::of(block);
        if ((m.backslash << 1) | carry) & !m.slash != 0 {
            // A backslash followed by something else (or a `\\`, whose second backslash is
            // not a `/`). With `carry`, the last block's final backslash is the culprit.
            return None;
        }
        carry = m.backslash >> (BLOCK - 1);
        out[w..w + BLOCK].copy_from_slice(block);
        let count = m.backslash.count_ones() as usize;
        let mut rest = m.backslash;
        for j in 0..UNROLLED {
            // Past the last backslash, `k` is 64 and `to` the end of the block's output.
            let k = rest.trailing_zeros() as usize;
            let to = w + k - j.min(count);
            out[to..to + BLOCK].copy_from_slice(&text[r + k + 1..r + k + 1 + BLOCK]);
            rest &= rest.wrapping_sub(1);
        }
        let mut j = UNROLLED;
        while rest != 0 {
            let k = rest.trailing_zeros() as usize;
            out[w + k - j..w + k - j + BLOCK].copy_from_slice(&text[r + k + 1..r + k + 1 + BLOCK]);
            rest &= rest - 1;
            j += 1;
        }
        r += BLOCK;
        w += BLOCK - count;
    }
    // Stop before a carried backslash's `/`: the backslash was dropped, the `/` (checked here,
    // since no next block did) is not written yet, and the word loop takes it as plain text.
    (carry == 0 || text[r] == b'/').then_some((r, w))
}

/// Unescapes a JSON string literal with serde_json into the start of `out` (at least as long as
/// the literal's text), returning the length written.
fn unescape_json(literal: &str, out: &mut [u8]) -> Result<usize, DataUrlError> {
    serde_json::Deserializer::from_str(literal)
        .deserialize_str(CopyInto(out))
        // The parser has already checked every escape character and hex digit, so what is left
        // to fail is a `\u` escape of half a UTF-16 surrogate pair, which is no character.
        // serde_json's own text would give a position inside the frame, not the body.
        .map_err(|_| {
            DataUrlError::Invalid(
                "is not a valid JSON string (an escape is not text, e.g. an unpaired UTF-16 \
                 surrogate `\\uD800`)"
                    .into(),
            )
        })
}

/// Copies the unescaped string serde_json hands over to the start of a buffer.
struct CopyInto<'b>(&'b mut [u8]);

impl Visitor<'_> for CopyInto<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
        // Unescaped text is never longer than the escaped text the buffer was sized for.
        let dst = self
            .0
            .get_mut(..s.len())
            .ok_or_else(|| E::custom("unescaped text longer than its literal"))?;
        dst.copy_from_slice(s.as_bytes());
        Ok(s.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::testdata::{data_url, sample_jpeg, sample_png};

    /// `literal` (a valid JSON string literal) unescapes to what serde_json makes of it.
    fn assert_unescapes_like_serde_json(literal: &str) {
        let want: String = serde_json::from_str(literal).expect("valid JSON");
        assert_eq!(
            unescaped(literal).expect("valid"),
            want.as_bytes(),
            "{literal}"
        );
    }

    const MAX: usize = 1 << 20;
    const SECRET: &str = "SECRETMARKER";

    /// `s` as serde_json writes it, then with every `/` escaped as `\/` (PHP's style), and with
    /// every `/` escaped as `\u002f`.
    fn literals(s: &str) -> [String; 3] {
        let plain = serde_json::to_string(s).expect("a str serializes");
        let slashes = plain.replace('/', r"\/");
        let unicode = plain.replace('/', r"\u002f");
        [plain, slashes, unicode]
    }

    fn frame(literal: &str) -> Frame<'_> {
        Frame::from_json_literal(literal).expect("a quoted literal")
    }

    fn decode(literal: &str) -> Result<(ImageKind, Vec<u8>), DataUrlError> {
        let mut out = Vec::new();
        FrameDecoder::new()
            .decode_into(&frame(literal), MAX, &mut out)
            .map(|k| (k, out))
    }

    fn reason(literal: &str) -> String {
        match decode(literal) {
            Err(DataUrlError::Invalid(r)) => r,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// Unescapes the way the decoder does, for comparison with serde_json.
    fn unescaped(literal: &str) -> Result<Vec<u8>, DataUrlError> {
        let mut buf = Vec::new();
        unescape(&frame(literal), &mut buf).map(<[u8]>::to_vec)
    }

    #[test]
    fn a_frame_is_its_literal_and_tells_whether_it_has_escapes() {
        let f = frame(r#""data:image\/jpeg""#);
        assert_eq!(f.json_literal(), r#""data:image\/jpeg""#);
        assert_eq!(f.raw(), r"data:image\/jpeg");
        assert!(f.has_escapes());
        assert_eq!(f.max_url_len(), 16);
        assert!(!frame(r#""data:image/jpeg""#).has_escapes());
        assert_eq!(frame(r#""""#).raw(), "");
        for not_quoted in ["", "\"", "x", "\"x", "x\"", "null"] {
            assert!(
                Frame::from_json_literal(not_quoted).is_none(),
                "{not_quoted}"
            );
        }
    }

    #[test]
    fn plain_and_escaped_spellings_decode_to_the_same_image() {
        let jpeg = sample_jpeg(3);
        let png = sample_png(4);
        // Long enough that `/` falls in the word loop and in the byte-at-a-time tail.
        let mut big = sample_jpeg(5);
        big.extend((0..50_000u32).map(|i| (i * 7 % 251) as u8));
        for (media_type, image, kind) in [
            ("image/jpeg", &jpeg, ImageKind::Jpeg),
            ("image/png", &png, ImageKind::Png),
            ("image/jpeg", &big, ImageKind::Jpeg),
        ] {
            let url = data_url(media_type, image);
            for literal in literals(&url) {
                assert_eq!(
                    decode(&literal).expect("valid"),
                    (kind, image.clone()),
                    "{}",
                    &literal[..30]
                );
            }
        }
    }

    #[test]
    fn every_json_escape_unescapes_as_serde_json_does() {
        // Every escape JSON has, each at the start, in the middle and at the end (so in a word
        // and in the tail), next to `\/` and to each other.
        let escapes = [
            r"\/",
            r"\\",
            r#"\""#,
            r"\b",
            r"\f",
            r"\n",
            r"\r",
            r"\t",
            r"\u0041",
            r"\u002F",
            r"\u00e9",
            r"\u20AC",
            r"\uD83D\uDE00",
            r"\u0000",
        ];
        let fillers = ["", "a", "abcdefg", "abcdefghijklmnopq", "\u{e9}\u{20ac}"];
        let mut checked = 0;
        for e in escapes {
            for f in fillers {
                for text in [
                    format!("{e}{f}"),
                    format!("{f}{e}{f}"),
                    format!("{f}{e}"),
                    format!(r"{f}\/{e}{f}{e}\/"),
                    format!("{e}{e}{f}{e}"),
                ] {
                    let literal = format!("\"{text}\"");
                    assert_unescapes_like_serde_json(&literal);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, escapes.len() * fillers.len() * 5);
    }

    #[test]
    fn slash_escapes_in_every_word_position() {
        // A `\/` (or two in a row, or one split from its `/` across words) at every offset of
        // the 8-byte words.
        for lead in 0..24 {
            for text in [r"\/", r"\/\/", r"x\/y\/z", r"\/\/\/\/\/\/\/\/\/"] {
                let literal = format!("\"{}{text}{}\"", "A".repeat(lead), "B".repeat(lead));
                let want: String = serde_json::from_str(&literal).expect("valid JSON");
                assert_eq!(unescaped(&literal).expect("valid"), want.as_bytes());
            }
        }
    }

    #[test]
    fn block_unescape_matches_serde_json_at_every_offset() {
        // Base64-like text long enough for several blocks, with `\/` every `gap` bytes (so none,
        // one or many per block, and on every block boundary), and one other escape (or a
        // second `\/`) put at every offset: it must fall back to serde_json exactly, also when
        // it straddles a block boundary or ends the text right before the closing quote.
        let others = [r"\/", r"\n", r"\\", r"\u002F", r"\u0041", r#"\""#];
        let mut checked = 0;
        for gap in [1, 2, 7, 13, 16, 63, 64, 65, 1000] {
            let text: String = (0..5 * BLOCK)
                .map(|k| {
                    if k % gap == gap - 1 {
                        '/'
                    } else {
                        (b'A' + (k % 26) as u8) as char
                    }
                })
                .collect();
            let escaped = text.replace('/', r"\/");
            for other in others {
                for at in (0..=escaped.len()).filter(|&at| !escaped[..at].ends_with('\\')) {
                    let literal = format!("\"{}{other}{}\"", &escaped[..at], &escaped[at..]);
                    assert_unescapes_like_serde_json(&literal);
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
    }

    #[test]
    fn block_unescape_handles_many_backslashes_in_a_block_and_a_carried_one() {
        // More backslashes in a block than the unrolled copies; and a block that ends with a
        // backslash whose `/` (or, invalid, another character) starts the next block.
        for lead in [0, 1, 60, 62, 63, 64, 100, 127, 128] {
            for run in [r"\/", r"\/\/\/\/", &r"\/".repeat(40), r"\n", r"\\"] {
                let literal = format!("\"{}{run}{}\"", "A".repeat(lead), "B".repeat(300));
                assert_unescapes_like_serde_json(&literal);
            }
        }
    }

    #[test]
    fn an_unpaired_surrogate_is_refused_without_quoting() {
        for text in [
            format!(r"data:image\/jpeg;base64,{SECRET}\uD800"),
            format!(r"data:image\/jpeg;base64,\uDC00{SECRET}"),
            format!(r"data:image\/jpeg;base64,\uD800\u0041{SECRET}"),
        ] {
            let r = reason(&format!("\"{text}\""));
            assert!(r.starts_with("is not a valid JSON string"), "{r}");
            assert!(!r.contains(SECRET), "{r}");
        }
    }

    #[test]
    fn escapes_that_give_non_base64_characters_are_refused() {
        let b64 = data_url("image/jpeg", &sample_jpeg(1));
        let (head, tail) = b64.split_at(40);
        for (escape, want) in [
            (r"\n", "whitespace at offset 40"),
            (r"\t", "whitespace at offset 40"),
            (r"\u0020", "whitespace at offset 40"),
            (r#"\""#, "invalid character at offset 40"),
            (r"\\", "invalid character at offset 40"),
            (r"\u00e9", "not base64"),
            (r"\u0000", "invalid character at offset 40"),
        ] {
            // Replacing one character keeps the length a multiple of 4 where it can.
            let literal = format!("\"{}{escape}{}\"", head.replace('/', r"\/"), &tail[1..]);
            let r = reason(&literal);
            assert!(r.contains(want), "{escape}: {r}");
        }
        // In the prefix.
        assert!(reason(r#""data:image\/jpeg\u002cbase64,AAAA""#).contains("`;base64,`"));
        assert!(reason(r#""data:image\\jpeg;base64,AAAA""#).contains("media type"));
        assert!(reason(r#""\u0064ata:image/jpeg;base64,""#).contains("empty image data"));
    }

    #[test]
    fn plain_frames_keep_their_errors_and_size_is_judged_unescaped() {
        assert_eq!(reason(r#""data:image/jpeg;base64,""#), "empty image data");
        // The escaped text is longer than the limit, the data URL it stands for is not.
        let jpeg = sample_jpeg(9);
        let url = data_url("image/jpeg", &jpeg);
        let escaped = serde_json::to_string(&url)
            .expect("str")
            .replace('/', r"\/")
            .replace('A', r"\u0041");
        let mut out = Vec::new();
        let mut d = FrameDecoder::new();
        assert_eq!(
            d.decode_into(&frame(&escaped), jpeg.len(), &mut out),
            Ok(ImageKind::Jpeg)
        );
        assert_eq!(out, jpeg);
        out.clear();
        assert_eq!(
            d.decode_into(&frame(&escaped), jpeg.len() - 1, &mut out),
            Err(DataUrlError::TooLarge)
        );
    }

    #[test]
    fn the_unescape_buffer_is_reused_and_output_appended() {
        let mut d = FrameDecoder::new();
        let mut out = b"keep".to_vec();
        let big = data_url("image/jpeg", &[sample_jpeg(1), vec![7; 5000]].concat());
        let small = data_url("image/jpeg", &sample_jpeg(2));
        let [_, big_escaped, _] = literals(&big);
        let [_, small_escaped, _] = literals(&small);
        d.decode_into(&frame(&big_escaped), MAX, &mut out)
            .expect("valid");
        assert_eq!(&out[..4], b"keep");
        let cap = d.unescaped.capacity();
        out.truncate(4);
        d.decode_into(&frame(&small_escaped), MAX, &mut out)
            .expect("valid");
        assert_eq!(&out[4..], &sample_jpeg(2)[..]);
        assert_eq!(d.unescaped.capacity(), cap, "no reallocation");
    }

    #[test]
    fn backslash_mask_is_exact() {
        for i in 0..8 {
            let mut w = *b"abcdefgh";
            w[i] = b'\\';
            assert_eq!(backslashes(u64::from_le_bytes(w)), 0x80 << (8 * i));
        }
        // A byte that differs from `\` only in its low bit (`]`) right after a backslash: the
        // shorter test would flag it too.
        assert_eq!(
            backslashes(u64::from_le_bytes(*b"\\]\\]]]]]")),
            0x80 | 0x80 << 16
        );
        assert_eq!(backslashes(u64::from_le_bytes([0xDC; 8])), 0);
        assert_eq!(backslashes(u64::from_le_bytes([b'\\'; 8])), HIGH);
    }
}
