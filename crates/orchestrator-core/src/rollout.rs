//! Rolling updates: how a deployment moves its replicas from one revision's template to the
//! next (`UpdatePolicy`), and the record of each such move (`Rollout`), kept in the store so a
//! new leader carries on where the old one stopped.
//!
//! Defaults put availability first: one replica at a time, started before the old one stops,
//! watched for 5 s, and a failure rolls back on its own.

use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::name::DeploymentName;

/// Whether a replica's replacement starts before it stops, or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateOrder {
    #[default]
    StartFirst,
    /// The old replica stops first: no surge, so at least one replica is unavailable at a time.
    StopFirst,
}

impl UpdateOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StartFirst => "start-first",
            UpdateOrder::StopFirst => "stop-first",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "start-first" => Some(UpdateOrder::StartFirst),
            "stop-first" => Some(UpdateOrder::StopFirst),
            _ => None,
        }
    }
}

/// What a failed rollout does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureAction {
    /// Back to the last revision whose rollout succeeded, at once.
    #[default]
    Rollback,
    /// Stop where it is; an operator resumes or rolls back.
    Pause,
    /// Count the failure and go on.
    Continue,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Rollback => "rollback",
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "rollback" => Some(FailureAction::Rollback),
            "pause" => Some(FailureAction::Pause),
            "continue" => Some(FailureAction::Continue),
            _ => None,
        }
    }
}

/// How a rollout replaces replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatePolicy {
    /// Replicas being replaced at once (0: all of them).
    pub parallelism: u32,
    /// Replicas beyond the required count while replacing.
    pub max_surge: u32,
    /// Ready replicas below the required count while replacing.
    pub max_unavailable: u32,
    pub order: UpdateOrder,
    /// How long a new replica must stay ready before it counts as updated.
    pub monitor: Duration,
    pub failure_action: FailureAction,
    /// Failed new replicas allowed, as a share of those started, before the rollout fails
    /// (thousandths, so the value compares exactly: 0 = the first failure fails it).
    pub max_failure_permille: u16,
    /// The whole rollout must be done within this.
    pub progress_deadline: Duration,
    /// A new replica must be ready within this of being started, or it counts as failed.
    pub ready_deadline: Duration,
}

/// The longest a policy's timings may be (the API states them in its document too).
pub const MAX_MONITOR: Duration = Duration::from_secs(3600);
pub const MAX_READY_DEADLINE: Duration = Duration::from_secs(3600);
pub const MAX_PROGRESS_DEADLINE: Duration = Duration::from_secs(86_400);
pub const MAX_DEREGISTER_DELAY: Duration = Duration::from_secs(300);

impl Default for UpdatePolicy {
    fn default() -> Self {
        Self {
            parallelism: 1,
            max_surge: 1,
            max_unavailable: 0,
            order: UpdateOrder::StartFirst,
            monitor: Duration::from_secs(5),
            failure_action: FailureAction::Rollback,
            max_failure_permille: 0,
            progress_deadline: Duration::from_secs(600),
            ready_deadline: Duration::from_secs(60),
        }
    }
}

impl UpdatePolicy {
    /// The default way back: as an update, but a rollback that fails pauses (rolling back a
    /// rollback would go round in circles).
    pub fn rollback_default() -> Self {
        Self { failure_action: FailureAction::Pause, ..Self::default() }
    }

    /// Checks the policy, naming a bad field under `prefix` (`update.max_surge`).
    pub fn check(&self, prefix: &str) -> Result<()> {
        let field = |name: &str| format!("{prefix}.{name}");
        if self.order == UpdateOrder::StartFirst && self.max_surge == 0 && self.max_unavailable == 0 {
            return Err(Error::invalid(
                field("max_unavailable"),
                "max_surge and max_unavailable cannot both be 0 with start-first: no replica could be replaced",
            ));
        }
        if self.max_failure_permille > 1000 {
            return Err(Error::invalid(field("max_failure_ratio"), "must be between 0 and 1"));
        }
        if self.monitor > MAX_MONITOR {
            return Err(Error::invalid(field("monitor"), "must be at most 1h"));
        }
        if self.ready_deadline.is_zero() || self.ready_deadline > MAX_READY_DEADLINE {
            return Err(Error::invalid(field("ready_deadline"), "must be between 1ms and 1h"));
        }
        if self.progress_deadline < self.monitor || self.progress_deadline > MAX_PROGRESS_DEADLINE {
            return Err(Error::invalid(field("progress_deadline"), "must be at least monitor and at most 24h"));
        }
        Ok(())
    }

    /// Surge and unavailability as the rollout uses them: stop-first never surges, and takes
    /// at least one replica down at a time.
    pub fn bounds(&self) -> (u32, u32) {
        match self.order {
            UpdateOrder::StartFirst => (self.max_surge, self.max_unavailable),
            UpdateOrder::StopFirst => (0, self.max_unavailable.max(1)),
        }
    }

    /// The failure share as the API shows it (0.25).
    pub fn max_failure_ratio(&self) -> f64 {
        f64::from(self.max_failure_permille) / 1000.0
    }

    /// Whether `failed` of `started` new replicas is more than the policy allows.
    pub fn too_many_failures(&self, failed: u32, started: u32) -> bool {
        failed > 0 && u64::from(failed) * 1000 > u64::from(self.max_failure_permille) * u64::from(started.max(1))
    }
}

/// How a deployment is updated and rolled back, and how long a replica about to stop stays out
/// of the endpoints first. Part of the spec, not of the template: changing it starts nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployPolicy {
    pub update: UpdatePolicy,
    pub rollback: UpdatePolicy,
    /// A replica about to be stopped leaves the endpoints this long before its SIGTERM.
    pub deregister_delay: Duration,
}

impl Default for DeployPolicy {
    fn default() -> Self {
        Self {
            update: UpdatePolicy::default(),
            rollback: UpdatePolicy::rollback_default(),
            deregister_delay: Duration::from_secs(2),
        }
    }
}

impl DeployPolicy {
    pub fn check(&self) -> Result<()> {
        self.update.check("update")?;
        self.rollback.check("rollback")?;
        if self.deregister_delay > MAX_DEREGISTER_DELAY {
            return Err(Error::invalid("deregister_delay", "must be at most 5m"));
        }
        Ok(())
    }
}

/// A rollout's number, unique in the store.
pub type RolloutId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    InProgress,
    Paused,
    Succeeded,
    Failed,
    RolledBack,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::InProgress => "in_progress",
            RolloutState::Paused => "paused",
            RolloutState::Succeeded => "succeeded",
            RolloutState::Failed => "failed",
            RolloutState::RolledBack => "rolled_back",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::InProgress, Self::Paused, Self::Succeeded, Self::Failed, Self::RolledBack]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Still under way (in progress or paused): a deployment has at most one such rollout.
    pub fn is_active(self) -> bool {
        matches!(self, RolloutState::InProgress | RolloutState::Paused)
    }
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One move of a deployment's replicas to a revision, as it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub id: RolloutId,
    pub deployment: DeploymentName,
    /// The revision the deployment ran when it started.
    pub from_revision: u64,
    pub to_revision: u64,
    /// Set for a rollback: the earlier revision whose template `to_revision` restores.
    pub restores: Option<u64>,
    pub state: RolloutState,
    /// Why it is paused, failed or rolled back (or what it waits on), in words.
    pub reason: Option<String>,
    /// Replicas running the new revision.
    pub updated: u32,
    /// Of those, ready for the policy's `monitor`.
    pub healthy: u32,
    /// New replicas that failed (exited, unhealthy, not ready by their deadline, not started).
    pub failed: u32,
    pub started_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    /// The policy it runs with: the deployment's update policy, or its rollback policy.
    pub policy: UpdatePolicy,
    /// When the new image was on every node the rollout may use: no old replica stops
    /// before (pull before stop). `None` while the pulls are under way.
    pub pulled_at: Option<SystemTime>,
}

/// What a rollout step saw, for the record (a `rollout.progressed` event when it changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RolloutProgress {
    pub updated: u32,
    pub healthy: u32,
}

/// What one action of a planned rollout does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannedKind {
    Start,
    Stop,
}

impl PlannedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PlannedKind::Start => "start",
            PlannedKind::Stop => "stop",
        }
    }
}

/// One action of a rollout as a dry run plans it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAction {
    /// Actions of one step happen together; steps follow each other, each after the new
    /// replicas before it are ready for `monitor`.
    pub step: u32,
    pub kind: PlannedKind,
    pub node: crate::name::NodeName,
    /// The replica stopped (a start makes a new one).
    pub replica: Option<crate::replica::ReplicaId>,
    pub revision: u64,
    /// Why, where it is not the plain rule (a stop before its replacement can start).
    pub why: Option<String>,
}

/// A rollout as it would go if every new replica started and became ready at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutPlan {
    pub from_revision: u64,
    pub to_revision: u64,
    pub policy: UpdatePolicy,
    pub actions: Vec<PlannedAction>,
    /// Set when the plan cannot finish: why (no node fits, say).
    pub stuck: Option<String>,
}

/// How a rollout under way ends when a change makes `revision` from a new template: rolled back
/// by a rollback (its cause the reason), otherwise failed, superseded.
pub fn ended_by(change: &crate::deployment::Change, revision: u64) -> (RolloutState, String) {
    match (change.restores, &change.cause) {
        (Some(_), Some(cause)) => (RolloutState::RolledBack, cause.clone()),
        (Some(to), None) => {
            (RolloutState::RolledBack, format!("rolled back to revision {to} (as revision {revision})"))
        }
        (None, _) => (RolloutState::Failed, format!("superseded by revision {revision}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_that_could_replace_nothing_is_refused_by_its_field() {
        let stuck = UpdatePolicy { max_surge: 0, max_unavailable: 0, ..UpdatePolicy::default() };
        match stuck.check("update") {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "update.max_unavailable"),
            other => panic!("expected invalid, got {other:?}"),
        }
        let stop_first = UpdatePolicy { order: UpdateOrder::StopFirst, ..stuck };
        assert!(stop_first.check("update").is_ok(), "stop-first takes one down at a time");
        assert_eq!(stop_first.bounds(), (0, 1));
        assert!(DeployPolicy::default().check().is_ok());
    }

    #[test]
    fn the_failure_ratio_counts_exactly() {
        let none = UpdatePolicy::default();
        assert!(!none.too_many_failures(0, 0));
        assert!(none.too_many_failures(1, 10));
        let quarter = UpdatePolicy { max_failure_permille: 250, ..none };
        assert!(!quarter.too_many_failures(1, 4));
        assert!(quarter.too_many_failures(2, 4));
        assert!(quarter.too_many_failures(1, 1));
    }
}
