//! The Redis store: the replay claims and rate-limit buckets of every replica in one Redis (or
//! Valkey), each question one atomic command or Lua script, each call bounded by
//! `state.redis.timeout`.
//!
//! Redis being away never holds the proxy up: the connection is made in the background and remade
//! after it breaks (`redis::aio::ConnectionManager`), and meanwhile every call fails within the
//! timeout with [`Unavailable`], which `state.on_error` turns into a refusal or a pass. A probe
//! PINGs once a second, so `oz_proxy_state_up{store="redis"}` follows Redis even while no capture
//! comes.
//!
//! Keys, all under `state.redis.key_prefix`:
//! - `rp:{hex}`: a frame digest's claim (the claim's token) or its confirmation (`0`);
//! - `rl:{hex}`: a rate-limit bucket's theoretical arrival time, in µs on Redis's clock;
//! - `salt`: the HMAC salt that turns digests and client identities into those hex names.
//!
//! Every key but the salt expires by itself. The salt must be one for all replicas, or they would
//! count one client or one capture under different keys, so it lives in Redis as well: the first
//! replica stores a random one and the others read it. The claim and take scripts check it on
//! every call: a replica that hashed with another salt reads the stored one again and retries, and
//! when the salt is gone (a flush) the first replica to call puts its own back, the one the
//! others still hold.
//!
//! No error or log line from here names the URL (it may carry a password), a key or a value: a
//! failure is told by what failed (connecting, a timeout, an error reply's code, a TLS check).

use std::error::Error as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, Script};
use arc_swap::ArcSwapOption;
use aws_lc_rs::hmac;
use tokio::time::MissedTickBehavior;

use super::{
    bucket_key, digest_key, random_salt, Bucket, Claim, Decision, Key, Ticket, Unavailable,
};
use crate::config::{Limit, RedisConfig};
use crate::metrics::Metrics;

/// The `store` label of the metrics.
const STORE: &str = "redis";
/// Key kinds, after the prefix.
const REPLAY: &str = "rp:";
const BUCKET: &str = "rl:";
const SALT: &str = "salt";

/// How often the probe asks Redis whether it answers.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A reconnect tries this many times, 100 ms, 200 ms and 400 ms apart (with jitter), then gives
/// up until the next call or probe starts another: Redis coming back is noticed within about two
/// seconds, and a Redis that is down gets a handful of attempts a second from each replica, not
/// one per capture.
const RECONNECT_TRIES: usize = 3;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(100);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// At least how long a claim whose answer came too late is tried to be taken back.
const TAKE_BACK_FOR: Duration = Duration::from_secs(10);

/// Tries of a salted call: the second one runs with the salt read again.
const SALT_TRIES: usize = 2;

/// `health` values.
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// The shared state in Redis. Cheap to share: one connection, multiplexed by every call.
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where Redis is and how to log in; only connects when asked to.
    client: Client,
    timeout: Duration,
    prefix: String,
    salt_key: String,
    metrics: Metrics,
    /// Made on the first call, or in `new` when a runtime is there: the manager spawns tasks.
    conn: OnceLock<ConnectionManager>,
    /// The salt as last read from Redis; dropped after any failure, so it is read again.
    salt: ArcSwapOption<Salt>,
    /// `UNKNOWN`, `UP` or `DOWN`, for logging each change once.
    health: AtomicU8,
    scripts: Scripts,
}

struct Salt {
    /// As stored: what the scripts compare with.
    hex: String,
    key: hmac::Key,
}

/// The Lua scripts (`src/state/lua/`), run by EVALSHA and loaded when Redis does not know them.
struct Scripts {
    salt: Script,
    claim: Script,
    release: Script,
    take: Script,
}

/// Why a call failed; its text is the reason of [`Unavailable`].
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{}", what_failed(.0))]
    Redis(#[from] RedisError),
    #[error("{0}")]
    Reply(&'static str),
}

impl RedisStore {
    /// What [`RedisStore::new`] would refuse (the URL, the CA file), with nothing started.
    pub fn check(config: &RedisConfig) -> Result<(), String> {
        client(config).map(drop)
    }

    /// Parses the URL and returns at once: nothing is connected here, so a Redis that is down
    /// at start only makes the calls fail until it is up.
    pub fn new(config: &RedisConfig, metrics: Metrics) -> Result<RedisStore, String> {
        // Names the key, never its value: the URL may carry a password.
        let client = client(config)?;
        metrics.state_up(STORE, false);
        let inner = Arc::new(Inner {
            client,
            timeout: config.timeout,
            prefix: config.key_prefix.clone(),
            salt_key: format!("{}{SALT}", config.key_prefix),
            metrics,
            conn: OnceLock::new(),
            salt: ArcSwapOption::empty(),
            health: AtomicU8::new(UNKNOWN),
            scripts: Scripts {
                salt: Script::new(include_str!("lua/salt.lua")),
                claim: Script::new(include_str!("lua/claim.lua")),
                release: Script::new(include_str!("lua/release.lua")),
                take: Script::new(include_str!("lua/take.lua")),
            },
        });
        // Connecting (and probing) starts now when there is a runtime to do it on, as when the
        // proxy starts; otherwise with the first call.
        if tokio::runtime::Handle::try_current().is_ok() {
            inner.connection();
        }
        Ok(RedisStore { inner })
    }

    pub async fn claim(&self, digests: &[[u8; 32]], hold: Duration) -> Result<Claim, Unavailable> {
        let inner = &*self.inner;
        let mut conn = self.inner.connection();
        // The claim last sent, so that one whose answer did not come in time can be taken back.
        let sent: std::sync::Mutex<Option<Ticket>> = std::sync::Mutex::new(None);
        let result = inner
            .call(async {
                for _ in 0..SALT_TRIES {
                    let salt = inner.salt(&mut conn).await?;
                    let keys: Vec<Key> = digests.iter().map(|d| digest_key(&salt.key, d)).collect();
                    let token = fastrand::u64(1..);
                    let mut script = inner.scripts.claim.key(&inner.salt_key);
                    for key in &keys {
                        script.key(inner.key(REPLAY, key));
                    }
                    *sent.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ticket {
                        keys: keys.clone(),
                        token,
                    });
                    let claimed: i64 = script
                        .arg(&salt.hex)
                        .arg(token)
                        .arg(millis(hold))
                        .invoke_async(&mut conn)
                        .await?;
                    match claimed {
                        1 => return Ok(Claim::Claimed(Ticket { keys, token })),
                        0 => return Ok(Claim::Seen),
                        _ => inner.salt.store(None),
                    }
                }
                Err(Failure::Reply("the shared salt kept changing"))
            })
            .await;
        // A claim the proxy gave up on may still have run in Redis, and would hold the capture's
        // frames for the whole window while its user was told nothing was uploaded. It is taken
        // back in the background; the release script only drops what still carries its token.
        if let (Err(_), Some(ticket)) = (
            &result,
            sent.into_inner().unwrap_or_else(|e| e.into_inner()),
        ) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let inner = self.inner.clone();
                runtime.spawn(async move {
                    // Tried again until it lands, for longer than a capture may wait: Redis may
                    // stay slow for a while. Nobody waits on it.
                    let patience = (inner.timeout * 20).max(TAKE_BACK_FOR);
                    let _ = tokio::time::timeout(patience, async {
                        let mut pause = RECONNECT_MIN_DELAY;
                        loop {
                            let mut conn = inner.connection();
                            let script = inner.release_script(&ticket);
                            if script.invoke_async::<()>(&mut conn).await.is_ok() {
                                return;
                            }
                            tokio::time::sleep(crate::backoff::jitter(pause)).await;
                            pause = (pause * 2).min(RECONNECT_MAX_DELAY);
                        }
                    })
                    .await;
                });
            }
        }
        result
    }

    pub async fn confirm(&self, ticket: &Ticket, window: Duration) -> Result<(), Unavailable> {
        let inner = &*self.inner;
        let mut conn = self.inner.connection();
        let mut pipe = ::redis::pipe();
        for key in &ticket.keys {
            pipe.cmd("SET")
                .arg(inner.key(REPLAY, key))
                .arg(0)
                .arg("PX")
                .arg(millis(window))
                .ignore();
        }
        inner
            .call(async {
                pipe.query_async::<()>(&mut conn).await?;
                Ok(())
            })
            .await
    }

    pub async fn release(&self, ticket: &Ticket) -> Result<(), Unavailable> {
        let inner = &*self.inner;
        let mut conn = self.inner.connection();
        let script = inner.release_script(ticket);
        inner
            .call(async {
                script.invoke_async::<()>(&mut conn).await?;
                Ok(())
            })
            .await
    }

    pub async fn take(&self, bucket: Bucket<'_>, limit: &Limit) -> Result<Decision, Unavailable> {
        let inner = &*self.inner;
        let mut conn = self.inner.connection();
        let per_us = limit.per.as_micros() as u64;
        inner
            .call(async {
                for _ in 0..SALT_TRIES {
                    let salt = inner.salt(&mut conn).await?;
                    let key = bucket_key(&salt.key, bucket, limit);
                    let reply: Vec<i64> = inner
                        .scripts
                        .take
                        .key(&inner.salt_key)
                        .key(inner.key(BUCKET, &key))
                        .arg(&salt.hex)
                        .arg(limit.limit)
                        .arg(per_us)
                        .invoke_async(&mut conn)
                        .await?;
                    match *reply.as_slice() {
                        [-1] => inner.salt.store(None),
                        [allowed, remaining, reset, retry_after] => {
                            return decision(limit, allowed, remaining, reset, retry_after)
                        }
                        _ => break,
                    }
                }
                Err(Failure::Reply(
                    "the rate-limit script gave an unexpected reply",
                ))
            })
            .await
    }
}

/// The decision the take script returned, checked to be one.
fn decision(
    limit: &Limit,
    allowed: i64,
    remaining: i64,
    reset: i64,
    retry_after: i64,
) -> Result<Decision, Failure> {
    let bad = || Failure::Reply("the rate-limit script gave an unexpected reply");
    let us = |v: i64| {
        u64::try_from(v)
            .map(Duration::from_micros)
            .map_err(|_| bad())
    };
    Ok(Decision {
        allowed: allowed == 1,
        limit: limit.limit,
        per: limit.per,
        remaining: u32::try_from(remaining).map_err(|_| bad())?,
        reset: us(reset)?,
        retry_after: us(retry_after)?,
    })
}

// === impl Inner ===

impl Inner {
    /// The connection manager, made on first use together with the probe that keeps
    /// `state_up` current.
    fn connection(self: &Arc<Self>) -> ConnectionManager {
        let mut made = false;
        let conn = self.conn.get_or_init(|| {
            made = true;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(RECONNECT_TRIES)
                .set_min_delay(RECONNECT_MIN_DELAY)
                .set_max_delay(RECONNECT_MAX_DELAY);
            ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                .expect("a manager without push senders or resubscription builds")
        });
        if made {
            tokio::spawn(probe(Arc::downgrade(self)));
        }
        conn.clone()
    }

    fn key(&self, kind: &str, key: &Key) -> String {
        let mut name = String::with_capacity(self.prefix.len() + kind.len() + 2 * key.len());
        name.push_str(&self.prefix);
        name.push_str(kind);
        push_hex(&mut name, key);
        name
    }

    /// The salt every replica hashes with: as last read, or read (and stored first, when
    /// Redis has none) now.
    async fn salt(&self, conn: &mut ConnectionManager) -> Result<Arc<Salt>, Failure> {
        if let Some(salt) = self.salt.load_full() {
            return Ok(salt);
        }
        let mut fresh = String::with_capacity(64);
        push_hex(&mut fresh, &random_salt());
        let hex: String = self
            .scripts
            .salt
            .key(&self.salt_key)
            .arg(&fresh)
            .invoke_async(conn)
            .await?;
        let bytes = parse_salt(&hex).ok_or(Failure::Reply(
            "the salt stored in Redis is not 32 bytes of hex",
        ))?;
        let salt = Arc::new(Salt {
            hex,
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        });
        self.salt.store(Some(salt.clone()));
        Ok(salt)
    }

    /// Runs one call within the timeout and keeps `state_up` and the log in step with how it
    /// went.
    /// The release script for `ticket`, ready to run.
    fn release_script(&self, ticket: &Ticket) -> ::redis::ScriptInvocation<'_> {
        let mut script = self.scripts.release.prepare_invoke();
        for key in &ticket.keys {
            script.key(self.key(REPLAY, key));
        }
        script.arg(ticket.token);
        script
    }

    async fn call<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, Failure>>,
    ) -> Result<T, Unavailable> {
        let result = match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout(self.timeout)),
        };
        match &result {
            Ok(_) => self.set_health(None),
            Err(failure) => {
                // A failure may be Redis restarting empty or failing over: read the salt again.
                self.salt.store(None);
                self.set_health(Some(failure));
            }
        }
        result.map_err(|failure| Unavailable(failure.to_string()))
    }

    fn set_health(&self, failure: Option<&Failure>) {
        let now = if failure.is_some() { DOWN } else { UP };
        self.metrics.state_up(STORE, now == UP);
        if self.health.swap(now, Ordering::Relaxed) == now {
            return;
        }
        match failure {
            None => tracing::info!(store = STORE, "the state store answers"),
            Some(failure) => tracing::warn!(
                store = STORE,
                reason = %failure,
                "the state store does not answer; captures get what state.on_error says until it does"
            ),
        }
    }
}

/// PINGs Redis every [`PROBE_EVERY`] while the store lives (it holds no strong reference, so
/// dropping the store ends it).
async fn probe(store: Weak<Inner>) {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(inner) = store.upgrade() else {
            return;
        };
        let mut conn = inner.connection();
        // The outcome is recorded by `call`; there is nobody else to tell.
        let _ = inner
            .call(async {
                ::redis::cmd("PING").query_async::<()>(&mut conn).await?;
                Ok(())
            })
            .await;
    }
}

/// What failed, in words that hold no URL, key or value.
fn what_failed(e: &RedisError) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    if e.is_connection_refusal() {
        return "connection refused".to_owned();
    }
    if let Some(tls) = tls_error(e) {
        return tls;
    }
    if e.is_connection_dropped() {
        return "connection lost".to_owned();
    }
    if let Some(code) = e.code() {
        // The first word of an error reply (`NOAUTH`, `WRONGPASS`, `OOM`, `READONLY`...), never
        // the message after it, which may quote a key.
        return format!("error reply {code}");
    }
    e.category().to_owned()
}

/// A failed TLS handshake, told by what was wrong: the certificate errors of rustls carry the
/// host names they compared, which are not for logs.
fn tls_error(e: &RedisError) -> Option<String> {
    let mut next = e.source();
    while let Some(mut err) = next {
        // The redis crate keeps its causes in an `Arc`, which is what `source` hands out.
        if let Some(inner) = err.downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>() {
            err = &**inner;
        }
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            use rustls::CertificateError as C;
            let what = match tls {
                rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
                    "the server's certificate is from an unknown issuer"
                }
                rustls::Error::InvalidCertificate(
                    C::NotValidForName | C::NotValidForNameContext { .. },
                ) => "the server's certificate is not for the URL's host",
                rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                    "the server's certificate has expired"
                }
                rustls::Error::InvalidCertificate(_) => "the server's certificate was refused",
                rustls::Error::AlertReceived(_) => "the server refused the handshake",
                _ => "the handshake failed",
            };
            return Some(format!("TLS: {what}"));
        }
        next = err.source();
    }
    None
}

/// Milliseconds for PX: rounded up, so a key never goes before its time, and at least 1.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

fn parse_salt(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let nibble = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut salt = [0; 32];
    for (byte, pair) in salt.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(salt)
}

/// The client for `config`: the URL parsed, the CA file read. Connects to nothing.
fn client(config: &RedisConfig) -> Result<Client, String> {
    let bad_url = |_| "state.redis.url is not a valid Redis URL".to_owned();
    match &config.ca_file {
        None => Client::open(config.url.as_str()).map_err(bad_url),
        Some(path) => {
            // Parsed alone first, so that a failure below is the CA's.
            Client::open(config.url.as_str()).map_err(bad_url)?;
            let pem = std::fs::read(path).map_err(|e| {
                format!(
                    "state.redis.ca_file: cannot read {}: {}",
                    path.display(),
                    e.kind()
                )
            })?;
            let certs = ::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            Client::build_with_tls(config.url.as_str(), certs).map_err(|_| {
                format!(
                    "state.redis.ca_file: {} holds no usable PEM certificate",
                    path.display()
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_round_trip_through_hex() {
        let salt = random_salt();
        let mut hex = String::new();
        push_hex(&mut hex, &salt);
        assert_eq!(parse_salt(&hex), Some(salt));
        assert_eq!(parse_salt(&hex[2..]), None);
        assert_eq!(parse_salt(&hex.replace(&hex[..1], "g")), None);
    }

    #[test]
    fn px_rounds_up_and_is_never_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1001)), 2);
        assert_eq!(millis(Duration::from_secs(86_400)), 86_400_000);
    }

    #[test]
    fn a_bad_url_is_refused_without_being_repeated() {
        let config = RedisConfig {
            url: "redis://:hunter2@[not-a-host/0".to_owned(),
            ..RedisConfig::default()
        };
        let err = RedisStore::new(&config, Metrics::register(&mut Default::default()))
            .err()
            .expect("refused");
        assert_eq!(err, "state.redis.url is not a valid Redis URL");
    }
}
