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
            let client = client_identity(&limit.client_key(), headers, client_ip)?;
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
/// carries one, else its address. The store hashes them; they are never logged. A capture that
/// carries the key twice is refused: a gateway that appends its own value, or a backend that
/// reads the last cookie of a name, would otherwise let the client pick the one that counts.
fn client_identity(
    key: &ClientKey,
    headers: &HeaderMap,
    client_ip: IpAddr,
) -> Result<Vec<u8>, Error> {
    let (kind, name, values): (_, _, Vec<&[u8]>) = match key {
        ClientKey::Ip => return Ok(address_key(client_ip).into_bytes()),
        ClientKey::Header(name) => (
            "header",
            name,
            headers
                .get_all(name.as_str())
                .iter()
                .map(|v| v.as_bytes())
                .collect(),
        ),
        ClientKey::Cookie(name) => ("cookie", name, cookie_values(headers, name)),
    };
    match values.as_slice() {
        [] | [[]] => Ok(address_key(client_ip).into_bytes()),
        // Prefixed, so a header value can never be mistaken for an address.
        [value] => Ok([b"v:".as_slice(), value].concat()),
        _ => Err(Error::AmbiguousClientKey {
            kind,
            name: name.clone(),
        }),
    }
}

/// An address as the per-client limits count it: an IPv4 address (also one written as an
/// IPv4-mapped IPv6 address) alone, an IPv6 address by its /64, the block one subscriber or
/// host usually holds whole (RFC 6177): rotating addresses inside it buys no new budget.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Every value of cookie `name`, empty ones included (RFC 6265 §5.4: `name=value` pairs split by
/// `; `, over every `Cookie` field).
fn cookie_values<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
        .collect()
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
            HeaderValue::from_static("a=1; sid=abc ;x=y"),
        );
        h.insert("x-user", HeaderValue::from_static("u-42"));
        h.insert("x-empty", HeaderValue::from_static(""));
        let id = |k: ClientKey| client_identity(&k, &h, ip).unwrap();
        assert_eq!(id(ClientKey::Cookie("sid".into())), b"v:abc");
        assert_eq!(id(ClientKey::Header("x-user".into())), b"v:u-42");
        assert_eq!(id(ClientKey::Ip), b"ip:192.0.2.7");
        assert_eq!(id(ClientKey::Cookie("none".into())), b"ip:192.0.2.7");
        assert_eq!(id(ClientKey::Header("x-none".into())), b"ip:192.0.2.7");
        assert_eq!(id(ClientKey::Header("x-empty".into())), b"ip:192.0.2.7");
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut h = HeaderMap::new();
        h.append(http::header::COOKIE, HeaderValue::from_static("sid=; a=1"));
        h.append(http::header::COOKIE, HeaderValue::from_static("sid=abc"));
        h.append("x-user", HeaderValue::from_static("mine"));
        h.append("x-user", HeaderValue::from_static("the-gateway's"));
        for key in [
            ClientKey::Cookie("sid".into()),
            ClientKey::Header("x-user".into()),
        ] {
            assert!(matches!(
                client_identity(&key, &h, ip),
                Err(Error::AmbiguousClientKey { .. })
            ));
        }
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_eq!(key("2001:db8::1"), "ip6:2001:db8:0:0::/64");
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
