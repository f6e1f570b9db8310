//! The HTTPS connector for Oz API: rustls with the aws-lc-rs provider, Mozilla roots plus an
//! optional private CA.
//!
//! Oz gives each customer its own host (docs/oz-api.md §7), sometimes on-prem with a private CA,
//! hence `oz.ca_file`. The provider is passed explicitly (`builder_with_provider`) instead of
//! relying on a process-wide default: if any dependency ever enables a second rustls provider,
//! the process default becomes ambiguous and rustls panics at runtime (docs/dependencies.md,
//! "rustls: one crypto provider, passed explicitly"). Roots come from `webpki-roots`, because the image is `FROM scratch` and
//! has no system store. Plain `http://` stays allowed for tests and the simulator.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

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

/// The rustls client config, built with the aws-lc-rs provider given explicitly.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, BuildError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), BuildError> {
    let fail = |reason: String| BuildError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("certificate {}: {e}", added + 1)))?;
        added += 1;
    }
    // An empty file is a mistake (a wrong mount, a key instead of a cert), not "no extra CA".
    if added == 0 {
        return Err(fail("no PEM certificate found".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_without_ca_file() {
        let cfg = client_config(None).unwrap();
        assert!(cfg.alpn_protocols.is_empty(), "ALPN is set by hyper-rustls");
    }

    #[test]
    fn missing_or_empty_ca_file_is_an_error() {
        let missing = Path::new("/nonexistent/oz-ca.pem");
        assert!(matches!(
            client_config(Some(missing)),
            Err(BuildError::CaFile { .. })
        ));
        let empty = std::env::temp_dir().join(format!("oz-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, b"not a certificate\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        std::fs::remove_file(&empty).ok();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
