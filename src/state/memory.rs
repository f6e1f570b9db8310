//! The in-process store: the replay digests and rate-limit buckets of one pod, each in a bounded
//! map whose entries expire (`state::fifo`), behind a lock held for a few hash lookups. The
//! digests are at most `capture.replay.max_entries`, the buckets at most [`MAX_BUCKETS`]; past
//! the bound the oldest go first.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;

use super::fifo::Fifo;
use super::{bucket_key, digest_key, gcra, random_salt, Bucket, Claim, Decision, Key, Ticket};
use crate::config::Limit;
use crate::metrics::Metrics;

/// Most rate-limit buckets held at once (about 15 MiB, BENCHMARKS.md). When more clients than
/// this are inside their period at once, the oldest buckets are forgotten and start full again,
/// which only ever lets such a client through earlier.
pub const MAX_BUCKETS: usize = 100_000;

/// A confirmed digest's value: claims carry their token, which is never 0.
const CONFIRMED: u64 = 0;

pub struct MemoryStore {
    /// Digest key → the claim's token, or [`CONFIRMED`].
    digests: Mutex<Fifo<u64>>,
    /// Bucket key → its theoretical arrival time, µs on `epoch`.
    buckets: Mutex<Fifo<u64>>,
    salt: hmac::Key,
    /// The buckets' clock: µs since the store was made.
    epoch: Instant,
}

impl MemoryStore {
    pub fn new(max_entries: u64, metrics: Metrics) -> MemoryStore {
        metrics.state_up("memory", true);
        MemoryStore {
            digests: Mutex::new(Fifo::new(
                usize::try_from(max_entries).unwrap_or(usize::MAX),
            )),
            buckets: Mutex::new(Fifo::new(MAX_BUCKETS)),
            salt: hmac::Key::new(hmac::HMAC_SHA256, &random_salt()),
            epoch: Instant::now(),
        }
    }

    pub fn claim(&self, digests: &[[u8; 32]], hold: Duration) -> Claim {
        let keys: Vec<Key> = digests.iter().map(|d| digest_key(&self.salt, d)).collect();
        let token = fastrand::u64(1..);
        let now = Instant::now();
        let mut held = lock(&self.digests);
        if keys.iter().any(|k| held.get(k, now).is_some()) {
            return Claim::Seen;
        }
        for key in &keys {
            held.insert(*key, token, now + hold);
        }
        Claim::Claimed(Ticket { keys, token })
    }

    pub fn confirm(&self, ticket: &Ticket, window: Duration) {
        let expires = Instant::now() + window;
        let mut held = lock(&self.digests);
        for key in &ticket.keys {
            held.insert(*key, CONFIRMED, expires);
        }
    }

    pub fn release(&self, ticket: &Ticket) {
        let now = Instant::now();
        let mut held = lock(&self.digests);
        for key in &ticket.keys {
            if held.get(key, now) == Some(ticket.token) {
                held.remove(key);
            }
        }
    }

    pub fn take(&self, bucket: Bucket<'_>, limit: &Limit) -> Decision {
        let key = bucket_key(&self.salt, bucket, limit);
        let now = Instant::now();
        let now_us = now.duration_since(self.epoch).as_micros() as u64;
        let mut buckets = lock(&self.buckets);
        let (decision, new_tat) =
            gcra::step(now_us, buckets.get(&key, now), limit.limit, limit.per);
        if let Some(tat) = new_tat {
            // Kept until the bucket is full again; after that it is as good as new.
            buckets.insert(key, tat, now + Duration::from_micros(tat - now_us));
        }
        decision
    }

    /// Digests held now.
    #[cfg(test)]
    pub fn digests_held(&self) -> u64 {
        lock(&self.digests).len() as u64
    }
}

/// The map behind `lock`; a panic while it was held left it whole (every change is one call).
fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max: u64) -> MemoryStore {
        MemoryStore::new(max, Metrics::register(&mut Default::default()))
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_digest_is_claimed_once_and_a_release_frees_it() {
        let s = store(10);
        let Claim::Claimed(t) = s.claim(&[[1; 32]], HOUR) else {
            panic!("first claim")
        };
        assert!(matches!(s.claim(&[[1; 32]], HOUR), Claim::Seen));
        s.release(&t);
        let Claim::Claimed(t) = s.claim(&[[1; 32]], HOUR) else {
            panic!("claim after release")
        };
        s.confirm(&t, HOUR);
        // A confirmed digest is no longer the ticket's to release.
        s.release(&t);
        assert!(matches!(s.claim(&[[1; 32]], HOUR), Claim::Seen));
        assert!(matches!(s.claim(&[[2; 32]], HOUR), Claim::Claimed(_)));
    }

    #[test]
    fn a_stale_ticket_does_not_release_a_newer_claim() {
        let s = store(10);
        let Claim::Claimed(old) = s.claim(&[[1; 32]], Duration::from_millis(1)) else {
            panic!()
        };
        // Wait for the claim to lapse by watching the store, not the clock.
        while matches!(s.claim(&[[1; 32]], HOUR), Claim::Seen) {
            std::thread::yield_now();
        }
        s.release(&old);
        assert!(matches!(s.claim(&[[1; 32]], HOUR), Claim::Seen));
    }

    #[test]
    fn a_capture_sharing_one_frame_with_a_claimed_one_is_seen() {
        let s = store(100);
        let Claim::Claimed(t) = s.claim(&[[1; 32], [2; 32], [3; 32]], HOUR) else {
            panic!("first claim")
        };
        assert!(matches!(s.claim(&[[9; 32], [2; 32]], HOUR), Claim::Seen));
        // The refused claim wrote nothing: its other digest is still free.
        assert!(matches!(s.claim(&[[9; 32]], HOUR), Claim::Claimed(_)));
        s.release(&t);
        assert!(matches!(s.claim(&[[2; 32]], HOUR), Claim::Claimed(_)));
    }

    #[test]
    fn digests_are_bounded() {
        let s = store(1000);
        for i in 0..5000u32 {
            let mut d = [0; 32];
            d[..4].copy_from_slice(&i.to_be_bytes());
            if let Claim::Claimed(t) = s.claim(&[d], HOUR) {
                s.confirm(&t, HOUR);
            }
        }
        assert!(s.digests_held() <= 1000, "{}", s.digests_held());
    }

    #[test]
    fn buckets_are_apart_per_client_and_per_scope() {
        let s = store(10);
        let limit = Limit {
            limit: 2,
            per: Duration::from_secs(60),
        };
        let a = Bucket::Client {
            scope: "section",
            client: b"10.0.0.1",
        };
        let b = Bucket::Client {
            scope: "section",
            client: b"10.0.0.2",
        };
        assert!(s.take(a, &limit).allowed);
        assert!(s.take(a, &limit).allowed);
        let refused = s.take(a, &limit);
        assert!(!refused.allowed && refused.retry_after > Duration::ZERO);
        assert!(s.take(b, &limit).allowed);
        let other_scope = Bucket::Client {
            scope: "route:/other",
            client: b"10.0.0.1",
        };
        assert!(s.take(other_scope, &limit).allowed);
    }
}
