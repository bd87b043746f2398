//! Deployments: N replicas of one image (the seed's `container.db` row, normalized: replicas
//! live in their own table).

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

/// What an operator asks for; validated on construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSpec {
    pub name: DeploymentName,
    pub image: ImageRef,
    /// Overrides the image's command when not empty.
    pub command: Vec<String>,
    pub replicas: u32,
    /// Capacity units each replica reserves on its node.
    pub units: u32,
}

impl DeploymentSpec {
    /// Builds a spec from raw input; `name` defaults to one derived from the image, `units` to 1.
    pub fn new(
        name: Option<&str>,
        image: &str,
        command: Vec<String>,
        replicas: i64,
        units: Option<i64>,
        limits: &Limits,
    ) -> Result<Self> {
        let image = ImageRef::parse(image)?;
        let name = match name {
            Some(name) => DeploymentName::new(name)?,
            None => DeploymentName::from_image(&image)?,
        };
        limits.check_command(&command)?;
        Ok(Self {
            name,
            image,
            command,
            replicas: limits.check_replicas(replicas)?,
            units: limits.check_units(units.unwrap_or(1))?,
        })
    }
}

/// A stored deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub name: DeploymentName,
    pub image: ImageRef,
    pub command: Vec<String>,
    /// Replicas the operator asked for (the seed's `RequiredNumOfReplicas`).
    pub replicas: u32,
    pub units: u32,
    /// Bumped on every change; a write naming an older version is a conflict.
    pub version: u64,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl Deployment {
    /// Whether `spec` asks for exactly this deployment as it stands: a create retried after its
    /// answer was lost (or sent twice through a load balancer) finds what it made.
    pub fn is_created_by(&self, spec: &DeploymentSpec) -> bool {
        self.name == spec.name
            && self.image == spec.image
            && self.command == spec.command
            && self.replicas == spec.replicas
            && self.units == spec.units
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_name_and_units() {
        let spec = DeploymentSpec::new(None, "local/busybox:1", vec![], 3, None, &Limits::default()).unwrap();
        assert_eq!(spec.name.as_str(), "busybox");
        assert_eq!(spec.units, 1);
        assert_eq!(spec.replicas, 3);
    }

    #[test]
    fn rejects_out_of_range_values_naming_the_field() {
        let limits = Limits { max_replicas: 5, ..Limits::default() };
        let field = |r: Result<DeploymentSpec>| match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field(DeploymentSpec::new(None, "a", vec![], 6, None, &limits)), "replicas");
        assert_eq!(field(DeploymentSpec::new(None, "a", vec![], -1, None, &limits)), "replicas");
        assert_eq!(field(DeploymentSpec::new(None, "a", vec![], 1, Some(0), &limits)), "units");
        assert_eq!(field(DeploymentSpec::new(None, "A", vec![], 1, None, &limits)), "image");
        assert_eq!(field(DeploymentSpec::new(Some("x_y"), "a", vec![], 1, None, &limits)), "name");
        assert_eq!(field(DeploymentSpec::new(None, "a", vec!["\0".into()], 1, None, &limits)), "command");
        assert!(DeploymentSpec::new(None, "a", vec![], 5, None, &limits).is_ok());
        assert!(DeploymentSpec::new(None, "a", vec![], 0, None, &limits).is_ok());
    }
}
