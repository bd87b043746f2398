//! Deployments: N replicas of one container template (the seed's `container.db` row,
//! normalized: replicas live in their own table, each template change is a kept revision).

use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::image::ImageRef;
use crate::name::DeploymentName;

/// Bounds an operator may tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_replicas: u32,
    pub max_units: u32,
    pub max_command_args: usize,
    pub max_command_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_replicas: 10_000, max_units: 1_000_000, max_command_args: 256, max_command_bytes: 16 * 1024 }
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
        if command.len() > self.max_command_args {
            return Err(Error::invalid("command", format!("at most {} arguments", self.max_command_args)));
        }
        let bytes: usize = command.iter().map(String::len).sum();
        if bytes > self.max_command_bytes {
            return Err(Error::invalid("command", format!("at most {} bytes in all", self.max_command_bytes)));
        }
        if command.iter().any(|a| a.contains('\0')) {
            return Err(Error::invalid("command", "arguments may not contain NUL"));
        }
        Ok(())
    }
}

impl Limits {
    /// Checks a spec against these bounds, naming the field that breaks one.
    pub fn check_spec(&self, spec: &DeploymentSpec) -> Result<()> {
        self.check_replicas(i64::from(spec.replicas))?;
        self.check_units(i64::from(spec.units))?;
        self.check_template(&spec.template)
    }

    pub fn check_template(&self, template: &ContainerTemplate) -> Result<()> {
        self.check_command(&template.command)
    }
}

/// What each replica's container runs: everything about it but how many and where. A change
/// to it makes a new revision of the deployment; the fields the next workload features need
/// (env, ports, resources, health check, ...) go here, and nowhere else in core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerTemplate {
    pub image: ImageRef,
    /// Overrides the image's command when not empty.
    pub command: Vec<String>,
}

impl ContainerTemplate {
    pub fn new(image: ImageRef) -> Self {
        Self { image, command: Vec::new() }
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
}

impl DeploymentSpec {
    /// `replicas` of `template`, one unit each.
    pub fn new(template: ContainerTemplate, replicas: u32) -> Self {
        Self { template, replicas, units: 1 }
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
}

impl Deployment {
    /// Whether `spec` asks for exactly this deployment as it stands: a create retried after its
    /// answer was lost (or sent twice through a load balancer) finds what it made.
    pub fn is_created_by(&self, spec: &DeploymentSpec) -> bool {
        self.spec == *spec
    }
}

/// Who made a change and why, kept with the revision it makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The id of the token that asked (never the token itself).
    pub by: Option<String>,
    pub cause: Option<String>,
}

impl Change {
    pub fn by(token_id: impl Into<String>) -> Self {
        Self { by: Some(token_id.into()), cause: None }
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
}
