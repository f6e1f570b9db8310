//! A bounded map whose entries expire, oldest out first: what the memory store keeps its digests
//! and buckets in. Every operation is O(1) amortized and done in the caller's call, with no
//! background upkeep (a cache such as `moka` runs its housekeeping inline on whichever thread
//! writes, which here is a thread that also carries passthrough traffic: BENCHMARKS.md, "Abuse
//! controls", measured its stalls).
//!
//! Entries live in a `HashMap`; a queue remembers the order they were written in. Writing a key
//! again leaves its old place in the queue behind as stale (told apart by a write number), and
//! the queue is compacted when stale places outnumber live entries, so it stays within a
//! constant factor of the map.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::Key;

/// One entry: its value, when it expires, and which write made it.
struct Slot<V> {
    value: V,
    expires: Instant,
    write: u64,
}

pub struct Fifo<V> {
    map: HashMap<Key, Slot<V>>,
    /// Keys in the order they were written, with the write number of each.
    order: VecDeque<(Key, u64)>,
    max: usize,
    writes: u64,
}

impl<V: Copy> Fifo<V> {
    /// Holds at most `max` entries (at least 1).
    pub fn new(max: usize) -> Fifo<V> {
        Fifo {
            map: HashMap::new(),
            order: VecDeque::new(),
            max: max.max(1),
            writes: 0,
        }
    }

    /// The value of `key` if it is there and has not expired at `now`.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<V> {
        match self.map.get(key) {
            Some(slot) if slot.expires > now => Some(slot.value),
            Some(_) => {
                self.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Writes `key` (again), to expire at `expires`; the oldest entries go when there are more
    /// than `max`.
    pub fn insert(&mut self, key: Key, value: V, expires: Instant) {
        self.writes += 1;
        let write = self.writes;
        self.map.insert(
            key,
            Slot {
                value,
                expires,
                write,
            },
        );
        self.order.push_back((key, write));
        // Expired entries stay until the bound or a read reaches them: being the oldest, they
        // are the first to go.
        while self.map.len() > self.max {
            self.pop_oldest();
        }
        if self.order.len() > 2 * self.map.len() + 64 {
            self.compact();
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &Key) {
        self.map.remove(key);
    }

    /// Entries held (some may have expired and not been looked at since).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Removes the oldest live entry.
    fn pop_oldest(&mut self) {
        while let Some((key, write)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|s| s.write == write) {
                self.map.remove(&key);
                return;
            }
        }
    }

    /// Rebuilds the queue from the live entries, in write order.
    fn compact(&mut self) {
        let map = &self.map;
        self.order
            .retain(|(key, write)| map.get(key).is_some_and(|s| s.write == *write));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(i: u32) -> Key {
        let mut k = [0; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k
    }

    const LATER: Duration = Duration::from_secs(3600);

    #[test]
    fn the_oldest_go_first_and_a_rewrite_makes_an_entry_young() {
        let now = Instant::now();
        let mut f = Fifo::new(3);
        for i in 0..3 {
            f.insert(key(i), i, now + LATER);
        }
        // Key 0 written again: now the youngest.
        f.insert(key(0), 10, now + LATER);
        f.insert(key(3), 3, now + LATER);
        assert_eq!(f.get(&key(1), now), None, "the oldest went");
        assert_eq!(f.get(&key(0), now), Some(10));
        assert_eq!(f.get(&key(2), now), Some(2));
        assert_eq!(f.get(&key(3), now), Some(3));
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn an_expired_entry_is_absent() {
        let now = Instant::now();
        let mut f = Fifo::new(10);
        f.insert(key(1), 1, now + Duration::from_secs(1));
        assert_eq!(f.get(&key(1), now), Some(1));
        assert_eq!(f.get(&key(1), now + Duration::from_secs(1)), None);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn one_key_written_again_and_again_keeps_the_queue_bounded() {
        let now = Instant::now();
        let mut f = Fifo::new(1000);
        f.insert(key(0), 0, now + LATER);
        for i in 0..100_000 {
            f.insert(key(1), i, now + LATER);
        }
        assert_eq!(f.len(), 2);
        assert!(f.order.len() <= 2 * f.len() + 64, "{}", f.order.len());
        assert_eq!(f.get(&key(1), now), Some(99_999));
    }

    /// Against a plain model: a list of (key, value, expiry) in write order, the oldest removed
    /// past the bound, an expired one forgotten when read, over a random mix of writes, removals
    /// and reads.
    #[test]
    fn it_agrees_with_a_plain_list() {
        let start = Instant::now();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut f = Fifo::new(50);
        let mut model: Vec<(Key, u32, Instant)> = Vec::new();
        for step in 0..20_000u32 {
            let now = start + Duration::from_millis(u64::from(step));
            let k = key(rng.u32(0..120));
            match rng.u8(0..10) {
                0..=5 => {
                    let expires = now + Duration::from_millis(rng.u64(1..2000));
                    f.insert(k, step, expires);
                    model.retain(|(mk, _, _)| *mk != k);
                    model.push((k, step, expires));
                    while model.len() > 50 {
                        model.remove(0);
                    }
                }
                6 => {
                    f.remove(&k);
                    model.retain(|(mk, _, _)| *mk != k);
                }
                _ => {
                    let want = model
                        .iter()
                        .find(|(mk, _, e)| *mk == k && *e > now)
                        .map(|(_, v, _)| *v);
                    assert_eq!(f.get(&k, now), want, "step {step}");
                    // A read finds an expired entry gone, and forgets it.
                    model.retain(|(mk, _, e)| *mk != k || *e > now);
                }
            }
        }
    }
}
