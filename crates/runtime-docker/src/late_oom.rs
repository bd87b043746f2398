//! An OOM kill the engine learned of after the container's exit.
//!
//! The engine sets `State.OOMKilled` only when containerd's OOM event reaches it before the
//! exit event; the two come from different watchers of the shim, and on a busy machine the OOM
//! event often comes second (measured here: 14 of 60 memory hogs under CPU load, the event up to
//! 0.85 s after `die`). The engine still publishes it as the container's `oom` event, so a
//! SIGKILLed container with a memory limit is looked up there before it is called a plain kill.
//! (containerd fixed that order upstream in late 2025, containerd#12714; Debian's 1.6 predates it.)

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::EventsOptionsBuilder;
use futures::StreamExt;

/// A container killed by SIGKILL exits with 128 + 9.
pub const SIGKILL_EXIT: i64 = 137;

/// How long after now an OOM event may still arrive and count.
pub const GRACE: Duration = Duration::from_millis(1500);

/// Whether the engine published an `oom` event for container `id` between its start and `GRACE`
/// from now. The answer comes at the first such event; without one, after `GRACE`. Any error
/// counts as no.
pub async fn reported(docker: &Docker, id: &str, started_at: Option<&str>) -> bool {
    let since = started_at.and_then(|t| humantime::parse_rfc3339_weak(t).ok()).unwrap_or(UNIX_EPOCH);
    let filters = HashMap::from([("type", vec!["container"]), ("container", vec![id]), ("event", vec!["oom"])]);
    let options = EventsOptionsBuilder::new()
        .since(&engine_time(since))
        .until(&engine_time(SystemTime::now() + GRACE))
        .filters(&filters)
        .build();
    let mut events = docker.events(Some(options));
    // The engine ends the stream at `until`; the timeout is for an engine that does not.
    let first = tokio::time::timeout(GRACE + Duration::from_millis(500), events.next()).await;
    matches!(first, Ok(Some(Ok(_))))
}

/// A time as the events API reads it: Unix seconds and nanoseconds.
fn engine_time(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", since_epoch.as_secs(), since_epoch.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_seconds_and_nanoseconds() {
        assert_eq!(engine_time(UNIX_EPOCH + Duration::new(1_796_594_897, 433_453)), "1796594897.000433453");
    }
}
