//! Black-box tests of `oz::OzClient` against small Oz stand-ins written here.
//!
//! Each test starts support's recording backend on 127.0.0.1:0 with a reply closure made for
//! that test (these are not the simulator in `oz_sim`, on purpose: a bug shared by both would
//! hide). Stand-ins record every request they get and stop when dropped. Every test body runs under
//! `support::within`, so a hang fails the test instead of stalling the suite; nothing sleeps to
//! wait.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{StatusCode, Version};
use oz_capture_proxy::config::{OzApiMode, OzAuthConfig, OzConfig};
use oz_capture_proxy::metrics::{self, Metrics};
use oz_capture_proxy::oz::{Error, OzClient, Resolution, UploadBody};
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use support::backend::{backend, Backend, Recorded, Reply};
use support::raw::{RawAction, RawBackend};
use support::within;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

// === harness ===

/// Reading a request as Oz would.
impl Recorded {
    fn token(&self) -> Option<String> {
        self.headers
            .get("x-forensic-access-token")
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// The requests an Oz stand-in got.
impl Backend {
    fn count(&self, method: &str, path: &str) -> usize {
        self.seen().iter().filter(|s| s.is(method, path)).count()
    }
}

fn json_reply(status: u16, v: Value) -> Reply {
    Reply::status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Bytes::from(v.to_string()))
}

fn not_found(s: &Recorded) -> Reply {
    json_reply(
        404,
        json!({"error_code": 10, "error_message": format!("no route {} {}", s.method, s.path)}),
    )
}

const STATIC_TOKEN: &str = "static-service-token";

fn config(url: http::Uri) -> OzConfig {
    OzConfig {
        url,
        api: OzApiMode::Folders,
        ca_file: None,
        connect_timeout: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        auth: OzAuthConfig {
            token: STATIC_TOKEN.into(),
            ..Default::default()
        },
    }
}

fn login_config(url: http::Uri) -> OzConfig {
    OzConfig {
        auth: OzAuthConfig {
            email: "svc@example.com".into(),
            password: "pa55word".into(),
            renew_before: Duration::from_secs(60),
            ..Default::default()
        },
        ..config(url)
    }
}

fn client(cfg: &OzConfig) -> (OzClient, Registry) {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    (
        OzClient::new(cfg, metrics).expect("client builds"),
        registry,
    )
}

/// A multipart-looking upload in three chunks, the middle one large.
fn upload() -> UploadBody {
    UploadBody {
        content_type: "multipart/form-data; boundary=oz-test-boundary".into(),
        chunks: vec![
            Bytes::from_static(b"--oz-test-boundary\r\nContent-Disposition: form-data; name=\"video1\"; filename=\"frames.zip\"\r\nContent-Type: application/zip\r\n\r\n"),
            Bytes::from((0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
            Bytes::from_static(b"\r\n--oz-test-boundary--\r\n"),
        ],
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn folder_answer(id: &str) -> Reply {
    json_reply(
        201,
        json!({"folder_id": id, "resolution_status": "INITIAL", "media": [{"media_id": "m-1"}]}),
    )
}

fn analysis(id: &str, status: &str) -> Value {
    json!({"analysis_id": id, "type": "QUALITY", "state": "PROCESSING", "resolution_status": status})
}

// === upload ===

#[tokio::test]
async fn static_token_is_sent_with_the_upload() {
    within("the test body", async {
        let oz = backend()
            .reply(|s| {
                if s.is("POST", "/api/folders/") {
                    folder_answer("f-1")
                } else {
                    not_found(s)
                }
            })
            .start()
            .await;
        let (c, _) = client(&config(oz.uri()));
        let folder = c.create_folder(&upload(), "req-1").await.unwrap();
        assert_eq!(folder.folder_id, "f-1");
        let seen = oz.seen();
        assert_eq!(seen.len(), 1, "no login with a static token");
        assert_eq!(seen[0].token().as_deref(), Some(STATIC_TOKEN));
    })
    .await;
}

#[tokio::test]
async fn upload_arrives_with_exact_content_length_and_the_chunks_as_sent() {
    within("the test body", async {
        let oz = backend().reply(|_| folder_answer("f-1")).start().await;
        let (c, _) = client(&config(oz.uri()));
        let up = upload();
        c.create_folder(&up, "req-1").await.unwrap();
        let seen = &oz.seen()[0];
        assert_eq!(
            seen.headers["content-length"].to_str().unwrap(),
            up.content_length().to_string()
        );
        assert!(
            !seen.headers.contains_key("transfer-encoding"),
            "not chunked"
        );
        assert_eq!(seen.headers["content-type"], up.content_type.as_str());
        assert_eq!(&seen.body[..], &up.to_vec()[..]);
    })
    .await;
}

// === auth ===

/// A stand-in with login, refresh and folders. Tokens are `tok-N` for the N-th token issued;
/// tokens below `min_valid` are refused with 401 error_code 8.
struct AuthOz {
    issued: AtomicUsize,
    logins: AtomicUsize,
    refreshes: AtomicUsize,
    min_valid: AtomicUsize,
    /// `expire_date` in each login answer (`None`: left out).
    login_expire: Mutex<Option<Value>>,
    refresh_status: AtomicUsize,
}

impl AuthOz {
    fn new(login_expire: Option<Value>) -> Arc<AuthOz> {
        Arc::new(AuthOz {
            issued: AtomicUsize::new(0),
            logins: AtomicUsize::new(0),
            refreshes: AtomicUsize::new(0),
            min_valid: AtomicUsize::new(1),
            login_expire: Mutex::new(login_expire),
            refresh_status: AtomicUsize::new(200),
        })
    }

    fn issue(&self, expire_date: Option<Value>) -> Reply {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut body = json!({"access_token": format!("tok-{n}"), "expire_token": format!("exp-{n}"), "user": {"user_type": "CLIENT"}});
        if let Some(e) = expire_date {
            body["expire_date"] = e;
        }
        json_reply(200, body)
    }

    fn token_number(s: &Recorded) -> usize {
        s.token()
            .and_then(|t| t.strip_prefix("tok-").and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }

    fn answer(&self, s: &Recorded) -> Reply {
        match (s.method.as_str(), s.path.as_str()) {
            ("POST", "/api/authorize/auth/") => {
                assert_eq!(
                    s.json(),
                    json!({"credentials": {"email": "svc@example.com", "password": "pa55word"}})
                );
                self.logins.fetch_add(1, Ordering::SeqCst);
                self.issue(self.login_expire.lock().unwrap().clone())
            }
            ("POST", "/api/authorize/refresh/") => {
                self.refreshes.fetch_add(1, Ordering::SeqCst);
                let n = Self::token_number(s);
                assert_eq!(
                    s.json(),
                    json!({"expire_token": format!("exp-{n}")}),
                    "refresh sends the expire_token of the current token"
                );
                let status = self.refresh_status.load(Ordering::SeqCst) as u16;
                if status != 200 {
                    return json_reply(status, json!({"error_code": 0, "error_message": "down"}));
                }
                self.issue(Some(json!(unix_now() + 3600.0)))
            }
            ("POST", "/api/folders/") => {
                if Self::token_number(s) < self.min_valid.load(Ordering::SeqCst) {
                    json_reply(
                        401,
                        json!({"error_code": 8, "error_message": "Token expired", "details": null}),
                    )
                } else {
                    folder_answer("f-1")
                }
            }
            _ => not_found(s),
        }
    }
}

fn tokens_used(oz: &Backend) -> Vec<String> {
    oz.seen()
        .iter()
        .filter(|s| s.is("POST", "/api/folders/"))
        .map(|s| s.token().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn login_token_is_reused_across_calls() {
    within("the test body", async {
        // No expire_date: the 15-minute default applies, far beyond renew_before.
        let state = AuthOz::new(None);
        let st = state.clone();
        let oz = backend().reply(move |s| st.answer(s)).start().await;
        let (c, _) = client(&login_config(oz.uri()));
        for _ in 0..3 {
            c.create_folder(&upload(), "req").await.unwrap();
        }
        assert_eq!(state.logins.load(Ordering::SeqCst), 1);
        assert_eq!(state.refreshes.load(Ordering::SeqCst), 0);
        assert_eq!(tokens_used(&oz), ["tok-1", "tok-1", "tok-1"]);
    })
    .await;
}

#[tokio::test]
async fn token_is_renewed_before_it_expires() {
    within("the test body", async {
        // The token lives 30 s but renew_before is 60 s: it is due at once after login, so the
        // next call refreshes it, and the refreshed one (1 h) is then kept.
        let state = AuthOz::new(Some(json!(format!("{:.3}", unix_now() + 30.0))));
        let st = state.clone();
        let oz = backend().reply(move |s| st.answer(s)).start().await;
        let (c, _) = client(&login_config(oz.uri()));
        for _ in 0..3 {
            c.create_folder(&upload(), "req").await.unwrap();
        }
        assert_eq!(state.logins.load(Ordering::SeqCst), 1);
        assert_eq!(state.refreshes.load(Ordering::SeqCst), 1);
        assert_eq!(tokens_used(&oz), ["tok-1", "tok-2", "tok-2"]);
    })
    .await;
}

#[tokio::test]
async fn failed_refresh_falls_back_to_login() {
    within("the test body", async {
        let state = AuthOz::new(Some(json!(unix_now() + 30.0)));
        state.refresh_status.store(503, Ordering::SeqCst);
        let st = state.clone();
        let oz = backend().reply(move |s| st.answer(s)).start().await;
        let (c, _) = client(&login_config(oz.uri()));
        c.create_folder(&upload(), "req").await.unwrap();
        c.create_folder(&upload(), "req").await.unwrap();
        assert_eq!(state.refreshes.load(Ordering::SeqCst), 1);
        assert_eq!(state.logins.load(Ordering::SeqCst), 2);
        assert_eq!(tokens_used(&oz), ["tok-1", "tok-2"]);
    })
    .await;
}

#[tokio::test]
async fn expired_token_is_renewed_once_for_concurrent_calls() {
    within("the test body", async {
        const CALLS: usize = 5;
        let state = AuthOz::new(None);
        // Requests with the stale token are held until all CALLS have arrived, so every call
        // really sees the 401 before anyone renews.
        let barrier = Arc::new(tokio::sync::Barrier::new(CALLS));
        let (st, b) = (state.clone(), barrier.clone());
        let oz = backend()
            .reply_async(move |s| {
                let (st, b) = (st.clone(), b.clone());
                async move {
                    let stale = s.is("POST", "/api/folders/")
                        && AuthOz::token_number(&s) < st.min_valid.load(Ordering::SeqCst);
                    if stale {
                        b.wait().await;
                    }
                    st.answer(&s)
                }
            })
            .start()
            .await;
        let (c, _) = client(&login_config(oz.uri()));
        c.create_folder(&upload(), "warm-up").await.unwrap();
        // Oz now considers tok-1 expired.
        state.min_valid.store(2, Ordering::SeqCst);

        let mut calls = JoinSet::new();
        for i in 0..CALLS {
            let c = c.clone();
            calls.spawn(async move { c.create_folder(&upload(), &format!("req-{i}")).await });
        }
        while let Some(r) = calls.join_next().await {
            assert_eq!(r.unwrap().unwrap().folder_id, "f-1");
        }
        assert_eq!(
            state.logins.load(Ordering::SeqCst),
            2,
            "one login, then exactly one re-login"
        );
        let used = tokens_used(&oz);
        assert_eq!(used.iter().filter(|t| *t == "tok-1").count(), 1 + CALLS);
        assert_eq!(used.iter().filter(|t| *t == "tok-2").count(), CALLS);
    })
    .await;
}

#[tokio::test]
async fn refused_static_token_is_an_auth_error() {
    within("the test body", async {
        let oz = backend()
            .reply(|_| {
                json_reply(
                    401,
                    json!({"error_code": 7, "error_message": "Token not found"}),
                )
            })
            .start()
            .await;
        let (c, _) = client(&config(oz.uri()));
        let err = c.create_folder(&upload(), "req").await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Auth {
                    error_code: Some(7)
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            oz.seen().len(),
            1,
            "no login and no resend with a static token"
        );
    })
    .await;
}

#[tokio::test]
async fn refused_credentials_are_an_auth_error() {
    within("the test body", async {
        let oz = backend().reply(|s| {
            if s.is("POST", "/api/authorize/auth/") {
                json_reply(401, json!({"error_code": 7, "error_message": "bad credentials for svc@example.com"}))
            } else {
                not_found(s)
            }
        }).start()
        .await;
        let (c, _) = client(&login_config(oz.uri()));
        let err = c.create_folder(&upload(), "req").await.unwrap_err();
        assert!(matches!(err, Error::Auth { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("svc@example.com") && !shown.contains("pa55word"), "{shown}");
        assert_eq!(oz.count("POST", "/api/folders/"), 0);
    })
    .await;
}

// === errors and retries ===

#[tokio::test]
async fn oz_error_body_becomes_an_api_error_and_a_metric() {
    within("the test body", async {
        let long = format!("Invalid structure: {}", "x".repeat(1000));
        let oz = backend()
            .reply(move |_| {
                json_reply(
                    400,
                    json!({"error_code": 3, "error_message": long, "details": null}),
                )
            })
            .start()
            .await;
        let (c, registry) = client(&config(oz.uri()));
        match c.create_folder(&upload(), "req").await.unwrap_err() {
            Error::Api {
                endpoint,
                status,
                error_code,
                message,
            } => {
                assert_eq!((endpoint, status, error_code), ("folders", 400, Some(3)));
                assert!(message.starts_with("Invalid structure"));
                assert!(
                    message.chars().count() <= 201,
                    "truncated: {}",
                    message.len()
                );
            }
            other => panic!("{other:?}"),
        }
        let text = metrics::render(&registry);
        assert!(
            text.contains(r#"oz_proxy_oz_errors_total{endpoint="folders",code="3"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"oz_proxy_oz_request_duration_seconds_count{endpoint="folders"} 1"#),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn folder_creation_is_not_resent_after_a_5xx() {
    within("the test body", async {
        let oz = backend()
            .reply(|_| {
                json_reply(
                    503,
                    json!({"error_code": 0, "error_message": "Unknown server side error occurred"}),
                )
            })
            .start()
            .await;
        let (c, _) = client(&config(oz.uri()));
        let err = c.create_folder(&upload(), "req").await.unwrap_err();
        assert!(matches!(err, Error::Api { status: 503, .. }), "{err:?}");
        assert_eq!(oz.count("POST", "/api/folders/"), 1);
    })
    .await;
}

#[tokio::test]
async fn slow_oz_gives_timeout_without_resending_the_upload() {
    within("the test body", async {
        // The handler never answers; the server drops it when the test ends.
        let oz = backend()
            .reply_async(|_| std::future::pending::<Reply>())
            .start()
            .await;
        let mut cfg = config(oz.uri());
        cfg.timeout = Duration::from_millis(300);
        let (c, registry) = client(&cfg);
        let err = c.create_folder(&upload(), "req").await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Timeout {
                    endpoint: "folders"
                }
            ),
            "{err:?}"
        );
        assert_eq!(oz.count("POST", "/api/folders/"), 1);
        assert!(metrics::render(&registry).contains(r#"code="timeout""#));
    })
    .await;
}

/// A server that reads each request in full, then hangs up without answering: the upload
/// reached "Oz", and the client cannot know whether a folder was created.
async fn hang_up() -> RawBackend {
    RawBackend::start(|_, _| RawAction::Close).await
}

/// How many requests `backend` has read in full so far.
fn requests(backend: &mut RawBackend) -> usize {
    std::iter::from_fn(|| backend.try_next()).count()
}

#[tokio::test]
async fn upload_is_not_resent_when_oz_hangs_up_after_receiving_it() {
    within("the test body", async {
        let mut oz = hang_up().await;
        let (c, _) = client(&config(format!("http://{}", oz.addr).parse().unwrap()));
        let err = c.create_folder(&upload(), "req").await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Unreachable {
                    endpoint: "folders",
                    sent: true,
                    ..
                }
            ),
            "{err:?}"
        );
        // Oz may have made the folder: the replay guard keeps the capture spent.
        assert!(err.may_have_been_taken());
        assert_eq!(requests(&mut oz), 1, "sent exactly once");
    })
    .await;
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    within("the test body", async {
        // A port that was just free: bind, note it, release it.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (c, _) = client(&config(format!("http://{addr}").parse().unwrap()));
        let err = c.create_folder(&upload(), "req").await.unwrap_err();
        assert!(!err.may_have_been_taken(), "nothing was sent: {err:?}");
        match err {
            Error::Unreachable {
                endpoint,
                reason,
                sent: false,
            } => {
                assert_eq!(endpoint, "folders");
                assert!(reason.to_lowercase().contains("refused"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
}

// === the check flow ===

/// Folders mode stand-in: upload, start, and a poll answered by `poll(n)` for the n-th poll.
async fn flow_oz(poll: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Backend {
    let polls = AtomicUsize::new(0);
    backend()
        .reply(move |s| match (s.method.as_str(), s.path.as_str()) {
            ("POST", "/api/folders/") => folder_answer("f-9"),
            ("POST", "/api/folders/f-9/analyses/") => {
                json_reply(201, json!([analysis("a-1", "PROCESSING")]))
            }
            ("GET", "/api/analyses/a-1") => poll(polls.fetch_add(1, Ordering::SeqCst) + 1),
            _ => not_found(s),
        })
        .start()
        .await
}

fn quality() -> Vec<String> {
    vec!["quality".to_string()]
}

#[tokio::test]
async fn analyses_are_started_and_polled_until_final() {
    within("the test body", async {
        let oz = flow_oz(|n| {
            // The older `analyse_id` spelling and a lowercase status, as some versions send.
            let status = if n < 3 { "PROCESSING" } else { "success" };
            json_reply(200, json!({"analyse_id": "a-1", "type": "QUALITY", "state": "FINISHED", "resolution_status": status}))
        })
        .await;
        let (c, _) = client(&config(oz.uri()));
        let v = c
            .check(&upload(), &quality(), Duration::from_secs(8), "req")
            .await
            .unwrap();
        assert_eq!(v.folder_id, "f-9");
        assert_eq!(v.resolution, Resolution::Success);
        assert_eq!(v.analyses[0].id, "a-1");
        assert_eq!(oz.count("GET", "/api/analyses/a-1"), 3);
        let start = oz
            .seen()
            .into_iter()
            .find(|s| s.is("POST", "/api/folders/f-9/analyses/"))
            .unwrap();
        assert_eq!(start.json(), json!({"analyses": [{"type": "quality"}]}));
        assert_eq!(start.token().as_deref(), Some(STATIC_TOKEN));
    })
    .await;
}

#[tokio::test]
async fn polling_goes_on_after_a_5xx() {
    within("the test body", async {
        let oz = flow_oz(|n| match n {
            1 => json_reply(
                502,
                json!({"error_code": 11, "error_message": "external service"}),
            ),
            _ => json_reply(200, analysis("a-1", "DECLINED")),
        })
        .await;
        let (c, _) = client(&config(oz.uri()));
        let v = c
            .check(&upload(), &quality(), Duration::from_secs(8), "req")
            .await
            .unwrap();
        assert_eq!(v.resolution, Resolution::Declined);
        assert_eq!(oz.count("GET", "/api/analyses/a-1"), 2);
    })
    .await;
}

#[tokio::test]
async fn verdict_is_processing_when_wait_for_result_runs_out() {
    within("the test body", async {
        let oz = flow_oz(|_| json_reply(200, analysis("a-1", "PROCESSING"))).await;
        let (c, _) = client(&config(oz.uri()));
        let started = tokio::time::Instant::now();
        let v = c
            .check(&upload(), &quality(), Duration::from_millis(500), "req")
            .await
            .unwrap();
        assert_eq!(v.resolution, Resolution::Processing);
        assert_eq!(v.folder_id, "f-9");
        assert!(oz.count("GET", "/api/analyses/a-1") >= 1);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}

#[tokio::test]
async fn zero_wait_starts_analyses_but_does_not_poll() {
    within("the test body", async {
        let oz = flow_oz(|_| json_reply(200, analysis("a-1", "SUCCESS"))).await;
        let (c, _) = client(&config(oz.uri()));
        let v = c
            .check(&upload(), &quality(), Duration::ZERO, "req")
            .await
            .unwrap();
        assert_eq!(v.resolution, Resolution::Processing);
        assert_eq!(oz.count("POST", "/api/folders/f-9/analyses/"), 1);
        assert_eq!(oz.count("GET", "/api/analyses/a-1"), 0);
    })
    .await;
}

#[tokio::test]
async fn no_analyses_configured_starts_none() {
    within("the test body", async {
        let oz = flow_oz(|_| json_reply(200, analysis("a-1", "SUCCESS"))).await;
        let (c, _) = client(&config(oz.uri()));
        let v = c
            .check(&upload(), &[], Duration::from_secs(5), "req")
            .await
            .unwrap();
        assert_eq!(v.resolution, Resolution::Processing, "folder is INITIAL");
        assert!(v.analyses.is_empty());
        assert_eq!(oz.seen().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn final_analyses_in_the_folder_answer_are_used_as_is() {
    within("the test body", async {
        // Single-request mode: the upload answer already carries the results.
        let oz = backend().reply(|s| {
            if s.is("POST", "/api/folders/") {
                json_reply(201, json!({
                    "folder_id": "f-s",
                    "resolution_status": "FINISHED",
                    "analyses": [
                        {"analysis_id": "q", "type": "QUALITY", "state": "FINISHED", "resolution_status": "SUCCESS"},
                        {"analysis_id": "b", "type": "BIOMETRY", "state": "FINISHED", "resolution_status": "OPERATOR_REQUIRED"},
                    ],
                }))
            } else {
                not_found(s)
            }
        }).start()
        .await;
        let (c, _) = client(&config(oz.uri()));
        let v = c
            .check(&upload(), &quality(), Duration::from_secs(5), "req")
            .await
            .unwrap();
        assert_eq!(v.folder_id, "f-s");
        assert_eq!(v.resolution, Resolution::OperatorRequired);
        assert_eq!(v.analyses.len(), 2);
        assert_eq!(oz.seen().len(), 1, "nothing started, nothing polled");
    })
    .await;
}

#[tokio::test]
async fn unfinished_analyses_in_the_folder_answer_are_polled_not_restarted() {
    within("the test body", async {
        let oz = backend()
            .reply(|s| match (s.method.as_str(), s.path.as_str()) {
                ("POST", "/api/folders/") => json_reply(
                    201,
                    json!({"folder_id": "f-p", "analyses": [analysis("a-7", "PROCESSING")]}),
                ),
                ("GET", "/api/analyses/a-7") => json_reply(200, analysis("a-7", "FAILED")),
                _ => not_found(s),
            })
            .start()
            .await;
        let (c, _) = client(&config(oz.uri()));
        let v = c
            .check(&upload(), &quality(), Duration::from_secs(5), "req")
            .await
            .unwrap();
        assert_eq!(v.resolution, Resolution::Failed);
        assert_eq!(oz.count("GET", "/api/analyses/a-7"), 1);
        assert_eq!(oz.count("POST", "/api/folders/f-p/analyses/"), 0);
    })
    .await;
}

/// A stand-in that starts `n` analyses which never finish, and answers every poll PROCESSING.
async fn never_final_oz(n: usize) -> Backend {
    backend()
        .reply(move |s| match (s.method.as_str(), s.path.as_str()) {
            ("POST", "/api/folders/") => folder_answer("f-n"),
            ("POST", "/api/folders/f-n/analyses/") => {
                let all: Vec<Value> = (0..n)
                    .map(|i| analysis(&format!("a-{i}"), "PROCESSING"))
                    .collect();
                json_reply(201, Value::Array(all))
            }
            ("GET", p) if p.starts_with("/api/analyses/") => {
                json_reply(200, analysis(&p["/api/analyses/".len()..], "PROCESSING"))
            }
            _ => not_found(s),
        })
        .start()
        .await
}

fn polls(oz: &Backend) -> usize {
    oz.seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path.starts_with("/api/analyses/"))
        .count()
}

#[tokio::test]
async fn polls_per_capture_are_capped_whatever_the_wait() {
    use oz_capture_proxy::oz::{MAX_ANALYSES, MAX_POLLS};
    within("the test body", async {
        let oz = never_final_oz(MAX_ANALYSES).await;
        let (c, _) = client(&config(oz.uri()));
        // A wait far longer than the test may take: only the poll cap can end this check.
        let v = c
            .check(&upload(), &quality(), Duration::from_secs(3600), "req")
            .await
            .unwrap();
        assert_eq!(v.resolution, Resolution::Processing);
        assert_eq!(v.analyses.len(), MAX_ANALYSES);
        assert_eq!(polls(&oz), MAX_POLLS);
    })
    .await;
}

#[tokio::test]
async fn an_answer_listing_more_analyses_than_a_capture_may_use_is_refused() {
    use oz_capture_proxy::oz::MAX_ANALYSES;
    within("the test body", async {
        let oz = never_final_oz(MAX_ANALYSES + 1).await;
        let (c, registry) = client(&config(oz.uri()));
        let err = c
            .check(&upload(), &quality(), Duration::from_secs(5), "req")
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::TooManyAnalyses { endpoint: "analyses", listed } if listed == MAX_ANALYSES + 1),
            "{err:?}"
        );
        assert_eq!(polls(&oz), 0);
        let text = metrics::render(&registry);
        assert!(
            text.contains(r#"oz_proxy_oz_errors_total{endpoint="analyses",code="bad_response"} 1"#),
            "{text}"
        );

        // The same in the upload answer (single-request mode): nothing is polled or started.
        let flood: Vec<Value> = (0..=MAX_ANALYSES)
            .map(|i| analysis(&format!("a-{i}"), "PROCESSING"))
            .collect();
        let oz = backend().reply(move |s| {
            assert!(s.is("POST", "/api/folders/"), "only the upload is expected");
            json_reply(201, json!({"folder_id": "f-f", "analyses": flood.clone()}))
        }).start()
        .await;
        let (c, _) = client(&config(oz.uri()));
        let err = c
            .check(&upload(), &quality(), Duration::from_secs(5), "req")
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::TooManyAnalyses { endpoint: "folders", .. }),
            "{err:?}"
        );
        assert_eq!(oz.seen().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn unpollable_analysis_id_fails_at_once() {
    within("the test body", async {
        let oz = backend()
            .reply(|s| {
                assert!(s.is("POST", "/api/folders/"), "only the upload is expected");
                json_reply(
                    201,
                    json!({"folder_id": "f-x", "analyses": [analysis("../admin", "PROCESSING")]}),
                )
            })
            .start()
            .await;
        let (c, _) = client(&config(oz.uri()));
        let err = c
            .check(&upload(), &quality(), Duration::from_secs(5), "req")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BadResponse { .. }), "{err:?}");
        assert_eq!(oz.seen().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn instant_mode_posts_to_instant_folders_and_uses_the_answer() {
    within("the test body", async {
        let oz = backend().reply(|s| {
            if s.is("POST", "/api/instant/folders/") {
                json_reply(200, json!({
                    "folder_id": "i-1",
                    "analyses": [{"analysis_id": "q", "type": "QUALITY", "state": "FINISHED", "resolution_status": "declined"}],
                }))
            } else {
                not_found(s)
            }
        }).start()
        .await;
        let mut cfg = config(oz.uri());
        cfg.api = OzApiMode::Instant;
        let (c, registry) = client(&cfg);
        let v = c
            .check(&upload(), &quality(), Duration::from_secs(5), "req")
            .await
            .unwrap();
        assert_eq!(v.folder_id, "i-1");
        assert_eq!(v.resolution, Resolution::Declined);
        assert_eq!(oz.seen().len(), 1);
        assert!(metrics::render(&registry).contains(r#"endpoint="instant_folders""#));
    })
    .await;
}

// === TLS ===

struct TestPki {
    ca_file: std::path::PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// A private CA (written to a PEM file for `oz.ca_file`) and a server certificate for
/// 127.0.0.1 signed by it; the server offers h2 and http/1.1.
fn test_pki(name: &str) -> TestPki {
    let pki = support::pki::private_ca("oz-capture-proxy test CA", &["127.0.0.1", "localhost"]);
    let ca_file = std::env::temp_dir().join(format!(
        "oz-client-test-ca-{}-{name}.pem",
        std::process::id()
    ));
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::try_from(pki.key_der).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert_der.into()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TestPki {
        ca_file,
        server: Arc::new(server),
    }
}

#[tokio::test]
async fn https_works_with_a_private_ca_file() {
    within("the test body", async {
        let pki = test_pki("ok");
        let oz = backend()
            .reply(|_| folder_answer("f-tls"))
            .tls(TlsAcceptor::from(pki.server.clone()))
            .start()
            .await;
        let mut cfg = config(oz.uri());
        cfg.ca_file = Some(pki.ca_file.clone());
        let (c, _) = client(&cfg);
        let up = upload();
        assert_eq!(
            c.create_folder(&up, "req").await.unwrap().folder_id,
            "f-tls"
        );
        let seen = &oz.seen()[0];
        assert_eq!(seen.version, Version::HTTP_2, "h2 negotiated by ALPN");
        assert_eq!(seen.token().as_deref(), Some(STATIC_TOKEN));
        assert_eq!(&seen.body[..], &up.to_vec()[..]);
    })
    .await;
}

#[tokio::test]
async fn https_without_the_ca_file_is_refused() {
    within("the test body", async {
        let pki = test_pki("refused");
        let oz = backend()
            .reply(|_| folder_answer("f-tls"))
            .tls(TlsAcceptor::from(pki.server.clone()))
            .start()
            .await;
        let (c, _) = client(&config(oz.uri()));
        let err = c.create_folder(&upload(), "req").await.unwrap_err();
        match err {
            Error::Unreachable { reason, .. } => {
                assert!(reason.to_lowercase().contains("certificate"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            oz.seen().is_empty(),
            "nothing was sent without a trusted handshake"
        );
    })
    .await;
}
