//! `DieselStore`: the store on one database, an SQLite file (the embedded default) or a
//! PostgreSQL server (several orchestrator servers sharing one store).
//!
//! - all writes of one process go through one writer connection behind a mutex, each in a
//!   transaction that takes the database's write lock first: `BEGIN IMMEDIATE` on SQLite (two
//!   writers never both hold a read lock and then deadlock upgrading it, "database is locked",
//!   k3s#8234), a transaction-scoped advisory lock on PostgreSQL (writers on several servers
//!   queue, so no check-then-write sequence of one interleaves with another's);
//! - every write transaction also bumps `cluster.revision`, so every process sharing the
//!   database sees that something changed (see `orchestrator_core::StoreRevision`);
//! - reads use a small pool of their own connections, each read one snapshot;
//! - SQLite: WAL set once on open; every connection sets `busy_timeout` first (before anything
//!   that may touch a lock), then `foreign_keys=ON` and `synchronous=NORMAL`;
//! - every call runs on tokio's blocking pool, never on the async executor.

use std::path::Path;
use std::sync::{Arc, Mutex};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::Pool;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::connection::{AnyConnection, each_backend};
use crate::error::{Error, Result};
use crate::fence::Fence;
use crate::node_cache::NodeCache;
use crate::revision::RevisionCache;
use crate::schema::cluster;
use crate::setup::{Backend, READ_POOL_SIZE, Readers, SQLITE_WRITER_PRAGMAS, establish, redact};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The key of PostgreSQL's advisory lock that serializes writers ("orch" in ASCII).
#[cfg(feature = "postgres")]
const WRITE_LOCK_KEY: i64 = 0x6f72_6368;
/// Whether a write transaction counts as a change of the cluster's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RevisionChange {
    Bump,
    Keep,
}

/// Whether a write waits its turn in `DieselStore::write_turn` or only for the write under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    Queued,
    Skipped,
}

/// A store on one database. Cheap to clone; clones share the writer and the read pool.
#[derive(Clone)]
pub struct DieselStore {
    writer: Arc<Mutex<AnyConnection>>,
    /// The queue for the writer, in arrival order, waited on asynchronously. Without it every
    /// waiting write parked a blocking thread on the writer's mutex, which is not fair: while a
    /// million replicas started, hundreds of threads woke each other and an API request's write
    /// waited behind any number of later ones. Lease writes and `write_ahead`'s skip it.
    write_turn: Arc<tokio::sync::Mutex<()>>,
    /// To open the writer again when the server dropped it. Holds the password: never logged.
    url: Arc<str>,
    readers: Pool<Readers>,
    backend: Backend,
    /// The file or the URL without its password: for logs.
    location: Arc<str>,
    cluster_id: Arc<str>,
    /// Set on a leader's handle: every write checks the lease first (see `DieselStore::fenced`).
    fence: Option<Arc<Fence>>,
    revision: Arc<RevisionCache>,
    node_cache: Arc<NodeCache>,
    /// Deployment revisions kept per deployment (the newest; the current one always).
    revisions_kept: usize,
    /// Seals registry passwords; without it they cannot be kept.
    registry_key: Option<Arc<crate::registries::SealKey>>,
}

impl std::fmt::Debug for DieselStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DieselStore")
            .field("backend", &self.backend)
            .field("location", &self.location)
            .field("cluster_id", &self.cluster_id)
            .field("fence", &self.fence)
            .finish()
    }
}

impl DieselStore {
    /// Opens a store from a URL: `postgres://...` or `postgresql://...` (feature `postgres`),
    /// `sqlite://PATH`, `sqlite:PATH` or a bare file path.
    pub async fn open_url(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let url = url.to_string();
            return tokio::task::spawn_blocking(move || Self::open_blocking(Backend::Postgres, url)).await?;
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .or_else(|| (!url.contains("://")).then_some(url))
            .ok_or_else(|| Error::UnsupportedUrl(redact(url)))?;
        Self::open(Path::new(path)).await
    }

    /// Opens (creating if needed) an SQLite file, migrates it and makes sure it has a cluster id.
    pub async fn open(path: &Path) -> Result<Self> {
        let url = path.to_string_lossy().into_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(Backend::Sqlite, url)).await?
    }

    fn open_blocking(backend: Backend, url: String) -> Result<Self> {
        let mut writer = establish(backend, &url)?;
        let applied = match &mut writer {
            AnyConnection::Sqlite(conn) => {
                // WAL is a property of the file: set once here, every later connection inherits it.
                conn.batch_execute("PRAGMA journal_mode = WAL;")?;
                conn.batch_execute(SQLITE_WRITER_PRAGMAS)?;
                conn.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map(|v| v.iter().map(ToString::to_string).collect::<Vec<String>>())
            }
            #[cfg(feature = "postgres")]
            AnyConnection::Postgres(conn) => {
                // Two servers starting at once must not both migrate: the same lock as writers.
                conn.batch_execute(&format!("SELECT pg_advisory_lock({WRITE_LOCK_KEY})"))?;
                let applied = conn
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>());
                conn.batch_execute(&format!("SELECT pg_advisory_unlock({WRITE_LOCK_KEY})"))?;
                applied
            }
        }
        .map_err(|e| Error::Migrate(e.to_string()))?;
        for migration in applied {
            tracing::info!(%migration, "applied migration");
        }
        let (cluster_id, _) = write_transaction(&mut writer, RevisionChange::Keep, ensure_cluster_id)?;
        let readers = Pool::builder()
            .max_size(READ_POOL_SIZE)
            .min_idle(Some(1))
            // r2d2 opens connections in the background on 3 threads by default; one is plenty.
            .thread_pool(Arc::new(scheduled_thread_pool::ScheduledThreadPool::new(1)))
            .build(Readers { backend, url: url.clone() })?;
        let location: Arc<str> = redact(&url).into();
        tracing::info!(?backend, %location, %cluster_id, "opened store");
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            write_turn: Arc::default(),
            url: url.into(),
            readers,
            backend,
            location,
            cluster_id: cluster_id.into(),
            fence: None,
            revision: Arc::default(),
            node_cache: Arc::default(),
            revisions_kept: orchestrator_core::REVISIONS_KEPT,
            registry_key: None,
        })
    }

    /// Keeps `kept` revisions per deployment (at least the current one); revisions beyond it
    /// are forgotten by the next update of the deployment.
    pub fn keeping_revisions(mut self, kept: usize) -> Self {
        self.revisions_kept = kept.max(1);
        self
    }

    /// Seals registry passwords with `key` (32 bytes kept outside the database; every server
    /// of one store needs the same).
    pub fn sealing_with(mut self, key: [u8; 32]) -> Self {
        self.registry_key = Some(Arc::new(crate::registries::SealKey::new(key)));
        self
    }

    pub(crate) fn registry_key(&self) -> Option<Arc<crate::registries::SealKey>> {
        self.registry_key.clone()
    }

    pub(crate) fn node_cache(&self) -> Arc<NodeCache> {
        self.node_cache.clone()
    }

    pub(crate) fn revisions_kept(&self) -> usize {
        self.revisions_kept
    }

    /// This cluster's identity: random, made when the database was created, stable afterwards.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn with_fence(&self, fence: Fence) -> Self {
        Self { fence: Some(Arc::new(fence)), ..self.clone() }
    }

    /// Runs `f` in one write transaction on the writer connection, off the executor. Any error
    /// rolls the whole transaction back. On a fenced handle, nothing is written unless the
    /// lease is still the fence's.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        self.fenced_write(RevisionChange::Bump, Turn::Queued, f).await
    }

    /// A fenced write ahead of those waiting their turn: it waits for the write under way only.
    /// For the writes someone is waiting on, which the converges' backlog must not delay:
    /// - the failure detector's marks and a dead node's lost replicas (the heartbeat's next tick
    ///   waits for both);
    /// - heartbeats' timestamps, several a second, made with `Keep`: a new revision each would
    ///   make every cached view (`/status`, its summary, the counts) be built again while
    ///   nothing readers count changed;
    /// - an operator's writes (a deployment created, scaled, updated or deleted; a token; the
    ///   request's audit record, with `Keep`: no view shows it, and a new revision made
    ///   `/status` be built twice per mutation). While 200 deployments of 1,000 were created
    ///   one after the other, each `POST /v1/deployments` took ~100 ms in the queue (~30 ms
    ///   ahead of it), and the creates, not the starts, set the pace (`cargo xtask bench
    ///   scale`). Bounded by what clients send, one small write each; the queued writes still
    ///   take their turns between.
    pub(crate) async fn write_ahead<T, F>(&self, change: RevisionChange, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        self.fenced_write(change, Turn::Skipped, f).await
    }

    async fn fenced_write<T, F>(&self, revision_change: RevisionChange, turn: Turn, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let fence = self.fence.clone();
        // Held until the write ends, even if this call is dropped meanwhile.
        let turn = match turn {
            Turn::Queued => Some(Arc::clone(&self.write_turn).lock_owned().await),
            Turn::Skipped => None,
        };
        self.write_in(revision_change, move |conn| {
            let _turn = turn;
            if let Some(fence) = fence {
                fence.check(conn)?;
            }
            f(conn)
        })
        .await
    }

    /// A write of the lease itself: not fenced, and no new revision (nothing `GET /status`
    /// shows changes when a lease is renewed every second). Not queued behind other writes: a
    /// renewal waits for the one write under way at most, never for a backlog longer than the
    /// lease.
    pub(crate) async fn write_lease<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        self.write_in(RevisionChange::Keep, f).await
    }

    async fn write_in<T, F>(&self, revision_change: RevisionChange, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let writer = Arc::clone(&self.writer);
        let revision = Arc::clone(&self.revision);
        let (backend, url) = (self.backend, Arc::clone(&self.url));
        tokio::task::spawn_blocking(move || {
            // A panic in an earlier write poisons the mutex; the connection itself is still sound
            // (the transaction was rolled back), so keep using it.
            let mut conn = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let done = write_transaction(&mut conn, revision_change, f);
            match done {
                Ok((value, stored)) => {
                    if let Some(stored) = stored {
                        revision.committed(stored);
                    }
                    Ok(value)
                }
                Err(e) => {
                    reopen_if_broken(&mut conn, backend, &url);
                    Err(e)
                }
            }
        })
        .await?
    }

    /// Runs `f` on a pooled read connection, off the executor.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut pooled = readers.get()?;
            let conn: &mut AnyConnection = &mut pooled;
            // One snapshot for multi-statement reads.
            conn.transaction(f)
        })
        .await?
    }
}

impl DieselStore {
    async fn stored_revision(&self) -> Result<u64> {
        let stored: i64 = self.read(|conn| Ok(cluster::table.select(cluster::revision).first(conn)?)).await?;
        Ok(u64::try_from(stored).unwrap_or(0))
    }
}

/// BEGIN with the backend's write lock, `f`, the revision bump, COMMIT; ROLLBACK on any error.
/// With the value, the stored revision this transaction made, if it made one.
///
/// The inner connection's own transaction manager is told about the transaction, so a query
/// that opens one of its own inside (diesel's multi-row INSERT on SQLite) nests as a savepoint.
fn write_transaction<T>(
    conn: &mut AnyConnection,
    revision_change: RevisionChange,
    f: impl FnOnce(&mut AnyConnection) -> Result<T>,
) -> Result<(T, Option<u64>)> {
    match conn {
        AnyConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => {
            AnsiTransactionManager::begin_transaction(c)?;
            if let Err(e) = c.batch_execute(&format!("SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")) {
                let _ = AnsiTransactionManager::rollback_transaction(c);
                return Err(e.into());
            }
        }
    }
    let done = f(conn).and_then(|value| {
        let stored = match revision_change {
            RevisionChange::Bump => Some(
                diesel::update(cluster::table)
                    .set(cluster::revision.eq(cluster::revision + 1))
                    .returning(cluster::revision)
                    .get_result::<i64>(conn)?,
            ),
            RevisionChange::Keep => None,
        };
        Ok((value, stored.map(|r| u64::try_from(r).unwrap_or(0))))
    });
    match done {
        Ok(done) => {
            each_backend!(conn, |c| AnsiTransactionManager::commit_transaction(c))?;
            Ok(done)
        }
        Err(e) => {
            // The error that matters is `e`; a failed rollback leaves the manager marked broken,
            // and the next BEGIN reports it.
            let _ = each_backend!(conn, |c| AnsiTransactionManager::rollback_transaction(c));
            Err(e)
        }
    }
}

/// After a failed write: a PostgreSQL server may have ended the session (restart, or the idle
/// in transaction timeout after this process was paused). The failed write is reported as is;
/// the next one gets a new connection instead of failing forever. A connection that still
/// answers is kept (the failure was the write's own).
fn reopen_if_broken(conn: &mut AnyConnection, backend: Backend, url: &str) {
    if backend == Backend::Sqlite || conn.batch_execute("SELECT 1").is_ok() {
        return;
    }
    match establish(backend, url) {
        Ok(fresh) => {
            tracing::warn!("the database ended the writer's session; reconnected");
            *conn = fresh;
        }
        Err(e) => tracing::warn!(error = %e, "the writer's session is gone and reconnecting failed; will retry"),
    }
}

fn ensure_cluster_id(conn: &mut AnyConnection) -> Result<String> {
    let existing: Option<String> = cluster::table.select(cluster::id).first(conn).optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    // Short enough for container names, random enough that two clusters never collide.
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| {
        Error::Domain(orchestrator_core::Error::Store(format!("no randomness from the OS for the cluster id: {e}")))
    })?;
    let id = hex::encode(bytes);
    diesel::insert_into(cluster::table)
        .values((cluster::singleton.eq(1), cluster::id.eq(&id), cluster::revision.eq(0)))
        .execute(conn)?;
    Ok(id)
}

#[async_trait::async_trait]
impl orchestrator_core::StoreRevision for DieselStore {
    /// This process's commits at once; every process's, through `cluster.revision`, read in
    /// the background about every `REVISION_REFRESH`, so no caller waits for the database
    /// (a read pool busy with a large scan would otherwise stall `GET /status`).
    async fn revision(&self) -> orchestrator_core::Result<u64> {
        match self.revision.current() {
            Some((value, stale)) => {
                if stale && self.revision.begin_refresh() {
                    let store = self.clone();
                    tokio::spawn(async move {
                        if let Ok(stored) = store.stored_revision().await {
                            store.revision.refreshed(stored);
                        }
                        store.revision.end_refresh();
                    });
                }
                Ok(value)
            }
            None => Ok(self.revision.refreshed(self.stored_revision().await?)),
        }
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
        let store = DieselStore::open(&dir.path().join("db")).await.unwrap();
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
