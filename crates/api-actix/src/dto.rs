//! The wire format: requests (unknown fields refused) and responses.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use orchestrator_core::{
    ContainerTemplate, Deployment, DeploymentName, DeploymentSpec, Error, ImageRef, Limits, NewNode, Node, NodeUpdate,
    Replica, Reserved, Revision,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::grammar;
use crate::rollout_dto::{DeployPolicyView, RolloutView, UpdatePolicyRequest};
pub use crate::template_dto::TemplateView;
use crate::template_dto::{HealthcheckRequest, PortRequest, ResourcesRequest, WorkloadFields};

// The `pattern`s below state in the OpenAPI document exactly what the domain validates (names
// are DNS labels; images Docker references; addresses unix:// paths or host:port), so that a
// client, or a fuzzer, generating from the document finds no disagreement.

/// An integer as JSON Schema counts one: `3` or `3.0` (an integral float), not `3.5`.
pub(crate) fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!("{n} is not an integer in range"))),
    }
}

pub(crate) fn optional_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "integer")] i64);
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

/// A nested request object, refused as a JSON array (which serde would read by position).
pub(crate) fn optional_object<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)?
        .map(|map| serde_json::from_value(serde_json::Value::Object(map)).map_err(serde::de::Error::custom))
        .transpose()
}

/// Request objects, each refused as a JSON array.
pub(crate) fn objects<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<serde_json::Map<String, serde_json::Value>>::deserialize(d)?
        .into_iter()
        .map(|map| serde_json::from_value(serde_json::Value::Object(map)).map_err(serde::de::Error::custom))
        .collect()
}

pub(crate) fn version<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..u64::MAX as f64).contains(&f) => Ok(f as u64),
        _ => Err(serde::de::Error::custom(format!("{n} is not a version (a non-negative integer)"))),
    }
}

/// `POST /create`, `POST /v1/deployments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// A Docker image reference, e.g. `local/busybox:1`.
    #[schema(schema_with = grammar::image_schema)]
    pub image: String,
    /// Required replicas, 0..=the server's maximum (10,000 by default).
    #[schema(example = 6, minimum = 0, maximum = 10_000)]
    #[serde(deserialize_with = "integer")]
    pub replicas: i64,
    /// A DNS label (or one with '_' inside, as a stack's `STACK_SERVICE`); derived from the
    /// image when absent.
    #[schema(pattern = "^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$", min_length = 1, max_length = 63)]
    pub name: Option<String>,
    /// The container's command; the image's own when empty (at most 256 arguments, 16 KiB).
    #[serde(default)]
    #[schema(schema_with = grammar::command_schema)]
    pub command: Vec<String>,
    /// The container's entrypoint; the image's own when empty (bounded as `command` is).
    #[serde(default)]
    #[schema(schema_with = grammar::command_schema)]
    pub entrypoint: Vec<String>,
    /// Capacity units one replica takes on its node (default 1).
    #[schema(minimum = 1, maximum = 1_000_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub units: Option<i64>,
    /// Environment variables: names `[A-Za-z_][A-Za-z0-9_]*`, values without NUL.
    #[serde(default)]
    #[schema(schema_with = grammar::env_schema)]
    pub env: BTreeMap<String, String>,
    /// Container ports published on the node (each published port/protocol once).
    #[serde(default, deserialize_with = "objects")]
    #[schema(schema_with = grammar::ports_schema)]
    pub ports: Vec<PortRequest>,
    #[serde(default, deserialize_with = "optional_object")]
    pub resources: Option<ResourcesRequest>,
    /// Absent: the image's own check; `{"disable": true}`: none.
    #[serde(default, deserialize_with = "optional_object")]
    #[schema(schema_with = grammar::healthcheck_schema)]
    pub healthcheck: Option<HealthcheckRequest>,
    /// Put on each container (`io.orchestrator.*` is reserved).
    #[serde(default)]
    #[schema(schema_with = grammar::labels_schema)]
    pub labels: BTreeMap<String, String>,
    /// `node.labels.KEY == VALUE`, `node.labels.KEY != VALUE`, `node.name == NAME`, `node.name != NAME`.
    #[serde(default)]
    #[schema(schema_with = grammar::constraints_schema)]
    pub constraints: Vec<String>,
    /// At most this many replicas on one node.
    #[serde(default, deserialize_with = "optional_integer")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub max_per_node: Option<i64>,
    /// SIGTERM, then this long before SIGKILL (`"10s"`, `"1m30s"`, at most 1h); the server's
    /// default when absent.
    #[schema(schema_with = grammar::stop_grace_schema)]
    pub stop_grace_period: Option<String>,
    /// When engines pull the image: `if_not_present` (default: an image of a named registry
    /// when the engine lacks it), `always` (before every start), `never`.
    #[schema(pattern = "^(if_not_present|always|never)$", example = "if_not_present")]
    pub pull: Option<String>,
    /// How template changes roll out (see `PATCH`): parallelism 1, max_surge 1, max_unavailable 0,
    /// start-first, monitor 5s, failure_action rollback by default.
    #[serde(default, deserialize_with = "optional_object")]
    #[schema(schema_with = grammar::update_policy_schema)]
    pub update: Option<UpdatePolicyRequest>,
    /// How a rollback replaces replicas (the same keys; failure_action pause by default).
    #[serde(default, deserialize_with = "optional_object")]
    #[schema(schema_with = grammar::update_policy_schema)]
    pub rollback: Option<UpdatePolicyRequest>,
    /// A replica about to be stopped leaves the endpoints this long before its SIGTERM. Default
    /// `2s`, at most `5m`.
    #[schema(schema_with = grammar::deregister_delay_schema)]
    pub deregister_delay: Option<String>,
}

impl CreateDeployment {
    /// The deployment's name (derived from the image when absent) and its spec, checked
    /// against `limits`; an error names the field.
    pub fn into_spec(self, limits: &Limits) -> Result<(DeploymentName, DeploymentSpec), Error> {
        let image = ImageRef::parse(&self.image)?;
        let name = match self.name.as_deref() {
            Some(name) => DeploymentName::new(name)?,
            None => DeploymentName::from_image(&image)?,
        };
        let mut template = ContainerTemplate::new(image).with_command(self.command);
        template.entrypoint = self.entrypoint;
        let workload = WorkloadFields {
            env: self.env,
            ports: self.ports,
            resources: self.resources,
            healthcheck: self.healthcheck,
            labels: self.labels,
            constraints: self.constraints,
            max_per_node: self.max_per_node,
            stop_grace_period: self.stop_grace_period,
            pull: self.pull,
        };
        workload.apply(&mut template)?;
        limits.check_template(&template)?;
        let mut spec = DeploymentSpec::new(template, limits.check_replicas(self.replicas)?)
            .with_units(limits.check_units(self.units.unwrap_or(1))?);
        spec.policy = crate::rollout_dto::policy(spec.policy, self.update, self.rollback, self.deregister_delay)?;
        Ok((name, spec))
    }
}

/// `POST /v1/nodes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", min_length = 1, max_length = 63)]
    pub name: String,
    /// The Docker Engine API: `unix:///path`, `tcp://host:port`, `http://` or `https://`.
    #[schema(
        example = "tcp://192.0.2.10:2375",
        pattern = "^(unix:///[^\\u0000]+|(tcp|http|https)://[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})/?)$",
        max_length = 268
    )]
    pub address: String,
    #[schema(minimum = 0, maximum = 4_294_967_295_u64)]
    #[serde(deserialize_with = "integer")]
    pub capacity: i64,
    /// What constraints look at: `{"zone": "a"}`.
    #[serde(default)]
    #[schema(schema_with = grammar::node_labels_schema)]
    pub labels: BTreeMap<String, String>,
    /// Where its published ports are reached; the engine address's host by default (required
    /// for a `unix://` node that runs replicas publishing ports). A host name, an IPv4
    /// address or a bracketed IPv6 one.
    #[schema(schema_with = grammar::public_host_schema)]
    pub public_host: Option<String>,
}

impl AddNode {
    pub fn into_new_node(self) -> Result<NewNode, Error> {
        NewNode::new(&self.name, &self.address, self.capacity)?
            .with_labels(self.labels)?
            .with_public_host(self.public_host)
    }
}

/// `PATCH /v1/nodes/{name}`: the fields given replace the node's; nothing placed moves.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNode {
    /// The node's labels, all of them (`{}` clears them).
    #[schema(schema_with = grammar::node_labels_schema_or_null)]
    pub labels: Option<BTreeMap<String, String>>,
    /// A host, or `null` to go back to the engine address's host.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = grammar::public_host_schema)]
    pub public_host: Option<Option<String>>,
}

/// A field that may be absent (outer `None`) or `null` (inner `None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl UpdateNode {
    pub fn into_update(self) -> Result<NodeUpdate, Error> {
        if let Some(labels) = &self.labels {
            orchestrator_core::node::check_node_labels(labels)?;
        }
        if let Some(Some(host)) = &self.public_host {
            orchestrator_core::node::check_public_host(host)?;
        }
        Ok(NodeUpdate { labels: self.labels, public_host: self.public_host, engine: None })
    }
}

/// Milliseconds since the Unix epoch, as JSON numbers travel best.
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub name: String,
    pub address: String,
    pub capacity: u32,
    pub available: u32,
    pub status: &'static str,
    /// Its last answered heartbeat. In the whole `/status` document, as of the document's
    /// making: heartbeats alone do not make a new one (`GET /v1/nodes/{name}` reads it fresh).
    pub last_heartbeat_ms: Option<u64>,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_host: Option<String>,
    /// CPUs and memory its engine reported at first contact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineView>,
    /// What its replicas' limits and fixed published ports hold of it (left out when nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved: Option<ReservedView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EngineView {
    pub cpus: u32,
    pub memory_bytes: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReservedView {
    pub memory_bytes: u64,
    pub cpus: f64,
    /// Host ports held, as `tcp/18081`.
    pub ports: Vec<String>,
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
            labels: n.labels.clone(),
            public_host: n.public_host.clone(),
            engine: n.engine.map(|e| EngineView { cpus: e.cpus, memory_bytes: e.memory_bytes }),
            reserved: (n.reserved != Reserved::default()).then(|| ReservedView {
                memory_bytes: n.reserved.memory_bytes,
                cpus: n.reserved.nano_cpus as f64 / 1e9,
                ports: n.reserved.ports.iter().map(ToString::to_string).collect(),
            }),
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
    /// The health check's last verdict: `starting`, `healthy` or `unhealthy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<&'static str>,
    /// The deployment revision whose template it runs.
    pub revision: u64,
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
            health: r.health.map(orchestrator_core::Health::as_str),
            revision: r.revision,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentView {
    pub name: String,
    #[serde(flatten)]
    pub template: TemplateView,
    /// Replicas asked for (the seed's RequiredNumOfReplicas).
    pub required: u32,
    /// Replicas ready now (the seed's actualNumOfReplicas): running, and healthy where the
    /// template has a health check.
    pub actual: usize,
    pub units: u32,
    pub version: u64,
    /// The revision of its template: 1 at creation, one more for each template change.
    pub revision: u64,
    /// The digest the revision's image tag was resolved to, which every replica of the
    /// revision runs (`image@digest`); absent until resolved, and for images not pulled from
    /// a registry or with `pull` `always` (which follows the tag) or `never`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "sha256:6f0bd4a5b1c3e8f2a7d9c0b4e1f3a5c7d9e2b4f6a8c0d2e4f6a8b0c2d4e6f8a0")]
    pub image_digest: Option<String>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Replicas that wait for a node, and why (`no online node has tcp/18081 free`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unplaced: Option<UnplacedView>,
    /// Its replicas keep failing (exiting, or failing their health check): each replacement
    /// waits 1 s doubling to 5 min; 10 min without a failure ends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_looping: Option<CrashLoopView>,
    /// How template changes roll out and roll back.
    #[serde(flatten)]
    pub policy: DeployPolicyView,
    /// The rollout under way (in progress or paused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<ReplicaView>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnplacedView {
    pub count: u32,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CrashLoopView {
    /// Failures in a row.
    pub restarts: u32,
    /// Of the last container that exited.
    pub last_exit_code: Option<i64>,
    /// Why the last replica ended, in words (`image not pulled: ... unauthorized ...`), from
    /// the replicas' kept history (in `/status` and the answer for one deployment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    pub last_failure_ms: u64,
    /// No replacement starts before this.
    pub retry_at_ms: u64,
}

impl DeploymentView {
    /// `replicas` are the deployment's active replicas; listed in the view when `detailed`.
    pub fn new(d: &Deployment, replicas: &[&Replica], addresses: &Addresses, detailed: bool) -> Self {
        Self {
            name: d.name.to_string(),
            template: TemplateView::new(&d.spec.template),
            required: d.spec.replicas,
            actual: replicas.iter().filter(|r| d.spec.template.is_ready(r.state, r.health)).count(),
            units: d.spec.units,
            version: d.version,
            revision: d.revision,
            image_digest: d.image_digest.clone(),
            created_at_ms: millis(d.created_at),
            updated_at_ms: millis(d.updated_at),
            unplaced: d.unplaced.as_ref().map(|u| UnplacedView { count: u.count, reason: u.reason.clone() }),
            crash_looping: d.crash_loop.as_ref().map(|c| CrashLoopView {
                restarts: c.restarts,
                last_exit_code: c.last_exit_code,
                last_failure: None,
                last_failure_ms: millis(c.last_failure_at),
                retry_at_ms: millis(c.retry_at),
            }),
            policy: DeployPolicyView::new(&d.spec.policy),
            rollout: None,
            replicas: detailed.then(|| replicas.iter().map(|r| ReplicaView::new(r, addresses)).collect()),
        }
    }

    /// Says why its replicas keep failing, if they do: `last` is the newest kept end.
    pub fn with_last_failure(mut self, last: Option<&orchestrator_core::ReplicaExit>) -> Self {
        if let (Some(crash), Some(last)) = (&mut self.crash_looping, last) {
            crash.last_failure = Some(last.reason.to_string());
        }
        self
    }

    pub fn with_rollout(mut self, rollout: Option<&orchestrator_core::Rollout>) -> Self {
        self.rollout = rollout.filter(|r| r.state.is_active()).map(RolloutView::new);
        self
    }
}

impl DeploymentView {
    /// Without replica details, `running` counted by the store.
    pub fn counted(d: &Deployment, running: u64) -> Self {
        let mut view = Self::new(d, &[], &Addresses::default(), false);
        view.actual = usize::try_from(running).unwrap_or(usize::MAX);
        view
    }
}

/// One kept revision of a deployment's template.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevisionView {
    pub revision: u64,
    pub created_at_ms: u64,
    /// The id of the token that made it (never the token).
    pub by: Option<String>,
    pub cause: Option<String>,
    /// A rollback's revision: the earlier one whose template it brought back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restores: Option<u64>,
    /// The digest its image was pinned to, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    pub template: TemplateView,
}

impl RevisionView {
    pub fn new(r: &Revision) -> Self {
        Self {
            revision: r.number,
            created_at_ms: millis(r.created_at),
            by: r.by.clone(),
            cause: r.cause.clone(),
            restores: r.restores,
            image_digest: r.image_digest.clone(),
            template: TemplateView::new(&r.template),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    /// The server that runs the loops now (several may serve the API).
    pub leader: Option<String>,
    /// Every node; in a filtered or paged view, the nodes its replicas run on (and the
    /// `node` asked for).
    pub nodes: Vec<NodeView>,
    /// In name order when paged.
    pub deployments: Vec<DeploymentView>,
    /// Paged views: the `cursor` of the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /status/summary`: the cluster in numbers, whatever its size.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusSummary {
    pub leader: Option<String>,
    pub nodes: NodeCounts,
    pub deployments: DeploymentCounts,
    pub replicas: ReplicaCounts,
}

#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct NodeCounts {
    pub total: u64,
    pub online: u64,
    pub offline: u64,
    pub draining: u64,
    /// Units over all nodes, and the units not reserved by replicas.
    pub capacity: u64,
    pub available: u64,
}

#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct DeploymentCounts {
    pub total: u64,
    /// Running fewer replicas than required.
    pub degraded: u64,
}

#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct ReplicaCounts {
    /// The sum of every deployment's required count.
    pub required: u64,
    pub running: u64,
    /// Running, and healthy where there is a health check.
    pub ready: u64,
    /// Placed, container not (yet) running.
    pub pending: u64,
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
    #[schema(example = "reader", pattern = "^(admin|reader)$")]
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
    /// `node.added|online|offline|draining|updated|removed`,
    /// `deployment.created|scaled|updated|unplaced|crash_looping|deleted`,
    /// `replica.placed|started|exited|health|deregistered|lost|removed`, `leader.elected`,
    /// `rollout.started|progressed|paused|resumed|succeeded|failed|rolled_back`,
    /// `image.pulling|pulled|pull_failed` (an engine's pull ahead of a rollout).
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

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct N {
        #[serde(deserialize_with = "super::integer")]
        n: i64,
    }

    #[test]
    fn an_integral_float_is_read_exactly_as_the_integer_it_is() {
        let read = |json: &str| serde_json::from_str::<N>(json).map(|v| v.n);
        assert_eq!(read(r#"{"n": 1887361693536675.0}"#).unwrap(), 1_887_361_693_536_675);
        assert_eq!(read(r#"{"n": 3.0}"#).unwrap(), 3);
        assert!(read(r#"{"n": 3.5}"#).is_err());
    }
}
