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
    use super::normalize;

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
    fn truncated_escapes_are_kept() {
        assert_eq!(normalize(b"/a%2"), "/a%2");
        assert_eq!(normalize(b"/a%zz"), "/a%zz");
    }
}
