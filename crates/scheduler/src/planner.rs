//! What converging a deployment takes, decided from the state alone: the planner half of
//! converge (the executor, in `scheduler::converge`, carries a plan out). Pure: no I/O, no
//! clock, deterministic, so its rules are property-tested here.
//!
//! Rules:
//! - only online nodes take replicas, never more units than a node has free;
//! - replicas on offline nodes count for nothing (the rebalancer marks them lost); those on
//!   draining nodes serve until enough run elsewhere, then go first;
//! - surplus replicas go from the nodes running the most of the deployment, then the fullest,
//!   newest first.

use std::collections::{BTreeMap, HashMap};

use orchestrator_core::workload::cpus_text;
use orchestrator_core::{Claim, Deployment, Node, NodeName, NodeStatus, Replica, ReplicaState};

use crate::placement::{self, Candidate, Strategy};

/// One converge's decisions. The executor starts `restart` and the placed replicas, then
/// removes from `remove`, in order, only as many as leave the required count serving after
/// the starts that succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Pending replicas to start again (a start that failed half-way, or a crash before it):
    /// the runtime's create is idempotent by name, so this never makes a second container.
    pub restart: Vec<Replica>,
    /// A node for each missing replica, in placement order.
    pub place: Vec<NodeName>,
    /// Missing replicas that found no room: the deployment stays degraded until room appears.
    pub unplaced: u32,
    /// Why, in words for operators, when `unplaced` is not 0.
    pub unplaced_reason: Option<String>,
    /// Replicas to remove, most wanted first: those on draining nodes, then the surplus.
    pub remove: Vec<Replica>,
}

/// The deployment's active replicas as they serve: on online nodes, and on draining ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Serving {
    pub online: Vec<Replica>,
    pub draining: Vec<Replica>,
}

impl Serving {
    pub fn of(replicas: impl IntoIterator<Item = Replica>, nodes: &BTreeMap<NodeName, Node>) -> Self {
        let mut serving = Serving::default();
        for r in replicas.into_iter().filter(|r| r.state.is_active()) {
            match nodes.get(&r.node).map(|n| n.status) {
                Some(NodeStatus::Online) => serving.online.push(r),
                Some(NodeStatus::Draining) => serving.draining.push(r),
                _ => {}
            }
        }
        serving
    }
}

/// Plans one converge of `deployment` from its serving replicas and the nodes.
pub fn plan(strategy: Strategy, deployment: &Deployment, serving: &Serving, nodes: &BTreeMap<NodeName, Node>) -> Plan {
    let required = deployment.spec.replicas as usize;
    // A pending replica of an older revision never starts: its container would run the
    // current template under the old revision's name. It goes, and counts for nothing.
    let (stale, healthy): (Vec<Replica>, Vec<Replica>) = serving.online.iter().cloned().partition(|r| {
        // One already out of the endpoints was on its way out when its converge stopped
        // (a leader that died in the delay): it goes on.
        (r.state == ReplicaState::Pending && r.revision != deployment.revision) || r.deregistered_at.is_some()
    });
    let healthy = &healthy;
    let restart: Vec<Replica> = healthy.iter().filter(|r| r.state == ReplicaState::Pending).cloned().collect();
    let missing = required.saturating_sub(healthy.len());
    let placed = if missing > 0 {
        let candidates = candidates(deployment, nodes, healthy);
        placement::place(strategy, &candidates, deployment.spec.units, missing as u32)
    } else {
        placement::Plan::default()
    };
    // Counted as if every start succeeds; the executor trims the removals if some fail.
    let serving_after = healthy.len() + placed.nodes.len() + serving.draining.len();
    let excess = serving_after.saturating_sub(required);
    let moving = excess.min(serving.draining.len());
    let mut remove: Vec<Replica> = stale;
    remove.extend(serving.draining.iter().take(moving).cloned());
    remove.extend(pick_surplus(healthy, nodes, excess - moving));
    let unplaced_reason = (placed.unplaced > 0).then(|| why_unplaced(deployment, nodes, healthy, &placed.nodes));
    Plan { restart, place: placed.nodes, unplaced: placed.unplaced, unplaced_reason, remove }
}

/// Nodes for `count` more replicas of `deployment` beside `present` (its replicas of every
/// revision, which hold their nodes' room and ports), how many found none, and why.
///
/// `leaving` (replicas on their way out, a rollout's old ones) count against `max_per_node`
/// but not for spread: a new replica goes beside an old one it will replace, so the spread
/// after the rollout is the spread before it.
pub fn place_more(
    strategy: Strategy,
    deployment: &Deployment,
    nodes: &BTreeMap<NodeName, Node>,
    present: &[Replica],
    leaving: &[Replica],
    count: u32,
) -> (Vec<NodeName>, u32, Option<String>) {
    if count == 0 {
        return (Vec::new(), 0, None);
    }
    let mut candidates = candidates(deployment, nodes, present);
    let mut old_here: HashMap<&NodeName, u32> = HashMap::new();
    for r in leaving {
        *old_here.entry(&r.node).or_default() += 1;
    }
    let limit = max_per_node(deployment);
    for c in &mut candidates {
        let old = old_here.get(&c.node).copied().unwrap_or(0);
        c.max_replicas = c.max_replicas.min(limit.saturating_sub(old));
    }
    let placed = placement::place(strategy, &candidates, deployment.spec.units, count);
    let everyone: Vec<Replica> = present.iter().chain(leaving).cloned().collect();
    let reason = (placed.unplaced > 0).then(|| why_unplaced(deployment, nodes, &everyone, &placed.nodes));
    (placed.nodes, placed.unplaced, reason)
}

/// Why missing replicas found no node: the first rule that leaves none once `placing` are
/// placed, in the order an operator would check them.
fn why_unplaced(
    deployment: &Deployment,
    nodes: &BTreeMap<NodeName, Node>,
    healthy: &[Replica],
    placing: &[NodeName],
) -> String {
    let template = &deployment.spec.template;
    let units = deployment.spec.units;
    let claim = template.claim();
    // The nodes as they will be once this plan's placements hold their share.
    let mut after: HashMap<&NodeName, Node> =
        nodes.values().filter(|n| n.is_schedulable()).map(|n| (&n.name, n.clone())).collect();
    let mut here: HashMap<&NodeName, usize> = HashMap::new();
    for r in healthy {
        *here.entry(&r.node).or_default() += 1;
    }
    for name in placing {
        *here.entry(name).or_default() += 1;
        if let Some(n) = after.get_mut(name) {
            n.hold(units, &claim);
        }
    }
    if after.is_empty() {
        return "no online node".into();
    }
    let admitted: Vec<&Node> = after.values().filter(|n| template.admits(n.name.as_str(), &n.labels)).collect();
    if admitted.is_empty() {
        let rules: Vec<String> = template.constraints.iter().map(ToString::to_string).collect();
        return format!("no online node meets the constraints ({})", rules.join(", "));
    }
    if !template.ports.is_empty() && admitted.iter().all(|n| n.reachable_host().is_none()) {
        return "no online node the constraints admit has a host its published ports are reached at (set public_host)"
            .into();
    }
    let cap = max_per_node(deployment) as usize;
    let open: Vec<&Node> = admitted
        .into_iter()
        .filter(|n| here.get(&n.name).copied().unwrap_or(0) < cap)
        .filter(|n| claim.ports.iter().all(|p| !n.reserved.ports.contains(p)))
        .collect();
    if open.is_empty() {
        if let Some(port) = claim.ports.first() {
            return format!("no online node has {port} free");
        }
        return format!("every node it may use runs max_per_node ({cap}) of it");
    }
    let with_units: Vec<&Node> = open.into_iter().filter(|n| n.available >= units).collect();
    if with_units.is_empty() {
        return format!("no online node has {units} free units");
    }
    let memory = Claim { memory_bytes: claim.memory_bytes, ..Claim::default() };
    if claim.memory_bytes > 0 && with_units.iter().all(|n| n.room_for(&memory) == 0) {
        return format!("no online node has {} of memory free", size_text(claim.memory_bytes));
    }
    let cpus = Claim { nano_cpus: claim.nano_cpus, ..Claim::default() };
    if claim.nano_cpus > 0 && with_units.iter().all(|n| n.room_for(&cpus) == 0) {
        return format!("no online node has {} CPUs free", cpus_text(claim.nano_cpus));
    }
    "no online node has room for all of them at once".into()
}

/// A size in bytes as an operator reads it: `64MiB`, `1.5GiB`, `512B`.
fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{}{}", text.trim_end_matches(".0"), UNITS[unit])
}

/// One move that evens out a deployment's spread over online nodes (moby#24103: Swarm never
/// moves tasks back onto a returning node): a replica from the node running the most to the
/// one running the fewest (that has room), if they differ by more than one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub replica: Replica,
    pub to: NodeName,
}

pub fn spread_move(deployment: &Deployment, replicas: &[Replica], nodes: &BTreeMap<NodeName, Node>) -> Option<Move> {
    let mut per_node: BTreeMap<&NodeName, Vec<&Replica>> =
        nodes.values().filter(|n| n.is_schedulable() && admits(deployment, n)).map(|n| (&n.name, Vec::new())).collect();
    let running = replicas.iter().filter(|r| r.state == ReplicaState::Running);
    for r in running {
        if let Some(here) = per_node.get_mut(&r.node) {
            here.push(r);
        }
    }
    let max_replicas = max_per_node(deployment) as usize;
    let claim = deployment.spec.template.claim();
    let (_, most) = per_node.iter().max_by_key(|(n, rs)| (rs.len(), std::cmp::Reverse(*n)))?;
    let (to, fewest) = per_node
        .iter()
        .filter(|(n, rs)| {
            let node = &nodes[**n];
            node.available >= deployment.spec.units && rs.len() < max_replicas && node.room_for(&claim) > 0
        })
        .min_by_key(|(n, rs)| (rs.len(), std::cmp::Reverse(nodes[**n].available), *n))?;
    if most.len() <= fewest.len() + 1 {
        return None;
    }
    let replica = (*most.iter().max_by_key(|r| r.id)?).clone();
    Some(Move { replica, to: (*to).clone() })
}

/// The most replicas of `deployment` one node may run: its `max_per_node`, and one when it
/// publishes a fixed host port (two would ask the node for the same port).
pub fn max_per_node(deployment: &Deployment) -> u32 {
    let template = &deployment.spec.template;
    let fixed_port = template.published_ports().next().is_some();
    let limit = template.max_per_node.unwrap_or(u32::MAX);
    if fixed_port { limit.min(1) } else { limit }
}

/// Whether `deployment` may run on `node`: its constraints admit the node, and a template that
/// publishes ports needs a host they can be reached at (a unix-socket node needs `public_host`).
pub fn admits(deployment: &Deployment, node: &Node) -> bool {
    let template = &deployment.spec.template;
    template.admits(node.name.as_str(), &node.labels) && (template.ports.is_empty() || node.reachable_host().is_some())
}

/// The schedulable nodes the deployment's constraints admit, as placement sees them, with how
/// many of `healthy` each runs.
fn candidates(deployment: &Deployment, nodes: &BTreeMap<NodeName, Node>, healthy: &[Replica]) -> Vec<Candidate> {
    let mut here: HashMap<&NodeName, u32> = HashMap::new();
    for r in healthy {
        *here.entry(&r.node).or_default() += 1;
    }
    let max_replicas = max_per_node(deployment);
    let claim = deployment.spec.template.claim();
    nodes
        .values()
        .filter(|n| n.is_schedulable() && admits(deployment, n))
        .map(|n| {
            let replicas = here.get(&n.name).copied().unwrap_or(0);
            // Memory, CPUs and ports left bound how many more this node takes.
            let room = if claim.is_empty() { u32::MAX } else { n.room_for(&claim) };
            Candidate {
                node: n.name.clone(),
                available: n.available,
                replicas,
                max_replicas: max_replicas.min(replicas.saturating_add(room)),
            }
        })
        .collect()
}

/// Which `count` replicas to remove when scaling down: from the nodes running the most
/// replicas of the deployment, then the fullest nodes, newest replica first.
pub(crate) fn pick_surplus(healthy: &[Replica], nodes: &BTreeMap<NodeName, Node>, count: usize) -> Vec<Replica> {
    let mut per_node: BTreeMap<&NodeName, Vec<&Replica>> = BTreeMap::new();
    for r in healthy {
        per_node.entry(&r.node).or_default().push(r);
    }
    for list in per_node.values_mut() {
        list.sort_by_key(|r| r.id);
    }
    let mut picked = Vec::with_capacity(count);
    while picked.len() < count {
        let Some((node, _)) = per_node
            .iter()
            .filter(|(_, list)| !list.is_empty())
            .max_by(|(a, la), (b, lb)| {
                let free = |n: &NodeName| nodes.get(n).map_or(0, |n| n.available);
                la.len().cmp(&lb.len()).then_with(|| free(b).cmp(&free(a))).then_with(|| b.cmp(a))
            })
            .map(|(n, l)| (*n, l.len()))
        else {
            break;
        };
        let replica = per_node.get_mut(node).and_then(Vec::pop).expect("picked a non-empty node");
        picked.push(replica.clone());
    }
    picked
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::time::SystemTime;

    use orchestrator_core::{DeploymentName, DeploymentSpec, EngineAddress, ReplicaId};
    use proptest::prelude::{any, prop, prop_assert, prop_assert_eq, proptest};
    use proptest::strategy::Strategy as _;

    use super::*;

    fn deployment(replicas: u32, units: u32) -> Deployment {
        Deployment {
            name: DeploymentName::new("web").unwrap(),
            spec: DeploymentSpec::of("local/web:1", replicas).unwrap().with_units(units),
            version: 1,
            revision: 1,
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
            unplaced: None,
            crash_loop: None,
            rollout: None,
            image_digest: None,
        }
    }

    fn node(i: usize, status: NodeStatus, available: u32) -> Node {
        Node {
            name: NodeName::new(format!("n{i}")).unwrap(),
            address: EngineAddress::parse("http://127.0.0.1:2375").unwrap(),
            capacity: 100,
            available,
            status,
            last_heartbeat: None,
            labels: Default::default(),
            public_host: None,
            engine: None,
            reserved: Default::default(),
        }
    }

    fn replica(id: u64, node: usize, state: ReplicaState) -> Replica {
        Replica {
            id: ReplicaId(id),
            deployment: DeploymentName::new("web").unwrap(),
            node: NodeName::new(format!("n{node}")).unwrap(),
            units: 1,
            revision: 1,
            container_id: None,
            state,
            created_at: SystemTime::UNIX_EPOCH,
            health: None,
            claim: Default::default(),
            started_at: None,
            health_since: None,
            deregistered_at: None,
        }
    }

    /// Up to 8 nodes of every status, and up to 30 replicas (some pending, some lost) on them.
    fn arb_cluster() -> impl proptest::strategy::Strategy<Value = (BTreeMap<NodeName, Node>, Vec<Replica>)> {
        let status = prop::sample::select(vec![
            NodeStatus::Online,
            NodeStatus::Online,
            NodeStatus::Draining,
            NodeStatus::Offline,
        ]);
        let state = prop::sample::select(vec![
            ReplicaState::Running,
            ReplicaState::Running,
            ReplicaState::Pending,
            ReplicaState::Lost,
        ]);
        (prop::collection::vec((status, 0u32..12), 1..8), prop::collection::vec((0usize..8, state), 0..30)).prop_map(
            |(nodes, replicas)| {
                let nodes: BTreeMap<NodeName, Node> = nodes
                    .into_iter()
                    .enumerate()
                    .map(|(i, (status, available))| {
                        let n = node(i, status, available);
                        (n.name.clone(), n)
                    })
                    .collect();
                let count = nodes.len();
                let replicas = replicas
                    .into_iter()
                    .enumerate()
                    .map(|(id, (n, state))| replica(id as u64, n % count, state))
                    .collect();
                (nodes, replicas)
            },
        )
    }

    fn per_node(replicas: &[Replica]) -> BTreeMap<NodeName, usize> {
        let mut counts = BTreeMap::new();
        for r in replicas {
            *counts.entry(r.node.clone()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn a_draining_node_is_emptied_once_its_replicas_run_elsewhere() {
        let nodes: BTreeMap<NodeName, Node> = [node(0, NodeStatus::Draining, 10), node(1, NodeStatus::Online, 10)]
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();
        let replicas = vec![replica(1, 0, ReplicaState::Running), replica(2, 0, ReplicaState::Running)];
        let plan = plan(Strategy::Spread, &deployment(2, 1), &Serving::of(replicas.clone(), &nodes), &nodes);
        assert_eq!(plan.place.iter().map(NodeName::as_str).collect::<Vec<_>>(), ["n1", "n1"]);
        assert_eq!(plan.remove, replicas, "both go, once their replacements are counted");
    }

    #[test]
    fn a_spread_move_goes_from_the_busiest_node_to_the_emptiest_and_stops_within_one() {
        let nodes: BTreeMap<NodeName, Node> =
            (0..2).map(|i| node(i, NodeStatus::Online, 10)).map(|n| (n.name.clone(), n)).collect();
        let three_on_one: Vec<Replica> = (1..=3).map(|id| replica(id, 0, ReplicaState::Running)).collect();
        let mv = spread_move(&deployment(3, 1), &three_on_one, &nodes).unwrap();
        assert_eq!((mv.replica.id, mv.to.as_str()), (ReplicaId(3), "n1"), "the newest moves");
        let two_and_one = vec![
            replica(1, 0, ReplicaState::Running),
            replica(2, 0, ReplicaState::Running),
            replica(3, 1, ReplicaState::Running),
        ];
        assert_eq!(spread_move(&deployment(3, 1), &two_and_one, &nodes), None);
    }

    proptest! {
        #[test]
        fn places_only_on_online_nodes_within_their_free_units(
            (nodes, replicas) in arb_cluster(), required in 0u32..40, units in 1u32..4, binpack in any::<bool>()
        ) {
            let strategy = if binpack { Strategy::Binpack } else { Strategy::Spread };
            let d = deployment(required, units);
            let plan = plan(strategy, &d, &Serving::of(replicas, &nodes), &nodes);
            let mut placed: BTreeMap<&NodeName, u32> = BTreeMap::new();
            for n in &plan.place {
                *placed.entry(n).or_default() += 1;
            }
            for (n, count) in placed {
                prop_assert_eq!(nodes[n].status, NodeStatus::Online, "placed on {}", n);
                prop_assert!(count * units <= nodes[n].available, "{} over capacity", n);
            }
        }

        #[test]
        fn leaves_exactly_the_required_count_serving_or_all_it_can(
            (nodes, replicas) in arb_cluster(), required in 0u32..40, units in 1u32..4
        ) {
            let d = deployment(required, units);
            let serving = Serving::of(replicas, &nodes);
            let plan = plan(Strategy::Spread, &d, &serving, &nodes);
            let total = serving.online.len() + plan.place.len() + serving.draining.len();
            prop_assert_eq!(total - plan.remove.len(), total.min(required as usize));
            let room: u32 = nodes.values().filter(|n| n.status == NodeStatus::Online).map(|n| n.available / units).sum();
            let missing = (required as usize).saturating_sub(serving.online.len()) as u32;
            prop_assert_eq!(plan.unplaced, missing.saturating_sub(room));
        }

        #[test]
        fn touches_only_serving_replicas_draining_ones_first(
            (nodes, replicas) in arb_cluster(), required in 0u32..40
        ) {
            let serving = Serving::of(replicas.clone(), &nodes);
            let plan = plan(Strategy::Spread, &deployment(required, 1), &serving, &nodes);
            let status = |r: &Replica| nodes[&r.node].status;
            let ids: HashSet<ReplicaId> = plan.remove.iter().map(|r| r.id).collect();
            prop_assert_eq!(ids.len(), plan.remove.len(), "a replica removed twice");
            for r in plan.remove.iter().chain(&plan.restart) {
                prop_assert!(r.state.is_active() && status(r) != NodeStatus::Offline, "{:?} is not serving", r);
            }
            prop_assert!(plan.restart.iter().all(|r| r.state == ReplicaState::Pending && status(r) == NodeStatus::Online));
            let first_online = plan.remove.iter().position(|r| status(r) == NodeStatus::Online).unwrap_or(plan.remove.len());
            prop_assert!(plan.remove[first_online..].iter().all(|r| status(r) == NodeStatus::Online), "draining after online");
            if first_online < plan.remove.len() {
                prop_assert_eq!(first_online, serving.draining.len(), "an online replica goes only once all draining ones do");
                prop_assert!(plan.place.is_empty(), "never places and removes online replicas at once");
            }
        }

        #[test]
        fn surplus_goes_from_the_nodes_running_the_most(
            (nodes, replicas) in arb_cluster(), required in 0u32..10
        ) {
            let serving = Serving::of(replicas, &nodes);
            let plan = plan(Strategy::Spread, &deployment(required, 1), &serving, &nodes);
            let removed: HashSet<ReplicaId> = plan.remove.iter().map(|r| r.id).collect();
            let left: Vec<Replica> = serving.online.iter().filter(|r| !removed.contains(&r.id)).cloned().collect();
            let after = per_node(&left);
            let most = after.values().copied().max().unwrap_or(0);
            for r in plan.remove.iter().filter(|r| nodes[&r.node].status == NodeStatus::Online) {
                let here = after.get(&r.node).copied().unwrap_or(0);
                prop_assert!(here + 1 >= most, "took from {} (left {}) while another node keeps {}", r.node, here, most);
            }
        }
    }

    fn nodes_online(n: usize) -> BTreeMap<NodeName, Node> {
        (0..n).map(|i| node(i, NodeStatus::Online, 100)).map(|n| (n.name.clone(), n)).collect()
    }

    #[test]
    fn max_per_node_caps_each_node_and_the_rest_stays_unplaced() {
        let mut d = deployment(5, 1);
        d.spec.template.max_per_node = Some(2);
        let serving = Serving { online: vec![replica(1, 0, ReplicaState::Running)], draining: Vec::new() };
        let plan = plan(Strategy::Spread, &d, &serving, &nodes_online(2));
        let on = |i: usize| plan.place.iter().filter(|n| n.as_str() == format!("n{i}")).count();
        assert_eq!((on(0), on(1), plan.unplaced), (1, 2, 1), "{plan:?}");
        let binpacked = super::plan(Strategy::Binpack, &d, &serving, &nodes_online(2));
        assert_eq!((binpacked.place.len(), binpacked.unplaced), (3, 1), "{binpacked:?}");
    }

    #[test]
    fn a_fixed_published_port_allows_one_replica_a_node() {
        let mut d = deployment(4, 1);
        d.spec.template.ports = vec![orchestrator_core::PortSpec::tcp(8080, Some(18081))];
        let plan = plan(Strategy::Spread, &d, &Serving::default(), &nodes_online(3));
        assert_eq!((plan.place.len(), plan.unplaced), (3, 1));
        assert_eq!(plan.place.iter().collect::<HashSet<_>>().len(), 3);
        // An engine-picked port does not limit anything.
        d.spec.template.ports = vec![orchestrator_core::PortSpec::tcp(8080, None)];
        let plan = super::plan(Strategy::Spread, &d, &Serving::default(), &nodes_online(3));
        assert_eq!((plan.place.len(), plan.unplaced), (4, 0));
    }

    #[test]
    fn constraints_keep_replicas_and_moves_on_admitted_nodes() {
        let mut d = deployment(4, 1);
        d.spec.template.constraints = vec![orchestrator_core::Constraint::parse("node.name != n0", "c").unwrap()];
        let plan = plan(Strategy::Spread, &d, &Serving::default(), &nodes_online(3));
        assert_eq!(plan.place.len(), 4);
        assert!(plan.place.iter().all(|n| n.as_str() != "n0"), "{plan:?}");
        // A spread move never goes to a node the constraints refuse, however empty.
        let replicas: Vec<Replica> = (1..=4).map(|i| replica(i, 1 + (i as usize % 2), ReplicaState::Running)).collect();
        assert_eq!(spread_move(&d, &replicas, &nodes_online(3)), None);
        // Labels: only the nodes that carry zone=a.
        d.spec.template.constraints = vec![orchestrator_core::Constraint::parse("node.labels.zone == a", "c").unwrap()];
        let mut nodes = nodes_online(3);
        assert_eq!(super::plan(Strategy::Spread, &d, &Serving::default(), &nodes).unplaced, 4);
        for n in ["n1", "n2"] {
            nodes.get_mut(&NodeName::new(n).unwrap()).unwrap().labels.insert("zone".into(), "a".into());
        }
        let plan = super::plan(Strategy::Spread, &d, &Serving::default(), &nodes);
        assert_eq!(plan.place.len(), 4);
        assert!(plan.place.iter().all(|n| n.as_str() != "n0"), "{plan:?}");
    }

    #[test]
    fn a_unix_socket_node_without_a_public_host_takes_no_publishing_replica() {
        let mut d = deployment(2, 1);
        d.spec.template.ports = vec![orchestrator_core::PortSpec::tcp(8080, None)];
        let mut nodes = nodes_online(2);
        let n0 = nodes.get_mut(&NodeName::new("n0").unwrap()).unwrap();
        n0.address = EngineAddress::parse("unix:///run/docker.sock").unwrap();
        let plan = plan(Strategy::Spread, &d, &Serving::default(), &nodes);
        assert!(plan.place.iter().all(|n| n.as_str() == "n1"), "{plan:?}");
        nodes.get_mut(&NodeName::new("n0").unwrap()).unwrap().public_host = Some("10.0.0.5".into());
        let plan = super::plan(Strategy::Spread, &d, &Serving::default(), &nodes);
        assert!(plan.place.iter().any(|n| n.as_str() == "n0"), "{plan:?}");
    }

    #[test]
    fn unplaced_replicas_say_why() {
        let reason = |d: &Deployment, nodes: &BTreeMap<NodeName, Node>| {
            let plan = plan(Strategy::Spread, d, &Serving::default(), nodes);
            assert!(plan.unplaced > 0, "{plan:?}");
            plan.unplaced_reason.unwrap()
        };
        let mut d = deployment(4, 1);
        d.spec.template.ports = vec![orchestrator_core::PortSpec::tcp(8080, Some(18081))];
        assert_eq!(reason(&d, &nodes_online(3)), "no online node has tcp/18081 free");
        let offline: BTreeMap<NodeName, Node> =
            (0..2).map(|i| node(i, NodeStatus::Offline, 100)).map(|n| (n.name.clone(), n)).collect();
        assert_eq!(reason(&d, &offline), "no online node");
        let mut zoned = deployment(1, 1);
        zoned.spec.template.constraints =
            vec![orchestrator_core::Constraint::parse("node.labels.zone==a", "c").unwrap()];
        assert_eq!(reason(&zoned, &nodes_online(2)), "no online node meets the constraints (node.labels.zone == a)");
        let mut capped = deployment(5, 1);
        capped.spec.template.max_per_node = Some(2);
        assert_eq!(reason(&capped, &nodes_online(2)), "every node it may use runs max_per_node (2) of it");
        let big = deployment(1, 500);
        assert_eq!(reason(&big, &nodes_online(2)), "no online node has 500 free units");
        // Placed in full: no reason.
        assert_eq!(
            super::plan(Strategy::Spread, &deployment(2, 1), &Serving::default(), &nodes_online(2)).unplaced_reason,
            None
        );
    }

    fn with_engine(mut nodes: BTreeMap<NodeName, Node>, cpus: u32, memory_bytes: u64) -> BTreeMap<NodeName, Node> {
        for n in nodes.values_mut() {
            n.engine = Some(orchestrator_core::EngineFacts { cpus, memory_bytes });
        }
        nodes
    }

    #[test]
    fn memory_and_cpus_bound_each_node_and_the_rest_waits_with_the_reason() {
        const MIB: u64 = 1 << 20;
        let mut d = deployment(10, 1);
        d.spec.template.resources.memory_bytes = Some(64 * MIB);
        // 2 nodes of 200 MiB: 3 replicas of 64 MiB each, the 7th..10th wait.
        let nodes = with_engine(nodes_online(2), 4, 200 * MIB);
        let plan = plan(Strategy::Spread, &d, &Serving::default(), &nodes);
        assert_eq!((plan.place.len(), plan.unplaced), (6, 4), "{plan:?}");
        assert_eq!(plan.unplaced_reason.as_deref(), Some("no online node has 64MiB of memory free"));
        // What other replicas reserved counts: n0 has room for one more only.
        let mut busy = nodes.clone();
        busy.get_mut(&NodeName::new("n0").unwrap()).unwrap().reserved.memory_bytes = 120 * MIB;
        let plan = super::plan(Strategy::Binpack, &d, &Serving::default(), &busy);
        assert_eq!(plan.place.iter().filter(|n| n.as_str() == "n0").count(), 1, "{plan:?}");
        // Nothing fits anywhere: the reason names memory; the same for CPUs.
        let mut huge = deployment(1, 1);
        huge.spec.template.resources.memory_bytes = Some(300 * MIB);
        let plan = super::plan(Strategy::Spread, &huge, &Serving::default(), &nodes);
        assert_eq!(plan.unplaced_reason.as_deref(), Some("no online node has 300MiB of memory free"));
        let mut cpus = deployment(9, 1);
        cpus.spec.template.resources.nano_cpus = Some(1_500_000_000);
        let plan = super::plan(Strategy::Spread, &cpus, &Serving::default(), &nodes);
        assert_eq!((plan.place.len(), plan.unplaced), (4, 5), "4 CPUs hold two of 1.5: {plan:?}");
        cpus.spec.template.resources.nano_cpus = Some(4_500_000_000);
        let plan = super::plan(Strategy::Spread, &cpus, &Serving::default(), &nodes);
        assert_eq!(plan.unplaced_reason.as_deref(), Some("no online node has 4.5 CPUs free"));
        // A node whose engine has not told its size yet takes no replica with limits.
        let plan = super::plan(Strategy::Spread, &d, &Serving::default(), &nodes_online(2));
        assert_eq!(plan.place.len(), 0, "{plan:?}");
    }

    #[test]
    fn a_port_another_deployment_holds_keeps_its_node_out() {
        let mut d = deployment(3, 1);
        d.spec.template.ports = vec![orchestrator_core::PortSpec::tcp(8080, Some(18081))];
        let mut nodes = nodes_online(3);
        let held = orchestrator_core::HostPort { protocol: orchestrator_core::Protocol::Tcp, port: 18081 };
        nodes.get_mut(&NodeName::new("n1").unwrap()).unwrap().reserved.ports.insert(held);
        let plan = plan(Strategy::Spread, &d, &Serving::default(), &nodes);
        assert_eq!(plan.place.iter().map(NodeName::as_str).collect::<HashSet<_>>(), HashSet::from(["n0", "n2"]));
        assert_eq!(plan.unplaced_reason.as_deref(), Some("no online node has tcp/18081 free"));
        // The same number over udp is another port.
        d.spec.template.ports[0].protocol = orchestrator_core::Protocol::Udp;
        assert_eq!(super::plan(Strategy::Spread, &d, &Serving::default(), &nodes).place.len(), 3);
    }
}
