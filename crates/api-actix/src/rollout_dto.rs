//! Updates and rollouts on the wire: the `PATCH /v1/deployments/{name}` body (any template
//! field, replicas, the policies), the policies' and rollouts' views, and a dry run's plan.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_core::{
    DeployPolicy, DeploymentSpec, Error, FailureAction, ImageRef, Limits, Rollout, RolloutPlan, UpdateOrder,
    UpdatePolicy,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::{millis, optional_integer, optional_object};
use crate::grammar::{self, format_duration, parse_duration};
use crate::template_dto::{HealthcheckRequest, PortRequest, ResourcesRequest, WorkloadFields};

/// How replicas are replaced; every key optional (the deployment's current value stays).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicyRequest {
    /// Replicas replaced at once; 0 = all at once. Default 1.
    #[serde(default, deserialize_with = "optional_integer")]
    #[schema(minimum = 0, maximum = 10_000)]
    pub parallelism: Option<i64>,
    /// Replicas beyond `replicas` while replacing. Default 1.
    #[serde(default, deserialize_with = "optional_integer")]
    #[schema(minimum = 0, maximum = 10_000)]
    pub max_surge: Option<i64>,
    /// Ready replicas below `replicas` while replacing. Default 0. Not 0 together with `max_surge`.
    #[serde(default, deserialize_with = "optional_integer")]
    #[schema(minimum = 0, maximum = 10_000)]
    pub max_unavailable: Option<i64>,
    /// `start-first` (default) or `stop-first` (no surge; one at a time unavailable at least).
    #[schema(example = "start-first", pattern = "^(start-first|stop-first)$")]
    pub order: Option<String>,
    /// How long a new replica must stay ready before it counts as updated. Default `5s`, at
    /// most `1h`.
    #[schema(schema_with = grammar::monitor_schema)]
    pub monitor: Option<String>,
    /// `rollback` (default for updates), `pause` (default for rollbacks) or `continue`.
    #[schema(example = "rollback", pattern = "^(rollback|pause|continue)$")]
    pub failure_action: Option<String>,
    /// Failed new replicas allowed, as a share of those started (0..=1). Default 0.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub max_failure_ratio: Option<f64>,
    /// The whole rollout must be done within this. Default `10m`; at least `monitor`, at most `24h`.
    #[schema(schema_with = grammar::progress_deadline_schema)]
    pub progress_deadline: Option<String>,
    /// A new replica must be ready within this of its start (after any pull). Default `1m`,
    /// 1ms to 1h.
    #[schema(schema_with = grammar::ready_deadline_schema)]
    pub ready_deadline: Option<String>,
}

fn count(field: String, value: i64) -> Result<u32, Error> {
    u32::try_from(value)
        .ok()
        .filter(|v| *v <= 10_000)
        .ok_or_else(|| Error::invalid(field, format!("must be 0..=10000, got {value}")))
}

impl UpdatePolicyRequest {
    /// `base` with the keys given; errors name `prefix.key`.
    pub fn apply(self, prefix: &str, mut p: UpdatePolicy) -> Result<UpdatePolicy, Error> {
        let field = |key: &str| format!("{prefix}.{key}");
        if let Some(v) = self.parallelism {
            p.parallelism = count(field("parallelism"), v)?;
        }
        if let Some(v) = self.max_surge {
            p.max_surge = count(field("max_surge"), v)?;
        }
        if let Some(v) = self.max_unavailable {
            p.max_unavailable = count(field("max_unavailable"), v)?;
        }
        if let Some(v) = self.order {
            p.order = UpdateOrder::parse(&v)
                .ok_or_else(|| Error::invalid(field("order"), format!("{v:?} is not start-first or stop-first")))?;
        }
        if let Some(v) = self.failure_action {
            p.failure_action = FailureAction::parse(&v).ok_or_else(|| {
                Error::invalid(field("failure_action"), format!("{v:?} is not rollback, pause or continue"))
            })?;
        }
        if let Some(v) = self.max_failure_ratio {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::invalid(field("max_failure_ratio"), format!("must be 0..=1, got {v}")));
            }
            p.max_failure_permille = (v * 1000.0).round() as u16;
        }
        let duration = |key: &str, v: Option<String>, d: &mut Duration| -> Result<(), Error> {
            if let Some(text) = v {
                *d = parse_duration(&field(key), &text)?;
            }
            Ok(())
        };
        duration("monitor", self.monitor, &mut p.monitor)?;
        duration("progress_deadline", self.progress_deadline, &mut p.progress_deadline)?;
        duration("ready_deadline", self.ready_deadline, &mut p.ready_deadline)?;
        Ok(p)
    }
}

/// `PATCH /v1/deployments/{name}`: `version` is the one last read (a stale one is a 409);
/// every other field is optional and replaces what the deployment has. A template field that
/// changes makes a new revision and starts a rollout; `replicas` alone scales.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeployment {
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "crate::dto::version")]
    pub version: u64,
    #[schema(minimum = 0, maximum = 10_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub replicas: Option<i64>,
    /// Why, kept with the revision it makes (`"fix the greeting"`).
    #[schema(max_length = 1024)]
    pub cause: Option<String>,
    #[schema(schema_with = grammar::image_schema_or_null)]
    pub image: Option<String>,
    #[schema(schema_with = grammar::command_schema_or_null)]
    pub command: Option<Vec<String>>,
    #[schema(schema_with = grammar::command_schema_or_null)]
    pub entrypoint: Option<Vec<String>>,
    #[schema(minimum = 1, maximum = 1_000_000)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub units: Option<i64>,
    #[schema(schema_with = grammar::env_schema_or_null)]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "optional_objects")]
    #[schema(schema_with = grammar::ports_schema_or_null)]
    pub ports: Option<Vec<PortRequest>>,
    #[serde(default, deserialize_with = "optional_object")]
    pub resources: Option<ResourcesRequest>,
    #[serde(default, deserialize_with = "optional_object")]
    #[schema(schema_with = grammar::healthcheck_schema)]
    pub healthcheck: Option<HealthcheckRequest>,
    #[schema(schema_with = grammar::labels_schema_or_null)]
    pub labels: Option<BTreeMap<String, String>>,
    #[schema(schema_with = grammar::constraints_schema_or_null)]
    pub constraints: Option<Vec<String>>,
    #[serde(default, deserialize_with = "optional_integer")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub max_per_node: Option<i64>,
    #[schema(schema_with = grammar::stop_grace_schema)]
    pub stop_grace_period: Option<String>,
    #[schema(pattern = "^(if_not_present|always|never)$", example = "always")]
    pub pull: Option<String>,
    #[serde(default, deserialize_with = "optional_object")]
    #[schema(schema_with = grammar::update_policy_schema)]
    pub update: Option<UpdatePolicyRequest>,
    /// How a rollback replaces replicas (the same keys as `update`).
    #[serde(default, deserialize_with = "optional_object")]
    #[schema(schema_with = grammar::update_policy_schema)]
    pub rollback: Option<UpdatePolicyRequest>,
    /// A replica about to be stopped leaves the endpoints this long before its SIGTERM. Default
    /// `2s`, at most `5m`.
    #[schema(schema_with = grammar::deregister_delay_schema)]
    pub deregister_delay: Option<String>,
}

fn optional_objects<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(bound = "T: serde::de::DeserializeOwned")]
    struct Wrapped<T>(#[serde(deserialize_with = "crate::dto::objects")] Vec<T>);
    Ok(Option::<Wrapped<T>>::deserialize(d)?.map(|w| w.0))
}

impl UpdateDeployment {
    /// Whether the body asks for nothing but a scale (the seed's PATCH).
    pub fn is_scale_only(&self) -> bool {
        self.replicas.is_some()
            && self.image.is_none()
            && self.command.is_none()
            && self.entrypoint.is_none()
            && self.units.is_none()
            && self.env.is_none()
            && self.ports.is_none()
            && self.resources.is_none()
            && self.healthcheck.is_none()
            && self.labels.is_none()
            && self.constraints.is_none()
            && self.max_per_node.is_none()
            && self.stop_grace_period.is_none()
            && self.pull.is_none()
            && self.update.is_none()
            && self.rollback.is_none()
            && self.deregister_delay.is_none()
    }

    /// `current` with the fields given, checked against `limits`; and the cause.
    pub fn into_spec(
        self,
        current: &DeploymentSpec,
        limits: &Limits,
    ) -> Result<(DeploymentSpec, Option<String>), Error> {
        let mut spec = current.clone();
        let t = &mut spec.template;
        if let Some(image) = &self.image {
            t.image = ImageRef::parse(image)?;
        }
        if let Some(command) = self.command {
            t.command = command;
        }
        if let Some(entrypoint) = self.entrypoint {
            t.entrypoint = entrypoint;
        }
        // The workload fields through the create's own parser, then only those given kept.
        let mut parsed = t.clone();
        let given = (
            self.env.is_some(),
            self.ports.is_some(),
            self.labels.is_some(),
            self.constraints.is_some(),
            self.max_per_node.is_some(),
            self.stop_grace_period.is_some(),
            self.pull.is_some(),
        );
        WorkloadFields {
            env: self.env.unwrap_or_default(),
            ports: self.ports.unwrap_or_default(),
            resources: self.resources,
            healthcheck: self.healthcheck,
            labels: self.labels.unwrap_or_default(),
            constraints: self.constraints.unwrap_or_default(),
            max_per_node: self.max_per_node,
            stop_grace_period: self.stop_grace_period,
            pull: self.pull,
        }
        .apply(&mut parsed)?;
        t.resources = parsed.resources;
        t.healthcheck = parsed.healthcheck;
        if given.0 {
            t.env = parsed.env;
        }
        if given.1 {
            t.ports = parsed.ports;
        }
        if given.2 {
            t.labels = parsed.labels;
        }
        if given.3 {
            t.constraints = parsed.constraints;
        }
        if given.4 {
            t.max_per_node = parsed.max_per_node;
        }
        if given.5 {
            t.stop_grace_period = parsed.stop_grace_period;
        }
        if given.6 {
            t.pull = parsed.pull;
        }
        limits.check_template(&spec.template)?;
        if let Some(replicas) = self.replicas {
            spec.replicas = limits.check_replicas(replicas)?;
        }
        if let Some(units) = self.units {
            spec.units = limits.check_units(units)?;
        }
        spec.policy = policy(spec.policy, self.update, self.rollback, self.deregister_delay)?;
        if self.cause.as_ref().is_some_and(|c| c.len() > 1024 || c.contains('\0')) {
            return Err(Error::invalid("cause", "at most 1024 bytes, without NUL"));
        }
        Ok((spec, self.cause))
    }
}

/// `base` with the policy keys a request gives, checked.
pub fn policy(
    base: DeployPolicy,
    update: Option<UpdatePolicyRequest>,
    rollback: Option<UpdatePolicyRequest>,
    deregister_delay: Option<String>,
) -> Result<DeployPolicy, Error> {
    let mut p = base;
    if let Some(u) = update {
        p.update = u.apply("update", p.update)?;
    }
    if let Some(r) = rollback {
        p.rollback = r.apply("rollback", p.rollback)?;
    }
    if let Some(d) = deregister_delay {
        p.deregister_delay = parse_duration("deregister_delay", &d)?;
    }
    p.check()?;
    Ok(p)
}

/// `POST /v1/deployments/{name}/rollback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackDeployment {
    #[schema(minimum = 0)]
    #[serde(deserialize_with = "crate::dto::version")]
    pub version: u64,
    /// The kept revision to go back to; default: the one before the current.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub to_revision: Option<i64>,
}

/// How replicas are replaced, as an update takes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdatePolicyView {
    pub parallelism: u32,
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub order: &'static str,
    pub monitor: String,
    pub failure_action: &'static str,
    pub max_failure_ratio: f64,
    pub progress_deadline: String,
    pub ready_deadline: String,
}

impl UpdatePolicyView {
    pub fn new(p: &UpdatePolicy) -> Self {
        Self {
            parallelism: p.parallelism,
            max_surge: p.max_surge,
            max_unavailable: p.max_unavailable,
            order: p.order.as_str(),
            monitor: format_duration(p.monitor),
            failure_action: p.failure_action.as_str(),
            max_failure_ratio: p.max_failure_ratio(),
            progress_deadline: format_duration(p.progress_deadline),
            ready_deadline: format_duration(p.ready_deadline),
        }
    }
}

/// One rollout: from which revision to which, how far it got, how it ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutView {
    pub id: u64,
    pub deployment: String,
    pub from_revision: u64,
    pub to_revision: u64,
    /// A rollback: the revision whose template it brings back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restores: Option<u64>,
    /// `in_progress`, `paused`, `succeeded`, `failed` or `rolled_back`.
    #[schema(example = "in_progress")]
    pub state: &'static str,
    /// Why it paused, failed or rolled back; while in progress, what it waits on.
    pub reason: Option<String>,
    /// Replicas running the new revision.
    pub updated: u32,
    /// Of those, ready for `monitor`.
    pub healthy: u32,
    /// New replicas that failed.
    pub failed: u32,
    pub started_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub policy: UpdatePolicyView,
}

impl RolloutView {
    pub fn new(r: &Rollout) -> Self {
        Self {
            id: r.id,
            deployment: r.deployment.to_string(),
            from_revision: r.from_revision,
            to_revision: r.to_revision,
            restores: r.restores,
            state: r.state.as_str(),
            reason: r.reason.clone(),
            updated: r.updated,
            healthy: r.healthy,
            failed: r.failed,
            started_at_ms: millis(r.started_at),
            finished_at_ms: r.finished_at.map(millis),
            policy: UpdatePolicyView::new(&r.policy),
        }
    }
}

/// A deployment's update and rollback policies, as `deploy get` shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeployPolicyView {
    pub update: UpdatePolicyView,
    pub rollback: UpdatePolicyView,
    pub deregister_delay: String,
}

impl DeployPolicyView {
    pub fn new(p: &DeployPolicy) -> Self {
        Self {
            update: UpdatePolicyView::new(&p.update),
            rollback: UpdatePolicyView::new(&p.rollback),
            deregister_delay: format_duration(p.deregister_delay),
        }
    }
}

/// One planned action of a dry run.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlannedActionView {
    /// Actions of one step happen together; each step after the new replicas before it are ready.
    pub step: u32,
    /// `start` or `stop`.
    pub action: &'static str,
    pub node: String,
    /// The replica stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<u64>,
    pub revision: u64,
    /// Why a stop comes before its replacement's start where start-first cannot fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// `PATCH ...?dry_run=true`: what the update would do. Nothing changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdatePlanView {
    pub dry_run: bool,
    /// Whether the template changes (a rollout would start).
    pub rollout: bool,
    pub from_revision: u64,
    pub to_revision: u64,
    pub policy: UpdatePolicyView,
    pub plan: Vec<PlannedActionView>,
    /// Set when the plan cannot finish, and why.
    pub stuck: Option<String>,
}

impl UpdatePlanView {
    pub fn new(p: &RolloutPlan) -> Self {
        Self {
            dry_run: true,
            rollout: p.to_revision != p.from_revision,
            from_revision: p.from_revision,
            to_revision: p.to_revision,
            policy: UpdatePolicyView::new(&p.policy),
            plan: p
                .actions
                .iter()
                .map(|a| PlannedActionView {
                    step: a.step,
                    action: a.kind.as_str(),
                    node: a.node.to_string(),
                    replica: a.replica.map(|r| r.0),
                    revision: a.revision,
                    why: a.why.clone(),
                })
                .collect(),
            stuck: p.stuck.clone(),
        }
    }
}
