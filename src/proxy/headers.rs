//! Header rules applied to every forwarded message: hop-by-hop removal, forged `x-oz-*`
//! removal, and the forwarding headers a gateway adds.
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
//! §7.8).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Fields that are always hop-by-hop, besides those that `Connection` names.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRANSFER_ENCODING,
];

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
/// must not panic anything (pingora#706).
fn connection_tokens(v: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    v.as_bytes()
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop fields. With `keep_upgrade`, `Upgrade` and a bare `Connection: upgrade`
/// stay so the next hop can switch protocols.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Collect first: removing while iterating `get_all` is not possible. Allocates only when a
    // `Connection` header is present, which keep-alive HTTP/1.1 clients rarely send.
    let named: Vec<HeaderName> = if headers.contains_key(header::CONNECTION) {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(connection_tokens)
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .filter(|n| !(keep_upgrade && n == header::UPGRADE))
            .collect()
    } else {
        Vec::new()
    };
    remove_where(headers, |name| {
        HOP_BY_HOP.contains(name)
            || named.contains(name)
            || (!keep_upgrade && name == header::UPGRADE)
    });
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes every `x-oz-*` field so no client can forge a verdict.
pub fn strip_oz_headers(headers: &mut HeaderMap) {
    remove_where(headers, |name| name.as_str().starts_with(OZ_PREFIX));
}

/// Removes the fields for which `remove` is true and keeps the others in their order.
///
/// `HeaderMap::remove` moves the last field into the removed one's slot (it is a swap-remove),
/// so removing `Connection` from the middle of a request would reorder what the backend sees.
/// Legacy backends sometimes depend on field order, so the map is rebuilt instead; that
/// allocates only when something is actually removed.
fn remove_where(headers: &mut HeaderMap, remove: impl Fn(&HeaderName) -> bool) {
    if !headers.keys().any(&remove) {
        return;
    }
    let old = std::mem::take(headers);
    headers.reserve(old.len());
    let mut current: Option<HeaderName> = None;
    // `into_iter` yields each name once, with its first value, then `None` for its other values.
    for (name, value) in old {
        if let Some(name) = name {
            current = Some(name);
        }
        let name = current
            .as_ref()
            .expect("a HeaderMap iterator names the field before its extra values");
        if !remove(name) {
            headers.append(name.clone(), value);
        }
    }
}

/// What the gateway knows about the client connection, for the forwarding headers.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: std::net::SocketAddr,
    /// Whether the client connection was TLS.
    pub tls: bool,
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
        }
    }

    /// Adds `X-Forwarded-For` (appended per policy), `X-Forwarded-Proto`, `X-Forwarded-Host`
    /// (from `Host`), `Via`, and a request id when absent. Returns the request id.
    pub fn apply(&self, headers: &mut HeaderMap, peer: &Peer) -> Option<HeaderValue> {
        let ip = peer.addr.ip().to_canonical().to_string();
        match self.xff {
            crate::config::XffMode::Off => {}
            crate::config::XffMode::Replace => {
                headers.insert(
                    X_FORWARDED_FOR.clone(),
                    HeaderValue::from_str(&ip).expect("an IP is a valid value"),
                );
            }
            crate::config::XffMode::Append => {
                // Several XFF fields are one comma-separated list (RFC 9110 §5.3); join them so
                // the backend sees a single, ordered list ending with the peer.
                let mut list = Vec::with_capacity(64);
                for v in headers.get_all(&X_FORWARDED_FOR) {
                    list.extend_from_slice(v.as_bytes());
                    list.extend_from_slice(b", ");
                }
                list.extend_from_slice(ip.as_bytes());
                match HeaderValue::from_bytes(&list) {
                    Ok(v) => {
                        headers.insert(X_FORWARDED_FOR.clone(), v);
                    }
                    Err(_) => {
                        headers.insert(
                            X_FORWARDED_FOR.clone(),
                            HeaderValue::from_str(&ip).expect("an IP is a valid value"),
                        );
                    }
                }
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
            return Some(id.clone());
        }
        let id = new_request_id();
        headers.insert(name.clone(), id.clone());
        Some(id)
    }
}

/// A fresh request id (UUID v4, lowercase hyphenated).
pub fn new_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
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
        strip_oz_headers(&mut h);
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
        strip_oz_headers(&mut h);
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
        let peer = Peer {
            addr: "127.0.0.9:1".parse().unwrap(),
            tls: false,
        };
        let id = f.apply(&mut h, &peer).unwrap();
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-request-id"], id);
        assert_eq!(id.len(), 36);
    }

    #[test]
    fn existing_request_id_is_kept() {
        let f = Forwarding::from_config(&crate::config::ForwardingConfig::default());
        let mut h = map(&[("x-request-id", "abc")]);
        let peer = Peer {
            addr: "[::1]:1".parse().unwrap(),
            tls: true,
        };
        assert_eq!(f.apply(&mut h, &peer).unwrap(), "abc");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-for"], "::1");
    }
}
