//! `MemoryStore`: every store trait over plain maps behind one mutex (feature `mock`).
//!
//! A fake for other crates' tests and benchmarks (the scheduler's loops, the API's routes)
//! where scripting each store call with mockall expectations would test the script rather than
//! the behaviour. It keeps the same contract as the real stores (see `store`): all-or-nothing
//! placement, capacity bounds, optimistic concurrency, `Lost` is final.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::access::{AccessStore, ApiToken, AuditEntry};
use crate::crash_loop::CrashLoop;
use crate::deployment::{Change, Deployment, DeploymentSpec, REVISIONS_KEPT, Revision, Unplaced};
use crate::error::{Error, Kind, Result};
use crate::event::{EVENT_RETENTION, Event, EventStore, NewEvent};
use crate::history::ReplicaExit;
use crate::name::{DeploymentName, NodeName};
use crate::node::{NewNode, Node, NodeStatus, NodeUpdate};
use crate::registry::{RegistryCredential, RegistryLogin, RegistryStore};
use crate::replica::{Placement, Replica, ReplicaCount, ReplicaFilter, ReplicaId, ReplicaState};
use crate::rollout::{Rollout, RolloutId, RolloutProgress, RolloutState};
use crate::store::{DeploymentStore, NodeStore, ReplicaStore, StoreRevision};
use crate::workload::{Claim, Health, HostPort};

#[derive(Default)]
struct State {
    nodes: BTreeMap<NodeName, Node>,
    deployments: BTreeMap<DeploymentName, Deployment>,
    /// Oldest first, per deployment.
    revisions: BTreeMap<DeploymentName, Vec<Revision>>,
    replicas: BTreeMap<ReplicaId, Replica>,
    next_replica: u64,
    rollouts: BTreeMap<RolloutId, Rollout>,
    next_rollout: u64,
    /// Oldest first, per deployment.
    exits: BTreeMap<DeploymentName, std::collections::VecDeque<ReplicaExit>>,
    tokens: Vec<ApiToken>,
    /// In memory only: this store is for tests, and holds nothing past its process.
    registries: BTreeMap<String, RegistryCredential>,
    audit: Vec<AuditEntry>,
    revision: u64,
    events: std::collections::VecDeque<Event>,
    last_event: u64,
}

impl State {
    fn node_mut(&mut self, name: &NodeName) -> Result<&mut Node> {
        self.nodes.get_mut(name).ok_or_else(|| Error::not_found(Kind::Node, name.as_str()))
    }

    fn replica_mut(&mut self, id: ReplicaId) -> Result<&mut Replica> {
        self.replicas.get_mut(&id).ok_or_else(|| Error::not_found(Kind::Replica, id.to_string()))
    }

    fn record(&mut self, new: impl IntoIterator<Item = NewEvent>) {
        let at = SystemTime::now();
        for e in new {
            self.last_event += 1;
            let id = self.last_event;
            self.events.push_back(Event {
                id,
                at,
                kind: e.kind,
                node: e.node,
                deployment: e.deployment,
                replica: e.replica,
                message: e.message,
            });
        }
        while self.events.len() as u64 > EVENT_RETENTION {
            self.events.pop_front();
        }
    }

    /// Gives back what `replica` held of its node: units, memory, CPUs and ports.
    fn release(&mut self, replica: &Replica) {
        if let Some(n) = self.nodes.get_mut(&replica.node) {
            n.available = (n.available + replica.units).min(n.capacity);
            n.reserved.memory_bytes = n.reserved.memory_bytes.saturating_sub(replica.claim.memory_bytes);
            n.reserved.nano_cpus = n.reserved.nano_cpus.saturating_sub(replica.claim.nano_cpus);
            for port in &replica.claim.ports {
                n.reserved.ports.remove(port);
            }
        }
    }
}

pub struct MemoryStore {
    state: Mutex<State>,
    revisions_kept: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self { state: Mutex::default(), revisions_kept: REVISIONS_KEPT }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `kept` revisions per deployment (at least the current one).
    pub fn keeping_revisions(mut self, kept: usize) -> Self {
        self.revisions_kept = kept.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state, for a call that may change it: counts as a new revision even if it fails,
    /// which only costs a reader a needless refresh.
    fn write(&self) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.lock();
        s.revision += 1;
        s
    }
}

#[async_trait]
impl StoreRevision for MemoryStore {
    async fn revision(&self) -> Result<u64> {
        Ok(self.lock().revision)
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn list_events(&self, since: u64, limit: u32) -> Result<Vec<Event>> {
        let s = self.lock();
        Ok(s.events.iter().filter(|e| e.id > since).take(limit as usize).cloned().collect())
    }

    async fn last_event_id(&self) -> Result<u64> {
        Ok(self.lock().last_event)
    }

    async fn record_events(&self, events: Vec<NewEvent>) -> Result<()> {
        self.write().record(events);
        Ok(())
    }
}

#[async_trait]
impl NodeStore for MemoryStore {
    async fn add_node(&self, node: NewNode) -> Result<Node> {
        let mut s = self.write();
        if s.nodes.contains_key(&node.name) {
            return Err(Error::already_exists(Kind::Node, node.name.as_str()));
        }
        let stored = node.into_node();
        s.nodes.insert(stored.name.clone(), stored.clone());
        s.record([NewEvent::node_added(&stored)]);
        Ok(stored)
    }

    async fn get_node(&self, name: &NodeName) -> Result<Node> {
        self.lock().nodes.get(name).cloned().ok_or_else(|| Error::not_found(Kind::Node, name.as_str()))
    }

    async fn list_nodes(&self) -> Result<Vec<Node>> {
        Ok(self.lock().nodes.values().cloned().collect())
    }

    async fn list_nodes_holding(&self, ports: &[HostPort]) -> Result<Vec<Node>> {
        let mut nodes = self.list_nodes().await?;
        for n in &mut nodes {
            n.reserved.ports.retain(|p| ports.contains(p));
        }
        Ok(nodes)
    }

    async fn set_node_status(
        &self,
        name: &NodeName,
        status: NodeStatus,
        heartbeat: Option<SystemTime>,
    ) -> Result<Node> {
        let mut s = self.write();
        let node = s.node_mut(name)?;
        let was = node.status;
        node.status = status;
        if heartbeat.is_some() {
            node.last_heartbeat = heartbeat;
        }
        let node = node.clone();
        s.record(NewEvent::node_status(name.as_str(), was, status));
        Ok(node)
    }

    async fn update_node(&self, name: &NodeName, update: NodeUpdate) -> Result<Node> {
        let mut s = self.write();
        let node = s.node_mut(name)?;
        let before = (node.labels.clone(), node.public_host.clone());
        if let Some(labels) = update.labels {
            node.labels = labels;
        }
        if let Some(host) = update.public_host {
            node.public_host = host;
        }
        if let Some(engine) = update.engine {
            node.engine = Some(engine);
        }
        let node = node.clone();
        if before != (node.labels.clone(), node.public_host.clone()) {
            s.record([NewEvent::node_updated(&node)]);
        }
        Ok(node)
    }

    async fn record_heartbeats(&self, names: &[NodeName], at: SystemTime) -> Result<()> {
        let mut s = self.write();
        for name in names {
            if let Some(node) = s.nodes.get_mut(name) {
                node.last_heartbeat = Some(at);
            }
        }
        Ok(())
    }

    async fn remove_node(&self, name: &NodeName) -> Result<()> {
        let mut s = self.write();
        s.node_mut(name)?;
        let active = s.replicas.values().filter(|r| r.node == *name && r.state.is_active()).count();
        if active > 0 {
            return Err(Error::node_busy(name.as_str(), active));
        }
        s.replicas.retain(|_, r| r.node != *name);
        s.nodes.remove(name);
        s.record([NewEvent::node_removed(name.as_str())]);
        Ok(())
    }
}

fn revision_of(d: &Deployment, change: Change) -> Revision {
    Revision {
        deployment: d.name.clone(),
        number: d.revision,
        template: d.spec.template.clone(),
        created_at: d.updated_at,
        by: change.by,
        cause: change.cause,
        restores: change.restores,
        image_digest: d.image_digest.clone(),
    }
}

impl State {
    /// Ends the deployment's rollout under way (a new template replaces its target) and starts
    /// one to the deployment's current revision: the store's side of `update_deployment`.
    fn start_rollout(&mut self, before: &Deployment, after: &mut Deployment, change: &Change, now: SystemTime) {
        if let Some(id) = before.rollout
            && let Some(r) = self.rollouts.get_mut(&id)
            && r.state.is_active()
        {
            let (state, reason) = crate::rollout::ended_by(change, after.revision);
            r.state = state;
            r.reason = Some(reason);
            r.finished_at = Some(now);
            let ended = NewEvent::rollout_state(r);
            self.record([ended]);
        }
        self.next_rollout += 1;
        let policy = after.spec.policy;
        let rollout = Rollout {
            id: self.next_rollout,
            deployment: after.name.clone(),
            from_revision: before.revision,
            to_revision: after.revision,
            restores: change.restores,
            state: RolloutState::InProgress,
            reason: None,
            updated: 0,
            healthy: 0,
            failed: 0,
            started_at: now,
            finished_at: None,
            policy: if change.restores.is_some() { policy.rollback } else { policy.update },
            pulled_at: None,
        };
        after.rollout = Some(rollout.id);
        self.record([NewEvent::rollout_started(&rollout)]);
        self.rollouts.insert(rollout.id, rollout);
    }
}

#[async_trait]
impl DeploymentStore for MemoryStore {
    async fn create_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        change: Change,
    ) -> Result<Deployment> {
        let mut s = self.write();
        if s.deployments.contains_key(name) {
            return Err(Error::already_exists(Kind::Deployment, name.as_str()));
        }
        let now = SystemTime::now();
        let deployment = Deployment {
            name: name.clone(),
            spec,
            version: 1,
            revision: 1,
            created_at: now,
            updated_at: now,
            unplaced: None,
            crash_loop: None,
            rollout: None,
            image_digest: None,
        };
        s.deployments.insert(name.clone(), deployment.clone());
        s.revisions.insert(name.clone(), vec![revision_of(&deployment, change)]);
        s.record([NewEvent::deployment_created(&deployment)]);
        Ok(deployment)
    }

    async fn get_deployment(&self, name: &DeploymentName) -> Result<Deployment> {
        self.lock().deployments.get(name).cloned().ok_or_else(|| Error::not_found(Kind::Deployment, name.as_str()))
    }

    async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        Ok(self.lock().deployments.values().cloned().collect())
    }

    async fn scale_deployment(
        &self,
        name: &DeploymentName,
        replicas: u32,
        expected_version: u64,
    ) -> Result<Deployment> {
        let mut s = self.write();
        let d = s.deployments.get_mut(name).ok_or_else(|| Error::not_found(Kind::Deployment, name.as_str()))?;
        if d.version != expected_version {
            return Err(Error::stale_version(name.as_str(), d.version, expected_version));
        }
        let was = d.spec.replicas;
        d.spec.replicas = replicas;
        d.version += 1;
        d.updated_at = SystemTime::now();
        let d = d.clone();
        s.record([NewEvent::deployment_scaled(name.as_str(), was, replicas)]);
        Ok(d)
    }

    async fn update_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        expected_version: u64,
        change: Change,
    ) -> Result<Deployment> {
        let kept = self.revisions_kept;
        let mut s = self.write();
        let d = s.deployments.get_mut(name).ok_or_else(|| Error::not_found(Kind::Deployment, name.as_str()))?;
        if d.version != expected_version {
            return Err(Error::stale_version(name.as_str(), d.version, expected_version));
        }
        let before = d.clone();
        let was = d.spec.replicas;
        let new_template = d.spec.template != spec.template;
        let now = SystemTime::now();
        let restored = change.restores.and_then(|n| s.revisions.get(name)?.iter().find(|r| r.number == n).cloned());
        let d = s.deployments.get_mut(name).ok_or_else(|| Error::not_found(Kind::Deployment, name.as_str()))?;
        if new_template {
            d.image_digest = crate::deployment::inherited_digest(&before, &spec.template, restored.as_ref());
            d.revision += 1;
        }
        d.spec = spec;
        d.version += 1;
        d.updated_at = now;
        let mut d = d.clone();
        let mut events = Vec::new();
        if new_template {
            s.start_rollout(&before, &mut d, &change, now);
            s.deployments.insert(name.clone(), d.clone());
            let revisions = s.revisions.entry(name.clone()).or_default();
            revisions.push(revision_of(&d, change));
            let excess = revisions.len().saturating_sub(kept);
            revisions.drain(..excess);
            events.push(NewEvent::deployment_updated(&d));
        }
        if was != d.spec.replicas {
            events.push(NewEvent::deployment_scaled(name.as_str(), was, d.spec.replicas));
        }
        s.record(events);
        Ok(d)
    }

    async fn list_revisions(&self, name: &DeploymentName) -> Result<Vec<Revision>> {
        let s = self.lock();
        if !s.deployments.contains_key(name) {
            return Err(Error::not_found(Kind::Deployment, name.as_str()));
        }
        Ok(s.revisions.get(name).cloned().unwrap_or_default())
    }

    async fn list_rollouts(&self, name: &DeploymentName) -> Result<Vec<Rollout>> {
        let s = self.lock();
        if !s.deployments.contains_key(name) {
            return Err(Error::not_found(Kind::Deployment, name.as_str()));
        }
        Ok(s.rollouts.values().rev().filter(|r| r.deployment == *name).cloned().collect())
    }

    async fn get_rollout(&self, name: &DeploymentName, id: RolloutId) -> Result<Rollout> {
        let s = self.lock();
        if !s.deployments.contains_key(name) {
            return Err(Error::not_found(Kind::Deployment, name.as_str()));
        }
        s.rollouts
            .get(&id)
            .filter(|r| r.deployment == *name)
            .cloned()
            .ok_or_else(|| Error::not_found(Kind::Rollout, id.to_string()))
    }

    async fn record_rollout_progress(
        &self,
        id: RolloutId,
        progress: RolloutProgress,
        waiting_on: Option<String>,
    ) -> Result<Rollout> {
        let mut s = self.write();
        let r = s.rollouts.get_mut(&id).ok_or_else(|| Error::not_found(Kind::Rollout, id.to_string()))?;
        if !r.state.is_active() {
            return Err(Error::Conflict(format!("rollout {id} is {}", r.state)));
        }
        let moved = (r.updated, r.healthy) != (progress.updated, progress.healthy);
        r.updated = progress.updated;
        r.healthy = progress.healthy;
        if r.state == RolloutState::InProgress {
            r.reason = waiting_on;
        }
        let r = r.clone();
        if moved {
            s.record([NewEvent::rollout_progressed(&r)]);
        }
        Ok(r)
    }

    async fn count_rollout_failure(&self, name: &DeploymentName, revision: u64, why: &str) -> Result<()> {
        let mut s = self.write();
        let Some(id) = s.deployments.get(name).and_then(|d| d.rollout) else { return Ok(()) };
        if let Some(r) = s.rollouts.get_mut(&id).filter(|r| r.to_revision == revision && r.state.is_active()) {
            r.failed += 1;
            r.reason = Some(why.to_string());
            let r = r.clone();
            s.record([NewEvent::rollout_progressed(&r)]);
        }
        Ok(())
    }

    async fn set_rollout_state(
        &self,
        id: RolloutId,
        from: &[RolloutState],
        to: RolloutState,
        reason: Option<String>,
    ) -> Result<Rollout> {
        let mut s = self.write();
        let r = s.rollouts.get_mut(&id).ok_or_else(|| Error::not_found(Kind::Rollout, id.to_string()))?;
        if !from.contains(&r.state) {
            return Err(Error::Conflict(format!("rollout {id} is {}", r.state)));
        }
        r.state = to;
        r.reason = reason;
        if !to.is_active() {
            r.finished_at = Some(SystemTime::now());
        }
        let r = r.clone();
        if !to.is_active()
            && let Some(d) = s.deployments.get_mut(&r.deployment)
            && d.rollout == Some(id)
        {
            d.rollout = None;
        }
        s.record([NewEvent::rollout_state(&r)]);
        Ok(r)
    }

    async fn delete_deployment(&self, name: &DeploymentName) -> Result<Vec<Replica>> {
        let mut s = self.write();
        if s.deployments.remove(name).is_none() {
            return Err(Error::not_found(Kind::Deployment, name.as_str()));
        }
        s.revisions.remove(name);
        s.exits.remove(name);
        s.rollouts.retain(|_, r| r.deployment != *name);
        let (removed, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut s.replicas).into_iter().partition(|(_, r)| r.deployment == *name);
        s.replicas = kept.into_iter().collect();
        let removed: Vec<Replica> = removed.into_iter().map(|(_, r)| r).collect();
        for r in removed.iter().filter(|r| r.state.is_active()) {
            s.release(r);
        }
        s.record([NewEvent::deployment_deleted(name.as_str())]);
        Ok(removed)
    }

    async fn set_unplaced(&self, name: &DeploymentName, unplaced: Option<Unplaced>) -> Result<()> {
        let mut s = self.write();
        let Some(d) = s.deployments.get_mut(name) else { return Ok(()) };
        if d.unplaced == unplaced {
            return Ok(());
        }
        d.unplaced = unplaced.clone();
        if let Some(u) = unplaced {
            s.record([NewEvent::deployment_unplaced(name.as_str(), u.count, &u.reason)]);
        }
        Ok(())
    }

    async fn pin_image(&self, name: &DeploymentName, revision: u64, digest: &str) -> Result<()> {
        let mut s = self.write();
        if let Some(r) = s.revisions.get_mut(name).and_then(|rs| rs.iter_mut().find(|r| r.number == revision))
            && r.image_digest.is_none()
        {
            r.image_digest = Some(digest.to_string());
        }
        if let Some(d) = s.deployments.get_mut(name)
            && d.revision == revision
            && d.image_digest.is_none()
        {
            d.image_digest = Some(digest.to_string());
        }
        Ok(())
    }

    async fn mark_rollout_pulled(&self, id: RolloutId) -> Result<Rollout> {
        let mut s = self.write();
        let r = s.rollouts.get_mut(&id).ok_or_else(|| Error::not_found(Kind::Rollout, id.to_string()))?;
        if !r.state.is_active() {
            return Err(Error::Conflict(format!("rollout {id} is {}", r.state.as_str())));
        }
        r.pulled_at.get_or_insert_with(SystemTime::now);
        Ok(r.clone())
    }

    async fn set_crash_loop(&self, name: &DeploymentName, crash: Option<CrashLoop>) -> Result<()> {
        let mut s = self.write();
        let Some(d) = s.deployments.get_mut(name) else { return Ok(()) };
        if d.crash_loop == crash {
            return Ok(());
        }
        d.crash_loop = crash.clone();
        if let Some(c) = crash {
            s.record([NewEvent::deployment_crash_looping(name.as_str(), &c)]);
        }
        Ok(())
    }
}

#[async_trait]
impl RegistryStore for MemoryStore {
    async fn put_registry(&self, credential: RegistryCredential) -> Result<()> {
        self.write().registries.insert(credential.login.server.clone(), credential);
        Ok(())
    }

    async fn list_registries(&self) -> Result<Vec<RegistryLogin>> {
        Ok(self.lock().registries.values().map(|c| c.login.clone()).collect())
    }

    async fn registry_credential(&self, server: &str) -> Result<Option<RegistryCredential>> {
        Ok(self.lock().registries.get(server).cloned())
    }

    async fn remove_registry(&self, server: &str) -> Result<()> {
        match self.write().registries.remove(server) {
            Some(_) => Ok(()),
            None => Err(Error::not_found(Kind::Registry, server)),
        }
    }
}

#[async_trait]
impl ReplicaStore for MemoryStore {
    async fn place_replicas(&self, placements: &[Placement]) -> Result<Vec<Replica>> {
        let mut s = self.write();
        let mut per_node: BTreeMap<&NodeName, (u64, Vec<&Claim>)> = BTreeMap::new();
        for p in placements {
            if !s.deployments.contains_key(&p.deployment) {
                return Err(Error::not_found(Kind::Deployment, p.deployment.as_str()));
            }
            let (units, claims) = per_node.entry(&p.node).or_default();
            *units += u64::from(p.units);
            claims.push(&p.claim);
        }
        for (name, (units, claims)) in &per_node {
            let node = s.nodes.get(*name).ok_or_else(|| Error::not_found(Kind::Node, name.as_str()))?;
            if let Some(why) = node.shortfall(*units, claims.iter().copied()) {
                return Err(why);
            }
        }
        let now = SystemTime::now();
        let mut placed = Vec::with_capacity(placements.len());
        for p in placements {
            let node = s.node_mut(&p.node)?;
            node.available -= p.units;
            node.reserved.memory_bytes += p.claim.memory_bytes;
            node.reserved.nano_cpus += p.claim.nano_cpus;
            node.reserved.ports.extend(p.claim.ports.iter().copied());
            s.next_replica += 1;
            let replica = Replica {
                id: ReplicaId(s.next_replica),
                deployment: p.deployment.clone(),
                node: p.node.clone(),
                units: p.units,
                revision: p.revision,
                container_id: None,
                state: ReplicaState::Pending,
                created_at: now,
                health: None,
                claim: p.claim.clone(),
                started_at: None,
                health_since: None,
                deregistered_at: None,
            };
            s.replicas.insert(replica.id, replica.clone());
            placed.push(replica);
        }
        s.record(placed.iter().map(NewEvent::replica_placed));
        Ok(placed)
    }

    async fn mark_running(&self, id: ReplicaId, container_id: &str) -> Result<Replica> {
        let mut s = self.write();
        let r = s.replica_mut(id)?;
        if r.state == ReplicaState::Lost {
            return Err(Error::replica_lost(id));
        }
        let was = r.state;
        r.state = ReplicaState::Running;
        r.container_id = Some(container_id.to_string());
        r.started_at = Some(SystemTime::now());
        let r = r.clone();
        s.record(NewEvent::replica_state(&r, was));
        Ok(r)
    }

    async fn mark_running_many(&self, started: &[(ReplicaId, String)]) -> Result<Vec<ReplicaId>> {
        if started.is_empty() {
            // Nothing to write: the store's revision stays (as the database stores').
            return Ok(Vec::new());
        }
        let mut s = self.write();
        let mut refused = Vec::new();
        let mut events = Vec::new();
        let now = SystemTime::now();
        for (id, container_id) in started {
            match s.replicas.get_mut(id) {
                Some(r) if r.state != ReplicaState::Lost => {
                    let was = r.state;
                    r.state = ReplicaState::Running;
                    r.container_id = Some(container_id.clone());
                    r.started_at = Some(now);
                    events.extend(NewEvent::replica_state(r, was));
                }
                _ => refused.push(*id),
            }
        }
        s.record(events);
        Ok(refused)
    }

    async fn set_replica_state(&self, id: ReplicaId, state: ReplicaState) -> Result<Replica> {
        let mut s = self.write();
        let r = s.replica_mut(id)?;
        if r.state == state {
            return Ok(r.clone());
        }
        if r.state == ReplicaState::Lost {
            return Err(Error::replica_lost(id));
        }
        let was = r.state;
        r.state = state;
        let r = r.clone();
        if state == ReplicaState::Lost {
            s.release(&r);
        }
        s.record(NewEvent::replica_state(&r, was));
        Ok(r)
    }

    async fn deregister_replicas(&self, ids: &[ReplicaId]) -> Result<()> {
        let mut s = self.write();
        let now = SystemTime::now();
        let mut news = Vec::new();
        for id in ids {
            if let Some(r) = s.replicas.get_mut(id)
                && r.deregistered_at.is_none()
            {
                r.deregistered_at = Some(now);
                news.push(NewEvent::replica_deregistered(r));
            }
        }
        s.record(news);
        Ok(())
    }

    async fn release_replica(&self, id: ReplicaId) -> Result<()> {
        let mut s = self.write();
        let r = s.replicas.remove(&id).ok_or_else(|| Error::not_found(Kind::Replica, id.to_string()))?;
        if r.state.is_active() {
            s.release(&r);
        }
        s.record([NewEvent::replica_removed(&r)]);
        Ok(())
    }

    async fn retire_replica(&self, exit: ReplicaExit) -> Result<()> {
        let mut s = self.write();
        let r = s
            .replicas
            .remove(&exit.replica)
            .ok_or_else(|| Error::not_found(Kind::Replica, exit.replica.to_string()))?;
        if r.state.is_active() {
            s.release(&r);
        }
        s.record([NewEvent::replica_ended(&r, &exit.reason), NewEvent::replica_removed(&r)]);
        let kept = s.deployments.get(&r.deployment).map_or(0, |d| crate::history::kept_for(d.spec.replicas));
        let exits = s.exits.entry(r.deployment.clone()).or_default();
        exits.push_back(exit);
        while exits.len() > kept {
            exits.pop_front();
        }
        Ok(())
    }

    async fn list_exits(&self, deployment: &DeploymentName, logs: bool) -> Result<Vec<ReplicaExit>> {
        let s = self.lock();
        if !s.deployments.contains_key(deployment) {
            return Err(Error::not_found(Kind::Deployment, deployment.as_str()));
        }
        let kept = s.exits.get(deployment).into_iter().flatten().rev();
        Ok(kept.map(|e| ReplicaExit { logs: if logs { e.logs.clone() } else { Vec::new() }, ..e.clone() }).collect())
    }

    async fn set_replica_health(&self, changes: &[(ReplicaId, Option<Health>)]) -> Result<()> {
        let mut s = self.write();
        let mut news = Vec::new();
        let now = SystemTime::now();
        for (id, health) in changes {
            if let Some(r) = s.replicas.get_mut(id)
                && r.health != *health
            {
                r.health = *health;
                r.health_since = Some(now);
                news.extend(health.filter(|h| *h != Health::Starting).map(|h| NewEvent::replica_health(r, h)));
            }
        }
        s.record(news);
        Ok(())
    }

    async fn list_replicas(&self, filter: ReplicaFilter) -> Result<Vec<Replica>> {
        Ok(self.lock().replicas.values().filter(|r| filter.matches(r)).cloned().collect())
    }

    async fn running_replica_ids(&self) -> Result<Vec<ReplicaId>> {
        Ok(self.lock().replicas.values().filter(|r| r.state == ReplicaState::Running).map(|r| r.id).collect())
    }

    async fn count_replicas(&self) -> Result<Vec<ReplicaCount>> {
        let mut counts: BTreeMap<(&DeploymentName, ReplicaState, Option<Health>), u64> = BTreeMap::new();
        let s = self.lock();
        for r in s.replicas.values() {
            *counts.entry((&r.deployment, r.state, r.health)).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((deployment, state, health), count)| ReplicaCount {
                deployment: deployment.clone(),
                state,
                health,
                count,
            })
            .collect())
    }

    async fn mark_node_lost(&self, node: &NodeName) -> Result<Vec<Replica>> {
        let mut s = self.write();
        s.node_mut(node)?;
        let mut lost = Vec::new();
        for r in s.replicas.values_mut().filter(|r| r.node == *node && r.state.is_active()) {
            r.state = ReplicaState::Lost;
            lost.push(r.clone());
        }
        for r in &lost {
            s.release(r);
        }
        s.record(lost.iter().map(NewEvent::replica_lost));
        Ok(lost)
    }
}

#[async_trait]
impl AccessStore for MemoryStore {
    async fn add_token(&self, token: ApiToken) -> Result<()> {
        let mut s = self.write();
        if s.tokens.iter().any(|t| t.id == token.id || t.digest == token.digest) {
            return Err(Error::AlreadyExists { kind: Kind::Token, name: token.id });
        }
        s.tokens.push(token);
        Ok(())
    }

    async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>> {
        Ok(self.lock().tokens.iter().find(|t| t.digest == digest).cloned())
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        self.lock().audit.push(entry);
        Ok(())
    }

    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        Ok(self.lock().audit.iter().rev().take(limit as usize).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::ContainerTemplate;
    use crate::image::ImageRef;

    fn spec(image: &str, replicas: u32) -> DeploymentSpec {
        DeploymentSpec::new(ContainerTemplate::new(ImageRef::parse(image).unwrap()), replicas)
    }

    /// The contract the diesel store's suite holds it to: a new template makes the next
    /// revision, a scale does not, and the newest revisions are kept.
    #[tokio::test]
    async fn template_changes_make_revisions_and_the_newest_are_kept() {
        let store = MemoryStore::new().keeping_revisions(2);
        let web = DeploymentName::new("web").unwrap();
        store.create_deployment(&web, spec("local/web:1", 1), Change::by("tok")).await.unwrap();
        let scaled = store.update_deployment(&web, spec("local/web:1", 3), 1, Change::default()).await.unwrap();
        assert_eq!((scaled.version, scaled.revision), (2, 1));
        let v3 = store.update_deployment(&web, spec("local/web:2", 3), 2, Change::default()).await.unwrap();
        assert_eq!((v3.version, v3.revision), (3, 2));
        assert!(store.update_deployment(&web, spec("local/web:3", 3), 2, Change::default()).await.is_err());
        store.update_deployment(&web, spec("local/web:3", 3), 3, Change::default()).await.unwrap();
        let kept: Vec<u64> = store.list_revisions(&web).await.unwrap().iter().map(|r| r.number).collect();
        assert_eq!(kept, [2, 3]);
    }
}
