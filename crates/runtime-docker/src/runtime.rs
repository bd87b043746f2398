//! The `ContainerRuntime` implementation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::{StreamExt, TryStreamExt};
use orchestrator_core::error::Kind;
use orchestrator_core::runtime::{ImageReady, image_to_run};
use orchestrator_core::{
    ContainerEnd, ContainerRuntime, ContainerState, ContainerSummary, DeploymentName, EngineInfo, Error, LogLine,
    LogLines, LogRequest, Node, OutputStream, ReplicaContainer, ReplicaId, Result,
};
use orchestrator_core::{ContainerTemplate, ImageRef, PullPolicy, RegistryStore, Scheme};

use crate::classify::{docker_message, engine_error, is_missing_image, is_status, pull_failure};
use crate::config::DockerRuntimeConfig;
use crate::connections::Connections;
use crate::container_spec::{bound_ports, bound_ports_of_map, create_body, health_from_inspect, health_from_status};
use crate::labels::{cluster_filter, container_name, parse_replica_labels};
use crate::late_oom;
use crate::log_lines::LineAssembler;

/// Talks to any number of Docker Engines; one value serves the whole cluster.
pub struct DockerRuntime {
    config: DockerRuntimeConfig,
    connections: Connections,
    /// Logins for the registries images name; the one an image's registry has goes with its
    /// pull, to the engine pulling, and nowhere else.
    registries: Option<Arc<dyn RegistryStore>>,
}

impl DockerRuntime {
    pub fn new(config: DockerRuntimeConfig) -> Self {
        Self { config, connections: Connections::default(), registries: None }
    }

    /// Pulls log in with the credentials `registries` keeps for an image's registry.
    pub fn with_registries(mut self, registries: Arc<dyn RegistryStore>) -> Self {
        self.registries = Some(registries);
        self
    }

    pub fn config(&self) -> &DockerRuntimeConfig {
        &self.config
    }

    async fn client(&self, node: &Node, timeout: Duration) -> Result<Docker> {
        self.connections.client(node, &self.config, timeout).await
    }

    fn name(&self, deployment: &DeploymentName, replica: ReplicaId) -> String {
        container_name(&self.config.cluster_id, deployment, replica)
    }

    /// Creates the container, or finds the one an earlier attempt made under the same name.
    async fn create_or_find(&self, docker: &Docker, node: &Node, container: &ReplicaContainer) -> Result<String> {
        let name = self.name(&container.deployment, container.replica);
        let body = create_body(&self.config.cluster_id, container, self.config.stop_grace);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let timeout = self.config.request_timeout;
        let node_name = node.name.as_str();
        let policy = container.template.pull;
        let image = container.image();
        // `always`: the newest of the tag before every start (a container found made already
        // by an earlier attempt is adopted as it is).
        let mut pulled = false;
        if policy == PullPolicy::Always {
            self.pull(docker, node, &image).await?;
            pulled = true;
        }
        loop {
            match bounded(node_name, "create", timeout, docker.create_container(Some(options.clone()), body.clone()))
                .await?
            {
                Ok(created) => return Ok(created.id),
                Err(e) if is_status(&e, 409) => {
                    // Made by an earlier attempt whose answer we never saw: adopt it, if ours.
                    let (found, _) = self.inspect_by_name(docker, node, &name).await?;
                    return Ok(found.id);
                }
                Err(e)
                    if is_missing_image(&e) && policy == PullPolicy::IfNotPresent && self.pulls(&image) && !pulled =>
                {
                    self.pull(docker, node, &image).await?;
                    pulled = true;
                }
                Err(e) if is_missing_image(&e) => {
                    return Err(Error::ImageNotFound { image: image.to_string(), node: node_name.to_string() });
                }
                Err(e) => return Err(engine_error(node_name, "create", e)),
            }
        }
    }

    /// Whether this runtime pulls `image` when an engine lacks it: an image of a named
    /// registry; one of the engine's default registry only when configured (none is
    /// reachable here).
    fn pulls(&self, image: &ImageRef) -> bool {
        self.config.pull_missing_images || image.registry().is_some()
    }

    /// The login kept for the image's registry, as the engine takes it: for this one call,
    /// to this one engine.
    async fn credentials(&self, image: &ImageRef) -> Result<Option<bollard::auth::DockerCredentials>> {
        let (Some(server), Some(registries)) = (image.registry(), &self.registries) else { return Ok(None) };
        Ok(registries.registry_credential(server).await?.map(|c| bollard::auth::DockerCredentials {
            username: Some(c.login.username),
            password: Some(c.password.expose().to_string()),
            serveraddress: Some(c.login.server),
            ..Default::default()
        }))
    }

    /// A registry's refusal as the domain says it; our side of the connection to the engine
    /// failing is the engine's failure, not the registry's.
    fn registry_error(node: &Node, image: &ImageRef, operation: &'static str, e: DockerError) -> Error {
        match e {
            e @ (DockerError::HyperLegacyError { .. } | DockerError::IOError { .. }) => {
                engine_error(node.name.as_str(), operation, e)
            }
            e => Error::PullFailed {
                node: node.name.to_string(),
                image: image.to_string(),
                reason: pull_failure(&docker_message(&e)),
            },
        }
    }

    async fn pull(&self, docker: &Docker, node: &Node, image: &ImageRef) -> Result<()> {
        let options = CreateImageOptionsBuilder::new().from_image(image.as_str()).build();
        let credentials = self.credentials(image).await?;
        let pull = docker.create_image(Some(options), None, credentials).try_collect::<Vec<_>>();
        match bounded(node.name.as_str(), "pull", self.config.request_timeout, pull).await? {
            Ok(_) => Ok(()),
            Err(e) => Err(Self::registry_error(node, image, "pull", e)),
        }
    }

    /// The stop timeout the container was made with (the runtime's default if it has none);
    /// `None` when there is no such container.
    async fn stop_timeout(&self, docker: &Docker, node: &Node, name: &str) -> Result<Option<Duration>> {
        let call = docker.inspect_container(name, None::<InspectContainerOptions>);
        match bounded(node.name.as_str(), "inspect", self.config.request_timeout, call).await? {
            Ok(inspected) => {
                let own = inspected.config.and_then(|c| c.stop_timeout).and_then(|s| u64::try_from(s).ok());
                Ok(Some(own.map_or(self.config.stop_grace, Duration::from_secs)))
            }
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(engine_error(node.name.as_str(), "inspect", e)),
        }
    }

    /// The engine's whole answer about container `name`.
    async fn inspect_raw(&self, docker: &Docker, node: &Node, name: &str) -> Result<ContainerInspectResponse> {
        bounded(
            node.name.as_str(),
            "inspect",
            self.config.request_timeout,
            docker.inspect_container(name, None::<InspectContainerOptions>),
        )
        .await?
        .map_err(|e| match e {
            e if is_status(&e, 404) => Error::not_found(Kind::Container, name),
            e => engine_error(node.name.as_str(), "inspect", e),
        })
    }

    /// One container of ours as the engine reports it now, and how it ended (if it did).
    async fn inspect_by_name(
        &self,
        docker: &Docker,
        node: &Node,
        name: &str,
    ) -> Result<(ContainerSummary, ContainerEnd)> {
        let inspected = self.inspect_raw(docker, node, name).await?;
        self.ours(node, name, inspected)
    }

    /// The engine's answer about container `name`, if the container is ours.
    fn ours(
        &self,
        node: &Node,
        name: &str,
        inspected: ContainerInspectResponse,
    ) -> Result<(ContainerSummary, ContainerEnd)> {
        let labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
        let ours = labels.get(crate::labels::LABEL_CLUSTER).is_some_and(|c| *c == self.config.cluster_id);
        let (deployment, replica) = parse_replica_labels(&labels).filter(|_| ours).ok_or_else(|| {
            Error::Conflict(format!("container {name:?} on node {} exists but is not ours", node.name))
        })?;
        let state = inspected.state.unwrap_or_default();
        let status = state.status.map_or(ContainerState::Created, from_inspect_state);
        let ports =
            inspected.network_settings.and_then(|n| n.ports).map(|p| bound_ports_of_map(&p)).unwrap_or_default();
        let exit_code =
            (status == ContainerState::Exited || status == ContainerState::Dead).then_some(state.exit_code).flatten();
        let (health, health_log) = state.health.map(|h| (h.status, h.log)).unwrap_or_default();
        let end = ContainerEnd {
            exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            health_output: health_log.and_then(|log| log.into_iter().last()).map(check_said),
        };
        let summary = ContainerSummary {
            id: inspected.id.unwrap_or_default(),
            deployment,
            replica,
            state: status,
            exit_code,
            health: health_from_inspect(health),
            ports,
        };
        Ok((summary, end))
    }
}

/// What a health check said: its output, or its exit code when it printed nothing (a check
/// killed by a signal prints nothing, and "exit code 139" still tells the story).
fn check_said(check: bollard::models::HealthcheckResult) -> String {
    match (check.output.as_deref().map(str::trim), check.exit_code) {
        (Some(output), _) if !output.is_empty() => output.to_string(),
        (_, Some(code)) => format!("the check exited with code {code} and printed nothing"),
        _ => "the check printed nothing".to_string(),
    }
}

/// Runs a Docker call under our own deadline. The outer error is the timeout, the inner one
/// Docker's answer, left raw so callers can look at its status code.
async fn bounded<T>(
    node: &str,
    operation: &'static str,
    after: Duration,
    call: impl Future<Output = Result<T, DockerError>>,
) -> Result<Result<T, DockerError>> {
    tokio::time::timeout(after, call).await.map_err(|_| Error::Timeout { node: node.to_string(), operation, after })
}

fn from_summary_state(state: ContainerSummaryStateEnum) -> ContainerState {
    match state {
        ContainerSummaryStateEnum::EMPTY | ContainerSummaryStateEnum::CREATED => ContainerState::Created,
        ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::STOPPING => ContainerState::Running,
        ContainerSummaryStateEnum::PAUSED => ContainerState::Paused,
        ContainerSummaryStateEnum::RESTARTING => ContainerState::Restarting,
        ContainerSummaryStateEnum::EXITED => ContainerState::Exited,
        ContainerSummaryStateEnum::REMOVING => ContainerState::Removing,
        ContainerSummaryStateEnum::DEAD => ContainerState::Dead,
    }
}

fn from_inspect_state(state: ContainerStateStatusEnum) -> ContainerState {
    match state {
        ContainerStateStatusEnum::EMPTY | ContainerStateStatusEnum::CREATED => ContainerState::Created,
        ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING => ContainerState::Running,
        ContainerStateStatusEnum::PAUSED => ContainerState::Paused,
        ContainerStateStatusEnum::RESTARTING => ContainerState::Restarting,
        ContainerStateStatusEnum::EXITED => ContainerState::Exited,
        ContainerStateStatusEnum::REMOVING => ContainerState::Removing,
        ContainerStateStatusEnum::DEAD => ContainerState::Dead,
    }
}

/// `Exited (137) 5 seconds ago` -> 137: the list endpoint gives the exit code only in prose.
fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest[..rest.find(')')?].parse().ok()
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn ping(&self, node: &Node) -> Result<()> {
        let timeout = self.config.ping_timeout;
        let started = tokio::time::Instant::now();
        let docker = self.client(node, timeout).await?;
        let left = timeout.saturating_sub(started.elapsed());
        bounded(node.name.as_str(), "ping", left, docker.ping())
            .await?
            .map_err(|e| engine_error(node.name.as_str(), "ping", e))?;
        Ok(())
    }

    /// A bare connection with an `/events` request on it, held until the engine closes it
    /// (`watch.rs`); over TLS, bollard's event stream filtered to daemon events.
    async fn watch(&self, node: &Node) -> Result<()> {
        match node.address.scheme() {
            Scheme::Unix => crate::watch::hold_open(node, true).await,
            Scheme::Tcp | Scheme::Http => crate::watch::hold_open(node, false).await,
            Scheme::Https => {
                let docker = self.client(node, self.config.request_timeout).await?;
                let filters = std::collections::HashMap::from([("type", vec!["daemon"])]);
                let mut events = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
                while let Some(event) = events.next().await {
                    event.map_err(|e| engine_error(node.name.as_str(), "events", e))?;
                }
                Ok(())
            }
        }
    }

    async fn engine_info(&self, node: &Node) -> Result<EngineInfo> {
        let docker = self.client(node, self.config.request_timeout).await?;
        let info = bounded(node.name.as_str(), "info", self.config.request_timeout, docker.info())
            .await?
            .map_err(|e| engine_error(node.name.as_str(), "info", e))?;
        Ok(EngineInfo {
            id: info.id.unwrap_or_default(),
            version: info.server_version.unwrap_or_default(),
            cpus: info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            memory_bytes: info.mem_total.and_then(|m| u64::try_from(m).ok()).unwrap_or(0),
        })
    }

    async fn start_replica(&self, node: &Node, container: &ReplicaContainer) -> Result<String> {
        let docker = self.client(node, self.config.request_timeout).await?;
        let id = self.create_or_find(&docker, node, container).await?;
        match bounded(node.name.as_str(), "start", self.config.request_timeout, docker.start_container(&id, None))
            .await?
        {
            // 304: already running (a retry after a lost answer).
            Ok(()) => Ok(id),
            Err(e) if is_status(&e, 304) => Ok(id),
            Err(e) => {
                // The engine refused the start (a host port taken, a bad mount): a created
                // container would only hold the replica's name and its port bindings. Removed
                // here, not left for the reconciler; if this fails too, the reconciler will.
                let remove = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
                let removed = bounded(
                    node.name.as_str(),
                    "remove",
                    self.config.request_timeout,
                    docker.remove_container(&id, Some(remove)),
                )
                .await;
                if !matches!(removed, Ok(Ok(()))) {
                    tracing::debug!(node = %node.name, container = %id, "could not remove a container that did not start");
                }
                Err(engine_error(node.name.as_str(), "start", e))
            }
        }
    }

    async fn resolve_image(&self, node: &Node, template: &ContainerTemplate) -> Result<Option<String>> {
        let image = &template.image;
        if image.digest().is_some() || template.pull == PullPolicy::Never || !self.pulls(image) {
            return Ok(None);
        }
        let docker = self.client(node, self.config.request_timeout).await?;
        let credentials = self.credentials(image).await?;
        let inspect = docker.inspect_registry_image(image.as_str(), credentials);
        match bounded(node.name.as_str(), "resolve", self.config.request_timeout, inspect).await? {
            Ok(found) => match found.descriptor.digest {
                Some(digest) if !digest.is_empty() => Ok(Some(digest)),
                _ => Err(Error::Engine {
                    node: node.name.to_string(),
                    message: format!("resolve: the registry named no digest for {image}"),
                }),
            },
            Err(e) => Err(Self::registry_error(node, image, "resolve", e)),
        }
    }

    async fn prepare_image(
        &self,
        node: &Node,
        template: &ContainerTemplate,
        digest: Option<String>,
    ) -> Result<ImageReady> {
        let image = image_to_run(template, digest.as_deref());
        let docker = self.client(node, self.config.request_timeout).await?;
        if template.pull == PullPolicy::Always {
            self.pull(&docker, node, &image).await?;
            return Ok(ImageReady::Pulled);
        }
        let inspect = docker.inspect_image(image.as_str());
        match bounded(node.name.as_str(), "inspect image", self.config.request_timeout, inspect).await? {
            Ok(_) => Ok(ImageReady::Present),
            Err(e) if is_status(&e, 404) && template.pull == PullPolicy::IfNotPresent && self.pulls(&image) => {
                self.pull(&docker, node, &image).await?;
                Ok(ImageReady::Pulled)
            }
            Err(e) if is_status(&e, 404) => {
                Err(Error::ImageNotFound { image: image.to_string(), node: node.name.to_string() })
            }
            Err(e) => Err(engine_error(node.name.as_str(), "inspect image", e)),
        }
    }

    async fn remove_replica(&self, node: &Node, deployment: &DeploymentName, replica: ReplicaId) -> Result<()> {
        let docker = self.client(node, self.config.request_timeout).await?;
        let name = self.name(deployment, replica);
        let node_name = node.name.as_str();
        // The grace is the container's own StopTimeout, set at create from its template's
        // stop_grace_period: read it, so the stop's deadline is that plus the usual bound.
        let grace = match self.stop_timeout(&docker, node, &name).await? {
            Some(grace) => grace,
            None => return Ok(()), // no such container
        };
        let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let stop = StopContainerOptionsBuilder::new().t(seconds).build();
        match bounded(node_name, "stop", self.config.request_timeout + grace, docker.stop_container(&name, Some(stop)))
            .await?
        {
            Ok(()) => {}
            Err(e) if is_status(&e, 404) => return Ok(()),
            Err(e) if is_status(&e, 304) => {} // already stopped
            Err(e) => return Err(engine_error(node_name, "stop", e)),
        }
        let remove = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match bounded(node_name, "remove", self.config.request_timeout, docker.remove_container(&name, Some(remove)))
            .await?
        {
            Ok(()) => Ok(()),
            // Gone already, or another remove of it is under way: either way it is going.
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(engine_error(node_name, "remove", e)),
        }
    }

    async fn list_replicas(&self, node: &Node) -> Result<Vec<ContainerSummary>> {
        let docker = self.client(node, self.config.request_timeout).await?;
        let options =
            ListContainersOptionsBuilder::new().all(true).filters(&cluster_filter(&self.config.cluster_id)).build();
        let listed =
            bounded(node.name.as_str(), "list", self.config.request_timeout, docker.list_containers(Some(options)))
                .await?
                .map_err(|e| engine_error(node.name.as_str(), "list", e))?;
        Ok(listed
            .into_iter()
            .filter_map(|c| {
                let (deployment, replica) = parse_replica_labels(c.labels.as_ref()?)?;
                let state = c.state.map_or(ContainerState::Created, from_summary_state);
                Some(ContainerSummary {
                    id: c.id?,
                    deployment,
                    replica,
                    state,
                    exit_code: c.status.as_deref().and_then(exit_code_from_status),
                    health: c.status.as_deref().and_then(health_from_status),
                    ports: c.ports.as_deref().map(bound_ports).unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn inspect_replica(
        &self,
        node: &Node,
        deployment: &DeploymentName,
        replica: ReplicaId,
    ) -> Result<ContainerSummary> {
        let docker = self.client(node, self.config.request_timeout).await?;
        Ok(self.inspect_by_name(&docker, node, &self.name(deployment, replica)).await?.0)
    }

    async fn replica_end(&self, node: &Node, deployment: &DeploymentName, replica: ReplicaId) -> Result<ContainerEnd> {
        let docker = self.client(node, self.config.request_timeout).await?;
        let name = self.name(deployment, replica);
        let inspected = self.inspect_raw(&docker, node, &name).await?;
        let limited = inspected.host_config.as_ref().and_then(|h| h.memory).is_some_and(|m| m > 0);
        let started_at = inspected.state.as_ref().and_then(|s| s.started_at.clone());
        let (found, mut end) = self.ours(node, &name, inspected)?;
        if limited && end.exit_code == Some(late_oom::SIGKILL_EXIT) && !end.oom_killed {
            end.oom_killed = late_oom::reported(&docker, &found.id, started_at.as_deref()).await;
        }
        Ok(end)
    }

    async fn replica_logs(
        &self,
        node: &Node,
        deployment: &DeploymentName,
        replica: ReplicaId,
        request: &LogRequest,
    ) -> Result<LogLines> {
        let docker = self.client(node, self.config.request_timeout).await?;
        let name = self.name(deployment, replica);
        // Ours, and there: a missing container is `NotFound` before any stream is opened.
        self.inspect_by_name(&docker, node, &name).await?;
        let tail = request.tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        let mut options =
            LogsOptionsBuilder::new().follow(request.follow).stdout(true).stderr(true).timestamps(true).tail(&tail);
        if let Some(since) = request.since {
            let seconds = since.duration_since(std::time::SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            options = options.since(i32::try_from(seconds).unwrap_or(i32::MAX));
        }
        let frames = docker.logs(&name, Some(options.build()));
        Ok(lines_of(frames, node.name.to_string(), request.since))
    }
}

/// The engine's frames as whole lines: each frame is decoded as it comes, and the lines it
/// completes are handed on before the next is read (a slow reader slows the engine's stream).
fn lines_of(
    frames: impl futures::Stream<Item = std::result::Result<LogOutput, DockerError>> + Send + 'static,
    node: String,
    since: Option<std::time::SystemTime>,
) -> LogLines {
    struct Reading<F> {
        frames: std::pin::Pin<Box<F>>,
        node: String,
        assembler: LineAssembler,
        ready: std::collections::VecDeque<LogLine>,
        ended: bool,
    }
    let reading = Reading {
        frames: Box::pin(frames),
        node,
        assembler: LineAssembler::since(since),
        ready: std::collections::VecDeque::new(),
        ended: false,
    };
    Box::pin(futures::stream::unfold(reading, |mut r| async move {
        loop {
            if let Some(line) = r.ready.pop_front() {
                return Some((Ok(line), r));
            }
            if r.ended {
                return None;
            }
            let mut out = Vec::new();
            let now = std::time::SystemTime::now();
            match r.frames.next().await {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    r.assembler.push(OutputStream::Stdout, &message, now, &mut out)
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    r.assembler.push(OutputStream::Stderr, &message, now, &mut out)
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => {
                    r.ended = true;
                    let error = engine_error(&r.node, "logs", e);
                    return Some((Err(error), r));
                }
                None => {
                    r.ended = true;
                    r.assembler.finish(&mut out);
                }
            }
            r.ready.extend(out);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exit_code_from_status_text() {
        assert_eq!(exit_code_from_status("Exited (137) 5 seconds ago"), Some(137));
        assert_eq!(exit_code_from_status("Exited (0) About a minute ago"), Some(0));
        assert_eq!(exit_code_from_status("Up 3 seconds"), None);
    }
}
