//! Validation of the abuse controls: the replay guard, the rate limits (section-wide and per
//! route) and the `state` section that holds what they remember. Split from `validate` only to
//! keep each file about one thing; the same rules apply (key paths named, values of secrets never
//! quoted).

use std::time::Duration;

use super::capture::{ClientLimit, Limit, RateLimitConfig, ReplayOverride};
use super::state::StoreKind;
use super::validate::removed_before_capture;
use super::{Config, Error};

/// Longest rate-limit period: a bucket that forgets more slowly is a quota, not a rate.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// Largest limit: one capture per millisecond of the period at most, so that the emission
/// interval (`per / limit`, in whole microseconds: `state::gcra`) is at least 1,000 µs and its
/// rounding lets through at most 0.1 % more than the limit.
const MIN_INTERVAL_US: u128 = 1_000;

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
        let keep = self.server.underscores_in_headers;
        check_limits("capture.rate_limit", &self.capture.rate_limit, keep)?;
        for (i, r) in self.capture.routes.iter().enumerate() {
            if let Some(ReplayOverride {
                window: Some(w), ..
            }) = &r.replay
            {
                check_window(&format!("capture.routes[{i}].replay.window"), *w)?;
            }
            if let Some(limits) = &r.rate_limit {
                check_limits(&format!("capture.routes[{i}].rate_limit"), limits, keep)?;
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
        // `#insecure` would ask the client to skip certificate checks, which this build cannot
        // do: every connection would fail. Refused rather than half honoured.
        if r.url.contains('#') {
            return Err(Error::invalid(
                "state.redis.url",
                "must not carry a fragment (`#…`): certificate checks cannot be turned off",
            ));
        }
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

fn check_limits(at: &str, limits: &RateLimitConfig, keep_underscores: bool) -> Result<(), Error> {
    if let Some(c) = &limits.per_client {
        check_limit(&format!("{at}.per_client"), &c.limit())?;
        check_client_key(&format!("{at}.per_client.key"), c, keep_underscores)?;
    }
    if let Some(g) = &limits.global {
        check_limit(&format!("{at}.global"), g)?;
    }
    Ok(())
}

fn check_limit(at: &str, l: &Limit) -> Result<(), Error> {
    if l.per < Duration::from_secs(1) || l.per > MAX_PERIOD {
        return Err(Error::invalid(
            format!("{at}.per"),
            "must be between 1s and 24h",
        ));
    }
    if l.limit == 0 || u128::from(l.limit) * MIN_INTERVAL_US > l.per.as_micros() {
        return Err(Error::invalid(
            format!("{at}.limit"),
            "must be at least 1 and at most one per millisecond of `per` (leave the limit out for none)",
        ));
    }
    Ok(())
}

fn check_client_key(at: &str, c: &ClientLimit, keep_underscores: bool) -> Result<(), Error> {
    let valid = match c.key.split_once(':') {
        None => c.key == "client_ip",
        // Not one the request filter removes before a capture is read (`x-oz-*`, hop-by-hop
        // fields, names with `_` unless kept): every client would count under its address.
        Some(("header", name)) => {
            !name.is_empty()
                && http::HeaderName::from_bytes(name.as_bytes()).is_ok()
                && !removed_before_capture(&name.to_ascii_lowercase(), keep_underscores)
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
            "must be `client_ip`, `header:NAME` or `cookie:NAME`, with a header the proxy passes on (not X-Oz-*, hop-by-hop, or with `_` unless server.underscores_in_headers)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::test_input::{env, MINIMAL};
    use crate::config::Config;

    /// The error for `capture_lines` under `capture:` (with a route) and `tail`, or `None`.
    fn refused(capture_lines: &str, tail: &str) -> Option<String> {
        let yaml = format!(
            "{MINIMAL}oz:\n  auth:\n    token: t\ncapture:\n{capture_lines}  routes:\n    - path: /a\n{tail}"
        );
        Config::from_yaml(
            &yaml,
            &env(&[("OZ_PROXY__STATE__REDIS__URL", "redis://r:6379/0")]),
        )
        .err()
        .map(|e| e.to_string())
    }

    #[test]
    fn limits_keys_and_urls_are_checked_with_the_key_named() {
        let limit = |l: &str| format!("  rate_limit:\n    global: {l}\n");
        assert_eq!(refused(&limit("{ limit: 60, per: \"1m\" }"), ""), None);
        // One per millisecond of the period at most.
        assert_eq!(refused(&limit("{ limit: 1000, per: \"1s\" }"), ""), None);
        let e = refused(&limit("{ limit: 1001, per: \"1s\" }"), "").unwrap();
        assert!(e.contains("capture.rate_limit.global.limit"), "{e}");
        let e = refused(&limit("{ limit: 0, per: \"1s\" }"), "").unwrap();
        assert!(e.contains("capture.rate_limit.global.limit"), "{e}");
        let e = refused(&limit("{ limit: 5, per: \"500ms\" }"), "").unwrap();
        assert!(e.contains("capture.rate_limit.global.per"), "{e}");

        let key = |k: &str| {
            format!("  rate_limit:\n    per_client: {{ limit: 5, per: \"1m\", key: \"{k}\" }}\n")
        };
        for good in ["client_ip", "header:X-User", "cookie:sid"] {
            assert_eq!(refused(&key(good), ""), None, "{good}");
        }
        for bad in [
            "ip",
            "header:",
            "header:x_user",
            "header:X-Oz-User",
            "header:connection",
            "cookie:a;b",
            "query:x",
        ] {
            let e = refused(&key(bad), "").unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(
                e.contains("capture.rate_limit.per_client.key"),
                "{bad}: {e}"
            );
        }
        // A name with `_` passes when the proxy keeps such headers.
        assert_eq!(
            refused(
                &key("header:x_user"),
                "server:\n  underscores_in_headers: true\n"
            ),
            None
        );

        let e = refused(
            "",
            "state:\n  store: redis\n  redis:\n    ca_file: /nonexistent.pem\n",
        )
        .unwrap();
        assert!(e.contains("state.redis.ca_file"), "{e}");
    }

    #[test]
    fn a_url_fragment_is_refused_without_quoting_the_url() {
        let yaml = format!("{MINIMAL}state:\n  store: redis\n");
        let e = Config::from_yaml(
            &yaml,
            &env(&[(
                "OZ_PROXY__STATE__REDIS__URL",
                "rediss://:pw-hunter2@r:6380/0#insecure",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("state.redis.url") && !e.contains("hunter2"),
            "{e}"
        );
    }
}
