//! What a node is, kept between reads: a placement reads every node, and at 5,000 nodes parsing
//! their addresses, labels and names again for each deployment was a fifth of its cost. What
//! moves with replicas and heartbeats (free units, reservations, status, last heartbeat) is read
//! every time; the rest is kept while `cluster.nodes_version` is unchanged, which every write
//! adding, removing or changing a node bumps (`bump`), on any server sharing the store.

use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use orchestrator_core::Node;

use crate::connection::AnyConnection;
use crate::error::Error;
use crate::rows::{NodeMovingRow, NodeRow, set_moving};
use crate::schema::{cluster, nodes};

/// The nodes of the last full read, by name, and the `nodes_version` they were read at.
#[derive(Default)]
pub(crate) struct NodeCache {
    kept: Mutex<Option<(i64, Arc<[Node]>)>>,
}

impl NodeCache {
    /// Every node, by name, as of `conn`'s snapshot (without held ports).
    pub(crate) fn load(&self, conn: &mut AnyConnection) -> Result<Vec<Node>, Error> {
        let version = nodes_version(conn)?;
        let kept = self.kept.lock().expect("node cache poisoned").clone();
        if let Some((_, nodes)) = kept.filter(|(at, _)| *at == version) {
            let moving: Vec<NodeMovingRow> =
                nodes::table.order(nodes::name).select(NodeMovingRow::as_select()).load(conn)?;
            // Read again after: a PostgreSQL read transaction (READ COMMITTED) sees each
            // statement's own snapshot, so a node added and another removed meanwhile would
            // otherwise pair one node's moving columns with another's name. The count guards
            // against a node written without the bump (by hand, say).
            if nodes_version(conn)? == version && moving.len() == nodes.len() {
                return nodes
                    .iter()
                    .zip(moving)
                    .map(|(node, row)| {
                        let mut node = node.clone();
                        set_moving(&mut node, row)?;
                        Ok(node)
                    })
                    .collect();
            }
        }
        let rows: Vec<NodeRow> = nodes::table.order(nodes::name).select(NodeRow::as_select()).load(conn)?;
        let nodes: Vec<Node> = rows.into_iter().map(Node::try_from).collect::<Result<_, _>>()?;
        // Kept only if nothing moved during the read (see above); otherwise the next read tries.
        if nodes_version(conn)? == version {
            *self.kept.lock().expect("node cache poisoned") = Some((version, nodes.as_slice().into()));
        }
        Ok(nodes)
    }
}

fn nodes_version(conn: &mut AnyConnection) -> Result<i64, Error> {
    Ok(cluster::table.select(cluster::nodes_version).first(conn)?)
}

/// Records, in a write transaction, that a node was added, removed or changed.
pub(crate) fn bump(conn: &mut AnyConnection) -> Result<(), Error> {
    diesel::update(cluster::table).set(cluster::nodes_version.eq(cluster::nodes_version + 1)).execute(conn)?;
    Ok(())
}
