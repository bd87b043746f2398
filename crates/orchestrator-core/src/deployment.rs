//! Deployments: N replicas of one container template (the seed's `container.db` row,
//! normalized: replicas live in their own table, each template change is a kept revision).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::image::ImageRef;
use crate::name::DeploymentName;
use crate::workload::{
    Constraint, HealthCheck, MIN_DURATION, MIN_MEMORY_BYTES, PortSpec, RESERVED_LABEL_PREFIX, Resources,
    check_label_key, is_env_key,
};

/// Bounds an operator may tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_replicas: u32,
    pub max_units: u32,
    pub max_command_args: usize,
    pub max_command_bytes: usize,
    /// Environment variables, labels, ports and constraints each.
    pub max_entries: usize,
    pub max_stop_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_replicas: 10_000,
            max_units: 1_000_000,
            max_command_args: 256,
            max_command_bytes: 16 * 1024,
            max_entries: 256,
            max_stop_grace: Duration::from_secs(3600),
        }
    }
}

impl Limits {
    pub fn check_replicas(&self, replicas: i64) -> Result<u32> {
        u32::try_from(replicas)
            .ok()
            .filter(|r| *r <= self.max_replicas)
            .ok_or_else(|| Error::invalid("replicas", format!("must be 0..={}, got {replicas}", self.max_replicas)))
    }

    pub fn check_units(&self, units: i64) -> Result<u32> {
        u32::try_from(units)
            .ok()
            .filter(|u| (1..=self.max_units).contains(u))
            .ok_or_else(|| Error::invalid("units", format!("must be 1..={}, got {units}", self.max_units)))
    }

    pub fn check_command(&self, command: &[String]) -> Result<()> {
        self.check_arguments("command", command)
    }

    fn check_arguments(&self, field: &str, args: &[String]) -> Result<()> {
        if args.len() > self.max_command_args {
            return Err(Error::invalid(field, format!("at most {} arguments", self.max_command_args)));
        }
        let bytes: usize = args.iter().map(String::len).sum();
        if bytes > self.max_command_bytes {
            return Err(Error::invalid(field, format!("at most {} bytes in all", self.max_command_bytes)));
        }
        if args.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid(field, "arguments may not contain NUL"));
        }
        Ok(())
    }

    fn check_count(&self, field: &str, count: usize) -> Result<()> {
        if count > self.max_entries {
            return Err(Error::invalid(field, format!("at most {} entries", self.max_entries)));
        }
        Ok(())
    }

    fn check_env(&self, env: &BTreeMap<String, String>) -> Result<()> {
        self.check_count("env", env.len())?;
        for (key, value) in env {
            if !is_env_key(key) {
                return Err(Error::invalid(format!("env.{key}"), "a name is [A-Za-z_][A-Za-z0-9_]*"));
            }
            if value.contains('\0') {
                return Err(Error::invalid(format!("env.{key}"), "a value may not contain NUL"));
            }
        }
        Ok(())
    }

    fn check_ports(&self, ports: &[PortSpec]) -> Result<()> {
        self.check_count("ports", ports.len())?;
        for (i, port) in ports.iter().enumerate() {
            if port.target == 0 {
                return Err(Error::invalid(format!("ports[{i}].target"), "must be 1..=65535"));
            }
            let Some(published) = port.published else { continue };
            if published == 0 {
                return Err(Error::invalid(format!("ports[{i}].published"), "must be 1..=65535"));
            }
            let twice = ports[..i].iter().any(|p| p.published == Some(published) && p.protocol == port.protocol);
            if twice {
                return Err(Error::invalid(
                    format!("ports[{i}].published"),
                    format!("{}/{published} is published twice", port.protocol),
                ));
            }
        }
        Ok(())
    }

    fn check_resources(&self, resources: &Resources) -> Result<()> {
        if resources.memory_bytes.is_some_and(|m| m < MIN_MEMORY_BYTES) {
            return Err(Error::invalid("resources.memory", "must be at least 6 MiB (the engine's floor)"));
        }
        if resources.nano_cpus == Some(0) {
            return Err(Error::invalid("resources.cpus", "must be above 0"));
        }
        Ok(())
    }

    fn check_healthcheck(&self, check: &HealthCheck) -> Result<()> {
        let HealthCheck::Command(check) = check else { return Ok(()) };
        self.check_arguments("healthcheck.test", &check.test)?;
        match check.test.first().map(String::as_str) {
            Some("CMD") if check.test.len() >= 2 => {}
            Some("CMD-SHELL") if check.test.len() == 2 => {}
            _ => {
                return Err(Error::invalid(
                    "healthcheck.test",
                    "must be [\"CMD\", program, args..] or [\"CMD-SHELL\", command] (or use {\"disable\": true})",
                ));
            }
        }
        for (field, value) in [
            ("healthcheck.interval", check.interval),
            ("healthcheck.timeout", check.timeout),
            ("healthcheck.start_period", check.start_period),
        ] {
            if value.is_some_and(|d| d < MIN_DURATION) {
                return Err(Error::invalid(field, "must be at least 1ms"));
            }
        }
        Ok(())
    }

    fn check_labels(&self, labels: &BTreeMap<String, String>) -> Result<()> {
        self.check_count("labels", labels.len())?;
        for (key, value) in labels {
            check_label_key(key).map_err(|why| Error::invalid(format!("labels.{key}"), why))?;
            if key.starts_with(RESERVED_LABEL_PREFIX) {
                return Err(Error::invalid(format!("labels.{key}"), format!("{RESERVED_LABEL_PREFIX}* is reserved")));
            }
            if value.contains('\0') {
                return Err(Error::invalid(format!("labels.{key}"), "a value may not contain NUL"));
            }
        }
        Ok(())
    }
}

impl Limits {
    /// Checks a spec against these bounds, naming the field that breaks one.
    pub fn check_spec(&self, spec: &DeploymentSpec) -> Result<()> {
        self.check_replicas(i64::from(spec.replicas))?;
        self.check_units(i64::from(spec.units))?;
        spec.policy.check()?;
        self.check_template(&spec.template)
    }

    pub fn check_template(&self, template: &ContainerTemplate) -> Result<()> {
        self.check_command(&template.command)?;
        self.check_arguments("entrypoint", &template.entrypoint)?;
        self.check_env(&template.env)?;
        self.check_ports(&template.ports)?;
        self.check_resources(&template.resources)?;
        self.check_healthcheck(&template.healthcheck)?;
        self.check_labels(&template.labels)?;
        self.check_count("constraints", template.constraints.len())?;
        if template.max_per_node == Some(0) {
            return Err(Error::invalid("max_per_node", "must be at least 1"));
        }
        if template.stop_grace_period.is_some_and(|d| d > self.max_stop_grace) {
            let max = self.max_stop_grace.as_secs();
            return Err(Error::invalid("stop_grace_period", format!("must be at most {max}s")));
        }
        Ok(())
    }
}

/// What each replica's container runs, and where it may: everything about it but how many. A
/// change to it makes a new revision of the deployment; a new workload feature is a field here
/// (and in the store's encoding, the API's DTO and the runtime), nowhere else in core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerTemplate {
    pub image: ImageRef,
    /// Overrides the image's entrypoint when not empty.
    pub entrypoint: Vec<String>,
    /// Overrides the image's command when not empty.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<PortSpec>,
    pub resources: Resources,
    pub healthcheck: HealthCheck,
    /// Put on each container, beside the orchestrator's own.
    pub labels: BTreeMap<String, String>,
    /// Every one must admit a node for a replica to be placed there.
    pub constraints: Vec<Constraint>,
    /// At most this many replicas on one node.
    pub max_per_node: Option<u32>,
    /// SIGTERM, then this long before SIGKILL; the runtime's default when unset.
    pub stop_grace_period: Option<Duration>,
    /// When an engine pulls the image.
    pub pull: PullPolicy,
}

/// When an engine pulls a replica's image (Kubernetes' `imagePullPolicy`, in its words).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    /// When the engine lacks it: images of a named registry (`host/repo:tag`); one of the
    /// engine's default registry only when the runtime is configured to.
    #[default]
    IfNotPresent,
    /// Before every start, so a moved tag is followed.
    Always,
    /// Never: the image must be on the engine.
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::IfNotPresent => "if_not_present",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "if_not_present" => Ok(PullPolicy::IfNotPresent),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(Error::invalid("pull", format!("{other:?} is not if_not_present, always or never"))),
        }
    }
}

impl ContainerTemplate {
    /// Whether a revision of this template runs its tag pinned to one digest: with
    /// `if_not_present` (the default), as Swarm does, unless the reference carries its digest
    /// already. `always` follows the tag at every start (Kubernetes' `Always`); `never` runs
    /// whatever the engine has.
    pub fn pins_digest(&self) -> bool {
        self.pull == PullPolicy::IfNotPresent && self.image.digest().is_none()
    }

    pub fn new(image: ImageRef) -> Self {
        Self {
            image,
            entrypoint: Vec::new(),
            command: Vec::new(),
            env: BTreeMap::new(),
            ports: Vec::new(),
            resources: Resources::default(),
            healthcheck: HealthCheck::default(),
            labels: BTreeMap::new(),
            constraints: Vec::new(),
            max_per_node: None,
            stop_grace_period: None,
            pull: PullPolicy::IfNotPresent,
        }
    }

    /// Whether a replica in `state` whose health was last seen as `health` is ready to serve:
    /// running, and healthy when there is a check. With a check of our own, not yet observed
    /// is not ready; with the image's (which may have none), only an observed verdict counts.
    pub fn is_ready(&self, state: crate::replica::ReplicaState, health: Option<crate::workload::Health>) -> bool {
        use crate::workload::Health;
        state == crate::replica::ReplicaState::Running
            && match (&self.healthcheck, health) {
                (_, Some(Health::Healthy)) => true,
                (_, Some(Health::Starting | Health::Unhealthy)) => false,
                (HealthCheck::Command(_), None) => false,
                (HealthCheck::Image | HealthCheck::Disabled, None) => true,
            }
    }

    /// Since when `replica` has been ready by this template's rule (see `is_ready`).
    pub fn ready_since(&self, replica: &crate::replica::Replica) -> Option<SystemTime> {
        use crate::workload::Health;
        if !self.is_ready(replica.state, replica.health) {
            return None;
        }
        match replica.health {
            Some(Health::Healthy) => replica.health_since.or(replica.started_at),
            _ => replica.started_at,
        }
    }

    /// Host ports this template holds on a node it runs on, as (port, protocol).
    pub fn published_ports(&self) -> impl Iterator<Item = (u16, crate::workload::Protocol)> + '_ {
        self.ports.iter().filter_map(|p| Some((p.published?, p.protocol)))
    }

    /// What each replica of this template takes from its node besides units.
    pub fn claim(&self) -> crate::workload::Claim {
        let mut ports: Vec<crate::workload::HostPort> =
            self.published_ports().map(|(port, protocol)| crate::workload::HostPort { protocol, port }).collect();
        ports.sort();
        ports.dedup();
        crate::workload::Claim {
            memory_bytes: self.resources.memory_bytes.unwrap_or(0),
            nano_cpus: self.resources.nano_cpus.unwrap_or(0),
            ports,
        }
    }

    /// Whether a node named `node` with `labels` meets every constraint.
    pub fn admits(&self, node: &str, labels: &BTreeMap<String, String>) -> bool {
        self.constraints.iter().all(|c| c.admits(node, labels))
    }

    pub fn with_command(mut self, command: Vec<String>) -> Self {
        self.command = command;
        self
    }
}

/// What an operator asks of a deployment: its container, and how many of it with how much
/// capacity each. Check it with `Limits::check_spec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSpec {
    pub template: ContainerTemplate,
    /// Replicas the operator asked for (the seed's `RequiredNumOfReplicas`).
    pub replicas: u32,
    /// Capacity units each replica reserves on its node.
    pub units: u32,
    /// How template changes roll out and roll back.
    pub policy: crate::rollout::DeployPolicy,
}

impl DeploymentSpec {
    /// `replicas` of `template`, one unit each.
    pub fn new(template: ContainerTemplate, replicas: u32) -> Self {
        Self { template, replicas, units: 1, policy: crate::rollout::DeployPolicy::default() }
    }

    pub fn with_units(mut self, units: u32) -> Self {
        self.units = units;
        self
    }

    /// `replicas` of `image` with its own command, one unit each: what tests and benchmarks
    /// mostly need.
    pub fn of(image: &str, replicas: u32) -> Result<Self> {
        Ok(Self::new(ContainerTemplate::new(ImageRef::parse(image)?), replicas))
    }
}

/// A stored deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub name: DeploymentName,
    pub spec: DeploymentSpec,
    /// Bumped on every change; a write naming an older version is a conflict.
    pub version: u64,
    /// The revision of `spec.template`: 1 at creation, bumped by each change of the template
    /// (not by a scale). Each is kept as a `Revision`.
    pub revision: u64,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    /// Replicas the scheduler could not place at its last try, and why.
    pub unplaced: Option<Unplaced>,
    /// Its replicas keep failing: replacements wait (`None`: no recent failure).
    pub crash_loop: Option<crate::crash_loop::CrashLoop>,
    /// The rollout under way (in progress or paused), if any.
    pub rollout: Option<crate::rollout::RolloutId>,
    /// The digest the current revision's image tag was resolved to (`sha256:...`), once it
    /// was: every replica of the revision runs exactly that image, wherever the tag moves
    /// later. `None` until resolved, and for images that are not pulled from a registry.
    pub image_digest: Option<String>,
}

/// Replicas waiting for a node, and the reason anyone can read (`no online node has tcp/18081
/// free`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    pub count: u32,
    pub reason: String,
}

impl Deployment {
    /// Whether `spec` asks for exactly this deployment as it stands: a create retried after its
    /// answer was lost (or sent twice through a load balancer) finds what it made.
    pub fn is_created_by(&self, spec: &DeploymentSpec) -> bool {
        self.spec == *spec
    }
}

/// The digest a new revision of `template` starts pinned to: a rollback's, the one of the
/// revision it restores (it runs exactly what ran then); otherwise the one the deployment ran
/// if the image reference did not change (an env change does not move the image under the
/// replicas); otherwise none, to be resolved before its first replica starts.
pub fn inherited_digest(
    before: &Deployment,
    template: &ContainerTemplate,
    restored: Option<&Revision>,
) -> Option<String> {
    if let Some(r) = restored
        && r.template.image == template.image
        && r.image_digest.is_some()
    {
        return r.image_digest.clone();
    }
    (before.spec.template.image == template.image && before.spec.template.pull == template.pull)
        .then(|| before.image_digest.clone())
        .flatten()
}

/// Who made a change and why, kept with the revision it makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The id of the token that asked (never the token itself).
    pub by: Option<String>,
    pub cause: Option<String>,
    /// A rollback: the earlier revision whose template the change brings back. The rollout
    /// it starts uses the rollback policy, and the rollout it interrupts ends `rolled_back`.
    pub restores: Option<u64>,
}

impl Change {
    pub fn by(token_id: impl Into<String>) -> Self {
        Self { by: Some(token_id.into()), ..Self::default() }
    }
}

/// One template a deployment has run, as it was made. Immutable once stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub deployment: DeploymentName,
    pub number: u64,
    pub template: ContainerTemplate,
    pub created_at: SystemTime,
    pub by: Option<String>,
    pub cause: Option<String>,
    /// The earlier revision this one brought back (a rollback).
    pub restores: Option<u64>,
    /// The digest its image was pinned to (see `Deployment::image_digest`).
    pub image_digest: Option<String>,
}

/// Revisions a store keeps per deployment unless told otherwise (the newest; the current one
/// always).
pub const REVISIONS_KEPT: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_of_an_image_takes_one_unit_a_replica() {
        let spec = DeploymentSpec::of("local/busybox:1", 3).unwrap();
        assert_eq!(spec.units, 1);
        assert_eq!(spec.replicas, 3);
        assert!(spec.template.command.is_empty());
    }

    #[test]
    fn rejects_out_of_range_values_naming_the_field() {
        let limits = Limits { max_replicas: 5, ..Limits::default() };
        let field = |r: Result<()>| match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        let spec = |replicas| DeploymentSpec::of("a", replicas).unwrap();
        assert_eq!(field(limits.check_spec(&spec(6))), "replicas");
        assert_eq!(field(limits.check_spec(&spec(1).with_units(0))), "units");
        let nul = DeploymentSpec::new(
            ContainerTemplate::new(ImageRef::parse("a").unwrap()).with_command(vec!["\0".into()]),
            1,
        );
        assert_eq!(field(limits.check_spec(&nul)), "command");
        assert!(limits.check_spec(&spec(5)).is_ok());
        assert!(limits.check_spec(&spec(0)).is_ok());
        assert_eq!(field(limits.check_replicas(-1).map(drop)), "replicas");
    }

    #[test]
    fn every_template_field_is_checked_and_named_by_its_path() {
        use crate::workload::{HealthCommand, Protocol};
        let limits = Limits::default();
        let base = || ContainerTemplate::new(ImageRef::parse("a").unwrap());
        let field = |t: ContainerTemplate| match limits.check_template(&t) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        let mut t = base();
        t.env.insert("1BAD".into(), "x".into());
        assert_eq!(field(t), "env.1BAD");
        let mut t = base();
        t.ports = vec![PortSpec::tcp(80, Some(8080)), PortSpec::tcp(81, Some(8080))];
        assert_eq!(field(t), "ports[1].published");
        let mut t = base();
        t.ports = vec![
            PortSpec::tcp(80, Some(8080)),
            PortSpec { target: 81, published: Some(8080), protocol: Protocol::Udp },
        ];
        assert!(limits.check_template(&t).is_ok(), "tcp and udp on one number are two ports");
        let mut t = base();
        t.ports = vec![PortSpec::tcp(0, None)];
        assert_eq!(field(t), "ports[0].target");
        let mut t = base();
        t.resources.memory_bytes = Some(1024);
        assert_eq!(field(t), "resources.memory");
        let mut t = base();
        t.resources.nano_cpus = Some(0);
        assert_eq!(field(t), "resources.cpus");
        let check = |test: Vec<&str>, interval| {
            let mut t = base();
            t.healthcheck = HealthCheck::Command(HealthCommand {
                test: test.into_iter().map(String::from).collect(),
                interval,
                timeout: None,
                retries: None,
                start_period: None,
            });
            t
        };
        assert_eq!(field(check(vec!["wget"], None)), "healthcheck.test");
        assert_eq!(field(check(vec!["CMD-SHELL", "a", "b"], None)), "healthcheck.test");
        assert_eq!(field(check(vec!["CMD", "true"], Some(Duration::from_micros(10)))), "healthcheck.interval");
        assert!(limits.check_template(&check(vec!["CMD-SHELL", "true"], Some(Duration::from_secs(1)))).is_ok());
        let mut t = base();
        t.labels.insert("io.orchestrator.replica".into(), "1".into());
        assert_eq!(field(t), "labels.io.orchestrator.replica");
        let mut t = base();
        t.max_per_node = Some(0);
        assert_eq!(field(t), "max_per_node");
        let mut t = base();
        t.stop_grace_period = Some(Duration::from_secs(7200));
        assert_eq!(field(t), "stop_grace_period");
    }

    #[test]
    fn ready_means_running_and_healthy_where_there_is_a_check() {
        use crate::replica::ReplicaState::{Pending, Running};
        use crate::workload::{Health, HealthCommand};
        let plain = ContainerTemplate::new(ImageRef::parse("a").unwrap());
        assert!(plain.is_ready(Running, None), "no verdict, the image's check (maybe none): ready");
        assert!(!plain.is_ready(Running, Some(Health::Starting)), "the image has a check, still starting");
        assert!(!plain.is_ready(Pending, Some(Health::Healthy)));
        let mut checked = plain.clone();
        checked.healthcheck = HealthCheck::Command(HealthCommand {
            test: vec!["CMD".into(), "true".into()],
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        });
        assert!(!checked.is_ready(Running, None), "our own check, no verdict yet: not ready");
        assert!(checked.is_ready(Running, Some(Health::Healthy)));
        assert!(!checked.is_ready(Running, Some(Health::Unhealthy)));
    }
}
