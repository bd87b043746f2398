//! `EventStore` on diesel, and `record`: what every write calls, inside its own transaction, to
//! add the events of the change it makes. Ids come from the table's never-reused sequence;
//! writers hold the database's write lock, so ids are handed out, and become visible, in order.

use std::time::SystemTime;

use async_trait::async_trait;
use diesel::prelude::*;
use orchestrator_core::{EVENT_RETENTION, Event, EventStore, NewEvent, Result};

use crate::connection::AnyConnection;
use crate::error::Error;
use crate::prepared::Fixed;
use crate::rows::{from_millis, to_millis};
use crate::schema::events;
use crate::store::DieselStore;

/// Rows per INSERT on PostgreSQL (6 parameters each).
#[cfg(feature = "postgres")]
const INSERT_CHUNK: usize = 1_000;
/// Old events are dropped once every this many ids, not on every write.
const PRUNE_EVERY: i64 = 256;

/// `None` is inserted as NULL, not "leave to the column's default" (which would make diesel
/// insert row by row).
#[cfg(feature = "postgres")]
#[derive(Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
struct NewEventRow<'a> {
    at_ms: i64,
    kind: &'a str,
    node: Option<&'a str>,
    deployment: Option<&'a str>,
    replica: Option<i64>,
    message: &'a str,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = events)]
struct EventRow {
    id: i64,
    at_ms: i64,
    kind: String,
    node: Option<String>,
    deployment: Option<String>,
    replica: Option<i64>,
    message: String,
}

impl TryFrom<EventRow> for Event {
    type Error = Error;
    fn try_from(row: EventRow) -> Result<Event, Error> {
        Ok(Event {
            id: u64::try_from(row.id).map_err(|e| Error::Corrupt(format!("event id: {e}")))?,
            at: from_millis(row.at_ms),
            kind: row.kind.parse().map_err(|e| Error::Corrupt(format!("event kind: {e}")))?,
            node: row.node,
            deployment: row.deployment,
            replica: row.replica.and_then(|r| u64::try_from(r).ok()),
            message: row.message,
        })
    }
}

/// Records `new` in the caller's write transaction, and now and then drops the events older
/// than the retention.
pub(crate) fn record(conn: &mut AnyConnection, new: &[NewEvent]) -> Result<(), Error> {
    if new.is_empty() {
        return Ok(());
    }
    let at_ms = to_millis(SystemTime::now());
    match conn {
        // One short statement, the events as one JSON parameter, in their order: a multi-row
        // VALUES of 6,000 parameters costs more to compile than to run.
        AnyConnection::Sqlite(c) => {
            let rows: Vec<_> = new
                .iter()
                .map(|e| {
                    let replica = e.replica.and_then(|r| i64::try_from(r).ok());
                    (e.kind.as_str(), e.node.as_deref(), e.deployment.as_deref(), replica, &e.message)
                })
                .collect();
            Fixed::new(
                "INSERT INTO events (at_ms, kind, node, deployment, replica, message) \
                 SELECT ?, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
                 FROM json_each(?) ORDER BY key",
            )
            .big_int(at_ms)
            .text(serde_json::to_string(&rows).expect("text and numbers always serialize"))
            .execute(c)?;
        }
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => {
            for chunk in new.chunks(INSERT_CHUNK) {
                let rows: Vec<NewEventRow> = chunk
                    .iter()
                    .map(|e| NewEventRow {
                        at_ms,
                        kind: e.kind.as_str(),
                        node: e.node.as_deref(),
                        deployment: e.deployment.as_deref(),
                        replica: e.replica.and_then(|r| i64::try_from(r).ok()),
                        message: &e.message,
                    })
                    .collect();
                diesel::insert_into(events::table).values(&rows).execute(c)?;
            }
        }
    }
    let last: i64 = events::table.select(diesel::dsl::max(events::id)).first::<Option<i64>>(conn)?.unwrap_or(0);
    let retention = i64::try_from(EVENT_RETENTION).unwrap_or(i64::MAX);
    if last > retention && (last % PRUNE_EVERY) < i64::try_from(new.len()).unwrap_or(i64::MAX) {
        diesel::delete(events::table.filter(events::id.le(last - retention))).execute(conn)?;
    }
    Ok(())
}

#[async_trait]
impl EventStore for DieselStore {
    async fn list_events(&self, since: u64, limit: u32) -> Result<Vec<Event>> {
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        Ok(self
            .read(move |conn| {
                let rows: Vec<EventRow> = events::table
                    .filter(events::id.gt(since))
                    .order(events::id)
                    .limit(i64::from(limit))
                    .select(EventRow::as_select())
                    .load(conn)?;
                rows.into_iter().map(Event::try_from).collect()
            })
            .await?)
    }

    async fn record_events(&self, news: Vec<NewEvent>) -> Result<()> {
        Ok(self.write(move |conn| record(conn, &news)).await?)
    }

    async fn last_event_id(&self) -> Result<u64> {
        Ok(self
            .read(|conn| {
                let last: Option<i64> = events::table.select(diesel::dsl::max(events::id)).first(conn)?;
                Ok(u64::try_from(last.unwrap_or(0)).unwrap_or(0))
            })
            .await?)
    }
}
