//! The abuse controls of the capture routes: rate limits before a capture's body is read, and
//! the replay guard around its upload. What they remember lives in `crate::state` (this pod's
//! memory or a Redis shared by every replica); this module decides what a capture gets from it.
//!
//! - [`Guard::admit`]: the route's `per_client` limit, then its `global` one; beyond either,
//!   429 `rate_limited` with `Retry-After`, `RateLimit-Policy` and `RateLimit`
//!   (draft-ietf-httpapi-ratelimit-headers), and nothing is read or uploaded.
//! - [`Guard::claim`]: after the transform, before the upload: a capture with any frame claimed
//!   or accepted before is a replay (409 `capture_replayed`); of two captures in flight that
//!   share a frame, one goes to Oz.
//! - [`Guard::accepted`] once Oz has created the folder (the digest is remembered for the
//!   window, whatever the verdict), [`Guard::failed`] when the upload failed (the claim is let
//!   go, so the retry is no replay).
//!
//! When the store cannot answer, `state.on_error` decides: `fail_closed` refuses the capture
//! with 503 `state_unavailable` before anything is uploaded; `fail_open` lets it go on
//! unguarded. Both are logged and counted. Passthrough never comes here.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;

use crate::capture::Error;
use crate::config::{ClientKey, Limit, OnStateError, RateLimits, Scope};
use crate::metrics::Metrics;
use crate::state::{Bucket, Claim, Decision, Store, Ticket, Unavailable};

/// The abuse controls of one capture service.
pub struct Guard {
    store: Store,
    on_error: OnStateError,
    metrics: Metrics,
}

/// A digest this capture holds until Oz accepts or refuses it; nothing with the guard off or
/// failed open.
pub struct Held(Option<Ticket>);

impl Held {
    /// No claim: the route does not guard against replays.
    pub fn none() -> Held {
        Held(None)
    }
}

impl Guard {
    pub fn new(store: Store, on_error: OnStateError, metrics: Metrics) -> Guard {
        Guard {
            store,
            on_error,
            metrics,
        }
    }

    /// The store, to keep across reloads that leave the `state` section alone.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Counts this capture against the route's rate limits, or refuses it.
    pub async fn admit(
        &self,
        route: &str,
        limits: &RateLimits,
        headers: &HeaderMap,
        client_ip: IpAddr,
    ) -> Result<(), Error> {
        let mut decided: Vec<(&'static str, Decision)> = Vec::with_capacity(2);
        if let Some((limit, scope)) = &limits.per_client {
            let client = client_identity(&limit.client_key(), headers, client_ip);
            let scope = scope_name(*scope, route);
            let bucket = Bucket::Client {
                scope: &scope,
                client: &client,
            };
            if let Some(d) = self.take(bucket, &limit.limit()).await? {
                decided.push(("per_client", d));
            }
        }
        let refused = decided.iter().any(|(_, d)| !d.allowed);
        if let (Some((limit, scope)), false) = (&limits.global, refused) {
            let scope = scope_name(*scope, route);
            if let Some(d) = self.take(Bucket::Global { scope: &scope }, limit).await? {
                decided.push(("global", d));
            }
        }
        let Some((name, refusal)) = decided.iter().find(|(_, d)| !d.allowed) else {
            return Ok(());
        };
        self.metrics.rate_limited(route, name);
        let retry_after_secs = refusal.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        Err(Error::RateLimited {
            limit: name,
            retry_after_secs,
            policy: policy_field(&decided),
            state: state_field(&decided),
        })
    }

    /// Claims the capture's frame digests for `hold`, or refuses the capture as a replay when
    /// any of them was claimed or accepted before.
    pub async fn claim(&self, digests: &[[u8; 32]], hold: Duration) -> Result<Held, Error> {
        match self.store.claim(digests, hold).await {
            Ok(Claim::Claimed(ticket)) => Ok(Held(Some(ticket))),
            Ok(Claim::Seen) => Err(Error::Replayed),
            Err(e) => self.on_store_error("replay", e).map(|()| Held(None)),
        }
    }

    /// Oz accepted the capture: its digest is remembered for `window`. A store failure here
    /// cannot undo the upload; it is logged and counted, and the claim still holds for its
    /// hold time.
    pub async fn accepted(&self, held: Held, window: Duration) {
        if let Some(ticket) = held.0 {
            if let Err(e) = self.store.confirm(&ticket, window).await {
                self.log_lost(
                    "confirm",
                    &e,
                    "the accepted capture's digest was not stored",
                );
            }
        }
    }

    /// The capture failed before Oz accepted it: its claim is let go.
    pub async fn failed(&self, held: Held) {
        if let Some(ticket) = held.0 {
            if let Err(e) = self.store.release(&ticket).await {
                self.log_lost(
                    "release",
                    &e,
                    "the claim lapses after its hold time instead",
                );
            }
        }
    }

    /// One bucket's decision; `None` when the store failed and `fail_open` let it go.
    async fn take(&self, bucket: Bucket<'_>, limit: &Limit) -> Result<Option<Decision>, Error> {
        match self.store.take(bucket, limit).await {
            Ok(d) => Ok(Some(d)),
            Err(e) => self.on_store_error("rate_limit", e).map(|()| None),
        }
    }

    /// What `state.on_error` makes of a store failure during `op`.
    fn on_store_error(&self, op: &'static str, e: Unavailable) -> Result<(), Error> {
        match self.on_error {
            OnStateError::FailClosed => {
                self.metrics.state_error(op, "refused");
                tracing::warn!(op, error = %e, "state store failed; capture refused (state.on_error: fail_closed)");
                Err(Error::StateUnavailable)
            }
            OnStateError::FailOpen => {
                self.metrics.state_error(op, "unguarded");
                tracing::warn!(op, error = %e, "state store failed; capture goes on unguarded (state.on_error: fail_open)");
                Ok(())
            }
        }
    }

    fn log_lost(&self, op: &'static str, e: &Unavailable, what: &str) {
        self.metrics.state_error(op, "not_recorded");
        tracing::warn!(op, error = %e, "state store failed after the upload: {what}");
    }
}

/// The bytes that tell this client apart: the header's or cookie's value when the capture
/// carries one, else its address. The store hashes them; they are never logged.
fn client_identity(key: &ClientKey, headers: &HeaderMap, client_ip: IpAddr) -> Vec<u8> {
    let value = match key {
        ClientKey::Ip => None,
        ClientKey::Header(name) => headers
            .get(name.as_str())
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty()),
        ClientKey::Cookie(name) => cookie(headers, name),
    };
    match value {
        // Prefixed, so a header value can never be mistaken for an address.
        Some(v) => [b"v:".as_slice(), v].concat(),
        None => format!("ip:{client_ip}").into_bytes(),
    }
}

/// The first non-empty value of cookie `name` (RFC 6265 §5.4: `name=value` pairs split by `; `).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
        .find(|v| !v.is_empty())
}

/// Whose budget a limit is: the section's is shared by every route without its own.
fn scope_name(scope: Scope, route: &str) -> String {
    match scope {
        Scope::Section => "section".to_owned(),
        Scope::Route => format!("route:{route}"),
    }
}

/// `RateLimit-Policy`: each limit as `"name";q=limit;w=seconds`.
fn policy_field(decided: &[(&'static str, Decision)]) -> String {
    decided
        .iter()
        .map(|(name, d)| format!("\"{name}\";q={};w={}", d.limit, d.per.as_secs()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `RateLimit`: each limit as `"name";r=remaining;t=seconds until full again`.
fn state_field(decided: &[(&'static str, Decision)]) -> String {
    decided
        .iter()
        .map(|(name, d)| {
            format!(
                "\"{name}\";r={};t={}",
                d.remaining,
                d.reset.as_secs_f64().ceil() as u64
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_client_is_its_cookie_or_header_else_its_address() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; sid=; sid=abc ;x=y"),
        );
        h.insert("x-user", HeaderValue::from_static("u-42"));
        let id = |k: ClientKey| client_identity(&k, &h, ip);
        assert_eq!(id(ClientKey::Cookie("sid".into())), b"v:abc");
        assert_eq!(id(ClientKey::Header("x-user".into())), b"v:u-42");
        assert_eq!(id(ClientKey::Ip), b"ip:192.0.2.7");
        assert_eq!(id(ClientKey::Cookie("none".into())), b"ip:192.0.2.7");
        assert_eq!(id(ClientKey::Header("x-none".into())), b"ip:192.0.2.7");
    }

    #[test]
    fn the_fields_follow_the_draft() {
        let d = Decision {
            allowed: false,
            limit: 10,
            per: Duration::from_secs(60),
            remaining: 0,
            reset: Duration::from_millis(59_500),
            retry_after: Duration::from_millis(5_200),
        };
        let decided = [("per_client", d)];
        assert_eq!(policy_field(&decided), "\"per_client\";q=10;w=60");
        assert_eq!(state_field(&decided), "\"per_client\";r=0;t=60");
    }
}
