//! `NodeStore` on diesel (SQLite or PostgreSQL).

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use diesel::prelude::*;
use orchestrator_core::error::Kind;
use orchestrator_core::{
    Error as DomainError, HostPort, NewEvent, NewNode, Node, NodeName, NodeStatus, NodeStore, NodeUpdate, ReplicaState,
    Result,
};

use crate::connection::AnyConnection;
use crate::error::Error;
use crate::events;
use crate::node_cache::{self, NodeCache};
use crate::rows::{NodeRow, labels_json, parse_host_port, parse_ports, to_millis};
use crate::schema::{node_ports, nodes, replicas};
use crate::store::{DieselStore, RevisionChange};

/// Nodes per `UPDATE ... WHERE name IN (...)`; well under SQLite's bound-parameter limit.
const HEARTBEAT_CHUNK: usize = 500;

pub(crate) fn load_node(conn: &mut AnyConnection, name: &str) -> Result<Node, Error> {
    let row: Option<NodeRow> = nodes::table.find(name).select(NodeRow::as_select()).first(conn).optional()?;
    let mut node = row.ok_or_else(|| DomainError::not_found(Kind::Node, name).into()).and_then(Node::try_from)?;
    // The ports its replicas hold, from the replicas on it (by their node's index): the rows of
    // `node_ports` are keyed port first, and finding one node's there would read them all. A
    // replica holds its ports from its placement until it is lost or deleted, as they do.
    let held: Vec<String> = replicas::table
        .filter(replicas::node.eq(name))
        .filter(replicas::state.ne(ReplicaState::Lost.as_str()))
        .filter(replicas::ports.ne(""))
        .select(replicas::ports)
        .load(conn)?;
    for text in held {
        node.reserved.ports.extend(parse_ports(&text)?);
    }
    Ok(node)
}

/// Every node, with the host ports its replicas hold: all of them (`None`), or only those
/// among `only` (none for an empty list, and no query).
fn load_nodes(conn: &mut AnyConnection, cache: &NodeCache, only: Option<&[HostPort]>) -> Result<Vec<Node>, Error> {
    let mut nodes = cache.load(conn)?;
    let held: Vec<(String, String, i32)> = match only {
        None => node_ports::table.select((node_ports::node, node_ports::protocol, node_ports::port)).load(conn)?,
        Some([]) => Vec::new(),
        Some(ports) => {
            let numbers: Vec<i32> = ports.iter().map(|p| i32::from(p.port)).collect();
            let rows: Vec<(String, String, i32)> = node_ports::table
                .filter(node_ports::port.eq_any(&numbers))
                .select((node_ports::node, node_ports::protocol, node_ports::port))
                .load(conn)?;
            rows.into_iter()
                .filter(|(_, protocol, port)| {
                    ports.iter().any(|p| p.protocol.as_str() == protocol && i32::from(p.port) == *port)
                })
                .collect()
        }
    };
    add_ports(&mut nodes, held)?;
    Ok(nodes)
}

/// Sets a node's status (and its last heartbeat when given), with the event; the node after.
fn set_status(
    conn: &mut AnyConnection,
    name: &str,
    status: NodeStatus,
    heartbeat: Option<SystemTime>,
) -> Result<Node, Error> {
    let was = load_node(conn, name)?.status;
    let target = nodes::table.find(name);
    let changed = match heartbeat {
        Some(at) => diesel::update(target)
            .set((nodes::status.eq(status.as_str()), nodes::last_heartbeat_ms.eq(to_millis(at))))
            .execute(conn)?,
        None => diesel::update(target).set(nodes::status.eq(status.as_str())).execute(conn)?,
    };
    if changed == 0 {
        return Err(DomainError::not_found(Kind::Node, name).into());
    }
    events::record(conn, NewEvent::node_status(name, was, status).as_slice())?;
    load_node(conn, name)
}

fn add_ports(nodes: &mut [Node], held: Vec<(String, String, i32)>) -> Result<(), Error> {
    if held.is_empty() {
        return Ok(());
    }
    let mut by_name: HashMap<String, &mut Node> = nodes.iter_mut().map(|n| (n.name.to_string(), n)).collect();
    for (node, protocol, port) in held {
        let text = format!("{protocol}/{port}");
        let port = parse_host_port(&text).ok_or_else(|| Error::Corrupt(format!("node port {text:?}")))?;
        if let Some(n) = by_name.get_mut(&node) {
            n.reserved.ports.insert(port);
        }
    }
    Ok(())
}

#[async_trait]
impl NodeStore for DieselStore {
    async fn add_node(&self, node: NewNode) -> Result<Node> {
        let row = NodeRow::new(&node.into_node());
        Ok(self
            .write(move |conn| {
                let exists = nodes::table.find(&row.name).count().get_result::<i64>(conn)? > 0;
                if exists {
                    return Err(DomainError::already_exists(Kind::Node, row.name).into());
                }
                diesel::insert_into(nodes::table).values(&row).execute(conn)?;
                node_cache::bump(conn)?;
                let node = load_node(conn, &row.name)?;
                events::record(conn, &[NewEvent::node_added(&node)])?;
                Ok(node)
            })
            .await?)
    }

    async fn get_node(&self, name: &NodeName) -> Result<Node> {
        let name = name.to_string();
        Ok(self.read(move |conn| load_node(conn, &name)).await?)
    }

    async fn list_nodes(&self) -> Result<Vec<Node>> {
        let cache = self.node_cache();
        Ok(self.read(move |conn| load_nodes(conn, &cache, None)).await?)
    }

    async fn list_nodes_holding(&self, ports: &[HostPort]) -> Result<Vec<Node>> {
        let (ports, cache) = (ports.to_vec(), self.node_cache());
        Ok(self.read(move |conn| load_nodes(conn, &cache, Some(&ports))).await?)
    }

    async fn set_node_status(
        &self,
        name: &NodeName,
        status: NodeStatus,
        heartbeat: Option<SystemTime>,
    ) -> Result<Node> {
        let name = name.to_string();
        Ok(self.write(move |conn| set_status(conn, &name, status, heartbeat)).await?)
    }

    async fn mark_offline(&self, names: &[NodeName]) -> Result<()> {
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        Ok(self
            .write_ahead(RevisionChange::Bump, move |conn| {
                for name in &names {
                    set_status(conn, name, NodeStatus::Offline, None)?;
                }
                Ok(())
            })
            .await?)
    }

    async fn update_node(&self, name: &NodeName, update: NodeUpdate) -> Result<Node> {
        let name = name.to_string();
        Ok(self
            .write(move |conn| {
                let before = load_node(conn, &name)?;
                let target = nodes::table.find(&name);
                if let Some(labels) = &update.labels {
                    diesel::update(target).set(nodes::labels.eq(labels_json(labels))).execute(conn)?;
                }
                if let Some(host) = &update.public_host {
                    diesel::update(target).set(nodes::public_host.eq(host)).execute(conn)?;
                }
                if let Some(engine) = update.engine {
                    diesel::update(target)
                        .set((
                            nodes::engine_cpus.eq(i64::from(engine.cpus)),
                            nodes::engine_memory_bytes.eq(i64::try_from(engine.memory_bytes).unwrap_or(i64::MAX)),
                        ))
                        .execute(conn)?;
                }
                node_cache::bump(conn)?;
                let node = load_node(conn, &name)?;
                if (&before.labels, &before.public_host) != (&node.labels, &node.public_host) {
                    events::record(conn, &[NewEvent::node_updated(&node)])?;
                }
                Ok(node)
            })
            .await?)
    }

    async fn record_heartbeats(&self, names: &[NodeName], at: SystemTime) -> Result<()> {
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        let at = to_millis(at);
        // No new revision: a node's status changes by `set_node_status`, which makes one.
        Ok(self
            .write_ahead(RevisionChange::Keep, move |conn| {
                for chunk in names.chunks(HEARTBEAT_CHUNK) {
                    diesel::update(nodes::table.filter(nodes::name.eq_any(chunk)))
                        .set(nodes::last_heartbeat_ms.eq(at))
                        .execute(conn)?;
                }
                Ok(())
            })
            .await?)
    }

    async fn remove_node(&self, name: &NodeName) -> Result<()> {
        let name = name.to_string();
        Ok(self
            .write(move |conn| {
                load_node(conn, &name)?;
                let active: i64 = replicas::table
                    .filter(replicas::node.eq(&name))
                    .filter(replicas::state.ne("lost"))
                    .count()
                    .get_result(conn)?;
                if active > 0 {
                    return Err(DomainError::node_busy(&name, active as usize).into());
                }
                diesel::delete(replicas::table.filter(replicas::node.eq(&name))).execute(conn)?;
                diesel::delete(nodes::table.find(&name)).execute(conn)?;
                node_cache::bump(conn)?;
                events::record(conn, &[NewEvent::node_removed(&name)])?;
                Ok(())
            })
            .await?)
    }
}
