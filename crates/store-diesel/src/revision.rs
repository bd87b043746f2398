//! `StoreRevision` without a database read per call (it is asked on every `GET /status`):
//! the stored revision, read at most every `REVISION_REFRESH`, and the ones this process's own
//! commits make, known at once.
//!
//! The value handed out moves by one each time a larger stored revision becomes known, by a
//! read or by a commit of ours, never for a stored revision already known. So a write of this
//! process makes one new value, not two (one at its commit, another when a later read finds
//! its stored revision): each new value makes `/status` be built again.

use std::sync::Mutex;
use std::time::Duration;

/// How stale another process's writes may look to `revision()`; this process's own writes
/// count at once.
const REVISION_REFRESH: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
pub(crate) struct RevisionCache {
    state: Mutex<RevisionState>,
    /// A background read of the stored revision is under way.
    refreshing: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct RevisionState {
    /// The largest stored revision known, read or made by one of our commits.
    stored: u64,
    /// When the stored revision was last read.
    read_at: Option<std::time::Instant>,
    /// What is handed out: never goes back.
    value: u64,
}

impl RevisionState {
    fn saw(&mut self, stored: u64) {
        if stored > self.stored {
            self.stored = stored;
            self.value += 1;
        }
    }
}

impl RevisionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, RevisionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this caller should read the stored revision (no other read under way); it
    /// calls `end_refresh` when done.
    pub(crate) fn begin_refresh(&self) -> bool {
        !self.refreshing.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    pub(crate) fn end_refresh(&self) {
        self.refreshing.store(false, std::sync::atomic::Ordering::Release);
    }

    /// One of our commits made this stored revision. (Another process's writes between it and
    /// the last known one are in what a reader reads after it, so they need no value of their
    /// own; a read that already found it made its value.)
    pub(crate) fn committed(&self, stored: u64) {
        self.lock().saw(stored);
    }

    /// The current value, and whether the stored revision should be read again (`None`: it
    /// was never read).
    pub(crate) fn current(&self) -> Option<(u64, bool)> {
        let s = self.lock();
        let stale = s.read_at?.elapsed() >= REVISION_REFRESH;
        Some((s.value, stale))
    }

    /// The stored revision as a read found it. A read that began before one of our commits
    /// landed finds less than that commit made, and changes nothing.
    pub(crate) fn refreshed(&self, stored: u64) -> u64 {
        let mut s = self.lock();
        s.saw(stored);
        s.read_at = Some(std::time::Instant::now());
        s.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stored_revision_makes_one_new_value_however_it_becomes_known() {
        let cache = RevisionCache::default();
        assert_eq!(cache.current(), None);
        let first = cache.refreshed(7);
        // Our commit: a new value at once; the read that finds it later makes none.
        cache.committed(8);
        let after_commit = cache.current().unwrap().0;
        assert!(after_commit > first);
        assert_eq!(cache.refreshed(8), after_commit);
        // A read begun before our commit landed changes nothing.
        cache.committed(9);
        let after_second = cache.current().unwrap().0;
        assert_eq!(cache.refreshed(8), after_second);
        // Another process's writes: a new value when a read finds them.
        let others = cache.refreshed(11);
        assert!(others > after_second);
        assert_eq!(cache.refreshed(11), others);
        // A commit of ours after others' unread writes: one new value covers both.
        cache.committed(14);
        assert!(cache.current().unwrap().0 > others);
        let settled = cache.current().unwrap().0;
        assert_eq!(cache.refreshed(14), settled);
    }
}
