//! The SQLite store: the seed's "one connection" idea done right.
//!
//! - WAL journal, set once when the file is opened, so readers never block the writer;
//! - every connection sets `busy_timeout` first (before anything that may touch a lock), then
//!   `foreign_keys=ON` and `synchronous=NORMAL`;
//! - all writes go through one writer connection behind a mutex, each in `BEGIN IMMEDIATE`, so
//!   two writers never both hold a read lock and then deadlock upgrading it ("database is
//!   locked", k3s#8234);
//! - reads use a small pool of their own connections;
//! - every call runs on tokio's blocking pool, never on the async executor.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Error, Result};
use crate::schema::cluster;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// How long a connection waits for a lock before giving up. Writes are serialized in-process,
/// so this only matters when several processes share the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const READ_POOL_SIZE: u32 = 4;
const READER_CACHE_KIB: u32 = 256;

fn connection_pragmas() -> String {
    // busy_timeout must come first: the other pragmas may already need a lock.
    format!(
        "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        BUSY_TIMEOUT.as_millis()
    )
}

#[derive(Debug)]
struct Pragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // A small page cache per reader: the file's pages stay in the OS page cache anyway, and
        // four default-sized caches (2 MiB each) filled by the reconciler's full scans were
        // most of an idle server's memory.
        let pragmas = format!("{} PRAGMA cache_size = -{READER_CACHE_KIB};", connection_pragmas());
        conn.batch_execute(&pragmas).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// A store on one SQLite file. Cheap to clone; clones share the writer and the read pool.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Mutex<SqliteConnection>>,
    readers: Pool<ConnectionManager<SqliteConnection>>,
    path: PathBuf,
    cluster_id: Arc<str>,
    /// Bumped after every write transaction (committed or not). This process is the file's only
    /// writer, so it sees every change.
    revision: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).field("cluster_id", &self.cluster_id).finish()
    }
}

impl SqliteStore {
    /// Opens a store from a URL: `sqlite://PATH`, `sqlite:PATH` or a bare file path.
    pub async fn open_url(url: &str) -> Result<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .or_else(|| (!url.contains("://")).then_some(url))
            .ok_or_else(|| Error::UnsupportedUrl(url.to_string()))?;
        Self::open(Path::new(path)).await
    }

    /// Opens (creating if needed) the database file, migrates it and makes sure it has a
    /// cluster id.
    pub async fn open(path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path)).await?
    }

    fn open_blocking(path: PathBuf) -> Result<Self> {
        let url = path.to_string_lossy().into_owned();
        let mut writer =
            SqliteConnection::establish(&url).map_err(|source| Error::Connect { url: url.clone(), source })?;
        writer.batch_execute(&connection_pragmas())?;
        // WAL is a property of the file: set once here, every later connection inherits it.
        writer.batch_execute("PRAGMA journal_mode = WAL;")?;
        let applied = writer.run_pending_migrations(MIGRATIONS).map_err(|e| Error::Migrate(e.to_string()))?;
        for migration in applied {
            tracing::info!(%migration, "applied migration");
        }
        let cluster_id = writer.immediate_transaction(ensure_cluster_id)?;
        let readers = Pool::builder()
            .max_size(READ_POOL_SIZE)
            .min_idle(Some(1))
            // r2d2 opens connections in the background on 3 threads by default; one is plenty.
            .thread_pool(Arc::new(scheduled_thread_pool::ScheduledThreadPool::new(1)))
            .connection_customizer(Box::new(Pragmas))
            .build(ConnectionManager::<SqliteConnection>::new(&url))?;
        tracing::info!(path = %path.display(), %cluster_id, "opened SQLite store");
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            readers,
            path,
            cluster_id: cluster_id.into(),
            revision: Arc::new(AtomicU64::new(1)),
        })
    }

    /// This cluster's identity: random, made when the file was created, stable afterwards.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer connection, off the executor.
    /// Any error rolls the whole transaction back.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T> + Send + 'static,
    {
        let writer = Arc::clone(&self.writer);
        let revision = Arc::clone(&self.revision);
        tokio::task::spawn_blocking(move || {
            // A panic in an earlier write poisons the mutex; the connection itself is still sound
            // (the transaction was rolled back), so keep using it.
            let mut conn = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let result = conn.immediate_transaction(f);
            // After the commit, so a reader that sees the new number also sees the new rows.
            revision.fetch_add(1, Ordering::Release);
            result
        })
        .await?
    }

    /// See [`orchestrator_core::StoreRevision`].
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Runs `f` on a pooled read connection, off the executor.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut pooled = readers.get()?;
            let conn: &mut SqliteConnection = &mut pooled;
            // One snapshot for multi-statement reads.
            conn.transaction(f)
        })
        .await?
    }
}

fn ensure_cluster_id(conn: &mut SqliteConnection) -> Result<String> {
    let existing: Option<String> = cluster::table.select(cluster::id).first(conn).optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    // Short enough for container names, random enough that two clusters never collide.
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    diesel::insert_into(cluster::table).values((cluster::singleton.eq(1), cluster::id.eq(&id))).execute(conn)?;
    Ok(id)
}

#[async_trait::async_trait]
impl orchestrator_core::StoreRevision for SqliteStore {
    async fn revision(&self) -> orchestrator_core::Result<u64> {
        Ok(SqliteStore::revision(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::nodes;

    /// The CHECK constraints are the last line of defence: even a write that bypasses the
    /// store's own checks cannot push available capacity outside `0..=capacity`, and the
    /// violation reaches callers as a typed `Conflict`, not an opaque store failure.
    #[tokio::test]
    async fn check_constraints_become_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).await.unwrap();
        store
            .write(|conn| {
                diesel::insert_into(nodes::table)
                    .values((
                        nodes::name.eq("n1"),
                        nodes::address.eq("tcp://127.0.0.1:1"),
                        nodes::capacity.eq(2),
                        nodes::available.eq(2),
                        nodes::status.eq("online"),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await
            .unwrap();
        for bad in [-1_i64, 3] {
            let err = store
                .write(move |conn| Ok(diesel::update(nodes::table).set(nodes::available.eq(bad)).execute(conn)?))
                .await
                .unwrap_err();
            let domain = orchestrator_core::Error::from(err);
            assert!(
                matches!(domain, orchestrator_core::Error::Conflict(ref m) if m.contains("constraint")),
                "{domain}"
            );
        }
        let available: i64 = store.read(|conn| Ok(nodes::table.select(nodes::available).first(conn)?)).await.unwrap();
        assert_eq!(available, 2);
    }
}
