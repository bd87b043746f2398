//! SQL text of our own, prepared once per connection and kept.
//!
//! diesel prepares a `sql_query` anew every time it runs (its text could be anything, so it
//! never enters the statement cache). The SQLite statements written by hand are the hot ones,
//! a placement's reservation, replicas and events: preparing them again for each placement
//! was ~7% of `bench scale --store-only`'s profile, the parser's alone. A `Fixed` is a text
//! that never changes with its data, whose binds go where its `?` are; diesel's cache keeps
//! its prepared statement by that text.

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Integer, Text, Untyped};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{QueryResult, RunQueryDsl};

enum Bind {
    Text(String),
    BigInt(i64),
    Integer(i32),
}

/// A statement of a fixed text (`?` for each bind, in order; none inside a literal).
pub(crate) struct Fixed {
    sql: &'static str,
    binds: Vec<Bind>,
}

impl Fixed {
    pub(crate) fn new(sql: &'static str) -> Self {
        Self { sql, binds: Vec::new() }
    }

    pub(crate) fn text(mut self, value: impl Into<String>) -> Self {
        self.binds.push(Bind::Text(value.into()));
        self
    }

    pub(crate) fn big_int(mut self, value: i64) -> Self {
        self.binds.push(Bind::BigInt(value));
        self
    }

    pub(crate) fn integer(mut self, value: i32) -> Self {
        self.binds.push(Bind::Integer(value));
        self
    }
}

impl QueryId for Fixed {
    type QueryId = ();
    // No id of its type: the cache keys it by its text and bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Fixed {
    type SqlType = Untyped;
}

impl RunQueryDsl<SqliteConnection> for Fixed {}

impl QueryFragment<Sqlite> for Fixed {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        let mut binds = self.binds.iter();
        for (i, piece) in self.sql.split('?').enumerate() {
            if i > 0 {
                // Writes the `?` back along with the value.
                match binds.next() {
                    Some(Bind::Text(v)) => out.push_bind_param::<Text, _>(v)?,
                    Some(Bind::BigInt(v)) => out.push_bind_param::<BigInt, _>(v)?,
                    Some(Bind::Integer(v)) => out.push_bind_param::<Integer, _>(v)?,
                    None => return Err(mismatch(self.sql)),
                }
            }
            out.push_sql(piece);
        }
        match binds.next() {
            Some(_) => Err(mismatch(self.sql)),
            None => Ok(()),
        }
    }
}

fn mismatch(sql: &str) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(format!("binds and placeholders differ in number: {sql}").into())
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, QueryableByName};

    use super::*;

    #[derive(QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    #[test]
    fn binds_go_where_their_placeholders_are_and_the_statement_is_prepared_once() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute("CREATE TABLE t (name TEXT NOT NULL, n BIGINT NOT NULL)").unwrap();
        let insert = |name: &str, n: i64| {
            Fixed::new("INSERT INTO t (n, name) VALUES (? + ?, ?)").big_int(n).integer(1).text(name)
        };
        for (name, n) in [("a", 1), ("b", 2)] {
            assert_eq!(insert(name, n).execute(&mut conn).unwrap(), 1);
        }
        let rows: Vec<Row> =
            Fixed::new("SELECT name, n FROM t WHERE n > ? ORDER BY n").big_int(0).load(&mut conn).unwrap();
        assert_eq!(rows, [Row { name: "a".into(), n: 2 }, Row { name: "b".into(), n: 3 }]);
        // Prepared once and kept: three runs of a new text enter the cache once.
        let cached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&cached);
        conn.set_instrumentation(move |event: diesel::connection::InstrumentationEvent<'_>| {
            if matches!(event, diesel::connection::InstrumentationEvent::CacheQuery { .. }) {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        for n in 0..3 {
            Fixed::new("DELETE FROM t WHERE n = ?").big_int(n).execute(&mut conn).unwrap();
        }
        assert_eq!(cached.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn too_few_or_too_many_binds_is_an_error() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        assert!(Fixed::new("SELECT ?, ?").big_int(1).execute(&mut conn).is_err());
        assert!(Fixed::new("SELECT ?").big_int(1).big_int(2).execute(&mut conn).is_err());
    }
}
