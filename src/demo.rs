//! `oz-capture-proxy demo`: the whole product on loopback, with nothing else installed.
//!
//! Starts the simulated Oz API, a stand-in legacy backend that echoes what it received, and the
//! proxy in front of it; pushes a generated capture (real JPEG frames made in code) through a
//! forward route and a respond route; prints what Oz and the backend received, and the verdict
//! token the backend got, decoded (signed with a key made for the run); then keeps serving
//! so a person can try it with the printed `curl` lines, until Ctrl-C.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::capture::testdata;
use crate::config::Config;
use crate::oz_sim::{self, OzSim, SimConfig};
use crate::server;

/// Where the demo listens.
pub struct DemoOptions {
    /// The proxy's traffic port.
    pub listen: SocketAddr,
    /// The proxy's admin port.
    pub admin_listen: SocketAddr,
}

const DEMO_TOKEN: &str = "demo-service-token";
const FORWARD_PATH: &str = "/api/liveness/capture";
const RESPOND_PATH: &str = "/api/liveness/check";
/// A forward route that waits only 500 ms, so a slow verdict arrives late.
const LATE_ROUTE: &str = "/api/liveness/capture-quick";
/// Where the stand-in backend gets late verdicts.
const LATE_PATH: &str = "/oz/late-verdict";

/// Runs the demo until `stop` is cancelled.
pub async fn run(opts: DemoOptions, stop: CancellationToken) -> anyhow::Result<()> {
    // 1. Simulated Oz API.
    let sim = OzSim::new(SimConfig {
        token: Some(DEMO_TOKEN.to_owned()),
        polls_until_final: 1,
        ..SimConfig::default()
    });
    let oz_listener = TcpListener::bind("127.0.0.1:0").await?;
    let oz_addr = oz_listener.local_addr()?;
    let sim_stop = stop.clone();
    tokio::spawn(oz_sim::serve(oz_listener, sim.clone(), async move {
        sim_stop.cancelled().await
    }));

    // 2. Stand-in legacy backend.
    let backend = StandIn::default();
    let backend_listener = TcpListener::bind("127.0.0.1:0").await?;
    let backend_addr = backend_listener.local_addr()?;
    tokio::spawn(backend.clone().serve(backend_listener, stop.clone()));

    // 3. The proxy, signing verdict tokens with a key made for this run.
    let key_file = write_demo_key()?;
    let yaml = format!(
        r#"
listen: "{listen}"
admin_listen: "{admin}"
verdict_listen: "127.0.0.1:0"
backend:
  url: "http://{backend_addr}"
shutdown:
  drain_delay: "0s"
  drain_deadline: "5s"
reload:
  interval: "0s"
oz:
  url: "http://{oz_addr}"
  auth:
    token: "{DEMO_TOKEN}"
capture:
  wait_for_result: "10s"
  # A person trying the proxy wants to see where a capture's time goes.
  server_timing: true
  routes:
    - path: "{FORWARD_PATH}"
      on_result: forward
      # The sample carries both best frames, as the Web SDK's captures do, and Oz checks
      # neither here: the backend gets them as null rather than the capture being refused.
      unchecked_images: strip
    - path: "{RESPOND_PATH}"
      on_result: respond
      result_mode: folder
    - path: "{LATE_ROUTE}"
      on_result: forward
      unchecked_images: strip
      wait_for_result: "500ms"
      late_verdict_path: "{LATE_PATH}"
verdict:
  keys:
    - kid: "demo"
      alg: EdDSA
      private_key_file: "{key_file}"
"#,
        listen = opts.listen,
        admin = opts.admin_listen,
        key_file = key_file.display(),
    );
    let config = Config::from_yaml(&yaml, &Default::default()).context("demo config")?;
    let proxy = server::start(config, None).await.with_context(|| {
        format!(
            "cannot start the proxy on {} / {} (use --listen/--admin-listen to pick free ports)",
            opts.listen, opts.admin_listen
        )
    })?;
    let base = format!("http://{}", proxy.traffic_addr);

    let mut out = String::new();
    let _ = writeln!(out, "oz-capture-proxy demo\n");
    let _ = writeln!(
        out,
        "  simulated Oz API   http://{oz_addr}   (uploads: GET /_sim/uploads)"
    );
    let _ = writeln!(out, "  stand-in backend   http://{backend_addr}");
    let _ = writeln!(
        out,
        "  proxy              {base}   (admin: http://{})\n",
        proxy.admin_addr
    );
    print!("{out}");

    // 4. Push generated captures through both modes: a new one each time, as from a new user;
    // the same one again is a replay, which step 5 shows.
    let numbered =
        |n| testdata::SampleCapture::numbered(n, 5, false, "video_selfie_blank").to_json();
    let capture = numbered(1);
    let sample_file = write_sample(&numbered(4))?;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();

    let (status, _, body) =
        post(&client, &format!("{base}{FORWARD_PATH}"), capture.clone()).await?;
    let mut out = String::new();
    let _ = writeln!(out, "1) forward mode: POST {FORWARD_PATH} ({} bytes of on_capture_complete JSON, 5 JPEG frames)", capture.len());
    describe_upload(&mut out, &sim);
    let _ = writeln!(out, "   the backend received:");
    if let Some(seen) = backend.last() {
        let _ = writeln!(
            out,
            "     {} {} with {} body bytes",
            seen.method, seen.path, seen.body_len
        );
        for (name, value) in seen.headers.iter().filter(|(n, _)| {
            (n.as_str().starts_with("x-oz-") && n.as_str() != "x-oz-verdict-token")
                || n.as_str() == "x-request-id"
        }) {
            let _ = writeln!(out, "     {}: {}", name, value.to_str().unwrap_or("?"));
        }
        if let Some(token) = seen
            .headers
            .get("x-oz-verdict-token")
            .and_then(|v| v.to_str().ok())
        {
            let _ = writeln!(
                out,
                "     x-oz-verdict-token: {}… ({} bytes), decoded:",
                &token[..token.len().min(24)],
                token.len()
            );
            describe_token(&mut out, token);
            let _ = writeln!(
                out,
                "     (verify it with the keys at http://{}/.well-known/jwks.json; README, \"Verifying the verdict\")",
                proxy.admin_addr
            );
        }
    } else {
        let _ = writeln!(out, "     nothing");
    }
    let _ = writeln!(
        out,
        "   the client got {status}: {}\n",
        String::from_utf8_lossy(&body)
    );

    let (status, _, body) = post(&client, &format!("{base}{RESPOND_PATH}"), numbered(2)).await?;
    let _ = writeln!(out, "2) respond mode: POST {RESPOND_PATH}");
    describe_upload(&mut out, &sim);
    let _ = writeln!(
        out,
        "   the proxy answered {status} itself: {}\n",
        String::from_utf8_lossy(&body)
    );

    // A verdict Oz takes 2 s to reach, on a route that waits 500 ms: PROCESSING now, the final
    // verdict delivered to the backend when Oz has it.
    sim.set_processing_for(std::time::Duration::from_secs(2));
    let (status, _, body) = post(&client, &format!("{base}{LATE_ROUTE}"), numbered(3)).await?;
    let _ = writeln!(
        out,
        "3) a late verdict: POST {LATE_ROUTE} (waits 500 ms; the simulated Oz takes 2 s)"
    );
    let _ = writeln!(
        out,
        "   the client got {status} at once: {}",
        String::from_utf8_lossy(&body)
    );
    print!("{out}");
    out.clear();
    match backend
        .wait_for(LATE_PATH, std::time::Duration::from_secs(10))
        .await
    {
        Some(late) => {
            let _ = writeln!(
                out,
                "   then the backend received {} {}: {}",
                late.method,
                late.path,
                String::from_utf8_lossy(&late.late_body)
            );
            if let Some(token) = late
                .headers
                .get("x-oz-verdict-token")
                .and_then(|v| v.to_str().ok())
            {
                let _ = writeln!(out, "     with a fresh token, decoded:");
                describe_token(&mut out, token);
            }
            if let (Some(addr), Some(folder)) = (
                proxy.verdict_addr,
                late.headers
                    .get("x-oz-folder-id")
                    .and_then(|v| v.to_str().ok()),
            ) {
                let _ = writeln!(
                    out,
                    "   any replica answers the same: curl -s http://{addr}/verdicts/{folder}\n"
                );
            }
        }
        None => {
            let _ = writeln!(out, "   no late verdict within 10 s\n");
        }
    }
    sim.set_processing_for(std::time::Duration::ZERO);

    let bad = br#"{"action":"video_selfie_blank","frame_list":["data:image/jpeg;base64,@@@"],"additional_info":"x"}"#.to_vec();
    let (status, _, body) = post(&client, &format!("{base}{FORWARD_PATH}"), bad).await?;
    let _ = writeln!(
        out,
        "4) a corrupt frame is refused before Oz or the backend see anything:"
    );
    let _ = writeln!(out, "   {status}: {}\n", String::from_utf8_lossy(&body));

    let (status, _, body) = post(&client, &format!("{base}{FORWARD_PATH}"), capture).await?;
    let _ = writeln!(
        out,
        "5) the capture of 1) sent again is a replay, refused before Oz or the backend see it:"
    );
    let _ = writeln!(out, "   {status}: {}\n", String::from_utf8_lossy(&body));

    let _ = writeln!(
        out,
        "Try it yourself (a new sample capture is in {}):",
        sample_file.display()
    );
    let _ = writeln!(out, "  curl -s -X POST -H 'content-type: application/json' --data-binary @{} {base}{FORWARD_PATH}", sample_file.display());
    let _ = writeln!(
        out,
        "  (the same command again: 409 capture_replayed; capture.replay, README \"Abuse control\")"
    );
    let _ = writeln!(
        out,
        "  curl -s {base}/anything/else            # passthrough to the backend"
    );
    let _ = writeln!(
        out,
        "  curl -s http://{oz_addr}/_sim/uploads   # what Oz received"
    );
    let _ = writeln!(out, "  curl -s http://{}/metrics", proxy.admin_addr);
    let _ = writeln!(out, "\nServing until Ctrl-C.");
    print!("{out}");

    stop.cancelled().await;
    proxy.shutdown();
    let stopped = proxy.wait().await;
    let _ = std::fs::remove_file(&key_file);
    stopped
}

fn describe_upload(out: &mut String, sim: &OzSim) {
    let uploads = sim.uploads();
    let Some(u) = uploads.last() else {
        let _ = writeln!(out, "   Oz received nothing");
        return;
    };
    let _ = writeln!(
        out,
        "   Oz received folder {} ({}):",
        u.folder_id,
        u.content_type.split(';').next().unwrap_or("")
    );
    for p in &u.parts {
        let _ = writeln!(
            out,
            "     part {:<8} {:<18} {:>7} bytes {}",
            p.name,
            p.content_type.as_deref().unwrap_or("-"),
            p.bytes.len(),
            p.filename
                .as_deref()
                .map(|f| format!("filename={f}"))
                .unwrap_or_default()
        );
    }
    let names: Vec<&str> = u.zip_entries.iter().map(|(n, _)| n.as_str()).collect();
    let _ = writeln!(out, "     ZIP entries: {}", names.join(", "));
    if let Some(payload) = &u.payload {
        let _ = writeln!(
            out,
            "     media:tags: {}",
            payload
                .get("media:tags")
                .map(|v| v.to_string())
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "     folder:meta_data: {}",
            payload
                .get("folder:meta_data")
                .map(|v| v.to_string())
                .unwrap_or_default()
        );
        let has_info = payload
            .pointer("/media:meta_data")
            .map(|m| m.to_string().contains("additional_info"))
            .unwrap_or(false);
        let _ = writeln!(
            out,
            "     media:meta_data carries additional_info: {has_info}"
        );
    }
}

/// Prints the header and claims of a compact JWS, as any JWT debugger would.
fn describe_token(out: &mut String, token: &str) {
    use base64::Engine as _;
    for (what, part) in ["header", "claims"].into_iter().zip(token.split('.')) {
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let _ = writeln!(
            out,
            "       {what}: {}",
            decoded.map_or_else(|| "(unreadable)".to_owned(), |v| v.to_string())
        );
    }
}

/// A fresh Ed25519 key for this run's tokens, as PKCS#8 PEM (what `openssl genpkey -algorithm
/// ed25519` writes) in a file only this user can read.
fn write_demo_key() -> anyhow::Result<PathBuf> {
    use base64::Engine as _;
    let pkcs8 =
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate the demo's Ed25519 key"))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let path = std::env::temp_dir().join(format!(
        "oz-capture-proxy-demo-{}-verdict.pem",
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&path)?, pem.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn write_sample(capture: &[u8]) -> anyhow::Result<PathBuf> {
    let path =
        std::env::temp_dir().join(format!("oz-capture-proxy-demo-{}.json", std::process::id()));
    std::fs::write(&path, capture).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

async fn post(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    url: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, HeaderMap, Bytes)> {
    let req = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let rsp = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(req))
        .await
        .context("request timed out")??;
    let status = rsp.status().as_u16();
    let headers = rsp.headers().clone();
    let body = rsp.into_body().collect().await?.to_bytes();
    Ok((status, headers, body))
}

/// What the stand-in backend saw last.
#[derive(Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body_len: usize,
    /// The body of a late verdict (a small JSON report); empty for anything else.
    late_body: Bytes,
}

/// A legacy backend stand-in: answers 200 with a short JSON and remembers the last request.
#[derive(Clone, Default)]
struct StandIn {
    last: Arc<Mutex<Option<Seen>>>,
    /// Signalled on every request it answers.
    answered: Arc<tokio::sync::Notify>,
}

impl StandIn {
    fn last(&self) -> Option<Seen> {
        self.last
            .lock()
            .expect("lock poisoned only by a panic")
            .clone()
    }

    /// The next request on `path`, waited for at most `limit`.
    async fn wait_for(&self, path: &str, limit: std::time::Duration) -> Option<Seen> {
        tokio::time::timeout(limit, async {
            loop {
                let answered = self.answered.notified();
                if let Some(seen) = self.last().filter(|s| s.path == path) {
                    return seen;
                }
                answered.await;
            }
        })
        .await
        .ok()
    }

    async fn serve(self, listener: TcpListener, stop: CancellationToken) {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            };
            let this = self.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let resolution = parts
            .headers
            .get("x-oz-resolution")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        let late_body = if parts.uri.path() == LATE_PATH {
            body.clone()
        } else {
            Bytes::new()
        };
        *self.last.lock().expect("lock poisoned only by a panic") = Some(Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body_len: body.len(),
            late_body,
        });
        self.answered.notify_one();
        let doc = serde_json::json!({ "backend": "legacy stand-in", "saw_resolution": resolution });
        let mut rsp = Response::new(Full::new(Bytes::from(doc.to_string())));
        rsp.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        rsp
    }
}
