//! The Redis store (`state.store: redis`) against a real `redis-server`: the replay claims and
//! rate-limit buckets hold across two stores ("replicas") sharing one Redis, the GCRA script
//! decides as `state::gcra::step` does, an outage or a slow Redis is `Unavailable` within the
//! timeout and heals without a new store, and Redis holds nothing a client sent.
//!
//! Every store is built through the public entry point, `Store::new` with a `StateConfig`, as the
//! proxy builds it. The tests run on a current-thread runtime (unless they need two threads), so
//! the store's background probe and the connection manager's tasks run on the test's thread and
//! a thread-local log subscriber sees them.

mod support;

use std::sync::Arc;
use std::time::Duration;

use oz_capture_proxy::config::{Limit, RedisConfig, StateConfig, StoreKind};
use oz_capture_proxy::metrics::{self, Metrics};
use oz_capture_proxy::state::{gcra, Bucket, Claim, Store, Unavailable};
use prometheus_client::registry::Registry;
use support::logs::Captured;
use support::redis::{Options, Redis};
use support::within;

const HOUR: Duration = Duration::from_secs(3600);
const MIN: Duration = Duration::from_secs(60);
/// Generous, for the tests where Redis answers: they must not fail on a busy machine.
const ANSWERS: Duration = Duration::from_secs(5);
/// For the tests where Redis does not answer: each call waits this long before it fails.
const SHORT: Duration = Duration::from_millis(300);

/// A store on `url` as the proxy makes it, with the registry its metrics are on.
struct Replica {
    store: Store,
    registry: Registry,
}

impl Replica {
    fn new(url: &str, prefix: &str, timeout: Duration) -> Replica {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let config = StateConfig {
            store: StoreKind::Redis,
            redis: RedisConfig {
                url: url.to_owned(),
                timeout,
                key_prefix: prefix.to_owned(),
                ..RedisConfig::default()
            },
            ..StateConfig::default()
        };
        let store = Store::new(&config, 1000, metrics).expect("the store is made");
        Replica { store, registry }
    }

    /// `oz_proxy_state_up{store="redis"}`.
    fn up(&self) -> Option<bool> {
        let text = metrics::render(&self.registry);
        let line = text
            .lines()
            .find(|l| l.starts_with(r#"oz_proxy_state_up{store="redis"}"#))?;
        Some(line.ends_with(" 1"))
    }

    async fn wait_up(&self, up: bool) {
        within(&format!("state_up to be {}", u8::from(up)), async {
            while self.up() != Some(up) {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }
}

fn limit(limit: u32, per: Duration) -> Limit {
    Limit { limit, per }
}

fn digest(i: u32) -> [u8; 32] {
    let mut d = [0x5a; 32];
    d[..4].copy_from_slice(&i.to_be_bytes());
    d
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn claimed(store: &Store, d: &[u8; 32], hold: Duration) -> bool {
    match within("claim", store.claim(&[*d], hold)).await {
        Ok(Claim::Claimed(_)) => true,
        Ok(Claim::Seen) => false,
        Err(e) => panic!("claim failed: {e}"),
    }
}

/// Calls `op` until it succeeds, at most `tries` times; each call is bounded by the store's own
/// timeout, so this waits on the store's state, not on a clock.
async fn until_ok<T, F, Fut>(what: &str, tries: usize, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Unavailable>>,
{
    let mut last = None;
    for _ in 0..tries {
        match within(what, op()).await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
    }
    panic!("{what} still failed after {tries} tries: {last:?}");
}

#[tokio::test]
async fn a_digest_is_claimed_once_and_a_release_frees_it() {
    let redis = Redis::start();
    let s = Replica::new(&redis.url(), "ozp:", ANSWERS).store;
    let Ok(Claim::Claimed(t)) = s.claim(&[digest(1)], HOUR).await else {
        panic!("first claim")
    };
    assert!(!claimed(&s, &digest(1), HOUR).await);
    s.release(&t).await.unwrap();
    let Ok(Claim::Claimed(t)) = s.claim(&[digest(1)], HOUR).await else {
        panic!("claim after release")
    };
    s.confirm(&t, HOUR).await.unwrap();
    // A confirmed digest is no longer the ticket's to release.
    s.release(&t).await.unwrap();
    assert!(!claimed(&s, &digest(1), HOUR).await);
    assert!(claimed(&s, &digest(2), HOUR).await);
}

#[tokio::test]
async fn a_stale_ticket_does_not_release_a_newer_claim() {
    let redis = Redis::start();
    let s = Replica::new(&redis.url(), "ozp:", ANSWERS).store;
    let Ok(Claim::Claimed(old)) = s.claim(&[digest(1)], Duration::from_millis(1)).await else {
        panic!("first claim")
    };
    // Wait for the claim to lapse by watching Redis, not the clock.
    within("the 1 ms claim to lapse", async {
        while !claimed(&s, &digest(1), HOUR).await {}
    })
    .await;
    s.release(&old).await.unwrap();
    assert!(!claimed(&s, &digest(1), HOUR).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_both_claim_one_digest() {
    let redis = Redis::start();
    let a = Arc::new(Replica::new(&redis.url(), "ozp:", ANSWERS).store);
    let b = Arc::new(Replica::new(&redis.url(), "ozp:", ANSWERS).store);
    for i in 0..200 {
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let race = |s: Arc<Store>| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                s.claim(&[digest(i)], HOUR).await
            })
        };
        let (x, y) = (race(a.clone()), race(b.clone()));
        let (x, y) = within("both claims", async { (x.await, y.await) }).await;
        let wins = [x.unwrap().unwrap(), y.unwrap().unwrap()]
            .iter()
            .filter(|c| matches!(c, Claim::Claimed(_)))
            .count();
        assert_eq!(wins, 1, "round {i}: {wins} claims won");
    }
}

#[tokio::test]
async fn a_digest_confirmed_on_one_replica_is_seen_on_the_other() {
    let redis = Redis::start();
    let a = Replica::new(&redis.url(), "ozp:", ANSWERS).store;
    let b = Replica::new(&redis.url(), "ozp:", ANSWERS).store;
    let Ok(Claim::Claimed(t)) = a.claim(&[digest(7)], HOUR).await else {
        panic!("first claim")
    };
    // Held by a's claim: b may not send it meanwhile.
    assert!(!claimed(&b, &digest(7), HOUR).await);
    a.confirm(&t, HOUR).await.unwrap();
    assert!(!claimed(&b, &digest(7), HOUR).await);
    // Another deployment (another prefix) on the same Redis has its own digests.
    let other = Replica::new(&redis.url(), "other:", ANSWERS).store;
    assert!(claimed(&other, &digest(7), HOUR).await);
}

#[tokio::test]
async fn one_bucket_holds_its_limit_across_two_replicas() {
    let redis = Redis::start();
    let a = Replica::new(&redis.url(), "ozp:", ANSWERS).store;
    let b = Replica::new(&redis.url(), "ozp:", ANSWERS).store;
    let five = limit(5, MIN);
    let client = Bucket::Client {
        scope: "section",
        client: b"203.0.113.7",
    };
    let global = Bucket::Global { scope: "section" };
    for (i, store) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        for bucket in [client, global] {
            let d = store.take(bucket, &five).await.unwrap();
            assert!(d.allowed, "take {i} of 5");
            assert_eq!(d.remaining, 4 - i as u32);
        }
    }
    for store in [&a, &b] {
        for bucket in [client, global] {
            let d = store.take(bucket, &five).await.unwrap();
            assert!(!d.allowed, "the 6th of 5");
            assert!(d.retry_after > Duration::ZERO);
            assert_eq!((d.limit, d.per), (5, MIN));
        }
    }
    let another = Bucket::Client {
        scope: "section",
        client: b"203.0.113.8",
    };
    assert!(b.take(another, &five).await.unwrap().allowed);
}

/// The take script, run directly with its test-only `now` argument, against `gcra::step` on the
/// same instants: the same decisions, remaining counts, resets and retry-afters.
#[tokio::test]
async fn the_take_script_decides_as_gcra_step_does() {
    let redis = Redis::start();
    let script = redis::Script::new(include_str!("../src/state/lua/take.lua"));
    let mut conn = redis.connection();
    let salt = "00".repeat(32);
    let mut rng = fastrand::Rng::with_seed(15);
    // Intervals of at least a second: the TAT's expiry is set from these fake instants but runs
    // on Redis's real clock, so it must outlast the test.
    for (n, (lim, per)) in [
        (10, MIN),
        (3, Duration::from_secs(10)),
        (1, Duration::from_secs(5)),
        (100, Duration::from_secs(100)),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("gcra-oracle:{n}");
        let per_us = per.as_micros() as u64;
        let mut now: u64 = 1_700_000_000_000_000;
        let mut tat = None;
        let mut allowed = 0;
        for i in 0..400 {
            // Bursts (many requests at one instant) and gaps up to twice the interval.
            if rng.u8(..4) != 0 {
                now += rng.u64(..=2 * per_us / u64::from(lim));
            }
            let reply: Vec<i64> = script
                .key("gcra-oracle:salt")
                .key(&key)
                .arg(&salt)
                .arg(lim)
                .arg(per_us)
                .arg(now)
                .invoke(&mut conn)
                .expect("the take script runs");
            let (want, new_tat) = gcra::step(now, tat, lim, per);
            if new_tat.is_some() {
                tat = new_tat;
                allowed += 1;
            }
            let got = (
                reply[0] == 1,
                reply[1] as u32,
                Duration::from_micros(reply[2] as u64),
                Duration::from_micros(reply[3] as u64),
            );
            assert_eq!(
                got,
                (want.allowed, want.remaining, want.reset, want.retry_after),
                "limit {lim} per {per:?}, request {i} at {now}"
            );
        }
        assert!(
            allowed > lim && allowed < 400,
            "{allowed} allowed: the run crossed both branches"
        );
    }
}

#[tokio::test]
async fn a_stopped_redis_makes_every_call_unavailable_and_a_restart_heals_the_same_store() {
    let logs = Captured::default();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    );
    let password = "PASSWORD-MARKER-3d9f";
    let mut redis = Redis::start_with(Options {
        password: Some(password.to_owned()),
        ..Options::default()
    });
    let r = Replica::new(&redis.url(), "ozp:", SHORT);
    let s = &r.store;
    let five = limit(5, MIN);
    let bucket = Bucket::Global { scope: "section" };
    let Ok(Claim::Claimed(held)) = s.claim(&[digest(1)], HOUR).await else {
        panic!("claim while up")
    };
    assert!(s.take(bucket, &five).await.unwrap().allowed);
    assert_eq!(r.up(), Some(true));

    redis.stop();
    let mut reasons = Vec::new();
    let e = within("claim while down", s.claim(&[digest(2)], HOUR)).await;
    reasons.push(e.expect_err("claim while down fails"));
    let e = within("confirm while down", s.confirm(&held, HOUR)).await;
    reasons.push(e.expect_err("confirm while down fails"));
    let e = within("release while down", s.release(&held)).await;
    reasons.push(e.expect_err("release while down fails"));
    let e = within("take while down", s.take(bucket, &five)).await;
    reasons.push(e.expect_err("take while down fails"));
    assert_eq!(r.up(), Some(false));
    for Unavailable(reason) in &reasons {
        assert!(!reason.is_empty());
        for secret in [password, &redis.url(), "127.0.0.1"] {
            assert!(!reason.contains(secret), "{reason:?} names {secret:?}");
        }
    }

    redis.restart();
    // The same store, no new one: the connection is remade in the background.
    let d = until_ok("take after the restart", 50, || s.take(bucket, &five)).await;
    assert!(d.allowed);
    assert_eq!(r.up(), Some(true));
    assert!(claimed(s, &digest(2), HOUR).await);
    // Redis came back empty: the digest held before the outage is free again (and so would be
    // after a failover to a replica that lost it).
    assert!(claimed(s, &digest(1), HOUR).await);

    let text = logs.text();
    for secret in [password, &redis.url(), "127.0.0.1"] {
        assert!(!text.contains(secret), "the logs name {secret:?}:\n{text}");
    }
    let warns = text.lines().filter(|l| l.contains("WARN")).count();
    let infos = text
        .lines()
        .filter(|l| l.contains("the state store answers"))
        .count();
    // Down once (logged once, for four failed calls), up twice: at the start and after.
    assert_eq!((warns, infos), (1, 2), "{text}");
}

#[tokio::test]
async fn state_up_follows_redis_with_no_traffic() {
    let mut redis = Redis::start();
    let r = Replica::new(&redis.url(), "ozp:", SHORT);
    r.wait_up(true).await;
    redis.stop();
    r.wait_up(false).await;
    redis.restart();
    r.wait_up(true).await;
}

#[tokio::test]
async fn a_redis_slower_than_the_timeout_is_unavailable_never_a_hang() {
    let redis = Redis::start();
    let r = Replica::new(&redis.url(), "ozp:", SHORT);
    let s = &r.store;
    let five = limit(5, MIN);
    let bucket = Bucket::Global { scope: "section" };
    let Ok(Claim::Claimed(held)) = s.claim(&[digest(1)], HOUR).await else {
        panic!("claim")
    };
    // Writes (and so every script) wait until unpaused; reads such as CLIENT UNPAUSE go on.
    redis.cmd(&["CLIENT", "PAUSE", "60000", "WRITE"]);
    let results = [
        within("claim", s.claim(&[digest(2)], HOUR)).await.err(),
        within("confirm", s.confirm(&held, HOUR)).await.err(),
        within("release", s.release(&held)).await.err(),
        within("take", s.take(bucket, &five)).await.err(),
    ];
    for (i, r) in results.iter().enumerate() {
        let reason = r.as_ref().map(|e| e.to_string());
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("within") || r.contains("timed out")),
            "call {i}: {reason:?}"
        );
    }
    redis.cmd(&["CLIENT", "UNPAUSE"]);
    until_ok("take after the pause", 50, || s.take(bucket, &five)).await;
    // The claim that timed out ran once Redis went on, and is taken back in the background: its
    // frame comes free, rather than held for the window.
    within("the timed-out claim to be taken back", async {
        while !claimed(s, &digest(2), HOUR).await {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn keys_are_prefixed_expire_and_hold_no_client_identity_or_digest() {
    let redis = Redis::start();
    let s = Replica::new(&redis.url(), "ozp-test:", ANSWERS).store;
    let client: &[u8] = b"203.0.113.77";
    let session: &[u8] = b"session-cookie-value-6f2e";
    let d = digest(0xfeed);
    let Ok(Claim::Claimed(t)) = s.claim(&[d], HOUR).await else {
        panic!("claim")
    };
    s.confirm(&t, HOUR).await.unwrap();
    assert!(claimed(&s, &digest(2), HOUR).await);
    for id in [client, session] {
        let bucket = Bucket::Client {
            scope: "route:/api/capture",
            client: id,
        };
        s.take(bucket, &limit(10, MIN)).await.unwrap();
    }
    s.take(Bucket::Global { scope: "section" }, &limit(10, MIN))
        .await
        .unwrap();

    let entries = redis.dump();
    // The salt, two digests, three buckets.
    assert_eq!(entries.len(), 6, "{entries:?}");
    let forbidden: Vec<Vec<u8>> = [client, session, &d[..]]
        .into_iter()
        .flat_map(|v| {
            let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v);
            [
                v.to_vec(),
                hex(v).into_bytes(),
                hex(sha.as_ref()).into_bytes(),
            ]
        })
        .collect();
    for e in &entries {
        assert!(e.key.starts_with("ozp-test:"), "{e:?}");
        if e.key == "ozp-test:salt" {
            assert_eq!(e.pttl, -1, "the salt stays");
        } else {
            assert!(e.pttl > 0, "{e:?} does not expire");
        }
        for f in &forbidden {
            let k = e.key.as_bytes();
            assert!(!k.windows(f.len()).any(|w| w == f), "{e:?}");
            assert!(!e.value.windows(f.len()).any(|w| w == f), "{e:?}");
        }
    }
}

#[tokio::test]
async fn a_flushed_redis_gets_one_salt_every_replica_converges_on() {
    let redis = Redis::start();
    let a = Replica::new(&redis.url(), "ozp:", ANSWERS).store;
    let b = Replica::new(&redis.url(), "ozp:", ANSWERS).store;
    assert!(claimed(&a, &digest(1), HOUR).await);
    assert!(!claimed(&b, &digest(1), HOUR).await);

    // Flushed while a and b hold the old salt; c starts and stores a new one first.
    redis.cmd(&["FLUSHALL"]);
    let c = Replica::new(&redis.url(), "ozp:", ANSWERS).store;
    assert!(claimed(&c, &digest(2), HOUR).await);
    assert!(!claimed(&a, &digest(2), HOUR).await, "a reads c's salt");
    assert!(!claimed(&b, &digest(2), HOUR).await, "b reads c's salt");

    // Flushed again: the first to call puts back the salt all three hold.
    redis.cmd(&["FLUSHALL"]);
    assert!(claimed(&b, &digest(3), HOUR).await);
    assert!(!claimed(&a, &digest(3), HOUR).await);
    assert!(!claimed(&c, &digest(3), HOUR).await);
    let d = Replica::new(&redis.url(), "ozp:", ANSWERS).store;
    assert!(
        !claimed(&d, &digest(3), HOUR).await,
        "a new replica reads it"
    );
}

#[tokio::test]
async fn a_wrong_password_is_unavailable_and_names_no_secret() {
    let redis = Redis::start_with(Options {
        password: Some("right-password-1c7a".to_owned()),
        ..Options::default()
    });
    let url = format!("redis://:WRONG-PASSWORD-MARKER@127.0.0.1:{}/0", redis.port);
    let s = Replica::new(&url, "ozp:", ANSWERS).store;
    let Err(Unavailable(reason)) = within("claim", s.claim(&[digest(1)], HOUR)).await else {
        panic!("a wrong password answers")
    };
    assert!(!reason.contains("WRONG-PASSWORD-MARKER"), "{reason}");
    assert!(!reason.contains("right-password"), "{reason}");
    assert!(
        reason.contains("WRONGPASS") || reason.contains("auth"),
        "{reason}"
    );
}

#[test]
fn a_url_that_does_not_parse_is_refused_without_being_repeated() {
    let mut registry = Registry::default();
    let config = StateConfig {
        store: StoreKind::Redis,
        redis: RedisConfig {
            url: "redis://:PASSWORD-MARKER@[::1/0".to_owned(),
            ..RedisConfig::default()
        },
        ..StateConfig::default()
    };
    let err = Store::new(&config, 10, Metrics::register(&mut registry))
        .err()
        .expect("refused");
    assert_eq!(err, "state.redis.url is not a valid Redis URL");
}

/// `rediss://` with `state.redis.ca_file`: the private CA that signed the server's certificate
/// is trusted, and every call goes over TLS to that server.
#[tokio::test]
async fn rediss_works_with_the_ca_of_ca_file() {
    let redis = Redis::start_with(Options {
        tls: true,
        ..Options::default()
    });
    let config = StateConfig {
        store: StoreKind::Redis,
        redis: RedisConfig {
            url: redis.tls_url(),
            ca_file: Some(redis.ca_file()),
            timeout: ANSWERS,
            ..RedisConfig::default()
        },
        ..StateConfig::default()
    };
    let store = Store::new(&config, 1000, Metrics::register(&mut Registry::default()))
        .expect("the store is made");
    let Ok(Claim::Claimed(t)) = within("claim", store.claim(&[digest(1)], HOUR)).await else {
        panic!("claim over TLS")
    };
    store.confirm(&t, HOUR).await.unwrap();
    assert!(!claimed(&store, &digest(1), HOUR).await);
    assert!(
        store
            .take(Bucket::Global { scope: "s" }, &limit(1, MIN))
            .await
            .unwrap()
            .allowed
    );
    // What it wrote went over TLS to this server: the salt, the digest, the bucket.
    assert_eq!(redis.dump().len(), 3);
}

#[tokio::test]
async fn rediss_with_a_certificate_from_an_unknown_ca_is_unavailable() {
    let redis = Redis::start_with(Options {
        tls: true,
        ..Options::default()
    });
    let s = Replica::new(&redis.tls_url(), "ozp:", ANSWERS).store;
    let Err(Unavailable(reason)) = within("claim", s.claim(&[digest(1)], HOUR)).await else {
        panic!("a certificate from an unknown CA was trusted")
    };
    assert!(
        reason.contains("TLS: the server's certificate is from an unknown issuer"),
        "{reason}"
    );
    assert!(!reason.contains("127.0.0.1"), "{reason}");
    assert!(redis.dump().is_empty());
}

/// The ACL user deploy/README.md suggests for a shared Redis (its own key prefix, the command
/// categories the store needs, and `TIME` for the rate-limit script) is enough for every call.
#[tokio::test]
async fn the_acl_user_of_deploy_readme_can_do_everything_the_store_does() {
    let redis = Redis::start();
    redis.cmd(&[
        "ACL",
        "SETUSER",
        "oz-proxy",
        "on",
        ">acl-pass",
        "~ozp:legacy-app:*",
        "+@read",
        "+@write",
        "+@scripting",
        "+@connection",
        "+time",
    ]);
    let url = format!("redis://oz-proxy:acl-pass@127.0.0.1:{}/0", redis.port);
    let r = Replica::new(&url, "ozp:legacy-app:", ANSWERS);
    let Ok(Claim::Claimed(t)) = within("claim", r.store.claim(&[digest(1)], HOUR)).await else {
        panic!("claim as the ACL user")
    };
    r.store.release(&t).await.unwrap();
    let Ok(Claim::Claimed(t)) = r.store.claim(&[digest(1)], HOUR).await else {
        panic!("claim after release")
    };
    r.store.confirm(&t, HOUR).await.unwrap();
    let d = r
        .store
        .take(Bucket::Global { scope: "s" }, &limit(1, MIN))
        .await
        .unwrap();
    assert!(d.allowed);
    r.wait_up(true).await;
}
