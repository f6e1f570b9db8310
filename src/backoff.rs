//! Jittered pauses between retries: one rule for every retry loop (Oz calls, Oz polling, late
//! verdict deliveries), so many proxies that saw the same failure do not come back in step.

use std::time::Duration;

/// `d` with "equal jitter": a random pause between `d / 2` and `d`.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_whole() {
        let d = Duration::from_millis(800);
        for _ in 0..1000 {
            let j = jitter(d);
            assert!(j >= d / 2 && j <= d, "{j:?}");
        }
    }
}
