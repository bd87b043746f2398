//! The fence: whose writes a fenced store may make, checked under the database's write lock
//! in every write transaction of that store.

use diesel::prelude::*;
use orchestrator_core::Error as DomainError;

use crate::connection::AnyConnection;
use crate::error::Error;
use crate::schema::lease;

pub(crate) type LeaseRow = (String, i64, i64);

pub(crate) fn load(conn: &mut AnyConnection) -> Result<Option<LeaseRow>, Error> {
    Ok(lease::table.select((lease::holder, lease::term, lease::expires_at_ms)).first(conn).optional()?)
}

/// Whose writes a fenced store may make: `holder` at `term`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    pub holder: String,
    pub term: i64,
}

impl Fence {
    /// Inside a write transaction (so serialized with every lease change): `Conflict` unless the
    /// lease is still ours at our term.
    pub(crate) fn check(&self, conn: &mut AnyConnection) -> Result<(), Error> {
        match load(conn)? {
            Some((holder, term, _)) if holder == self.holder && term == self.term => Ok(()),
            found => Err(DomainError::Conflict(format!(
                "stale leader: {} at term {} may no longer write ({})",
                self.holder,
                self.term,
                found.map_or("no lease".to_string(), |(h, t, _)| format!("{h} leads at term {t}"))
            ))
            .into()),
        }
    }
}
