//! End-to-end tests of the abuse controls shared through a real `redis-server`
//! (`state.store: redis`): two proxies (one in this process, one the binary in its own process)
//! refuse each other's replays and hold one global budget; a restarted proxy remembers; a Redis
//! outage has the behaviour `state.on_error` names, and passthrough never notices; Redis holds no
//! client address, cookie value or capture byte. The store alone is tested in `state_redis.rs`.

mod support;

use base64::Engine as _;
use oz_capture_proxy::capture::testdata::SampleCapture;
use support::bin::{ProxyProcess, TempDir};
use support::redis::Redis;
use support::stack::*;

/// A new capture: other media than any other number.
fn capture(n: u64) -> Vec<u8> {
    SampleCapture::numbered(n, 3, false, "video_selfie_blank").to_json()
}

/// The `state` section for `redis`, with `on_error`.
fn state(redis: &Redis, on_error: &str) -> String {
    format!(
        "state:\n  store: redis\n  on_error: {on_error}\n  redis:\n    url: \"{}\"\n    timeout: \"500ms\"\n",
        redis.url()
    )
}

/// The default forward route on [`CAPTURE`] with `capture_extra`, the guard on, and the
/// `state` section for `redis`.
fn yaml(redis: &Redis, capture_extra: &str, on_error: &str) -> String {
    format!(
        "{}{}{}",
        oz_token(""),
        forward_route(capture_extra),
        state(redis, on_error)
    )
}

/// A second proxy as its own process (the binary), with the same config as `stack`'s but its own
/// listeners, in front of the same simulator and backend.
fn process_replica(stack: &Stack, yaml: &str, dir: &TempDir) -> ProxyProcess {
    let path = dir.write("replica.yaml", stack.config(yaml));
    ProxyProcess::start(&path)
}

async fn get(client: &Client, path: &str) -> Reply {
    client
        .send(http::Request::get(path).body(Default::default()).unwrap())
        .await
}

/// One capture checked by one proxy is a replay at the other, and at the first one restarted:
/// Oz saw it once.
#[tokio::test]
async fn a_capture_checked_by_one_replica_is_a_replay_at_every_other() {
    let redis = Redis::start();
    let yaml = yaml(&redis, "", "fail_closed");
    let stack = Stack::start_with(sim_config(), &yaml, ProxyBuilder::replay_guard).await;
    let dir = TempDir::new("abuse-redis");
    let other = process_replica(&stack, &yaml, &dir);
    let other_client = Client::new(other.traffic, false);

    stack.post(CAPTURE, capture(1)).await.assert_from_backend();
    other_client
        .post(CAPTURE, capture(1))
        .await
        .problem(409, "capture_replayed");
    // And the other way round.
    other_client
        .post(CAPTURE, capture(2))
        .await
        .assert_from_backend();
    stack
        .post(CAPTURE, capture(2))
        .await
        .problem(409, "capture_replayed");
    assert_eq!(stack.oz().uploads().len(), 2);
    let (status, _) = other.terminate();
    assert!(status.success(), "{status}");

    // A restart forgets nothing that Redis holds.
    let restarted = stack.replica(&yaml, ProxyBuilder::replay_guard).await;
    Client::new(restarted.traffic, false)
        .post(CAPTURE, capture(1))
        .await
        .problem(409, "capture_replayed");
    assert_eq!(stack.oz().uploads().len(), 2);
    restarted.stop().await;
    stack.stop().await;
}

/// The global budget is one for both proxies; a per-client limit too.
#[tokio::test]
async fn two_replicas_hold_one_global_budget() {
    let redis = Redis::start();
    let yaml = yaml(
        &redis,
        "  rate_limit:\n    per_client: { limit: 2, per: \"1m\", key: \"header:x-user\" }\n    global: { limit: 3, per: \"1m\" }\n",
        "fail_closed",
    );
    let stack = Stack::start_with(sim_config(), &yaml, ProxyBuilder::replay_guard).await;
    let dir = TempDir::new("abuse-redis");
    let other = process_replica(&stack, &yaml, &dir);
    let clients = [stack.client(), Client::new(other.traffic, false)];
    let send = |i: usize, user: &'static str, n| {
        let client = clients[i].clone();
        async move {
            client
                .post_with(CAPTURE, "application/json", &[("x-user", user)], capture(n))
                .await
        }
    };
    // One user's two captures, one on each proxy; the third is over its own limit.
    send(0, "ann", 1).await.assert_from_backend();
    send(1, "ann", 2).await.assert_from_backend();
    let doc = send(0, "ann", 3).await.problem(429, "rate_limited").clone();
    assert_eq!(doc["limit"], "per_client", "{doc}");
    // A third capture from someone else spends the global budget of 3; the fourth is refused
    // on either proxy.
    send(1, "bob", 4).await.assert_from_backend();
    for i in [0, 1] {
        let doc = send(i, "cid", 5 + i as u64)
            .await
            .problem(429, "rate_limited")
            .clone();
        assert_eq!(doc["limit"], "global", "{doc}");
    }
    assert_eq!(stack.oz().uploads().len(), 3);
    other.terminate();
    stack.stop().await;
}

/// Redis stopped mid-run under `fail_closed`: captures get 503 `state_unavailable` with
/// `Retry-After` and nothing is uploaded; passthrough and `/ready` are untouched; the store's
/// gauge shows it. Redis back: the guard and the limits hold again, with no restart.
#[tokio::test]
async fn a_redis_outage_closes_captures_and_nothing_else() {
    let mut redis = Redis::start();
    let yaml = yaml(
        &redis,
        "  rate_limit:\n    per_client: { limit: 2, per: \"1m\" }\n",
        "fail_closed",
    );
    let stack = Stack::start_with(sim_config(), &yaml, ProxyBuilder::replay_guard).await;
    let up = "oz_proxy_state_up{store=\"redis\"}";
    stack.proxy.wait_metric(up, 1.0).await;
    stack.post(CAPTURE, capture(1)).await.assert_from_backend();
    // Passthrough traffic all along, from before the outage to after Redis is back.
    let (stop_traffic, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let traffic = tokio::spawn({
        let client = stack.client();
        async move {
            let mut statuses = Vec::new();
            while stopped.try_recv().is_err() {
                statuses.push(get(&client, "/passthrough").await.status.as_u16());
            }
            statuses
        }
    });

    redis.stop();
    let refused = stack.post(CAPTURE, capture(2)).await;
    refused.problem(503, "state_unavailable");
    assert_eq!(refused.headers["retry-after"], "1");
    assert_eq!(stack.oz().uploads().len(), 1);
    assert_eq!(get(&stack.client(), "/passthrough").await.status, 200);
    assert_eq!(stack.admin_get("/ready").await.status, 200);
    stack.proxy.wait_metric(up, 0.0).await;
    assert_eq!(
        stack
            .proxy
            .metric("oz_proxy_state_errors_total{op=\"rate_limit\",result=\"refused\"}")
            .await,
        1.0
    );

    // An empty Redis (no persistence here): the first capture is new to it.
    redis.restart();
    stack.proxy.wait_metric(up, 1.0).await;
    stack.post(CAPTURE, capture(3)).await.assert_from_backend();
    stack
        .post(CAPTURE, capture(3))
        .await
        .problem(409, "capture_replayed");
    stack
        .post(CAPTURE, capture(4))
        .await
        .problem(429, "rate_limited");
    assert_eq!(stack.oz().uploads().len(), 2);
    stop_traffic.send(()).unwrap();
    let statuses = traffic.await.unwrap();
    assert!(
        statuses.len() > 1 && statuses.iter().all(|s| *s == 200),
        "{statuses:?}"
    );
    stack.stop().await;
}

/// Under `fail_open` a Redis outage lets captures go on, unguarded, counted.
#[tokio::test]
async fn under_fail_open_captures_go_on_while_redis_is_down() {
    let mut redis = Redis::start();
    let yaml = yaml(
        &redis,
        "  rate_limit:\n    global: { limit: 100, per: \"1m\" }\n",
        "fail_open",
    );
    let stack = Stack::start_with(sim_config(), &yaml, ProxyBuilder::replay_guard).await;
    stack.post(CAPTURE, capture(1)).await.assert_from_backend();
    redis.stop();
    stack.post(CAPTURE, capture(2)).await.assert_from_backend();
    // Unguarded: the same capture again is not recognised while Redis is away.
    stack.post(CAPTURE, capture(2)).await.assert_from_backend();
    assert_eq!(stack.oz().uploads().len(), 3);
    for op in ["rate_limit", "replay"] {
        assert_eq!(
            stack
                .proxy
                .metric(&format!(
                    "oz_proxy_state_errors_total{{op=\"{op}\",result=\"unguarded\"}}"
                ))
                .await,
            2.0,
            "{op}"
        );
    }
    stack.stop().await;
}

/// What the proxies wrote to Redis names no client address, no cookie value and no capture
/// byte, and every key but the salt expires.
#[tokio::test]
async fn redis_holds_no_client_identity_and_no_capture_bytes() {
    const COOKIE: &str = "session-value-5e0c";
    const ADDRESS: &str = "198.51.100.23";
    let redis = Redis::start();
    let yaml = format!(
        "{}capture:\n  wait_for_result: \"5s\"\n  unchecked_images: strip\n  rate_limit:\n    per_client: {{ limit: 5, per: \"1m\", key: \"cookie:sid\" }}\n  routes:\n    - path: \"{CAPTURE}\"\n    - path: \"/by-address\"\n      on_result: respond\n      rate_limit:\n        per_client: {{ limit: 5, per: \"1m\" }}\n        global: {{ limit: 50, per: \"1m\" }}\n{}forwarding:\n  trusted_hops: 1\n",
        oz_token(""),
        state(&redis, "fail_closed"),
    );
    let stack = Stack::start_with(sim_config(), &yaml, ProxyBuilder::replay_guard).await;
    let sample = SampleCapture::numbered(1, 3, false, "video_selfie_blank");
    let cookie = format!("sid={COOKIE}");
    stack
        .post_with(
            CAPTURE,
            "application/json",
            &[("cookie", &cookie)],
            sample.to_json(),
        )
        .await
        .assert_from_backend();
    let rsp = stack
        .post_with(
            "/by-address",
            "application/json",
            &[("x-forwarded-for", ADDRESS)],
            capture(2),
        )
        .await;
    assert_eq!(rsp.status, 200, "{}", rsp.json());

    let entries = redis.dump();
    assert!(entries.len() >= 5, "{entries:?}");
    let frame = base64::engine::general_purpose::STANDARD
        .decode(sample.frames[1].split_once(',').unwrap().1)
        .unwrap();
    for e in &entries {
        assert!(e.key.starts_with("ozp:"), "{}", e.key);
        assert!(e.key == "ozp:salt" || e.pttl > 0, "{} never expires", e.key);
        let mut text = e.key.clone().into_bytes();
        text.extend_from_slice(&e.value);
        for needle in [
            COOKIE.as_bytes(),
            ADDRESS.as_bytes(),
            b"127.0.0.1",
            &frame[..],
        ] {
            assert!(
                !text.windows(needle.len()).any(|w| w == needle),
                "{} holds {:?}",
                e.key,
                String::from_utf8_lossy(needle)
            );
        }
    }
    stack.stop().await;
}
