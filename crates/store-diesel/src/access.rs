//! `AccessStore` on SQLite: API tokens (digests only) and the audit log.

use async_trait::async_trait;
use diesel::prelude::*;
use orchestrator_core::error::Kind;
use orchestrator_core::{AccessStore, ApiToken, AuditEntry, Error as DomainError, Result};

use crate::error::Error;
use crate::rows::{from_millis, to_millis};
use crate::schema::{audit, tokens};
use crate::store::{DieselStore, RevisionChange};

type TokenRow = (String, String, String, i64);
type AuditRow = (i64, String, String, i32);

fn token(row: TokenRow) -> Result<ApiToken, Error> {
    Ok(ApiToken {
        id: row.0,
        role: row.1.parse().map_err(|e| Error::Corrupt(format!("token role: {e}")))?,
        digest: row.2,
        created_at: from_millis(row.3),
    })
}

#[async_trait]
impl AccessStore for DieselStore {
    async fn add_token(&self, token: ApiToken) -> Result<()> {
        Ok(self
            .write_ahead(RevisionChange::Bump, move |conn| {
                let taken: i64 = tokens::table
                    .filter(tokens::id.eq(&token.id).or(tokens::digest.eq(&token.digest)))
                    .count()
                    .get_result(conn)?;
                if taken > 0 {
                    return Err(DomainError::already_exists(Kind::Token, token.id).into());
                }
                diesel::insert_into(tokens::table)
                    .values((
                        tokens::id.eq(&token.id),
                        tokens::role.eq(token.role.as_str()),
                        tokens::digest.eq(&token.digest),
                        tokens::created_at_ms.eq(to_millis(token.created_at)),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await?)
    }

    async fn token_by_digest(&self, digest: &str) -> Result<Option<ApiToken>> {
        let digest = digest.to_string();
        Ok(self
            .read(move |conn| {
                let row: Option<TokenRow> = tokens::table
                    .filter(tokens::digest.eq(&digest))
                    .select((tokens::id, tokens::role, tokens::digest, tokens::created_at_ms))
                    .first(conn)
                    .optional()?;
                row.map(token).transpose()
            })
            .await?)
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        Ok(self
            .write_ahead(RevisionChange::Keep, move |conn| {
                diesel::insert_into(audit::table)
                    .values((
                        audit::at_ms.eq(to_millis(entry.at)),
                        audit::token_id.eq(&entry.token_id),
                        audit::action.eq(&entry.action),
                        audit::status.eq(i32::from(entry.status)),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await?)
    }

    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEntry>> {
        Ok(self
            .read(move |conn| {
                let rows: Vec<AuditRow> = audit::table
                    .order(audit::seq.desc())
                    .limit(i64::from(limit))
                    .select((audit::at_ms, audit::token_id, audit::action, audit::status))
                    .load(conn)?;
                Ok(rows
                    .into_iter()
                    .map(|(at, token_id, action, status)| AuditEntry {
                        at: from_millis(at),
                        token_id,
                        action,
                        status: u16::try_from(status).unwrap_or(0),
                    })
                    .collect())
            })
            .await?)
    }
}
