//! The threads capture transforms run on: a pool of their own, scheduled below the threads that
//! carry traffic.
//!
//! A sidecar often gets one core. On tokio's shared blocking pool a transform (parse, decode,
//! ZIP: about a millisecond of CPU per 5 MiB capture) ran at the same priority as the tokio
//! worker, so a worker woken by a passthrough request waited up to milliseconds for the
//! scheduler to preempt it (BENCHMARKS.md, "Captures end to end"). Each thread of this pool
//! lowers its own scheduling class once, when it starts, as `capture.transform_priority` says:
//!
//! - `idle` (`SCHED_IDLE`, the default): weight 3 against 1024 for a nice-0 thread, and a waking
//!   normal thread preempts it at once. Captures use the CPU time traffic leaves over.
//! - `batch` (`SCHED_BATCH` at nice 19): weight 15, no wakeup preemption of others.
//! - `normal`: the process's priority, as on the shared pool.
//!
//! Lowering a thread's priority needs no privilege (the container runs as an unprivileged user
//! with no capabilities); raising it back does. So the threads keep their class for life and run
//! nothing but capture work: a tokio runtime that is only a blocking pool (its scheduler never
//! runs), named [`THREAD_NAME`] for `top -H` and `perf sched`, sized by `capture.max_concurrent`
//! (the limiter never lets more transforms start). Where the class cannot be set (not Linux, or
//! a seccomp profile that refuses the call) the pool warns once and runs at normal priority.
//!
//! The trade-off: an idle-class thread gets almost nothing while the core is saturated by
//! traffic, so a capture then waits for a lull. It keeps its memory reservation and its
//! transform slot while it waits, so the budget still holds and further captures get 503; what
//! bounds the wait is the client's own timeout (the transform is not cut short, but its slot is
//! freed once it finishes). Saturation is where the proxy is out of capacity anyway; `batch`
//! trades some passthrough latency for captures that never stall completely.
//!
//! A thread of the same class (`oz-capture-trim`, [`trim`]) gives the memory of finished
//! captures back to the kernel once the pool has had no job for a while.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinError;

use crate::config::TransformPriority;
use crate::runtime::trim::{self, Activity};

/// What `top -H`, `ps -L` and `perf sched` show for the pool's threads.
pub const THREAD_NAME: &str = "oz-capture";

/// The name of the thread that gives memory back when the pool is idle ([`trim`]).
pub const TRIM_THREAD_NAME: &str = "oz-capture-trim";

/// A blocking pool whose threads run at `priority`. Dropping it never blocks: threads still
/// running a job finish it on their own.
pub struct TransformPool {
    /// `Some` until dropped; taken out to shut it down without waiting.
    runtime: Option<Runtime>,
    handle: Handle,
    threads: usize,
    priority: TransformPriority,
    activity: Arc<Activity>,
}

impl TransformPool {
    /// A pool of at most `threads` threads (at least one), started on demand.
    pub fn new(threads: usize, priority: TransformPriority) -> std::io::Result<Self> {
        Self::with_trim_after(threads, priority, trim::QUIET)
    }

    /// As [`new`](Self::new), with freed memory given back after `quiet` without a job.
    fn with_trim_after(
        threads: usize,
        priority: TransformPriority,
        quiet: Duration,
    ) -> std::io::Result<Self> {
        let threads = threads.max(1);
        // Started before the runtime: an error return must not drop a runtime in async context.
        let activity = Arc::new(Activity::default());
        {
            let activity = activity.clone();
            std::thread::Builder::new()
                .name(TRIM_THREAD_NAME.to_owned())
                .spawn(move || {
                    // Where this fails the pool threads have warned already.
                    let _ = lower_priority(priority);
                    activity.run_trimmer(quiet);
                })?;
        }
        // One warning per pool, not one per thread: threads come and go with the load.
        let warned = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .thread_name(THREAD_NAME)
            .max_blocking_threads(threads)
            .on_thread_start(move || {
                if let Err(e) = lower_priority(priority) {
                    if !warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            priority = ?priority,
                            error = %e,
                            "cannot lower the priority of capture threads; they run at normal priority"
                        );
                    }
                }
            })
            .build()
            .inspect_err(|_| activity.close())?;
        Ok(TransformPool {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            threads,
            priority,
            activity,
        })
    }

    /// Whether this pool is what `threads` and `priority` ask for (so a reload can keep it).
    pub fn fits(&self, threads: usize, priority: TransformPriority) -> bool {
        self.threads == threads.max(1) && self.priority == priority
    }

    /// Runs `job` on a pool thread and waits for its result. An error means the job panicked
    /// or the pool was dropped before it started.
    pub async fn run<R, F>(&self, job: F) -> Result<R, JoinError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let counted = self.activity.begin();
        self.handle
            .spawn_blocking(move || {
                let _counted = counted;
                job()
            })
            .await
    }

    /// Drops `value` on a pool thread, without waiting. Freeing a multi-MB buffer makes glibc
    /// give memory back to the kernel (`munmap`, or `madvise` when it trims a heap) in the
    /// freeing thread, which should be one of these and not the worker carrying traffic.
    pub fn dispose<T: Send + 'static>(&self, value: T) {
        // Detached: nothing waits for a drop. On a pool already shut down, `value` is dropped
        // here instead.
        let counted = self.activity.begin();
        drop(self.handle.spawn_blocking(move || {
            drop(value);
            drop(counted);
        }));
    }
}

impl Drop for TransformPool {
    fn drop(&mut self) {
        self.activity.close();
        // Dropping a runtime waits for its threads, which panics inside an async context (a
        // reload that resizes the pool runs on the proxy's runtime).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Moves the calling thread into `priority`'s scheduling class, for good.
#[cfg(target_os = "linux")]
fn lower_priority(priority: TransformPriority) -> std::io::Result<()> {
    let (policy, nice) = match priority {
        TransformPriority::Normal => return Ok(()),
        TransformPriority::Idle => (libc::SCHED_IDLE, None),
        TransformPriority::Batch => (libc::SCHED_BATCH, Some(19)),
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscalls on the calling thread with a valid `sched_param`. pid 0 is the
    // calling thread, not the process: Linux schedules threads (sched_setscheduler(2)).
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if let Some(nice) = nice {
        // SAFETY: as above; on Linux the nice value is per thread, addressed by its tid.
        let rc =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(priority: TransformPriority) -> std::io::Result<()> {
    match priority {
        TransformPriority::Normal => Ok(()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "scheduling classes are only set on Linux",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy and nice value of the calling thread.
    #[cfg(target_os = "linux")]
    fn own_class() -> (i32, i32) {
        // SAFETY: queries of the calling thread; getpriority's -1 is a valid nice value, and
        // these calls cannot fail for the calling thread.
        unsafe {
            (
                libc::sched_getscheduler(0),
                libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t),
            )
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn jobs_run_on_named_idle_class_threads() {
        let pool = TransformPool::new(2, TransformPriority::Idle).unwrap();
        let (name, (policy, _)) = pool
            .run(|| {
                (
                    std::thread::current().name().map(str::to_owned),
                    own_class(),
                )
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        assert_eq!(policy, libc::SCHED_IDLE);
        // The caller's own thread is untouched.
        assert_ne!(own_class().0, libc::SCHED_IDLE);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn batch_threads_run_at_nice_19() {
        let pool = TransformPool::new(1, TransformPriority::Batch).unwrap();
        let (policy, nice) = pool.run(own_class).await.unwrap();
        assert_eq!((policy, nice), (libc::SCHED_BATCH, 19));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn normal_threads_keep_the_process_class() {
        let pool = TransformPool::new(1, TransformPriority::Normal).unwrap();
        let caller = own_class();
        assert_eq!(pool.run(own_class).await.unwrap(), caller);
    }

    #[tokio::test]
    async fn dropping_inside_async_context_does_not_block_or_panic() {
        let pool = TransformPool::new(1, TransformPriority::Idle).unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let job = {
            let handle = pool.handle.clone();
            handle.spawn_blocking(move || {
                started_tx.send(()).unwrap();
                // Held until after the pool is gone: the drop must not wait for it.
                release_rx.recv().ok();
                7
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .unwrap()
            .unwrap();
        drop(pool);
        release_tx.send(()).unwrap();
        assert_eq!(job.await.unwrap(), 7);
    }

    #[tokio::test]
    async fn dispose_drops_on_a_pool_thread() {
        struct Probe(std::sync::mpsc::Sender<Option<String>>);
        impl Drop for Probe {
            fn drop(&mut self) {
                let name = std::thread::current().name().map(str::to_owned);
                self.0.send(name).unwrap();
            }
        }
        let pool = TransformPool::new(1, TransformPriority::Normal).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        pool.dispose(Probe(tx));
        let name = tokio::task::spawn_blocking(move || rx.recv())
            .await
            .unwrap();
        assert_eq!(name.unwrap().as_deref(), Some(THREAD_NAME));
    }

    #[tokio::test]
    async fn memory_goes_back_once_jobs_and_disposals_end() {
        let pool =
            TransformPool::with_trim_after(2, TransformPriority::Idle, Duration::ZERO).unwrap();
        let buffer = pool.run(|| vec![1u8; 8 << 20]).await.unwrap();
        pool.dispose(buffer);
        let activity = pool.activity.clone();
        let trimmed = tokio::task::spawn_blocking(move || {
            activity.wait_for_trims(1, Duration::from_secs(10))
        });
        assert!(trimmed.await.unwrap());
    }

    #[test]
    fn fits_compares_size_and_priority() {
        let pool = TransformPool::new(4, TransformPriority::Idle).unwrap();
        assert!(pool.fits(4, TransformPriority::Idle));
        assert!(!pool.fits(5, TransformPriority::Idle));
        assert!(!pool.fits(4, TransformPriority::Batch));
    }
}
