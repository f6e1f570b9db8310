//! The rate-limit rule: GCRA (the generic cell rate algorithm, as ATM networks and Redis's own
//! `redis-cell` module use it), as a pure function of the time and one stored number. The
//! memory store runs it in process; the Redis store runs the same steps in one Lua script
//! (`state::redis`), and its tests hold the script to this function.
//!
//! A bucket of `limit` per `per` remembers one instant, its theoretical arrival time (TAT): when
//! the bucket would be empty again if no request came. Each request moves it on by the emission
//! interval `per / limit`; a request that would move it more than `per` past now is refused. So
//! a client may send `limit` at once and then one every `per / limit`: over time never more than
//! `limit` per `per`, with bursts of at most `limit`.

use std::time::Duration;

/// What one bucket said about one request; enough for `Retry-After` and the `RateLimit` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on (and was counted).
    pub allowed: bool,
    /// The bucket's size (`q` of `RateLimit-Policy`).
    pub limit: u32,
    /// The period (`w` of `RateLimit-Policy`).
    pub per: Duration,
    /// Requests still allowed now (`r` of `RateLimit`).
    pub remaining: u32,
    /// Until the bucket is full again (`t` of `RateLimit`).
    pub reset: Duration,
    /// Until the next request would be allowed; zero when this one was.
    pub retry_after: Duration,
}

/// One step of GCRA at `now` (µs on the bucket's clock) for a bucket whose stored TAT is `tat`
/// (`None`: a fresh or expired bucket). Returns the decision and, when the request was allowed,
/// the TAT to store: it may expire at that instant, when the bucket is full again anyway.
pub fn step(now: u64, tat: Option<u64>, limit: u32, per: Duration) -> (Decision, Option<u64>) {
    let per_us = per.as_micros() as u64;
    // Validation keeps `limit` at most `per` in µs, so the interval is at least 1 µs.
    let interval = (per_us / u64::from(limit.max(1))).max(1);
    let tat = tat.map_or(now, |t| t.max(now));
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(per_us);
    if now < allow_at {
        let decision = Decision {
            allowed: false,
            limit,
            per,
            remaining: 0,
            reset: Duration::from_micros(tat - now),
            retry_after: Duration::from_micros(allow_at - now),
        };
        return (decision, None);
    }
    let used = new_tat - now;
    let remaining = ((per_us - used) / interval).min(u64::from(limit)) as u32;
    let decision = Decision {
        allowed: true,
        limit,
        per,
        remaining,
        reset: Duration::from_micros(used),
        retry_after: Duration::ZERO,
    };
    (decision, Some(new_tat))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    /// Runs `n` requests at `now` against a bucket held in `tat`.
    fn burst(now: u64, tat: &mut Option<u64>, n: u32, limit: u32) -> Vec<Decision> {
        (0..n)
            .map(|_| {
                let (d, new) = step(now, *tat, limit, MIN);
                if let Some(t) = new {
                    *tat = Some(t);
                }
                d
            })
            .collect()
    }

    #[test]
    fn a_full_bucket_allows_exactly_limit_at_once() {
        let mut tat = None;
        let d = burst(1_000_000, &mut tat, 11, 10);
        assert!(d[..10].iter().all(|d| d.allowed));
        assert_eq!(
            d[..10].iter().map(|d| d.remaining).collect::<Vec<_>>(),
            [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
        );
        assert!(!d[10].allowed);
        // One comes back every 6 s.
        assert_eq!(d[10].retry_after, Duration::from_secs(6));
        assert_eq!(d[10].reset, MIN);
    }

    #[test]
    fn one_request_per_interval_comes_back() {
        let mut tat = None;
        burst(0, &mut tat, 10, 10);
        assert!(!burst(5_999_999, &mut tat, 1, 10)[0].allowed);
        assert!(burst(6_000_000, &mut tat, 1, 10)[0].allowed);
        assert!(!burst(6_000_000, &mut tat, 1, 10)[0].allowed);
        // After a whole period the bucket is full again.
        let d = burst(6_000_000 + 60_000_000, &mut tat, 11, 10);
        assert_eq!(d.iter().filter(|d| d.allowed).count(), 10);
    }

    #[test]
    fn the_long_run_rate_is_limit_per_period() {
        // Requests every 100 ms for 10 minutes against 10 per minute: the first minute may hold
        // the burst and the refill (at most 2 × 10 - 1), and the whole run at most the burst
        // plus one per interval.
        let mut tat = None;
        let mut allowed = Vec::new();
        for i in 0..6000u64 {
            let now = i * 100_000;
            if burst(now, &mut tat, 1, 10)[0].allowed {
                allowed.push(now);
            }
        }
        for (i, start) in allowed.iter().enumerate() {
            let inside = allowed[i..]
                .iter()
                .take_while(|t| **t < start + 60_000_000)
                .count();
            assert!(inside <= 19, "{inside} allowed in the minute from {start}");
        }
        assert!((100..=110).contains(&allowed.len()), "{}", allowed.len());
    }

    #[test]
    fn a_refusal_does_not_use_the_bucket() {
        let mut tat = None;
        burst(0, &mut tat, 10, 10);
        let before = tat;
        burst(0, &mut tat, 5, 10);
        assert_eq!(tat, before);
    }
}
