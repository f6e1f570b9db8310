//! The rustls configuration of the proxy's outgoing TLS (Oz API, the trace collector): the
//! aws-lc-rs provider given explicitly, Mozilla's roots, and an optional private CA file.
//!
//! The provider is passed explicitly (`builder_with_provider`) instead of relying on a
//! process-wide default: if any dependency ever enables a second rustls provider, the process
//! default becomes ambiguous and rustls panics at runtime (docs/dependencies.md, "rustls: one
//! crypto provider, passed explicitly"). Roots come from `webpki-roots`, because the image is
//! `FROM scratch` and has no system store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why the configuration could not be built. Raised at start-up, never per request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The CA file could not be read or holds no usable certificate.
    #[error("{path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    /// rustls refused the configuration.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// The client config: Mozilla's roots plus every certificate of `ca_file`, if given.
pub fn config(ca_file: Option<&Path>) -> Result<ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), Error> {
    let fail = |reason: String| Error::CaFile {
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
        let cfg = config(None).unwrap();
        assert!(cfg.alpn_protocols.is_empty(), "ALPN is set by hyper-rustls");
    }

    #[test]
    fn missing_or_empty_ca_file_is_an_error() {
        let missing = Path::new("/nonexistent/oz-ca.pem");
        assert!(matches!(config(Some(missing)), Err(Error::CaFile { .. })));
        let empty = std::env::temp_dir().join(format!("oz-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, b"not a certificate\n").unwrap();
        let err = config(Some(&empty)).unwrap_err();
        std::fs::remove_file(&empty).ok();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
