//! What happened in the cluster, in order: every change of state is an event with an id that
//! only grows, recorded by the store in the same transaction as the change itself (so there is
//! no change without its event, and no event of a change that was rolled back).

use std::time::SystemTime;

use async_trait::async_trait;

use crate::deployment::Deployment;
use crate::error::{Error, Result};
use crate::node::{Node, NodeStatus};
use crate::replica::{Replica, ReplicaState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    NodeAdded,
    NodeOnline,
    NodeOffline,
    NodeDraining,
    NodeUpdated,
    NodeRemoved,
    DeploymentCreated,
    DeploymentScaled,
    DeploymentUpdated,
    DeploymentUnplaced,
    /// A replica failed again: the next replacement waits.
    DeploymentCrashLooping,
    DeploymentDeleted,
    ReplicaPlaced,
    ReplicaStarted,
    ReplicaExited,
    ReplicaHealth,
    ReplicaDeregistered,
    ReplicaLost,
    ReplicaRemoved,
    LeaderElected,
    RolloutStarted,
    RolloutProgressed,
    RolloutPaused,
    RolloutResumed,
    RolloutSucceeded,
    RolloutFailed,
    RolloutRolledBack,
    /// An engine began pulling an image ahead of a rollout.
    ImagePulling,
    ImagePulled,
    ImagePullFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 30] = [
        EventKind::NodeAdded,
        EventKind::NodeOnline,
        EventKind::NodeOffline,
        EventKind::NodeDraining,
        EventKind::NodeUpdated,
        EventKind::NodeRemoved,
        EventKind::DeploymentCreated,
        EventKind::DeploymentScaled,
        EventKind::DeploymentUpdated,
        EventKind::DeploymentUnplaced,
        EventKind::DeploymentCrashLooping,
        EventKind::DeploymentDeleted,
        EventKind::ReplicaPlaced,
        EventKind::ReplicaStarted,
        EventKind::ReplicaExited,
        EventKind::ReplicaHealth,
        EventKind::ReplicaDeregistered,
        EventKind::ReplicaLost,
        EventKind::ReplicaRemoved,
        EventKind::LeaderElected,
        EventKind::RolloutStarted,
        EventKind::RolloutProgressed,
        EventKind::RolloutPaused,
        EventKind::RolloutResumed,
        EventKind::RolloutSucceeded,
        EventKind::RolloutFailed,
        EventKind::RolloutRolledBack,
        EventKind::ImagePulling,
        EventKind::ImagePulled,
        EventKind::ImagePullFailed,
    ];

    /// The stable name on the wire and in the store: `node.offline`, `replica.placed`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NodeAdded => "node.added",
            EventKind::NodeOnline => "node.online",
            EventKind::NodeOffline => "node.offline",
            EventKind::NodeDraining => "node.draining",
            EventKind::NodeUpdated => "node.updated",
            EventKind::NodeRemoved => "node.removed",
            EventKind::DeploymentCreated => "deployment.created",
            EventKind::DeploymentScaled => "deployment.scaled",
            EventKind::DeploymentUpdated => "deployment.updated",
            EventKind::DeploymentUnplaced => "deployment.unplaced",
            EventKind::DeploymentCrashLooping => "deployment.crash_looping",
            EventKind::DeploymentDeleted => "deployment.deleted",
            EventKind::ReplicaPlaced => "replica.placed",
            EventKind::ReplicaStarted => "replica.started",
            EventKind::ReplicaExited => "replica.exited",
            EventKind::ReplicaHealth => "replica.health",
            EventKind::ReplicaDeregistered => "replica.deregistered",
            EventKind::ReplicaLost => "replica.lost",
            EventKind::ReplicaRemoved => "replica.removed",
            EventKind::LeaderElected => "leader.elected",
            EventKind::RolloutStarted => "rollout.started",
            EventKind::RolloutProgressed => "rollout.progressed",
            EventKind::RolloutPaused => "rollout.paused",
            EventKind::RolloutResumed => "rollout.resumed",
            EventKind::RolloutSucceeded => "rollout.succeeded",
            EventKind::RolloutFailed => "rollout.failed",
            EventKind::RolloutRolledBack => "rollout.rolled_back",
            EventKind::ImagePulling => "image.pulling",
            EventKind::ImagePulled => "image.pulled",
            EventKind::ImagePullFailed => "image.pull_failed",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::invalid("event kind", format!("unknown event kind {s:?}")))
    }
}

/// One recorded event. Names are kept as the strings they were when it happened (the node or
/// deployment may be gone since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Grows with every event; never reused.
    pub id: u64,
    pub at: SystemTime,
    pub kind: EventKind,
    pub node: Option<String>,
    pub deployment: Option<String>,
    pub replica: Option<u64>,
    /// For people: what changed, e.g. "3 -> 5 replicas".
    pub message: String,
}

/// An event about to be recorded (the store gives it its id and time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub node: Option<String>,
    pub deployment: Option<String>,
    pub replica: Option<u64>,
    pub message: String,
}

impl NewEvent {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        Self { kind, node: None, deployment: None, replica: None, message: message.into() }
    }

    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    pub fn deployment(mut self, deployment: impl Into<String>) -> Self {
        self.deployment = Some(deployment.into());
        self
    }

    pub fn replica(mut self, replica: u64) -> Self {
        self.replica = Some(replica);
        self
    }
}

/// The events of each change, made the same way by every store.
impl NewEvent {
    pub fn node_added(node: &Node) -> Self {
        NewEvent::new(EventKind::NodeAdded, format!("{} at {}, capacity {}", node.name, node.address, node.capacity))
            .node(node.name.as_str())
    }

    /// `None` when the status does not change (the heartbeat confirms it every tick).
    pub fn node_status(name: &str, from: NodeStatus, to: NodeStatus) -> Option<Self> {
        let kind = match to {
            _ if from == to => return None,
            NodeStatus::Online => EventKind::NodeOnline,
            NodeStatus::Offline => EventKind::NodeOffline,
            NodeStatus::Draining => EventKind::NodeDraining,
        };
        Some(NewEvent::new(kind, format!("{name}: {} -> {}", from.as_str(), to.as_str())).node(name))
    }

    /// Labels or public host changed.
    pub fn node_updated(node: &Node) -> Self {
        let labels: Vec<String> = node.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let host = node.public_host.as_deref().unwrap_or("-");
        NewEvent::new(
            EventKind::NodeUpdated,
            format!("{}: labels [{}], public host {host}", node.name, labels.join(", ")),
        )
        .node(node.name.as_str())
    }

    pub fn node_removed(name: &str) -> Self {
        NewEvent::new(EventKind::NodeRemoved, format!("{name} removed")).node(name)
    }

    pub fn deployment_created(d: &Deployment) -> Self {
        let message = format!("{}: {} replicas of {}", d.name, d.spec.replicas, d.spec.template.image);
        NewEvent::new(EventKind::DeploymentCreated, message).deployment(d.name.as_str())
    }

    /// A new template: the revision it made.
    pub fn deployment_updated(d: &Deployment) -> Self {
        let message = format!("{}: revision {} ({})", d.name, d.revision, d.spec.template.image);
        NewEvent::new(EventKind::DeploymentUpdated, message).deployment(d.name.as_str())
    }

    pub fn rollout_started(r: &crate::rollout::Rollout) -> Self {
        let restoring = r.restores.map(|n| format!(", restoring revision {n}")).unwrap_or_default();
        let message = format!(
            "{}: rollout {} from revision {} to {}{restoring}",
            r.deployment, r.id, r.from_revision, r.to_revision
        );
        NewEvent::new(EventKind::RolloutStarted, message).deployment(r.deployment.as_str())
    }

    /// An engine getting `image` ready for the deployment's rollout: `None` as it starts,
    /// then `Some(Ok(true))` pulled, `Some(Ok(false))` there already, or why it failed.
    pub fn image_pull(
        deployment: &str,
        node: &str,
        image: &str,
        outcome: Option<std::result::Result<bool, &str>>,
    ) -> Self {
        let (kind, message) = match outcome {
            None => (EventKind::ImagePulling, format!("{deployment}: getting {image} on {node}")),
            Some(Ok(true)) => (EventKind::ImagePulled, format!("{deployment}: {image} pulled on {node}")),
            Some(Ok(false)) => (EventKind::ImagePulled, format!("{deployment}: {image} already on {node}")),
            Some(Err(why)) => {
                (EventKind::ImagePullFailed, format!("{deployment}: {image} not pulled on {node}: {why}"))
            }
        };
        NewEvent::new(kind, message).deployment(deployment).node(node)
    }

    pub fn rollout_progressed(r: &crate::rollout::Rollout) -> Self {
        let message = format!(
            "{}: rollout {}: {} updated, {} healthy, {} failed",
            r.deployment, r.id, r.updated, r.healthy, r.failed
        );
        NewEvent::new(EventKind::RolloutProgressed, message).deployment(r.deployment.as_str())
    }

    /// The rollout's move to its current state (paused, resumed, or finished).
    pub fn rollout_state(r: &crate::rollout::Rollout) -> Self {
        use crate::rollout::RolloutState;
        let kind = match r.state {
            RolloutState::InProgress => EventKind::RolloutResumed,
            RolloutState::Paused => EventKind::RolloutPaused,
            RolloutState::Succeeded => EventKind::RolloutSucceeded,
            RolloutState::Failed => EventKind::RolloutFailed,
            RolloutState::RolledBack => EventKind::RolloutRolledBack,
        };
        let why = r.reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
        let message = format!("{}: rollout {} to revision {} {}{why}", r.deployment, r.id, r.to_revision, r.state);
        NewEvent::new(kind, message).deployment(r.deployment.as_str())
    }

    pub fn deployment_scaled(name: &str, from: u32, to: u32) -> Self {
        NewEvent::new(EventKind::DeploymentScaled, format!("{name}: {from} -> {to} replicas")).deployment(name)
    }

    pub fn deployment_unplaced(name: &str, count: u32, reason: &str) -> Self {
        NewEvent::new(EventKind::DeploymentUnplaced, format!("{name}: {count} replica(s) unplaced: {reason}"))
            .deployment(name)
    }

    pub fn deployment_crash_looping(name: &str, crash: &crate::crash_loop::CrashLoop) -> Self {
        let wait = crash.retry_at.duration_since(crash.last_failure_at).unwrap_or_default();
        let code = crash.last_exit_code.map_or_else(|| "none".to_string(), |c| c.to_string());
        let message = format!(
            "{name}: failure {} in a row (last exit code {code}); the next replacement waits {}s",
            crash.restarts,
            wait.as_secs()
        );
        NewEvent::new(EventKind::DeploymentCrashLooping, message).deployment(name)
    }

    pub fn deployment_deleted(name: &str) -> Self {
        NewEvent::new(EventKind::DeploymentDeleted, format!("{name} deleted")).deployment(name)
    }

    fn about(kind: EventKind, r: &Replica, what: &str) -> Self {
        NewEvent::new(kind, format!("{} replica {} {what} {}", r.deployment, r.id, r.node))
            .node(r.node.as_str())
            .deployment(r.deployment.as_str())
            .replica(r.id.0)
    }

    pub fn replica_placed(r: &Replica) -> Self {
        Self::about(EventKind::ReplicaPlaced, r, "placed on")
    }

    pub fn replica_started(r: &Replica) -> Self {
        Self::about(EventKind::ReplicaStarted, r, "running on")
    }

    /// `None` for a state that is not news (pending, or unchanged).
    pub fn replica_state(r: &Replica, from: ReplicaState) -> Option<Self> {
        match r.state {
            _ if r.state == from => None,
            ReplicaState::Running => Some(Self::replica_started(r)),
            ReplicaState::Exited => Some(Self::about(EventKind::ReplicaExited, r, "exited on")),
            ReplicaState::Lost => Some(Self::replica_lost(r)),
            ReplicaState::Pending => None,
        }
    }

    /// Its health check's verdict changed to healthy or unhealthy.
    pub fn replica_health(r: &Replica, health: crate::workload::Health) -> Self {
        NewEvent::about(EventKind::ReplicaHealth, r, &format!("{} on", health.as_str()))
    }

    /// Out of the endpoints, about to be stopped.
    pub fn replica_deregistered(r: &Replica) -> Self {
        Self::about(EventKind::ReplicaDeregistered, r, "out of the endpoints, about to stop, on")
    }

    pub fn replica_lost(r: &Replica) -> Self {
        Self::about(EventKind::ReplicaLost, r, "lost with")
    }

    /// It ended badly (its container exited, failed its health check, vanished or never
    /// started), and is replaced.
    pub fn replica_ended(r: &Replica, reason: &crate::history::EndReason) -> Self {
        Self::about(EventKind::ReplicaExited, r, &format!("ended ({reason}) on"))
    }

    pub fn replica_removed(r: &Replica) -> Self {
        Self::about(EventKind::ReplicaRemoved, r, "removed from")
    }

    pub fn leader_elected(holder: &str, term: u64) -> Self {
        NewEvent::new(EventKind::LeaderElected, format!("{holder} leads (term {term})"))
    }
}

/// How many events a store keeps: older ones are dropped as new ones come.
pub const EVENT_RETENTION: u64 = 10_000;

/// The events the store recorded with its writes.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Events with an id above `since`, oldest first, at most `limit`.
    async fn list_events(&self, since: u64, limit: u32) -> Result<Vec<Event>>;

    /// The id of the newest event (0 when there is none).
    async fn last_event_id(&self) -> Result<u64>;

    /// Records events of what happened outside the store (an engine pulling an image), with
    /// ids after every event recorded so far.
    async fn record_events(&self, events: Vec<NewEvent>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), kind);
        }
        assert!("node.exploded".parse::<EventKind>().is_err());
    }
}
