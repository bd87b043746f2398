//! What a replica that ended badly leaves behind: how its container ended and the last of what
//! it printed, read from its engine before the container is removed, then kept in the store
//! with the replica's retirement (`logs --previous`, `deploy ps`).

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use orchestrator_core::history::{LAST_WORDS_LINES, last_words};
use orchestrator_core::{ContainerRuntime, EndReason, LogRequest, Node, Replica, ReplicaExit};
use tracing::debug;

/// Reading one ended container takes no longer than this; past it the record keeps what was
/// read (the reason at least). It runs inside the deployment's turn in the queue.
const READ_DEADLINE: Duration = Duration::from_secs(3);

/// How a replica was seen to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Its container exited, with this code as the listing said.
    Exited(Option<i64>),
    /// Its health check failed its retries.
    Unhealthy,
    /// Its container was gone.
    Vanished,
    /// Its container did not start: the error in words.
    NotStarted(String),
    /// Its image could not be pulled: the error in words.
    PullFailed(String),
}

/// The record of `replica`, which ended as `ending`, as far as the orchestrator itself knows.
pub fn record(replica: &Replica, ending: &Ending) -> ReplicaExit {
    ReplicaExit {
        replica: replica.id,
        deployment: replica.deployment.clone(),
        node: replica.node.clone(),
        revision: replica.revision,
        started_at: replica.started_at,
        ended_at: SystemTime::now(),
        reason: match ending {
            Ending::Exited(code) => EndReason::Exited { code: *code, oom_killed: false },
            Ending::Unhealthy => EndReason::Unhealthy { output: None },
            Ending::Vanished => EndReason::Vanished,
            Ending::NotStarted(error) => EndReason::NotStarted { error: error.clone() },
            Ending::PullFailed(error) => EndReason::PullFailed { error: error.clone() },
        },
        logs: Vec::new(),
    }
}

/// The record of `replica`, which ended as `ending` on `node` (when reachable), completed from
/// its engine: how the container ended (OOM kill, the last health-check output) and its last
/// lines.
pub async fn capture(
    runtime: &dyn ContainerRuntime,
    node: Option<&Node>,
    replica: &Replica,
    ending: Ending,
) -> ReplicaExit {
    let mut exit = record(replica, &ending);
    let Some(node) = node.filter(|_| matches!(ending, Ending::Exited(_) | Ending::Unhealthy)) else { return exit };
    let read = async {
        match runtime.replica_end(node, &replica.deployment, replica.id).await {
            Ok(end) => match &mut exit.reason {
                EndReason::Exited { code, oom_killed } => {
                    *code = code.or(end.exit_code);
                    *oom_killed = end.oom_killed;
                }
                EndReason::Unhealthy { output } => *output = end.health_output,
                _ => {}
            },
            Err(e) => debug!(replica = %replica.id, error = %e, "cannot read how the container ended"),
        }
        let request = LogRequest { follow: false, tail: Some(LAST_WORDS_LINES), since: None };
        match runtime.replica_logs(node, &replica.deployment, replica.id, &request).await {
            Ok(mut lines) => {
                let mut read = Vec::new();
                while let Some(Ok(line)) = lines.next().await {
                    read.push(line);
                }
                exit.logs = last_words(read);
            }
            Err(e) => debug!(replica = %replica.id, error = %e, "cannot read the container's last lines"),
        }
    };
    let _ = tokio::time::timeout(READ_DEADLINE, read).await;
    exit
}
