//! Log lines held in memory and written to stdout when a runtime worker is about to go idle, so
//! that a request does not pay for a `write` on its way.
//!
//! A line is copied into a shared buffer and reaches stdout when the runtime's worker is about to
//! park (tokio's `on_thread_park`, wired up by `main`), once 16 KiB are pending, or at exit
//! (BENCHMARKS.md, item 3). `telemetry` installs it as the subscriber's writer and writes access
//! lines straight into it (`telemetry::access`); this module knows nothing of what the lines say.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Write as _};
use std::sync::{Arc, Mutex};

/// Lines pending beyond this are written at once, whatever the workers are doing: a bound on
/// memory and on how late a line can be under load that never lets a worker idle.
const DEFERRED_LIMIT: usize = 16 * 1024;

thread_local! {
    /// Whether this thread calls [`Deferred::park`] before it sleeps.
    static PARKS_WITH_FLUSH: Cell<bool> = const { Cell::new(false) };
}

/// Log lines for stdout, held until [`Deferred::flush`] or until [`DEFERRED_LIMIT`] bytes are
/// pending. Under load one `write` carries dozens of lines; when traffic is light a worker parks
/// right after the response is handed to the kernel, so each line is still written within
/// microseconds, just no longer ahead of the response. Cloning shares the buffer.
#[derive(Clone)]
pub struct Deferred {
    pending: Arc<Mutex<Vec<u8>>>,
    out: Arc<Mutex<Box<dyn io::Write + Send>>>,
}

impl Default for Deferred {
    fn default() -> Self {
        Deferred::to(Box::new(io::stdout()))
    }
}

impl Deferred {
    /// Lines for `out` instead of stdout.
    pub(crate) fn to(out: Box<dyn io::Write + Send>) -> Self {
        Deferred {
            pending: Arc::default(),
            out: Arc::new(Mutex::new(out)),
        }
    }

    /// To be called by a runtime worker about to park (`on_thread_park`): writes out every
    /// pending line, and from then on lets this thread's lines wait for its next park. Threads
    /// that never park this way (the `block_on` thread, the blocking pool) write their lines at
    /// once, or a line logged while every worker sleeps would wait for the next request.
    pub fn park(&self) {
        PARKS_WITH_FLUSH.set(true);
        self.flush();
    }

    /// Writes out every pending line.
    pub fn flush(&self) {
        // `out` is locked before the lines and held while they are written, so two flushes
        // racing cannot swap the order of their chunks.
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.is_empty() {
            return;
        }
        // Nowhere to report a failed log write to; tracing's own writers drop it too.
        let _ = out.write_all(&pending).and_then(|()| out.flush());
        // Cleared, not replaced: the buffer keeps the place it got at start-up. A fresh one
        // after every flush could land at the top of the heap and keep glibc from returning
        // the memory of a burst below it.
        pending.clear();
    }

    fn push(&self, line: &[u8]) {
        self.append(|pending| {
            pending.extend_from_slice(line);
            Ok(())
        });
    }

    /// Appends the line `write` writes, straight into the pending buffer (no copy through a
    /// line buffer of its own); a line that fails half-way is taken back out.
    pub(crate) fn append(&self, write: impl FnOnce(&mut Vec<u8>) -> fmt::Result) {
        let full = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.capacity() == 0 {
                // Room for the limit plus the line that crosses it, so the buffer never moves.
                pending.reserve(2 * DEFERRED_LIMIT);
            }
            let start = pending.len();
            if write(&mut pending).is_err() {
                pending.truncate(start);
            }
            pending.len() >= DEFERRED_LIMIT
        };
        if full || !PARKS_WITH_FLUSH.get() {
            self.flush();
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Deferred {
    type Writer = DeferredLine<'a>;

    fn make_writer(&'a self) -> DeferredLine<'a> {
        DeferredLine(self)
    }
}

/// The writer of one event: tracing-subscriber formats a whole line, then writes it at once.
pub struct DeferredLine<'a>(&'a Deferred);

impl io::Write for DeferredLine<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// Everything written, in one buffer.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn deferred_lines_wait_for_a_flush_or_the_limit_and_keep_their_order() {
        let sink = Sink::default();
        let deferred = Deferred::to(Box::new(sink.clone()));
        deferred.make_writer().write_all(b"zero\n").unwrap();
        assert_eq!(
            &*sink.0.lock().unwrap(),
            b"zero\n",
            "a thread that never parked writes at once"
        );
        sink.0.lock().unwrap().clear();
        deferred.park();
        let mut w = deferred.make_writer();
        w.write_all(b"one\n").unwrap();
        w.write_all(b"two\n").unwrap();
        assert!(sink.0.lock().unwrap().is_empty(), "nothing before a flush");
        deferred.flush();
        assert_eq!(&*sink.0.lock().unwrap(), b"one\ntwo\n");
        deferred.flush();
        assert_eq!(
            sink.0.lock().unwrap().len(),
            8,
            "a second flush writes nothing again"
        );

        let almost_full = vec![b'x'; DEFERRED_LIMIT - 1];
        deferred.make_writer().write_all(&almost_full).unwrap();
        assert_eq!(
            sink.0.lock().unwrap().len(),
            8,
            "below the limit, still held"
        );
        deferred.make_writer().write_all(b"last\n").unwrap();
        let written = sink.0.lock().unwrap().clone();
        assert_eq!(
            written.len(),
            8 + almost_full.len() + 5,
            "the limit writes all at once"
        );
        assert!(written.ends_with(b"last\n"));
    }
}
