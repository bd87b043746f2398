//! The open-file limit, raised from the soft to the hard limit at start (what Go programs,
//! dockerd among them, do by default). A server keeps a few connections to each engine and
//! one per client: with thousands of nodes the usual soft limit of 1,024 runs out long before
//! memory or CPU does.

#[cfg(unix)]
pub fn raise() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the one struct passed, which lives on
    // this stack frame for the duration of the calls (getrlimit(2)).
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            // Refused (a sandbox): the soft limit stays; nothing else depends on it.
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
    }
}

#[cfg(not(unix))]
pub fn raise() {}
