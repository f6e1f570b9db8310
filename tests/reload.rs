//! Config reload: a good change is applied, a bad one refused, and traffic never stops; a file
//! that would drop or weaken a capture route is refused too. Harness: `support` (the proxy
//! started from a config file it polls, the Oz simulator and the recording backend).

mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use oz_capture_proxy::config::Config;
use support::backend::{backend, Backend, Reply};
use support::bin::TempDir;
use support::client::{self, full, HttpClient};
use support::proxy::{start_from_file, Proxy};

const LIMIT: Duration = Duration::from_secs(20);

/// A backend that answers 200 "backend" to everything.
async fn start_backend() -> Backend {
    backend()
        .reply(|_| Reply::status(StatusCode::OK).body(Bytes::from_static(b"backend")))
        .start()
        .await
}

fn config_text(backend: std::net::SocketAddr, routes: &[&str]) -> String {
    let mut s = format!(
        "listen: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\nbackend:\n  url: \"http://{backend}\"\nreload:\n  interval: \"20ms\"\nshutdown:\n  drain_delay: \"0s\"\noz:\n  url: \"http://127.0.0.1:9\"\n  auth:\n    token: \"t\"\ncapture:\n  routes:\n"
    );
    for r in routes {
        s.push_str(&format!("    - path: \"{r}\"\n      on_result: respond\n"));
    }
    if routes.is_empty() {
        s = s.replace("  routes:\n", "  routes: []\n");
    }
    s
}

/// POSTs text to `path`; returns the status.
async fn post(client: &HttpClient, base: &str, path: &str) -> u16 {
    let req = Request::post(format!("{base}{path}"))
        .header("content-type", "text/plain")
        .body(full(Bytes::from_static(b"hello")))
        .unwrap();
    let rsp = client::send(client, req).await;
    let status = rsp.status().as_u16();
    let _ = rsp.into_body().collect().await;
    status
}

/// Whether the proxy's metrics text contains `needle`.
async fn metric(proxy: &Proxy, needle: &str) -> bool {
    proxy.metrics().await.contains(needle)
}

/// Waits (bounded) until the reload counter `result` exceeds `above`. Polls `/metrics`: the
/// reload poll gives no other signal a test could wait on.
async fn wait_reloads(proxy: &Proxy, result: &str, above: f64) {
    let series = format!("oz_proxy_config_reloads_total{{result=\"{result}\"}}");
    support::within_for(LIMIT, &format!("a reload counted as {result}"), async {
        while proxy.metric(&series).await <= above {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn reload_applies_good_config_refuses_bad_one_and_keeps_serving() {
    let backend = start_backend().await;
    let dir = TempDir::new("reload-good-bad");
    let path = dir.write("config.yaml", config_text(backend.addr, &["/a"]));
    let proxy = start_from_file(&path).await;
    let base = proxy.url("");
    let client = client::http1();

    // Traffic on a kept-alive pool runs all along; every answer must come from the backend.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic = {
        let (client, base, stop, ok, failed) = (
            client.clone(),
            base.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let counter = if post(&client, &base, "/other").await == 200 {
                    &ok
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // Before: /b is not a capture route, so a text POST passes through.
    assert_eq!(post(&client, &base, "/b").await, 200);
    assert_eq!(post(&client, &base, "/a").await, 415);

    // A good change: /b becomes a capture route (and refuses text with 415).
    std::fs::write(&path, config_text(backend.addr, &["/a", "/b"])).unwrap();
    wait_reloads(&proxy, "applied", 0.0).await;
    assert_eq!(post(&client, &base, "/b").await, 415);

    // A bad change: refused, counted, and the previous routes stay.
    std::fs::write(
        &path,
        "backend:\n  url: \"http://x\"\ncapture:\n  nonsense: 1\n",
    )
    .unwrap();
    wait_reloads(&proxy, "rejected", 0.0).await;
    assert_eq!(post(&client, &base, "/b").await, 415);
    assert_eq!(post(&client, &base, "/a").await, 415);
    assert!(
        metric(
            &proxy,
            r#"oz_proxy_config_reloads_total{result="applied"} 1"#
        )
        .await
    );

    stop.store(true, Ordering::Relaxed);
    support::within_for(LIMIT, "the background traffic to stop", traffic)
        .await
        .unwrap();
    assert!(ok.load(Ordering::Relaxed) > 0, "no background traffic ran");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a request failed during reload"
    );

    proxy.shutdown();
    proxy.wait_for(LIMIT).await.unwrap();
}

/// A capture through `base` on `path`; returns the status.
async fn capture(client: &HttpClient, base: &str, path: &str) -> u16 {
    let body =
        oz_capture_proxy::capture::testdata::sample_capture_json(2, false, "video_selfie_blank");
    let req = Request::post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap();
    let rsp = client::send(client, req).await;
    let status = rsp.status().as_u16();
    let _ = rsp.into_body().collect().await;
    status
}

#[tokio::test]
async fn reload_that_leaves_oz_settings_alone_keeps_the_login_token() {
    use oz_capture_proxy::oz_sim::{self, SimConfig};
    let running_sim = support::sim::Sim::start(SimConfig {
        polls_until_final: 0,
        ..SimConfig::default()
    })
    .await;
    let (sim, oz_addr) = (&running_sim.sim, running_sim.addr);
    let backend = start_backend().await;
    let backend_addr = backend.addr;
    let text = |routes: &str| {
        format!(
            "listen: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\nbackend:\n  url: \"http://{backend_addr}\"\nreload:\n  interval: \"20ms\"\nshutdown:\n  drain_delay: \"0s\"\noz:\n  url: \"http://{oz_addr}\"\n  auth:\n    email: \"{}\"\n    password: \"{}\"\ncapture:\n  wait_for_result: \"5s\"\n  routes:\n{routes}",
            oz_sim::DEFAULT_EMAIL,
            oz_sim::DEFAULT_PASSWORD
        )
    };
    let dir = TempDir::new("reload-keep-token");
    let path = dir.write(
        "config.yaml",
        text("    - path: /a\n      on_result: respond\n"),
    );
    let proxy = start_from_file(&path).await;
    let base = proxy.url("");
    let client = client::http1();
    let logins = || {
        sim.calls()
            .iter()
            .filter(|c| c.endpoint.as_deref() == Some("auth"))
            .count()
    };

    assert_eq!(capture(&client, &base, "/a").await, 200);
    assert_eq!(logins(), 1);

    // Only the routes change: the Oz client, and with it the token, stays.
    std::fs::write(
        &path,
        text(
            "    - path: /a\n      on_result: respond\n    - path: /b\n      on_result: respond\n",
        ),
    )
    .unwrap();
    wait_reloads(&proxy, "applied", 0.0).await;
    assert_eq!(capture(&client, &base, "/b").await, 200);
    assert_eq!(logins(), 1, "a reload that left `oz` alone logged in again");

    proxy.shutdown();
    proxy.wait_for(LIMIT).await.unwrap();
    running_sim.stop().await;
}

// === capture routes across reloads ===

use oz_capture_proxy::capture::testdata::sample_capture_json;
use support::stack::{self as cs, Stack};

/// What the capture cases do with a stack started from its config file.
impl Stack {
    async fn capture(&self, path: &str) -> cs::Reply {
        self.post(path, sample_capture_json(2, false, "video_selfie_blank"))
            .await
    }

    /// The value of `oz_proxy_config_reloads_total{result}`.
    async fn reloads(&self, result: &str) -> f64 {
        self.proxy
            .metric(&format!(
                "oz_proxy_config_reloads_total{{result=\"{result}\"}}"
            ))
            .await
    }

    /// Waits until the reload counter `result` exceeds `above`.
    async fn wait_reloads(&self, result: &str, above: f64) {
        wait_reloads(&self.proxy, result, above).await
    }
}

/// The backend's last request carried a verdict from Oz.
fn assert_checked(stack: &Stack, backend_requests: usize, uploads: usize) {
    let seen = stack.backend.seen();
    assert_eq!(seen.len(), backend_requests);
    let last = seen.last().unwrap();
    assert_eq!(last.get("x-oz-resolution"), Some("SUCCESS"));
    assert!(last.get("x-oz-folder-id").is_some());
    assert_eq!(stack.sim.sim.accepted_uploads().len(), uploads);
}

#[tokio::test]
async fn a_file_cut_before_its_capture_routes_is_refused_and_captures_stay_checked() {
    let body = format!("{}{}", cs::oz_token(""), cs::forward_route(""));
    let stack = Stack::start_from_file(cs::sim_config(), &body).await;
    let full = stack.config(&body);

    stack.capture(cs::CAPTURE).await.assert_from_backend();
    assert_checked(&stack, 1, 1);

    // `cat > file` mid-write: everything before `capture:` is there, and it is a valid config.
    let cut = &full[..full.find("capture:").unwrap()];
    Config::from_yaml(cut, &Default::default()).expect("the cut file is a valid config");
    stack.rewrite(cut);
    stack.wait_reloads("rejected", 0.0).await;
    assert_eq!(stack.reloads("applied").await, 0.0);

    // The route is still a capture route: Oz checks the capture and the backend gets the verdict.
    stack.capture(cs::CAPTURE).await.assert_from_backend();
    assert_checked(&stack, 2, 2);

    // The writer finishes, with one route more: adding is allowed.
    let more = format!("{body}    - path: \"/api/liveness/capture2\"\n      on_result: forward\n");
    stack.rewrite(&stack.config(&more));
    stack.wait_reloads("applied", 0.0).await;
    stack
        .capture("/api/liveness/capture2")
        .await
        .assert_from_backend();
    assert_checked(&stack, 3, 3);
    stack.capture(cs::CAPTURE).await.assert_from_backend();
    assert_checked(&stack, 4, 4);

    stack.stop().await;
}

#[tokio::test]
async fn a_reload_that_weakens_a_capture_route_is_refused() {
    let body = format!(
        "{}capture:\n  wait_for_result: \"5s\"\n  analyses: [\"quality\"]\n  routes:\n    - path: \"{}\"\n      on_result: forward\n",
        cs::oz_token(""),
        cs::CAPTURE
    );
    let stack = Stack::start_from_file(cs::sim_config(), &body).await;

    // on_oz_error: forward lets a capture Oz never checked reach the backend.
    let weaker = format!("{body}      on_oz_error: forward\n");
    stack.rewrite(&stack.config(&weaker));
    stack.wait_reloads("rejected", 0.0).await;

    // Stronger (a longer wait) is applied.
    stack.rewrite(&stack.config(&body.replace("\"5s\"", "\"6s\"")));
    stack.wait_reloads("applied", 0.0).await;

    // Oz fails: the route still rejects, so the backend gets nothing.
    stack
        .sim
        .sim
        .fail_next(oz_capture_proxy::oz_sim::Endpoint::Folders, 503, 1);
    let r = stack.capture(cs::CAPTURE).await;
    r.problem(502, "oz_error");
    assert!(stack.backend.seen().is_empty());

    stack.stop().await;
}

// === secret files ===

/// A file holding a secret, in the temporary directory; removed by `stop` callers.
fn secret_file(name: &str, value: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("oz-reload-{}-{name}", std::process::id()));
    // A trailing newline, as mounted Secrets often have; it is not part of the secret.
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

#[tokio::test]
async fn a_rotated_token_file_is_used_without_touching_the_config_file() {
    let token_file = secret_file("token", "token-one");
    let sim = oz_capture_proxy::oz_sim::SimConfig {
        token: Some("token-one".into()),
        ..cs::sim_config()
    };
    let body = format!(
        "oz:\n  url: \"http://{{oz}}\"\n  auth:\n    token_file: \"{}\"\n{}",
        token_file.display(),
        cs::forward_route("")
    );
    let stack = Stack::start_from_file(sim, &body).await;
    stack.capture(cs::CAPTURE).await.assert_from_backend();

    // A half-written config file is refused and stays on disk...
    let full = stack.config(&body);
    let cut = full[..full.find("capture:").unwrap()].to_owned();
    stack.rewrite(&cut);
    stack.wait_reloads("rejected", 0.0).await;

    // ... when Oz revokes the old token and the Secret is updated in place with the new one.
    stack.sim.sim.set_service_token(Some("token-two"));
    std::fs::write(&token_file, "token-two\n").unwrap();
    stack.wait_reloads("applied", 0.0).await;

    // The config in force (with its route) now runs with the new token.
    stack.capture(cs::CAPTURE).await.assert_from_backend();
    assert_checked(&stack, 2, 2);
    assert_eq!(std::fs::read_to_string(stack.config_path()).unwrap(), cut);
    assert_eq!(stack.reloads("rejected").await, 1.0);

    stack.stop().await;
    let _ = std::fs::remove_file(&token_file);
}

#[tokio::test]
async fn a_rotated_password_file_drops_the_session_and_logs_in_again() {
    use oz_capture_proxy::oz_sim::{DEFAULT_EMAIL, DEFAULT_PASSWORD};
    let password_file = secret_file("password", DEFAULT_PASSWORD);
    let body = format!(
        "oz:\n  url: \"http://{{oz}}\"\n  auth:\n    email: \"{DEFAULT_EMAIL}\"\n    password_file: \"{}\"\n{}",
        password_file.display(),
        cs::forward_route("")
    );
    let stack = Stack::start_from_file(cs::sim_config(), &body).await;
    let logins = || {
        stack
            .sim
            .sim
            .calls()
            .iter()
            .filter(|c| c.endpoint.as_deref() == Some("auth") && c.status == 200)
            .count()
    };
    stack.capture(cs::CAPTURE).await.assert_from_backend();
    assert_eq!(logins(), 1);

    stack.sim.sim.set_password("password-two");
    std::fs::write(&password_file, "password-two\n").unwrap();
    stack.wait_reloads("applied", 0.0).await;

    // The session of the old password is not kept: a new login, with the new password.
    stack.capture(cs::CAPTURE).await.assert_from_backend();
    assert_checked(&stack, 2, 2);
    assert_eq!(logins(), 2);

    stack.stop().await;
    let _ = std::fs::remove_file(&password_file);
}
