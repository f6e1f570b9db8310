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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::capture::handler::CaptureService;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::passthrough::Passthrough;
use crate::proxy::{Live, RouteTable};

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

/// Builds the swappable part of the proxy from `config`.
pub fn build_live(
    config: &Config,
    passthrough: &Passthrough,
    metrics: &Metrics,
    previous: Option<&Live>,
) -> anyhow::Result<Live> {
    let routes = config.capture.effective_routes();
    let capture = if routes.is_empty() {
        None
    } else {
        Some(CaptureService::new(
            config,
            passthrough.clone(),
            metrics.clone(),
            previous.and_then(|p| p.capture.as_ref()),
        )?)
    };
    Ok(Live {
        routes: RouteTable::new(routes),
        capture,
    })
}

/// Polls `source` until `stop` is cancelled.
pub async fn watch(
    watched: Watched,
    mut current: Config,
    live: Arc<ArcSwap<Live>>,
    passthrough: Passthrough,
    metrics: Metrics,
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
        if last.as_deref() == Some(&bytes[..]) {
            continue;
        }
        last = Some(bytes);
        match Config::load(&source.path, &source.env)
            .map_err(anyhow::Error::from)
            .and_then(|new| {
                let built = build_live(&new, &passthrough, &metrics, Some(&live.load()))?;
                Ok((new, built))
            }) {
            Ok((new, built)) => {
                warn_restart_only(&current, &new);
                live.store(Arc::new(built));
                metrics.config_reload(true);
                tracing::info!(path = %source.path.display(), capture_routes = new.capture.routes.len(), "config reloaded");
                current = new;
            }
            Err(e) => {
                metrics.config_reload(false);
                tracing::error!(path = %source.path.display(), error = %e, "new config refused, keeping the old one");
            }
        }
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
        ("reload", old.reload.interval != new.reload.interval),
    ]
    .into_iter()
    .filter_map(|(section, differs)| differs.then_some(section))
    .collect();
    if !changed.is_empty() {
        tracing::warn!(sections = ?changed, "these sections changed but only take effect after a restart");
    }
}
