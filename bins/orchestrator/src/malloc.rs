//! glibc allocator settings for a long-running, mostly idle server that must also keep up at
//! a million replicas.
//!
//! By default glibc gives each thread that allocates its own arena (up to 8 per core) and raises
//! its mmap threshold as large blocks are freed, so the store's big reads (every replica, every
//! reconcile tick), made on tokio's blocking threads, left several MiB resident per arena in an
//! idle server. Few arenas and fixed thresholds send large blocks to mmap and return them to the
//! OS when freed. Measured with `cargo xtask bench api` (100 nodes, 10,000 replicas): idle RSS
//! 19.4 MiB with the default, 14.1 MiB with one arena.
//!
//! One arena was too few under load: at a million replicas the server spent over a quarter of
//! its CPU in malloc and waiting on the arena's lock (`cargo xtask bench scale --perf`). Four
//! (two a core here), measured with `cargo xtask bench scale --nodes 2000 --replicas 200000`:
//! running after 49.0 s -> 40.6 s, replacing a killed node's replicas 13.2 s -> 9.2 s, RSS
//! loaded 197 -> 235 MiB, idle 13.6 -> 13.9 MiB. (mimalloc instead: 27.2 s and 6.0 s, but
//! 671 MiB loaded and 27 MiB idle, its per-thread heaps on tokio's many blocking threads.)

/// Must run first in `main`, before any other thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    const ARENAS: libc::c_int = 4;
    const THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread
    // exists, with options and values glibc documents (mallopt(3)). A refused value leaves
    // the default, which is harmless, so its result is not checked.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
        libc::mallopt(libc::M_TOP_PAD, 0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
