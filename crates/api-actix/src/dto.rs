//! The wire format: requests (unknown fields refused) and responses.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use orchestrator_core::{Deployment, Node, Replica};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    pub image: String,
    pub replicas: i64,
    pub name: Option<String>,
    #[serde(default)]
    pub command: Vec<String>,
    pub units: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleDeployment {
    pub replicas: i64,
    pub version: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    pub name: String,
    pub address: String,
    pub capacity: i64,
}

/// Milliseconds since the Unix epoch, as JSON numbers travel best.
fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub name: String,
    pub address: String,
    pub capacity: u32,
    pub available: u32,
    pub status: &'static str,
    pub last_heartbeat_ms: Option<u64>,
}

impl From<&Node> for NodeView {
    fn from(n: &Node) -> Self {
        Self {
            name: n.name.to_string(),
            address: n.address.to_string(),
            capacity: n.capacity,
            available: n.available,
            status: n.status.as_str(),
            last_heartbeat_ms: n.last_heartbeat.map(millis),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ReplicaView {
    pub id: u64,
    pub node: String,
    pub node_address: Option<String>,
    pub container_id: Option<String>,
    pub state: &'static str,
}

/// Node name to address, looked up once per replica.
#[derive(Default)]
pub struct Addresses(HashMap<String, String>);

impl Addresses {
    pub fn new(nodes: &[Node]) -> Self {
        Self(nodes.iter().map(|n| (n.name.to_string(), n.address.to_string())).collect())
    }
}

impl ReplicaView {
    pub fn new(r: &Replica, addresses: &Addresses) -> Self {
        Self {
            id: r.id.0,
            node: r.node.to_string(),
            node_address: addresses.0.get(r.node.as_str()).cloned(),
            container_id: r.container_id.clone(),
            state: r.state.as_str(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DeploymentView {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    /// Replicas asked for (the seed's RequiredNumOfReplicas).
    pub required: u32,
    /// Replicas running now (the seed's actualNumOfReplicas).
    pub actual: usize,
    pub units: u32,
    pub version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<ReplicaView>>,
}

impl DeploymentView {
    /// `replicas` are the deployment's active replicas; listed in the view when `detailed`.
    pub fn new(d: &Deployment, replicas: &[&Replica], addresses: &Addresses, detailed: bool) -> Self {
        Self {
            name: d.name.to_string(),
            image: d.image.to_string(),
            command: d.command.clone(),
            required: d.replicas,
            actual: replicas.iter().filter(|r| r.state == orchestrator_core::ReplicaState::Running).count(),
            units: d.units,
            version: d.version,
            created_at_ms: millis(d.created_at),
            updated_at_ms: millis(d.updated_at),
            replicas: detailed.then(|| replicas.iter().map(|r| ReplicaView::new(r, addresses)).collect()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub nodes: Vec<NodeView>,
    pub deployments: Vec<DeploymentView>,
}
