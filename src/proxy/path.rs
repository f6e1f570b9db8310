//! Path normalization used only to decide whether a request hits a capture route.
//!
//! The request is always forwarded with its raw path bytes; this normal form exists so that no
//! spelling of a capture path can slip past the check to the backend (CVE-2019-9901 and
//! CVE-2021-31920 were exactly such slips in Envoy and Istio). It fails closed: anything some
//! backend might route to the capture path is treated as that path:
//!
//! - the query is dropped, and so are `;` path parameters (Tomcat reads `/a;x=1` as `/a`);
//! - every `%XX` is decoded once (unreserved characters per RFC 3986 §6.2.2.2, and also `%2F`,
//!   because some backends decode it before routing);
//! - `\` counts as `/` (IIS does so);
//! - repeated slashes are merged, `.` and `..` segments resolved (RFC 3986 §5.2.4), a trailing
//!   slash dropped;
//! - ASCII letters are lowercased, because case-insensitive backends exist.
//!
//! Some backends fold still more onto a path, and [`folded_forms`] gives those readings, so that
//! a spelling which is not the capture path but would reach its handler is refused rather than
//! passed through (`capture.strict_paths`):
//!
//! - a `.ext` suffix on the last segment (Rails' `(.:format)`, Spring's old suffix matching);
//! - trailing dots, whitespace and NULs on a segment (Windows file semantics, old Java);
//! - `%uXXXX` escapes (IIS);
//! - non-ASCII letters that case-insensitive matching in Java, .NET or Go folds to ASCII
//!   (`ı` U+0131 and `İ` U+0130 to `i`, `ſ` U+017F to `s`, the Kelvin sign U+212A to `k`) and
//!   full-width forms (U+FF01–U+FF5E, which IIS's best-fit mapping reads as ASCII).

/// Returns the normal form of a request target's path (a query, if present, is ignored).
pub fn normalize(target: &[u8]) -> String {
    let path = match target.iter().position(|&b| b == b'?' || b == b'#') {
        Some(i) => &target[..i],
        None => target,
    };
    let decoded = percent_decode_once(path);
    let mut segments: Vec<&[u8]> = Vec::new();
    for raw in decoded.split(|&b| b == b'/' || b == b'\\') {
        let segment = match raw.iter().position(|&b| b == b';') {
            Some(i) => &raw[..i],
            None => raw,
        };
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    if segments.is_empty() {
        out.push('/');
    }
    for s in segments {
        out.push('/');
        // Invalid UTF-8 cannot match a configured (UTF-8) route; keep it visible but harmless.
        out.push_str(&String::from_utf8_lossy(s).to_ascii_lowercase());
    }
    out
}

/// Whether `target` has anything [`folded_forms`] would read differently from [`normalize`]: a
/// `%`, a `.` or a non-ASCII byte in its path. Most paths have none, and skip the folding.
pub fn might_fold(target: &[u8]) -> bool {
    target
        .iter()
        .take_while(|&&b| b != b'?' && b != b'#')
        .any(|&b| b == b'%' || b == b'.' || b >= 0x80)
}

/// The normal forms of what lenient backends read `target`'s path as:
/// - percent-decoded until nothing changes (backends that decode twice read `%2563` as `c`);
/// - each segment cut at a NUL and its trailing dots and whitespace cut;
/// - the last segment also without its extension, cut at the last and at the first `.`
///   (`capture.json`, Spring's `capture.*` suffix pattern for `capture.a.b`);
/// - the path as it stood before each `.` or `..` segment, for backends that route by prefix
///   before they resolve dot segments (`/capture/%2e%2e`);
/// - non-ASCII letters folded as [`fold_char`] says, invisible format characters dropped, and
///   every other non-ASCII character left as [`WILDCARD`], which [`matches_folded`] lets stand
///   for any one character: NFKC and best-fit mappings fold many of them to ASCII.
pub fn folded_forms(target: &[u8]) -> Vec<String> {
    let path = match target.iter().position(|&b| b == b'?' || b == b'#') {
        Some(i) => &target[..i],
        None => target,
    };
    let mut decoded = decode_lenient(path);
    // Bounded: each round shortens the text by two bytes per escape at least.
    for _ in 0..4 {
        if !decoded.contains('%') {
            break;
        }
        let again = decode_lenient(decoded.as_bytes());
        if again == decoded {
            break;
        }
        decoded = again;
    }
    let folded: String = decoded.chars().filter_map(fold_char).collect();
    let join = |segments: &[&str]| {
        let mut out = String::new();
        for s in segments {
            out.push('/');
            out.push_str(s);
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    };
    let mut forms = Vec::new();
    let mut segments: Vec<&str> = Vec::new();
    for raw in folded.split(['/', '\\']) {
        let segment = match raw.find([';', '\0']) {
            Some(i) => &raw[..i],
            None => raw,
        };
        let segment = if segment.bytes().all(|b| b == b'.') {
            segment
        } else {
            segment.trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        };
        match segment {
            "" => {}
            "." | ".." => {
                forms.push(join(&segments));
                if segment == ".." {
                    segments.pop();
                }
            }
            s => segments.push(s),
        }
    }
    forms.push(join(&segments));
    if let Some(last) = segments.last().copied() {
        for cut in [last.rfind('.'), last.find('.')].into_iter().flatten() {
            if cut > 0 {
                let n = segments.len();
                segments[n - 1] = &last[..cut];
                forms.push(join(&segments));
            }
        }
    }
    forms
}

/// The character a folded form holds for a non-ASCII character it cannot name.
pub const WILDCARD: char = '\u{FFFD}';

/// Whether a folded form reads as `path` (a normal form of a route), with a [`WILDCARD`]
/// standing for any one character.
pub fn matches_folded(form: &str, path: &str) -> bool {
    if !form.contains(WILDCARD) {
        return form == path;
    }
    form.chars().count() == path.chars().count()
        && form
            .chars()
            .zip(path.chars())
            .all(|(f, p)| f == p || f == WILDCARD)
}

/// `%XX` and `%uXXXX` decoded once, then read as UTF-8 (invalid sequences replaced).
fn decode_lenient(input: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(input.len());
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 5 < input.len() && matches!(input[i + 1], b'u' | b'U') {
            let code = input[i + 2..i + 6]
                .iter()
                .try_fold(0u32, |acc, &b| hex(b).map(|h| acc << 4 | u32::from(h)));
            if let Some(c) = code.and_then(char::from_u32) {
                out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut bytes)));
                out.push(c);
                i += 6;
                continue;
            }
        }
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                bytes.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        bytes.push(input[i]);
        i += 1;
    }
    out.push_str(&String::from_utf8_lossy(&bytes));
    out
}

/// What a lenient case-insensitive match reads `c` as: ASCII lowercased; `ı`, `İ`, `ſ`, the
/// Kelvin sign and full-width forms as their ASCII letters; invisible format characters (zero
/// width space and joiners, word joiner, BOM, soft hyphen) as nothing; anything else non-ASCII
/// as [`WILDCARD`].
fn fold_char(c: char) -> Option<char> {
    Some(match c {
        c if c.is_ascii() => c.to_ascii_lowercase(),
        '\u{0131}' | '\u{0130}' => 'i',
        '\u{017F}' => 's',
        '\u{212A}' => 'k',
        '\u{FF01}'..='\u{FF5E}' => {
            char::from_u32(c as u32 - 0xFEE0).map_or(WILDCARD, |a| a.to_ascii_lowercase())
        }
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => return None,
        _ => WILDCARD,
    })
}

fn percent_decode_once(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{folded_forms, matches_folded, might_fold, normalize};

    #[test]
    fn spellings_of_one_path_normalize_alike() {
        let want = "/api/liveness/capture";
        for spelling in [
            "/api/liveness/capture",
            "/api/liveness/capture/",
            "//api/liveness/capture",
            "/api//liveness///capture",
            "/api/liveness/%63apture",
            "/api/./liveness/capture",
            "/api/x/../liveness/capture",
            "/api/liveness/capture?x=1",
            "/api/liveness/capture;jsessionid=1",
            "/API/Liveness/Capture",
            "/api%2Fliveness%2fcapture",
            "/api\\liveness\\capture",
            "/api/liveness/%2e/capture",
            "/api/liveness/x/%2E%2E/capture",
        ] {
            assert_eq!(normalize(spelling.as_bytes()), want, "{spelling}");
        }
    }

    #[test]
    fn different_paths_stay_different() {
        assert_ne!(
            normalize(b"/api/liveness/capture2"),
            "/api/liveness/capture"
        );
        assert_ne!(normalize(b"/api/liveness/captur"), "/api/liveness/capture");
        // Decoding happens once: a double-encoded slash stays a literal `%2F`.
        assert_eq!(normalize(b"/a%252Fb"), "/a%2fb");
    }

    #[test]
    fn dot_segments_cannot_climb_above_root() {
        assert_eq!(normalize(b"/../../a"), "/a");
        assert_eq!(normalize(b"/"), "/");
        assert_eq!(normalize(b""), "/");
        assert_eq!(normalize(b"*"), "/*");
    }

    #[test]
    fn lenient_spellings_fold_onto_the_path() {
        let want = "/api/liveness/capture".to_owned();
        for spelling in [
            "/api/liveness/capture.json",
            "/api/liveness/capture.",
            "/api/liveness/capture..",
            "/api/liveness/capture%20",
            "/api/liveness/capture%09",
            "/api/liveness/capture%00",
            "/api/liveness/captur%u0065",
            "/api/liveness/%U0063apture",
            "/api/l%C4%B1veness/capture",
            "/api/liveness/capture.json?x=1",
            "/api./liveness/capture",
            "/api/liveness/%EF%BD%83apture",
            "/api/liveness/capture;a=b.json",
        ] {
            assert!(
                folded_forms(spelling.as_bytes()).contains(&want),
                "{spelling}: {:?}",
                folded_forms(spelling.as_bytes())
            );
        }
        assert!(folded_forms("/api/liveness/caſture".as_bytes())
            .contains(&"/api/liveness/casture".to_owned()));
        assert!(folded_forms("/api/liveneſſ/capture".as_bytes())
            .contains(&"/api/liveness/capture".to_owned()));
        assert!(folded_forms("/api/\u{212A}".as_bytes()).contains(&"/api/k".to_owned()));
    }

    #[test]
    fn second_round_spellings_fold_onto_the_path() {
        let route = "/api/liveness/capture";
        for spelling in [
            "/api/liveness/%2563apture",
            "/api/liveness/%25%36%33apture",
            "/api/liveness/capture.a.b",
            "/api/liveness/capture%00.json",
            "/api/liveness/cap%E2%80%8Bture",
            "/api/liveness/capture%C2%AD",
            "/api/liveness/capture/%2e%2e",
            "/api/liveness/capture%2F..",
            "/api/liveness/capture/../x",
            "/api/liveness/%F0%9D%90%9Capture",
            "/api/liveness/%E1%B6%9Capture",
        ] {
            let forms = folded_forms(spelling.as_bytes());
            assert!(
                forms.iter().any(|f| matches_folded(f, route)),
                "{spelling}: {forms:?}"
            );
        }
        assert!(!matches_folded(
            "/api/liveness/\u{FFFD}apture",
            "/api/liveness/captures"
        ));
        assert!(!matches_folded(
            "/api/liveness/capture",
            "/api/liveness/capturf"
        ));
    }

    #[test]
    fn lenient_forms_keep_other_paths_apart() {
        for other in [
            "/api/liveness/captures",
            "/api/liveness/capture/x",
            "/static/app.js",
        ] {
            assert!(
                !folded_forms(other.as_bytes()).contains(&"/api/liveness/capture".to_owned()),
                "{other}"
            );
        }
        assert!(!might_fold(b"/api/liveness/capture"));
        assert!(might_fold(b"/api/liveness/capture.json"));
        assert!(!might_fold(b"/api/x?a=b.c%20"));
    }

    #[test]
    fn truncated_escapes_are_kept() {
        assert_eq!(normalize(b"/a%2"), "/a%2");
        assert_eq!(normalize(b"/a%zz"), "/a%zz");
    }
}
