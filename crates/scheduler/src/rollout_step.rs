//! One step of a rollout, decided from the state alone: the rollout's half of the planner
//! (pure, no I/O; the clock comes in as `now`). The executor in `scheduler::rollout` carries a
//! step out and asks for the next one on a later pass, so a rollout is level-triggered: any
//! leader, reading the same state, takes the same step.
//!
//! Two populations: replicas of the deployment's current revision ("new") and the rest
//! ("old", whatever revision they run, so a superseded rollout never leaves three kinds to
//! juggle). Rules:
//! - never more than `replicas + surge` replicas, never fewer than `replicas - unavailable`
//!   ready ones, where ready old replicas and new ones ready for `monitor` count;
//! - at most `parallelism` replicas being replaced at once;
//! - old replicas that are not ready go first (they serve nobody); then those on draining
//!   nodes; then from the nodes running the most;
//! - a step that removes does not place: the room it frees is seen by the next step;
//! - where start-first finds no node for a new replica (its port or `max_per_node` is held
//!   by the old ones everywhere) and nothing else is in flight, one old replica stops first,
//!   `max_unavailable` raised to 1 if it was 0, and the step says so. Never a deadlock.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use orchestrator_core::{
    Deployment, FailureAction, Health, Node, NodeName, Replica, ReplicaId, ReplicaState, Rollout, RolloutProgress,
    RolloutState,
};

use crate::placement::Strategy;
use crate::planner::{self, Serving};

/// How a rollout ends, when a step finds it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
}

/// One step's decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Pending replicas of the new revision to start again.
    pub restart: Vec<Replica>,
    /// Replicas to stop now, most wanted first.
    pub remove: Vec<Replica>,
    /// New replicas that failed this step (not ready by their deadline), with why: removed
    /// (they are in `remove`) and counted against the rollout.
    pub failed: Vec<(ReplicaId, String)>,
    /// Nodes for new replicas; empty whenever `remove` is not.
    pub place: Vec<NodeName>,
    pub unplaced: u32,
    pub unplaced_reason: Option<String>,
    pub progress: RolloutProgress,
    /// What the rollout waits on, in words.
    pub waiting_on: Option<String>,
    pub outcome: Option<Outcome>,
    /// When the clock alone changes what the next step decides (a monitor period or a
    /// deadline ends), if nothing else does first.
    pub next_look: Option<SystemTime>,
}

/// Whether an old replica serves, or may soon: running, not failing its check and not on its
/// way out. One whose check is still starting counts (the store learns a verdict a pass after
/// the engine does: treating it as gone would stop replicas that serve); only what surely
/// serves nobody (pending, unhealthy, leaving) goes first, outside the bounds.
fn old_ready(r: &Replica) -> bool {
    r.state == ReplicaState::Running && r.deregistered_at.is_none() && r.health != Some(Health::Unhealthy)
}

/// A duration as the API takes it: `5s`, `1m30s`, `250ms`.
fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// The next step of `rollout` for `deployment` (at its current revision and replica count).
pub fn step(
    strategy: Strategy,
    deployment: &Deployment,
    rollout: &Rollout,
    serving: &Serving,
    nodes: &BTreeMap<NodeName, Node>,
    now: SystemTime,
) -> Step {
    let required = deployment.spec.replicas as usize;
    let target = deployment.revision;
    let template = &deployment.spec.template;
    let policy = &rollout.policy;
    let mut step = Step::default();

    // A rollback's target runs the template of the revision it restores: replicas still at
    // that revision are already what it wants, and stay (no second canary phase, as in
    // hashicorp/nomad#10882).
    let current = |r: &Replica| r.revision == target || Some(r.revision) == rollout.restores;
    let (new, mut old): (Vec<&Replica>, Vec<&Replica>) = serving.online.iter().partition(|r| current(r));
    old.extend(serving.draining.iter());

    // A new replica that started but is not ready by its deadline has failed. The deadline
    // counts from its start, after any pull (hashicorp/nomad#3121): a pending replica is
    // bounded by the progress deadline only.
    let mut alive: Vec<&Replica> = Vec::with_capacity(new.len());
    for r in new {
        let late = template.ready_since(r).is_none()
            && r.started_at.and_then(|started| started.checked_add(policy.ready_deadline)).is_some_and(|d| d <= now);
        if late {
            let why = format!("replica {} on {} not ready within {}", r.id, r.node, secs(policy.ready_deadline));
            step.failed.push((r.id, why));
            step.remove.push(r.clone());
        } else {
            alive.push(r);
        }
    }
    let monitored: Vec<&Replica> = alive
        .iter()
        .copied()
        .filter(|r| {
            template.ready_since(r).and_then(|since| since.checked_add(policy.monitor)).is_some_and(|t| t <= now)
        })
        .collect();
    let mut looks: Vec<SystemTime> = alive
        .iter()
        .filter_map(|r| match template.ready_since(r) {
            Some(since) => since.checked_add(policy.monitor).filter(|t| *t > now),
            None => r.started_at.and_then(|s| s.checked_add(policy.ready_deadline)),
        })
        .collect();
    looks.extend(rollout.started_at.checked_add(policy.progress_deadline));
    step.next_look = looks.into_iter().min();
    step.progress = RolloutProgress {
        updated: u32::try_from(alive.len()).unwrap_or(u32::MAX),
        healthy: u32::try_from(monitored.len()).unwrap_or(u32::MAX),
    };
    step.restart = alive.iter().filter(|r| r.state == ReplicaState::Pending).map(|r| (*r).clone()).collect();

    let failures = rollout.failed + u32::try_from(step.failed.len()).unwrap_or(u32::MAX);
    let started = step.progress.updated + failures;
    if policy.failure_action != FailureAction::Continue && policy.too_many_failures(failures, started) {
        let last = step.failed.last().map(|(_, why)| why.clone()).or_else(|| rollout.reason.clone());
        let last = last.map(|w| format!(": {w}")).unwrap_or_default();
        let ratio = policy.max_failure_ratio();
        step.outcome = Some(Outcome::Failed(format!(
            "{failures} of {started} new replicas failed (max_failure_ratio {ratio}){last}"
        )));
        return step;
    }
    if rollout.started_at.checked_add(policy.progress_deadline).is_some_and(|deadline| deadline <= now) {
        let deadline = secs(policy.progress_deadline);
        step.outcome = Some(Outcome::Failed(format!("not done within its progress_deadline ({deadline})")));
        return step;
    }
    if old.is_empty() && monitored.len() >= required {
        step.outcome = Some(Outcome::Succeeded);
        return step;
    }

    let present: Vec<Replica> = alive.iter().map(|r| (*r).clone()).collect();
    let leaving: Vec<Replica> = old.iter().map(|r| (*r).clone()).collect();
    let total = alive.len() + old.len();
    if rollout.state == RolloutState::Paused {
        // Where it stopped, but whole: replicas lost meanwhile come back at the new revision.
        let missing = u32::try_from(required.saturating_sub(total)).unwrap_or(u32::MAX);
        place(&mut step, strategy, deployment, nodes, (&present, &leaving), missing);
        return step;
    }

    let (surge, unavailable) = policy.bounds();
    let floor = required.saturating_sub(unavailable as usize);
    let parallel = if policy.parallelism == 0 { usize::MAX } else { policy.parallelism as usize };
    let in_flight = alive.len() - monitored.len();

    // Old replicas in the order they go: those not ready, those on draining nodes, then by
    // spread (from the nodes running the most).
    let mut ordered: Vec<&Replica> = old.iter().copied().filter(|r| !old_ready(r)).collect();
    ordered.extend(serving.draining.iter().filter(|r| old_ready(r)));
    // By spread: from the nodes running the most of the deployment, old and new together (a
    // new replica placed beside an old one makes that old one go next), newest first.
    let mut here: HashMap<&NodeName, usize> = HashMap::new();
    for r in alive.iter().copied().chain(old.iter().copied()) {
        *here.entry(&r.node).or_default() += 1;
    }
    let mut by_spread: Vec<Replica> = serving.online.iter().filter(|r| !current(r) && old_ready(r)).cloned().collect();
    by_spread.sort_by_key(|r| {
        (std::cmp::Reverse(here.get(&r.node).copied().unwrap_or(0)), r.node.clone(), std::cmp::Reverse(r.id))
    });
    ordered.extend(by_spread.iter());

    let mut ready = old.iter().filter(|r| old_ready(r)).count() + monitored.len();
    // The late new replicas already in `remove` are not in `total`.
    let mut left = total;
    let mut stopping = Vec::new();
    for r in ordered {
        let serves = old_ready(r);
        if serves && monitored.len() < required {
            // Replacing, not yet done: within the floor and the parallelism.
            let open_after = required.saturating_sub(left - 1);
            if ready <= floor || in_flight + open_after > parallel {
                break;
            }
        }
        stopping.push(r.clone());
        left -= 1;
        if serves {
            ready -= 1;
        }
    }
    let stopping_count = stopping.len();
    step.remove.extend(stopping);
    if !step.remove.is_empty() {
        let old_revisions = if stopping_count > 0 { " of the old revision" } else { "" };
        step.waiting_on = Some(format!("stopping {} replica(s){old_revisions}", step.remove.len()));
        return step;
    }

    let wanted = required.saturating_sub(alive.len());
    let room = (required + surge as usize).saturating_sub(total).min(parallel.saturating_sub(in_flight));
    let count = u32::try_from(wanted.min(room)).unwrap_or(u32::MAX);
    place(&mut step, strategy, deployment, nodes, (&present, &leaving), count);

    if count > 0 && step.place.is_empty() && in_flight == 0 {
        // Start-first has nowhere to put a new copy: stop one old replica first.
        if let Some(victim) = by_spread.first() {
            let raised = if unavailable == 0 { " (max_unavailable raised to 1 for it)" } else { "" };
            let why = step.unplaced_reason.take().unwrap_or_else(|| "no room".into());
            step.waiting_on = Some(format!(
                "no node takes a new replica beside the old ones ({why}): stopping replica {} on {} first{raised}",
                victim.id, victim.node
            ));
            step.unplaced = 0;
            step.remove.push(victim.clone());
            return step;
        }
    }
    step.waiting_on = if !step.place.is_empty() {
        Some(format!("starting {} replica(s) of revision {target}", step.place.len()))
    } else if in_flight > 0 {
        Some(format!("waiting for {in_flight} new replica(s) to be ready for {}", secs(policy.monitor)))
    } else {
        step.unplaced_reason.clone()
    };
    step
}

fn place(
    step: &mut Step,
    strategy: Strategy,
    deployment: &Deployment,
    nodes: &BTreeMap<NodeName, Node>,
    (present, leaving): (&[Replica], &[Replica]),
    count: u32,
) {
    let (placed, unplaced, reason) = planner::place_more(strategy, deployment, nodes, present, leaving, count);
    step.place = placed;
    step.unplaced = unplaced;
    step.unplaced_reason = reason;
}

/// Steps a planned dry run takes at most (each one a monitor period of waiting, at least).
const PLAN_STEPS: u32 = 10_000;

/// The rollout of `deployment` (at the revision it would make, its replicas still at earlier
/// ones) as it would go if every new replica started and became ready at once: what a dry
/// run answers. Changes nothing.
pub fn simulate(
    strategy: Strategy,
    deployment: &Deployment,
    policy: orchestrator_core::UpdatePolicy,
    replicas: Vec<Replica>,
    mut nodes: BTreeMap<NodeName, Node>,
    now: SystemTime,
) -> orchestrator_core::RolloutPlan {
    use orchestrator_core::{PlannedAction, PlannedKind, RolloutPlan};
    let mut rollout = Rollout {
        id: 0,
        deployment: deployment.name.clone(),
        from_revision: deployment.revision.saturating_sub(1),
        to_revision: deployment.revision,
        restores: None,
        state: RolloutState::InProgress,
        reason: None,
        updated: 0,
        healthy: 0,
        failed: 0,
        started_at: now,
        finished_at: None,
        policy,
        pulled_at: Some(now),
    };
    // Time is not what a plan is about: no deadline passes in it.
    rollout.policy.progress_deadline = Duration::MAX / 4;
    let mut plan = RolloutPlan {
        from_revision: rollout.from_revision,
        to_revision: rollout.to_revision,
        policy,
        actions: Vec::new(),
        stuck: None,
    };
    let mut replicas: Vec<Replica> = replicas.into_iter().filter(|r| r.state.is_active()).collect();
    let mut next_id = replicas.iter().map(|r| r.id.0).max().unwrap_or(0);
    let mut at = now;
    let pace = policy.monitor.max(Duration::from_millis(1));
    for number in 1..=PLAN_STEPS {
        let serving = Serving::of(replicas.clone(), &nodes);
        let step = step(strategy, deployment, &rollout, &serving, &nodes, at);
        if step.outcome.is_some() {
            return plan;
        }
        let moved = !step.remove.is_empty() || !step.place.is_empty();
        let why = step.waiting_on.clone().filter(|w| w.starts_with("no node takes"));
        for r in &step.remove {
            plan.actions.push(PlannedAction {
                step: number,
                kind: PlannedKind::Stop,
                node: r.node.clone(),
                replica: Some(r.id),
                revision: r.revision,
                why: why.clone(),
            });
            if let Some(n) = nodes.get_mut(&r.node) {
                n.release(r.units, &r.claim);
            }
        }
        replicas.retain(|r| !step.remove.iter().any(|gone| gone.id == r.id));
        let claim = deployment.spec.template.claim();
        for node in &step.place {
            plan.actions.push(PlannedAction {
                step: number,
                kind: PlannedKind::Start,
                node: node.clone(),
                replica: None,
                revision: deployment.revision,
                why: None,
            });
            if let Some(n) = nodes.get_mut(node) {
                n.hold(deployment.spec.units, &claim);
            }
            next_id += 1;
            replicas.push(Replica {
                id: ReplicaId(next_id),
                deployment: deployment.name.clone(),
                node: node.clone(),
                units: deployment.spec.units,
                revision: deployment.revision,
                container_id: None,
                state: ReplicaState::Running,
                created_at: at,
                health: Some(Health::Healthy),
                claim: claim.clone(),
                started_at: Some(at),
                health_since: Some(at),
                deregistered_at: None,
            });
        }
        rollout.updated = step.progress.updated;
        if !moved && step.progress.updated == step.progress.healthy {
            // Nothing in flight and nothing it can do: it would wait here.
            plan.stuck = Some(step.waiting_on.unwrap_or_else(|| "nothing it can do".into()));
            return plan;
        }
        at += pace;
    }
    plan.stuck = Some(format!("not done within {PLAN_STEPS} steps"));
    plan
}

#[cfg(test)]
mod tests;
