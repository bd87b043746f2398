//! Opening connections: each backend's per-connection settings, the read pool's connections,
//! and a URL fit for logs.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::ManageConnection;

use crate::connection::AnyConnection;
use crate::error::{Error, Result};

/// How long an SQLite connection waits for a lock before giving up. Writes are serialized
/// in-process, so this only matters when several processes share the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const READ_POOL_SIZE: u32 = 4;
/// A small page cache per SQLite reader: the file's pages stay in the OS page cache anyway, and
/// four default-sized caches (2 MiB each) filled by the reconciler's full scans were most of an
/// idle server's memory.
const READER_CACHE_KIB: u32 = 256;
/// The SQLite writer's settings (beside WAL and the per-connection ones). A placement of 1,000
/// replicas over 1,000 nodes dirties a page of the node index per replica and most of the
/// nodes table: more than the default 2 MiB cache holds, so SQLite spilled pages to the WAL in
/// the middle of the transaction, and the default checkpoint (every 1,000 pages, 4 MiB) copied
/// nearly every transaction back into the database and fsynced it. 16 MiB of cache and a
/// checkpoint every 64 MiB of WAL write a hot page about once per checkpoint instead of once
/// per transaction. Statement journals in memory: a multi-row statement that a CHECK or
/// foreign-key constraint may abort half-way keeps a journal of every page it touches, which
/// went to a temporary file, a third of a placement's time. Public so that benchmarks measure
/// raw SQLite with the same settings.
pub const SQLITE_WRITER_PRAGMAS: &str =
    "PRAGMA cache_size = -16384; PRAGMA wal_autocheckpoint = 16384; PRAGMA temp_store = MEMORY;";
/// A PostgreSQL session idle this long inside a transaction is ended by the server, which
/// rolls the transaction back and frees the write lock. Our transactions never wait between
/// statements, so only a paused process (SIGSTOP, a VM freeze) hits it: without it, a leader
/// paused in the middle of a write would hold every other server's writes, the new leader's
/// lease included, for as long as it stays paused. Shorter than the lease TTL (5 s).
#[cfg(feature = "postgres")]
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Which database a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn sqlite_pragmas() -> String {
    // busy_timeout must come first: the other pragmas may already need a lock.
    format!(
        "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        BUSY_TIMEOUT.as_millis()
    )
}

/// Opens one connection of the given backend: never "whichever backend accepts the string"
/// (SQLite accepts any string as a file name, so a PostgreSQL URL with the server down would
/// silently become a new empty file).
pub(crate) fn establish(backend: Backend, url: &str) -> Result<AnyConnection> {
    let connect = |source| Error::Connect { url: redact(url), source };
    match backend {
        Backend::Sqlite => {
            let mut conn = SqliteConnection::establish(url).map_err(connect)?;
            conn.batch_execute(&sqlite_pragmas())?;
            Ok(AnyConnection::Sqlite(conn))
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let mut conn = diesel::PgConnection::establish(url).map_err(connect)?;
            conn.batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = {}",
                IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
            ))?;
            Ok(AnyConnection::Postgres(conn))
        }
        #[cfg(not(feature = "postgres"))]
        Backend::Postgres => Err(Error::UnsupportedUrl(redact(url))),
    }
}

/// A URL fit for logs and errors: the password, if any, replaced.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The read pool's connections, opened as `establish` does.
#[derive(Debug)]
pub(crate) struct Readers {
    pub(crate) backend: Backend,
    pub(crate) url: String,
}

impl ManageConnection for Readers {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        let mut conn = establish(self.backend, &self.url).map_err(|e| match e {
            Error::Connect { source, .. } => diesel::r2d2::Error::ConnectionError(source),
            Error::Query(q) => diesel::r2d2::Error::QueryError(q),
            other => diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(other.to_string())),
        })?;
        if self.backend == Backend::Sqlite {
            conn.batch_execute(&format!("PRAGMA cache_size = -{READER_CACHE_KIB};"))
                .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1").map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, _: &mut AnyConnection) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::Text;

    use super::*;

    #[derive(QueryableByName)]
    struct CompileOption {
        #[diesel(sql_type = Text)]
        compile_options: String,
    }

    /// `.cargo/config.toml` builds the bundled SQLite without a mutex per call: if that
    /// setting is lost (a moved config, an overriding environment), this says so.
    #[test]
    fn the_bundled_sqlite_takes_no_mutex_per_call() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
            .load::<CompileOption>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|o| o.compile_options)
            .collect();
        for wanted in ["THREADSAFE=2", "DEFAULT_MEMSTATUS=0"] {
            assert!(options.iter().any(|o| o == wanted), "{wanted} not in {options:?}");
        }
    }
}
