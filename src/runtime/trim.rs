//! Gives the memory of finished captures back to the kernel once captures have stopped.
//!
//! glibc keeps what a program frees for its next allocations. Its threshold for giving a large
//! block pages of its own starts at 128 KiB but rises to the size of the largest block freed (up
//! to 32 MiB), so after the first capture every capture buffer comes from the heap and stays
//! there: 70 MiB of RSS after 10 s of captures, and 32 MiB still a minute later. Keeping the heap
//! while captures come is what makes them cheap; pinning the threshold at 1 MiB instead gave
//! each buffer fresh pages and made a 20 MiB transform 2.5× slower (BENCHMARKS.md). So the heap
//! is kept while captures come, and once the capture threads have had no job for [`QUIET`], a
//! thread of their scheduling class calls `malloc_trim`, which hands the free pages of every
//! arena back, and the top of the main arena (the only one the process has,
//! `runtime::allocator`).
//!
//! [`Activity`] counts the jobs of the capture threads; the trimmer is a thread of its own that
//! sleeps on a condition variable until the last job ends and the quiet period passes without a
//! new one, so an idle proxy spends nothing on it. It runs in the capture threads' scheduling
//! class (`runtime::pool`), below traffic. The cost is one trim per lull: 1.9–2.9 ms for 14–25
//! MiB given back, during which a thread that allocates waits for the arena's lock (one arena for
//! the process, `runtime::allocator`), and the next capture's buffers are fresh pages again.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use crate::metrics::resident_memory_bytes;

/// How long the capture threads must have been without a job before freed memory goes back.
pub const QUIET: Duration = Duration::from_secs(5);

/// The jobs of the capture threads, as the trimmer needs to know them.
#[derive(Default)]
pub struct Activity {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Jobs submitted and not yet finished.
    running: usize,
    /// Bumped when a job finishes: a quiet period that saw one start over.
    finished: u64,
    /// `finished` as it was at the last trim: nothing to give back until it moves.
    trimmed_at: u64,
    /// Trims done, for tests and the debug log.
    trims: u64,
    /// Set when the pool goes away; the trimmer thread then ends.
    closed: bool,
}

/// One job of the capture threads; finished when dropped.
pub struct Job {
    activity: Arc<Activity>,
}

impl Activity {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only counters behind; they stay usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a job from now until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Job {
        self.lock().running += 1;
        Job {
            activity: self.clone(),
        }
    }

    /// Ends the trimmer thread.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// How many trims have run (for tests).
    pub fn trims(&self) -> u64 {
        self.lock().trims
    }

    /// Waits until at least `n` trims have run, or `limit` has passed; true if they have (for
    /// tests).
    pub fn wait_for_trims(&self, n: u64, limit: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, limit, |s| s.trims < n)
            .unwrap_or_else(|e| e.into_inner());
        state.trims >= n
    }

    /// The trimmer's loop: returns when [`close`](Self::close) is called.
    pub fn run_trimmer(&self, quiet: Duration) {
        let mut state = self.lock();
        loop {
            // Asleep until a job has finished since the last trim and none is running.
            state = self
                .changed
                .wait_while(state, |s| {
                    !s.closed && (s.running > 0 || s.finished == s.trimmed_at)
                })
                .unwrap_or_else(|e| e.into_inner());
            if state.closed {
                return;
            }
            let seen = state.finished;
            let (after, _) = self
                .changed
                .wait_timeout_while(state, quiet, |s| !s.closed && s.finished == seen)
                .unwrap_or_else(|e| e.into_inner());
            state = after;
            if state.closed {
                return;
            }
            // A job that began during the quiet period does not notify; it is seen here.
            if state.finished != seen || state.running > 0 {
                continue;
            }
            state.trimmed_at = seen;
            drop(state);
            let started = std::time::Instant::now();
            let freed = give_back();
            let took_us = started.elapsed().as_micros() as u64;
            state = self.lock();
            state.trims += 1;
            self.changed.notify_all();
            tracing::debug!(
                rss_freed_kib = freed,
                took_us,
                "capture threads idle; freed memory returned to the kernel"
            );
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        state.running -= 1;
        state.finished += 1;
        if state.running == 0 {
            self.activity.changed.notify_all();
        }
    }
}

/// Hands free heap pages back (glibc); returns how much RSS went down, in KiB, where known.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back() -> Option<u64> {
    let before = resident_memory_bytes();
    // SAFETY: malloc_trim takes each arena's lock in turn; it is safe to call at any time.
    unsafe { libc::malloc_trim(0) };
    Some(before?.saturating_sub(resident_memory_bytes()?) / 1024)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    fn start(quiet: Duration) -> (Arc<Activity>, std::thread::JoinHandle<()>) {
        let activity = Arc::new(Activity::default());
        let trimmer = {
            let activity = activity.clone();
            std::thread::spawn(move || activity.run_trimmer(quiet))
        };
        (activity, trimmer)
    }

    #[test]
    fn trims_once_after_the_last_job_ends() {
        let (activity, trimmer) = start(Duration::ZERO);
        let jobs: Vec<Job> = (0..3).map(|_| activity.begin()).collect();
        drop(jobs);
        assert!(activity.wait_for_trims(1, LIMIT));
        // Nothing finished since: the next trim waits for the next job.
        let job = activity.begin();
        assert_eq!(activity.trims(), 1);
        drop(job);
        assert!(activity.wait_for_trims(2, LIMIT));
        activity.close();
        trimmer.join().unwrap();
    }

    #[test]
    fn no_trim_while_a_job_runs() {
        let (activity, trimmer) = start(Duration::ZERO);
        let first = activity.begin();
        let second = activity.begin();
        drop(first);
        // One job still runs: the trimmer must still be asleep, whatever it saw.
        assert!(!activity.wait_for_trims(1, Duration::from_millis(50)));
        drop(second);
        assert!(activity.wait_for_trims(1, LIMIT));
        activity.close();
        trimmer.join().unwrap();
    }

    #[test]
    fn close_ends_the_trimmer_in_the_quiet_period() {
        // A quiet period far longer than the test: only close can end the wait.
        let (activity, trimmer) = start(Duration::from_secs(3600));
        drop(activity.begin());
        activity.close();
        trimmer.join().unwrap();
        assert_eq!(activity.trims(), 0);
    }
}
