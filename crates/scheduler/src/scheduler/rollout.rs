//! The executor half of a rollout: takes the step `rollout_step` decides, records what it saw,
//! and ends the rollout when the step says so (succeeded; or failed, then rolled back, paused
//! or left failed as the policy says). Runs inside a converge, under the deployment's lock.

use std::borrow::Cow;
use std::time::SystemTime;

use orchestrator_core::error::Kind;
use orchestrator_core::{
    Change, Deployment, DeploymentSpec, Error, FailureAction, ReplicaFilter, Result, Rollout, RolloutState,
};
use tracing::{info, warn};

use super::images::PullAhead;
use super::{Converged, Scheduler};
use crate::planner::{Plan, Serving};
use crate::rollout_step::{self, Outcome};

const ACTIVE: [RolloutState; 2] = [RolloutState::InProgress, RolloutState::Paused];

/// Steps per converge: one that stops replicas is followed by one that places on the room it
/// freed, without waiting for the next pass.
const STEPS_PER_CONVERGE: usize = 3;

impl Scheduler {
    /// Converges a deployment with a rollout under way: its next steps. `None` when the
    /// rollout has ended (or is gone) and a plain converge should follow.
    pub(super) async fn step_rollout(&self, deployment: &Deployment, rollout: Rollout) -> Result<Option<Converged>> {
        let mut report = Converged::default();
        let mut deployment = Cow::Borrowed(deployment);
        if rollout.pulled_at.is_none() && rollout.state == RolloutState::InProgress {
            // Pull before stop: nothing of the rollout starts or stops before its image is on
            // every node it may use (a leader taking over mid-pull pulls again: cheap, the
            // engines that have it say so).
            let nodes = self.nodes_for(&deployment).await?;
            match self.pull_ahead(deployment.to_mut(), &rollout, &nodes).await? {
                PullAhead::Done => match self.store.mark_rollout_pulled(rollout.id).await {
                    Ok(_) => info!(rollout = rollout.id, "image on every node; rolling"),
                    Err(Error::Conflict(_)) => return Ok(Some(report)),
                    Err(e) => return Err(e),
                },
                PullAhead::Failed(why) => {
                    self.fail_rollout(&deployment, &rollout, why).await?;
                    return Ok(Some(report));
                }
            }
        }
        let deployment = deployment.as_ref();
        for _ in 0..STEPS_PER_CONVERGE {
            let nodes = self.nodes_for(deployment).await?;
            let replicas = self.store.list_replicas(ReplicaFilter::deployment(&deployment.name).active()).await?;
            let serving = Serving::of(replicas, &nodes);
            let now = SystemTime::now();
            let step = rollout_step::step(self.config.strategy, deployment, &rollout, &serving, &nodes, now);
            for (id, why) in &step.failed {
                warn!(replica = %id, why = %why, "a new replica failed");
                self.store.count_rollout_failure(&deployment.name, deployment.revision, why).await?;
            }
            match step.outcome {
                Some(Outcome::Succeeded) => {
                    self.store.set_rollout_state(rollout.id, &ACTIVE, RolloutState::Succeeded, None).await?;
                    info!(rollout = rollout.id, revision = deployment.revision, "rollout succeeded");
                    return Ok(None);
                }
                Some(Outcome::Failed(why)) => {
                    self.fail_rollout(deployment, &rollout, why).await?;
                    return Ok(Some(report));
                }
                None => {}
            }
            match self.store.record_rollout_progress(rollout.id, step.progress, step.waiting_on.clone()).await {
                Ok(_) => {}
                // Ended meanwhile (a rollback or a new template through the API): the next
                // converge sees what replaced it.
                Err(Error::Conflict(_)) => return Ok(Some(report)),
                Err(e) => return Err(e),
            }
            if !step.remove.is_empty() {
                let wanted = step.remove.len();
                let removed = self.remove_all(&nodes, step.remove, deployment.spec.policy.deregister_delay).await;
                report.removed += removed;
                if removed < wanted {
                    break;
                }
                continue;
            }
            let placed = if step.place.is_empty() {
                Vec::new()
            } else {
                let _placing = self.placer.turn.lock().await;
                self.record_placements(deployment, step.place).await?
            };
            let plan = Plan {
                restart: step.restart,
                place: Vec::new(),
                unplaced: step.unplaced,
                unplaced_reason: step.unplaced_reason,
                remove: Vec::new(),
            };
            let done = self.execute(deployment, &nodes, plan, placed).await?;
            report.started += done.started;
            report.failed += done.failed;
            report.unplaced = done.unplaced;
            // Waiting on the clock: the next step when it ends, not at the next pass.
            let waiting = step.next_look.and_then(|t| t.duration_since(SystemTime::now()).ok());
            // Those it just started are ready at the earliest a monitor period from now.
            let started = (done.started > 0).then_some(rollout.policy.monitor);
            report.look_again =
                waiting.into_iter().chain(started).min().map(|d| d + std::time::Duration::from_millis(20));
            break;
        }
        Ok(Some(report))
    }

    /// Ends a failed rollout as its policy says: back to the last revision that succeeded (a
    /// new revision restoring it, with the rollback policy), paused, or failed.
    async fn fail_rollout(&self, deployment: &Deployment, rollout: &Rollout, why: String) -> Result<()> {
        warn!(rollout = rollout.id, why = %why, "rollout failed");
        let action = match rollout.policy.failure_action {
            // A rollback that fails stops: rolling it back would go round in circles.
            FailureAction::Rollback if rollout.restores.is_some() => FailureAction::Pause,
            action => action,
        };
        if action == FailureAction::Pause {
            if rollout.state == RolloutState::InProgress {
                let paused = format!("{why}; paused");
                self.store
                    .set_rollout_state(rollout.id, &[RolloutState::InProgress], RolloutState::Paused, Some(paused))
                    .await?;
            }
            return Ok(());
        }
        if action == FailureAction::Rollback {
            match self.last_good_revision(deployment).await? {
                Some((number, template)) => {
                    let spec = DeploymentSpec { template, ..deployment.spec.clone() };
                    let change = Change {
                        by: None,
                        cause: Some(format!("{why}; rolled back to revision {number}")),
                        restores: Some(number),
                    };
                    return match self.store.update_deployment(&deployment.name, spec, deployment.version, change).await
                    {
                        Ok(back) => {
                            info!(restores = number, revision = back.revision, "rolling back");
                            Ok(())
                        }
                        // Changed meanwhile: the next converge decides again on what is there.
                        Err(Error::Conflict(_)) => Ok(()),
                        Err(e) => Err(e),
                    };
                }
                None => {
                    let failed = format!("{why}; no earlier revision that succeeded is kept to roll back to");
                    self.store.set_rollout_state(rollout.id, &ACTIVE, RolloutState::Failed, Some(failed)).await?;
                    return Ok(());
                }
            }
        }
        self.store.set_rollout_state(rollout.id, &ACTIVE, RolloutState::Failed, Some(why)).await?;
        Ok(())
    }

    /// The revision to roll back to: the target of the newest rollout that succeeded, or the
    /// one the deployment was created with; with its template, if still kept.
    async fn last_good_revision(
        &self,
        deployment: &Deployment,
    ) -> Result<Option<(u64, orchestrator_core::ContainerTemplate)>> {
        let rollouts = self.store.list_rollouts(&deployment.name).await?;
        let good = rollouts.iter().find(|r| r.state == RolloutState::Succeeded).map_or(1, |r| r.to_revision);
        if good == deployment.revision {
            return Ok(None);
        }
        let revisions = match self.store.list_revisions(&deployment.name).await {
            Ok(r) => r,
            Err(Error::NotFound { kind: Kind::Deployment, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(revisions.into_iter().find(|r| r.number == good).map(|r| (good, r.template)))
    }
}
