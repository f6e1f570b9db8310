//! Loading: the YAML text, then the `OZ_PROXY__…` overrides from the environment map handed in,
//! then the secret files, then validation.

use std::collections::BTreeMap;
use std::path::Path;

use super::secrets::{read_secret, scrub};
use super::{Config, Error};

/// Prefix of environment overrides; levels are separated by a double underscore.
pub const ENV_PREFIX: &str = "OZ_PROXY";

impl Config {
    /// Loads `path` and applies overrides from `env` (only keys starting with `OZ_PROXY__`).
    pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::from_yaml(&text, env)
    }

    /// Parses YAML text and applies overrides from `env`.
    pub fn from_yaml(yaml: &str, env: &BTreeMap<String, String>) -> Result<Config, Error> {
        let overrides: ::config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let built = ::config::Config::builder()
            .add_source(::config::File::from_str(yaml, ::config::FileFormat::Yaml))
            .add_source(
                ::config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(overrides)),
            )
            .build()
            .map_err(|e| Error::Schema(scrub(&e.to_string())))?;
        let mut cfg: Config = built
            .try_deserialize()
            .map_err(|e| Error::Schema(scrub(&e.to_string())))?;
        cfg.read_secret_files()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn read_secret_files(&mut self) -> Result<(), Error> {
        let auth = &mut self.oz.auth;
        if let Some(p) = &auth.token_file {
            auth.token = read_secret(p, "oz.auth.token_file")?;
        }
        if let Some(p) = &auth.password_file {
            auth.password = read_secret(p, "oz.auth.password_file")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_input::{env, MINIMAL};
    use crate::config::Config;

    #[test]
    fn env_overrides_are_not_coerced() {
        let c = Config::from_yaml(
            MINIMAL,
            &env(&[
                ("OZ_PROXY__OZ__AUTH__TOKEN", "007"),
                ("OZ_PROXY__CAPTURE__MAX_BODY_BYTES", "1000"),
                ("OZ_PROXY__CAPTURE__ANALYSES", "quality,biometry"),
                ("OZ_PROXY__CAPTURE__WAIT_FOR_RESULT", "2s"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.oz.auth.token, "007");
        assert_eq!(c.capture.max_body_bytes, 1000);
        assert_eq!(c.capture.analyses, vec!["quality", "biometry"]);
        assert_eq!(c.capture.wait_for_result, Duration::from_secs(2));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_yaml(
            &format!("{MINIMAL}capture:\n  max_body_byte: 3\n"),
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("max_body_byte") && e.contains("capture"), "{e}");
    }

    #[test]
    fn bad_duration_names_key() {
        let e = Config::from_yaml(
            &format!("{MINIMAL}shutdown:\n  drain_delay: soon\n"),
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("shutdown.drain_delay") || e.contains("drain_delay"),
            "{e}"
        );
    }
}
