//! The client-facing listener's sections: `tls`, `server` (limits and timeouts), `shutdown`
//! (draining) and `reload` (re-reading the file), with their defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de;

/// TLS certificate and key files (PEM).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Limits of the client-facing listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// A client must send the full request head within this time (slowloris guard).
    #[serde(with = "de::duration")]
    pub header_read_timeout: Duration,
    /// Largest request head in bytes (at least 8192); larger heads get 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more get 431.
    pub max_headers: usize,
    /// A streamed request or response body that sends nothing for this long is cut.
    #[serde(with = "de::duration")]
    pub body_idle_timeout: Duration,
    /// Most client connections open at once; beyond it new ones wait in the listen backlog
    /// until one closes (each pause counted in `oz_proxy_connection_limit_reached_total`). An
    /// idle keep-alive connection holds about 27 KiB (BENCHMARKS.md), so the default bounds
    /// that to about 55 MiB. Bounds the memory
    /// and file descriptors a flood of connections can take.
    pub max_connections: usize,
    /// An HTTP/2 connection that moves no byte either way for this long is closed; `0s` = never.
    /// (HTTP/1 keep-alive connections close at `header_read_timeout` between requests.)
    #[serde(with = "de::duration")]
    pub http2_idle_timeout: Duration,
    /// Idle timeout of an upgraded (WebSocket) tunnel.
    #[serde(with = "de::duration")]
    pub tunnel_idle_timeout: Duration,
    /// Longest life of a tunnel, however busy; `0s` = no limit. Nothing inside a tunnel is
    /// inspected, so its life is bounded like any other exchange.
    #[serde(with = "de::duration")]
    pub tunnel_max_lifetime: Duration,
    /// `Upgrade` protocols that may be tunnelled (compared case-insensitively, version ignored);
    /// any other offer is removed and the request forwarded as a plain one. `h2c` is refused:
    /// HTTP/2 inside a tunnel would pass every check of this proxy by (RFC 9113 §3.1).
    #[serde(deserialize_with = "de::string_list")]
    pub upgrade_protocols: Vec<String>,
    /// Keep header fields whose names contain `_`. Off by default, as nginx's
    /// `underscores_in_headers`: CGI, WSGI and Rack servers read `X_Oz_Resolution` and
    /// `X-Oz-Resolution` as one variable, so such a name can smuggle a field past the rules.
    pub underscores_in_headers: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            body_idle_timeout: Duration::from_secs(60),
            max_connections: 2048,
            http2_idle_timeout: Duration::from_secs(300),
            tunnel_idle_timeout: Duration::from_secs(300),
            tunnel_max_lifetime: Duration::from_secs(3600),
            upgrade_protocols: vec!["websocket".into()],
            underscores_in_headers: false,
        }
    }
}

/// How the proxy drains on SIGTERM or SIGINT.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Traffic keeps flowing this long after the signal while `/ready` says 503.
    #[serde(with = "de::duration")]
    pub drain_delay: Duration,
    /// After the listener closes, in-flight requests and tunnels get at most this long.
    #[serde(with = "de::duration")]
    pub drain_deadline: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(5),
            drain_deadline: Duration::from_secs(20),
        }
    }
}

/// Config reload by polling: a ConfigMap update swaps a symlink, which breaks inotify watches.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReloadConfig {
    /// How often the file is re-read and compared; `0s` turns reloading off.
    #[serde(with = "de::duration")]
    pub interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
        }
    }
}
