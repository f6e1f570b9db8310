//! The way to the backend: `backend` (where it is, timeouts, the connection pool) and
//! `forwarding` (the headers added to what it receives), with their defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de;

/// Where and how to reach the backend.
///
/// No `Default`: `url` has none, and a container default would make it optional. Each other
/// key's default is written once, in the function its attribute names.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Base URL: scheme `http`, host and port; no path.
    #[serde(with = "de::uri")]
    pub url: http::Uri,
    /// TCP connect timeout.
    #[serde(default = "default_connect_timeout", with = "de::duration")]
    pub connect_timeout: Duration,
    /// Time allowed for the backend to send response headers.
    #[serde(default = "default_timeout", with = "de::duration")]
    pub timeout: Duration,
    /// Idle pooled connections are closed after this; keep it below the backend's keep-alive.
    #[serde(default = "default_pool_idle_timeout", with = "de::duration")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per backend.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

// Below Node's 5 s default keep-alive, as linkerd does (3 s).
fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(3)
}

fn default_pool_max_idle() -> usize {
    256
}

/// Forwarding headers.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardingConfig {
    /// `append` adds the peer address to `X-Forwarded-For`; `replace` drops what the client sent;
    /// `off` leaves the header alone.
    pub x_forwarded_for: XffMode,
    /// Value of a `Via` header added to forwarded requests (RFC 9110 §7.6.3); empty = none.
    pub via: String,
    /// Request-id header, generated when absent.
    pub request_id_header: String,
    /// Send HTTP/1 field names in the case they arrived in (both directions) rather than
    /// lowercased. Off by default: names are case-insensitive (RFC 9110 §5.1), HTTP/2 clients
    /// and most ingress proxies (Envoy, HAProxy) lowercase them already, and keeping them costs
    /// 17 % of the proxy's user-space instructions per small request (BENCHMARKS.md). A legacy
    /// backend that matches names by case turns it on.
    pub preserve_header_case: bool,
    /// How many proxies in front of the pod are trusted to append the client's address to
    /// `X-Forwarded-For`: `0` takes the peer address as the client's (a client cannot choose its
    /// own); `N` the N-th address from the right of the `X-Forwarded-For` the proxy received.
    /// Only the rate limits' `client_ip` key reads it.
    pub trusted_hops: usize,
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        Self {
            x_forwarded_for: XffMode::default(),
            via: String::new(),
            request_id_header: "x-request-id".to_owned(),
            preserve_header_case: false,
            trusted_hops: 0,
        }
    }
}

/// What to do with `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XffMode {
    #[default]
    Append,
    Replace,
    Off,
}
