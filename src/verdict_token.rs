//! Verdict tokens: the JWTs (RFC 7519, compact JWS) that let a backend check, with any standard
//! JWT library and no Oz code, that a verdict came from this proxy for this very request.
//!
//! [`Signer::from_config`] reads and checks the keys of `verdict.keys` (the first signs; every
//! EdDSA key is published in the JWKS, RFC 7517, so tokens signed before a rotation still
//! verify); [`Signer::mint`] signs the claims of one capture. Key material never leaves this
//! module: errors name the key path and the file, never its bytes, and `Debug` shows only `kid`s.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::Serialize;

use crate::config::{Binding, Error as ConfigError, VerdictAlg, VerdictConfig};

/// HS256 secrets shorter than this are refused (RFC 7518 §3.2: at least the hash size).
const MIN_SECRET_BYTES: usize = 32;

/// Signs verdict tokens with the first configured key; publishes the public keys.
pub struct Signer {
    issuer: String,
    audience: Option<String>,
    ttl: Duration,
    binding: Option<Binding>,
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    kids: Vec<String>,
    jwks: Bytes,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .field("signing_kid", &self.kid)
            .field("kids", &self.kids)
            .finish_non_exhaustive()
    }
}

/// What one token says about one capture.
#[derive(Debug, Serialize)]
pub struct OzClaim<'a> {
    pub resolution: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_camera: Option<bool>,
    pub analyses: Vec<AnalysisClaim<'a>>,
}

/// One analysis of [`OzClaim`].
#[derive(Debug, Serialize)]
pub struct AnalysisClaim<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub resolution: &'a str,
}

/// The capture a token is minted for.
pub struct Subject<'a> {
    /// `sub`: the Oz folder id.
    pub folder_id: &'a str,
    /// `jti`: the request id of the capture.
    pub request_id: &'a str,
    pub oz: OzClaim<'a>,
    /// The body the backend receives, in forward mode (`body_sha256`).
    pub body: Option<&'a [u8]>,
    /// The value the token is bound to (`bind_sha256`), when `verdict.bind` is set.
    pub binding: Option<&'a [u8]>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    sub: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
    oz: &'a OzClaim<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bind_sha256: Option<String>,
}

impl Signer {
    /// The signer `verdict` describes, its key files read and checked; `None` without keys
    /// (tokens off). Errors name the key path (`verdict.keys[1].secret_file`) and the file.
    pub fn from_config(verdict: &VerdictConfig) -> Result<Option<Signer>, ConfigError> {
        if !verdict.enabled() {
            return Ok(None);
        }
        let mut signing = None;
        let mut published = Vec::new();
        for (i, key) in verdict.keys.iter().enumerate() {
            let (alg, encoding, public) =
                match key.alg {
                    VerdictAlg::EdDSA => {
                        let at = format!("verdict.keys[{i}].private_key_file");
                        let path = key.private_key_file.as_deref().ok_or_else(|| {
                            ConfigError::invalid(&at, "is required for alg EdDSA")
                        })?;
                        let (der, public) = read_ed25519(path, &at)?;
                        (
                            Algorithm::EdDSA,
                            EncodingKey::from_ed_der(&der),
                            Some(public),
                        )
                    }
                    VerdictAlg::HS256 => {
                        let at = format!("verdict.keys[{i}].secret_file");
                        let path = key.secret_file.as_deref().ok_or_else(|| {
                            ConfigError::invalid(&at, "is required for alg HS256")
                        })?;
                        let secret = read_secret(path, &at)?;
                        (Algorithm::HS256, EncodingKey::from_secret(&secret), None)
                    }
                };
            if let Some(x) = public {
                published.push(serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": x,
                    "kid": key.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                }));
            }
            if signing.is_none() {
                signing = Some((key.kid.clone(), alg, encoding));
            }
        }
        let (kid, alg, key) = signing.expect("enabled means one key at least");
        let binding = Binding::parse(&verdict.bind)
            .map_err(|reason| ConfigError::invalid("verdict.bind", reason))?;
        let jwks = serde_json::to_vec(&serde_json::json!({ "keys": published }))
            .expect("a json! value always serializes");
        Ok(Some(Signer {
            issuer: verdict.issuer.clone(),
            audience: (!verdict.audience.is_empty()).then(|| verdict.audience.clone()),
            ttl: verdict.token_ttl,
            binding,
            kid,
            alg,
            key,
            kids: verdict.keys.iter().map(|k| k.kid.clone()).collect(),
            jwks: Bytes::from(jwks),
        }))
    }

    /// Where the value a token is bound to comes from, if tokens are bound.
    pub fn binding(&self) -> Option<&Binding> {
        self.binding.as_ref()
    }

    /// The public keys as a JWKS document (`application/jwk-set+json`); HS256 secrets are
    /// never in it.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// The `kid` of the signing key.
    pub fn signing_kid(&self) -> &str {
        &self.kid
    }

    /// Signs the token for `subject`, issued now.
    pub fn mint(&self, subject: &Subject<'_>) -> String {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: &self.issuer,
            aud: self.audience.as_deref(),
            sub: subject.folder_id,
            iat,
            exp: iat + self.ttl.as_secs(),
            jti: subject.request_id,
            oz: &subject.oz,
            body_sha256: subject.body.map(sha256_hex),
            bind_sha256: subject.binding.map(sha256_hex),
        };
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        // The key was checked when it was read: signing with it cannot fail.
        jsonwebtoken::encode(&header, &claims, &self.key).expect("a checked key signs")
    }
}

/// Lower-case hex SHA-256 of `bytes`, as `body_sha256` and `bind_sha256` carry it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    hex
}

/// The PKCS#8 DER of an Ed25519 private key file, and its public key, base64url as JWK's `x`.
fn read_ed25519(path: &std::path::Path, at: &str) -> Result<(Vec<u8>, String), ConfigError> {
    let pem = std::fs::read(path).map_err(|e| {
        ConfigError::invalid(at, format!("cannot read {}: {}", path.display(), e.kind()))
    })?;
    let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| {
        ConfigError::invalid(
            at,
            format!("{} is not a PKCS#8 PEM private key", path.display()),
        )
    })?;
    let pair = Ed25519KeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|_| {
        ConfigError::invalid(
            at,
            format!(
                "{} is not an Ed25519 private key (alg EdDSA)",
                path.display()
            ),
        )
    })?;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    Ok((der.secret_pkcs8_der().to_vec(), x))
}

/// An HS256 secret file's bytes, without the line end a mounted Secret often carries.
fn read_secret(path: &std::path::Path, at: &str) -> Result<Vec<u8>, ConfigError> {
    let mut secret = std::fs::read(path).map_err(|e| {
        ConfigError::invalid(at, format!("cannot read {}: {}", path.display(), e.kind()))
    })?;
    while secret.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        secret.pop();
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::invalid(
            at,
            format!(
                "{} holds {} bytes; an HS256 secret needs at least {MIN_SECRET_BYTES}",
                path.display(),
                secret.len()
            ),
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_is_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
