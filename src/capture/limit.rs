//! Admission control for captures: a memory budget and a limit on concurrent CPU work.
//!
//! A capture holds its body, then the ZIP and the multipart around it, plus scratch buffers the
//! size of one frame: under twice the body at the peak, whether or not the JSON escapes its
//! strings (frames are unescaped one at a time, `capture::frame`; `benches/capture.rs` measures
//! the peak). Each capture reserves `2 × its declared length` (or `2 × max_body_bytes` when the
//! length is not declared) from `capture.memory_budget_bytes` before a byte of the body is read,
//! so a burst of maximum-size captures can never push the process past the budget: the one that
//! does not fit gets 503 with `Retry-After` instead. Parsing, decoding and zipping then run on the
//! capture threads (`runtime::pool`) under `capture.max_concurrent` permits, so they never stall
//! the I/O threads that carry passthrough traffic. Both limits answer at once rather than queue:
//! a queue of multi-MB bodies is exactly the memory growth the budget exists to prevent.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::capture::Error;

/// Memory is counted in KiB so a `u32` of permits covers budgets up to 4 TiB.
const UNIT: u64 = 1024;

/// Shared limits of all capture routes.
#[derive(Clone)]
pub struct Limiter {
    memory: Arc<Semaphore>,
    memory_units: u32,
    cpu: Arc<Semaphore>,
}

/// Memory reserved for one capture; released on drop.
pub struct MemoryPermit {
    _permit: OwnedSemaphorePermit,
}

/// The right to run one transform; released on drop.
pub struct CpuPermit {
    _permit: OwnedSemaphorePermit,
}

impl Limiter {
    /// A limiter for `budget_bytes` of capture memory and `max_concurrent` transforms.
    pub fn new(budget_bytes: u64, max_concurrent: usize) -> Self {
        let memory_units = u32::try_from(budget_bytes / UNIT).unwrap_or(u32::MAX);
        Limiter {
            memory: Arc::new(Semaphore::new(memory_units as usize)),
            memory_units,
            cpu: Arc::new(Semaphore::new(max_concurrent)),
        }
    }

    /// Reserves memory for a body of `body_bytes`, or fails with `Busy`.
    pub fn reserve_memory(&self, body_bytes: u64) -> Result<MemoryPermit, Error> {
        let units = (body_bytes.saturating_mul(2)).div_ceil(UNIT).max(1);
        let units = u32::try_from(units).map_err(|_| Error::Busy)?;
        if units > self.memory_units {
            return Err(Error::Busy);
        }
        self.memory
            .clone()
            .try_acquire_many_owned(units)
            .map(|p| MemoryPermit { _permit: p })
            .map_err(|_| Error::Busy)
    }

    /// Takes a transform slot, or fails with `Busy`.
    pub fn start_transform(&self) -> Result<CpuPermit, Error> {
        self.cpu
            .clone()
            .try_acquire_owned()
            .map(|p| CpuPermit { _permit: p })
            .map_err(|_| Error::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_admits_until_full_then_refuses() {
        let l = Limiter::new(10 * 1024 * 1024, 2);
        let a = l.reserve_memory(2 * 1024 * 1024).unwrap();
        let _b = l.reserve_memory(2 * 1024 * 1024).unwrap();
        assert!(matches!(
            l.reserve_memory(2 * 1024 * 1024),
            Err(Error::Busy)
        ));
        drop(a);
        assert!(l.reserve_memory(2 * 1024 * 1024).is_ok());
    }

    #[test]
    fn cpu_slots_are_limited() {
        let l = Limiter::new(1 << 20, 1);
        let p = l.start_transform().unwrap();
        assert!(matches!(l.start_transform(), Err(Error::Busy)));
        drop(p);
        assert!(l.start_transform().is_ok());
    }
}
