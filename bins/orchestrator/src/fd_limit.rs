//! The open-file limit, raised from the soft to the hard limit at start (what Go programs,
//! dockerd among them, do by default). A server keeps a few connections to each engine and
//! one per client: with thousands of nodes the usual soft limit of 1,024 runs out long before
//! memory or CPU does.

pub fn raise() {
    // Refused (a sandbox): the soft limit stays; nothing else depends on it.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn the_soft_limit_reaches_the_hard_one() {
        super::raise();
        let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!(soft, hard);
    }
}
