//! Who may call the API, and what they did: API tokens (kept as digests) and the audit log.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads only.
    Reader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "admin" => Ok(Role::Admin),
            "reader" => Ok(Role::Reader),
            other => Err(Error::invalid("role", format!("{other:?} is not admin or reader"))),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored API token: never the token itself, only its SHA-256 digest (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Public, short, safe to log: names the token in the audit log.
    pub id: String,
    pub role: Role,
    pub digest: String,
    pub created_at: SystemTime,
}

/// One mutation, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: SystemTime,
    /// The token's id (never the token).
    pub token_id: String,
    /// e.g. `POST /v1/deployments`.
    pub action: String,
    /// HTTP status of the answer.
    pub status: u16,
}

#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores a token. `AlreadyExists` if the id or digest is taken.
    async fn add_token(&self, token: ApiToken) -> Result<()>;

    /// The token with this digest, if any.
    async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>>;

    async fn append_audit(&self, entry: AuditEntry) -> Result<()>;

    /// The newest `limit` entries, newest first.
    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>>;
}
