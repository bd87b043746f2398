//! Rows as stored, and their conversion to and from the domain types. Every value read back is
//! validated again: a row edited by hand cannot smuggle an invalid name into the scheduler.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use orchestrator_core::{
    Deployment, DeploymentName, EngineAddress, ImageRef, Node, NodeName, Replica, ReplicaId, ReplicaState,
};

use crate::error::{Error, Result};
use crate::schema::{deployments, nodes, replicas};

pub fn to_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{what}: {e}"))
}

fn to_u32(what: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|e| corrupt(what, e))
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = nodes)]
pub struct NodeRow {
    pub name: String,
    pub address: String,
    pub capacity: i64,
    pub available: i64,
    pub status: String,
    pub last_heartbeat_ms: Option<i64>,
}

impl TryFrom<NodeRow> for Node {
    type Error = Error;
    fn try_from(row: NodeRow) -> Result<Node> {
        Ok(Node {
            name: NodeName::new(row.name).map_err(|e| corrupt("node name", e))?,
            address: EngineAddress::parse(&row.address).map_err(|e| corrupt("node address", e))?,
            capacity: to_u32("node capacity", row.capacity)?,
            available: to_u32("node available", row.available)?,
            status: row.status.parse().map_err(|e| corrupt("node status", e))?,
            last_heartbeat: row.last_heartbeat_ms.map(from_millis),
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = deployments)]
pub struct DeploymentRow {
    pub name: String,
    pub image: String,
    /// JSON array of strings.
    pub command: String,
    pub replicas: i64,
    pub units: i64,
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl TryFrom<DeploymentRow> for Deployment {
    type Error = Error;
    fn try_from(row: DeploymentRow) -> Result<Deployment> {
        Ok(Deployment {
            name: DeploymentName::new(row.name).map_err(|e| corrupt("deployment name", e))?,
            image: ImageRef::parse(&row.image).map_err(|e| corrupt("deployment image", e))?,
            command: serde_json::from_str(&row.command).map_err(|e| corrupt("deployment command", e))?,
            replicas: to_u32("deployment replicas", row.replicas)?,
            units: to_u32("deployment units", row.units)?,
            version: u64::try_from(row.version).map_err(|e| corrupt("deployment version", e))?,
            created_at: from_millis(row.created_at_ms),
            updated_at: from_millis(row.updated_at_ms),
        })
    }
}

pub fn command_json(command: &[String]) -> String {
    serde_json::to_string(command).expect("a list of strings always serializes")
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = replicas)]
pub struct ReplicaRow {
    pub id: i64,
    pub deployment: String,
    pub node: String,
    pub units: i64,
    pub container_id: Option<String>,
    pub state: String,
    pub created_at_ms: i64,
}

#[derive(Insertable)]
#[diesel(table_name = replicas)]
pub struct NewReplicaRow<'a> {
    pub deployment: &'a str,
    pub node: &'a str,
    pub units: i64,
    pub state: &'static str,
    pub created_at_ms: i64,
}

impl TryFrom<ReplicaRow> for Replica {
    type Error = Error;
    fn try_from(row: ReplicaRow) -> Result<Replica> {
        Ok(Replica {
            id: ReplicaId(u64::try_from(row.id).map_err(|e| corrupt("replica id", e))?),
            deployment: DeploymentName::new(row.deployment).map_err(|e| corrupt("replica deployment", e))?,
            node: NodeName::new(row.node).map_err(|e| corrupt("replica node", e))?,
            units: to_u32("replica units", row.units)?,
            container_id: row.container_id,
            state: row.state.parse::<ReplicaState>().map_err(|e| corrupt("replica state", e))?,
            created_at: from_millis(row.created_at_ms),
        })
    }
}

pub fn replica_id(id: ReplicaId) -> Result<i64> {
    i64::try_from(id.0).map_err(|_| {
        orchestrator_core::Error::not_found(orchestrator_core::error::Kind::Replica, id.to_string()).into()
    })
}
