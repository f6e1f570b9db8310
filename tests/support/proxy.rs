//! The real proxy, started in process on ephemeral loopback ports.
//!
//! Settings are dotted keys (`backend.timeout`) rendered into a YAML document and loaded with
//! `Config::from_yaml`, the loader `main` uses, so every test also exercises the config path.
//! The defaults keep tests quick: no reload polling, no drain delay, a short drain deadline.
//! And the replay guard is off ([`REPLAY_OFF`]): the suites send one sample capture many times,
//! and every repeat would be a replay; the abuse suite (`tests/abuse.rs`) turns it back on with
//! [`ProxyBuilder::replay_guard`].
//! [`start_from_file`] starts one from a config file instead, reloading it as `main` does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use oz_capture_proxy::config::Config;
use oz_capture_proxy::reload::ConfigSource;
use oz_capture_proxy::server::{self, Running};

use super::{within, within_for};

/// The environment override that turns the replay guard off in the test proxies, whatever
/// their YAML says.
pub const REPLAY_OFF: (&str, &str) = ("OZ_PROXY__CAPTURE__REPLAY__ENABLED", "false");

/// The environment the test proxies load their config with: [`REPLAY_OFF`].
pub fn test_env() -> BTreeMap<String, String> {
    BTreeMap::from([(REPLAY_OFF.0.to_owned(), REPLAY_OFF.1.to_owned())])
}

/// Builds a [`Proxy`].
pub struct ProxyBuilder {
    settings: BTreeMap<String, String>,
    /// YAML appended as it is, for what dotted keys cannot say (lists such as `capture.routes`).
    tail: String,
    /// The environment the config is loaded with (`OZ_PROXY__…` overrides).
    env: BTreeMap<String, String>,
}

/// A proxy in front of the backend at `backend`.
pub fn proxy(backend: SocketAddr) -> ProxyBuilder {
    let mut settings = BTreeMap::new();
    for (k, v) in [
        ("listen", "127.0.0.1:0".to_owned()),
        ("admin_listen", "127.0.0.1:0".to_owned()),
        ("backend.url", format!("http://{backend}")),
        ("reload.interval", "0s".to_owned()),
        ("shutdown.drain_delay", "0s".to_owned()),
        ("shutdown.drain_deadline", "5s".to_owned()),
    ] {
        settings.insert(k.to_owned(), v);
    }
    ProxyBuilder {
        settings,
        tail: String::new(),
        env: test_env(),
    }
}

impl ProxyBuilder {
    /// Sets `key` (dotted path, e.g. `backend.timeout`) to the scalar `value`.
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.settings.insert(key.to_owned(), value.to_string());
        self
    }

    /// Turns the verdict listener on, on `127.0.0.1:0` ([`Proxy::verdict`] is its address).
    pub fn verdict_listen(self) -> Self {
        self.set("verdict_listen", "127.0.0.1:0")
    }

    /// Leaves the replay guard as the YAML says (on by default), instead of off.
    pub fn replay_guard(mut self) -> Self {
        self.env.remove(REPLAY_OFF.0);
        self
    }

    /// Sets the environment override `key` (`OZ_PROXY__…`) to `value`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Appends top-level YAML sections (not set by dotted keys) to the document.
    pub fn yaml_tail(mut self, yaml: &str) -> Self {
        self.tail.push_str(yaml);
        self
    }

    /// The YAML document these settings make.
    pub fn yaml(&self) -> String {
        format!("{}{}", render(&self.settings), self.tail)
    }

    /// Loads the config and starts the proxy.
    pub async fn start(self) -> Proxy {
        let yaml = self.yaml();
        let config = Config::from_yaml(&yaml, &self.env)
            .unwrap_or_else(|e| panic!("test config refused: {e}\n{yaml}"));
        let running = within("the proxy to start", server::start(config, None))
            .await
            .expect("the proxy starts");
        Proxy::from(running)
    }
}

/// Starts the proxy from the config file at `path`, with that file as its reload source (polled
/// every `reload.interval` the file sets), as `main --config FILE` does; with [`test_env`].
pub async fn start_from_file(path: &Path) -> Proxy {
    let env = test_env();
    let config = Config::load(path, &env)
        .unwrap_or_else(|e| panic!("test config {} refused: {e}", path.display()));
    let source = ConfigSource {
        path: path.to_owned(),
        env,
    };
    let running = within("the proxy to start", server::start(config, Some(source)))
        .await
        .expect("the proxy starts");
    Proxy::from(running)
}

impl From<Running> for Proxy {
    fn from(running: Running) -> Self {
        Proxy {
            traffic: running.traffic_addr,
            admin: running.admin_addr,
            verdict: running.verdict_addr,
            running: Some(running),
        }
    }
}

/// A running proxy. Dropping it signals shutdown; [`Proxy::stop`] also waits for the end.
pub struct Proxy {
    pub traffic: SocketAddr,
    pub admin: SocketAddr,
    /// The verdict listener, when `verdict_listen` is set.
    pub verdict: Option<SocketAddr>,
    running: Option<Running>,
}

impl Proxy {
    /// `http://{traffic}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.traffic, path)
    }

    /// `http://{admin}{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// `http://{verdict}{path}`; panics unless the verdict listener is on.
    pub fn verdict_url(&self, path: &str) -> String {
        let addr = self.verdict.expect("verdict_listen is set");
        format!("http://{addr}{path}")
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> String {
        let rsp = super::client::get(
            &super::client::http1_unpooled(),
            &self.admin_url("/metrics"),
        )
        .await;
        assert_eq!(rsp.status(), 200);
        super::client::text(rsp).await
    }

    /// The value of one series (`name{labels}`) in the admin `/metrics` text; 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }

    /// Waits (at most [`super::WAIT`]) until `series` reads `value` in `/metrics`: for what the
    /// proxy counts after the exchange a test can see (a late delivery is counted once its
    /// answer has been read). Re-reads `/metrics` every 10 ms; the condition is the signal.
    pub async fn wait_metric(&self, series: &str, value: f64) {
        within("a metric to reach its value", async {
            loop {
                if self.metric(series).await == value {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// Waits (at most [`super::WAIT`]) until `series` reads `value` or more in `/metrics`.
    pub async fn wait_metric_at_least(&self, series: &str, value: f64) {
        within("a metric to reach its value", async {
            loop {
                if self.metric(series).await >= value {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    /// Starts draining, as SIGTERM would.
    pub fn shutdown(&self) {
        self.running.as_ref().expect("running").shutdown();
    }

    /// Waits (at most `limit`) for the proxy task to finish; returns its result.
    pub async fn wait_for(mut self, limit: Duration) -> anyhow::Result<()> {
        let running = self.running.take().expect("running");
        within_for(limit, "the proxy to finish", running.wait()).await
    }

    /// Signals shutdown and waits for the proxy to finish.
    pub async fn stop(self) {
        self.shutdown();
        self.wait_for(super::WAIT)
            .await
            .expect("the proxy stops cleanly");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown();
        }
    }
}

/// The value of `series` (exact `name{labels}` text) in Prometheus text; 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .map(|v| {
            v.split_whitespace()
                .next()
                .unwrap()
                .parse()
                .expect("numeric sample")
        })
        .next()
        .unwrap_or(0.0)
}

/// Renders dotted keys as nested YAML mappings; every value becomes a double-quoted string,
/// which the loader converts to the field's type (as it does for environment overrides).
fn render(settings: &BTreeMap<String, String>) -> String {
    #[derive(Default)]
    struct Node {
        value: Option<String>,
        children: BTreeMap<String, Node>,
    }
    let mut root = Node::default();
    for (key, value) in settings {
        let mut node = &mut root;
        for part in key.split('.') {
            node = node.children.entry(part.to_owned()).or_default();
        }
        node.value = Some(value.clone());
    }
    fn write(node: &Node, depth: usize, out: &mut String) {
        for (k, child) in &node.children {
            out.push_str(&"  ".repeat(depth));
            out.push_str(k);
            out.push(':');
            match &child.value {
                Some(v) => {
                    // A JSON string is a valid YAML double-quoted scalar.
                    out.push(' ');
                    out.push_str(&serde_json::to_string(v).unwrap());
                    out.push('\n');
                }
                None => {
                    out.push('\n');
                    write(child, depth + 1, out);
                }
            }
        }
    }
    let mut out = String::new();
    write(&root, 0, &mut out);
    out
}
