//! Late verdicts (README.md, "Late verdicts"): a capture still `PROCESSING` when
//! `wait_for_result` runs out, on a route with `late_verdict_path`, is followed, and the backend
//! gets `POST {late_verdict_path}` with the final verdict once Oz has it: the report JSON, its
//! `X-Oz-*` headers and a token the README's Python verifier accepts, `body_sha256` over the
//! late body and `jti` `{request_id}.late` on every attempt. Retries of 5xx, no retry of a 4xx,
//! respond mode, and `capture.max_follow_ups`.
//!
//! The simulator holds analyses `PROCESSING` for [`HOLD`], past the route's 200 ms wait. Tests
//! wait for what the backend receives (`Backend::wait_for`) and for the counters the proxy
//! updates once a delivery's answer is read (`Proxy::wait_metric`).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::StatusCode;
use oz_capture_proxy::capture::testdata::sample_capture_json;
use serde_json::{json, Value};
use support::bin::TempDir;
use support::stack::{
    legacy_backend_with, oz_token, sim_config, BackendReply, Recorded, Stack, CAPTURE,
};
use support::verifiers::{header_and_claims, verified};

const RESPOND: &str = "/api/liveness/respond";
const LATE: &str = "/hooks/oz-late";
/// How long the simulator holds analyses `PROCESSING`: well past the 200 ms wait.
const HOLD: Duration = Duration::from_secs(1);

fn delivered() -> &'static str {
    r#"oz_proxy_late_verdicts_total{result="delivered"}"#
}

fn late_metric(result: &str) -> String {
    format!(r#"oz_proxy_late_verdicts_total{{result="{result}"}}"#)
}

/// A forward route on [`CAPTURE`] and a `status` respond route on [`RESPOND`], both with
/// `late_verdict_path: LATE` and a 200 ms wait, with `extra` capture lines, and one EdDSA key.
fn config(keys: &TempDir, extra: &str) -> String {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .expect("an Ed25519 key")
        .serialize_pem();
    let key = keys.write("late.pem", pem);
    format!(
        "{}capture:\n  wait_for_result: \"200ms\"\n  unchecked_images: strip\n{extra}  routes:\n    - path: \"{CAPTURE}\"\n      on_result: forward\n      late_verdict_path: \"{LATE}\"\n    - path: \"{RESPOND}\"\n      on_result: respond\n      result_mode: status\n      late_verdict_path: \"{LATE}\"\nverdict:\n  keys:\n    - kid: \"late\"\n      alg: EdDSA\n      private_key_file: \"{}\"\n",
        oz_token(""),
        key.display()
    )
}

/// A stack whose backend answers the late path with what `late(n)` gives for its `n`-th
/// delivery (0-based), and the legacy answer everywhere else; analyses held for [`HOLD`].
async fn stack(
    keys: &TempDir,
    extra: &str,
    late: impl Fn(usize) -> StatusCode + Send + Sync + 'static,
) -> Stack {
    let count = Arc::new(AtomicUsize::new(0));
    let backend = legacy_backend_with(move |r: &Recorded| {
        (r.target == LATE).then(|| {
            let status = late(count.fetch_add(1, Ordering::SeqCst));
            BackendReply::status(status).body(bytes::Bytes::from_static(b"{}"))
        })
    })
    .await;
    let stack = Stack::start_with_backend(sim_config(), &config(keys, extra), backend).await;
    stack.oz().set_processing_for(HOLD);
    stack
}

/// Checks one late delivery of the capture with `request_id` in `folder_id`: method, path,
/// headers, the report body, and the token through the README's verifier. The claims.
async fn check_delivery(
    stack: &Stack,
    late: &Recorded,
    request_id: &str,
    folder_id: &str,
) -> Value {
    assert_eq!(late.method, "POST");
    assert_eq!(late.target, LATE);
    assert_eq!(late.header("content-type"), "application/json");
    assert_eq!(late.header("host"), stack.backend.addr.to_string());
    assert_eq!(late.header("x-request-id"), request_id);
    assert_eq!(late.header("x-oz-folder-id"), folder_id);
    let resolution = late.header("x-oz-resolution");
    assert_ne!(resolution, "PROCESSING");
    assert_eq!(late.header("x-oz-action"), "video_selfie_blank");
    assert_eq!(late.header("x-oz-virtual-camera"), "false");
    assert_eq!(
        late.header("content-length"),
        late.body.len().to_string(),
        "framed as sent"
    );

    let body: Value = serde_json::from_slice(&late.body).expect("a JSON body");
    let keys: Vec<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "action",
            "analyses",
            "folder_id",
            "request_id",
            "resolution",
            "virtual_camera"
        ]
    );
    assert_eq!(body["folder_id"], folder_id);
    assert_eq!(body["resolution"], resolution);
    assert_eq!(body["request_id"], request_id);
    assert_eq!(body["action"], "video_selfie_blank");
    assert_eq!(body["virtual_camera"], false);
    let analyses = body["analyses"].as_array().expect("analyses");
    assert!(!analyses.is_empty());
    for a in analyses {
        assert!(a["type"].is_string(), "{a}");
        assert_ne!(a["resolution"], "PROCESSING", "{a}");
    }

    let claims = verified(json!({
        "name": "late",
        "token": late.header("x-oz-verdict-token"),
        "jwks_url": stack.proxy.admin_url("/.well-known/jwks.json"),
        "body_b64": base64::engine::general_purpose::STANDARD.encode(&late.body),
    }))
    .await;
    assert_eq!(claims["sub"], folder_id);
    assert_eq!(claims["jti"], format!("{request_id}.late"));
    assert_eq!(claims["oz"]["resolution"], resolution);
    assert_eq!(claims["oz"]["action"], "video_selfie_blank");
    assert_eq!(
        claims["oz"]["analyses"].as_array().unwrap().len(),
        analyses.len()
    );
    claims
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_mode_gets_the_capture_processing_then_exactly_one_late_verdict() {
    let keys = TempDir::new("late-keys");
    let stack = stack(&keys, "", |_| StatusCode::OK).await;

    let reply = stack
        .post(CAPTURE, sample_capture_json(3, false, "video_selfie_blank"))
        .await;
    reply.assert_from_backend();
    let capture = stack.backend.seen().remove(0);
    assert_eq!(capture.target, CAPTURE);
    assert_eq!(capture.header("x-oz-resolution"), "PROCESSING");
    let request_id = capture.header("x-request-id").to_owned();
    let folder_id = capture.header("x-oz-folder-id").to_owned();
    let capture_claims = header_and_claims(capture.header("x-oz-verdict-token")).1;
    assert_eq!(capture_claims["jti"], request_id);

    stack.backend.wait_for(2).await;
    let late = stack.backend.seen().remove(1);
    let claims = check_delivery(&stack, &late, &request_id, &folder_id).await;
    assert_ne!(
        claims["jti"], capture_claims["jti"],
        "a backend that dedupes on jti + sub must not drop the late verdict"
    );
    assert_eq!(claims["sub"], capture_claims["sub"]);

    // Counted once its answer was read; then the follow-up is over: nothing else comes.
    stack.proxy.wait_metric(delivered(), 1.0).await;
    assert_eq!(stack.backend.seen().len(), 2);
    assert_eq!(stack.proxy.metric(&late_metric("retry")).await, 0.0);

    // The stateless lookup, from another proxy in front of the same Oz, agrees with the delivery.
    let other = stack.another_proxy(&config(&keys, "")).await;
    let lookup = stack
        .verdict_get(&other, &format!("/verdicts/{folder_id}"))
        .await;
    assert_eq!(lookup.status, StatusCode::OK);
    let mut looked_up = lookup.json();
    looked_up
        .as_object_mut()
        .unwrap()
        .remove("verdict_token")
        .expect("a token, with verdict.keys");
    let delivered_body: Value = serde_json::from_slice(&late.body).unwrap();
    assert_eq!(looked_up, delivered_body);
    other.stop().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_failing_twice_gets_the_late_verdict_on_the_third_try() {
    let keys = TempDir::new("late-keys");
    let stack = stack(&keys, "", |n| {
        if n < 2 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NO_CONTENT
        }
    })
    .await;

    stack
        .post(CAPTURE, sample_capture_json(3, false, "video_selfie_blank"))
        .await
        .assert_from_backend();
    let capture = stack.backend.seen().remove(0);
    let request_id = capture.header("x-request-id").to_owned();
    let folder_id = capture.header("x-oz-folder-id").to_owned();

    stack.backend.wait_for(4).await;
    stack.proxy.wait_metric(delivered(), 1.0).await;
    let seen = stack.backend.seen();
    assert_eq!(seen.len(), 4, "the capture and three attempts");
    let mut ids = Vec::new();
    for late in &seen[1..] {
        let claims = check_delivery(&stack, late, &request_id, &folder_id).await;
        ids.push((claims["jti"].clone(), claims["sub"].clone()));
        assert_eq!(late.body, seen[1].body, "the same report every time");
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "jti and sub stay the same across retries: {ids:?}"
    );
    assert_eq!(stack.proxy.metric(&late_metric("retry")).await, 2.0);
    assert_eq!(stack.proxy.metric(&late_metric("failed")).await, 0.0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_is_final() {
    let keys = TempDir::new("late-keys");
    let stack = stack(&keys, "", |_| StatusCode::UNPROCESSABLE_ENTITY).await;

    stack
        .post(CAPTURE, sample_capture_json(3, false, "video_selfie_blank"))
        .await
        .assert_from_backend();
    stack.backend.wait_for(2).await;
    stack.proxy.wait_metric(&late_metric("rejected"), 1.0).await;
    assert_eq!(stack.backend.seen().len(), 2, "not retried");
    assert_eq!(stack.proxy.metric(&late_metric("retry")).await, 0.0);
    assert_eq!(stack.proxy.metric(delivered()).await, 0.0);
    stack.stop().await;
}

/// 429 and 408 say "not now": retried like a 5xx, and the next attempt delivers.
#[tokio::test(flavor = "multi_thread")]
async fn a_429_or_408_is_retried() {
    let keys = TempDir::new("late-keys");
    let stack = stack(&keys, "", |n| match n {
        0 => StatusCode::TOO_MANY_REQUESTS,
        1 => StatusCode::REQUEST_TIMEOUT,
        _ => StatusCode::OK,
    })
    .await;
    stack
        .post(CAPTURE, sample_capture_json(3, false, "video_selfie_blank"))
        .await
        .assert_from_backend();
    stack.backend.wait_for(4).await;
    stack.proxy.wait_metric(delivered(), 1.0).await;
    assert_eq!(stack.proxy.metric(&late_metric("retry")).await, 2.0);
    assert_eq!(stack.proxy.metric(&late_metric("rejected")).await, 0.0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn respond_mode_gets_a_late_delivery_too() {
    let keys = TempDir::new("late-keys");
    let stack = stack(&keys, "", |_| StatusCode::OK).await;

    let reply = stack
        .post(RESPOND, sample_capture_json(3, false, "video_selfie_blank"))
        .await;
    assert_eq!(reply.status, 200);
    let answer = reply.json();
    assert_eq!(answer["state"], "processing");
    assert_eq!(answer["resolution"], "PROCESSING");
    let capture_claims = header_and_claims(answer["verdict_token"].as_str().expect("a token")).1;
    let folder_id = capture_claims["sub"].as_str().unwrap().to_owned();
    let request_id = capture_claims["jti"].as_str().unwrap().to_owned();

    stack.backend.wait_for(1).await;
    let late = stack.backend.only();
    check_delivery(&stack, &late, &request_id, &folder_id).await;
    stack.proxy.wait_metric(delivered(), 1.0).await;
    assert_eq!(stack.backend.seen().len(), 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_max_follow_ups_nothing_is_followed_and_shutdown_does_not_wait() {
    let keys = TempDir::new("late-keys");
    let stack = stack(&keys, "  max_follow_ups: 1\n", |_| StatusCode::OK).await;
    // Held far longer than the test: the first follow-up stays pending until the shutdown.
    stack.oz().set_processing_for(Duration::from_secs(60));

    for n in 1..=2 {
        stack
            .post(CAPTURE, sample_capture_json(3, false, "video_selfie_blank"))
            .await
            .assert_from_backend();
        stack.backend.wait_for(n).await;
    }
    for capture in stack.backend.seen() {
        assert_eq!(capture.header("x-oz-resolution"), "PROCESSING");
    }
    stack.proxy.wait_metric(&late_metric("dropped"), 1.0).await;
    assert_eq!(stack.proxy.metric(delivered()).await, 0.0);

    // The pending follow-up is cancelled when the drain ends, not waited for: the stop fails
    // the test if it takes longer than the harness allows, and the hold is longer still.
    let started = std::time::Instant::now();
    stack.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Only the proxy delivers verdicts to `late_verdict_path`: a client's POST there, in any
/// spelling that normalizes to it, could carry a verdict body of its own making.
#[tokio::test(flavor = "multi_thread")]
async fn clients_cannot_post_to_the_late_verdict_path() {
    let keys = TempDir::new("late-keys");
    let stack = stack(&keys, "", |_| StatusCode::OK).await;
    let forged = br#"{"folder_id":"00000000-0000-4000-8000-000000000000","resolution":"SUCCESS"}"#;
    for path in [
        LATE.to_owned(),
        format!("{LATE}/"),
        format!("{LATE}?x=1"),
        "/hooks/./oz-late".to_owned(),
    ] {
        stack
            .post(&path, &forged[..])
            .await
            .problem(403, "reserved_path");
    }
    let reply = stack
        .send(
            http::Request::get(LATE)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "the backend's own answer");
    let seen = stack.backend.seen();
    assert_eq!(seen.len(), 1, "only the bodiless GET reached the backend");
    assert_eq!(seen[0].method, "GET");
    stack.stop().await;
}
