//! The `verdict` section: how the proxy signs the verdict tokens it gives the backend (issuer,
//! audience, lifetime, session binding, and the keys), with their defaults. Key files are named
//! here and read where the keys are built (`crate::verdict_token`), so no key material is ever
//! part of the config a log line or `check` could print.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de;

/// Verdict tokens (RFC 7519 JWTs). Without keys no token is minted.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerdictConfig {
    /// `iss` of every token.
    pub issuer: String,
    /// `aud` of every token, when not empty.
    pub audience: String,
    /// `exp` = `iat` + this.
    #[serde(with = "de::duration")]
    pub token_ttl: Duration,
    /// `cookie:NAME` or `header:NAME`: the token carries the SHA-256 of that value on the capture
    /// request (`bind_sha256`), and a capture without it is refused. Empty: no binding.
    pub bind: String,
    /// Signing keys: the first signs, all are published (or kept, for HS256) for verifying.
    pub keys: Vec<VerdictKeyConfig>,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        Self {
            issuer: "oz-capture-proxy".to_owned(),
            audience: String::new(),
            token_ttl: Duration::from_secs(600),
            bind: String::new(),
            keys: Vec::new(),
        }
    }
}

impl VerdictConfig {
    /// Whether tokens are minted at all.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }
}

/// One key of `verdict.keys`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictKeyConfig {
    /// `kid` in the token header and the JWKS.
    pub kid: String,
    /// The signature algorithm.
    #[serde(default)]
    pub alg: VerdictAlg,
    /// EdDSA: the Ed25519 private key, PKCS#8 PEM.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// HS256: the shared secret, at least 32 bytes.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// A signature algorithm of verdict tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum VerdictAlg {
    /// Ed25519 (RFC 8037): the backend verifies with the public key from the JWKS.
    #[default]
    EdDSA,
    /// HMAC-SHA256 with a secret the backend holds too; never published.
    HS256,
}

/// Where the value a token is bound to comes from (`verdict.bind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Cookie(String),
    Header(http::HeaderName),
}

impl Binding {
    /// Parses `cookie:NAME` or `header:NAME`; `None` for an empty setting.
    pub fn parse(setting: &str) -> Result<Option<Binding>, String> {
        if setting.is_empty() {
            return Ok(None);
        }
        match setting.split_once(':') {
            Some(("cookie", name)) if !name.is_empty() && name.bytes().all(is_cookie_name_byte) => {
                Ok(Some(Binding::Cookie(name.to_owned())))
            }
            Some(("header", name)) => http::HeaderName::from_bytes(name.as_bytes())
                .map(|h| Some(Binding::Header(h)))
                .map_err(|_| format!("`{name}` is not a header name")),
            _ => Err("must be `cookie:NAME` or `header:NAME`".to_owned()),
        }
    }

    /// The bound value on a request with `headers`, if it carries exactly one.
    pub fn value<'h>(&self, headers: &'h http::HeaderMap) -> Option<&'h [u8]> {
        match self {
            Binding::Header(name) => {
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (Some(v), None) if !v.is_empty() => Some(v.as_bytes()),
                    _ => None,
                }
            }
            Binding::Cookie(name) => {
                let mut found = None;
                for pair in headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
                {
                    let pair = pair.trim_ascii();
                    let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                        continue;
                    };
                    let key = &pair[..eq];
                    // A name that only some cookie parsers read as this one (letter case,
                    // blanks around `=`) makes the value ambiguous: none is taken.
                    if key != name.as_bytes()
                        && key.trim_ascii().eq_ignore_ascii_case(name.as_bytes())
                    {
                        return None;
                    }
                    if key == name.as_bytes() {
                        // Two cookies of that name: which one the host app reads is its own
                        // business, so neither is taken.
                        if found.is_some() {
                            return None;
                        }
                        found = Some(&pair[eq + 1..]);
                    }
                }
                found.filter(|v| !v.is_empty())
            }
        }
    }
}

/// RFC 6265 §4.1.1: a cookie name is an RFC 9110 token.
fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_parse_and_read_one_value() {
        assert_eq!(Binding::parse("").unwrap(), None);
        assert!(Binding::parse("session").is_err());
        assert!(Binding::parse("cookie:").is_err());
        assert!(Binding::parse("header:bad name").is_err());
        let cookie = Binding::parse("cookie:sid").unwrap().unwrap();
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, "a=1; sid=abc; b=2".parse().unwrap());
        assert_eq!(cookie.value(&h), Some(&b"abc"[..]));
        h.append(http::header::COOKIE, "sid=other".parse().unwrap());
        assert_eq!(cookie.value(&h), None, "two values are ambiguous");
        for other_spelling in ["SID=x; sid=abc", "sid=abc; sid =x"] {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::COOKIE, other_spelling.parse().unwrap());
            assert_eq!(cookie.value(&h), None, "{other_spelling}");
        }
        let header = Binding::parse("header:x-session").unwrap().unwrap();
        let mut h = http::HeaderMap::new();
        assert_eq!(header.value(&h), None);
        h.insert("x-session", "s1".parse().unwrap());
        assert_eq!(header.value(&h), Some(&b"s1"[..]));
    }
}
