//! The orchestrator's domain in the operator's words: nodes, deployments, replicas, and the traits
//! at every boundary (the container runtime and the stores).
//!
//! Architecture invariant: this crate does no I/O and depends on no other crate of ours. Wire
//! formats (JSON, SQL rows, Docker's types) are converted at the edges, in the crates that speak
//! them. Time enters as values (`SystemTime`), never read from a clock here.

#![forbid(unsafe_code)]

pub mod access;
pub mod address;
pub mod control;
pub mod crash_loop;
pub mod deployment;
pub mod error;
pub mod event;
pub mod history;
pub mod image;
pub mod lease;
pub mod logs;
#[cfg(feature = "mock")]
pub mod memory;
pub mod name;
pub mod node;
pub mod registry;
pub mod replica;
pub mod rollout;
pub mod runtime;
pub mod stack;
pub mod store;
pub mod workload;

pub use access::{AccessStore, ApiToken, AuditEntry, Role};
pub use address::{EngineAddress, Scheme};
pub use control::{ControlPlane, Leadership, LoopHealth, LoopStats};
pub use crash_loop::{CrashLoop, Failure};
pub use deployment::{
    Change, ContainerTemplate, Deployment, DeploymentSpec, Limits, PullPolicy, REVISIONS_KEPT, Revision, Unplaced,
};
pub use error::{Error, Result};
pub use event::{EVENT_RETENTION, Event, EventKind, EventStore, NewEvent};
pub use history::{EndReason, ReplicaExit};
pub use image::ImageRef;
pub use lease::{Lease, LeaseStore};
pub use logs::{LogLine, LogLines, LogRequest, OutputStream};
pub use name::{DeploymentName, NodeName, StackName};
pub use node::{EngineFacts, NewNode, Node, NodeStatus, NodeUpdate};
pub use registry::{Password, RegistryCredential, RegistryLogin, RegistryStore};
pub use replica::{Placement, Replica, ReplicaCount, ReplicaFilter, ReplicaId, ReplicaState};
pub use rollout::{
    DeployPolicy, FailureAction, MAX_DEREGISTER_DELAY, MAX_MONITOR, MAX_PROGRESS_DEADLINE, MAX_READY_DEADLINE,
    PlannedAction, PlannedKind, Rollout, RolloutId, RolloutPlan, RolloutProgress, RolloutState, UpdateOrder,
    UpdatePolicy,
};
pub use runtime::{
    BoundPort, ContainerEnd, ContainerRuntime, ContainerState, ContainerSummary, EngineInfo, ReplicaContainer,
};
pub use store::{ClusterStore, DeploymentStore, NodeStore, ReplicaStore, StoreRevision};
pub use workload::{
    Claim, Constraint, ConstraintKey, Health, HealthCheck, HealthCommand, HostPort, PortSpec, Protocol, Reserved,
    Resources,
};

#[cfg(feature = "mock")]
pub use access::MockAccessStore;
#[cfg(feature = "mock")]
pub use control::MockControlPlane;
#[cfg(feature = "mock")]
pub use event::MockEventStore;
#[cfg(feature = "mock")]
pub use lease::MockLeaseStore;
#[cfg(feature = "mock")]
pub use registry::MockRegistryStore;
#[cfg(feature = "mock")]
pub use runtime::MockContainerRuntime;
#[cfg(feature = "mock")]
pub use store::{MockDeploymentStore, MockNodeStore, MockReplicaStore, MockStoreRevision};
