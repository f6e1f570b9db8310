//! Header rules applied to every forwarded message: hop-by-hop removal, forged `x-oz-*`
//! removal (in every spelling a backend might read as one), the trailer rules, the upgrade offer,
//! and the forwarding headers a gateway adds.
//!
//! RFC 9110 §7.6.1: "a proxy or gateway MUST parse a received Connection header field before a
//! message is forwarded and, for each connection-option in this field, remove any header or trailer
//! field(s) from the message with the same name as the connection-option, and then remove the
//! Connection header field itself". The same section names the fields that are hop-by-hop even
//! when not listed: `Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding` and `Upgrade`. We
//! also drop `Proxy-Authorization` and `Proxy-Authenticate` (credentials for this hop, RFC 9110
//! §11.7). `Trailer` is end-to-end (RFC 9110 §6.6.2) and stays: hyper sends only the trailer
//! fields a message declares in it, so removing it would silently drop every trailer. `Upgrade`
//! and `Connection: upgrade` survive only on an upgrade request and its 101 answer (RFC 9110
//! §7.8). `HTTP2-Settings` belongs to the h2c upgrade, which is never tunnelled, so it is always
//! removed.
//!
//! A forged verdict can hide in a name that is not spelled `x-oz-…`: CGI, WSGI and Rack servers
//! map `-` and `_` to one variable and merge the two (gunicorn < 22, Puma < 6.4.3,
//! CVE-2024-45614), so `X_Oz_Resolution` is removed too, and by default every name with an `_`
//! is dropped, as nginx does (`server.underscores_in_headers`). Trailers follow the same rules,
//! and also lose the fields RFC 9110 §6.5.1 says a trailer must not carry (framing, routing,
//! authentication, content handling): frameworks that merge trailers into headers would
//! otherwise take them as such. `Trailer` never names a field that is removed.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Whether `name` is always hop-by-hop, besides those that `Connection` names. A `match` on the
/// text rather than comparing `HeaderName`s one by one: it runs for every field of every message.
fn always_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "transfer-encoding"
            | "http2-settings"
    )
}

/// Whether a field name, with any character but a letter or digit read as `-` (names are
/// lowercase already), starts with `x-oz-`: the spellings a backend may take for a verdict field.
/// CGI gateways map every such character to `_` (lighttpd's `http_cgi_encode_varname`, Apache
/// 2.2's `mod_cgi`), so `X-Oz.Resolution` and `X~Oz!Action` read as verdict fields there.
pub fn is_oz_field(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= OZ_PREFIX.len()
        && b[..OZ_PREFIX.len()]
            .iter()
            .zip(OZ_PREFIX.as_bytes())
            .all(|(&c, &want)| c == want || (want == b'-' && !c.is_ascii_alphanumeric()))
}

/// Request fields that make some frameworks route or dispatch a request as another one
/// (Symfony and Zend's `X-Original-URL` / `X-Rewrite-URL`, IIS's URL Rewrite, method overrides
/// of Rails, Laravel, Express' method-override and ASP.NET): a passthrough request must not be
/// able to turn into a capture, or a capture into something else, past the proxy's checks.
fn is_routing_override(name: &str) -> bool {
    matches!(
        name,
        "x-original-url"
            | "x-rewrite-url"
            | "x-original-uri"
            | "x-http-method-override"
            | "x-http-method"
            | "x-method-override"
    )
}

/// Whether a client field must not reach the backend under any spelling: a verdict field, a
/// routing override, or a name with a character other than a letter, digit or `-` (as nginx's
/// `ignore_invalid_headers`; `_` only when `keep_underscores`).
fn is_forged(name: &HeaderName, keep_underscores: bool) -> bool {
    let s = name.as_str();
    is_oz_field(s)
        || is_routing_override(s)
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (keep_underscores && b == b'_'))
}

/// Fields a trailer must not carry (RFC 9110 §6.5.1: framing, routing, request modifiers,
/// authentication, response control, content handling), besides the hop-by-hop and forged ones.
fn is_header_only(name: &str) -> bool {
    matches!(
        name,
        "host"
            | "content-length"
            | "content-type"
            | "content-encoding"
            | "content-range"
            | "trailer"
            | "upgrade"
            | "authorization"
            | "cookie"
            | "set-cookie"
            | "expect"
            | "max-forwards"
            | "cache-control"
            | "range"
            | "if-match"
            | "if-none-match"
            | "if-modified-since"
            | "if-unmodified-since"
            | "if-range"
            | "location"
            | "retry-after"
            | "www-authenticate"
            | "age"
            | "expires"
            | "date"
            | "vary"
            | "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-proto"
    )
}

/// Whether a trailer field is dropped on its way to the other side.
fn is_refused_trailer(name: &str, keep_underscores: bool) -> bool {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(n) => {
            always_hop_by_hop(&n) || is_forged(&n, keep_underscores) || is_header_only(n.as_str())
        }
        Err(_) => true,
    }
}

/// Prefix of the verdict headers only the proxy may set.
pub const OZ_PREFIX: &str = "x-oz-";

/// Whether a request asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// Whether any `Connection` value lists `token` (case-insensitive, token by token).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| connection_tokens(v).any(|t| t.eq_ignore_ascii_case(token.as_bytes())))
}

/// The comma-separated tokens of one `Connection` value, as bytes: a value that is not UTF-8
/// must not panic anything (docs/proxy-rules.md, "Hop-by-hop fields and `Connection`").
fn connection_tokens(v: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    v.as_bytes()
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop fields. With `keep_upgrade`, `Upgrade` and a bare `Connection: upgrade`
/// stay so the next hop can switch protocols.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Collect first: removing while iterating `get_all` is not possible. The usual values
    // (`keep-alive`, `close`, `upgrade`) name fields removed anyway, so the list stays empty
    // and unallocated unless a message names fields of its own.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(connection_tokens)
        .filter(|t| !is_removed_anyway(t))
        // `Host` is the request's routing, not a property of this hop: a client that names it
        // would have the backend see the proxy's idea of the host instead of its own.
        .filter(|t| !t.eq_ignore_ascii_case(b"host"))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect();
    remove_where(headers, |name| {
        always_hop_by_hop(name)
            || (!keep_upgrade && name == header::UPGRADE)
            || named.contains(name)
    });
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether a `Connection` token needs no field of its own removed: it is `close`, `upgrade`
/// (handled by `keep_upgrade`) or a field that is always hop-by-hop.
fn is_removed_anyway(token: &[u8]) -> bool {
    [
        "close",
        "upgrade",
        "keep-alive",
        "connection",
        "te",
        "transfer-encoding",
        "proxy-connection",
    ]
    .iter()
    .any(|known| token.eq_ignore_ascii_case(known.as_bytes()))
}

/// Removes every field a client may not send on (see [`is_forged`]: `x-oz-*` in any spelling,
/// routing overrides, names beyond letters, digits and `-`, and `_` unless `keep_underscores`). Then rewrites `Trailer` so it names
/// no field the trailer rules would remove.
pub fn strip_forged(headers: &mut HeaderMap, keep_underscores: bool) {
    remove_where(headers, |name| is_forged(name, keep_underscores));
    if headers.contains_key(header::TRAILER) {
        filter_trailer_declaration(headers, keep_underscores);
    }
}

/// Keeps in `Trailer` only the names of fields that may be forwarded as trailers; drops the
/// field when none is left.
fn filter_trailer_declaration(headers: &mut HeaderMap, keep_underscores: bool) {
    let kept: Vec<&[u8]> = headers
        .get_all(header::TRAILER)
        .iter()
        .flat_map(connection_tokens)
        .filter(|t| {
            std::str::from_utf8(t)
                .map(|t| !is_refused_trailer(&t.to_ascii_lowercase(), keep_underscores))
                .unwrap_or(false)
        })
        .collect();
    let joined = kept.join(&b", "[..]);
    match HeaderValue::from_bytes(&joined) {
        Ok(v) if !joined.is_empty() => {
            headers.insert(header::TRAILER, v);
        }
        _ => {
            headers.remove(header::TRAILER);
        }
    }
}

/// Removes from a trailer section every field that a header section would lose, plus those RFC
/// 9110 §6.5.1 keeps out of trailers.
pub fn filter_trailers(trailers: &mut HeaderMap, keep_underscores: bool) {
    remove_where(trailers, |name| {
        is_refused_trailer(name.as_str(), keep_underscores)
    });
}

/// The protocols of an `Upgrade` offer that may be tunnelled, as the value to forward; `None`
/// when none may. A protocol is compared by name, case-insensitively, its version ignored.
pub fn allowed_upgrade(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let kept: Vec<&[u8]> = headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(connection_tokens)
        .filter(|t| {
            let name = protocol_name(t);
            !name.eq_ignore_ascii_case(b"h2c")
                && allowed
                    .iter()
                    .any(|a| protocol_name(a.as_bytes()).eq_ignore_ascii_case(name))
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&kept.join(&b", "[..])).ok()
}

/// Whether a 101's `Upgrade` names exactly one protocol, and one the client offered in
/// `offered` (RFC 9110 §7.8: the server switches to one of the protocols the client listed).
pub fn upgrade_accepted(offered: &HeaderValue, response: &HeaderMap) -> bool {
    let mut chosen = response
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(connection_tokens);
    let (Some(chosen), None) = (chosen.next(), chosen.next()) else {
        return false;
    };
    connection_tokens(offered).any(|o| protocol_name(o).eq_ignore_ascii_case(protocol_name(chosen)))
}

/// `websocket` of `websocket/13`.
fn protocol_name(token: &[u8]) -> &[u8] {
    match token.iter().position(|&b| b == b'/') {
        Some(i) => &token[..i],
        None => token,
    }
}

/// Removes the fields for which `remove` is true and keeps the others in their order.
///
/// `HeaderMap::remove` moves the last field into the removed one's slot (it is a swap-remove),
/// so removing `Connection` from the middle of a message would reorder what the next hop sees.
/// Legacy backends sometimes depend on field order. Removing the *last* field moves nothing,
/// so the fields from the first one to remove onwards are taken off the end one by one and the
/// kept ones put back in order: the work is proportional to the fields after the first removal
/// (a response's `Connection` is usually near its end), and nothing happens when nothing matches.
fn remove_where(headers: &mut HeaderMap, remove: impl Fn(&HeaderName) -> bool) {
    let Some(first) = headers.keys().position(&remove) else {
        return;
    };
    let tail: Vec<HeaderName> = headers.keys().skip(first).cloned().collect();
    // Taken off last name first; each name's values are put in reverse too, so that one reversal
    // of the whole list restores the message order. One allocation, not one per field.
    let mut taken: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(tail.len());
    for name in tail.into_iter().rev() {
        if let header::Entry::Occupied(entry) = headers.entry(&name) {
            let start = taken.len();
            let keep = !remove(&name);
            let (name, values) = entry.remove_entry_mult();
            if keep {
                taken.extend(values.map(|v| (name.clone(), v)));
                taken[start..].reverse();
            }
        }
    }
    for (name, value) in taken.into_iter().rev() {
        headers.append(name, value);
    }
}

/// What the gateway knows about the client connection, for the forwarding headers.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: std::net::SocketAddr,
    /// Whether the client connection was TLS.
    pub tls: bool,
    /// The client's IP as `X-Forwarded-For` writes it, formatted once per connection rather than
    /// once per request.
    ip: HeaderValue,
}

impl Peer {
    /// The peer at `addr`, over TLS or not.
    pub fn new(addr: std::net::SocketAddr, tls: bool) -> Self {
        let ip = addr.ip().to_canonical().to_string();
        Peer {
            addr,
            tls,
            ip: HeaderValue::from_maybe_shared(bytes::Bytes::from(ip))
                .expect("an IP is a valid header value"),
        }
    }
}

/// How the forwarding headers are written.
#[derive(Clone, Debug)]
pub struct Forwarding {
    /// `X-Forwarded-For` policy.
    pub xff: crate::config::XffMode,
    /// A `Via` value, if configured.
    pub via: Option<HeaderValue>,
    /// Name of the request-id header.
    pub request_id: Option<HeaderName>,
    /// `forwarding.trusted_hops`: proxies in front of this one that append the client's address.
    pub trusted_hops: usize,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

impl Forwarding {
    /// Builds the policy from the config section.
    pub fn from_config(cfg: &crate::config::ForwardingConfig) -> Self {
        Forwarding {
            xff: cfg.x_forwarded_for,
            via: (!cfg.via.is_empty())
                .then(|| HeaderValue::from_str(&cfg.via).expect("validated by config")),
            request_id: (!cfg.request_id_header.is_empty()).then(|| {
                HeaderName::from_bytes(cfg.request_id_header.as_bytes())
                    .expect("validated by config")
            }),
            trusted_hops: cfg.trusted_hops,
        }
    }

    /// The client's address as the rate limits see it, from the head as received (before
    /// [`Forwarding::apply`]): with `trusted_hops` 0 the peer, whatever `X-Forwarded-For` says
    /// (a client cannot choose its own); with N the N-th address from the right of the
    /// `X-Forwarded-For` list, the one the outermost trusted proxy appended. A list shorter
    /// than N, or an entry there that is not an address, did not come through those proxies:
    /// the peer then, as Envoy's `xff_num_trusted_hops` does.
    pub fn client_ip(&self, headers: &HeaderMap, peer: &Peer) -> std::net::IpAddr {
        let peer_ip = peer.addr.ip();
        if self.trusted_hops == 0 {
            return peer_ip;
        }
        // Several fields are one list, in order (RFC 9110 §5.3).
        let mut entries: Vec<&[u8]> = Vec::new();
        for value in headers.get_all(&X_FORWARDED_FOR) {
            entries.extend(value.as_bytes().split(|&b| b == b','));
        }
        let Some(entry) = entries
            .len()
            .checked_sub(self.trusted_hops)
            .map(|i| entries[i])
        else {
            return peer_ip;
        };
        std::str::from_utf8(entry)
            .ok()
            .and_then(|e| parse_forwarded_ip(e.trim()))
            .unwrap_or(peer_ip)
    }

    /// Adds `X-Forwarded-For` (appended per policy), `X-Forwarded-Proto`, `X-Forwarded-Host`
    /// (from `Host`), `Via`, and a request id when absent. Returns the request id.
    pub fn apply(&self, headers: &mut HeaderMap, peer: &Peer) -> Option<HeaderValue> {
        match self.xff {
            crate::config::XffMode::Off => {}
            crate::config::XffMode::Replace => {
                headers.insert(X_FORWARDED_FOR.clone(), peer.ip.clone());
            }
            crate::config::XffMode::Append if !headers.contains_key(&X_FORWARDED_FOR) => {
                headers.insert(X_FORWARDED_FOR.clone(), peer.ip.clone());
            }
            crate::config::XffMode::Append => {
                // Several XFF fields are one comma-separated list (RFC 9110 §5.3); join them so
                // the backend sees a single, ordered list ending with the peer.
                let mut list = Vec::with_capacity(64);
                for v in headers.get_all(&X_FORWARDED_FOR) {
                    list.extend_from_slice(v.as_bytes());
                    list.extend_from_slice(b", ");
                }
                list.extend_from_slice(peer.ip.as_bytes());
                let joined = HeaderValue::from_bytes(&list).unwrap_or_else(|_| peer.ip.clone());
                headers.insert(X_FORWARDED_FOR.clone(), joined);
            }
        }
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if peer.tls { "https" } else { "http" }),
        );
        if let Some(host) = headers.get(header::HOST).cloned() {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        if let Some(via) = &self.via {
            headers.append(header::VIA, via.clone());
        }
        let name = self.request_id.as_ref()?;
        if let Some(id) = headers.get(name) {
            // Several ids, or one that is not a short printable token, are replaced: the id goes
            // into Oz's folder metadata, logs and problem answers.
            if headers.get_all(name).iter().nth(1).is_none() && acceptable_request_id(id) {
                return Some(id.clone());
            }
        }
        let id = new_request_id();
        headers.insert(name.clone(), id.clone());
        Some(id)
    }
}

/// An address as proxies write it in `X-Forwarded-For`: bare, or IPv6 in brackets, either
/// with a port.
fn parse_forwarded_ip(entry: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.ip())
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })
}

/// Longest client request id taken as it is.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Whether a client's request id is a bounded, printable token: 1 to 128 visible ASCII
/// characters, none of `"`, `\`, `,` or `;` (which would read as quoting or as a list).
pub fn acceptable_request_id(id: &HeaderValue) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID_BYTES
        && b.iter()
            .all(|&c| c.is_ascii_graphic() && !matches!(c, b'"' | b'\\' | b',' | b';'))
}

/// A fresh request id (UUID v4, lowercase hyphenated).
///
/// The random bits come from a per-thread generator seeded once from the OS (`fastrand`) rather
/// than from `getrandom` on every request (uuid's default): a request id must be unique, not
/// secret, and the syscall was one in seven of a proxied request's (BENCHMARKS.md).
pub fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let random = fastrand::u128(..).to_le_bytes();
    let s = uuid::Builder::from_random_bytes(random)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut buf);
    HeaderValue::from_str(s).expect("a UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_client_address_is_the_peer_unless_hops_are_trusted() {
        let peer = Peer::new("10.9.9.9:5000".parse().unwrap(), false);
        let xff = map(&[
            ("x-forwarded-for", "6.6.6.6, 1.1.1.1"),
            ("x-forwarded-for", "[2001:db8::7]:443 , 10.0.0.2"),
        ]);
        let with = |trusted_hops| {
            Forwarding::from_config(&crate::config::ForwardingConfig {
                trusted_hops,
                ..Default::default()
            })
        };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        // 0: whatever the client wrote, its key is the connection's address.
        assert_eq!(with(0).client_ip(&xff, &peer), ip("10.9.9.9"));
        assert_eq!(with(1).client_ip(&xff, &peer), ip("10.0.0.2"));
        assert_eq!(with(2).client_ip(&xff, &peer), ip("2001:db8::7"));
        assert_eq!(with(4).client_ip(&xff, &peer), ip("6.6.6.6"));
        // Fewer entries than trusted hops, none at all, or no address there: the peer.
        assert_eq!(with(5).client_ip(&xff, &peer), ip("10.9.9.9"));
        assert_eq!(with(1).client_ip(&HeaderMap::new(), &peer), ip("10.9.9.9"));
        let junk = map(&[("x-forwarded-for", "1.1.1.1, unknown")]);
        assert_eq!(with(1).client_ip(&junk, &peer), ip("10.9.9.9"));
    }

    #[test]
    fn connection_named_fields_are_removed() {
        let mut h = map(&[
            ("connection", "x-foo, close"),
            ("connection", "X-Bar"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "websocket"),
            ("x-keep", "3"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep"]);
    }

    #[test]
    fn removal_keeps_the_order_of_the_other_fields() {
        let mut h = map(&[
            ("host", "h"),
            ("x-first", "1"),
            ("connection", "keep-alive"),
            ("x-second", "2"),
            ("set-cookie", "a"),
            ("set-cookie", "b"),
            ("x-oz-resolution", "SUCCESS"),
            ("x-third", "3"),
        ]);
        strip_hop_by_hop(&mut h, false);
        strip_forged(&mut h, false);
        let fields: Vec<_> = h
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            fields,
            [
                ("host", "h"),
                ("x-first", "1"),
                ("x-second", "2"),
                ("set-cookie", "a"),
                ("set-cookie", "b"),
                ("x-third", "3"),
            ]
        );
    }

    #[test]
    fn removal_at_either_end_and_of_repeated_fields_keeps_the_order() {
        let mut h = map(&[
            ("keep-alive", "timeout=5"),
            ("x-a", "1"),
            ("te", "trailers"),
            ("x-b", "2"),
            ("x-b", "3"),
            ("connection", "x-c"),
            ("connection", "close"),
            ("x-c", "4"),
            ("x-c", "5"),
            ("x-d", "6"),
            ("proxy-connection", "keep-alive"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let fields: Vec<_> = h
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            fields,
            [("x-a", "1"), ("x-b", "2"), ("x-b", "3"), ("x-d", "6")]
        );
    }

    #[test]
    fn connection_cannot_remove_host() {
        let mut h = map(&[
            ("host", "app.example"),
            ("connection", "Host, x-a"),
            ("x-a", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host"]);
    }

    #[test]
    fn upgrade_survives_on_upgrade_requests() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("x-a", "1"),
        ]);
        assert!(is_upgrade_request(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn non_utf8_connection_value_does_not_panic() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"\xff\xfe, x-a").unwrap(),
        );
        h.insert("x-a", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }

    #[test]
    fn forged_oz_headers_are_removed() {
        let mut h = map(&[
            ("x-oz-resolution", "SUCCESS"),
            ("X-Oz-Folder-Id", "f"),
            ("x-ozone", "keep"),
        ]);
        strip_forged(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-ozone"]);
    }

    #[test]
    fn xff_is_appended_and_request_id_generated() {
        let f = Forwarding::from_config(&crate::config::ForwardingConfig::default());
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("host", "example.com"),
        ]);
        let peer = Peer::new("127.0.0.9:1".parse().unwrap(), false);
        let id = f.apply(&mut h, &peer).unwrap();
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-request-id"], id);
        let parsed = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(id.to_str().unwrap(), parsed.hyphenated().to_string());
        assert_ne!(new_request_id(), new_request_id());
    }

    #[test]
    fn existing_request_id_is_kept() {
        let f = Forwarding::from_config(&crate::config::ForwardingConfig::default());
        let mut h = map(&[("x-request-id", "abc")]);
        let peer = Peer::new("[::1]:1".parse().unwrap(), true);
        assert_eq!(f.apply(&mut h, &peer).unwrap(), "abc");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-for"], "::1");
    }
}
