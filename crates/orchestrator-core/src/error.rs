//! The one error type of the domain, shared by every boundary trait so that callers (scheduler,
//! API) can map failures to behaviour (retry, 404, 409, ...) without knowing the backend.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of object an error is about; used in messages and to pick HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Node,
    Deployment,
    Replica,
    Container,
    Token,
    Rollout,
    Revision,
    Registry,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Node => "node",
            Kind::Deployment => "deployment",
            Kind::Rollout => "rollout",
            Kind::Revision => "revision",
            Kind::Replica => "replica",
            Kind::Container => "container",
            Kind::Token => "token",
            Kind::Registry => "registry",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Input that breaks a rule of the domain; `field` is the offending input's path
    /// (`replicas`, `ports[1].published`, `env.1BAD`).
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },

    #[error("{kind} {name:?} not found")]
    NotFound { kind: Kind, name: String },

    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: Kind, name: String },

    /// A write based on stale data (optimistic concurrency) or one the current state forbids.
    #[error("conflict: {0}")]
    Conflict(String),

    #[error("node {node:?} has {available} free units, {needed} needed")]
    InsufficientCapacity { node: String, needed: u64, available: u64 },

    /// The store failed for a reason the caller cannot fix (I/O, corruption, pool exhausted).
    #[error("store failure: {0}")]
    Store(String),

    /// A node's engine did not answer in time (a hung engine or a partition).
    #[error("node {node:?}: {operation} timed out after {after:?}")]
    Timeout { node: String, operation: &'static str, after: Duration },

    /// A node's engine refused or dropped the connection (a dead engine).
    #[error("node {node:?} unreachable: {message}")]
    Unreachable { node: String, message: String },

    #[error("image {image:?} not found on node {node:?}")]
    ImageNotFound { image: String, node: String },

    /// The engine could not pull the image; why, in words (unauthorized, not in the
    /// registry, the registry unreachable, the disk full).
    #[error("node {node:?}: pull of {image} failed: {reason}")]
    PullFailed { node: String, image: String, reason: String },

    /// The action needs the leader (it acts on engines at once) and this server follows;
    /// `leader` is the leading server's id, if one is known. Retry, or ask the leader.
    #[error("this server is not the leader (leader: {}); retry, or send it to the leader", leader.as_deref().unwrap_or("none yet"))]
    NotLeader { leader: Option<String> },

    /// The engine answered with an error we have no better variant for.
    #[error("node {node:?}: engine error: {message}")]
    Engine { node: String, message: String },
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid { field: field.into(), message: message.into() }
    }

    pub fn not_found(kind: Kind, name: impl Into<String>) -> Self {
        Error::NotFound { kind, name: name.into() }
    }

    pub fn already_exists(kind: Kind, name: impl Into<String>) -> Self {
        Error::AlreadyExists { kind, name: name.into() }
    }

    /// A write based on an old version of a deployment.
    pub fn stale_version(deployment: &str, current: u64, expected: u64) -> Self {
        Error::Conflict(format!("deployment {deployment:?} is at version {current}, not {expected}; reload and retry"))
    }

    /// A node cannot be removed while replicas still run on it.
    pub fn node_busy(node: &str, replicas: usize) -> Self {
        Error::Conflict(format!("node {node:?} still has {replicas} replicas; drain it first"))
    }

    /// A `Lost` replica never comes back: a new replica replaced it.
    pub fn replica_lost(replica: impl std::fmt::Display) -> Self {
        Error::Conflict(format!("replica {replica} is lost; it was replaced"))
    }

    /// Only online nodes take new replicas.
    pub fn node_not_online(node: &str, status: impl std::fmt::Display) -> Self {
        Error::Conflict(format!("node {node:?} is {status}; it takes no new replicas"))
    }

    /// True when the node itself is the problem (dead, hung, partitioned), as opposed to the
    /// request: the heartbeat counts these as misses.
    pub fn is_node_failure(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::Unreachable { .. })
    }
}
