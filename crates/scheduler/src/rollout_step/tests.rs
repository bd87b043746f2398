//! Rollouts stepped to their end on a simulated cluster: every state on the way is checked
//! against the bounds, and every run must end.

use std::time::{Duration, SystemTime};

use orchestrator_core::{
    DeploymentName, DeploymentSpec, EngineAddress, PortSpec, ReplicaId, UpdateOrder, UpdatePolicy,
};
use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

use super::*;

const MONITOR: Duration = Duration::from_secs(2);

struct Sim {
    deployment: Deployment,
    rollout: Rollout,
    nodes: BTreeMap<NodeName, Node>,
    replicas: Vec<Replica>,
    next_id: u64,
    now: SystemTime,
}

fn node(i: usize) -> Node {
    Node::online(NodeName::new(format!("n{i}")).unwrap(), EngineAddress::parse("http://127.0.0.1:2375").unwrap(), 100)
}

impl Sim {
    /// `replicas` of revision 1 spread over `nodes`, and a rollout to revision 2 just started.
    fn new(replicas: u32, nodes: usize, policy: UpdatePolicy, ports: Vec<PortSpec>) -> Sim {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut spec = DeploymentSpec::of("local/web:2", replicas).unwrap();
        spec.template.ports = ports;
        let deployment = Deployment {
            name: DeploymentName::new("web").unwrap(),
            spec,
            version: 2,
            revision: 2,
            created_at: now,
            updated_at: now,
            unplaced: None,
            crash_loop: None,
            rollout: Some(1),
            image_digest: None,
        };
        let rollout = Rollout {
            id: 1,
            deployment: deployment.name.clone(),
            from_revision: 1,
            to_revision: 2,
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
        let mut sim = Sim {
            nodes: (0..nodes).map(node).map(|n| (n.name.clone(), n)).collect(),
            deployment,
            rollout,
            replicas: Vec::new(),
            next_id: 0,
            now,
        };
        for i in 0..replicas as usize {
            let at = NodeName::new(format!("n{}", i % nodes)).unwrap();
            sim.add(at, 1, Some(now - Duration::from_secs(60)));
        }
        sim.refresh_nodes();
        sim
    }

    fn add(&mut self, node: NodeName, revision: u64, started_at: Option<SystemTime>) {
        self.next_id += 1;
        self.replicas.push(Replica {
            id: ReplicaId(self.next_id),
            deployment: self.deployment.name.clone(),
            node,
            units: 1,
            revision,
            container_id: Some(format!("c{}", self.next_id)),
            state: ReplicaState::Running,
            created_at: self.now,
            health: None,
            claim: self.deployment.spec.template.claim(),
            started_at,
            health_since: None,
            deregistered_at: None,
        });
    }

    /// The nodes' reservations as the store would keep them.
    fn refresh_nodes(&mut self) {
        for n in self.nodes.values_mut() {
            n.available = n.capacity;
            n.reserved.ports.clear();
        }
        for r in &self.replicas {
            let n = self.nodes.get_mut(&r.node).unwrap();
            n.available -= r.units;
            n.reserved.ports.extend(r.claim.ports.iter().copied());
        }
    }

    fn step(&self) -> Step {
        let serving = Serving::of(self.replicas.clone(), &self.nodes);
        step(Strategy::Spread, &self.deployment, &self.rollout, &serving, &self.nodes, self.now)
    }

    /// Carries a step out, every start succeeding and ready at once.
    fn apply(&mut self, step: &Step) {
        self.replicas.retain(|r| !step.remove.iter().any(|gone| gone.id == r.id));
        for n in &step.place {
            self.add(n.clone(), 2, Some(self.now));
        }
        self.refresh_nodes();
        self.rollout.updated = step.progress.updated;
        self.rollout.healthy = step.progress.healthy;
    }

    fn ready(&self) -> usize {
        self.replicas.iter().filter(|r| r.state == ReplicaState::Running).count()
    }

    /// Steps until the rollout ends, checking the bounds after each; the steps taken.
    fn run(&mut self) -> Result<Vec<Step>, String> {
        let (surge, unavailable) = self.rollout.policy.bounds();
        let required = self.deployment.spec.replicas as usize;
        let mut steps = Vec::new();
        for _ in 0..500 {
            let step = self.step();
            if step.outcome.is_some() {
                steps.push(step);
                return Ok(steps);
            }
            self.apply(&step);
            let raised = step.waiting_on.as_deref().is_some_and(|w| w.contains("stopping replica"));
            let floor = required.saturating_sub((unavailable as usize).max(usize::from(raised)));
            if self.replicas.len() > required + surge as usize {
                return Err(format!("{} replicas, more than {required} + {surge}", self.replicas.len()));
            }
            if self.ready() < floor {
                return Err(format!("{} ready, fewer than {floor}: {:?}", self.ready(), step.waiting_on));
            }
            steps.push(step);
            self.now += Duration::from_secs(1);
        }
        Err("did not end within 500 steps".into())
    }
}

/// A health check that never passes.
fn never_healthy() -> orchestrator_core::HealthCheck {
    orchestrator_core::HealthCheck::Command(orchestrator_core::HealthCommand {
        test: vec!["CMD".into(), "false".into()],
        interval: None,
        timeout: None,
        retries: None,
        start_period: None,
    })
}

fn policy(parallelism: u32, max_surge: u32, max_unavailable: u32, order: UpdateOrder) -> UpdatePolicy {
    UpdatePolicy { parallelism, max_surge, max_unavailable, order, monitor: MONITOR, ..UpdatePolicy::default() }
}

#[test]
fn the_default_starts_one_new_replica_waits_for_it_then_stops_one_old() {
    let mut sim = Sim::new(3, 3, policy(1, 1, 0, UpdateOrder::StartFirst), Vec::new());
    let first = sim.step();
    assert_eq!((first.place.len(), first.remove.len()), (1, 0));
    sim.apply(&first);
    sim.now += Duration::from_secs(1);
    let waiting = sim.step();
    assert!(waiting.place.is_empty() && waiting.remove.is_empty(), "the new one is not ready for monitor yet");
    assert_eq!(waiting.waiting_on.as_deref(), Some("waiting for 1 new replica(s) to be ready for 2s"));
    assert_eq!((waiting.progress.updated, waiting.progress.healthy), (1, 0));
    sim.now += MONITOR;
    let stop = sim.step();
    assert_eq!(stop.remove.len(), 1);
    assert_eq!(stop.remove[0].revision, 1, "an old one goes");
    assert!(stop.place.is_empty(), "a step that removes does not place");
    let steps = sim.run().unwrap();
    assert_eq!(steps.last().unwrap().outcome, Some(Outcome::Succeeded));
    assert!(sim.replicas.iter().all(|r| r.revision == 2) && sim.replicas.len() == 3);
}

#[test]
fn stop_first_takes_one_down_then_starts_its_replacement() {
    let mut sim = Sim::new(4, 2, policy(1, 1, 0, UpdateOrder::StopFirst), Vec::new());
    let first = sim.step();
    assert_eq!((first.remove.len(), first.place.len()), (1, 0));
    sim.apply(&first);
    let second = sim.step();
    assert_eq!((second.remove.len(), second.place.len()), (0, 1), "no surge: the replacement after");
    sim.apply(&second);
    assert_eq!(sim.replicas.len(), 4);
    sim.run().unwrap();
}

#[test]
fn a_fixed_port_on_every_node_falls_back_to_stopping_one_old_replica_first_and_says_so() {
    let ports = vec![PortSpec::tcp(8080, Some(18081))];
    let mut sim = Sim::new(3, 3, policy(1, 1, 0, UpdateOrder::StartFirst), ports);
    let first = sim.step();
    assert_eq!((first.remove.len(), first.place.len()), (1, 0));
    let why = first.waiting_on.clone().unwrap();
    assert!(why.contains("tcp/18081") && why.contains("max_unavailable raised to 1"), "{why}");
    let steps = sim.run().unwrap();
    assert_eq!(steps.last().unwrap().outcome, Some(Outcome::Succeeded));
    assert!(sim.replicas.iter().all(|r| r.revision == 2));
}

#[test]
fn a_new_replica_not_ready_by_its_deadline_fails_the_rollout_with_the_reason() {
    let mut sim = Sim::new(2, 2, policy(1, 1, 0, UpdateOrder::StartFirst), Vec::new());
    sim.deployment.spec.template.healthcheck = never_healthy();
    let first = sim.step();
    sim.apply(&first);
    sim.now += sim.rollout.policy.ready_deadline;
    let late = sim.step();
    assert_eq!(late.failed.len(), 1);
    match late.outcome {
        Some(Outcome::Failed(why)) => assert!(why.contains("not ready within 1m"), "{why}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    // Allowed failures: the replica goes and the rollout carries on.
    sim.rollout.policy.max_failure_permille = 1000;
    let tolerated = sim.step();
    assert_eq!((tolerated.outcome, tolerated.remove.len()), (None, 1));
}

#[test]
fn failures_counted_elsewhere_and_the_progress_deadline_end_it() {
    let mut sim = Sim::new(2, 2, policy(1, 1, 0, UpdateOrder::StartFirst), Vec::new());
    sim.rollout.failed = 1;
    sim.rollout.reason = Some("replica 7 on n1 unhealthy".into());
    match sim.step().outcome {
        Some(Outcome::Failed(why)) => assert!(why.ends_with("replica 7 on n1 unhealthy"), "{why}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    sim.rollout.policy.failure_action = FailureAction::Continue;
    assert_eq!(sim.step().outcome, None, "continue goes on");
    sim.now += sim.rollout.policy.progress_deadline;
    assert!(matches!(sim.step().outcome, Some(Outcome::Failed(why)) if why.contains("progress_deadline (10m)")));
}

#[test]
fn a_paused_rollout_stays_where_it_is_but_whole() {
    let mut sim = Sim::new(3, 3, policy(1, 1, 0, UpdateOrder::StartFirst), Vec::new());
    sim.rollout.state = RolloutState::Paused;
    let held = sim.step();
    assert!(held.place.is_empty() && held.remove.is_empty());
    sim.replicas.pop();
    sim.refresh_nodes();
    assert_eq!(sim.step().place.len(), 1, "a lost replica comes back, at the new revision");
}

proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    #[test]
    fn every_valid_policy_ends_within_its_bounds(
        replicas in 0u32..8,
        nodes in 1usize..5,
        parallelism in 0u32..4,
        surge in 0u32..3,
        unavailable in 0u32..3,
        stop_first in proptest::bool::ANY,
        fixed_port in proptest::bool::ANY,
    ) {
        let order = if stop_first { UpdateOrder::StopFirst } else { UpdateOrder::StartFirst };
        let policy = policy(parallelism, surge, unavailable, order);
        proptest::prop_assume!(policy.check("update").is_ok());
        // A fixed port fits one replica a node: no more replicas than nodes then.
        proptest::prop_assume!(!fixed_port || replicas as usize <= nodes);
        let ports = if fixed_port { vec![PortSpec::tcp(80, Some(18081))] } else { Vec::new() };
        let mut sim = Sim::new(replicas, nodes, policy, ports);
        let steps = sim.run();
        prop_assert!(steps.is_ok(), "{:?}", steps.err());
        prop_assert_eq!(steps.unwrap().last().unwrap().outcome.clone(), Some(Outcome::Succeeded));
        prop_assert!(sim.replicas.iter().all(|r| r.revision == 2));
        prop_assert_eq!(sim.replicas.len(), replicas as usize);
    }
}

#[test]
fn a_rollback_keeps_the_replicas_that_still_run_the_revision_it_restores() {
    let mut sim = Sim::new(3, 3, policy(1, 1, 0, UpdateOrder::StartFirst), Vec::new());
    // Revision 3 restores revision 1: the three replicas of revision 1 are what it wants.
    sim.deployment.revision = 3;
    sim.rollout.to_revision = 3;
    sim.rollout.restores = Some(1);
    sim.now += MONITOR;
    let step = sim.step();
    assert_eq!(step.outcome, Some(Outcome::Succeeded), "{step:?}");
}

#[test]
fn a_dry_run_plans_every_start_and_stop_in_order_and_changes_nothing() {
    let sim = Sim::new(3, 3, policy(1, 1, 0, UpdateOrder::StartFirst), vec![PortSpec::tcp(8080, Some(18081))]);
    let before = sim.replicas.clone();
    let plan = simulate(
        Strategy::Spread,
        &sim.deployment,
        sim.rollout.policy,
        sim.replicas.clone(),
        sim.nodes.clone(),
        sim.now,
    );
    assert_eq!(plan.stuck, None);
    let kinds: Vec<&str> = plan.actions.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["stop", "start", "stop", "start", "stop", "start"], "every node holds the port");
    assert!(plan.actions[0].why.as_deref().is_some_and(|w| w.contains("max_unavailable raised to 1")));
    assert_eq!(plan.actions[1].node, plan.actions[0].node, "the new copy goes where the port was freed");
    assert!(plan.actions.windows(2).all(|w| w[0].step <= w[1].step));
    assert_eq!(sim.replicas, before);

    // Room beside the old ones: start first, each stop after its replacement.
    let sim = Sim::new(2, 3, policy(1, 1, 0, UpdateOrder::StartFirst), Vec::new());
    let plan = simulate(
        Strategy::Spread,
        &sim.deployment,
        sim.rollout.policy,
        sim.replicas.clone(),
        sim.nodes.clone(),
        sim.now,
    );
    let kinds: Vec<&str> = plan.actions.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["start", "stop", "start", "stop"]);
    assert!(plan.actions.iter().all(|a| a.why.is_none()));
}

#[test]
fn a_rollout_keeps_the_spread_it_found() {
    let mut sim = Sim::new(6, 3, policy(1, 1, 0, UpdateOrder::StartFirst), Vec::new());
    sim.run().unwrap();
    let mut per_node: Vec<usize> =
        (0..3).map(|i| sim.replicas.iter().filter(|r| r.node.as_str() == format!("n{i}")).count()).collect();
    per_node.sort_unstable();
    assert_eq!(per_node, [2, 2, 2], "each new replica beside the old one it replaces");
}

#[test]
fn old_replicas_whose_check_is_still_starting_are_not_stopped_outside_the_bounds() {
    let mut sim = Sim::new(4, 3, policy(1, 1, 0, UpdateOrder::StartFirst), Vec::new());
    for r in &mut sim.replicas {
        r.health = Some(Health::Starting);
    }
    sim.replicas[0].health = Some(Health::Unhealthy);
    let first = sim.step();
    assert_eq!(first.remove.iter().map(|r| r.id).collect::<Vec<_>>(), [sim.replicas[0].id], "only the unhealthy one");
}

#[test]
fn new_replicas_all_late_with_no_old_ones_left_are_replaced_not_miscounted() {
    let mut sim = Sim::new(2, 2, policy(1, 1, 0, UpdateOrder::StartFirst), Vec::new());
    sim.rollout.policy.max_failure_permille = 1000;
    sim.deployment.spec.template.healthcheck = never_healthy();
    for r in &mut sim.replicas {
        r.revision = 2;
    }
    sim.now += sim.rollout.policy.ready_deadline + Duration::from_secs(60);
    let step = sim.step();
    assert_eq!((step.failed.len(), step.remove.len(), step.outcome.clone()), (2, 2, None), "{step:?}");
}
