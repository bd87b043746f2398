//! The orchestrator's durable state on diesel. SQLite (bundled) is the embedded default;
//! PostgreSQL (feature `postgres`) is for several servers sharing one store. Every store trait
//! of `orchestrator-core` is implemented once, by [`DieselStore`], for both.

#![forbid(unsafe_code)]

mod access;
mod connection;
mod deployments;
mod error;
mod events;
mod exits;
mod fence;
mod lease;
mod node_cache;
mod nodes;
mod policy_json;
mod prepared;
mod registries;
mod replicas;
mod revision;
mod rollouts;
mod rows;
mod schema;
mod setup;
mod store;
mod template_json;

pub use error::Error;
pub use setup::{Backend, SQLITE_WRITER_PRAGMAS};
pub use store::DieselStore;
