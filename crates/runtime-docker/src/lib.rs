//! `ContainerRuntime` for Docker Engines, on bollard.
//!
//! Architecture invariant: no bollard type crosses this crate's boundary; callers see only
//! orchestrator-core's types and errors.

#![forbid(unsafe_code)]

mod classify;
mod config;
mod connections;
mod container_spec;
mod labels;
mod late_oom;
mod log_lines;
mod runtime;
mod watch;

pub use config::{DockerRuntimeConfig, TlsFiles};
pub use labels::{
    LABEL_CLUSTER, LABEL_DEPLOYMENT, LABEL_MANAGED_BY, LABEL_REPLICA, LABEL_REVISION, MANAGED_BY, container_name,
};
pub use runtime::DockerRuntime;
