//! How the process's allocator is set up, so that the memory captures used can go back to the
//! kernel once they are done (`capture::trim`).

/// One glibc arena for every thread. By default each thread that allocates gets an arena of
/// its own (up to 8 per core), and the top of a thread's arena is one thing `malloc_trim`
/// cannot hand back: after 10 s of captures four capture threads held 7.7 MB each in theirs,
/// and RSS stayed at 36–40 MiB after the trim, against 8.8 MiB with one arena (BENCHMARKS.md).
/// The capture threads allocate a few large buffers per capture and small ones come from each
/// thread's cache (tcache), so they rarely wait for the arena's lock. Call before any other
/// thread starts. `GLIBC_TUNABLES=glibc.malloc.arena_max=…` still decides when it is set.
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
