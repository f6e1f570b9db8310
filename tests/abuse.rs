//! End-to-end tests of the abuse controls with the embedded store (`state.store: memory`, the
//! default): the replay guard and the rate limits, as a client, Oz and the backend see them.
//! The same controls shared by two proxies through a real Redis are in `abuse_redis.rs`.
//! Harness: `support::stack`, with the replay guard left on ([`ProxyBuilder::replay_guard`]).

mod support;

use base64::Engine as _;
use oz_capture_proxy::capture::testdata::{data_url, SampleCapture};
use oz_capture_proxy::oz_sim::Endpoint;
use support::stack::*;

/// A new capture: other media than any other number.
fn capture(n: u64) -> Vec<u8> {
    SampleCapture::numbered(n, 3, false, "video_selfie_blank").to_json()
}

/// The default stack (one forward route on [`CAPTURE`]) with the replay guard on, plus
/// `capture_extra` lines in its `capture:` section and `tail` after it.
async fn guarded(capture_extra: &str, tail: &str) -> Stack {
    Stack::start_with(
        sim_config(),
        &format!("{}{}{tail}", oz_token(""), forward_route(capture_extra)),
        ProxyBuilder::replay_guard,
    )
    .await
}

/// Capture `n` posted to [`CAPTURE`] with the header `name: value`.
async fn post_as(stack: &Stack, name: &str, value: &str, n: u64) -> Reply {
    stack
        .post_with(CAPTURE, "application/json", &[(name, value)], capture(n))
        .await
}

/// How many captures the backend received on [`CAPTURE`].
fn captures_forwarded(stack: &Stack) -> usize {
    stack
        .backend
        .seen()
        .iter()
        .filter(|r| r.path == CAPTURE)
        .count()
}

// === Replay guard ===

/// The same capture twice: checked once, then refused as a replay with nothing uploaded or
/// forwarded; another capture goes through.
#[tokio::test]
async fn a_capture_sent_twice_is_checked_once() {
    let stack = guarded("", "").await;
    stack.post(CAPTURE, capture(1)).await.assert_from_backend();
    let again = stack.post(CAPTURE, capture(1)).await;
    let doc = again.problem(409, "capture_replayed");
    assert!(
        doc["detail"].as_str().unwrap().contains("capture.replay"),
        "{doc}"
    );
    assert_eq!(stack.oz().uploads().len(), 1);
    assert_eq!(captures_forwarded(&stack), 1);
    stack.post(CAPTURE, capture(2)).await.assert_from_backend();
    assert_eq!(stack.oz().uploads().len(), 2);
    assert_eq!(
        stack
            .proxy
            .metric("oz_proxy_captures_total{outcome=\"replayed\"}")
            .await,
        1.0
    );
    stack.stop().await;
}

/// The digest is of the media only: the same frames with another `additional_info` (or in the
/// escaped spelling) are the same capture.
#[tokio::test]
async fn the_same_frames_in_another_body_are_a_replay() {
    let stack = guarded("", "").await;
    let first = SampleCapture::numbered(1, 3, false, "video_selfie_blank");
    stack
        .post(CAPTURE, first.to_json())
        .await
        .assert_from_backend();
    let mut other = first.clone();
    other.additional_info = Some("{\"another\":\"session\"}".into());
    other.escape_slashes = true;
    stack
        .post(CAPTURE, other.to_json())
        .await
        .problem(409, "capture_replayed");
    // A container is its bytes.
    let container = b"OzCapsula container bytes".to_vec();
    let post = |body: Vec<u8>| stack.post_with(CAPTURE, "application/octet-stream", &[], body);
    post(container.clone()).await.assert_from_backend();
    post(container).await.problem(409, "capture_replayed");
    assert_eq!(stack.oz().uploads().len(), 2);
    stack.stop().await;
}

/// A capture that shares any frame with one checked before is a replay: cut short, reordered,
/// padded with a new frame, or with a frame whose file was touched but whose picture was not
/// (another comment, bytes after the end).
#[tokio::test]
async fn a_capture_sharing_a_frame_with_a_checked_one_is_a_replay() {
    let stack = guarded("", "").await;
    let first = SampleCapture::numbered(1, 3, false, "video_selfie_blank");
    stack
        .post(CAPTURE, first.to_json())
        .await
        .assert_from_backend();
    let fresh = SampleCapture::numbered(2, 3, false, "video_selfie_blank").frames[0].clone();
    let jpeg = |url: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(url.split_once(',').unwrap().1)
            .unwrap()
    };
    let mut padded = jpeg(&first.frames[0]);
    padded.extend_from_slice(b"after the end");
    let mut commented = jpeg(&first.frames[0]);
    commented.splice(2..2, [0xFF, 0xFE, 0x00, 0x07, b'h', b'e', b'l', b'l', b'o']);
    let variants: [Vec<String>; 5] = [
        first.frames[..2].to_vec(),
        first.frames.iter().rev().cloned().collect(),
        vec![fresh.clone(), first.frames[2].clone()],
        vec![fresh.clone(), data_url("image/jpeg", &padded)],
        vec![fresh, data_url("image/jpeg", &commented)],
    ];
    for frames in variants {
        let mut replay = first.clone();
        replay.frames = frames;
        stack
            .post(CAPTURE, replay.to_json())
            .await
            .problem(409, "capture_replayed");
    }
    assert_eq!(stack.oz().uploads().len(), 1);
    stack.stop().await;
}

/// Identical captures sent at once: exactly one reaches Oz and the backend; the others are
/// refused as replays.
#[tokio::test]
async fn of_identical_captures_in_flight_at_once_one_goes_to_oz() {
    let stack = guarded("", "").await;
    // Every upload takes a while, so all the requests are in flight together.
    stack
        .oz()
        .set_latency(Endpoint::Folders, std::time::Duration::from_millis(300));
    let body = capture(7);
    let sends = (0..8).map(|_| {
        let client = stack.client();
        let body = body.clone();
        tokio::spawn(async move { client.post(CAPTURE, body).await })
    });
    let mut statuses = Vec::new();
    for send in sends {
        statuses.push(send.await.expect("the request task").status.as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(stack.oz().uploads().len(), 1);
    assert_eq!(captures_forwarded(&stack), 1);
    stack.stop().await;
}

/// A capture that failed before Oz accepted it does not spend its digest: after a corrupt
/// frame, and after Oz answered the upload with 500, the retry is checked.
#[tokio::test]
async fn a_capture_that_failed_before_oz_accepted_it_may_be_sent_again() {
    let stack = guarded("", "").await;
    let mut broken = SampleCapture::numbered(1, 3, false, "video_selfie_blank");
    let good_frame = broken.frames[2].clone();
    broken.frames[2] = "data:image/jpeg;base64,@@@@".into();
    stack
        .post(CAPTURE, broken.to_json())
        .await
        .problem(400, "invalid_frame");
    broken.frames[2] = good_frame;
    stack
        .post(CAPTURE, broken.to_json())
        .await
        .assert_from_backend();

    stack.oz().fail_next(Endpoint::Folders, 500, 1);
    stack
        .post(CAPTURE, capture(2))
        .await
        .problem(502, "oz_error");
    stack.post(CAPTURE, capture(2)).await.assert_from_backend();
    assert_eq!(captures_forwarded(&stack), 2);
    stack.stop().await;
}

/// Oz accepted the upload and then failed the analyses: the capture is spent all the same (Oz
/// has it, and billed for it).
#[tokio::test]
async fn a_capture_oz_accepted_is_spent_whatever_came_after() {
    let stack = guarded("", "").await;
    stack.oz().fail_next(Endpoint::StartAnalyses, 500, 3);
    let first = stack.post(CAPTURE, capture(1)).await;
    assert_eq!(first.status.as_u16(), 502, "{}", first.json());
    stack
        .post(CAPTURE, capture(1))
        .await
        .problem(409, "capture_replayed");
    assert_eq!(stack.oz().uploads().len(), 1);
    stack.stop().await;
}

/// An upload that may have reached Oz (no answer within `oz.timeout`, or a gateway's 502) keeps
/// the capture spent: Oz may have a folder for it, and a second one would be a second check.
#[tokio::test]
async fn an_upload_that_may_have_landed_keeps_the_capture_spent() {
    let stack = Stack::start_with(
        sim_config(),
        &format!(
            "{}{}",
            oz_token("  timeout: \"300ms\"\n"),
            forward_route("")
        ),
        ProxyBuilder::replay_guard,
    )
    .await;
    stack
        .oz()
        .set_latency(Endpoint::Folders, std::time::Duration::from_secs(2));
    stack
        .post(CAPTURE, capture(1))
        .await
        .problem(504, "oz_timeout");
    stack.oz().clear_faults();
    stack
        .post(CAPTURE, capture(1))
        .await
        .problem(409, "capture_replayed");
    stack.oz().fail_next(Endpoint::Folders, 502, 1);
    stack
        .post(CAPTURE, capture(2))
        .await
        .problem(502, "oz_error");
    stack
        .post(CAPTURE, capture(2))
        .await
        .problem(409, "capture_replayed");
    assert_eq!(captures_forwarded(&stack), 0);
    stack.stop().await;
}

/// `replay.enabled: false` on a route (or for the section) lets the same capture through again.
#[tokio::test]
async fn a_route_may_turn_the_guard_off() {
    let yaml = format!(
        "{}capture:\n  wait_for_result: \"5s\"\n  unchecked_images: strip\n  routes:\n    - path: \"{CAPTURE}\"\n      replay:\n        enabled: false\n",
        oz_token("")
    );
    let stack = Stack::start_with(sim_config(), &yaml, ProxyBuilder::replay_guard).await;
    for _ in 0..2 {
        stack.post(CAPTURE, capture(1)).await.assert_from_backend();
    }
    assert_eq!(stack.oz().uploads().len(), 2);
    stack.stop().await;
}

// === Rate limits ===

/// Beyond its per-client limit a client gets 429 with `Retry-After` and the `RateLimit` fields,
/// before its body is read and with nothing uploaded; another client is unaffected; passthrough
/// is never limited.
#[tokio::test]
async fn the_client_over_its_limit_waits_and_others_do_not() {
    let stack = guarded(
        "  rate_limit:\n    per_client: { limit: 2, per: \"1m\", key: \"cookie:sid\" }\n",
        "",
    )
    .await;
    post_as(&stack, "cookie", "sid=alice", 1)
        .await
        .assert_from_backend();
    post_as(&stack, "cookie", "sid=alice", 2)
        .await
        .assert_from_backend();
    let refused = post_as(&stack, "cookie", "sid=alice", 3).await;
    let doc = refused.problem(429, "rate_limited");
    assert_eq!(doc["limit"], "per_client", "{doc}");
    // 2 per minute: one comes back every 30 s.
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(
        refused.headers["ratelimit-policy"],
        "\"per_client\";q=2;w=60"
    );
    let state = refused.headers["ratelimit"].to_str().unwrap();
    assert!(state.starts_with("\"per_client\";r=0;t="), "{state}");
    // The body was never read: the connection is not reused.
    assert_eq!(refused.headers["connection"], "close");

    post_as(&stack, "cookie", "sid=bob", 4)
        .await
        .assert_from_backend();
    let passthrough = stack
        .send(
            http::Request::get("/anything")
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(passthrough.status.as_u16(), 200);
    assert_eq!(stack.oz().uploads().len(), 3);
    assert_eq!(
        stack
            .proxy
            .metric(&format!(
                "oz_proxy_rate_limited_total{{route=\"{CAPTURE}\",limit=\"per_client\"}}"
            ))
            .await,
        1.0
    );
    // Metrics name routes and limits, never a client.
    let metrics = stack.proxy.metrics().await;
    assert!(!metrics.contains("alice") && !metrics.contains("127.0.0.1"));
    stack.stop().await;
}

/// With `trusted_hops: 0` the client is the connection's peer: rotating `X-Forwarded-For` does
/// not buy a fresh budget. With `trusted_hops: 1` the address the load balancer appended (the
/// rightmost) is the client, whatever the client wrote before it.
#[tokio::test]
async fn a_client_cannot_choose_its_address() {
    let limit = "  rate_limit:\n    per_client: { limit: 1, per: \"1m\" }\n";
    let stack = guarded(limit, "").await;
    post_as(&stack, "x-forwarded-for", "198.51.100.1", 1)
        .await
        .assert_from_backend();
    post_as(&stack, "x-forwarded-for", "198.51.100.2", 2)
        .await
        .problem(429, "rate_limited");
    stack.stop().await;

    let stack = guarded(limit, "forwarding:\n  trusted_hops: 1\n").await;
    post_as(&stack, "x-forwarded-for", "198.51.100.1", 1)
        .await
        .assert_from_backend();
    // The same client behind the balancer, pretending to be someone else on the left.
    post_as(&stack, "x-forwarded-for", "203.0.113.9, 198.51.100.1", 2)
        .await
        .problem(429, "rate_limited");
    post_as(&stack, "x-forwarded-for", "198.51.100.2", 3)
        .await
        .assert_from_backend();
    stack.stop().await;
}

/// The global budget holds whoever sends: the capture beyond it gets 429 naming `global`.
#[tokio::test]
async fn the_global_budget_holds_for_every_client() {
    let stack = guarded(
        "  rate_limit:\n    per_client: { limit: 5, per: \"1m\", key: \"header:x-user\" }\n    global: { limit: 3, per: \"1m\" }\n",
        "",
    )
    .await;
    for (n, user) in ["a", "b", "c"].into_iter().enumerate() {
        stack
            .post_with(
                CAPTURE,
                "application/json",
                &[("x-user", user)],
                capture(n as u64),
            )
            .await
            .assert_from_backend();
    }
    let refused = stack
        .post_with(CAPTURE, "application/json", &[("x-user", "d")], capture(9))
        .await;
    let doc = refused.problem(429, "rate_limited");
    assert_eq!(doc["limit"], "global", "{doc}");
    let policy = refused.headers["ratelimit-policy"].to_str().unwrap();
    assert_eq!(policy, "\"per_client\";q=5;w=60, \"global\";q=3;w=60");
    assert_eq!(stack.oz().uploads().len(), 3);
    stack.stop().await;
}
