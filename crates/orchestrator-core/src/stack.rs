//! Stacks: named groups of deployments applied together from one file (a Compose file's
//! services), as `docker stack deploy` groups services. A stack is kept nowhere apart from its
//! deployments: each carries the label `com.docker.stack.namespace` in its template (Swarm's
//! own, so what looks for it finds ours too) and is named `STACK_SERVICE`. Applying a stack is
//! planned here, from what is asked and what exists (pure); the API carries the plan out.

use std::collections::BTreeSet;

use crate::deployment::{Deployment, DeploymentSpec};
use crate::error::{Error, Result};
use crate::name::{DeploymentName, StackName};

/// The template label naming a deployment's stack (put on its containers too).
pub const STACK_LABEL: &str = "com.docker.stack.namespace";

/// The stack a deployment belongs to, if any.
pub fn stack_of(d: &Deployment) -> Option<&str> {
    d.spec.template.labels.get(STACK_LABEL).map(String::as_str)
}

/// `STACK_SERVICE`; `field` names the service in an error.
pub fn deployment_name(stack: &StackName, service: &str, field: &str) -> Result<DeploymentName> {
    DeploymentName::new(format!("{stack}_{service}")).map_err(|e| {
        Error::invalid(field, format!("service {service:?} of stack {stack} makes no deployment name: {e}"))
    })
}

/// What applying a stack does to one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackAction {
    Create,
    /// A new spec: these fields differ (a template field rolls out a new revision).
    Update {
        changed: Vec<&'static str>,
    },
    Unchanged,
    /// Gone from the file, deleted (`prune`).
    Delete,
    /// Gone from the file, kept (no `prune`).
    Keep,
}

impl StackAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            StackAction::Create => "create",
            StackAction::Update { .. } => "update",
            StackAction::Unchanged => "unchanged",
            StackAction::Delete => "delete",
            StackAction::Keep => "keep",
        }
    }
}

/// One deployment of a stack and what applying does to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackStep {
    /// The service's name in the file (for a deployment gone from it, its name without the
    /// stack's prefix).
    pub service: String,
    pub deployment: DeploymentName,
    pub action: StackAction,
    /// The spec to create or update to.
    pub spec: Option<DeploymentSpec>,
    /// The deployment's version now (for an update's conditional write).
    pub version: Option<u64>,
}

/// A service of the file, as a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackService {
    pub service: String,
    pub deployment: DeploymentName,
    pub spec: DeploymentSpec,
}

/// What applying `services` as stack `stack` does, given the deployments that exist: in the
/// file's order, then those of the stack the file no longer names (deleted with `prune`). A
/// deployment of that name outside the stack is a `Conflict` (never taken over).
pub fn plan(
    stack: &StackName,
    services: Vec<StackService>,
    existing: &[Deployment],
    prune: bool,
) -> Result<Vec<StackStep>> {
    let mut steps = Vec::with_capacity(services.len());
    let mut named = BTreeSet::new();
    for s in services {
        named.insert(s.deployment.clone());
        let (action, version) = match existing.iter().find(|d| d.name == s.deployment) {
            None => (StackAction::Create, None),
            Some(d) if stack_of(d) != Some(stack.as_str()) => {
                return Err(Error::Conflict(format!(
                    "deployment {} exists and is not of stack {stack}: remove it or rename the service {:?}",
                    d.name, s.service
                )));
            }
            Some(d) if d.spec == s.spec => (StackAction::Unchanged, Some(d.version)),
            Some(d) => (StackAction::Update { changed: changed_fields(&d.spec, &s.spec) }, Some(d.version)),
        };
        steps.push(StackStep { service: s.service, deployment: s.deployment, action, spec: Some(s.spec), version });
    }
    let prefix = format!("{stack}_");
    let mut gone: Vec<&Deployment> =
        existing.iter().filter(|d| stack_of(d) == Some(stack.as_str()) && !named.contains(&d.name)).collect();
    gone.sort_by(|a, b| a.name.cmp(&b.name));
    for d in gone {
        let service = d.name.as_str().strip_prefix(&prefix).unwrap_or(d.name.as_str()).to_string();
        let action = if prune { StackAction::Delete } else { StackAction::Keep };
        steps.push(StackStep { service, deployment: d.name.clone(), action, spec: None, version: Some(d.version) });
    }
    Ok(steps)
}

/// The fields in which `to` differs from `from`, by their names in the API.
pub fn changed_fields(from: &DeploymentSpec, to: &DeploymentSpec) -> Vec<&'static str> {
    let (a, b) = (&from.template, &to.template);
    let checks: [(&'static str, bool); 17] = [
        ("image", a.image != b.image),
        ("entrypoint", a.entrypoint != b.entrypoint),
        ("command", a.command != b.command),
        ("env", a.env != b.env),
        ("ports", a.ports != b.ports),
        ("resources", a.resources != b.resources),
        ("healthcheck", a.healthcheck != b.healthcheck),
        ("labels", a.labels != b.labels),
        ("constraints", a.constraints != b.constraints),
        ("max_per_node", a.max_per_node != b.max_per_node),
        ("stop_grace_period", a.stop_grace_period != b.stop_grace_period),
        ("pull", a.pull != b.pull),
        ("replicas", from.replicas != to.replicas),
        ("units", from.units != to.units),
        ("update", from.policy.update != to.policy.update),
        ("rollback", from.policy.rollback != to.policy.rollback),
        ("deregister_delay", from.policy.deregister_delay != to.policy.deregister_delay),
    ];
    checks.into_iter().filter(|(_, differs)| *differs).map(|(name, _)| name).collect()
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn spec(image: &str, replicas: u32, stack: &str) -> DeploymentSpec {
        let mut spec = DeploymentSpec::of(image, replicas).unwrap();
        spec.template.labels.insert(STACK_LABEL.into(), stack.into());
        spec
    }

    fn existing(name: &str, spec: DeploymentSpec) -> Deployment {
        Deployment {
            name: DeploymentName::new(name).unwrap(),
            spec,
            version: 4,
            revision: 1,
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
            unplaced: None,
            crash_loop: None,
            rollout: None,
            image_digest: None,
        }
    }

    fn service(stack: &StackName, name: &str, spec: DeploymentSpec) -> StackService {
        let deployment = deployment_name(stack, name, "services").unwrap();
        StackService { service: name.into(), deployment, spec }
    }

    #[test]
    fn applying_creates_updates_leaves_alone_and_prunes_only_when_asked() {
        let shop = StackName::new("shop").unwrap();
        let have = [
            existing("shop_web", spec("local/web:1", 2, "shop")),
            existing("shop_worker", spec("local/worker:1", 1, "shop")),
            existing("shop_old", spec("local/old:1", 1, "shop")),
            existing("other_web", spec("local/web:1", 1, "other")),
            existing("plain", DeploymentSpec::of("local/web:1", 1).unwrap()),
        ];
        let wanted = || {
            vec![
                service(&shop, "web", spec("local/web:2", 3, "shop")),
                service(&shop, "worker", spec("local/worker:1", 1, "shop")),
                service(&shop, "db", spec("local/db:1", 1, "shop")),
            ]
        };
        let steps = plan(&shop, wanted(), &have, false).unwrap();
        let actions: Vec<(&str, &StackAction)> = steps.iter().map(|s| (s.deployment.as_str(), &s.action)).collect();
        assert_eq!(
            actions,
            [
                ("shop_web", &StackAction::Update { changed: vec!["image", "replicas"] }),
                ("shop_worker", &StackAction::Unchanged),
                ("shop_db", &StackAction::Create),
                ("shop_old", &StackAction::Keep),
            ]
        );
        assert_eq!((steps[0].version, steps[3].service.as_str()), (Some(4), "old"));
        let pruned = plan(&shop, wanted(), &have, true).unwrap();
        assert_eq!(pruned[3].action, StackAction::Delete);

        // A name taken outside the stack is never taken over.
        let other = StackName::new("other").unwrap();
        let clash = plan(&other, vec![service(&other, "web", spec("local/web:1", 1, "other"))], &have, false);
        assert!(clash.is_ok(), "its own deployment");
        let plain = StackName::new("plain").unwrap();
        let taken = vec![StackService {
            service: "x".into(),
            deployment: DeploymentName::new("plain").unwrap(),
            spec: spec("local/web:1", 1, "plain"),
        }];
        assert!(matches!(plan(&plain, taken, &have, false), Err(Error::Conflict(_))));
    }

    #[test]
    fn a_service_name_that_makes_no_deployment_name_says_which() {
        let shop = StackName::new("shop").unwrap();
        assert_eq!(deployment_name(&shop, "web_api", "services").unwrap().as_str(), "shop_web_api");
        let err = deployment_name(&shop, "Web", "services.Web").unwrap_err();
        assert!(matches!(err, Error::Invalid { ref field, .. } if field == "services.Web"), "{err}");
    }
}
