//! Config reload: the mounted file is polled, and a valid new config swaps the live settings.
//!
//! Kubernetes updates a ConfigMap volume by swapping the `..data` symlink, which kills inotify
//! watches (kubernetes#112677), so the file is re-read every `reload.interval` and compared byte
//! for byte. A changed file is loaded with the same loader and environment as at start; if it is
//! valid, the routes, capture limits and Oz settings are swapped in one atomic store, so a request
//! sees either the old or the new set, never a mix, and no connection is touched. An invalid file
//! is refused, logged and counted, and the old config stays. Sections that need new sockets or a
//! new backend pool (listeners, TLS, backend, server limits) are only applied by a restart; a
//! change there is logged as such.
//!
//! # Secret files
//!
//! The same poll reads `oz.auth.token_file` and `oz.auth.password_file` (those the config in
//! force names) again and compares them with the secrets in use, so a rotated Secret takes
//! effect without touching the config file. The text of the config in force is loaded again,
//! which reads the new secret, and goes through the same checks as a changed file; the Oz client
//! is then rebuilt, since `CaptureService::new` keeps the old one only when the whole `oz`
//! section, secrets included, is unchanged. That replaces a static token and drops a login
//! session made with the old password. A secret that makes the config invalid (an empty file, a
//! file gone) is refused, logged and counted once, until the file changes again. Secret values
//! are compared, never logged.
//!
//! # A reload never removes or weakens a capture route
//!
//! A file rewritten in place (`cat > file`, `kubectl cp`, a slow writer) can be read half
//! written, and a cut that falls before `capture:` or inside it is often still a valid config:
//! one with fewer routes, or with settings fallen back to their defaults. No amount of waiting
//! for the file to settle tells such a cut from a deliberate removal, so a reload is only
//! allowed to add capture routes or make them stricter. A new config that removes a route or
//! weakens one (see [`weakenings`]) is refused like an invalid one: logged at error level with
//! what it would have weakened, counted in `oz_proxy_config_reloads_total{result="rejected"}`,
//! and the old config stays. Such a change takes effect on the next restart, which reads the
//! file whole.
//!
//! Routes are matched by normalized path (`proxy::path::normalize`, as `RouteTable` does), and
//! compared by their effective settings (route overrides over the section defaults). What counts
//! as weaker is what lets a capture reach the backend unchecked, or with a less meaningful
//! verdict, or tells a client more about its verdict:
//!
//! | setting | weaker | why |
//! |---|---|---|
//! | the route | gone | the path becomes passthrough: captures reach the backend with no Oz call and no `X-Oz-*` |
//! | `on_result` | any change | forward → respond hands the verdict to the client (an oracle for whoever tries attacks); respond → forward sends the backend captures it never saw before (and `forward` is the default a cut falls back to) |
//! | `on_oz_error` | `reject` → `forward` | a capture Oz failed on reaches the backend (as `ERROR`) |
//! | `analyses` | an entry lost | the verdict covers fewer checks |
//! | `wait_for_result` | shorter | more captures go on as `PROCESSING`, i.e. unchecked so far |
//! | `best_frame` | `jpeg`/`png` → `none` | Oz gets no `photo_selfie`, the analyses that use it see less |
//! | `result_mode` (respond routes) | more detail (`safe` < `status` < `folder`) | the client learns more about its verdict |
//! | `capture.strict_paths` | `true` → `false`, while routes exist | spellings that some backends fold onto a capture path pass through unchecked |
//! | `oz.url`, `oz.api` | any change, while routes exist | where verdicts come from is not something to compare; a cut before `oz:` turns the URL into the built-in placeholder |
//! | `verdict.keys` | emptied, while routes exist | backends that verify tokens would get none |
//! | `verdict.bind` | set → empty, while routes exist | tokens would no longer be bound to a session |
//! | `replay` (per route) | on → off, or a shorter `window` | a capture already checked could be checked again, for someone else |
//! | `rate_limit` (per route) | a limit set → unset | a cut file would lift the limit; raising a limit is fine |
//! | `state.store`, `state.redis.key_prefix` | any change, while routes exist | the guard's memory would start empty: every capture of the window could be replayed |
//! | `state.on_error` | `fail_closed` → `fail_open`, while routes exist | a Redis outage would let captures through unguarded |
//! | `capture.replay.max_entries` | any change, with `state.store: memory` | the embedded store is rebuilt, and empty |
//!
//! New verdict keys (a rotation: the new key first, the old one after it) apply on reload, and
//! the admin listener's JWKS follows.
//!
//! Not weaker, so reloadable either way: `forward_body` (what the backend gets besides the
//! verdict), `file_key`, the size limits `max_body_bytes`, `max_frames`, `max_frame_bytes`
//! (capacity, not the verdict: a larger limit lets bigger captures through the same check),
//! and the section-wide `max_concurrent`, `memory_budget_bytes`, `body_timeout`,
//! `transform_priority` and `folder_meta_data`. Oz credentials may change (validation refuses
//! capture routes without any), and so may the other `oz` settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio_util::sync::CancellationToken;

use crate::capture::handler::CaptureService;
use crate::config::{
    BestFrame, CaptureRoute, Config, OnOzError, OnResult, OnStateError, ResultMode, SecretFiles,
    StoreKind,
};
use crate::metrics::Metrics;
use crate::proxy::{Live, RouteTable};
use crate::trace::Tracing;
use crate::verdict_token::Signer;

/// Where the config came from, so it can be read again the same way.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub env: BTreeMap<String, String>,
}

/// A source with the bytes its file held when the proxy started: what the poll compares
/// against. Taken by `server::start` before it returns, not by the poll task when it first
/// runs: otherwise a change made right after start would become the baseline and never apply.
// No `Debug`: the baseline may hold a secret written in the file.
pub struct Watched {
    pub source: ConfigSource,
    pub baseline: Option<Vec<u8>>,
}

impl ConfigSource {
    /// Reads the file's current bytes as the baseline.
    pub fn watched(self) -> Watched {
        let baseline = std::fs::read(&self.path).ok();
        Watched {
            source: self,
            baseline,
        }
    }
}

/// What a config is compiled into before anything listens: its capture routes and its verdict
/// signer.
pub struct Compiled {
    pub routes: RouteTable,
    /// `None` when `verdict.keys` is empty.
    pub signer: Option<Arc<Signer>>,
}

/// Compiles `config`: the one place where routes that normalize to the same path are refused
/// and the verdict keys are read and checked. The proxy's start, every reload and `check` go
/// through it.
pub fn compile(config: &Config) -> Result<Compiled, crate::config::Error> {
    crate::state::Store::check(&config.state)
        .map_err(|reason| crate::config::Error::invalid("state.redis", reason))?;
    Ok(Compiled {
        routes: RouteTable::new(config.capture.effective_routes(), &config.capture)?,
        signer: Signer::from_config(&config.verdict)?.map(Arc::new),
    })
}

/// Builds the swappable part of the proxy from `config` and what it compiled into (see
/// [`compile`]).
pub fn build_live(
    config: &Config,
    compiled: Compiled,
    metrics: &Metrics,
    tracing: &Tracing,
    previous: Option<&Live>,
) -> anyhow::Result<Live> {
    let Compiled { routes, signer } = compiled;
    if routes.is_empty() {
        return Ok(Live { captures: None });
    }
    let service = CaptureService::new(
        config,
        signer,
        metrics.clone(),
        tracing,
        previous
            .and_then(|p| p.captures.as_ref())
            .map(|c| &**c.service()),
    )?;
    Ok(Live {
        captures: Some(routes.served_by(Arc::new(service))),
    })
}

/// Polls `source`, and the Oz secret files the config in force names, until `stop` is
/// cancelled.
pub async fn watch(
    watched: Watched,
    mut current: Config,
    live: Arc<ArcSwap<Live>>,
    published: Arc<ArcSwapOption<Signer>>,
    metrics: Metrics,
    tracing: Tracing,
    stop: CancellationToken,
) {
    let interval = current.reload.interval;
    if interval.is_zero() {
        return;
    }
    let Watched {
        source,
        baseline: mut last,
    } = watched;
    // The text `current` was loaded from. When only a secret file changed it is loaded again
    // (reading the secrets afresh), so a rotated secret applies even while a refused file sits
    // on disk.
    let mut applied = last.clone();
    // Secret file contents a reload was refused with: not tried again until they change, so a
    // bad secret is logged and counted once, not on every tick.
    let mut refused_secrets: Option<SecretFiles> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let bytes = match std::fs::read(&source.path) {
            Ok(b) => b,
            // Mid-swap the file can be briefly missing; the next tick sees the new one.
            Err(_) => continue,
        };
        let (text, cause) = if last.as_deref() != Some(&bytes[..]) {
            last = Some(bytes.clone());
            (bytes, "config file changed")
        } else {
            let secrets = current.oz.auth.secret_files_now();
            if current.oz.auth.loaded_from(&secrets) || refused_secrets.as_ref() == Some(&secrets) {
                continue;
            }
            refused_secrets = Some(secrets);
            match &applied {
                Some(text) => (text.clone(), "an oz.auth secret file changed"),
                None => continue,
            }
        };
        let reloader = Reloader {
            source: &source,
            live: &live,
            published: &published,
            metrics: &metrics,
            tracing: &tracing,
        };
        if let Some(new) = reloader.reload(&text, cause, &current) {
            applied = Some(text);
            refused_secrets = None;
            current = new;
        }
    }
}

/// What one reload needs besides the text and the config in force.
struct Reloader<'a> {
    source: &'a ConfigSource,
    live: &'a ArcSwap<Live>,
    /// The signer whose keys the admin listener publishes.
    published: &'a ArcSwapOption<Signer>,
    metrics: &'a Metrics,
    tracing: &'a Tracing,
}

impl Reloader<'_> {
    /// Loads `text` (the secret files it names are read afresh) and swaps it in, unless it is
    /// invalid or weakens a capture route; logs and counts either way. The new config, if
    /// applied.
    fn reload(&self, text: &[u8], cause: &str, current: &Config) -> Option<Config> {
        let path = self.source.path.display();
        let refused = |error: &dyn std::fmt::Display| {
            self.metrics.config_reload(false);
            tracing::error!(%path, cause, %error, "new config refused, keeping the old one");
        };
        let loaded = std::str::from_utf8(text)
            .map_err(|_| crate::config::Error::Read {
                path: self.source.path.clone(),
                reason: "not valid UTF-8".into(),
            })
            .and_then(|text| Config::from_yaml(text, &self.source.env))
            .and_then(|new| Ok((compile(&new)?, new)));
        let (compiled, new) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                refused(&e);
                return None;
            }
        };
        let weakened = weakenings(current, &new);
        if !weakened.is_empty() {
            self.metrics.config_reload(false);
            tracing::error!(
                %path,
                cause,
                weakened = ?weakened,
                "new config removes or weakens capture routes (or is a half-written file); refused, keeping the old one; it takes effect only on a restart"
            );
            return None;
        }
        let signer = compiled.signer.clone();
        match build_live(
            &new,
            compiled,
            self.metrics,
            self.tracing,
            Some(&self.live.load()),
        ) {
            Ok(built) => {
                warn_restart_only(current, &new);
                self.live.store(Arc::new(built));
                self.published.store(signer);
                self.metrics.config_reload(true);
                tracing::info!(%path, cause, capture_routes = new.capture.routes.len(), "config reloaded");
                Some(new)
            }
            Err(e) => {
                refused(&e);
                None
            }
        }
    }
}

/// What `new` would remove or weaken of the capture routes `old` has, one line each, naming
/// the route and the setting (never a secret); empty when a reload may apply it. The rule is
/// in the module doc.
pub fn weakenings(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let old_routes = old.capture.effective_routes();
    if old_routes.is_empty() {
        return out;
    }
    if old.verdict.enabled() && !new.verdict.enabled() {
        out.push("verdict.keys: emptied, so tokens would stop".to_owned());
    }
    if !old.verdict.bind.is_empty() && new.verdict.bind.is_empty() {
        out.push("verdict.bind: removed, so tokens would no longer be bound".to_owned());
    }
    if old.oz.url != new.oz.url {
        out.push("oz.url changed while capture routes exist".to_owned());
    }
    if old.capture.strict_paths && !new.capture.strict_paths {
        out.push("capture.strict_paths true -> false while capture routes exist".to_owned());
    }
    if old.state.store != new.state.store {
        out.push(format!(
            "state.store {} -> {} while capture routes exist (what the replay guard remembers would be lost)",
            name(old.state.store),
            name(new.state.store)
        ));
    }
    if old.state.on_error == OnStateError::FailClosed
        && new.state.on_error == OnStateError::FailOpen
    {
        out.push("state.on_error fail_closed -> fail_open while capture routes exist".to_owned());
    }
    if old.state.redis.key_prefix != new.state.redis.key_prefix
        && old.state.store == StoreKind::Redis
    {
        out.push("state.redis.key_prefix changed while capture routes exist (what the replay guard remembers would be lost)".to_owned());
    }
    if old.state.store == StoreKind::Memory
        && new.state.store == StoreKind::Memory
        && old.capture.replay.max_entries != new.capture.replay.max_entries
    {
        out.push("capture.replay.max_entries changed with state.store: memory (the store would be rebuilt, empty)".to_owned());
    }
    if old.oz.api != new.oz.api {
        out.push(format!(
            "oz.api {} -> {} while capture routes exist",
            name(old.oz.api),
            name(new.oz.api)
        ));
    }
    let new_routes: std::collections::HashMap<String, CaptureRoute> = new
        .capture
        .effective_routes()
        .into_iter()
        .map(|r| (crate::proxy::path::normalize(r.path.as_bytes()), r))
        .collect();
    for o in &old_routes {
        let Some(n) = new_routes.get(&crate::proxy::path::normalize(o.path.as_bytes())) else {
            out.push(format!("route {}: removed", o.path));
            continue;
        };
        let mut weaker = |setting: &str, what: String| {
            out.push(format!("route {}: {setting} {what}", o.path));
        };
        if o.on_result != n.on_result {
            weaker(
                "on_result",
                format!("{} -> {}", name(o.on_result), name(n.on_result)),
            );
        }
        if o.on_oz_error == OnOzError::Reject && n.on_oz_error == OnOzError::Forward {
            weaker("on_oz_error", "reject -> forward".to_owned());
        }
        let lost: Vec<&str> = o
            .analyses
            .iter()
            .filter(|a| !n.analyses.contains(a))
            .map(String::as_str)
            .collect();
        if !lost.is_empty() {
            weaker("analyses", format!("lose {lost:?}"));
        }
        if n.wait_for_result < o.wait_for_result {
            weaker(
                "wait_for_result",
                format!("{} -> {}", name(o.wait_for_result), name(n.wait_for_result)),
            );
        }
        if o.best_frame != BestFrame::None && n.best_frame == BestFrame::None {
            weaker("best_frame", format!("{} -> none", name(o.best_frame)));
        }
        match (o.replay, n.replay) {
            (Some(_), None) => weaker("replay", "on -> off".to_owned()),
            (Some(was), Some(now)) if now < was => {
                let human = humantime::format_duration;
                weaker("replay.window", format!("{} -> {}", human(was), human(now)))
            }
            _ => {}
        }
        if o.rate_limit.per_client.is_some() && n.rate_limit.per_client.is_none() {
            weaker("rate_limit.per_client", "removed".to_owned());
        }
        if o.rate_limit.global.is_some() && n.rate_limit.global.is_none() {
            weaker("rate_limit.global", "removed".to_owned());
        }
        if o.on_result == OnResult::Respond
            && n.on_result == OnResult::Respond
            && detail(n.result_mode) > detail(o.result_mode)
        {
            weaker(
                "result_mode",
                format!("{} -> {}", name(o.result_mode), name(n.result_mode)),
            );
        }
    }
    out
}

/// A setting's value as the config spells it (`Forward` -> `forward`, `30s`).
fn name(value: impl std::fmt::Debug) -> String {
    format!("{value:?}").to_ascii_lowercase()
}

/// How much a respond-mode answer tells the client about its verdict.
fn detail(mode: ResultMode) -> u8 {
    match mode {
        ResultMode::Safe => 0,
        ResultMode::Status => 1,
        ResultMode::Folder => 2,
    }
}

fn warn_restart_only(old: &Config, new: &Config) {
    let changed: Vec<&str> = [
        ("listen", old.listen != new.listen),
        ("admin_listen", old.admin_listen != new.admin_listen),
        ("tls", old.tls != new.tls),
        ("backend", old.backend != new.backend),
        ("server", old.server != new.server),
        ("shutdown", old.shutdown != new.shutdown),
        ("forwarding", old.forwarding != new.forwarding),
        ("log", old.log != new.log),
        ("telemetry", old.telemetry != new.telemetry),
        ("reload", old.reload.interval != new.reload.interval),
    ]
    .into_iter()
    .filter_map(|(section, differs)| differs.then_some(section))
    .collect();
    if !changed.is_empty() {
        tracing::warn!(sections = ?changed, "these sections changed but only take effect after a restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "backend:\n  url: \"http://127.0.0.1:3000\"\noz:\n  url: \"http://127.0.0.1:9\"\n  auth:\n    token: t\n";

    fn config(rest: &str) -> Config {
        Config::from_yaml(&format!("{BASE}{rest}"), &Default::default()).unwrap()
    }

    /// The weakenings of going from `old` to `new` (both `capture:` sections).
    fn weakened(old: &str, new: &str) -> Vec<String> {
        weakenings(&config(old), &config(new))
    }

    const ONE: &str = "capture:\n  routes:\n    - path: /a\n";

    #[test]
    fn duplicate_routes_after_normalization_are_refused() {
        let yaml = "capture:\n  routes:\n    - path: /a/b\n    - path: //a/b/\n";
        let e = compile(&config(yaml))
            .err()
            .expect("two routes normalize to /a/b")
            .to_string();
        assert!(e.contains("capture.routes[1].path"), "{e}");
    }

    #[test]
    fn removing_a_route_is_refused_adding_one_is_not() {
        let cut = weakened(ONE, "");
        assert_eq!(cut, vec!["route /a: removed"]);
        assert!(weakened(ONE, &format!("{ONE}    - path: /b\n")).is_empty());
        assert!(
            weakened("", ONE).is_empty(),
            "no routes before: anything goes"
        );
    }

    #[test]
    fn routes_are_matched_by_normalized_path() {
        assert!(weakened(ONE, "capture:\n  routes:\n    - path: //A/\n").is_empty());
    }

    #[test]
    fn each_weaker_setting_is_named() {
        let cases = [
            ("on_oz_error: forward", "on_oz_error"),
            ("on_result: respond", "on_result"),
            ("analyses: []", "analyses"),
            ("wait_for_result: \"29s\"", "wait_for_result"),
        ];
        for (setting, name) in cases {
            let new = format!("{ONE}      {setting}\n");
            let w = weakened(ONE, &new);
            assert_eq!(w.len(), 1, "{setting}: {w:?}");
            assert!(w[0].starts_with(&format!("route /a: {name} ")), "{w:?}");
        }
        // A cut inside the section: its settings fall back to the defaults.
        let lax = ONE.replace("capture:\n", "capture:\n  strict_paths: false\n");
        let w = weakened(ONE, &lax);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("strict_paths"), "{w:?}");
        assert!(weakened(&lax, ONE).is_empty(), "stricter is reloadable");
        let section = "capture:\n  analyses: [quality, biometry]\n  wait_for_result: \"60s\"\n  best_frame: jpeg\n  routes:\n    - path: /a\n";
        let w = weakened(section, ONE);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains("analyses") && w[0].contains("biometry"),
            "{w:?}"
        );
        assert!(w[1].contains("wait_for_result"), "{w:?}");
        assert!(w[2].contains("best_frame"), "{w:?}");
    }

    #[test]
    fn the_abuse_controls_may_not_be_lifted_by_a_reload() {
        let guarded = "capture:
  replay:
    window: \"2h\"
  rate_limit:
    per_client: { limit: 5, per: \"1m\" }
    global: { limit: 50, per: \"1m\" }
  routes:
    - path: /a
";
        let w = weakened(guarded, ONE);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("rate_limit.per_client removed"), "{w:?}");
        assert!(w[1].contains("rate_limit.global removed"), "{w:?}");
        // The default window (24 h) is longer than 2 h: not weaker. Raised limits are fine.
        let raised = guarded.replace("limit: 5", "limit: 500");
        assert!(weakened(guarded, &raised).is_empty());
        let off = format!("{ONE}      replay:\n        enabled: false\n");
        let w = weakened(ONE, &off);
        assert_eq!(w, ["route /a: replay on -> off"]);
        let shorter = guarded.replace("2h", "1h");
        assert_eq!(
            weakened(guarded, &shorter),
            ["route /a: replay.window 2h -> 1h"]
        );
        let redis = format!("{ONE}state:\n  store: redis\n");
        let w = weakenings(
            &Config::from_yaml(
                &format!("{BASE}{redis}"),
                &[(
                    "OZ_PROXY__STATE__REDIS__URL".into(),
                    "redis://r:6379".into(),
                )]
                .into(),
            )
            .unwrap(),
            &config(ONE),
        );
        assert!(w[0].starts_with("state.store redis -> memory"), "{w:?}");
        let bigger = ONE.replace(
            "capture:\n",
            "capture:\n  replay:\n    max_entries: 200000\n",
        );
        assert!(weakened(ONE, &bigger)[0].contains("max_entries"));
    }

    #[test]
    fn respond_routes_may_not_tell_the_client_more() {
        let respond = |mode: &str| {
            format!("capture:\n  routes:\n    - path: /a\n      on_result: respond\n      result_mode: {mode}\n")
        };
        assert_eq!(weakened(&respond("safe"), &respond("folder")).len(), 1);
        assert_eq!(weakened(&respond("status"), &respond("folder")).len(), 1);
        assert!(weakened(&respond("folder"), &respond("safe")).is_empty());
    }

    #[test]
    fn stronger_settings_and_capacity_are_reloadable() {
        let strict = format!(
            "{ONE}      analyses: [quality, biometry]\n      wait_for_result: \"60s\"\n      best_frame: png\n      max_body_bytes: 1000\n      max_frames: 2\n      forward_body: summary\n"
        );
        assert!(weakened(ONE, &strict).is_empty());
        let loose = format!(
            "{ONE}      max_body_bytes: 200000000\n      max_frames: 1000\n      max_frame_bytes: 99999999\n      file_key: other\n"
        );
        let roomy = "  memory_budget_bytes: 1000000000\n";
        assert!(weakened(ONE, &format!("{loose}{roomy}")).is_empty());
        let forward_first = format!("{ONE}      on_oz_error: forward\n");
        assert!(
            weakened(&forward_first, ONE).is_empty(),
            "forward -> reject"
        );
    }

    #[test]
    fn where_verdicts_come_from_is_restart_only_while_routes_exist() {
        let load = |yaml: String| Config::from_yaml(&yaml, &Default::default()).unwrap();
        let moved = |rest: &str| {
            load(format!(
                "{}{rest}",
                BASE.replace("127.0.0.1:9", "127.0.0.2:9")
            ))
        };
        assert_eq!(weakenings(&config(ONE), &moved(ONE)).len(), 1);
        let instant = load(format!("{BASE}  api: instant\n{ONE}"));
        assert_eq!(weakenings(&config(ONE), &instant).len(), 1);
        assert!(weakenings(&config(""), &moved("")).is_empty());
    }

    #[test]
    fn a_cut_before_oz_is_refused_when_capture_comes_first() {
        let text =
            "backend:\n  url: \"http://127.0.0.1:3000\"\ncapture:\n  routes:\n    - path: /a\n\
                    oz:\n  url: \"http://127.0.0.1:9\"\n  auth:\n    token: t\n";
        let cut = &text[..text.find("oz:").unwrap()];
        let no_env = Default::default();
        let full = Config::from_yaml(text, &no_env).unwrap();
        // Credentials in the file: the cut has none, and validation refuses it.
        assert!(Config::from_yaml(cut, &no_env).is_err());
        // Credentials in the environment: the cut is valid, with the placeholder Oz URL.
        let env: BTreeMap<String, String> =
            [("OZ_PROXY__OZ__AUTH__TOKEN".to_owned(), "t".to_owned())].into();
        let cut = Config::from_yaml(cut, &env).unwrap();
        assert_eq!(
            weakenings(&full, &cut),
            vec!["oz.url changed while capture routes exist"]
        );
    }
}
