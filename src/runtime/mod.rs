//! What tunes the process rather than the domain: how memory is allocated and given back, which
//! threads run capture transforms and at what scheduling class, and when log lines reach stdout.
//!
//! Nothing here knows what a capture, a route or the Oz API is: `capture` and `telemetry` use
//! this folder, never the reverse, and it reaches no further up than `config` (the pool's
//! scheduling class) and `metrics` (RSS for the trimmer's log line).
//!
//! - [`allocator`]: the process keeps glibc's allocator, with one arena, set up before any other
//!   thread starts. Measured against jemalloc and mimalloc (BENCHMARKS.md, item 15): the same
//!   CPU per request within noise, but glibc with [`trim`] held the least 10 s after captures
//!   (11 MiB, against 13 with jemalloc and 34–37 with mimalloc) and at idle (mimalloc +7.7 MiB),
//!   with no dependency.
//! - [`trim`]: hands freed capture memory back to the kernel once the capture threads are quiet.
//! - [`pool`]: the capture threads, scheduled below traffic.
//! - [`deferred`]: log lines written when a worker goes idle, not on the request path.

pub mod allocator;
pub mod deferred;
pub mod pool;
pub mod trim;
