//! Replicas that keep failing (their container exits, or its health check fails its retries):
//! each replacement waits longer than the one before, 1 s doubling to 5 min, so a broken
//! deployment never spins in a hot loop; 10 min without a failure forgets the streak. Kept per
//! deployment, since each replacement is a new replica.

use std::time::{Duration, SystemTime};

/// The first wait after a failure.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest wait.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A streak is over after this long without a failure.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// How a replica failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Exited(Option<i64>),
    Unhealthy,
    /// Its image could not be had (a pull that failed, an image not on the engine): retried
    /// on the same backoff, never in a loop of pulls against the registry.
    NoImage,
}

/// A deployment's streak of failing replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashLoop {
    /// Failures in a row.
    pub restarts: u32,
    /// The exit code of the last container that exited (kept when a later one was unhealthy).
    pub last_exit_code: Option<i64>,
    pub last_failure_at: SystemTime,
    /// No replacement starts before this.
    pub retry_at: SystemTime,
}

impl CrashLoop {
    /// The streak after a failure at `now`: one longer, or a new one if the last is over.
    pub fn after(previous: Option<&CrashLoop>, failure: Failure, now: SystemTime) -> CrashLoop {
        let ongoing = previous.filter(|p| !p.is_over(now));
        let restarts = ongoing.map_or(0, |p| p.restarts).saturating_add(1);
        let exit_code = match failure {
            Failure::Exited(code) => code,
            Failure::Unhealthy | Failure::NoImage => ongoing.and_then(|p| p.last_exit_code),
        };
        CrashLoop { restarts, last_exit_code: exit_code, last_failure_at: now, retry_at: now + backoff(restarts) }
    }

    /// Whether replacements must still wait at `now`.
    pub fn is_backing_off(&self, now: SystemTime) -> bool {
        now < self.retry_at
    }

    /// Whether the streak is over: no failure for `RESET_AFTER`.
    pub fn is_over(&self, now: SystemTime) -> bool {
        now.duration_since(self.last_failure_at).is_ok_and(|quiet| quiet >= RESET_AFTER)
    }
}

/// The wait before the replacement after the `restarts`-th failure in a row.
pub fn backoff(restarts: u32) -> Duration {
    let doublings = restarts.saturating_sub(1).min(16);
    BACKOFF_START.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_a_second_to_five_minutes() {
        let waits: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn a_streak_grows_keeps_the_exit_code_and_is_forgotten_after_ten_quiet_minutes() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let first = CrashLoop::after(None, Failure::Exited(Some(3)), t0);
        assert_eq!((first.restarts, first.last_exit_code, first.retry_at), (1, Some(3), t0 + BACKOFF_START));
        assert!(first.is_backing_off(t0) && !first.is_backing_off(t0 + BACKOFF_START));
        let t1 = t0 + Duration::from_secs(5);
        let second = CrashLoop::after(Some(&first), Failure::Unhealthy, t1);
        assert_eq!(
            (second.restarts, second.last_exit_code, second.retry_at),
            (2, Some(3), t1 + Duration::from_secs(2))
        );
        assert!(!second.is_over(t1 + RESET_AFTER - Duration::from_secs(1)) && second.is_over(t1 + RESET_AFTER));
        let later = CrashLoop::after(Some(&second), Failure::Exited(Some(1)), t1 + RESET_AFTER);
        assert_eq!((later.restarts, later.last_exit_code), (1, Some(1)), "a new streak");
    }
}
