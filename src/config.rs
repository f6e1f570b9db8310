//! Typed configuration: YAML file plus `OZ_PROXY__…` environment overrides, validated with key paths.
//!
//! The loader never reads process globals itself: `main` hands it the environment as a map, and tests
//! hand it their own, so no test ever mutates the process environment. Values are never coerced
//! (`try_parsing` stays off): a token `"007"` stays `"007"`. Errors name the key path and never echo
//! the value of a secret key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Prefix of environment overrides; levels are separated by a double underscore.
pub const ENV_PREFIX: &str = "OZ_PROXY";

/// Keys whose values are secrets: errors about them never quote the value.
const SECRET_KEYS: &[&str] = &["oz.auth.token", "oz.auth.password", "oz.auth.email"];

/// A configuration problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    /// The YAML or an override did not fit the schema.
    #[error("{0}")]
    Schema(String),
    /// A value parsed but is not acceptable.
    #[error("key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl Error {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration, as written in YAML (see `config/example.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Client-facing listener.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Admin listener: `/live`, `/ready`, `/metrics`; never proxied.
    #[serde(default = "defaults::admin_listen")]
    pub admin_listen: SocketAddr,
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
}

/// TLS certificate and key files (PEM).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert_file: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Where and how to reach the backend.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Base URL: scheme `http`, host and port; no path.
    #[serde(deserialize_with = "de::uri")]
    pub url: http::Uri,
    /// TCP connect timeout.
    #[serde(default = "defaults::connect_timeout", with = "de::duration")]
    pub connect_timeout: Duration,
    /// Time allowed for the backend to send response headers.
    #[serde(default = "defaults::backend_timeout", with = "de::duration")]
    pub timeout: Duration,
    /// Idle pooled connections are closed after this; keep it below the backend's keep-alive.
    #[serde(default = "defaults::pool_idle_timeout", with = "de::duration")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per backend.
    #[serde(default = "defaults::pool_max_idle")]
    pub pool_max_idle: usize,
}

/// Limits of the client-facing listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// A client must send the full request head within this time (slowloris guard).
    #[serde(default = "defaults::header_read_timeout", with = "de::duration")]
    pub header_read_timeout: Duration,
    /// Largest request head in bytes (at least 8192); larger heads get 431.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header fields in one request; more get 431.
    #[serde(default = "defaults::max_headers")]
    pub max_headers: usize,
    /// A streamed request or response body that sends nothing for this long is cut.
    #[serde(default = "defaults::body_idle_timeout", with = "de::duration")]
    pub body_idle_timeout: Duration,
    /// Most client connections open at once; beyond it new ones wait in the listen backlog
    /// until one closes (each pause counted in `oz_proxy_connection_limit_reached_total`). An
    /// idle keep-alive connection holds about 27 KiB (BENCHMARKS.md), so the default bounds
    /// that to about 55 MiB. Bounds the memory
    /// and file descriptors a flood of connections can take.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// An HTTP/2 connection that moves no byte either way for this long is closed; `0s` = never.
    /// (HTTP/1 keep-alive connections close at `header_read_timeout` between requests.)
    #[serde(default = "defaults::http2_idle_timeout", with = "de::duration")]
    pub http2_idle_timeout: Duration,
    /// Idle timeout of an upgraded (WebSocket) tunnel.
    #[serde(default = "defaults::tunnel_idle_timeout", with = "de::duration")]
    pub tunnel_idle_timeout: Duration,
    /// Longest life of a tunnel, however busy; `0s` = no limit. Nothing inside a tunnel is
    /// inspected, so its life is bounded like any other exchange.
    #[serde(default = "defaults::tunnel_max_lifetime", with = "de::duration")]
    pub tunnel_max_lifetime: Duration,
    /// `Upgrade` protocols that may be tunnelled (compared case-insensitively, version ignored);
    /// any other offer is removed and the request forwarded as a plain one. `h2c` is refused:
    /// HTTP/2 inside a tunnel would pass every check of this proxy by (RFC 9113 §3.1).
    #[serde(
        default = "defaults::upgrade_protocols",
        deserialize_with = "de::string_list"
    )]
    pub upgrade_protocols: Vec<String>,
    /// Keep header fields whose names contain `_`. Off by default, as nginx's
    /// `underscores_in_headers`: CGI, WSGI and Rack servers read `X_Oz_Resolution` and
    /// `X-Oz-Resolution` as one variable, so such a name can smuggle a field past the rules.
    #[serde(default)]
    pub underscores_in_headers: bool,
}

/// How the proxy drains on SIGTERM or SIGINT.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Traffic keeps flowing this long after the signal while `/ready` says 503.
    #[serde(default = "defaults::drain_delay", with = "de::duration")]
    pub drain_delay: Duration,
    /// After the listener closes, in-flight requests and tunnels get at most this long.
    #[serde(default = "defaults::drain_deadline", with = "de::duration")]
    pub drain_deadline: Duration,
}

/// Config reload by polling: a ConfigMap update swaps a symlink, which breaks inotify watches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// How often the file is re-read and compared; `0s` turns reloading off.
    #[serde(default = "defaults::reload_interval", with = "de::duration")]
    pub interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            interval: defaults::reload_interval(),
        }
    }
}

/// Forwarding headers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingConfig {
    /// `append` adds the peer address to `X-Forwarded-For`; `replace` drops what the client sent;
    /// `off` leaves the header alone.
    #[serde(default)]
    pub x_forwarded_for: XffMode,
    /// Value of a `Via` header added to forwarded requests (RFC 9110 §7.6.3); empty = none.
    #[serde(default)]
    pub via: String,
    /// Request-id header, generated when absent.
    #[serde(default = "defaults::request_id_header")]
    pub request_id_header: String,
    /// Send HTTP/1 field names in the case they arrived in (both directions) rather than
    /// lowercased. On by default, since legacy backends sometimes depend on it; it costs about
    /// 13 % of the proxy's user-space instructions per small request (BENCHMARKS.md).
    #[serde(default = "defaults::yes")]
    pub preserve_header_case: bool,
}

/// What to do with `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XffMode {
    #[default]
    Append,
    Replace,
    Off,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (one object per line) or `text`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `oz_capture_proxy=debug`.
    #[serde(default = "defaults::log_level")]
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// Oz API connection and credentials.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OzConfig {
    /// Base URL of the Oz API host given by Oz.
    #[serde(default = "defaults::oz_url", deserialize_with = "de::uri")]
    pub url: http::Uri,
    /// `folders` (upload, start analyses, poll) or `instant` (`/api/instant/folders/`).
    #[serde(default)]
    pub api: OzApiMode,
    /// Extra CA certificates (PEM) trusted for the Oz host, on top of the built-in roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Connect timeout of Oz calls.
    #[serde(default = "defaults::connect_timeout", with = "de::duration")]
    pub connect_timeout: Duration,
    /// Timeout of each single Oz call (upload, analyses, poll, login).
    #[serde(default = "defaults::oz_timeout", with = "de::duration")]
    pub timeout: Duration,
    /// Credentials.
    #[serde(default)]
    pub auth: OzAuthConfig,
}

/// Which Oz API flow to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OzApiMode {
    #[default]
    Folders,
    Instant,
}

/// Either a static token or login credentials. Secrets belong in the environment or in files.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OzAuthConfig {
    /// A service token (`X-Forensic-Access-Token`).
    #[serde(default)]
    pub token: String,
    /// File holding the token (e.g. a mounted Secret); read at load time, and again on every
    /// reload poll (a changed token is used without touching the config file).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Login e-mail for `POST /api/authorize/auth/`.
    #[serde(default)]
    pub email: String,
    /// Login password.
    #[serde(default)]
    pub password: String,
    /// File holding the password; read at load time and on every reload poll (a changed one
    /// drops the session and logs in again).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Renew a login token this long before it expires.
    #[serde(default = "defaults::token_renew_before", with = "de::duration")]
    pub renew_before: Duration,
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

fn redacted(s: &str) -> &'static str {
    if s.is_empty() {
        "<empty>"
    } else {
        "<redacted>"
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

/// Capture routes and the defaults of their settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// The routes the proxy intercepts.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Methods that make a request on a capture path a capture (upper case). Any other method
    /// with a body on a capture path gets 405, never a passthrough: some backends route every
    /// method to their capture handler.
    #[serde(
        default = "defaults::capture_methods",
        deserialize_with = "de::string_list"
    )]
    pub methods: Vec<String>,
    /// Refuse with 400 the spellings that some frameworks fold onto a capture path but that are
    /// not the path itself (`capture.json`, `capture.`, `capture%20`, `%u0065`, `ſ`, `ı`, …).
    #[serde(default = "defaults::yes")]
    pub strict_paths: bool,
    /// Bodies larger than this get 413 before any upload.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
    /// Most frames accepted in `frame_list`.
    #[serde(default = "defaults::max_frames")]
    pub max_frames: usize,
    /// Largest decoded frame in bytes.
    #[serde(default = "defaults::max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// Multipart key of the ZIP part.
    #[serde(default = "defaults::file_key")]
    pub file_key: String,
    /// Analyses started after the upload; `[]` starts none. A comma-separated string also works.
    #[serde(default = "defaults::analyses", deserialize_with = "de::string_list")]
    pub analyses: Vec<String>,
    /// How long to wait for the verdict; `0s` = don't wait (`PROCESSING`).
    #[serde(default = "defaults::wait_for_result", with = "de::duration")]
    pub wait_for_result: Duration,
    /// Also send the best frame as a `photo_selfie` part.
    #[serde(default)]
    pub best_frame: BestFrame,
    /// What the backend receives as body in forward mode.
    #[serde(default)]
    pub forward_body: ForwardBody,
    /// What a forwarded original body does with a best frame the Oz upload leaves out.
    #[serde(default)]
    pub unchecked_images: UncheckedImages,
    /// What happens when Oz fails.
    #[serde(default)]
    pub on_oz_error: OnOzError,
    /// Respond-mode result shape.
    #[serde(default)]
    pub result_mode: ResultMode,
    /// Captures processed at once (parse, decode, zip); more get 503 + `Retry-After`.
    #[serde(default = "defaults::max_concurrent")]
    pub max_concurrent: usize,
    /// Scheduling class of the threads that run transforms (`runtime::pool`).
    #[serde(default)]
    pub transform_priority: TransformPriority,
    /// Bytes of capture bodies held in memory at once, across all captures; beyond it, 503.
    #[serde(default = "defaults::memory_budget_bytes")]
    pub memory_budget_bytes: u64,
    /// The whole capture body must arrive within this time.
    #[serde(default = "defaults::body_timeout", with = "de::duration")]
    pub body_timeout: Duration,
    /// Static entries added to `folder:meta_data`.
    #[serde(default)]
    pub folder_meta_data: BTreeMap<String, String>,
}

/// One capture route, with optional overrides of the capture settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path matched after normalization.
    pub path: String,
    /// `forward` (to the backend, verdict in headers) or `respond` (the proxy answers).
    #[serde(default)]
    pub on_result: OnResult,
    pub result_mode: Option<ResultMode>,
    pub on_oz_error: Option<OnOzError>,
    pub forward_body: Option<ForwardBody>,
    pub unchecked_images: Option<UncheckedImages>,
    pub max_body_bytes: Option<u64>,
    pub max_frames: Option<usize>,
    pub max_frame_bytes: Option<usize>,
    pub file_key: Option<String>,
    #[serde(default, deserialize_with = "de::opt_string_list")]
    pub analyses: Option<Vec<String>>,
    #[serde(default, with = "de::opt_duration")]
    pub wait_for_result: Option<Duration>,
    pub best_frame: Option<BestFrame>,
}

/// Forward to the backend or answer the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnResult {
    #[default]
    Forward,
    Respond,
}

/// Respond-mode result shape, named as the Web SDK names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultMode {
    Safe,
    Status,
    #[default]
    Folder,
}

/// What happens when Oz fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnOzError {
    /// 502/504 to the client; the backend gets nothing.
    #[default]
    Reject,
    /// Forward with `X-Oz-Resolution: ERROR`.
    Forward,
}

/// Body sent to the backend in forward mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardBody {
    /// The request body exactly as the client sent it.
    #[default]
    Original,
    /// A compact JSON summary instead of the frames.
    Summary,
}

/// What a route that forwards the body as it came (`forward_body: original`) does with a
/// non-null `best_frame` / `best_frame_png` that the Oz upload leaves out under the route's
/// `best_frame` (and with both for a document action, which sends no best frame). Backends often
/// keep the best frame as the verified selfie, and Oz never saw this one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UncheckedImages {
    /// 400 `invalid_field` naming the field, before anything is sent to Oz.
    Refuse,
    /// Forward the body with that value replaced by `null`, every other byte as sent. The
    /// default: the Web SDK sends both best frames and Oz gets at most one, so `refuse` would
    /// turn away every capture of the SDK on such a route.
    #[default]
    Strip,
}

/// How the capture transform threads are scheduled against the threads that carry traffic
/// (Linux; elsewhere every choice runs at normal priority). See `runtime::pool`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformPriority {
    /// `SCHED_IDLE`: only CPU time nothing else wants.
    #[default]
    Idle,
    /// `SCHED_BATCH` at nice 19: a small share even on a saturated core.
    Batch,
    /// The process's own priority, like the threads that carry traffic.
    Normal,
}

/// Whether the best frame goes to Oz as a `photo_selfie` part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BestFrame {
    #[default]
    None,
    Jpeg,
    Png,
}

/// The settings of one capture route after overrides are applied.
#[derive(Debug, Clone)]
pub struct CaptureRoute {
    pub path: String,
    pub on_result: OnResult,
    pub result_mode: ResultMode,
    pub on_oz_error: OnOzError,
    pub forward_body: ForwardBody,
    pub unchecked_images: UncheckedImages,
    pub max_body_bytes: u64,
    pub max_frames: usize,
    pub max_frame_bytes: usize,
    pub file_key: String,
    pub analyses: Vec<String>,
    pub wait_for_result: Duration,
    pub best_frame: BestFrame,
}

impl CaptureRoute {
    /// Whether the backend gets the capture body as the client sent it.
    pub fn forwards_original_body(&self) -> bool {
        self.on_result == OnResult::Forward && self.forward_body == ForwardBody::Original
    }
}

impl CaptureConfig {
    /// Each route with the section defaults filled in.
    pub fn effective_routes(&self) -> Vec<CaptureRoute> {
        self.routes
            .iter()
            .map(|r| CaptureRoute {
                path: r.path.clone(),
                on_result: r.on_result,
                result_mode: r.result_mode.unwrap_or(self.result_mode),
                on_oz_error: r.on_oz_error.unwrap_or(self.on_oz_error),
                forward_body: r.forward_body.unwrap_or(self.forward_body),
                unchecked_images: r.unchecked_images.unwrap_or(self.unchecked_images),
                max_body_bytes: r.max_body_bytes.unwrap_or(self.max_body_bytes),
                max_frames: r.max_frames.unwrap_or(self.max_frames),
                max_frame_bytes: r.max_frame_bytes.unwrap_or(self.max_frame_bytes),
                file_key: r.file_key.clone().unwrap_or_else(|| self.file_key.clone()),
                analyses: r.analyses.clone().unwrap_or_else(|| self.analyses.clone()),
                wait_for_result: r.wait_for_result.unwrap_or(self.wait_for_result),
                best_frame: r.best_frame.unwrap_or(self.best_frame),
            })
            .collect()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: defaults::header_read_timeout(),
            max_header_bytes: defaults::max_header_bytes(),
            max_headers: defaults::max_headers(),
            body_idle_timeout: defaults::body_idle_timeout(),
            tunnel_idle_timeout: defaults::tunnel_idle_timeout(),
            max_connections: defaults::max_connections(),
            http2_idle_timeout: defaults::http2_idle_timeout(),
            tunnel_max_lifetime: defaults::tunnel_max_lifetime(),
            upgrade_protocols: defaults::upgrade_protocols(),
            underscores_in_headers: false,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_delay: defaults::drain_delay(),
            drain_deadline: defaults::drain_deadline(),
        }
    }
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        Self {
            x_forwarded_for: XffMode::Append,
            via: String::new(),
            request_id_header: defaults::request_id_header(),
            preserve_header_case: true,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: defaults::log_level(),
        }
    }
}

impl Default for OzAuthConfig {
    fn default() -> Self {
        Self {
            token: String::new(),
            token_file: None,
            email: String::new(),
            password: String::new(),
            password_file: None,
            // As YAML gets it: a derived `Default` renewed tokens 0 s before they expired.
            renew_before: defaults::token_renew_before(),
        }
    }
}

impl Default for OzConfig {
    fn default() -> Self {
        Self {
            url: defaults::oz_url(),
            api: OzApiMode::Folders,
            ca_file: None,
            connect_timeout: defaults::connect_timeout(),
            timeout: defaults::oz_timeout(),
            auth: OzAuthConfig::default(),
        }
    }
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            methods: defaults::capture_methods(),
            strict_paths: true,
            max_body_bytes: defaults::max_body_bytes(),
            max_frames: defaults::max_frames(),
            max_frame_bytes: defaults::max_frame_bytes(),
            file_key: defaults::file_key(),
            analyses: defaults::analyses(),
            wait_for_result: defaults::wait_for_result(),
            best_frame: BestFrame::None,
            forward_body: ForwardBody::Original,
            unchecked_images: UncheckedImages::default(),
            on_oz_error: OnOzError::Reject,
            result_mode: ResultMode::Folder,
            max_concurrent: defaults::max_concurrent(),
            transform_priority: TransformPriority::default(),
            memory_budget_bytes: defaults::memory_budget_bytes(),
            body_timeout: defaults::body_timeout(),
            folder_meta_data: BTreeMap::new(),
        }
    }
}

// === loading ===

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
        let overrides: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let built = config::Config::builder()
            .add_source(config::File::from_str(yaml, config::FileFormat::Yaml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
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

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), Error> {
        let b = &self.backend.url;
        match b.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(Error::invalid(
                    "backend.url",
                    format!("scheme `{other}` is not supported, use http"),
                ))
            }
            None => {
                return Err(Error::invalid(
                    "backend.url",
                    "needs a scheme, e.g. http://",
                ))
            }
        }
        match b.authority() {
            None => return Err(Error::invalid("backend.url", "needs a host and port")),
            // The backend client never sends userinfo, and the URL is logged at startup and
            // printed by `check`: refuse it rather than ignore and print credentials.
            Some(a) if a.as_str().contains('@') => {
                return Err(Error::invalid(
                    "backend.url",
                    "must not carry credentials (`user:password@`); they would not be sent and would be logged",
                ))
            }
            Some(_) => {}
        }
        if !matches!(b.path(), "" | "/") || b.query().is_some() {
            return Err(Error::invalid(
                "backend.url",
                "must not carry a path or query; requests keep their own path",
            ));
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return Err(Error::invalid(
                "admin_listen",
                "must differ from `listen`: the admin endpoints are never on the traffic port",
            ));
        }
        // hyper bounds an HTTP/1 request head by its read buffer, which cannot be smaller than
        // 8 KiB: a lower limit would silently not apply.
        if self.server.max_header_bytes < 8192 {
            return Err(Error::invalid(
                "server.max_header_bytes",
                "must be at least 8192 (the smallest head limit the HTTP/1 server can enforce)",
            ));
        }
        let h2_idle = self.server.http2_idle_timeout;
        if !h2_idle.is_zero() && h2_idle <= self.backend.timeout {
            return Err(Error::invalid(
                "server.http2_idle_timeout",
                "must be 0s or longer than backend.timeout: no byte moves while the backend thinks",
            ));
        }
        if self.server.max_connections == 0 {
            return Err(Error::invalid(
                "server.max_connections",
                "must be at least 1",
            ));
        }
        if self.server.max_headers == 0 {
            return Err(Error::invalid("server.max_headers", "must be at least 1"));
        }
        for (i, p) in self.server.upgrade_protocols.iter().enumerate() {
            let key = format!("server.upgrade_protocols[{i}]");
            if p.is_empty() || http::HeaderValue::from_str(p).is_err() || p.contains([',', ' ']) {
                return Err(Error::invalid(
                    key,
                    "must be one protocol token, e.g. `websocket`",
                ));
            }
            let name = p.split('/').next().unwrap_or_default();
            if name.eq_ignore_ascii_case("h2c") || name.eq_ignore_ascii_case("h2") {
                return Err(Error::invalid(
                    key,
                    "HTTP/2 is never tunnelled: requests inside the tunnel would bypass every check (RFC 9113 §3.1)",
                ));
            }
        }
        if self.backend.pool_idle_timeout.is_zero() {
            return Err(Error::invalid(
                "backend.pool_idle_timeout",
                "must be above 0s",
            ));
        }
        if !self.forwarding.request_id_header.is_empty()
            && http::HeaderName::from_bytes(self.forwarding.request_id_header.as_bytes()).is_err()
        {
            return Err(Error::invalid(
                "forwarding.request_id_header",
                "is not a valid header name",
            ));
        }
        if !self.forwarding.via.is_empty()
            && http::HeaderValue::from_str(&self.forwarding.via).is_err()
        {
            return Err(Error::invalid(
                "forwarding.via",
                "is not a valid header value",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(Error::invalid(
                "log.level",
                "is not a valid filter (e.g. `info`)",
            ));
        }
        self.validate_oz()?;
        self.validate_capture()
    }

    fn validate_oz(&self) -> Result<(), Error> {
        let oz = &self.oz;
        match oz.url.scheme_str() {
            Some("https") | Some("http") => {}
            _ => return Err(Error::invalid("oz.url", "needs an http:// or https:// URL")),
        }
        if oz.url.authority().is_none() {
            return Err(Error::invalid("oz.url", "needs a host"));
        }
        if oz.timeout.is_zero() {
            return Err(Error::invalid("oz.timeout", "must be above 0s"));
        }
        let a = &oz.auth;
        if a.token.is_empty()
            && !self.capture.routes.is_empty()
            && (a.email.is_empty() || a.password.is_empty())
        {
            return Err(Error::invalid(
                "oz.auth",
                "capture routes need Oz credentials: set oz.auth.token (or token_file), or both oz.auth.email and oz.auth.password",
            ));
        }
        if !a.token.is_empty() && (!a.email.is_empty() || !a.password.is_empty()) {
            return Err(Error::invalid(
                "oz.auth",
                "set either a token or email and password, not both",
            ));
        }
        if let Some(ca) = &oz.ca_file {
            if !ca.is_file() {
                return Err(Error::invalid(
                    "oz.ca_file",
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        Ok(())
    }

    fn validate_capture(&self) -> Result<(), Error> {
        let c = &self.capture;
        if c.max_concurrent == 0 {
            return Err(Error::invalid(
                "capture.max_concurrent",
                "must be at least 1",
            ));
        }
        if c.methods.is_empty() {
            return Err(Error::invalid(
                "capture.methods",
                "must name at least one method",
            ));
        }
        for (i, m) in c.methods.iter().enumerate() {
            let token = !m.is_empty()
                && m.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
            if !token || m == "CONNECT" {
                return Err(Error::invalid(
                    format!("capture.methods[{i}]"),
                    "must be an upper-case method such as `POST` (methods are case-sensitive)",
                ));
            }
        }
        for key in c.folder_meta_data.keys() {
            if crate::capture::multipart::RESERVED_FOLDER_KEYS.contains(&key.as_str()) {
                return Err(Error::invalid(
                    format!("capture.folder_meta_data.{key}"),
                    "is set by the proxy itself and cannot be configured",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.capture.effective_routes().iter().enumerate() {
            let key = |field: &str| format!("capture.routes[{i}].{field}");
            if !r.path.starts_with('/') {
                return Err(Error::invalid(key("path"), "must start with `/`"));
            }
            let normalized = crate::proxy::path::normalize(r.path.as_bytes());
            if !seen.insert(normalized.clone()) {
                return Err(Error::invalid(
                    key("path"),
                    format!("duplicates another route (both normalize to `{normalized}`)"),
                ));
            }
            if r.file_key.is_empty()
                || r.file_key == "payload"
                || r.file_key == crate::capture::multipart::BEST_FRAME_KEY
                || !r
                    .file_key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(Error::invalid(
                    key("file_key"),
                    "must be letters, digits, `_` or `-`, and not `payload` or `photo_selfie1` (used by the proxy)",
                ));
            }
            if r.max_body_bytes == 0 {
                return Err(Error::invalid(key("max_body_bytes"), "must be above 0"));
            }
            // A capture reserves twice its body (body + ZIP/multipart, see capture::limit).
            if r.max_body_bytes.saturating_mul(2) > c.memory_budget_bytes {
                return Err(Error::invalid(
                    key("max_body_bytes"),
                    "twice this must fit in capture.memory_budget_bytes, or such a capture could never run",
                ));
            }
            if r.max_frames == 0 {
                return Err(Error::invalid(key("max_frames"), "must be at least 1"));
            }
            // More could never run: an Oz answer listing more is refused (oz::MAX_ANALYSES).
            if r.analyses.len() > crate::oz::MAX_ANALYSES {
                return Err(Error::invalid(
                    key("analyses"),
                    format!("at most {} analyses per capture", crate::oz::MAX_ANALYSES),
                ));
            }
            for (j, a) in r.analyses.iter().enumerate() {
                if a.is_empty() || !a.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    return Err(Error::invalid(
                        format!("capture.routes[{i}].analyses[{j}]"),
                        "analysis types are lowercase words such as `quality`",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn read_secret(path: &Path, key: &str) -> Result<String, Error> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid(key, format!("cannot read {}: {}", path.display(), e.kind()))
    })?;
    // Mounted Secrets often end with a newline that is not part of the secret.
    Ok(raw.trim_end_matches(['\r', '\n']).to_owned())
}

/// Removes quoted values from a config-crate error message when it may concern a secret.
///
/// That is when the key it names is a secret key, lies inside one, or contains one: `oz.auth`
/// (or `oz`) written as a plain string instead of a mapping is most likely the token itself, and
/// the message would quote it. A message that names no key is scrubbed too, to be safe.
fn scrub(message: &str) -> String {
    let key = message
        .rsplit_once("for key `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key);
    let sensitive = match key {
        None => true,
        Some(key) => SECRET_KEYS.iter().any(|secret| {
            *secret == key
                || secret
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('.'))
                || key
                    .strip_prefix(secret)
                    .is_some_and(|rest| rest.starts_with('.'))
        }),
    };
    if !sensitive {
        return message.to_owned();
    }
    // config's messages quote the offending value (`invalid type: string "…"`) as Rust's `{:?}`
    // writes it, with `\"` and `\\` inside; drop every quoted run, escapes and all (a secret with
    // a `"` in it once ended the run early and printed its rest).
    let mut out = String::with_capacity(message.len());
    let mut in_quote = false;
    let mut escaped = false;
    for ch in message.chars() {
        match ch {
            _ if escaped => escaped = false,
            '\\' if in_quote => escaped = true,
            '"' if !in_quote => {
                in_quote = true;
                out.push_str("\"<redacted>");
            }
            '"' => {
                in_quote = false;
                out.push('"');
            }
            _ if in_quote => {}
            _ => out.push(ch),
        }
    }
    out
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 8080))
    }
    pub fn admin_listen() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 9901))
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn backend_timeout() -> Duration {
        Duration::from_secs(60)
    }
    // Below Node's 5 s default keep-alive, as linkerd does (3 s).
    pub fn pool_idle_timeout() -> Duration {
        Duration::from_secs(3)
    }
    pub fn pool_max_idle() -> usize {
        256
    }
    pub fn header_read_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_header_bytes() -> usize {
        64 * 1024
    }
    pub fn max_headers() -> usize {
        100
    }
    pub fn body_idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn tunnel_idle_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn http2_idle_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub fn max_connections() -> usize {
        2048
    }
    pub fn tunnel_max_lifetime() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn upgrade_protocols() -> Vec<String> {
        vec!["websocket".into()]
    }
    pub fn capture_methods() -> Vec<String> {
        vec!["POST".into()]
    }
    pub fn drain_delay() -> Duration {
        Duration::from_secs(5)
    }
    pub fn drain_deadline() -> Duration {
        Duration::from_secs(20)
    }
    pub fn reload_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn yes() -> bool {
        true
    }
    pub fn request_id_header() -> String {
        "x-request-id".to_owned()
    }
    pub fn log_level() -> String {
        "info".to_owned()
    }
    pub fn oz_url() -> http::Uri {
        http::Uri::from_static("https://oz.example.com")
    }
    pub fn oz_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn token_renew_before() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_body_bytes() -> u64 {
        32 * 1024 * 1024
    }
    pub fn max_frames() -> usize {
        300
    }
    pub fn max_frame_bytes() -> usize {
        4 * 1024 * 1024
    }
    pub fn file_key() -> String {
        "video1".to_owned()
    }
    pub fn analyses() -> Vec<String> {
        vec!["quality".to_owned()]
    }
    pub fn wait_for_result() -> Duration {
        Duration::from_secs(30)
    }
    pub fn body_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_concurrent() -> usize {
        4
    }
    pub fn memory_budget_bytes() -> u64 {
        512 * 1024 * 1024
    }
}

/// Deserializers for the shapes serde has no default for.
mod de {
    use super::*;

    pub fn uri<'de, D: Deserializer<'de>>(d: D) -> Result<http::Uri, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("invalid URL: {e}")))
    }

    /// Either a YAML sequence or a comma-separated string (how a list arrives from the environment).
    pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum List {
            Seq(Vec<String>),
            Csv(String),
        }
        Ok(match List::deserialize(d)? {
            List::Seq(v) => v,
            List::Csv(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    pub fn opt_string_list<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<String>>, D::Error> {
        string_list(d).map(Some)
    }

    pub mod duration {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            let s = String::deserialize(d)?;
            humantime::parse_duration(&s).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration `{s}` ({e}); write e.g. \"30s\" or \"500ms\""
                ))
            })
        }
    }

    pub mod opt_duration {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::duration::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "backend:\n  url: \"http://127.0.0.1:3000\"\n";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.capture.file_key, "video1");
        assert_eq!(c.backend.pool_idle_timeout, Duration::from_secs(3));
    }

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
    fn secret_values_never_appear_in_errors() {
        let e = Config::from_yaml(
            &format!("{MINIMAL}oz:\n  auth:\n    password: [\"hunter2\"]\n"),
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("oz.auth.password"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_secret_given_in_place_of_its_section_is_not_quoted() {
        for (yaml, vars) in [
            (format!("{MINIMAL}oz:\n  auth: \"tok-hunter2\"\n"), vec![]),
            (
                MINIMAL.to_owned(),
                vec![("OZ_PROXY__OZ__AUTH", "tok-hunter2")],
            ),
            (MINIMAL.to_owned(), vec![("OZ_PROXY__OZ", "tok-hunter2")]),
        ] {
            let e = Config::from_yaml(&yaml, &env(&vars))
                .unwrap_err()
                .to_string();
            assert!(e.contains("oz"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    // Found by fuzz/fuzz_targets/config_loader.rs. Messages quote a value with `{:?}`, which
    // writes a `"` inside it as `\"`; the scrubber took that for the closing quote and printed
    // the rest of the secret.
    #[test]
    fn a_secret_with_a_quote_never_appears_in_errors() {
        let mut leaks = Vec::new();
        for (yaml, vars) in [
            (
                format!("{MINIMAL}oz:\n  auth: \"tok\\\"hunter2\"\n"),
                vec![],
            ),
            (
                format!("{MINIMAL}oz:\n  auth:\n    token: [\"\\\"hunter2\"]\n"),
                vec![],
            ),
            (
                MINIMAL.to_owned(),
                vec![("OZ_PROXY__OZ__AUTH", "tok\"hunter2")],
            ),
            (MINIMAL.to_owned(), vec![("OZ_PROXY__OZ", "\"hunter2")]),
            (MINIMAL.to_owned(), vec![("OZ_PROXY__OZ", "a\\\"hunter2")]),
        ] {
            let e = Config::from_yaml(&yaml, &env(&vars))
                .unwrap_err()
                .to_string();
            if e.contains("hunter2") {
                leaks.push(e);
            }
        }
        assert!(leaks.is_empty(), "{leaks:#?}");
    }

    #[test]
    fn quoted_values_stay_in_messages_about_other_keys() {
        let e = Config::from_yaml(
            &format!("{MINIMAL}forwarding:\n  x_forwarded_for: \"sometimes\"\n"),
            &env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sometimes"), "{e}");
    }

    #[test]
    fn route_overrides_apply() {
        let yaml = format!(
            "{MINIMAL}oz:\n  auth:\n    token: t\ncapture:\n  max_body_bytes: 100\n  routes:\n    - path: /a\n    - path: /b\n      on_result: respond\n      max_body_bytes: 50\n      analyses: []\n"
        );
        let c = Config::from_yaml(&yaml, &env(&[])).unwrap();
        let r = c.capture.effective_routes();
        assert_eq!(r[0].max_body_bytes, 100);
        assert_eq!(r[1].max_body_bytes, 50);
        assert_eq!(r[1].on_result, OnResult::Respond);
        assert!(r[1].analyses.is_empty());
    }

    #[test]
    fn unchecked_images_are_stripped_unless_a_route_says_refuse() {
        let yaml = format!(
            "{MINIMAL}oz:\n  auth:\n    token: t\ncapture:\n  routes:\n    - path: /a\n    - path: /b\n      unchecked_images: refuse\n"
        );
        let c = Config::from_yaml(&yaml, &env(&[])).unwrap();
        let r = c.capture.effective_routes();
        assert_eq!(r[0].unchecked_images, UncheckedImages::Strip);
        assert_eq!(r[1].unchecked_images, UncheckedImages::Refuse);
        let yaml = yaml.replace("capture:\n", "capture:\n  unchecked_images: refuse\n");
        let c = Config::from_yaml(&yaml, &env(&[])).unwrap();
        assert_eq!(
            c.capture.effective_routes()[0].unchecked_images,
            UncheckedImages::Refuse
        );
        let bad = yaml.replace(
            "unchecked_images: refuse\n  routes",
            "unchecked_images: keep\n  routes",
        );
        assert!(Config::from_yaml(&bad, &env(&[])).is_err());
    }

    #[test]
    fn duplicate_routes_after_normalization_are_refused() {
        let yaml = format!(
            "{MINIMAL}oz:\n  auth:\n    token: t\ncapture:\n  routes:\n    - path: /a/b\n    - path: //a/b/\n"
        );
        let e = Config::from_yaml(&yaml, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("capture.routes[1].path"), "{e}");
    }

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

    #[test]
    fn more_analyses_than_a_capture_may_use_are_refused() {
        let list = vec!["quality"; crate::oz::MAX_ANALYSES + 1].join(",");
        let e = Config::from_yaml(
            &format!("{MINIMAL}oz:\n  auth:\n    token: t\ncapture:\n  routes:\n    - path: /a\n"),
            &env(&[("OZ_PROXY__CAPTURE__ANALYSES", &list)]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("capture.routes[0].analyses"), "{e}");
    }

    #[test]
    fn built_defaults_are_the_yaml_defaults() {
        let yaml = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(
            OzAuthConfig::default().renew_before,
            yaml.oz.auth.renew_before
        );
        assert_eq!(OzConfig::default(), yaml.oz);
        assert_eq!(ServerConfig::default(), yaml.server);
        assert_eq!(ForwardingConfig::default(), yaml.forwarding);
    }

    #[test]
    fn h2c_and_h2_are_never_tunnelled() {
        for (list, ok) in [
            ("[websocket]", true),
            ("[\"websocket\", \"foo/2\"]", true),
            ("[h2c]", false),
            ("[\"H2C\"]", false),
            ("[\"h2/1\"]", false),
            ("[\"a b\"]", false),
        ] {
            let r = Config::from_yaml(
                &format!("{MINIMAL}server:\n  upgrade_protocols: {list}\n"),
                &env(&[]),
            );
            assert_eq!(r.is_ok(), ok, "{list}: {:?}", r.err());
            if let Err(e) = r {
                assert!(e.to_string().contains("server.upgrade_protocols[0]"), "{e}");
            }
        }
        let c = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(c.server.upgrade_protocols, ["websocket"]);
        assert!(!c.server.underscores_in_headers);
        assert_eq!(c.server.tunnel_max_lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn capture_methods_are_upper_case_tokens() {
        let c = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(c.capture.methods, ["POST"]);
        assert!(c.capture.strict_paths);
        for (list, ok) in [
            ("[POST, PUT]", true),
            ("[post]", false),
            ("[CONNECT]", false),
            ("[]", false),
        ] {
            let r = Config::from_yaml(
                &format!("{MINIMAL}capture:\n  methods: {list}\n"),
                &env(&[]),
            );
            assert_eq!(r.is_ok(), ok, "{list}: {:?}", r.err());
            if let Err(e) = r {
                assert!(e.to_string().contains("capture.methods"), "{e}");
            }
        }
    }

    #[test]
    fn capture_routes_need_credentials() {
        let yaml = format!("{MINIMAL}capture:\n  routes:\n    - path: /a\n");
        let e = Config::from_yaml(&yaml, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("oz.auth"), "{e}");
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
