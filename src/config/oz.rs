//! The `oz` section: where the Oz API is, which flow to use, and the credentials, with their
//! defaults; a `Debug` that never shows a secret.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de;
use super::secrets::{read_secret, redacted, serialize_redacted};

/// Oz API connection and credentials.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OzConfig {
    /// Base URL of the Oz API host given by Oz.
    #[serde(with = "de::uri")]
    pub url: http::Uri,
    /// `folders` (upload, start analyses, poll) or `instant` (`/api/instant/folders/`).
    pub api: OzApiMode,
    /// Extra CA certificates (PEM) trusted for the Oz host, on top of the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Connect timeout of Oz calls.
    #[serde(with = "de::duration")]
    pub connect_timeout: Duration,
    /// Timeout of each single Oz call (upload, analyses, poll, login).
    #[serde(with = "de::duration")]
    pub timeout: Duration,
    /// Credentials.
    pub auth: OzAuthConfig,
}

impl Default for OzConfig {
    fn default() -> Self {
        Self {
            url: http::Uri::from_static("https://oz.example.com"),
            api: OzApiMode::default(),
            ca_file: None,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
            auth: OzAuthConfig::default(),
        }
    }
}

/// Which Oz API flow to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OzApiMode {
    #[default]
    Folders,
    Instant,
}

/// Either a static token or login credentials. Secrets belong in the environment or in files.
///
/// Secrets never leave in clear: `Debug` and `Serialize` write `<redacted>` (or `<empty>`).
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OzAuthConfig {
    /// A service token (`X-Forensic-Access-Token`).
    #[serde(serialize_with = "serialize_redacted")]
    pub token: String,
    /// File holding the token (e.g. a mounted Secret); read at load time, and again on every
    /// reload poll (a changed token is used without touching the config file).
    pub token_file: Option<PathBuf>,
    /// Login e-mail for `POST /api/authorize/auth/`.
    #[serde(serialize_with = "serialize_redacted")]
    pub email: String,
    /// Login password.
    #[serde(serialize_with = "serialize_redacted")]
    pub password: String,
    /// File holding the password; read at load time and on every reload poll (a changed one
    /// drops the session and logs in again).
    pub password_file: Option<PathBuf>,
    /// Renew a login token this long before it expires.
    #[serde(with = "de::duration")]
    pub renew_before: Duration,
}

impl Default for OzAuthConfig {
    fn default() -> Self {
        Self {
            token: String::new(),
            token_file: None,
            email: String::new(),
            password: String::new(),
            password_file: None,
            renew_before: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for OzAuthConfig {
    // Secrets never reach a log line, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OzAuthConfig")
            .field("token", &redacted(&self.token))
            .field("token_file", &self.token_file)
            .field("email", &redacted(&self.email))
            .field("password", &redacted(&self.password))
            .field("password_file", &self.password_file)
            .field("renew_before", &self.renew_before)
            .finish()
    }
}

impl OzAuthConfig {
    /// Static token mode, as opposed to login mode.
    pub fn uses_static_token(&self) -> bool {
        !self.token.is_empty()
    }

    /// Reads `token_file` and `password_file` again, as loading does, for the reload poll.
    pub fn secret_files_now(&self) -> SecretFiles {
        let read = |file: &Option<PathBuf>, key: &str| {
            file.as_ref().map(|path| read_secret(path, key).ok())
        };
        SecretFiles {
            token: read(&self.token_file, "oz.auth.token_file"),
            password: read(&self.password_file, "oz.auth.password_file"),
        }
    }

    /// Whether `files` hold exactly the secrets this config was loaded with.
    pub fn loaded_from(&self, files: &SecretFiles) -> bool {
        let same = |read: &Option<Option<String>>, loaded: &str| match read {
            None => true,
            Some(Some(value)) => value == loaded,
            Some(None) => false,
        };
        same(&files.token, &self.token) && same(&files.password, &self.password)
    }
}

/// What the secret files named in `oz.auth` hold at one moment: per file, `None` when none is
/// configured, `Some(None)` when it cannot be read. Compared, never shown: no `Debug`.
#[derive(PartialEq, Eq)]
pub struct SecretFiles {
    token: Option<Option<String>>,
    password: Option<Option<String>>,
}

#[cfg(test)]
mod tests {
    use super::OzAuthConfig;
    use crate::config::test_input::{env, MINIMAL};
    use crate::config::Config;

    #[test]
    fn secret_files_are_compared_with_what_was_loaded() {
        let dir = std::env::temp_dir();
        let token = dir.join(format!("oz-config-{}-token", std::process::id()));
        std::fs::write(&token, "t1\n").unwrap();
        let c = Config::from_yaml(
            &format!(
                "{MINIMAL}oz:\n  auth:\n    token_file: \"{}\"\n",
                token.display()
            ),
            &env(&[]),
        )
        .unwrap();
        let auth = &c.oz.auth;
        assert!(auth.loaded_from(&auth.secret_files_now()));
        std::fs::write(&token, "t1").unwrap();
        assert!(auth.loaded_from(&auth.secret_files_now()), "only a newline");
        std::fs::write(&token, "t2\n").unwrap();
        let rotated = auth.secret_files_now();
        assert!(!auth.loaded_from(&rotated));
        assert!(rotated == auth.secret_files_now());
        std::fs::remove_file(&token).unwrap();
        assert!(!auth.loaded_from(&auth.secret_files_now()), "unreadable");
        let none = OzAuthConfig::default();
        assert!(none.loaded_from(&none.secret_files_now()), "no files named");
    }
}
