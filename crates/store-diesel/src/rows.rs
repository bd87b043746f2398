//! Rows as stored, and their conversion to and from the domain types. Every value read back is
//! validated again: a row edited by hand cannot smuggle an invalid name into the scheduler.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::prelude::*;
use orchestrator_core::{
    Change, Claim, ContainerTemplate, CrashLoop, Deployment, DeploymentName, DeploymentSpec, EngineAddress,
    EngineFacts, Health, HostPort, Node, NodeName, NodeStatus, Protocol, Replica, ReplicaId, ReplicaState, Reserved,
    Revision, Rollout, RolloutState, Unplaced,
};

use crate::error::{Error, Result};
use crate::schema::{deployment_revisions, deployments, nodes, replicas, rollouts};

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
    /// JSON object of strings.
    pub labels: String,
    pub public_host: Option<String>,
    pub engine_cpus: Option<i64>,
    pub engine_memory_bytes: Option<i64>,
    pub memory_reserved: i64,
    pub nano_cpus_reserved: i64,
}

impl NodeRow {
    /// The row of a node as first added.
    pub fn new(node: &Node) -> Self {
        Self {
            name: node.name.to_string(),
            address: node.address.to_string(),
            capacity: i64::from(node.capacity),
            available: i64::from(node.available),
            status: node.status.as_str().to_string(),
            last_heartbeat_ms: node.last_heartbeat.map(to_millis),
            labels: labels_json(&node.labels),
            public_host: node.public_host.clone(),
            engine_cpus: node.engine.map(|e| i64::from(e.cpus)),
            engine_memory_bytes: node.engine.map(|e| to_i64(e.memory_bytes)),
            memory_reserved: to_i64(node.reserved.memory_bytes),
            nano_cpus_reserved: to_i64(node.reserved.nano_cpus),
        }
    }
}

pub fn labels_json(labels: &std::collections::BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).expect("labels always serialize")
}

impl TryFrom<NodeRow> for Node {
    type Error = Error;
    fn try_from(row: NodeRow) -> Result<Node> {
        let labels = serde_json::from_str(&row.labels).map_err(|e| corrupt("node labels", e))?;
        orchestrator_core::node::check_node_labels(&labels).map_err(|e| corrupt("node labels", e))?;
        let engine = match (row.engine_cpus, row.engine_memory_bytes) {
            (Some(cpus), Some(memory)) => Some(EngineFacts {
                cpus: to_u32("node engine cpus", cpus)?,
                memory_bytes: u64::try_from(memory).map_err(|e| corrupt("node engine memory", e))?,
            }),
            _ => None,
        };
        let mut node = Node {
            name: NodeName::new(row.name).map_err(|e| corrupt("node name", e))?,
            address: EngineAddress::parse(&row.address).map_err(|e| corrupt("node address", e))?,
            capacity: to_u32("node capacity", row.capacity)?,
            // These three and `reserved` are set from the moving columns below.
            available: 0,
            status: NodeStatus::Offline,
            last_heartbeat: None,
            labels,
            public_host: row.public_host,
            engine,
            reserved: Reserved::default(),
        };
        set_moving(
            &mut node,
            NodeMovingRow {
                available: row.available,
                status: row.status,
                last_heartbeat_ms: row.last_heartbeat_ms,
                memory_reserved: row.memory_reserved,
                nano_cpus_reserved: row.nano_cpus_reserved,
            },
        )?;
        Ok(node)
    }
}

/// The columns of a node that change with its replicas and heartbeats (the others change only
/// with `cluster.nodes_version`; see `node_cache`).
#[derive(Queryable, Selectable)]
#[diesel(table_name = nodes)]
pub struct NodeMovingRow {
    pub available: i64,
    pub status: String,
    pub last_heartbeat_ms: Option<i64>,
    pub memory_reserved: i64,
    pub nano_cpus_reserved: i64,
}

/// Sets what `row` holds on `node`, its held ports cleared: they are rows of `node_ports`,
/// which `nodes::add_ports` adds.
pub fn set_moving(node: &mut Node, row: NodeMovingRow) -> Result<()> {
    node.available = to_u32("node available", row.available)?;
    node.status = row.status.parse().map_err(|e| corrupt("node status", e))?;
    node.last_heartbeat = row.last_heartbeat_ms.map(from_millis);
    node.reserved = Reserved {
        memory_bytes: u64::try_from(row.memory_reserved).map_err(|e| corrupt("node memory reserved", e))?,
        nano_cpus: u64::try_from(row.nano_cpus_reserved).map_err(|e| corrupt("node cpus reserved", e))?,
        ports: Default::default(),
    };
    Ok(())
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = deployments)]
pub struct DeploymentRow {
    pub name: String,
    pub replicas: i64,
    pub units: i64,
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// `TemplateJson`.
    pub template: String,
    pub revision: i64,
    pub unplaced: i64,
    pub unplaced_reason: Option<String>,
    pub crash_restarts: i64,
    pub crash_exit_code: Option<i64>,
    pub crash_last_ms: Option<i64>,
    pub crash_retry_at_ms: Option<i64>,
    /// `policy_json`.
    pub policy: String,
    pub rollout_id: Option<i64>,
}

impl DeploymentRow {
    pub fn new(name: &DeploymentName, spec: &DeploymentSpec, version: u64, revision: u64, at_ms: (i64, i64)) -> Self {
        Self {
            name: name.to_string(),
            replicas: i64::from(spec.replicas),
            units: i64::from(spec.units),
            version: to_i64(version),
            created_at_ms: at_ms.0,
            updated_at_ms: at_ms.1,
            template: template_json(&spec.template),
            revision: to_i64(revision),
            unplaced: 0,
            unplaced_reason: None,
            crash_restarts: 0,
            crash_exit_code: None,
            crash_last_ms: None,
            crash_retry_at_ms: None,
            policy: crate::policy_json::encode_deploy(&spec.policy),
            rollout_id: None,
        }
    }
}

impl DeploymentRow {
    /// The deployment, with its current revision's pinned digest (kept on the revision).
    pub fn into_deployment(self, image_digest: Option<String>) -> Result<Deployment> {
        let row = self;
        Ok(Deployment {
            name: DeploymentName::new(row.name).map_err(|e| corrupt("deployment name", e))?,
            spec: DeploymentSpec {
                template: parse_template(&row.template)?,
                replicas: to_u32("deployment replicas", row.replicas)?,
                units: to_u32("deployment units", row.units)?,
                policy: crate::policy_json::decode_deploy(&row.policy)?,
            },
            version: u64::try_from(row.version).map_err(|e| corrupt("deployment version", e))?,
            revision: u64::try_from(row.revision).map_err(|e| corrupt("deployment revision", e))?,
            created_at: from_millis(row.created_at_ms),
            updated_at: from_millis(row.updated_at_ms),
            unplaced: (row.unplaced > 0)
                .then(|| {
                    let count = to_u32("deployment unplaced", row.unplaced)?;
                    Ok::<_, Error>(Unplaced { count, reason: row.unplaced_reason.unwrap_or_default() })
                })
                .transpose()?,
            crash_loop: match (row.crash_restarts, row.crash_last_ms, row.crash_retry_at_ms) {
                (0, _, _) => None,
                (restarts, Some(last), Some(retry)) => Some(CrashLoop {
                    restarts: to_u32("deployment crash restarts", restarts)?,
                    last_exit_code: row.crash_exit_code,
                    last_failure_at: from_millis(last),
                    retry_at: from_millis(retry),
                }),
                _ => return Err(corrupt("deployment crash loop", "restarts without their times")),
            },
            rollout: row
                .rollout_id
                .map(|id| u64::try_from(id).map_err(|e| corrupt("deployment rollout", e)))
                .transpose()?,
            image_digest,
        })
    }
}

/// A `ContainerTemplate` as stored: one JSON value, so a field the template gains is a field
/// here and no migration. Fields a newer template adds default when an older row lacks them.
pub fn template_json(template: &ContainerTemplate) -> String {
    crate::template_json::encode(template)
}

fn parse_template(text: &str) -> Result<ContainerTemplate> {
    crate::template_json::decode(text)
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = deployment_revisions)]
pub struct RevisionRow {
    pub deployment: String,
    pub revision: i64,
    pub template: String,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
    pub cause: Option<String>,
    pub restores: Option<i64>,
    pub image_digest: Option<String>,
}

impl RevisionRow {
    pub fn of(deployment: &Deployment, change: Change) -> Self {
        Self {
            deployment: deployment.name.to_string(),
            revision: to_i64(deployment.revision),
            template: template_json(&deployment.spec.template),
            created_at_ms: to_millis(deployment.updated_at),
            created_by: change.by,
            cause: change.cause,
            restores: change.restores.map(to_i64),
            image_digest: deployment.image_digest.clone(),
        }
    }
}

impl TryFrom<RevisionRow> for Revision {
    type Error = Error;
    fn try_from(row: RevisionRow) -> Result<Revision> {
        Ok(Revision {
            deployment: DeploymentName::new(row.deployment).map_err(|e| corrupt("revision deployment", e))?,
            number: u64::try_from(row.revision).map_err(|e| corrupt("revision number", e))?,
            template: parse_template(&row.template)?,
            created_at: from_millis(row.created_at_ms),
            by: row.created_by,
            cause: row.cause,
            restores: row
                .restores
                .map(|r| u64::try_from(r).map_err(|e| corrupt("revision restores", e)))
                .transpose()?,
            image_digest: row.image_digest,
        })
    }
}

pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = replicas)]
pub struct ReplicaRow {
    pub id: i64,
    pub deployment: String,
    pub node: String,
    pub units: i64,
    pub container_id: Option<String>,
    pub state: String,
    pub created_at_ms: i64,
    pub revision: i64,
    pub health: Option<String>,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    /// `ports_text`.
    pub ports: String,
    pub started_at_ms: Option<i64>,
    pub health_at_ms: Option<i64>,
    pub deregistered_at_ms: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = replicas)]
pub struct NewReplicaRow<'a> {
    pub deployment: &'a str,
    pub node: &'a str,
    pub units: i64,
    pub state: &'static str,
    pub created_at_ms: i64,
    pub revision: i64,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub ports: String,
}

impl TryFrom<ReplicaRow> for Replica {
    type Error = Error;
    fn try_from(row: ReplicaRow) -> Result<Replica> {
        Ok(Replica {
            id: ReplicaId(u64::try_from(row.id).map_err(|e| corrupt("replica id", e))?),
            deployment: DeploymentName::new(row.deployment).map_err(|e| corrupt("replica deployment", e))?,
            node: NodeName::new(row.node).map_err(|e| corrupt("replica node", e))?,
            units: to_u32("replica units", row.units)?,
            revision: u64::try_from(row.revision).map_err(|e| corrupt("replica revision", e))?,
            container_id: row.container_id,
            state: row.state.parse::<ReplicaState>().map_err(|e| corrupt("replica state", e))?,
            created_at: from_millis(row.created_at_ms),
            health: parse_health(row.health.as_deref())?,
            claim: Claim {
                memory_bytes: u64::try_from(row.memory_bytes).map_err(|e| corrupt("replica memory", e))?,
                nano_cpus: u64::try_from(row.nano_cpus).map_err(|e| corrupt("replica cpus", e))?,
                ports: parse_ports(&row.ports)?,
            },
            started_at: row.started_at_ms.map(from_millis),
            health_since: row.health_at_ms.map(from_millis),
            deregistered_at: row.deregistered_at_ms.map(from_millis),
        })
    }
}

/// Host ports as a replica row keeps them: `tcp/18081,udp/53`.
pub fn ports_text(ports: &[HostPort]) -> String {
    ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

pub fn parse_ports(text: &str) -> Result<Vec<HostPort>> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| parse_host_port(p).ok_or_else(|| corrupt("replica ports", p)))
        .collect()
}

pub fn parse_host_port(text: &str) -> Option<HostPort> {
    let (protocol, port) = text.split_once('/')?;
    Some(HostPort { protocol: Protocol::parse(protocol, "ports").ok()?, port: port.parse().ok()? })
}

pub fn parse_health(text: Option<&str>) -> Result<Option<Health>> {
    text.map(|h| Health::parse(h).ok_or_else(|| corrupt("replica health", h))).transpose()
}

pub fn replica_id(id: ReplicaId) -> Result<i64> {
    i64::try_from(id.0).map_err(|_| {
        orchestrator_core::Error::not_found(orchestrator_core::error::Kind::Replica, id.to_string()).into()
    })
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = rollouts)]
pub struct RolloutRow {
    pub id: i64,
    pub deployment: String,
    pub from_revision: i64,
    pub to_revision: i64,
    pub restores: Option<i64>,
    pub state: String,
    pub reason: Option<String>,
    pub updated: i64,
    pub healthy: i64,
    pub failed: i64,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// `policy_json::encode_update`.
    pub policy: String,
    pub pulled_at_ms: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = rollouts)]
pub struct NewRolloutRow {
    pub deployment: String,
    pub from_revision: i64,
    pub to_revision: i64,
    pub restores: Option<i64>,
    pub state: &'static str,
    pub started_at_ms: i64,
    pub policy: String,
}

impl TryFrom<RolloutRow> for Rollout {
    type Error = Error;
    fn try_from(row: RolloutRow) -> Result<Rollout> {
        let revision = |what, v: i64| u64::try_from(v).map_err(|e| corrupt(what, e));
        Ok(Rollout {
            id: revision("rollout id", row.id)?,
            deployment: DeploymentName::new(row.deployment).map_err(|e| corrupt("rollout deployment", e))?,
            from_revision: revision("rollout from", row.from_revision)?,
            to_revision: revision("rollout to", row.to_revision)?,
            restores: row.restores.map(|r| revision("rollout restores", r)).transpose()?,
            state: RolloutState::parse(&row.state).ok_or_else(|| corrupt("rollout state", &row.state))?,
            reason: row.reason,
            updated: to_u32("rollout updated", row.updated)?,
            healthy: to_u32("rollout healthy", row.healthy)?,
            failed: to_u32("rollout failed", row.failed)?,
            started_at: from_millis(row.started_at_ms),
            finished_at: row.finished_at_ms.map(from_millis),
            policy: crate::policy_json::decode_update(&row.policy)?,
            pulled_at: row.pulled_at_ms.map(from_millis),
        })
    }
}
