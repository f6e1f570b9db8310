//! The `state` section: where the capture controls keep what they remember (replay digests,
//! rate-limit buckets): embedded in the process, or in a Redis shared by every replica.
//!
//! The Redis URL may carry a password, so it is a secret: it comes from the environment
//! (`OZ_PROXY__STATE__REDIS__URL`) or from `url_file`, never shows in `check` output or a log
//! line, and a URL with a password written in the YAML file itself is refused.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de;
use super::secrets::serialize_redacted;

/// Shared state of the capture controls.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// `memory` (one process, nothing to run) or `redis` (shared by every replica).
    pub store: StoreKind,
    /// The Redis connection, when `store: redis`.
    pub redis: RedisConfig,
    /// What a capture does when the store cannot answer.
    pub on_error: OnStateError,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::Memory,
            redis: RedisConfig::default(),
            on_error: OnStateError::FailClosed,
        }
    }
}

/// Where the state lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In the process: holds for one pod, forgotten on restart.
    #[default]
    Memory,
    /// In Redis (or Valkey): holds across every replica and restart.
    Redis,
}

/// What a capture does when the store is unreachable or slower than `state.redis.timeout`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStateError {
    /// 503 `state_unavailable` with `Retry-After`; nothing is uploaded.
    #[default]
    FailClosed,
    /// The capture goes on unguarded; logged and counted.
    FailOpen,
}

/// The Redis connection.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` or `rediss://…` (TLS, rustls). A secret.
    #[serde(serialize_with = "serialize_redacted")]
    pub url: String,
    /// A file holding the URL (a mounted Secret); read at load, it replaces `url`. Empty: none.
    #[serde(deserialize_with = "de::opt_path")]
    pub url_file: Option<PathBuf>,
    /// With `rediss://`: the CA (PEM) that signed the Redis server's certificate, trusted instead
    /// of the system's roots (a private CA, as in-cluster Redis often has). Empty: system roots.
    #[serde(deserialize_with = "de::opt_path")]
    pub ca_file: Option<PathBuf>,
    /// Longest wait for one answer (and for a connection) before the store counts as failed.
    #[serde(with = "de::duration")]
    pub timeout: Duration,
    /// Prefix of every key the proxy writes, so that several deployments can share one Redis.
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            url_file: None,
            ca_file: None,
            timeout: Duration::from_millis(50),
            key_prefix: "ozp:".to_owned(),
        }
    }
}
