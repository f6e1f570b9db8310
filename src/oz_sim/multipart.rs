//! A strict `multipart/form-data` parser for the simulator's upload endpoints.
//!
//! Follows RFC 7578 (form-data) and RFC 2046 §5.1.1 (delimiters), as docs/oz-api.md §2.2 requires a
//! multipart body with one part per media file plus a `payload` part. Written independently of
//! the proxy's multipart writer (`src/capture`) so that a bug in one cannot hide the same bug in
//! the other. It is stricter than the RFCs where real servers differ: no preamble, no transport
//! padding after a delimiter, CRLF line ends only, and at most a final CRLF after the close
//! delimiter. Every refusal names the byte offset or part it concerns.

use std::fmt;

/// Longest boundary RFC 2046 §5.1.1 allows.
const MAX_BOUNDARY: usize = 70;
/// Cap on one part's header block; real headers here are a few hundred bytes.
const MAX_HEADER_BLOCK: usize = 8 * 1024;
/// Cap on parts, so a hostile body cannot make the parser allocate without bound.
const MAX_PARTS: usize = 64;

/// One part of a form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part<'a> {
    /// The `name` parameter of `Content-Disposition: form-data`.
    pub name: String,
    /// The `filename` parameter, if the part is a file.
    pub filename: Option<String>,
    /// The part's `Content-Type`, as sent.
    pub content_type: Option<String>,
    /// The part's content, exactly as sent.
    pub body: &'a [u8],
}

/// Why a body or content type was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The request's `Content-Type` is not a usable `multipart/form-data` one.
    ContentType(String),
    /// The body is not well-formed multipart.
    Body(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ContentType(m) | Error::Body(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

fn body_err(msg: impl Into<String>) -> Error {
    Error::Body(format!("malformed multipart body: {}", msg.into()))
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Result<String, Error> {
    let (essence, params) = split_params(content_type)
        .map_err(|m| Error::ContentType(format!("Content-Type {content_type:?}: {m}")))?;
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Err(Error::ContentType(format!(
            "Content-Type is {essence:?}, expected multipart/form-data"
        )));
    }
    let boundary = params
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)
        .ok_or_else(|| {
            Error::ContentType("Content-Type multipart/form-data has no boundary parameter".into())
        })?;
    check_boundary(&boundary).map_err(Error::ContentType)?;
    Ok(boundary)
}

/// RFC 2046 §5.1.1: 1 to 70 `bchars`, not ending in a space.
fn check_boundary(b: &str) -> Result<(), String> {
    if b.is_empty() || b.len() > MAX_BOUNDARY {
        return Err(format!(
            "boundary must be 1 to {MAX_BOUNDARY} characters, got {}",
            b.len()
        ));
    }
    if b.ends_with(' ') {
        return Err("boundary must not end with a space".into());
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    if let Some(c) = b.chars().find(|c| !ok(*c)) {
        return Err(format!(
            "boundary contains {c:?}, which RFC 2046 does not allow"
        ));
    }
    Ok(())
}

/// Splits a form body into its parts.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, Error> {
    let dash_boundary = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    if !body.starts_with(dash_boundary.as_bytes()) {
        return Err(match find(body, dash_boundary.as_bytes(), 0) {
            Some(at) => body_err(format!(
                "{at} bytes precede the first boundary; a preamble is not accepted"
            )),
            None => body_err("the boundary from Content-Type never occurs in the body"),
        });
    }
    let mut pos = dash_boundary.len();
    let mut parts = Vec::new();
    loop {
        // After a delimiter: "--" closes the form, CRLF starts a part, nothing else is allowed
        // (this parser takes no transport padding).
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            let epilogue = &rest[2..];
            if !(epilogue.is_empty() || epilogue == b"\r\n") {
                return Err(body_err(format!(
                    "{} bytes follow the close delimiter; only a final CRLF is accepted",
                    epilogue.len()
                )));
            }
            break;
        }
        if rest.len() < 2 {
            return Err(body_err(
                "the body ends right after a boundary; the close delimiter needs a trailing \"--\"",
            ));
        }
        if !rest.starts_with(b"\r\n") {
            return Err(body_err(format!(
                "the boundary at byte {} is followed by neither CRLF nor \"--\"",
                pos - dash_boundary.len()
            )));
        }
        pos += 2;
        if parts.len() == MAX_PARTS {
            return Err(body_err(format!("more than {MAX_PARTS} parts")));
        }
        let n = parts.len() + 1;
        let head_end = find(body, b"\r\n\r\n", pos)
            .filter(|end| end - pos <= MAX_HEADER_BLOCK)
            .ok_or_else(|| {
                body_err(format!(
                    "part {n}: no blank line ending its headers within {MAX_HEADER_BLOCK} bytes"
                ))
            })?;
        let head = &body[pos..head_end];
        let content_start = head_end + 4;
        let content_end = find(body, delimiter.as_bytes(), content_start).ok_or_else(|| {
            body_err(format!(
                "part {n}: no CRLF-boundary delimiter after its content; the body is cut short or \
                 the close delimiter is missing"
            ))
        })?;
        let mut part = parse_head(head, n)?;
        part.body = &body[content_start..content_end];
        parts.push(part);
        pos = content_end + delimiter.len();
    }
    Ok(parts)
}

/// Parses one part's header block.
fn parse_head(head: &[u8], n: usize) -> Result<Part<'_>, Error> {
    let head = std::str::from_utf8(head)
        .map_err(|_| body_err(format!("part {n}: headers are not valid UTF-8")))?;
    let mut disposition = None;
    let mut content_type = None;
    for line in head.split("\r\n") {
        if line.contains('\n') || line.contains('\r') {
            return Err(body_err(format!(
                "part {n}: a header line ends with a bare LF or CR; lines must end with CRLF"
            )));
        }
        if line.starts_with([' ', '\t']) {
            return Err(body_err(format!(
                "part {n}: folded header lines are not accepted"
            )));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| body_err(format!("part {n}: header line {line:?} has no colon")))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(body_err(format!(
                "part {n}: {name:?} is not a valid header name"
            )));
        }
        let value = value.trim_matches([' ', '\t']);
        let slot = if name.eq_ignore_ascii_case("content-disposition") {
            &mut disposition
        } else if name.eq_ignore_ascii_case("content-type") {
            &mut content_type
        } else if name.eq_ignore_ascii_case("content-transfer-encoding") {
            // RFC 7578 §4.7: senders must not use it; binary is what HTTP carries anyway.
            if !["binary", "8bit", "7bit"].contains(&value.to_ascii_lowercase().as_str()) {
                return Err(body_err(format!(
                    "part {n}: Content-Transfer-Encoding {value:?} is not accepted; send the bytes \
                     as they are (RFC 7578 §4.7)"
                )));
            }
            continue;
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return Err(body_err(format!("part {n}: header {name} appears twice")));
        }
    }
    let disposition =
        disposition.ok_or_else(|| body_err(format!("part {n}: no Content-Disposition header")))?;
    let (kind, params) = split_params(disposition)
        .map_err(|m| body_err(format!("part {n}: Content-Disposition: {m}")))?;
    if !kind.eq_ignore_ascii_case("form-data") {
        return Err(body_err(format!(
            "part {n}: Content-Disposition is {kind:?}, expected form-data"
        )));
    }
    let mut name = None;
    let mut filename = None;
    for (key, value) in params {
        let slot = match key.to_ascii_lowercase().as_str() {
            "name" => &mut name,
            "filename" => &mut filename,
            "filename*" => {
                return Err(body_err(format!(
                    "part {n}: filename* is not accepted in form-data (RFC 7578 §4.2)"
                )))
            }
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(body_err(format!(
                "part {n}: Content-Disposition parameter {key} appears twice"
            )));
        }
    }
    let name = name
        .filter(|s| !s.is_empty())
        .ok_or_else(|| body_err(format!("part {n}: Content-Disposition has no name")))?;
    Ok(Part {
        name,
        filename,
        content_type: content_type.map(str::to_owned),
        body: &[],
    })
}

/// Parameters of a header value, in order, names as sent.
type Params = Vec<(String, String)>;

/// Splits `type; k=v; k="v"` into the type and its parameters (RFC 9110 §5.6.6).
fn split_params(value: &str) -> Result<(&str, Params), String> {
    let (first, mut rest) = match value.find(';') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            break;
        }
        rest = rest
            .strip_prefix(';')
            .ok_or_else(|| format!("expected ';' before {rest:?}"))?
            .trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            break;
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("parameter {rest:?} has no '='"))?;
        let key = rest[..eq].trim_end_matches([' ', '\t']);
        if key.is_empty() || !key.bytes().all(is_tchar) {
            return Err(format!("{key:?} is not a valid parameter name"));
        }
        rest = rest[eq + 1..].trim_start_matches([' ', '\t']);
        let val;
        if let Some(quoted) = rest.strip_prefix('"') {
            let (v, used) = unquote(quoted)
                .ok_or_else(|| format!("parameter {key} has an unterminated quoted string"))?;
            val = v;
            rest = &quoted[used..];
        } else {
            let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
            val = rest[..end].to_owned();
            if val.is_empty() || !val.bytes().all(is_tchar) {
                return Err(format!("parameter {key} has an invalid value"));
            }
            rest = &rest[end..];
        }
        params.push((key.to_owned(), val));
    }
    Ok((first.trim(), params))
}

/// Reads a quoted string after its opening quote; returns the text and the bytes used,
/// closing quote included.
fn unquote(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => out.push(chars.next()?.1),
            _ => out.push(c),
        }
    }
    None
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// First index of `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= haystack.len() {
        let at = i + haystack[i..=haystack.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        if &haystack[at..at + needle.len()] == needle {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "XyZ-boundary";

    fn form(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut v = Vec::new();
        for (head, body) in parts {
            v.extend_from_slice(format!("--{B}\r\n{head}\r\n\r\n{body}\r\n").as_bytes());
        }
        v.extend_from_slice(format!("--{B}--\r\n").as_bytes());
        v
    }

    #[test]
    fn boundary_is_read_plain_or_quoted() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").unwrap(),
            "abc"
        );
        assert_eq!(
            boundary("Multipart/Form-Data;boundary=\"a b:c\"").unwrap(),
            "a b:c"
        );
        assert!(boundary("multipart/form-data").is_err());
        assert!(boundary("multipart/mixed; boundary=abc").is_err());
        assert!(boundary("multipart/form-data; boundary=\"\"").is_err());
        assert!(boundary(&format!("multipart/form-data; boundary={}", "a".repeat(71))).is_err());
    }

    #[test]
    fn parses_fields_and_files() {
        let body = form(&[
            (
                "Content-Disposition: form-data; name=\"video1\"; filename=\"f.zip\"\r\nContent-Type: application/zip",
                "PK\r\n--not-the-boundary",
            ),
            ("content-disposition: form-data; name=payload", "{}"),
        ]);
        let parts = parse(&body, B).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "video1");
        assert_eq!(parts[0].filename.as_deref(), Some("f.zip"));
        assert_eq!(parts[0].content_type.as_deref(), Some("application/zip"));
        assert_eq!(parts[0].body, b"PK\r\n--not-the-boundary");
        assert_eq!(parts[1].name, "payload");
        assert_eq!(parts[1].filename, None);
        assert_eq!(parts[1].body, b"{}");
    }

    #[test]
    fn close_delimiter_without_final_crlf_is_fine() {
        let mut body = form(&[("Content-Disposition: form-data; name=\"a\"", "1")]);
        body.truncate(body.len() - 2);
        assert_eq!(parse(&body, B).unwrap().len(), 1);
    }

    #[test]
    fn refuses_what_a_careless_writer_produces() {
        let good = form(&[("Content-Disposition: form-data; name=\"a\"", "1")]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            ([b"hello\r\n".as_slice(), &good].concat(), "preamble"),
            (good[..good.len() - 4].to_vec(), "close delimiter"),
            (good[..good.len() - 10].to_vec(), "cut short"),
            (
                [good.as_slice(), b"trailing"].concat(),
                "follow the close delimiter",
            ),
            (
                String::from_utf8(good.clone())
                    .unwrap()
                    .replace("\r\n", "\n")
                    .into_bytes(),
                "",
            ),
            (
                form(&[("Content-Type: text/plain", "1")]),
                "no Content-Disposition",
            ),
            (
                form(&[("Content-Disposition: attachment; name=\"a\"", "1")]),
                "expected form-data",
            ),
            (
                form(&[("Content-Disposition: form-data; filename=\"a\"", "1")]),
                "has no name",
            ),
            (
                form(&[(
                    "Content-Disposition: form-data; name=\"a\"\r\nContent-Transfer-Encoding: base64",
                    "MQ==",
                )]),
                "Content-Transfer-Encoding",
            ),
            (
                form(&[(
                    "Content-Disposition: form-data; name=\"a\"\r\nContent-Disposition: form-data; name=\"b\"",
                    "1",
                )]),
                "appears twice",
            ),
            (b"nothing here".to_vec(), "never occurs"),
        ];
        for (body, needle) in cases {
            let err = parse(&body, B).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }

    #[test]
    fn find_handles_edges() {
        assert_eq!(find(b"abcabc", b"ca", 0), Some(2));
        assert_eq!(find(b"abcabc", b"abc", 1), Some(3));
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"", b"a", 0), None);
    }
}
