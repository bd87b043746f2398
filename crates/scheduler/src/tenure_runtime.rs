//! The engines as a leader's loops see them: calls that change containers are made only while
//! the leader's tenure is current. The store's fence keeps a deposed leader's writes out; this
//! keeps its container starts and removals off the engines (a process resumed after a pause
//! runs whatever its timers had due, possibly before the election notices the lease is gone).

use std::sync::Arc;

use async_trait::async_trait;
use orchestrator_core::runtime::ImageReady;
use orchestrator_core::{
    ContainerEnd, ContainerRuntime, ContainerSummary, ContainerTemplate, DeploymentName, EngineInfo, Error, LogLines,
    LogRequest, Node, ReplicaContainer, ReplicaId, Result,
};

use crate::election::Tenure;

pub struct TenureRuntime {
    inner: Arc<dyn ContainerRuntime>,
    tenure: Tenure,
}

impl TenureRuntime {
    pub fn new(inner: Arc<dyn ContainerRuntime>, tenure: Tenure) -> Self {
        Self { inner, tenure }
    }

    fn check(&self) -> Result<()> {
        if self.tenure.is_current() { Ok(()) } else { Err(Error::NotLeader { leader: None }) }
    }
}

#[async_trait]
impl ContainerRuntime for TenureRuntime {
    async fn ping(&self, node: &Node) -> Result<()> {
        self.inner.ping(node).await
    }

    async fn watch(&self, node: &Node) -> Result<()> {
        self.inner.watch(node).await
    }

    async fn engine_info(&self, node: &Node) -> Result<EngineInfo> {
        self.inner.engine_info(node).await
    }

    async fn start_replica(&self, node: &Node, container: &ReplicaContainer) -> Result<String> {
        self.check()?;
        self.inner.start_replica(node, container).await
    }

    async fn resolve_image(&self, node: &Node, template: &ContainerTemplate) -> Result<Option<String>> {
        self.inner.resolve_image(node, template).await
    }

    async fn prepare_image(
        &self,
        node: &Node,
        template: &ContainerTemplate,
        digest: Option<String>,
    ) -> Result<ImageReady> {
        self.check()?;
        self.inner.prepare_image(node, template, digest).await
    }

    async fn remove_replica(&self, node: &Node, deployment: &DeploymentName, replica: ReplicaId) -> Result<()> {
        self.check()?;
        self.inner.remove_replica(node, deployment, replica).await
    }

    async fn list_replicas(&self, node: &Node) -> Result<Vec<ContainerSummary>> {
        self.inner.list_replicas(node).await
    }

    async fn inspect_replica(
        &self,
        node: &Node,
        deployment: &DeploymentName,
        replica: ReplicaId,
    ) -> Result<ContainerSummary> {
        self.inner.inspect_replica(node, deployment, replica).await
    }

    async fn replica_end(&self, node: &Node, deployment: &DeploymentName, replica: ReplicaId) -> Result<ContainerEnd> {
        self.inner.replica_end(node, deployment, replica).await
    }

    async fn replica_logs(
        &self,
        node: &Node,
        deployment: &DeploymentName,
        replica: ReplicaId,
        request: &LogRequest,
    ) -> Result<LogLines> {
        self.inner.replica_logs(node, deployment, replica, request).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use orchestrator_core::{MockContainerRuntime, NewNode};
    use tokio_util::sync::CancellationToken;

    use super::*;

    fn node() -> Node {
        let new = NewNode::new("node1", "tcp://10.0.0.1:2375", 4).unwrap();
        Node::online(new.name, new.address, 4)
    }

    #[tokio::test(start_paused = true)]
    async fn container_changes_stop_when_the_tenure_ends_reads_go_on() {
        let mut inner = MockContainerRuntime::new();
        inner.expect_remove_replica().times(1).returning(|_, _, _| Ok(()));
        inner.expect_list_replicas().times(2).returning(|_| Ok(vec![]));
        let tenure = Tenure::new(1, CancellationToken::new(), tokio::time::Instant::now() + Duration::from_secs(5));
        let runtime = TenureRuntime::new(Arc::new(inner), tenure);
        let web = DeploymentName::new("web").unwrap();
        runtime.remove_replica(&node(), &web, ReplicaId(1)).await.unwrap();
        runtime.list_replicas(&node()).await.unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        // The mock would panic on a second removal: the guard must refuse before calling it.
        assert_eq!(runtime.remove_replica(&node(), &web, ReplicaId(2)).await, Err(Error::NotLeader { leader: None }));
        runtime.list_replicas(&node()).await.unwrap();
    }
}
