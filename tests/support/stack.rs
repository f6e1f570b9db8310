//! The whole stack for end-to-end capture tests: the real proxy ([`super::proxy`]), the real Oz
//! simulator ([`super::sim`]) and the recording backend ([`super::backend`]) answering
//! [`BACKEND_ANSWER`], all on `127.0.0.1:0`.
//!
//! [`Stack::start`] brings the three up and hands back their addresses once bound; a test talks
//! to the proxy with [`Stack::post`] (hyper's client) or [`Stack::raw`] (bytes on a `TcpStream`,
//! for odd paths, `Expect: 100-continue` and chunked bodies), reads what the backend and Oz
//! received, and ends with [`Stack::stop`], which stops all three and waits for them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use oz_capture_proxy::capture::testdata::SampleCapture;
use oz_capture_proxy::oz_sim::{CallRecord, OzSim, ReceivedUpload, SimConfig};
use serde_json::Value;

use super::backend::{backend, targets};
pub use super::backend::{Recorded, Reply as BackendReply};
use super::bin::TempDir;
use super::client::{self, HttpClient};
// The capture suites `use support::stack::*`: the pieces they use with a stack come with it.
pub use super::backend::Backend;
pub use super::proxy::Proxy;
pub use super::proxy::ProxyBuilder;
use super::proxy::{proxy, start_from_file};
#[allow(unused_imports)] // Not every suite sends raw bytes.
pub use super::raw::{raw_exchange, raw_head, raw_request, RawConn, RawResponse};
pub use super::sim::Sim;
pub use super::within;

/// The static service token the default stack uses.
pub const TOKEN: &str = "capture-tests-service-token";

/// The default capture route.
pub const CAPTURE: &str = "/api/liveness/capture";

/// What the backend answers, so a test can tell its answer from the proxy's.
pub const BACKEND_ANSWER: &str = r#"{"backend":"legacy"}"#;

/// The stack's backend: records every request and answers 200 [`BACKEND_ANSWER`] as JSON, with
/// `X-Backend: yes`.
pub async fn legacy_backend() -> Backend {
    legacy_backend_with(|_| None).await
}

/// The legacy backend's answer: 200 [`BACKEND_ANSWER`] as JSON, with `X-Backend: yes`.
pub fn legacy_answer() -> BackendReply {
    BackendReply::status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("x-backend", "yes")
        .body(Bytes::from_static(BACKEND_ANSWER.as_bytes()))
}

/// The legacy backend, answering what `answer` gives for a request (say, by its path), and
/// [`legacy_answer`] where it gives `None`.
pub async fn legacy_backend_with(
    answer: impl Fn(&Recorded) -> Option<BackendReply> + Send + Sync + 'static,
) -> Backend {
    backend()
        .reply(move |r| answer(r).unwrap_or_else(legacy_answer))
        .start()
        .await
}

/// The default simulator for these tests: a static token, and analyses that are started,
/// then found final on the first poll.
pub fn sim_config() -> SimConfig {
    SimConfig {
        token: Some(TOKEN.to_owned()),
        polls_until_final: 0,
        ..SimConfig::default()
    }
}

/// A client of the proxy's traffic port; cheap to clone, so tests can send from many tasks.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    http: HttpClient,
}

impl Client {
    /// An HTTP/1.1 client, or with `h2c` an HTTP/2 client with prior knowledge.
    pub fn new(addr: SocketAddr, h2c: bool) -> Client {
        let http = if h2c { client::h2c() } else { client::http1() };
        Client { addr, http }
    }

    /// Sends `req` (a path-only URI is completed with the proxy's address) and reads the reply.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        let mut req = req.map(|b| b.boxed());
        if req.uri().authority().is_none() {
            let uri = format!("http://{}{}", self.addr, req.uri());
            *req.uri_mut() = uri.parse().expect("valid URI");
        }
        let rsp = client::send(&self.http, req).await;
        let (parts, body) = rsp.into_parts();
        let body = within("proxy answer body", body.collect())
            .await
            .expect("answer body")
            .to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// POSTs `body` with `content_type` to `path`, with extra `headers`.
    pub async fn post_with(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = Request::post(path).header(http::header::CONTENT_TYPE, content_type);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Full::new(body.into())).expect("valid request"))
            .await
    }

    /// POSTs a JSON capture body to `path`.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.post_with(path, "application/json", &[], body).await
    }
}

/// Proxy, simulator and backend, started together.
pub struct Stack {
    pub proxy: Proxy,
    pub sim: Sim,
    pub backend: Backend,
    client: Client,
    /// The config file, for a stack started with [`Stack::start_from_file`].
    file: Option<ConfigFile>,
}

/// A config file the proxy reloads, in a directory removed with it.
struct ConfigFile {
    _dir: TempDir,
    path: PathBuf,
}

/// The `oz:` section for a static token, with `extra` lines (indented two spaces) appended.
pub fn oz_token(extra: &str) -> String {
    format!("oz:\n  url: \"http://{{oz}}\"\n  auth:\n    token: \"{TOKEN}\"\n{extra}")
}

/// One forward route on [`CAPTURE`] with `wait_for_result: 5s` and `unchecked_images: strip`,
/// plus `extra` capture lines. The sample captures carry both best frames, as the Web SDK's do,
/// and Oz gets at most one, so under the default (`refuse`) every one would be refused.
pub fn forward_route(extra: &str) -> String {
    format!(
        "capture:\n  wait_for_result: \"5s\"\n  unchecked_images: strip\n{extra}  routes:\n    - path: \"{CAPTURE}\"\n      on_result: forward\n"
    )
}

/// `capture` as the backend gets it from a route with `unchecked_images: strip` and
/// `best_frame: none`: both best frames `null`, every other byte as sent.
pub fn best_frames_nulled(capture: &SampleCapture) -> Vec<u8> {
    let mut c = capture.clone();
    c.best_frame = None;
    c.best_frame_png = None;
    c.to_json()
}

impl Stack {
    /// Starts the simulator, the backend and the proxy. `yaml` holds the proxy's `oz:` and
    /// `capture:` sections (and anything else); `{oz}` and `{backend}` are replaced by the
    /// addresses. Listeners, drain and reload settings are added here.
    pub async fn start(sim: SimConfig, yaml: &str) -> Stack {
        let sim = Sim::start(sim).await;
        let backend = legacy_backend().await;
        let proxy = Stack::builder(&sim, &backend, yaml).start().await;
        Stack::assemble(proxy, sim, backend, None)
    }

    /// Like [`Stack::start`], with the proxy's settings changed by `tune` (say,
    /// [`ProxyBuilder::replay_guard`]).
    pub async fn start_with(
        sim: SimConfig,
        yaml: &str,
        tune: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
    ) -> Stack {
        let sim = Sim::start(sim).await;
        let backend = legacy_backend().await;
        let proxy = tune(Stack::builder(&sim, &backend, yaml)).start().await;
        Stack::assemble(proxy, sim, backend, None)
    }

    /// Another proxy in front of the same simulator and backend, with `yaml` and `tune`: a
    /// second replica, or the same one restarted.
    pub async fn replica(
        &self,
        yaml: &str,
        tune: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
    ) -> Proxy {
        tune(Stack::builder(&self.sim, &self.backend, yaml))
            .start()
            .await
    }

    /// Like [`Stack::start`], with the verdict listener on `127.0.0.1:0` ([`Stack::verdict_get`]).
    pub async fn start_with_verdicts(sim: SimConfig, yaml: &str) -> Stack {
        let sim = Sim::start(sim).await;
        let backend = legacy_backend().await;
        let proxy = Stack::builder(&sim, &backend, yaml)
            .verdict_listen()
            .start()
            .await;
        Stack::assemble(proxy, sim, backend, None)
    }

    /// A stack around a simulator and backend that are already running (kept from a stack
    /// whose proxy stopped: a restart), with a new proxy with the verdict listener on.
    pub async fn start_with_verdicts_on(sim: Sim, backend: Backend, yaml: &str) -> Stack {
        let proxy = Stack::builder(&sim, &backend, yaml)
            .verdict_listen()
            .start()
            .await;
        Stack::assemble(proxy, sim, backend, None)
    }

    /// Another proxy with config `yaml` in front of the same simulator and backend, with the
    /// verdict listener on: a restart, or a second replica.
    pub async fn another_proxy(&self, yaml: &str) -> Proxy {
        Stack::builder(&self.sim, &self.backend, yaml)
            .verdict_listen()
            .start()
            .await
    }

    /// Like [`Stack::start`], in front of `backend` (say, from [`legacy_backend_with`]).
    pub async fn start_with_backend(sim: SimConfig, yaml: &str, backend: Backend) -> Stack {
        let sim = Sim::start(sim).await;
        let proxy = Stack::builder(&sim, &backend, yaml).start().await;
        Stack::assemble(proxy, sim, backend, None)
    }

    /// Like [`Stack::start`], but the proxy reads its config from a file and polls it every
    /// 20 ms, as `main --config FILE` does; [`Stack::rewrite`] changes the file.
    pub async fn start_from_file(sim: SimConfig, yaml: &str) -> Stack {
        let sim = Sim::start(sim).await;
        let backend = legacy_backend().await;
        let dir = TempDir::new("stack");
        let path = dir.write("config.yaml", Stack::text(&sim, &backend, yaml));
        let proxy = start_from_file(&path).await;
        Stack::assemble(proxy, sim, backend, Some(ConfigFile { _dir: dir, path }))
    }

    fn assemble(proxy: Proxy, sim: Sim, backend: Backend, file: Option<ConfigFile>) -> Stack {
        let client = Client::new(proxy.traffic, false);
        Stack {
            proxy,
            sim,
            backend,
            client,
            file,
        }
    }

    /// The proxy settings for `yaml` (placeholders replaced) in front of `sim` and `backend`;
    /// a reload poll of 20 ms, which only a stack started from a file uses.
    fn builder(sim: &Sim, backend: &Backend, yaml: &str) -> ProxyBuilder {
        let yaml = yaml
            .replace("{oz}", &sim.addr.to_string())
            .replace("{backend}", &backend.addr.to_string());
        proxy(backend.addr).yaml_tail(&yaml)
    }

    fn text(sim: &Sim, backend: &Backend, yaml: &str) -> String {
        Stack::builder(sim, backend, yaml)
            .set("reload.interval", "20ms")
            .yaml()
    }

    /// The whole config file for `yaml`, as [`Stack::start_from_file`] writes it.
    pub fn config(&self, yaml: &str) -> String {
        Stack::text(&self.sim, &self.backend, yaml)
    }

    /// The config file of a stack started with [`Stack::start_from_file`].
    pub fn config_path(&self) -> &Path {
        &self.file.as_ref().expect("started from a file").path
    }

    /// Rewrites the config file in place, as `cat > file` would.
    pub fn rewrite(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write the config file");
    }

    /// The default stack: static token, one forward route on [`CAPTURE`].
    pub async fn forward() -> Stack {
        Stack::start(
            sim_config(),
            &format!("{}{}", oz_token(""), forward_route("")),
        )
        .await
    }

    pub fn oz(&self) -> &OzSim {
        &self.sim.sim
    }

    /// Stops the proxy, then the simulator and the backend, waiting for each.
    pub async fn stop(self) {
        self.proxy.stop().await;
        self.sim.stop().await;
        self.backend.stop().await;
    }

    /// An HTTP/1.1 client of the proxy, for sending from other tasks.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Sends `req` to the proxy (see [`Client::send`]).
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        self.client.send(req).await
    }

    /// POSTs `body` with `content_type` to `path`, with extra `headers`.
    pub async fn post_with(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.client
            .post_with(path, content_type, headers, body)
            .await
    }

    /// POSTs a JSON capture body to `path`.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.client.post(path, body).await
    }

    /// GETs `path` on the admin port.
    pub async fn admin_get(&self, path: &str) -> Reply {
        let uri = format!("http://{}{}", self.proxy.admin, path);
        self.send(
            Request::get(uri)
                .body(Full::new(Bytes::new()))
                .expect("valid request"),
        )
        .await
    }

    /// GETs `path` on the verdict listener of `proxy`.
    pub async fn verdict_get(&self, proxy: &Proxy, path: &str) -> Reply {
        self.send(
            Request::get(proxy.verdict_url(path))
                .body(Full::new(Bytes::new()))
                .expect("valid request"),
        )
        .await
    }

    /// The proxy's `/metrics` text from the admin port.
    pub async fn metrics(&self) -> MetricsText {
        MetricsText(self.proxy.metrics().await)
    }

    /// Sends raw bytes to the proxy on a fresh connection (see [`raw_exchange`]).
    pub async fn raw(&self, request: &[u8]) -> RawResponse {
        raw_exchange(self.proxy.traffic, request).await
    }

    /// The only upload Oz accepted; panics unless exactly one arrived.
    pub fn only_upload(&self) -> ReceivedUpload {
        let uploads = self.oz().uploads();
        assert_eq!(uploads.len(), 1, "uploads: {uploads:?}");
        let u = uploads.into_iter().next().expect("one upload");
        assert!(u.accepted(), "upload refused: {u:?}");
        u
    }

    /// Oz calls on `endpoint` (the simulator's names: `auth`, `folders`, `start_analyses`…).
    pub fn calls_to(&self, endpoint: &str) -> Vec<CallRecord> {
        self.oz()
            .calls()
            .into_iter()
            .filter(|c| c.endpoint.as_deref() == Some(endpoint))
            .collect()
    }

    /// Asserts that neither Oz nor the backend saw anything.
    pub fn assert_nothing_sent(&self, case: &str) {
        assert!(
            self.oz().calls().is_empty(),
            "{case}: Oz was called: {:?}",
            self.oz().calls()
        );
        assert!(self.oz().uploads().is_empty(), "{case}: Oz got an upload");
        let seen = self.backend.seen();
        assert!(
            seen.is_empty(),
            "{case}: the backend got {:?}",
            targets(&seen)
        );
    }
}

// === Replies ===

/// The Prometheus text exposition of `/metrics`.
pub struct MetricsText(pub String);

impl MetricsText {
    /// The sample of the line that starts with `series` (name and labels, as written); panics
    /// if there is none.
    pub fn value(&self, series: &str) -> f64 {
        self.lines_of(series)
            .next()
            .unwrap_or_else(|| panic!("no sample {series} in\n{}", self.0))
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("numeric sample")
    }

    /// Every line that starts with `prefix`.
    pub fn lines_of<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.lines().filter(move |l| l.starts_with(prefix))
    }
}

/// An answer from the proxy.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII"))
    }

    /// Asserts a problem answer with `status` and `code`, and returns the problem document.
    pub fn problem(&self, status: u16, code: &str) -> Value {
        let doc = self.json();
        assert_eq!(self.status.as_u16(), status, "{doc}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{doc}"
        );
        assert_eq!(doc["code"], code, "{doc}");
        assert_eq!(doc["status"], status, "{doc}");
        doc
    }

    /// Asserts the backend's own answer came back.
    pub fn assert_from_backend(&self) {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("x-backend"), Some("yes"));
        assert_eq!(&self.body[..], BACKEND_ANSWER.as_bytes());
    }
}
