//! Any request head through the request filter (`proxy::dispatch::request_filter`): what it
//! forwards has no hop-by-hop field, no `x-oz-*` in any spelling, no `_` in a name, no `Trailer`
//! naming such a field, one `Host` and at most one `Content-Length`.
//!
//! The input is read as an HTTP/1.x head the way the listener reads it: hyper's parser
//! (`httparse`, with hyper's own framing rules from `proto/h1/role.rs`: `Transfer-Encoding`
//! only on HTTP/1.1 and ending in `chunked`, `Content-Length` digits only and agreeing, an
//! earlier `Content-Length` dropped by a `Transfer-Encoding`); inputs hyper answers with 400 or
//! 431 never reach the filter and are skipped. Each head is filtered with and without a body,
//! under the default rules and with `server.underscores_in_headers`, and again as HTTP/2
//! requests (see [`h2`]: `:authority` from `Host`, and without one).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use libfuzzer_sys::fuzz_target;
use oz_capture_proxy::config::Config;
use oz_capture_proxy::proxy::dispatch::{request_filter, RequestRules, Route, RouteTable};
use oz_capture_proxy::proxy::headers::{Forwarding, Peer};
use oz_capture_proxy::proxy::path::normalize;
use oz_capture_proxy::reload::compile;

const CONFIG: &str = "\
backend:
  url: \"http://127.0.0.1:3000\"
oz:
  auth:
    token: fuzz
capture:
  routes:
    - path: /api/liveness/capture
";

struct Fixture {
    rules: RequestRules,
    underscores: RequestRules,
    routes: RouteTable,
    forwarding: Forwarding,
    peer: Peer,
    max_headers: usize,
    max_header_bytes: usize,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let config = Config::from_yaml(CONFIG, &BTreeMap::new()).expect("the fixture config");
        let rules = RequestRules::from_config(&config.server);
        let mut underscores = rules.clone();
        underscores.keep_underscores = true;
        Fixture {
            routes: compile(&config).expect("the fixture routes").routes,
            forwarding: Forwarding::from_config(&config.forwarding),
            peer: Peer::new("192.0.2.7:50000".parse().unwrap(), false),
            max_headers: config.server.max_headers,
            max_header_bytes: config.server.max_header_bytes,
            rules,
            underscores,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((head, fields)) = parse_like_hyper(data, f.max_headers, f.max_header_bytes) else {
        return;
    };
    for variant in [
        Some(head.clone()),
        h2(&head, &fields, true),
        h2(&head, &fields, false),
    ]
    .into_iter()
    .flatten()
    {
        for rules in [&f.rules, &f.underscores] {
            for has_body in [false, true] {
                let mut parts = variant.clone();
                let filtered = request_filter(
                    &mut parts,
                    has_body,
                    rules,
                    Some(&f.routes),
                    &f.forwarding,
                    &f.peer,
                );
                check(&variant, &parts, &filtered.route, has_body, rules);
                let id = filtered.request_id.expect("a request id is configured");
                assert_eq!(parts.headers.get_all("x-request-id").iter().count(), 1);
                assert_eq!(parts.headers["x-request-id"], id);
                assert_eq!(parts.headers.get_all("x-forwarded-for").iter().count(), 1);
            }
        }
    }
});

/// The invariants of one filtered head.
fn check(
    input: &http::request::Parts,
    out: &http::request::Parts,
    route: &Result<Route, oz_capture_proxy::Error>,
    has_body: bool,
    rules: &RequestRules,
) {
    let h = &out.headers;
    let upgrade = matches!(route, Ok(Route::Upgrade(_)));
    // Hop-by-hop removal runs whatever the route: a refusal's head is as clean.
    for name in [
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "transfer-encoding",
        "http2-settings",
    ] {
        assert!(!h.contains_key(name), "{name} left in {h:?}");
    }
    if upgrade {
        let conn: Vec<_> = h.get_all(header::CONNECTION).iter().collect();
        assert_eq!(conn, [&HeaderValue::from_static("upgrade")], "{h:?}");
        assert_eq!(h.get_all(header::UPGRADE).iter().count(), 1, "{h:?}");
        assert!(!has_body, "an upgrade with a body");
        assert_eq!(out.version, Version::HTTP_11);
    } else {
        assert!(!h.contains_key(header::CONNECTION), "{h:?}");
        assert!(!h.contains_key(header::UPGRADE), "{h:?}");
    }
    let Ok(route) = route else {
        // Refused: the head goes nowhere but into the problem answer.
        return;
    };
    for (name, _) in h {
        let n = name.as_str();
        assert!(!folded_oz(n), "{n} forwarded: {h:?}");
        assert!(rules.keep_underscores || !n.contains('_'), "{n} forwarded");
    }
    for declared in h.get_all(header::TRAILER) {
        for t in declared.as_bytes().split(|&b| b == b',') {
            let t = String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase();
            assert!(!t.is_empty(), "empty Trailer token: {declared:?}");
            assert!(!folded_oz(&t), "Trailer names {t}");
            assert!(
                rules.keep_underscores || !t.contains('_'),
                "Trailer names {t}"
            );
            assert!(
                !matches!(
                    t.as_str(),
                    "connection"
                        | "keep-alive"
                        | "proxy-connection"
                        | "proxy-authorization"
                        | "te"
                        | "transfer-encoding"
                        | "upgrade"
                        | "http2-settings"
                        | "host"
                        | "content-length"
                        | "trailer"
                ),
                "Trailer names {t}"
            );
        }
    }
    // One Host once passthrough has set the backend's where the head has none (HTTP/1.0
    // without one, or a client that named `host` in `Connection`).
    let hosts = h.get_all(header::HOST).iter().count();
    assert!(hosts <= 1, "{hosts} Host fields: {h:?}");
    if hosts == 0 {
        assert!(
            input.version == Version::HTTP_10 || named_in_connection(&input.headers, "host"),
            "no Host: {input:?} -> {h:?}"
        );
    }
    assert!(
        h.get_all(header::CONTENT_LENGTH).iter().count() <= 1,
        "{h:?}"
    );
    // What two parsers could read two ways never passes.
    assert!(!out.method.as_str().bytes().any(|b| b.is_ascii_lowercase()));
    assert_ne!(out.method, Method::CONNECT);
    let path = out.uri.path();
    assert!(
        !path.starts_with("//") && !path.starts_with("/\\"),
        "{path}"
    );
    if let Route::Capture { route: r, .. } = route {
        assert_eq!(out.method, Method::POST);
        let target = out.uri.path_and_query().map_or("/", |p| p.as_str());
        assert_eq!(normalize(target.as_bytes()), normalize(r.path.as_bytes()));
    }
}

/// Whether a field name reads as `x-oz-…` to a backend that takes `_` for `-`.
fn folded_oz(name: &str) -> bool {
    name.to_ascii_lowercase()
        .replace('_', "-")
        .starts_with("x-oz-")
}

fn named_in_connection(h: &HeaderMap, name: &str) -> bool {
    h.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
    })
}

/// The request head hyper's HTTP/1 server would hand the service, or `None` where it answers
/// 400 or 431 itself (hyper 1.x, `proto/h1/role.rs`, `Server::parse`); and the fields as sent.
fn parse_like_hyper(
    data: &[u8],
    max_headers: usize,
    max_header_bytes: usize,
) -> Option<(http::request::Parts, Vec<(HeaderName, HeaderValue)>)> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut slots);
    let httparse::Status::Complete(len) = req.parse(data).ok()? else {
        return None;
    };
    if len > max_header_bytes {
        return None;
    }
    let target = req.path?;
    if target.len() > 65534 {
        return None;
    }
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let uri = Uri::try_from(target.as_bytes()).ok()?;
    let http11 = req.version? == 1;
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut fields = Vec::with_capacity(req.headers.len());
    let (mut con_len, mut is_cl, mut is_te, mut is_te_chunked) = (None, false, false, false);
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        fields.push((name.clone(), value.clone()));
        if name == header::TRANSFER_ENCODING {
            if !http11 {
                return None;
            }
            is_te = true;
            if is_cl && con_len.take().is_some() {
                headers.remove(header::CONTENT_LENGTH);
            }
            is_te_chunked = value
                .to_str()
                .ok()
                .and_then(|s| s.rsplit(',').next())
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("chunked"));
        } else if name == header::CONTENT_LENGTH {
            is_cl = true;
            if is_te {
                continue;
            }
            let v = value.as_bytes();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let len: u64 = std::str::from_utf8(v).ok()?.parse().ok()?;
            match con_len {
                Some(prev) if prev != len => return None,
                Some(_) => continue,
                None => con_len = Some(len),
            }
        }
        headers.append(name, value);
    }
    if is_te && !is_te_chunked {
        return None;
    }
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    *request.headers_mut() = headers;
    Some((request.into_parts().0, fields))
}

/// The same request as an HTTP/2 client could send it, as h2 0.4 hands it to hyper: the fields
/// as sent, without the connection-specific ones h2 refuses (RFC 9113 §8.2.2; dropped here
/// rather than the input skipped), repeated `Content-Length` fields kept when they agree (h2
/// refuses them otherwise, and any that is not digits), and `:authority` from `Host` when
/// `with_authority`.
fn h2(
    head: &http::request::Parts,
    fields: &[(HeaderName, HeaderValue)],
    with_authority: bool,
) -> Option<http::request::Parts> {
    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut content_length = None;
    for (name, value) in fields {
        let connection_specific = [
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
        ]
        .contains(name)
            || (name == header::TE && value != "trailers");
        if connection_specific {
            continue;
        }
        if name == header::CONTENT_LENGTH {
            let v = value.as_bytes();
            if v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return None;
            }
            if content_length.is_some_and(|first| first != v) {
                return None;
            }
            content_length = Some(v);
        }
        headers.append(name.clone(), value.clone());
    }
    let path = head.uri.path_and_query()?.clone();
    let uri = if with_authority {
        let host = head.headers.get(header::HOST)?;
        let authority = http::uri::Authority::try_from(host.as_bytes()).ok()?;
        Uri::builder()
            .scheme("https")
            .authority(authority)
            .path_and_query(path)
            .build()
            .ok()?
    } else {
        Uri::builder().path_and_query(path).build().ok()?
    };
    let mut request = http::Request::new(());
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    *request.headers_mut() = headers;
    Some(request.into_parts().0)
}
