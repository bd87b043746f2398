//! This crate's failures. Inside a transaction everything is an `Error`; at the trait boundary
//! it becomes the domain's `orchestrator_core::Error`.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use orchestrator_core::Error as DomainError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule of the domain, decided inside a transaction (not found, conflict, capacity...).
    #[error(transparent)]
    Domain(#[from] DomainError),

    #[error("cannot open database {url:?}: {source}")]
    Connect { url: String, source: diesel::ConnectionError },

    #[error("database migrations failed: {0}")]
    Migrate(String),

    #[error("connection pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),

    #[error("database: {0}")]
    Query(#[from] DieselError),

    #[error("stored row is not valid: {0}")]
    Corrupt(String),

    #[error(
        "unsupported store URL {0:?} (sqlite://PATH or a file path; postgres:// needs a build with the `postgres` feature)"
    )]
    UnsupportedUrl(String),

    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl From<Error> for DomainError {
    fn from(error: Error) -> Self {
        match error {
            Error::Domain(e) => e,
            Error::Query(DieselError::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::UniqueViolation => DomainError::Conflict(format!("duplicate: {}", info.message())),
                DatabaseErrorKind::ForeignKeyViolation => {
                    DomainError::Conflict(format!("still referenced or missing reference: {}", info.message()))
                }
                DatabaseErrorKind::CheckViolation => {
                    DomainError::Conflict(format!("constraint violated: {}", info.message()))
                }
                _ => DomainError::Store(info.message().to_string()),
            },
            other => DomainError::Store(other.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
