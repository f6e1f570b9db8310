//! How the process's allocator is set up, so that the memory captures used can go back to the
//! kernel once they are done (`runtime::trim`).
//!
//! The allocator is glibc's: jemalloc and mimalloc kept more memory after captures in
//! side-by-side runs, for no CPU gain beyond the noise (BENCHMARKS.md, item 15).

/// One glibc arena for every thread. By default each thread that allocates gets an arena of
/// its own (up to 8 per core), and the top of a thread's arena is one thing `malloc_trim`
/// cannot hand back: after 10 s of captures four arenas held 7.7 MB each at their tops, and RSS
/// stayed at 36–40 MiB after the trim, against 8.8 MiB with one arena (BENCHMARKS.md, item 14).
/// The capture threads take the arena's lock for a few large buffers per capture; small blocks
/// come from each thread's cache (tcache). Under paced captures `strace -T -e futex` counted
/// 3–5 waits of at most 0.04 ms on the traffic worker in 8 s. Call before any other thread
/// starts. `GLIBC_TUNABLES=glibc.malloc.arena_max=…` still decides when it is set.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        if !tuned {
            // SAFETY: mallopt only sets a number inside glibc's allocator, before other
            // threads exist to read it.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        }
    }
}
