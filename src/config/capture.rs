//! The `capture` section: the capture routes, the section-wide settings a route inherits, their
//! defaults, and the names the proxy reserves for itself in what it sends to Oz.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de;

/// Multipart key of the optional best-frame part (Oz's own examples number keys `photo1…`);
/// no route's `file_key` may take it.
pub const BEST_FRAME_KEY: &str = "photo_selfie1";

/// `folder:meta_data` keys the proxy sets itself; `capture.folder_meta_data` may not name them.
pub const RESERVED_FOLDER_KEYS: [&str; 2] = ["request_id", "virtual_camera"];

/// Most analyses one capture takes from an Oz answer (a folder answer or the answer that starts
/// them). A capture starts one per configured type, a handful (`capture.analyses` is held to the
/// same limit); an answer listing more is no verdict the proxy can use, and polling each would
/// let Oz decide how many calls one capture makes (20,000 listed once made 13,208 calls in
/// 3 s). Such an answer is `oz::Error::TooManyAnalyses`.
pub const MAX_ANALYSES: usize = 32;

/// Most frames a route may take (`max_frames`): the replay guard claims one digest per frame in
/// one atomic step (`state::Store::claim`), which this bounds.
pub const MAX_FRAMES: usize = 1000;

/// Capture routes and the defaults of their settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// The routes the proxy intercepts.
    pub routes: Vec<RouteConfig>,
    /// Methods that make a request on a capture path a capture (upper case). Any other method
    /// with a body on a capture path gets 405, never a passthrough: some backends route every
    /// method to their capture handler.
    #[serde(deserialize_with = "de::string_list")]
    pub methods: Vec<String>,
    /// Refuse with 400 the spellings that some frameworks fold onto a capture path but that are
    /// not the path itself (`capture.json`, `capture.`, `capture%20`, `%u0065`, `ſ`, `ı`, …).
    pub strict_paths: bool,
    /// Bodies larger than this get 413 before any upload.
    pub max_body_bytes: u64,
    /// Most frames accepted in `frame_list`.
    pub max_frames: usize,
    /// Largest decoded frame in bytes.
    pub max_frame_bytes: usize,
    /// Multipart key of the ZIP part.
    pub file_key: String,
    /// Analyses started after the upload; `[]` starts none. A comma-separated string also works.
    #[serde(deserialize_with = "de::string_list")]
    pub analyses: Vec<String>,
    /// How long to wait for the verdict; `0s` = don't wait (`PROCESSING`).
    #[serde(with = "de::duration")]
    pub wait_for_result: Duration,
    /// Also send the best frame as a `photo_selfie` part.
    pub best_frame: BestFrame,
    /// What the backend receives as body in forward mode.
    pub forward_body: ForwardBody,
    /// What a forwarded original body does with a best frame the Oz upload leaves out.
    pub unchecked_images: UncheckedImages,
    /// What happens when Oz fails.
    pub on_oz_error: OnOzError,
    /// Respond-mode result shape.
    pub result_mode: ResultMode,
    /// Captures processed at once (parse, decode, zip); more get 503 + `Retry-After`.
    pub max_concurrent: usize,
    /// Scheduling class of the threads that run transforms (`runtime::pool`).
    pub transform_priority: TransformPriority,
    /// Bytes of capture bodies held in memory at once, across all captures; beyond it, 503.
    pub memory_budget_bytes: u64,
    /// The whole capture body must arrive within this time.
    #[serde(with = "de::duration")]
    pub body_timeout: Duration,
    /// Static entries added to `folder:meta_data`.
    pub folder_meta_data: BTreeMap<String, String>,
    /// How long a capture still `PROCESSING` after `wait_for_result` is followed in the
    /// background for its late verdict (routes with `late_verdict_path`). Oz expires an analysis
    /// after 15 minutes.
    #[serde(with = "de::duration")]
    pub follow_up_for: Duration,
    /// Most captures followed at once; beyond it a capture is logged, counted and left to
    /// `GET /verdicts/{folder_id}`.
    pub max_follow_ups: usize,
    /// The replay guard: a capture whose media was already accepted by Oz is refused (409).
    pub replay: ReplayConfig,
    /// Rate limits of captures; unset: none.
    pub rate_limit: RateLimitConfig,
    /// Add a W3C `Server-Timing` header (phase durations, nothing of the capture) to capture
    /// answers; off by default: how long Oz took is the deployment's business, not every
    /// client's.
    pub server_timing: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            methods: vec!["POST".into()],
            strict_paths: true,
            max_body_bytes: 32 * 1024 * 1024,
            max_frames: 300,
            max_frame_bytes: 4 * 1024 * 1024,
            file_key: "video1".to_owned(),
            analyses: vec!["quality".to_owned()],
            wait_for_result: Duration::from_secs(30),
            best_frame: BestFrame::default(),
            forward_body: ForwardBody::default(),
            unchecked_images: UncheckedImages::default(),
            on_oz_error: OnOzError::default(),
            result_mode: ResultMode::default(),
            max_concurrent: 4,
            transform_priority: TransformPriority::default(),
            memory_budget_bytes: 512 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            folder_meta_data: BTreeMap::new(),
            follow_up_for: Duration::from_secs(15 * 60),
            max_follow_ups: 1000,
            replay: ReplayConfig::default(),
            rate_limit: RateLimitConfig::default(),
            server_timing: false,
        }
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
                late_verdict_path: r.late_verdict_path.clone(),
                replay: r.replay.clone().unwrap_or_default().over(&self.replay),
                rate_limit: RateLimits {
                    per_client: scoped(
                        r.rate_limit.as_ref().and_then(|l| l.per_client.clone()),
                        &self.rate_limit.per_client,
                    ),
                    global: scoped(
                        r.rate_limit.as_ref().and_then(|l| l.global.clone()),
                        &self.rate_limit.global,
                    ),
                },
                server_timing: r.server_timing.unwrap_or(self.server_timing),
            })
            .collect()
    }
}

/// One capture route, with optional overrides of the capture settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Where the backend gets the late verdict of a capture still `PROCESSING` when
    /// `wait_for_result` ran out (`POST`, JSON); unset: no late delivery.
    pub late_verdict_path: Option<String>,
    /// Overrides of `capture.replay` (`enabled`, `window`).
    pub replay: Option<ReplayOverride>,
    /// Overrides of `capture.rate_limit`, limit by limit.
    pub rate_limit: Option<RateLimitConfig>,
    pub server_timing: Option<bool>,
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
    pub late_verdict_path: Option<String>,
    /// The replay guard of the route: `None` when it is off.
    pub replay: Option<Duration>,
    pub rate_limit: RateLimits,
    /// Whether the route's answers carry `Server-Timing`.
    pub server_timing: bool,
}

impl CaptureRoute {
    /// Whether the backend gets the capture body as the client sent it.
    pub fn forwards_original_body(&self) -> bool {
        self.on_result == OnResult::Forward && self.forward_body == ForwardBody::Original
    }
}

/// `capture.replay`: remembering the digest of each capture's media that Oz accepted.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// On by default: a capture is the credential of a liveness check.
    pub enabled: bool,
    /// How long an accepted capture's digest is remembered.
    #[serde(with = "de::duration")]
    pub window: Duration,
    /// Most digests the in-memory store holds (`state.store: memory`); the oldest go first.
    pub max_entries: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(24 * 60 * 60),
            max_entries: 100_000,
        }
    }
}

/// A route's overrides of `capture.replay`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayOverride {
    pub enabled: Option<bool>,
    #[serde(default, with = "de::opt_duration")]
    pub window: Option<Duration>,
}

impl ReplayOverride {
    /// The route's window over the section's; `None` when the guard is off.
    fn over(self, section: &ReplayConfig) -> Option<Duration> {
        self.enabled
            .unwrap_or(section.enabled)
            .then(|| self.window.unwrap_or(section.window))
    }
}

/// `capture.rate_limit` (and a route's overrides of it): each limit unset means none.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Captures one client may send per `per`.
    pub per_client: Option<ClientLimit>,
    /// Captures the whole deployment takes per `per`.
    pub global: Option<Limit>,
}

/// A number of captures per period.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub limit: u32,
    #[serde(with = "de::duration")]
    pub per: Duration,
}

/// A limit per client, and what tells clients apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientLimit {
    pub limit: u32,
    #[serde(with = "de::duration")]
    pub per: Duration,
    /// `client_ip` (see `forwarding.trusted_hops`), `header:NAME` or `cookie:NAME`.
    #[serde(default = "default_client_key")]
    pub key: String,
}

fn default_client_key() -> String {
    "client_ip".to_owned()
}

impl ClientLimit {
    /// The limit without its key.
    pub fn limit(&self) -> Limit {
        Limit {
            limit: self.limit,
            per: self.per,
        }
    }

    /// What tells clients apart (`key` as validated).
    pub fn client_key(&self) -> ClientKey {
        match self.key.split_once(':') {
            Some(("header", name)) => ClientKey::Header(name.to_ascii_lowercase()),
            Some(("cookie", name)) => ClientKey::Cookie(name.to_owned()),
            _ => ClientKey::Ip,
        }
    }
}

/// What tells one client from another for `per_client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    /// The client's address (`forwarding.trusted_hops`).
    Ip,
    /// The value of a request header (lower-case name).
    Header(String),
    /// The value of a cookie.
    Cookie(String),
}

/// Whose budget a route's limit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Set in `capture.rate_limit`: one budget shared by every route without its own.
    Section,
    /// Set on the route itself: the route's own budget.
    Route,
}

/// The route's own limit if it has one, else the section's; with whose budget it is.
fn scoped<L: Clone>(own: Option<L>, section: &Option<L>) -> Option<(L, Scope)> {
    match own {
        Some(own) => Some((own, Scope::Route)),
        None => section.clone().map(|shared| (shared, Scope::Section)),
    }
}

/// A route's rate limits after overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimits {
    pub per_client: Option<(ClientLimit, Scope)>,
    pub global: Option<(Limit, Scope)>,
}

/// Forward to the backend or answer the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnResult {
    #[default]
    Forward,
    Respond,
}

/// Respond-mode result shape, named as the Web SDK names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultMode {
    Safe,
    Status,
    #[default]
    Folder,
}

/// What happens when Oz fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnOzError {
    /// 502/504 to the client; the backend gets nothing.
    #[default]
    Reject,
    /// Forward with `X-Oz-Resolution: ERROR`.
    Forward,
}

/// Body sent to the backend in forward mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BestFrame {
    #[default]
    None,
    Jpeg,
    Png,
}

#[cfg(test)]
mod tests {
    use super::{OnResult, UncheckedImages};
    use crate::config::test_input::{env, MINIMAL};
    use crate::config::Config;

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
    fn server_timing_is_off_unless_the_section_or_a_route_turns_it_on() {
        let yaml = format!(
            "{MINIMAL}oz:\n  auth:\n    token: t\ncapture:\n  routes:\n    - path: /a\n    - path: /b\n      server_timing: true\n"
        );
        let c = Config::from_yaml(&yaml, &env(&[])).unwrap();
        let r = c.capture.effective_routes();
        assert!(!r[0].server_timing);
        assert!(r[1].server_timing);
        let yaml = yaml
            .replace("capture:\n", "capture:\n  server_timing: true\n")
            .replace(
                "      server_timing: true\n",
                "      server_timing: false\n",
            );
        let c = Config::from_yaml(&yaml, &env(&[])).unwrap();
        let r = c.capture.effective_routes();
        assert!(r[0].server_timing);
        assert!(!r[1].server_timing);
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
}
