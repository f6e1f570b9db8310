//! The HTTPS connector for Oz API: the proxy's client TLS (`crate::client_tls`: aws-lc-rs,
//! Mozilla roots plus an optional private CA) over a TCP connector with `oz.connect_timeout`.
//!
//! Oz gives each customer its own host (docs/oz-api.md §7), sometimes on-prem with a private CA,
//! hence `oz.ca_file`. Plain `http://` stays allowed for tests and the simulator.

use std::path::{Path, PathBuf};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::ClientConfig;

use crate::client_tls;
use crate::config::OzConfig;

/// Why the Oz client could not be built. Raised at start-up, never per request.
/// (Kept next to the TLS setup, which is where nearly all of these come from.)
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `oz.ca_file` could not be read or holds no usable certificate.
    #[error("oz.ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    /// rustls refused the configuration.
    #[error("Oz TLS setup failed: {0}")]
    Tls(String),
    /// `oz.url` cannot be used as a base URL.
    #[error("oz.url: {0}")]
    Url(String),
    /// The credentials cannot be used (the message never quotes them).
    #[error("{0}")]
    Auth(String),
}

/// The connector: TCP with `connect_timeout`, then TLS for `https://` (HTTP/2 or HTTP/1.1 by
/// ALPN), or nothing more for `http://`.
pub fn connector(cfg: &OzConfig) -> Result<HttpsConnector<HttpConnector>, BuildError> {
    let mut tcp = HttpConnector::new();
    // The TLS layer wraps this connector, so it must accept https URIs too.
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(cfg.connect_timeout));
    tcp.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(cfg.ca_file.as_deref())?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp))
}

/// The rustls client config (`crate::client_tls`), its errors named after `oz.ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, BuildError> {
    client_tls::config(ca_file).map_err(|e| match e {
        client_tls::Error::CaFile { path, reason } => BuildError::CaFile { path, reason },
        client_tls::Error::Tls(reason) => BuildError::Tls(reason),
    })
}
