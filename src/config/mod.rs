//! Typed configuration: YAML file plus `OZ_PROXY__…` environment overrides, validated with key paths.
//!
//! The loader never reads process globals itself: `main` hands it the environment as a map, and tests
//! hand it their own, so no test ever mutates the process environment. Values are never coerced
//! (`try_parsing` stays off): a token `"007"` stays `"007"`. Errors name the key path and never echo
//! the value of a secret key.
//!
//! This module is the ground floor: it imports nothing from the rest of the crate. The names it
//! validates against (the reserved multipart and metadata keys, the analysis limit) are defined
//! here, and `capture` and `oz` use them from here.
//!
//! - [`Config`], the root, is here; then one file per group of sections: `server` (`tls`,
//!   `server`, `shutdown`, `reload`), `backend` (`backend`, `forwarding`), `log`, `oz`, `capture`,
//!   `verdict`, `state`, `telemetry` (with the `OTEL_*` variables).
//!   A section's defaults are its one `Default`, which serde uses for every key left out.
//! - `load`: YAML, overrides, secret files; `validate`: the checks types cannot make;
//!   `secrets`: keeping secret values out of messages; `de`: durations, URLs and lists; `error`.

mod backend;
mod capture;
mod de;
mod error;
mod load;
mod log;
mod oz;
mod secrets;
mod server;
mod state;
mod telemetry;
#[cfg(test)]
mod test_input;
mod validate;
mod validate_abuse;
mod verdict;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use backend::{BackendConfig, ForwardingConfig, XffMode};
pub use capture::{
    BestFrame, CaptureConfig, CaptureRoute, ClientKey, ClientLimit, ForwardBody, Limit, OnOzError,
    OnResult, RateLimitConfig, RateLimits, ReplayConfig, ReplayOverride, ResultMode, RouteConfig,
    Scope, TransformPriority, UncheckedImages, BEST_FRAME_KEY, MAX_ANALYSES, MAX_FRAMES,
    RESERVED_FOLDER_KEYS,
};
pub use error::Error;
pub use load::ENV_PREFIX;
pub use log::{LogConfig, LogFormat};
pub use oz::{OzApiMode, OzAuthConfig, OzConfig, SecretFiles};
pub use server::{ReloadConfig, ServerConfig, ShutdownConfig, TlsConfig};
pub use state::{OnStateError, RedisConfig, StateConfig, StoreKind};
pub use telemetry::{
    redacted_url, OtelEnv, OtlpConfig, OtlpSettings, Sampling, TelemetryConfig,
    DEFAULT_SERVICE_NAME,
};
pub use verdict::{Binding, VerdictAlg, VerdictConfig, VerdictKeyConfig};

/// The whole configuration, as written in YAML (see `config/example.yaml`).
///
/// No `Default`: `backend.url` has none. `listen` and `admin_listen` take theirs from the one
/// function each names; every section from its own `Default`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Client-facing listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Admin listener: `/live`, `/ready`, `/metrics`; never proxied.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// Verdict lookup listener (`GET /verdicts/{folder_id}`, `…/video`); off when unset, so two
    /// proxies on one host never collide. Meant for the pod's own containers
    /// (`127.0.0.1:9902`); never the traffic port.
    #[serde(default)]
    pub verdict_listen: Option<SocketAddr>,
    /// Optional TLS on the client-facing listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The legacy backend.
    pub backend: BackendConfig,
    /// Limits and timeouts of the client-facing listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// Draining on SIGTERM/SIGINT.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// Forwarding headers added to requests.
    #[serde(default)]
    pub forwarding: ForwardingConfig,
    /// Re-reading the config file when it changes.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The Oz API.
    #[serde(default)]
    pub oz: OzConfig,
    /// Capture routes and their settings.
    #[serde(default)]
    pub capture: CaptureConfig,
    /// Signed verdict tokens for the backend.
    #[serde(default)]
    pub verdict: VerdictConfig,
    /// Where the replay guard and the rate limits keep their state.
    #[serde(default)]
    pub state: StateConfig,
    /// Traces (`telemetry.otlp`), with the `OTEL_*` variables applied.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9901))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::test_input::{env, MINIMAL};
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.capture.file_key, "video1");
        assert_eq!(c.backend.pool_idle_timeout, Duration::from_secs(3));
    }

    // A section's `Default` is also what code and tests build a section with; it once said
    // `renew_before: 0s` where YAML said 60 s. Compared key by key over the whole tree, with
    // every section left out, and with every section present but empty (a key-level serde
    // default would apply there only), so a new key or section is covered without touching
    // this test. The root and `backend` have no `Default` (`backend.url` has no default), so
    // they are taken from the YAML side.
    #[test]
    fn built_defaults_are_the_yaml_defaults() {
        let left_out = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        let built = Config {
            listen: left_out.listen,
            admin_listen: left_out.admin_listen,
            verdict_listen: None,
            tls: None,
            backend: left_out.backend.clone(),
            server: ServerConfig::default(),
            shutdown: ShutdownConfig::default(),
            forwarding: ForwardingConfig::default(),
            reload: ReloadConfig::default(),
            log: LogConfig::default(),
            oz: OzConfig::default(),
            capture: CaptureConfig::default(),
            verdict: VerdictConfig::default(),
            state: StateConfig::default(),
            telemetry: TelemetryConfig::default(),
        };
        let built = serde_json::to_value(&built).unwrap();
        let Value::Object(sections) = &built else {
            panic!("a config serializes as a map");
        };
        let sections = Value::Object(
            sections
                .iter()
                .filter(|(key, _)| *key != "backend")
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        );
        let empty_sections = format!("{MINIMAL}{}", every_section_empty(&sections, ""));
        let present_but_empty = Config::from_yaml(&empty_sections, &env(&[])).unwrap();
        for (yaml, how) in [
            (left_out, "sections left out"),
            (present_but_empty, "sections present but empty"),
        ] {
            let differences = differing_keys("", &built, &serde_json::to_value(&yaml).unwrap());
            assert!(
                differences.is_empty(),
                "built default != YAML default ({how}):\n{}",
                differences.join("\n")
            );
        }
    }

    /// YAML naming every mapping of `value` (at any depth) and no other key, e.g.
    /// `oz:\n  auth: {}\n`.
    fn every_section_empty(value: &Value, indent: &str) -> String {
        let Value::Object(map) = value else {
            return String::new();
        };
        let mut yaml = String::new();
        for (key, child) in map {
            if !child.is_object() {
                continue;
            }
            let inner = every_section_empty(child, &format!("{indent}  "));
            if inner.is_empty() {
                yaml.push_str(&format!("{indent}{key}: {{}}\n"));
            } else {
                yaml.push_str(&format!("{indent}{key}:\n{inner}"));
            }
        }
        yaml
    }

    /// The key paths at which `built` and `yaml` differ, each with both values.
    fn differing_keys(path: &str, built: &Value, yaml: &Value) -> Vec<String> {
        match (built, yaml) {
            (Value::Object(b), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = b.keys().chain(y.keys()).collect();
                keys.into_iter()
                    .flat_map(|k| {
                        let path = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        let missing = Value::String("<missing>".into());
                        differing_keys(
                            &path,
                            b.get(k).unwrap_or(&missing),
                            y.get(k).unwrap_or(&missing),
                        )
                    })
                    .collect()
            }
            _ if built == yaml => Vec::new(),
            _ => vec![format!("{path}: built {built}, YAML {yaml}")],
        }
    }

    #[test]
    fn differing_keys_names_the_key_path() {
        let built = serde_json::json!({"oz": {"auth": {"renew_before": "0s"}}, "log": "info"});
        let yaml = serde_json::json!({"oz": {"auth": {"renew_before": "1m"}}, "log": "info"});
        assert_eq!(
            differing_keys("", &built, &yaml),
            [r#"oz.auth.renew_before: built "0s", YAML "1m""#]
        );
    }

    #[test]
    fn secrets_never_serialize_in_clear() {
        let c = Config::from_yaml(
            &format!("{MINIMAL}oz:\n  auth:\n    email: mail-hunter2\n    password: pw-hunter2\n"),
            &env(&[]),
        )
        .unwrap();
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(
            serde_json::to_value(&c).unwrap()["oz"]["auth"]["password"],
            "<redacted>"
        );
        let c = Config::from_yaml(
            &format!("{MINIMAL}oz:\n  auth:\n    token: tok-hunter2\n"),
            &env(&[]),
        )
        .unwrap();
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
    }
}
