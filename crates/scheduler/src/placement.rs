//! Choosing nodes for replicas. Pure: no I/O, no clock, deterministic (ties go to the node
//! whose name sorts first), so it is property-tested and benchmarked in memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use orchestrator_core::NodeName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Fewest replicas of this deployment on the node, then most free capacity: survives the
    /// loss of any one node best. The default, as in Swarm.
    #[default]
    Spread,
    /// Least free capacity that still fits: fills nodes before opening new ones, leaving whole
    /// nodes free for large replicas (Nomad's default).
    Binpack,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spread" => Ok(Strategy::Spread),
            "binpack" => Ok(Strategy::Binpack),
            other => Err(format!("unknown placement strategy {other:?} (spread or binpack)")),
        }
    }
}

/// A node that may take replicas: online, with its free capacity and how many replicas of the
/// deployment being placed it already runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub node: NodeName,
    pub available: u32,
    pub replicas: u32,
    /// The most replicas of the deployment this node may run (`max_per_node`, or one when the
    /// template publishes a fixed host port); `u32::MAX` for no limit.
    pub max_replicas: u32,
}

impl Candidate {
    /// A node with no per-node limit.
    pub fn new(node: NodeName, available: u32, replicas: u32) -> Self {
        Self { node, available, replicas, max_replicas: u32::MAX }
    }
}

/// The outcome: one node per placed replica (in placement order), and how many did not fit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub nodes: Vec<NodeName>,
    /// Replicas that found no room: the deployment stays degraded until capacity appears.
    pub unplaced: u32,
}

/// Places `count` replicas of `units` each on `candidates`.
pub fn place(strategy: Strategy, candidates: &[Candidate], units: u32, count: u32) -> Plan {
    match strategy {
        Strategy::Spread => spread(candidates, units, count),
        Strategy::Binpack => binpack(candidates, units, count),
    }
}

fn spread(candidates: &[Candidate], units: u32, count: u32) -> Plan {
    // Ties on count and capacity go to the name that sorts first: the heap holds name ranks.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|a, b| candidates[*a].node.cmp(&candidates[*b].node));
    // Min-heap on (replicas here, most free, name rank): O(log n) a decision.
    let mut heap: BinaryHeap<Reverse<(u32, Reverse<u32>, usize)>> = order
        .iter()
        .enumerate()
        .filter(|(_, i)| candidates[**i].available >= units && candidates[**i].replicas < candidates[**i].max_replicas)
        .map(|(rank, i)| Reverse((candidates[*i].replicas, Reverse(candidates[*i].available), rank)))
        .collect();

    let mut plan = Plan { nodes: Vec::with_capacity(count as usize), unplaced: 0 };
    for placed in 0..count {
        let Some(Reverse((replicas, Reverse(available), r))) = heap.pop() else {
            plan.unplaced = count - placed;
            break;
        };
        let candidate = &candidates[order[r]];
        plan.nodes.push(candidate.node.clone());
        let available = available - units;
        if available >= units && replicas + 1 < candidate.max_replicas {
            heap.push(Reverse((replicas + 1, Reverse(available), r)));
        }
    }
    plan
}

fn binpack(candidates: &[Candidate], units: u32, count: u32) -> Plan {
    let mut fitting: Vec<&Candidate> = candidates.iter().filter(|c| c.available >= units).collect();
    // Filling the least-free node keeps it the least free, so one pass in this order suffices.
    fitting.sort_by(|a, b| a.available.cmp(&b.available).then_with(|| a.node.cmp(&b.node)));
    let mut plan = Plan { nodes: Vec::with_capacity(count as usize), unplaced: 0 };
    let mut left = count;
    for c in fitting {
        if left == 0 {
            break;
        }
        let here = (c.available / units.max(1)).min(left).min(c.max_replicas.saturating_sub(c.replicas));
        plan.nodes.extend(std::iter::repeat_n(c.node.clone(), here as usize));
        left -= here;
    }
    plan.unplaced = left;
    plan
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::{any, prop, prop_assert, prop_assert_eq, proptest};
    use proptest::strategy::Strategy as _;

    use super::*;

    fn candidate(name: &str, available: u32, replicas: u32) -> Candidate {
        Candidate::new(NodeName::new(name).unwrap(), available, replicas)
    }

    fn counts(plan: &Plan) -> BTreeMap<&str, u32> {
        let mut m = BTreeMap::new();
        for n in &plan.nodes {
            *m.entry(n.as_str()).or_default() += 1;
        }
        m
    }

    #[test]
    fn spread_prefers_fewest_replicas_then_most_free_then_name() {
        let nodes = [candidate("b", 10, 0), candidate("a", 10, 0), candidate("c", 20, 1)];
        let plan = place(Strategy::Spread, &nodes, 1, 3);
        assert_eq!(plan.nodes.iter().map(NodeName::as_str).collect::<Vec<_>>(), ["a", "b", "c"]);
        let plan = place(Strategy::Spread, &[candidate("x", 5, 0), candidate("y", 9, 0)], 1, 1);
        assert_eq!(plan.nodes[0].as_str(), "y");
    }

    #[test]
    fn binpack_fills_the_fullest_node_that_fits() {
        let nodes = [candidate("a", 10, 0), candidate("b", 3, 0), candidate("c", 1, 0)];
        let plan = place(Strategy::Binpack, &nodes, 2, 3);
        assert_eq!(plan.nodes.iter().map(NodeName::as_str).collect::<Vec<_>>(), ["b", "a", "a"]);
    }

    #[test]
    fn short_capacity_places_what_fits_and_reports_the_rest() {
        let nodes = [candidate("a", 2, 0), candidate("b", 1, 0)];
        for strategy in [Strategy::Spread, Strategy::Binpack] {
            let plan = place(strategy, &nodes, 1, 5);
            assert_eq!((plan.nodes.len(), plan.unplaced), (3, 2), "{strategy:?}");
        }
        assert_eq!(place(Strategy::Spread, &nodes, 3, 1).unplaced, 1);
    }

    fn arb_nodes() -> impl proptest::strategy::Strategy<Value = Vec<Candidate>> {
        prop::collection::vec((0u32..20, 0u32..5), 1..12).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (available, replicas))| candidate(&format!("n{i}"), available, replicas))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn never_over_capacity_and_never_short_when_room_exists(
            nodes in arb_nodes(), units in 1u32..4, count in 0u32..60, binpack in any::<bool>()
        ) {
            let strategy = if binpack { Strategy::Binpack } else { Strategy::Spread };
            let plan = place(strategy, &nodes, units, count);
            prop_assert_eq!(plan.nodes.len() as u32 + plan.unplaced, count);
            let placed = counts(&plan);
            for c in &nodes {
                let here = placed.get(c.node.as_str()).copied().unwrap_or(0);
                prop_assert!(here * units <= c.available, "{} over capacity", c.node);
            }
            let room: u32 = nodes.iter().map(|c| c.available / units).sum();
            prop_assert_eq!(plan.unplaced, count.saturating_sub(room));
        }

        #[test]
        fn spread_differs_by_at_most_one_when_capacity_allows(
            n in 1usize..10, count in 0u32..100
        ) {
            let nodes: Vec<Candidate> = (0..n).map(|i| candidate(&format!("n{i}"), 1_000, 0)).collect();
            let plan = place(Strategy::Spread, &nodes, 1, count);
            let placed = counts(&plan);
            let per_node: Vec<u32> = nodes.iter().map(|c| placed.get(c.node.as_str()).copied().unwrap_or(0)).collect();
            prop_assert!(per_node.iter().max().unwrap() - per_node.iter().min().unwrap() <= 1);
        }

        #[test]
        fn binpack_uses_the_fewest_nodes_on_equal_nodes(n in 1usize..10, count in 1u32..50) {
            // Greedy least-free-first is not minimal for arbitrary free capacities; on equal
            // nodes (the common case: identical machines) it opens the fewest possible.
            let equal: Vec<Candidate> = (0..n).map(|i| candidate(&format!("n{i}"), 4, 0)).collect();
            let plan = place(Strategy::Binpack, &equal, 1, count);
            prop_assert_eq!(counts(&plan).len() as u32, count.min(4 * n as u32).div_ceil(4));
        }
    }
}
