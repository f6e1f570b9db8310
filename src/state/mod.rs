//! What the capture controls remember, and where: the replay guard's digests and the rate
//! limits' buckets, in the process (`memory`) or in a Redis shared by every replica (`redis`).
//!
//! The controls (`capture::guard`) ask four questions, each answered by one atomic step of the
//! store, so that two replicas asking at once never both get yes:
//! - [`Store::claim`]: may this capture's media go to Oz? Yes when none of its digests (one per
//!   frame) was claimed before: the first asker gets a [`Ticket`] on all of them, every other
//!   capture that shares one gets [`Claim::Seen`] while the claim holds.
//! - [`Store::confirm`]: Oz accepted it; remember the digests for the replay window.
//! - [`Store::release`]: it failed before Oz accepted it; forget the claim, so a retry is no
//!   replay.
//! - [`Store::take`]: may one more capture go through this bucket? ([`gcra`]).
//!
//! Nothing a client sent is stored as it came: digests and client identities are keyed hashes
//! (HMAC-SHA-256 under a salt: random per process in memory, shared through Redis there), so
//! neither a Redis dump nor a heap dump holds a client address, a cookie value or capture bytes.

mod fifo;
pub mod gcra;
mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;

use crate::config::{Limit, StateConfig, StoreKind};
use crate::metrics::Metrics;

pub use gcra::Decision;

/// The store could not answer in time, or at all. The reason names what failed (connecting,
/// a timeout, an error reply) and never the URL, a key or a value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the state store is unavailable: {0}")]
pub struct Unavailable(pub String);

/// What [`Store::claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// No one has any of these digests: the claim is this request's until confirmed or released.
    Claimed(Ticket),
    /// A digest was accepted inside the window, or another request holds a claim on it.
    Seen,
}

/// A held claim on a capture's digests: what confirms or releases it. Only the request that made
/// the claim can release it (its `token` must still be the stored value), so a release never
/// undoes a claim another request made after this one expired.
#[derive(Debug)]
pub struct Ticket {
    keys: Vec<Key>,
    token: u64,
}

/// Most digests one claim may name: a capture's frames, at most `capture.max_frames`.
pub use crate::config::MAX_FRAMES as MAX_DIGESTS;

/// A rate-limit bucket, before it is hashed into a key.
#[derive(Debug, Clone, Copy)]
pub enum Bucket<'a> {
    /// A whole budget: `scope` names whose (`section` or `route:/path`).
    Global { scope: &'a str },
    /// One client's budget in `scope`; `client` is its address, header or cookie value.
    Client { scope: &'a str, client: &'a [u8] },
}

/// A hashed key: what the stores keep in place of a digest or a client identity.
pub type Key = [u8; 32];

/// The store of one process; cheap to clone (all clones share it).
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

// Made once per process and held behind an `Arc`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

impl Store {
    /// The store `config` names; `max_entries` bounds the in-memory replay digests. A Redis store
    /// connects in the background and reconnects by itself: Redis being down at start is no
    /// reason not to start (captures get what `state.on_error` says meanwhile).
    pub fn new(config: &StateConfig, max_entries: u64, metrics: Metrics) -> Result<Store, String> {
        let backend = match config.store {
            StoreKind::Memory => Backend::Memory(memory::MemoryStore::new(max_entries, metrics)),
            StoreKind::Redis => Backend::Redis(redis::RedisStore::new(&config.redis, metrics)?),
        };
        Ok(Store {
            backend: Arc::new(backend),
        })
    }

    /// Checks what [`Store::new`] would refuse, without connecting or starting anything: for
    /// `check` and reloads. The message names the key, never the URL.
    pub fn check(config: &StateConfig) -> Result<(), String> {
        match config.store {
            StoreKind::Memory => Ok(()),
            StoreKind::Redis => redis::RedisStore::check(&config.redis),
        }
    }

    /// Claims every one of `digests` (a capture's, one per frame) for `hold`, in one atomic step,
    /// unless any of them is claimed or accepted already. A claim not confirmed or released by
    /// then lapses.
    pub async fn claim(&self, digests: &[[u8; 32]], hold: Duration) -> Result<Claim, Unavailable> {
        debug_assert!(!digests.is_empty() && digests.len() <= MAX_DIGESTS);
        match &*self.backend {
            Backend::Memory(m) => Ok(m.claim(digests, hold)),
            Backend::Redis(r) => r.claim(digests, hold).await,
        }
    }

    /// Oz accepted the capture: its digests are remembered for `window` from now.
    pub async fn confirm(&self, ticket: &Ticket, window: Duration) -> Result<(), Unavailable> {
        match &*self.backend {
            Backend::Memory(m) => {
                m.confirm(ticket, window);
                Ok(())
            }
            Backend::Redis(r) => r.confirm(ticket, window).await,
        }
    }

    /// The capture failed before Oz accepted it: the claim is dropped where it is still this
    /// ticket's.
    pub async fn release(&self, ticket: &Ticket) -> Result<(), Unavailable> {
        match &*self.backend {
            Backend::Memory(m) => {
                m.release(ticket);
                Ok(())
            }
            Backend::Redis(r) => r.release(ticket).await,
        }
    }

    /// Counts one capture against `bucket` under `limit`, unless that would exceed it.
    pub async fn take(&self, bucket: Bucket<'_>, limit: &Limit) -> Result<Decision, Unavailable> {
        match &*self.backend {
            Backend::Memory(m) => Ok(m.take(bucket, limit)),
            Backend::Redis(r) => r.take(bucket, limit).await,
        }
    }
}

/// The keyed hash of a bucket: the limit is part of it, so a changed limit starts afresh.
fn bucket_key(salt: &hmac::Key, bucket: Bucket<'_>, limit: &Limit) -> Key {
    let mut ctx = hmac::Context::with_key(salt);
    let (kind, scope, client): (&[u8], &str, &[u8]) = match bucket {
        Bucket::Global { scope } => (b"global", scope, b""),
        Bucket::Client { scope, client } => (b"client", scope, client),
    };
    for part in [kind, scope.as_bytes(), client] {
        // Length-prefixed, so that no two different buckets hash the same bytes.
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.update(&limit.limit.to_be_bytes());
    ctx.update(&(limit.per.as_micros() as u64).to_be_bytes());
    to_key(ctx.sign())
}

/// The keyed hash of a capture digest.
fn digest_key(salt: &hmac::Key, digest: &[u8; 32]) -> Key {
    let mut ctx = hmac::Context::with_key(salt);
    ctx.update(b"replay");
    ctx.update(digest);
    to_key(ctx.sign())
}

fn to_key(tag: hmac::Tag) -> Key {
    let mut key = [0; 32];
    key.copy_from_slice(tag.as_ref());
    key
}

/// A random 32-byte salt.
fn random_salt() -> [u8; 32] {
    let mut salt = [0; 32];
    aws_lc_rs::rand::fill(&mut salt).expect("the system random source works");
    salt
}
