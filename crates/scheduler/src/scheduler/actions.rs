//! The operator's actions: create, scale and delete deployments; add, drain and remove nodes.
//! Each records its intent in the store and asks the queue for the converges it needs.

use std::sync::Arc;

use futures::StreamExt;
use orchestrator_core::{
    Change, Deployment, DeploymentName, DeploymentSpec, EngineFacts, Error, NewNode, Node, NodeName, NodeStatus,
    NodeUpdate, Replica, ReplicaFilter, Result, RolloutPlan,
};
use tracing::{info, warn};

use super::Scheduler;

impl Scheduler {
    /// Stores a new deployment. Its replicas are started by `converge` (which the caller runs,
    /// in the background or not) and, failing that, by the reconciler.
    pub async fn create_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        change: Change,
    ) -> Result<Deployment> {
        let deployment = self.store.create_deployment(name, spec, change).await?;
        let spec = &deployment.spec;
        info!(deployment = %name, image = %spec.template.image, replicas = spec.replicas, "deployment created");
        Ok(deployment)
    }

    /// Replaces the deployment's spec (a new template makes a new revision). Replicas already
    /// running keep their revision: replacing them is a rollout's work.
    pub async fn update_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        version: u64,
        change: Change,
    ) -> Result<Deployment> {
        let deployment = self.store.update_deployment(name, spec, version, change).await?;
        info!(deployment = %name, revision = deployment.revision, version = deployment.version, "deployment updated");
        Ok(deployment)
    }

    /// The rollout `spec` would start on the deployment as it is now (see
    /// `rollout_step::simulate`). Nothing changes.
    pub async fn plan_update(&self, name: &DeploymentName, spec: DeploymentSpec) -> Result<RolloutPlan> {
        let current = self.store.get_deployment(name).await?;
        let mut after = current.clone();
        let new_template = current.spec.template != spec.template;
        after.spec = spec;
        if !new_template {
            let policy = after.spec.policy.update;
            let revision = current.revision;
            return Ok(RolloutPlan {
                from_revision: revision,
                to_revision: revision,
                policy,
                actions: Vec::new(),
                stuck: None,
            });
        }
        after.revision += 1;
        let nodes = self.nodes_for(&after).await?;
        let replicas = self.store.list_replicas(ReplicaFilter::deployment(name).active()).await?;
        let policy = after.spec.policy.update;
        Ok(crate::rollout_step::simulate(
            self.config.strategy,
            &after,
            policy,
            replicas,
            nodes,
            std::time::SystemTime::now(),
        ))
    }

    pub async fn scale_deployment(&self, name: &DeploymentName, replicas: u32, version: u64) -> Result<Deployment> {
        let deployment = self.store.scale_deployment(name, replicas, version).await?;
        info!(deployment = %name, replicas, version = deployment.version, "deployment scaled");
        Ok(deployment)
    }

    /// Deletes the deployment and removes its containers. Containers on unreachable nodes are
    /// removed by the reconciler when the node answers again (they are no longer in the store).
    ///
    /// Without the deployment's lock: a convergence may hold it for as long as an engine takes
    /// to time out, and a delete must not wait for that. A convergence still under way for
    /// this deployment finds its records gone (its writes fail) and removes what it started.
    pub async fn delete_deployment(&self, name: &DeploymentName) -> Result<()> {
        let removed = self.store.delete_deployment(name).await?;
        info!(deployment = %name, "deployment deleted");
        self.remove_containers_of(removed).await;
        Ok(())
    }

    /// Removes the containers of replicas the store no longer has, on the nodes that answer
    /// (online or draining); the reconciler removes the others when their node is back.
    pub async fn remove_containers_of(&self, removed: Vec<Replica>) {
        let Ok(nodes) = self.nodes_by_name().await else { return };
        let work = removed
            .into_iter()
            .filter(|r| r.state.is_active())
            .filter_map(|r| Some((nodes.get(&r.node).filter(|n| n.status != NodeStatus::Offline)?.clone(), r)));
        futures::stream::iter(work)
            .map(|(node, replica)| async move {
                let _permit = self.permits.acquire(&node.name).await;
                if let Err(e) = self.runtime.remove_replica(&node, &replica.deployment, replica.id).await {
                    warn!(node = %node.name, replica = %replica.id, error = %e, "remove failed; the reconciler will retry");
                }
            })
            .buffer_unordered(self.config.total_concurrency)
            .collect::<Vec<_>>()
            .await;
    }

    /// `AddNodesToCluster`: the node starts offline and becomes eligible on its first good ping,
    /// which is tried at once.
    pub async fn add_node(&self, node: NewNode) -> Result<Node> {
        let node = self.store.add_node(node).await?;
        info!(node = %node.name, address = %node.address, capacity = node.capacity, "node added");
        match self.runtime.ping(&node).await {
            Ok(()) => {
                let online = self
                    .store
                    .set_node_status(&node.name, NodeStatus::Online, Some(std::time::SystemTime::now()))
                    .await?;
                self.learn_engine(online.clone());
                Ok(online)
            }
            Err(e) => {
                info!(node = %node.name, error = %e, "new node not answering yet; the heartbeat keeps trying");
                Ok(node)
            }
        }
    }

    /// Reads the engine's CPUs and memory (first contact) in the background and keeps them.
    pub fn learn_engine(&self, node: Node) {
        let (store, runtime) = (Arc::clone(&self.store), Arc::clone(&self.runtime));
        self.spawn(async move {
            match runtime.engine_info(&node).await {
                Ok(info) => {
                    let engine = EngineFacts { cpus: info.cpus, memory_bytes: info.memory_bytes };
                    let update = NodeUpdate { engine: Some(engine), ..NodeUpdate::default() };
                    if let Err(e) = store.update_node(&node.name, update).await {
                        warn!(node = %node.name, error = %e, "cannot keep the engine's facts");
                    }
                }
                Err(e) => warn!(node = %node.name, error = %e, "engine info unavailable; asked again when it returns"),
            }
        });
    }

    /// Changes a node's labels or public host. Nothing placed moves; deployments converge again,
    /// so replicas waiting for a node their constraints admit are placed on it.
    pub async fn update_node(self: &Arc<Self>, name: &NodeName, update: NodeUpdate) -> Result<Node> {
        let node = self.store.update_node(name, update).await?;
        info!(node = %node.name, labels = ?node.labels, public_host = ?node.public_host, "node updated");
        for d in self.store.list_deployments().await? {
            self.enqueue(d.name);
        }
        Ok(node)
    }

    /// Stops placing replicas on the node and moves the ones it has (each replacement started
    /// before the old copy is removed). Returns how many are still on it (0 when done).
    pub async fn drain_node(self: &Arc<Self>, name: &NodeName) -> Result<usize> {
        self.store.set_node_status(name, NodeStatus::Draining, None).await?;
        info!(node = %name, "draining node");
        let on_node = self.store.list_replicas(ReplicaFilter::node(name).active()).await?;
        let mut deployments: Vec<DeploymentName> = on_node.into_iter().map(|r| r.deployment).collect();
        deployments.sort();
        deployments.dedup();
        self.converge_all(deployments).await;
        Ok(self.store.list_replicas(ReplicaFilter::node(name).active()).await?.len())
    }

    /// `DeleteNodesFromTheCluster`: drains, then forgets the node. `Conflict` if replicas could
    /// not be moved (no room elsewhere); the node stays draining.
    pub async fn remove_node(self: &Arc<Self>, name: &NodeName) -> Result<()> {
        let left = self.drain_node(name).await?;
        if left > 0 {
            return Err(Error::Conflict(format!(
                "node {name:?} still runs {left} replicas that found no room elsewhere; it stays draining"
            )));
        }
        self.store.remove_node(name).await?;
        info!(node = %name, "node removed");
        Ok(())
    }
}
