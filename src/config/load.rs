//! Loading: the YAML text, then the `OZ_PROXY__…` overrides from the environment map handed in
//! (and its `OTEL_*` variables, kept for `telemetry`), then the secret files, then validation.

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
        refuse_password_in_file(yaml)?;
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
        cfg.telemetry.otel_env = super::OtelEnv::from_env(env);
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
        let redis = &mut self.state.redis;
        if let Some(p) = &redis.url_file {
            redis.url = read_secret(p, "state.redis.url_file")?;
        }
        Ok(())
    }
}

/// Refuses a `state.redis.url` with a password written in the config file itself: config files
/// live in git and ConfigMaps. The URL with its password comes from
/// `OZ_PROXY__STATE__REDIS__URL` or `state.redis.url_file`.
fn refuse_password_in_file(yaml: &str) -> Result<(), Error> {
    let Ok(file) = ::config::Config::builder()
        .add_source(::config::File::from_str(yaml, ::config::FileFormat::Yaml))
        .build()
    else {
        // The full load reports the YAML error.
        return Ok(());
    };
    let Ok(url) = file.get_string("state.redis.url") else {
        return Ok(());
    };
    let userinfo = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo);
    match userinfo {
        Some(u) if u.contains(':') => Err(Error::invalid(
            "state.redis.url",
            "must not carry credentials in the config file; give the URL in OZ_PROXY__STATE__REDIS__URL or state.redis.url_file",
        )),
        _ => Ok(()),
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
    fn a_redis_password_is_taken_from_the_environment_but_never_from_the_file() {
        let yaml = format!(
            "{MINIMAL}state:\n  store: redis\n  redis:\n    url: redis://:hunter2@redis:6379/0\n"
        );
        let e = Config::from_yaml(&yaml, &env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("state.redis.url") && !e.contains("hunter2"),
            "{e}"
        );
        let c = Config::from_yaml(
            &format!("{MINIMAL}state:\n  store: redis\n"),
            &env(&[(
                "OZ_PROXY__STATE__REDIS__URL",
                "redis://:hunter2@redis:6379/0",
            )]),
        )
        .unwrap();
        assert_eq!(c.state.redis.url, "redis://:hunter2@redis:6379/0");
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
        let e = Config::from_yaml(&format!("{MINIMAL}state:\n  store: redis\n"), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("state.redis.url"), "{e}");
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
