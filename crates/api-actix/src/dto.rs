//! The wire format: requests (unknown fields refused) and responses.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use orchestrator_core::{Deployment, Node, Replica};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /create`, `POST /v1/deployments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// A Docker image reference, e.g. `local/busybox:1`.
    #[schema(example = "local/busybox:1")]
    pub image: String,
    /// Required replicas, 0..=the server's maximum (10,000 by default).
    #[schema(example = 6)]
    pub replicas: i64,
    /// A DNS label; derived from the image when absent.
    pub name: Option<String>,
    /// The container's command; the image's own when empty.
    #[serde(default)]
    pub command: Vec<String>,
    /// Capacity units one replica takes on its node (default 1).
    pub units: Option<i64>,
}

/// `PATCH /v1/deployments/{name}`: `version` is the one last read; a stale one is a 409.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleDeployment {
    pub replicas: i64,
    pub version: u64,
}

/// `POST /v1/nodes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    pub name: String,
    /// The Docker Engine API: `unix:///path`, `tcp://host:port`, `http://` or `https://`.
    #[schema(example = "tcp://10.123.0.11:2375")]
    pub address: String,
    pub capacity: i64,
}

/// Milliseconds since the Unix epoch, as JSON numbers travel best.
fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Serialize, ToSchema)]
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

#[derive(Debug, Serialize, ToSchema)]
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

#[derive(Debug, Serialize, ToSchema)]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    /// The server that runs the loops now (several may serve the API).
    pub leader: Option<String>,
    pub nodes: Vec<NodeView>,
    pub deployments: Vec<DeploymentView>,
}

/// `POST /v1/deployments/{name}/rebalance`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rebalanced {
    pub deployment: String,
    /// Replicas moved to less loaded nodes.
    pub moved: usize,
}

/// `POST /v1/nodes/{name}/drain`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Drained {
    pub node: String,
    /// Replicas still on the node (0 when drained).
    pub remaining: usize,
}

/// `POST /v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `admin` or `reader`.
    #[schema(example = "reader")]
    pub role: String,
}

/// The new token: its secret is shown here once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: String,
    pub role: &'static str,
    pub token: String,
}

/// One audited mutation.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub at_ms: u64,
    pub token_id: String,
    pub action: String,
    /// The HTTP status it was answered with.
    pub status: u16,
}

impl From<&orchestrator_core::AuditEntry> for AuditView {
    fn from(e: &orchestrator_core::AuditEntry) -> Self {
        Self { at_ms: millis(e.at), token_id: e.token_id.clone(), action: e.action.clone(), status: e.status }
    }
}

/// One event: a change of the cluster's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Grows with every event; resume after it with `?since=` or `Last-Event-ID`.
    pub id: u64,
    pub at_ms: u64,
    /// `node.added|online|offline|draining|removed`, `deployment.created|scaled|deleted`,
    /// `replica.placed|started|exited|lost|removed`, `leader.elected`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<u64>,
    pub message: String,
}

impl From<&orchestrator_core::Event> for EventView {
    fn from(e: &orchestrator_core::Event) -> Self {
        Self {
            id: e.id,
            at_ms: millis(e.at),
            kind: e.kind.as_str(),
            node: e.node.clone(),
            deployment: e.deployment.clone(),
            replica: e.replica,
            message: e.message.clone(),
        }
    }
}
