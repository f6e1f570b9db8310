//! The in-process store: the replay digests and rate-limit buckets of one pod, in bounded
//! concurrent maps (`moka`) whose entries expire by themselves. The digests are at most
//! `capture.replay.max_entries`, the least recently used out first (a digest is only looked at
//! again when it is replayed, so in practice the oldest); the buckets at most
//! [`MAX_BUCKETS`], each gone once it is full again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use moka::Expiry;

use super::{bucket_key, digest_key, gcra, random_salt, Bucket, Claim, Decision, Key, Ticket};
use crate::config::Limit;
use crate::metrics::Metrics;

/// Most rate-limit buckets held at once. A bucket is 32 bytes of key and 16 of value; when more
/// clients than this are inside their period at once, the least recently seen are forgotten
/// (and start full again), which only ever lets such a client through earlier.
pub const MAX_BUCKETS: u64 = 1_000_000;

/// What is remembered of a digest.
#[derive(Clone, Copy, Debug)]
struct Mark {
    /// The claim's token, or 0 once confirmed (tokens are never 0).
    token: u64,
    /// How long the entry lives from its last write.
    ttl: Duration,
}

/// A bucket's theoretical arrival time, and how long it is worth keeping.
#[derive(Clone, Copy, Debug)]
struct Tat {
    at_us: u64,
    ttl: Duration,
}

/// Entries live for the time their value says.
struct OwnTtl;

impl Expiry<Key, Mark> for OwnTtl {
    fn expire_after_create(&self, _: &Key, v: &Mark, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _: &Key,
        v: &Mark,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

impl Expiry<Key, Tat> for OwnTtl {
    fn expire_after_create(&self, _: &Key, v: &Tat, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _: &Key,
        v: &Tat,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

pub struct MemoryStore {
    digests: Cache<Key, Mark>,
    /// Held while a claim checks and writes its digests: moka is atomic per key, and a claim is
    /// one step over several.
    claiming: Mutex<()>,
    buckets: Cache<Key, Tat>,
    salt: hmac::Key,
    /// The buckets' clock: µs since the store was made.
    epoch: Instant,
}

impl MemoryStore {
    pub fn new(max_entries: u64, metrics: Metrics) -> MemoryStore {
        metrics.state_up("memory", true);
        MemoryStore {
            digests: Cache::builder()
                .max_capacity(max_entries)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(OwnTtl)
                .build(),
            buckets: Cache::builder()
                .max_capacity(MAX_BUCKETS)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(OwnTtl)
                .build(),
            claiming: Mutex::new(()),
            salt: hmac::Key::new(hmac::HMAC_SHA256, &random_salt()),
            epoch: Instant::now(),
        }
    }

    pub fn claim(&self, digests: &[[u8; 32]], hold: Duration) -> Claim {
        let keys: Vec<Key> = digests.iter().map(|d| digest_key(&self.salt, d)).collect();
        let token = fastrand::u64(1..);
        let _one_at_a_time = self.claiming.lock().unwrap_or_else(|e| e.into_inner());
        if keys.iter().any(|k| self.digests.contains_key(k)) {
            return Claim::Seen;
        }
        for key in &keys {
            self.digests.insert(*key, Mark { token, ttl: hold });
        }
        Claim::Claimed(Ticket { keys, token })
    }

    pub fn confirm(&self, ticket: &Ticket, window: Duration) {
        for key in &ticket.keys {
            self.digests.insert(
                *key,
                Mark {
                    token: 0,
                    ttl: window,
                },
            );
        }
    }

    pub fn release(&self, ticket: &Ticket) {
        for key in &ticket.keys {
            self.digests
                .entry(*key)
                .and_compute_with(|held| match held {
                    Some(e) if e.value().token == ticket.token => Op::Remove,
                    _ => Op::Nop,
                });
        }
    }

    pub fn take(&self, bucket: Bucket<'_>, limit: &Limit) -> Decision {
        let key = bucket_key(&self.salt, bucket, limit);
        let now = self.epoch.elapsed().as_micros() as u64;
        let mut decision = None;
        self.buckets.entry(key).and_compute_with(|held| {
            let (d, new_tat) =
                gcra::step(now, held.map(|e| e.value().at_us), limit.limit, limit.per);
            decision = Some(d);
            match new_tat {
                Some(at_us) => Op::Put(Tat {
                    at_us,
                    ttl: Duration::from_micros(at_us - now),
                }),
                None => Op::Nop,
            }
        });
        decision.expect("the closure runs once")
    }

    /// Digests held now (after pending evictions ran).
    #[cfg(test)]
    pub fn digests_held(&self) -> u64 {
        self.digests.run_pending_tasks();
        self.digests.entry_count()
    }
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
