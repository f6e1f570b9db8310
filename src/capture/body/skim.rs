//! Cuts the long string literals (the frames) out of a body before serde_json reads it, so the
//! parser walks only the body's structure and the frames are scanned once, here, quickly.
//!
//! serde_json scans a string a word at a time but stops at every escape, and PHP's `json_encode`
//! escapes every `/` as `\/`, about one per 64 bytes of base64: on such a body the stop and
//! restart per escape made serde_json's scan the largest cost of a capture (BENCHMARKS.md). Here
//! a string is found with `memchr2` on `"` and `\`, its escapes checked as serde_json checks them
//! when it skips a string (RFC 8259 §7: the eight one-letter escapes and `\u` with four hex
//! digits), and it is checked for control characters and UTF-8 in passes that need no branch
//! per escape.
//!
//! serde_json then reads a *skeleton*: the body with each long, valid string replaced by `""`.
//! Every other byte is copied as is, so the skeleton has the body's structure, line breaks and
//! short strings (keys, `action`), and serde_json still checks all of it and words every error.
//! What it hands back (a frame's literal, `action`) is mapped back to the same text in the body
//! by where it sits in the skeleton, and error positions are mapped back to the body's line and
//! column. A string is copied as is, and left to serde_json, whenever cutting it could change
//! what serde_json does: short strings (a key that is a known field in any letter case is never
//! long, even spelt with `\u` escapes), strings with a `\u` escape of a UTF-16 surrogate
//! (serde_json checks the pairing when it unescapes), and strings that are not UTF-8
//! (serde_json only checks that for some).
//! The first invalid string ends the skeleton: its opening quote and the few bytes from the
//! error on are kept, so serde_json meets the same error, unless it stops earlier, as it would
//! in the body.
//!
//! The skeleton is a copy, so it is only made when it is at most half the body (frames are
//! nearly all of a capture); otherwise serde_json reads the body itself, and a capture's extra
//! memory stays what the frame decoding takes.

use std::borrow::Cow;
use std::str;

use memchr::{memchr, memchr2};

use crate::capture::block::{Masks, BLOCK};

/// The shortest string text (between the quotes) that is cut. A key that is a known field, in
/// any letter case, is shorter even spelt entirely in `\u` escapes (`frame_bounding_box_list`,
/// 23 × 6 bytes; every character that folds to one of a name's is in the BMP), so such keys
/// always reach serde_json as sent, to be matched, refused as a case variant or as a duplicate.
pub(super) const MIN_CUT: usize = 160;

const _: () = assert!(MIN_CUT > 6 * super::Field::LONGEST_NAME);

/// How many bytes from the point of an invalid string are kept for serde_json to fail on: a
/// backslash and the five bytes of the longest escape, `u` and four hex digits, fit.
const ERROR_TAIL: usize = 8;

/// A body with its long strings cut out, and where they were.
#[derive(Debug)]
pub(super) struct Skeleton<'b> {
    body: &'b [u8],
    /// What serde_json reads: the body itself when nothing is cut.
    pub(super) text: Cow<'b, [u8]>,
    /// One entry per cut string, in order.
    cuts: Vec<Cut<'b>>,
}

/// One cut: the bytes after an opening quote, from the skeleton index right after that quote.
#[derive(Debug)]
struct Cut<'b> {
    /// Skeleton index right after the string's opening quote, where its text was removed.
    at: usize,
    /// Bytes removed by this cut and every one before it.
    removed: usize,
    /// The string's literal in the body, quotes included, checked as UTF-8; `None` for the cut
    /// prefix of an invalid string.
    literal: Option<&'b str>,
}

/// Builds the skeleton of `body`, cutting valid strings of at least `min_cut` bytes of text.
///
/// A skeleton that would keep more than half of the body (a body of many short strings or
/// numbers, not frames) is not built: serde_json reads the body itself, as it did before
/// skeletons, so the copy never costs more than half a body of memory.
pub(super) fn skim(body: &[u8], min_cut: usize) -> Skeleton<'_> {
    let (spans, end) = find_cuts(body, min_cut);
    let cut: usize = spans.iter().map(|s| s.len).sum();
    if end - cut > body.len() / 2 {
        return Skeleton::whole(body);
    }
    build(body, spans, end)
}

/// [`skim`] without the half-body rule, so tests can cut small bodies.
#[cfg(test)]
pub(super) fn skim_always(body: &[u8], min_cut: usize) -> Skeleton<'_> {
    let (spans, end) = find_cuts(body, min_cut);
    build(body, spans, end)
}

/// The skeleton of `body[..end]` with `spans` cut.
fn build<'b>(body: &'b [u8], spans: Vec<Span<'b>>, end: usize) -> Skeleton<'b> {
    let cut: usize = spans.iter().map(|s| s.len).sum();
    let mut sk = Skeleton {
        body,
        text: Cow::Owned(Vec::with_capacity(end - cut)),
        cuts: Vec::with_capacity(spans.len()),
    };
    let mut copied = 0;
    for span in spans {
        sk.text
            .to_mut()
            .extend_from_slice(&body[copied..span.start]);
        sk.cut(span.len, span.literal);
        copied = span.start + span.len;
    }
    sk.text.to_mut().extend_from_slice(&body[copied..end]);
    sk
}

/// Text to cut from the body: `len` bytes from `start`, right after an opening quote.
struct Span<'b> {
    start: usize,
    len: usize,
    /// The string's literal, quotes included, checked as UTF-8; `None` for the valid start of
    /// an invalid string.
    literal: Option<&'b str>,
}

/// The text to cut, in order, and where the skeleton ends in the body (before its end if a
/// string is invalid).
fn find_cuts(body: &[u8], min_cut: usize) -> (Vec<Span<'_>>, usize) {
    let mut spans = Vec::new();
    // `at`: the scan position, always outside a string. Outside a string a `"` can only open
    // one: in JSON that is its only use outside strings, and serde_json stops at any syntax
    // error before it.
    let mut at = 0;
    while let Some(q) = memchr(b'"', &body[at..]) {
        let open = at + q;
        let text_start = open + 1;
        let (close, surrogate) = match scan_string(body, text_start) {
            Ok(Scanned { close, surrogate }) => (close, surrogate),
            Err(error) => {
                // Cut the valid text before the error but its last character or escape, keep
                // the bytes serde_json needs to fail the same way, and stop. What is kept puts
                // every error serde_json finds inside the string after the cut, where
                // positions are mapped past the cut text, and an error at the opening quote
                // itself (`nul"l`) before it.
                let keep = last_token_start(body, text_start, error);
                spans.push(Span {
                    start: text_start,
                    len: keep - text_start,
                    literal: None,
                });
                return (spans, body.len().min(error + ERROR_TAIL));
            }
        };
        if close - text_start >= min_cut && !surrogate {
            if let Ok(literal) = str::from_utf8(&body[open..=close]) {
                spans.push(Span {
                    start: text_start,
                    len: close - text_start,
                    literal: Some(literal),
                });
            }
        }
        at = close + 1;
    }
    (spans, body.len())
}

impl<'b> Skeleton<'b> {
    /// The body itself, nothing cut: what serde_json read before skeletons.
    pub(super) fn whole(body: &'b [u8]) -> Self {
        Skeleton {
            body,
            text: Cow::Borrowed(body),
            cuts: Vec::new(),
        }
    }

    /// Records that `len` body bytes are left out at the current end of the skeleton.
    fn cut(&mut self, len: usize, literal: Option<&'b str>) {
        let removed = self.cuts.last().map_or(0, |c| c.removed) + len;
        self.cuts.push(Cut {
            at: self.text.len(),
            removed,
            literal,
        });
    }

    /// The body index of skeleton index `i` read as the start of a range: text cut at `i`
    /// comes after it.
    fn start_in_body(&self, i: usize) -> usize {
        let k = self.cuts.partition_point(|c| c.at < i);
        i + k.checked_sub(1).map_or(0, |k| self.cuts[k].removed)
    }

    /// The body index of skeleton index `i` read as the end of a range (or an error position):
    /// text cut at `i` comes before it.
    fn end_in_body(&self, i: usize) -> usize {
        let k = self.cuts.partition_point(|c| c.at <= i);
        i + k.checked_sub(1).map_or(0, |k| self.cuts[k].removed)
    }

    /// Where `s`, a slice of [`Skeleton::text`], sits in the body; `None` if it is not one.
    fn range_in_body(&self, s: &[u8]) -> Option<(usize, usize)> {
        let start = (s.as_ptr() as usize).checked_sub(self.text.as_ptr() as usize)?;
        let end = start + s.len();
        (end <= self.text.len()).then(|| (self.start_in_body(start), self.end_in_body(end)))
    }

    /// The body text that `s` (a slice of the skeleton that serde_json has validated as UTF-8,
    /// such as a raw value or a borrowed string) stands for.
    pub(super) fn body_str(&self, s: &str) -> &'b str {
        let (start, end) = self
            .range_in_body(s.as_bytes())
            .expect("serde_json hands back slices of the text it reads");
        // A cut string's literal (`""` in the skeleton) was checked when it was cut; anything
        // else was copied as is, and serde_json checked it in the skeleton.
        let skeleton_start = s.as_ptr() as usize - self.text.as_ptr() as usize;
        if s.len() == 2 {
            if let Ok(k) = self
                .cuts
                .binary_search_by_key(&(skeleton_start + 1), |c| c.at)
            {
                if let Some(literal) = self.cuts[k].literal {
                    return literal;
                }
            }
        }
        str::from_utf8(&self.body[start..end]).expect("text copied as is was validated as UTF-8")
    }

    /// The body's line and column (as serde_json counts them: lines from 1, bytes since the
    /// last line break) of a skeleton position given the same way. Cut text has no line break.
    ///
    /// A position right after a cut string's opening quote is one serde_json gives when that
    /// quote is itself the error, so it stays before the cut text; an error anywhere in the
    /// string or after it comes later in the skeleton (see `skim`).
    pub(super) fn body_position(&self, line: usize, column: usize) -> (usize, usize) {
        if line == 0 {
            return (line, column);
        }
        let line_start = match line {
            1 => 0,
            n => memchr::memchr_iter(b'\n', &self.text)
                .nth(n - 2)
                .map_or(self.text.len(), |i| i + 1),
        };
        let i = line_start + column;
        (line, self.start_in_body(i) - self.start_in_body(line_start))
    }
}

/// A valid string's closing quote, and whether it has a `\u` escape of a UTF-16 surrogate.
#[derive(Debug)]
struct Scanned {
    close: usize,
    surrogate: bool,
}

/// Finds the end of the string whose text starts at `start`, checking it as serde_json does when
/// it skips a string: each escape, and no control character; `Err` is the index of the first
/// control character or bad escape's backslash, or the body's length if the string does not end.
fn scan_string(body: &[u8], start: usize) -> Result<Scanned, usize> {
    let mut surrogate = false;
    let mut i = start;
    loop {
        i = skip_blocks(body, i);
        let Some(k) = memchr2(b'"', b'\\', &body[i..]) else {
            return Err(first_control(&body[i..]).map_or(body.len(), |c| i + c));
        };
        let at = i + k;
        if let Some(c) = first_control(&body[i..at]) {
            return Err(i + c);
        }
        if body[at] == b'"' {
            return Ok(Scanned {
                close: at,
                surrogate,
            });
        }
        i = match body.get(at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at + 2,
            Some(b'u') => match body.get(at + 2..at + 6) {
                Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => {
                    // D800–DFFF.
                    surrogate |= hex[0].eq_ignore_ascii_case(&b'd')
                        && matches!(hex[1].to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f');
                    at + 6
                }
                _ => return Err(at),
            },
            _ => return Err(at),
        };
    }
}

/// Skips the whole 64-byte blocks of string text from `i` that have no quote, no control
/// character and no escape but `\/`, which is all of a frame but its end (PHP escapes every
/// `/`, about one per block of base64). Returns where it stopped, never right after a
/// backslash, so the caller sees every escape it did not skip whole.
///
/// With one escape per block, a search for the next escape (`memchr2`) costs a call and a
/// mispredicted branch per escape; here a block costs a few vector compares and one branch
/// that is nearly always taken.
fn skip_blocks(body: &[u8], mut i: usize) -> usize {
    // Whether the block before ended with a backslash, whose `/` is this block's first byte.
    let mut carry = 0;
    while let Some(block) = body.get(i..i + BLOCK) {
        let block: &[u8; BLOCK] = block.try_into().expect("a BLOCK-byte slice");
        let m = Masks::of(block);
        if m.quote_or_control != 0 || ((m.backslash << 1) | carry) & !m.slash != 0 {
            // Every backslash skipped so far was followed by `/`, so none of them was itself
            // escaped, and `carry` is an escape's first byte.
            return i - carry as usize;
        }
        carry = m.backslash >> (BLOCK - 1);
        i += BLOCK;
    }
    i - carry as usize
}

/// The start of the last byte or escape of string text `body[start..end]`, whose escapes are
/// all valid; `start` if it is empty.
fn last_token_start(body: &[u8], start: usize, end: usize) -> usize {
    let (mut i, mut last) = (start, start);
    while i < end {
        match memchr(b'\\', &body[i..end]) {
            Some(0) => {
                last = i;
                i += if body[i + 1] == b'u' { 6 } else { 2 };
            }
            Some(k) => {
                last = i + k - 1;
                i += k;
            }
            None => {
                last = end - 1;
                i = end;
            }
        }
    }
    last
}

/// The index of the first byte below 0x20 in `text`, which JSON forbids in a string.
fn first_control(text: &[u8]) -> Option<usize> {
    // A branch-free OR over each block (the compiler vectorizes it), then a search only in a
    // block that has one.
    for (n, block) in text.chunks(BLOCK).enumerate() {
        if block.iter().fold(false, |any, &b| any | (b < 0x20)) {
            return block.iter().position(|&b| b < 0x20).map(|i| n * BLOCK + i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skeleton(body: &str, min_cut: usize) -> String {
        String::from_utf8(skim_always(body.as_bytes(), min_cut).text.into_owned()).expect("UTF-8")
    }

    #[test]
    fn long_valid_strings_are_cut_and_the_rest_is_kept() {
        let body = r#"{"a":"0123456789","b" : ["xy", "0123\/456789\n"] }"#;
        assert_eq!(skeleton(body, 10), r#"{"a":"","b" : ["xy", ""] }"#);
        assert_eq!(
            skeleton(body, 11),
            r#"{"a":"0123456789","b" : ["xy", ""] }"#
        );
        assert_eq!(skeleton(body, usize::MAX), body);
        // Keys are strings like any other.
        assert_eq!(skeleton(r#"{"0123456789":1}"#, 10), r#"{"":1}"#);
    }

    #[test]
    fn a_skeleton_of_more_than_half_the_body_is_not_built() {
        // Half the body cut: built.
        let body = br#"["0123456789",1,2,3]"#;
        assert!(matches!(skim(body, 10).text, Cow::Owned(_)));
        // Less: serde_json reads the body itself.
        let body = br#"["0123456789",1,2,3,4]"#;
        let sk = skim(body, 10);
        assert!(matches!(sk.text, Cow::Borrowed(b) if b.as_ptr() == body.as_ptr()));
        assert!(sk.cuts.is_empty());
    }

    #[test]
    fn strings_serde_json_must_see_are_kept() {
        for s in [r#"["0123456789\uD800"]"#, r#"["0123456789\udc00"]"#] {
            assert_eq!(skeleton(s, 4), s);
        }
        // Invalid UTF-8.
        let bytes = b"[\"0123456789\xff\"]";
        assert_eq!(&*skim_always(bytes, 4).text, bytes);
        // Other `\u` escapes, and UTF-8 text, are cut.
        assert_eq!(skeleton(r#"["0123456789\u002F\u00e9"]"#, 4), r#"[""]"#);
        assert_eq!(skeleton("[\"0123456789\u{e9}\"]", 4), r#"[""]"#);
    }

    #[test]
    fn an_invalid_string_ends_the_skeleton_at_its_error() {
        for (body, want) in [
            (r#"{"a":"0123456789\x0123456789"}"#, r#"{"a":"9\x012345"#),
            (r#"{"a":"0123456789\u12G4567890"}"#, r#"{"a":"9\u12G456"#),
            ("{\"a\":\"0123456789\n0123456789\"}", "{\"a\":\"9\n0123456"),
            (r#"{"a":"0123456789\"#, r#"{"a":"9\"#),
            (r#"{"a":"0123456789"#, r#"{"a":"9"#),
            (r#"{"a":""#, r#"{"a":""#),
            // Short strings are cut up to their error too.
            (r#"{"a":"ab\q"}"#, r#"{"a":"b\q"}"#),
            (r#"{"a":"\q"}"#, r#"{"a":"\q"}"#),
            // What is kept before the error is a whole escape.
            (r#"{"a":"ab\"\q"}"#, r#"{"a":"\"\q"}"#),
            (r#"{"a":"ab\u0022\q"}"#, r#"{"a":"\u0022\q"}"#),
            (r#"{"a":"ab\\"#, r#"{"a":"\\"#),
            ("[\"ab\\\tc\"]", "[\"b\\\tc\"]"),
        ] {
            assert_eq!(skeleton(body, usize::MAX), want, "{body}");
        }
    }

    #[test]
    fn positions_map_back_to_the_body() {
        let body = "{\"a\":\"0123456789\",\n \"b\":\"0123456789\", \"c\":\"x\"}";
        let sk = skim_always(body.as_bytes(), 10);
        let text = str::from_utf8(&sk.text).expect("UTF-8");
        assert_eq!(text, "{\"a\":\"\",\n \"b\":\"\", \"c\":\"x\"}");
        // Right after the cut strings, and `x`.
        assert_eq!(sk.body_position(1, 7), (1, 17));
        assert_eq!(sk.body_position(2, 7), (2, 17));
        assert_eq!(sk.body_position(2, 14), (2, 24));
        // Line 1's opening quote, right after it, and the line break are where they were.
        assert_eq!(sk.body_position(1, 5), (1, 5));
        assert_eq!(sk.body_position(1, 6), (1, 6));
        assert_eq!(sk.body_position(2, 0), (2, 0));
        assert_eq!(sk.body_position(0, 0), (0, 0));
        // Slices of the skeleton map to the same text in the body.
        let a = &text[5..7];
        assert_eq!(sk.body_str(a), "\"0123456789\"");
        assert_eq!(sk.body_str(&text[6..6]), "0123456789");
        assert_eq!(sk.body_str(&text[22..25]), "\"x\"");
        assert_eq!(sk.body_str(&text[1..4]), "\"a\"");
    }

    /// `scan_string` done byte by byte, as the rules say.
    fn scan_reference(body: &[u8], start: usize) -> Result<usize, usize> {
        let mut i = start;
        loop {
            match body.get(i) {
                None => return Err(body.len()),
                Some(b'"') => return Ok(i),
                Some(&b) if b < 0x20 => return Err(i),
                Some(b'\\') => match body.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u')
                        if body
                            .get(i + 2..i + 6)
                            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                    {
                        i += 6
                    }
                    _ => return Err(i),
                },
                Some(_) => i += 1,
            }
        }
    }

    #[test]
    fn scan_agrees_with_the_rules_at_every_block_position() {
        // Each snippet at every offset around the first two block boundaries, in base64-like
        // text with `\/` escapes every 13 bytes, then a closing quote (or none).
        let snippets: [&[u8]; 14] = [
            br"\/", br"\/\/", br"\\", br"\\/", br"\\\/", br#"\""#, br#"\\""#, br"\u002F",
            br"\u12G4", br"\x", b"\x1F", b"\"", b"\\", b"",
        ];
        let mut checked = 0;
        for snippet in snippets {
            for at in 0..2 * BLOCK + 8 {
                for end in [&b"\""[..], b"", b"AB\""] {
                    let text: Vec<u8> = (0..at)
                        .map(|k| {
                            if k % 13 == 12 {
                                b'/'
                            } else {
                                b'A' + (k % 26) as u8
                            }
                        })
                        .collect();
                    // Escape every `/` of the filler.
                    let mut body = b"\"".to_vec();
                    for &b in &text {
                        if b == b'/' {
                            body.push(b'\\');
                        }
                        body.push(b);
                    }
                    body.extend_from_slice(snippet);
                    body.extend(std::iter::repeat_n(b'Z', 3 * BLOCK - body.len() % BLOCK));
                    body.extend_from_slice(end);
                    let got = scan_string(&body, 1).map(|s| s.close);
                    assert_eq!(got, scan_reference(&body, 1), "{}", body.escape_ascii());
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 14 * (2 * BLOCK + 8) * 3);
    }

    #[test]
    fn control_characters_are_found_in_every_block_position() {
        for at in [0, 1, 63, 64, 65, 127, 200] {
            let mut text = vec![b'a'; 201];
            text[at] = 0x1F;
            assert_eq!(first_control(&text), Some(at));
        }
        assert_eq!(first_control(&[b' '; 300]), None);
        assert_eq!(first_control(&[]), None);
    }
}
