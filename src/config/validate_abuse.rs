//! Validation of the abuse controls: the replay guard, the rate limits (section-wide and per
//! route) and the `state` section that holds what they remember. Split from `validate` only to
//! keep each file about one thing; the same rules apply (key paths named, values of secrets never
//! quoted).

use std::time::Duration;

use super::capture::{ClientLimit, Limit, RateLimitConfig, ReplayOverride};
use super::state::StoreKind;
use super::{Config, Error};

/// Longest rate-limit period: a bucket that forgets more slowly is a quota, not a rate.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// Largest limit: with the shortest period (1 s), one request per microsecond, the resolution
/// of the buckets' clocks (`state::gcra`).
const MAX_LIMIT: u32 = 1_000_000;

/// Longest wait for Redis: the wait is added to every capture's latency.
const MAX_REDIS_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest `key_prefix`.
const MAX_KEY_PREFIX: usize = 64;

impl Config {
    /// `capture.replay`, `capture.rate_limit`, the routes' overrides of both, and `state`.
    pub(super) fn validate_abuse_controls(&self) -> Result<(), Error> {
        let replay = &self.capture.replay;
        check_window("capture.replay.window", replay.window)?;
        if replay.max_entries == 0 {
            return Err(Error::invalid(
                "capture.replay.max_entries",
                "must be at least 1",
            ));
        }
        check_limits("capture.rate_limit", &self.capture.rate_limit)?;
        for (i, r) in self.capture.routes.iter().enumerate() {
            if let Some(ReplayOverride {
                window: Some(w), ..
            }) = &r.replay
            {
                check_window(&format!("capture.routes[{i}].replay.window"), *w)?;
            }
            if let Some(limits) = &r.rate_limit {
                check_limits(&format!("capture.routes[{i}].rate_limit"), limits)?;
            }
        }
        self.validate_state()
    }

    fn validate_state(&self) -> Result<(), Error> {
        let r = &self.state.redis;
        if r.timeout.is_zero() || r.timeout > MAX_REDIS_TIMEOUT {
            return Err(Error::invalid(
                "state.redis.timeout",
                "must be above 0s and at most 10s (every capture may wait this long)",
            ));
        }
        let prefix_ok = r.key_prefix.len() <= MAX_KEY_PREFIX
            && r.key_prefix.bytes().all(|b| b.is_ascii_graphic());
        if !prefix_ok {
            return Err(Error::invalid(
                "state.redis.key_prefix",
                "must be at most 64 visible ASCII characters",
            ));
        }
        if self.state.store != StoreKind::Redis {
            return Ok(());
        }
        if r.url.is_empty() {
            return Err(Error::invalid(
                "state.redis.url",
                "is required with state.store: redis (from OZ_PROXY__STATE__REDIS__URL or state.redis.url_file)",
            ));
        }
        // The URL is a secret: only its scheme is ever named.
        let scheme = r.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("redis") | Some("rediss")) {
            return Err(Error::invalid(
                "state.redis.url",
                "must be a redis:// or rediss:// URL",
            ));
        }
        if let Some(ca) = &r.ca_file {
            if scheme != Some("rediss") {
                return Err(Error::invalid(
                    "state.redis.ca_file",
                    "only applies to a rediss:// URL (TLS)",
                ));
            }
            if !ca.is_file() {
                return Err(Error::invalid(
                    "state.redis.ca_file",
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        Ok(())
    }
}

fn check_window(key: &str, window: Duration) -> Result<(), Error> {
    if window < Duration::from_secs(1) {
        return Err(Error::invalid(key, "must be at least 1s"));
    }
    Ok(())
}

fn check_limits(at: &str, limits: &RateLimitConfig) -> Result<(), Error> {
    if let Some(c) = &limits.per_client {
        check_limit(&format!("{at}.per_client"), &c.limit())?;
        check_client_key(&format!("{at}.per_client.key"), c)?;
    }
    if let Some(g) = &limits.global {
        check_limit(&format!("{at}.global"), g)?;
    }
    Ok(())
}

fn check_limit(at: &str, l: &Limit) -> Result<(), Error> {
    if l.limit == 0 || l.limit > MAX_LIMIT {
        return Err(Error::invalid(
            format!("{at}.limit"),
            "must be between 1 and 1000000 (leave the limit out for none)",
        ));
    }
    if l.per < Duration::from_secs(1) || l.per > MAX_PERIOD {
        return Err(Error::invalid(
            format!("{at}.per"),
            "must be between 1s and 24h",
        ));
    }
    Ok(())
}

fn check_client_key(at: &str, c: &ClientLimit) -> Result<(), Error> {
    let valid = match c.key.split_once(':') {
        None => c.key == "client_ip",
        Some(("header", name)) => {
            !name.is_empty()
                && http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && !name.to_ascii_lowercase().starts_with("x-oz-")
        }
        // RFC 6265 §4.1.1: a cookie name is a token.
        Some(("cookie", name)) => {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        }
        Some(_) => false,
    };
    if !valid {
        return Err(Error::invalid(
            at,
            "must be `client_ip`, `header:NAME` or `cookie:NAME` (and not an X-Oz-* header)",
        ));
    }
    Ok(())
}
