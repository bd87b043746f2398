//! The orchestrator's durable state on diesel. SQLite (bundled) is the embedded default; every
//! store trait of `orchestrator-core` is implemented by [`SqliteStore`].

#![forbid(unsafe_code)]

mod access;
mod deployments;
mod error;
mod nodes;
mod replicas;
mod rows;
mod schema;
mod sqlite;

pub use error::Error;
pub use sqlite::SqliteStore;
