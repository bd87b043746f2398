//! `StoreRevision` without a database read per call (it is asked on every `GET /status`):
//! the stored revision, read at most every `REVISION_REFRESH`, plus this process's own commits.

use std::sync::Mutex;
use std::time::Duration;

/// How stale another process's writes may look to `revision()`; this process's own writes
/// count at once.
const REVISION_REFRESH: Duration = Duration::from_millis(100);
/// Room for this process's own commits between two reads of the stored revision.
const LOCAL_BITS: u32 = 24;

#[derive(Debug, Default)]
pub(crate) struct RevisionCache {
    state: Mutex<RevisionState>,
    /// A background read of the stored revision is under way.
    refreshing: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct RevisionState {
    /// The stored revision at the last read, and when that was.
    stored: u64,
    read_at: Option<std::time::Instant>,
    /// This process's commits since.
    local: u64,
    /// The largest value handed out: what is handed out never goes back.
    last: u64,
}

impl RevisionCache {
    /// Whether this caller should read the stored revision (no other read under way); it
    /// calls `end_refresh` when done.
    pub(crate) fn begin_refresh(&self) -> bool {
        !self.refreshing.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    pub(crate) fn end_refresh(&self) {
        self.refreshing.store(false, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn committed(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).local += 1;
    }

    /// The current value, and whether the stored revision should be read again (`None`: it
    /// was never read).
    pub(crate) fn current(&self) -> Option<(u64, bool)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let stale = s.read_at?.elapsed() >= REVISION_REFRESH;
        Some((s.value(), stale))
    }

    pub(crate) fn refreshed(&self, stored: u64) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // A stored revision read before one of our commits landed must not hide that commit.
        if stored > s.stored || s.read_at.is_none() {
            (s.stored, s.local) = (stored, 0);
        }
        s.read_at = Some(std::time::Instant::now());
        s.value()
    }
}

impl RevisionState {
    fn value(&mut self) -> u64 {
        self.last = self.last.max((self.stored << LOCAL_BITS) + self.local.min((1 << LOCAL_BITS) - 1));
        self.last
    }
}
