//! How a container says whose it is. With these labels the orchestrator can rebuild its view
//! of a node from Docker alone (after a crash, or when a node comes back).

pub const LABEL_MANAGED_BY: &str = "io.orchestrator.managed-by";
pub const LABEL_CLUSTER: &str = "io.orchestrator.cluster";
pub const LABEL_DEPLOYMENT: &str = "io.orchestrator.deployment";
pub const LABEL_REPLICA: &str = "io.orchestrator.replica";
/// The deployment revision whose template the container runs.
pub const LABEL_REVISION: &str = "io.orchestrator.revision";
pub const MANAGED_BY: &str = "orchestrator";

use std::collections::HashMap;

use orchestrator_core::{DeploymentName, ReplicaContainer, ReplicaId};

/// Deterministic per cluster, deployment and replica: Docker refuses a second container with
/// the same name, so a retried create can never make a duplicate.
pub fn container_name(cluster_id: &str, deployment: &DeploymentName, replica: ReplicaId) -> String {
    format!("orch-{cluster_id}-{deployment}-{replica}")
}

pub fn replica_labels(cluster_id: &str, container: &ReplicaContainer) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_CLUSTER.to_string(), cluster_id.to_string()),
        (LABEL_DEPLOYMENT.to_string(), container.deployment.to_string()),
        (LABEL_REPLICA.to_string(), container.replica.to_string()),
        (LABEL_REVISION.to_string(), container.revision.to_string()),
    ])
}

/// The label filter that selects this cluster's containers and nothing else.
pub fn cluster_filter(cluster_id: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_MANAGED_BY}={MANAGED_BY}"), format!("{LABEL_CLUSTER}={cluster_id}")],
    )])
}

/// Reads deployment and replica back from a container's labels; `None` if they are missing or
/// malformed (someone else's container that happens to carry our cluster label).
pub fn parse_replica_labels(labels: &HashMap<String, String>) -> Option<(DeploymentName, ReplicaId)> {
    let deployment = DeploymentName::new(labels.get(LABEL_DEPLOYMENT)?.as_str()).ok()?;
    let replica = labels.get(LABEL_REPLICA)?.parse().ok().map(ReplicaId)?;
    Some((deployment, replica))
}

#[cfg(test)]
mod tests {
    use orchestrator_core::{ContainerTemplate, ImageRef};

    use super::*;

    fn container(deployment: &DeploymentName, replica: u64) -> ReplicaContainer {
        let template = ContainerTemplate::new(ImageRef::parse("local/web:1").unwrap());
        ReplicaContainer {
            deployment: deployment.clone(),
            replica: ReplicaId(replica),
            revision: 3,
            template,
            image_digest: None,
        }
    }

    #[test]
    fn labels_round_trip() {
        let d = DeploymentName::new("web").unwrap();
        let labels = replica_labels("c1", &container(&d, 42));
        assert_eq!(parse_replica_labels(&labels), Some((d.clone(), ReplicaId(42))));
        assert_eq!(labels[LABEL_REVISION], "3");
        assert_eq!(container_name("c1", &d, ReplicaId(42)), "orch-c1-web-42");
    }

    #[test]
    fn malformed_labels_are_not_ours() {
        let mut labels = replica_labels("c1", &container(&DeploymentName::new("web").unwrap(), 1));
        labels.insert(LABEL_REPLICA.into(), "x".into());
        assert_eq!(parse_replica_labels(&labels), None);
    }
}
