//! PLACEHOLDER being replaced by the Redis store (issue 15): every call answers Unavailable.

use std::time::Duration;

use super::{Bucket, Claim, Decision, Ticket, Unavailable};
use crate::config::{Limit, RedisConfig};
use crate::metrics::Metrics;

pub struct RedisStore;

impl RedisStore {
    pub fn new(_config: &RedisConfig, metrics: Metrics) -> Result<RedisStore, String> {
        metrics.state_up("redis", false);
        Ok(RedisStore)
    }
    pub async fn claim(&self, _digest: &[u8; 32], _hold: Duration) -> Result<Claim, Unavailable> {
        Err(Unavailable("not built".into()))
    }
    pub async fn confirm(&self, _ticket: &Ticket, _window: Duration) -> Result<(), Unavailable> {
        Err(Unavailable("not built".into()))
    }
    pub async fn release(&self, _ticket: &Ticket) -> Result<(), Unavailable> {
        Err(Unavailable("not built".into()))
    }
    pub async fn take(&self, _bucket: Bucket<'_>, _limit: &Limit) -> Result<Decision, Unavailable> {
        Err(Unavailable("not built".into()))
    }
}
