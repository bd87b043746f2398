//! One suite of store tests, run on both backends: a real SQLite file, and a real PostgreSQL
//! server (feature `postgres`; `cargo xtask pg up` starts one, and tests start it themselves
//! when they can; under CI a missing server fails them instead of skipping). Those that ask
//! nothing of a database (no reopening of a file, no migrations, no fencing, no lease, no
//! sealing key) run on orchestrator-core's `MemoryStore` too, the fake under every scheduler
//! and API test: it keeps the same contract.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use orchestrator_core::error::Kind;
use orchestrator_core::{AccessStore, ClusterStore};
use orchestrator_core::{
    Change, ContainerTemplate, DeploymentName, DeploymentSpec, DeploymentStore, Error, EventStore, ImageRef,
    LeaseStore, NewNode, NodeName, NodeStatus, NodeStore, Placement, ReplicaFilter, ReplicaId, ReplicaState,
    ReplicaStore, StoreRevision,
};
use store_diesel::DieselStore;

#[path = "store_suite/db.rs"]
mod db;

use db::TestDb;

/// What the suite asks of a store: what the server asks of one.
trait SuiteStore: ClusterStore + AccessStore {}
impl<T: ClusterStore + AccessStore + ?Sized> SuiteStore for T {}

/// A fresh, empty store on one backend, opened.
struct TempStore {
    store: Arc<dyn SuiteStore>,
    diesel: Option<DieselStore>,
    db: TestDb,
}

impl TempStore {
    async fn new(db: TestDb) -> Self {
        if let TestDb::Memory(memory) = &db {
            return Self { store: memory.clone(), diesel: None, db };
        }
        let diesel = DieselStore::open_url(db.url()).await.unwrap();
        Self { store: Arc::new(diesel.clone()), diesel: Some(diesel), db }
    }

    /// Another store on the same database (a second process, or the same one restarted); for
    /// the memory store, another handle on the same state.
    async fn reopen(&self) -> Arc<dyn SuiteStore> {
        match &self.db {
            TestDb::Memory(memory) => memory.clone(),
            db => Arc::new(DieselStore::open_url(db.url()).await.unwrap()),
        }
    }

    /// A store that keeps `kept` revisions per deployment.
    async fn keeping_revisions(db: TestDb, kept: usize) -> Self {
        if let TestDb::Memory(_) = db {
            let memory = Arc::new(orchestrator_core::memory::MemoryStore::new().keeping_revisions(kept));
            return Self::new(TestDb::Memory(memory)).await;
        }
        let diesel = DieselStore::open_url(db.url()).await.unwrap().keeping_revisions(kept);
        Self { store: Arc::new(diesel.clone()), diesel: Some(diesel), db }
    }

    /// The database store itself, for what only it has (fencing, the cluster id, sealing).
    fn diesel(&self) -> &DieselStore {
        self.diesel.as_ref().expect("a test of what only the database stores have")
    }

    async fn reopen_diesel(&self) -> DieselStore {
        DieselStore::open_url(self.db.url()).await.unwrap()
    }
}

fn node_name(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

fn deployment_name(name: &str) -> DeploymentName {
    DeploymentName::new(name).unwrap()
}

async fn online_node(store: &Arc<dyn SuiteStore>, name: &str, capacity: i64) {
    store.add_node(NewNode::new(name, "tcp://127.0.0.1:2375", capacity).unwrap()).await.unwrap();
    store.set_node_status(&node_name(name), NodeStatus::Online, Some(SystemTime::now())).await.unwrap();
}

fn template(image: &str) -> ContainerTemplate {
    ContainerTemplate::new(ImageRef::parse(image).unwrap()).with_command(vec!["sleep".into(), "3600".into()])
}

async fn deployment(store: &Arc<dyn SuiteStore>, name: &str, replicas: u32) {
    let spec = DeploymentSpec::new(template("local/busybox:1"), replicas);
    store.create_deployment(&deployment_name(name), spec, Change::default()).await.unwrap();
}

fn placement(deployment: &str, node: &str, units: u32) -> Placement {
    Placement {
        deployment: deployment_name(deployment),
        node: node_name(node),
        units,
        revision: 1,
        claim: Default::default(),
    }
}

async fn nodes_crud(db: TestDb) {
    let t = TempStore::new(db).await;
    let added = t.store.add_node(NewNode::new("n1", "unix:///run/n1.sock", 8).unwrap()).await.unwrap();
    assert_eq!((added.capacity, added.available, added.status), (8, 8, NodeStatus::Offline));
    assert_eq!(added.last_heartbeat, None);

    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let online = t.store.set_node_status(&node_name("n1"), NodeStatus::Online, Some(at)).await.unwrap();
    assert_eq!((online.status, online.last_heartbeat), (NodeStatus::Online, Some(at)));

    online_node(&t.store, "n2", 4).await;
    let later = at + Duration::from_secs(1);
    t.store.record_heartbeats(&[node_name("n1"), node_name("n2")], later).await.unwrap();
    let nodes = t.store.list_nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
    assert!(nodes.iter().all(|n| n.last_heartbeat == Some(later)));

    // The failure detector's marks: both at once, each node keeping its last heartbeat.
    t.store.mark_offline(&[node_name("n1"), node_name("n2")]).await.unwrap();
    let nodes = t.store.list_nodes().await.unwrap();
    assert!(nodes.iter().all(|n| n.status == NodeStatus::Offline && n.last_heartbeat == Some(later)), "{nodes:?}");
    let err = t.store.mark_offline(&[node_name("n9")]).await.unwrap_err();
    assert_eq!(err, Error::not_found(Kind::Node, "n9"));

    t.store.remove_node(&node_name("n2")).await.unwrap();
    assert_eq!(t.store.get_node(&node_name("n2")).await.unwrap_err(), Error::not_found(Kind::Node, "n2"));
}

async fn duplicates_and_missing_objects_are_typed_errors(db: TestDb) {
    let t = TempStore::new(db).await;
    online_node(&t.store, "n1", 4).await;
    let again = t.store.add_node(NewNode::new("n1", "tcp://127.0.0.1:1", 1).unwrap()).await.unwrap_err();
    assert_eq!(again, Error::already_exists(Kind::Node, "n1"));

    deployment(&t.store, "web", 1).await;
    let spec = DeploymentSpec::of("other", 1).unwrap();
    let again = t.store.create_deployment(&deployment_name("web"), spec, Change::default()).await.unwrap_err();
    assert_eq!(again, Error::already_exists(Kind::Deployment, "web"));

    let err = t.store.place_replicas(&[placement("nope", "n1", 1)]).await.unwrap_err();
    assert_eq!(err, Error::not_found(Kind::Deployment, "nope"));
    let err = t.store.place_replicas(&[placement("web", "ghost", 1)]).await.unwrap_err();
    assert_eq!(err, Error::not_found(Kind::Node, "ghost"));
    let err = t.store.set_replica_state(ReplicaId(999), ReplicaState::Running).await.unwrap_err();
    assert_eq!(err, Error::not_found(Kind::Replica, "999"));
    let err = t.store.scale_deployment(&deployment_name("nope"), 1, 1).await.unwrap_err();
    assert_eq!(err, Error::not_found(Kind::Deployment, "nope"));
}

async fn stale_version_is_a_conflict_not_an_overwrite(db: TestDb) {
    let t = TempStore::new(db).await;
    deployment(&t.store, "web", 2).await;
    let name = deployment_name("web");
    let v2 = t.store.scale_deployment(&name, 5, 1).await.unwrap();
    assert_eq!((v2.spec.replicas, v2.version), (5, 2));
    let err = t.store.scale_deployment(&name, 9, 1).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    let stored = t.store.get_deployment(&name).await.unwrap();
    assert_eq!((stored.spec.replicas, stored.version), (5, 2));
}

async fn placement_reserves_capacity_all_or_nothing(db: TestDb) {
    let t = TempStore::new(db).await;
    online_node(&t.store, "n1", 3).await;
    online_node(&t.store, "n2", 1).await;
    t.store.add_node(NewNode::new("off", "tcp://127.0.0.1:2", 10).unwrap()).await.unwrap();
    deployment(&t.store, "web", 4).await;

    let placed = t.store.place_replicas(&[placement("web", "n1", 1), placement("web", "n2", 1)]).await.unwrap();
    assert_eq!(placed.len(), 2);
    assert!(placed.iter().all(|r| r.state == ReplicaState::Pending && r.container_id.is_none()));
    assert!(placed[0].id < placed[1].id);

    // n2 is full: the n1 part of this batch must not be written either.
    let err = t.store.place_replicas(&[placement("web", "n1", 1), placement("web", "n2", 1)]).await.unwrap_err();
    assert_eq!(err, Error::InsufficientCapacity { node: "n2".into(), needed: 1, available: 0 });
    let err = t.store.place_replicas(&[placement("web", "off", 1)]).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert_eq!(t.store.get_node(&node_name("n1")).await.unwrap().available, 2);
    assert_eq!(t.store.list_replicas(ReplicaFilter::default()).await.unwrap().len(), 2);
}

/// A batch of several deployments and shares, interleaved, is written as given: ids in its
/// order, each replica what its placement said, each node reserved its own total.
async fn a_mixed_batch_is_recorded_in_its_order(db: TestDb) {
    let t = TempStore::new(db).await;
    for node in ["n1", "n2", "n3"] {
        online_node(&t.store, node, 10).await;
    }
    deployment(&t.store, "web", 3).await;
    deployment(&t.store, "db", 2).await;
    let batch = [
        placement("web", "n1", 1),
        placement("db", "n2", 2),
        placement("web", "n2", 1),
        placement("db", "n1", 2),
        placement("web", "n3", 4),
    ];
    let placed = t.store.place_replicas(&batch).await.unwrap();
    let written = |r: &orchestrator_core::Replica| (r.deployment.to_string(), r.node.to_string(), r.units);
    let asked: Vec<_> = batch.iter().map(|p| (p.deployment.to_string(), p.node.to_string(), p.units)).collect();
    assert_eq!(placed.iter().map(written).collect::<Vec<_>>(), asked);
    assert!(placed.windows(2).all(|w| w[0].id < w[1].id), "{placed:?}");
    let mut stored = t.store.list_replicas(ReplicaFilter::default()).await.unwrap();
    stored.sort_by_key(|r| r.id);
    assert_eq!(stored, placed);
    let available: Vec<u32> = t.store.list_nodes().await.unwrap().iter().map(|n| n.available).collect();
    assert_eq!(available, [7, 7, 6]);
}

async fn replica_lifecycle_keeps_capacity_consistent(db: TestDb) {
    let t = TempStore::new(db).await;
    online_node(&t.store, "n1", 10).await;
    deployment(&t.store, "web", 3).await;
    let placed = t.store.place_replicas(&[placement("web", "n1", 2), placement("web", "n1", 3)]).await.unwrap();
    assert_eq!(t.store.get_node(&node_name("n1")).await.unwrap().available, 5);

    let running = t.store.mark_running(placed[0].id, "abc123").await.unwrap();
    assert_eq!((running.state, running.container_id.as_deref()), (ReplicaState::Running, Some("abc123")));
    let exited = t.store.set_replica_state(placed[0].id, ReplicaState::Exited).await.unwrap();
    assert_eq!(exited.state, ReplicaState::Exited);
    assert_eq!(t.store.get_node(&node_name("n1")).await.unwrap().available, 5, "exited still holds capacity");

    let err = t.store.remove_node(&node_name("n1")).await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");

    let lost = t.store.mark_node_lost(&node_name("n1")).await.unwrap();
    assert_eq!(lost.len(), 2);
    assert!(lost.iter().all(|r| r.state == ReplicaState::Lost));
    assert_eq!(t.store.get_node(&node_name("n1")).await.unwrap().available, 10);
    let err = t.store.mark_running(placed[0].id, "again").await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "a lost replica never comes back: {err}");
    assert!(t.store.list_replicas(ReplicaFilter::node(&node_name("n1")).active()).await.unwrap().is_empty());

    // Lost records go with their node.
    t.store.remove_node(&node_name("n1")).await.unwrap();
    assert!(t.store.list_replicas(ReplicaFilter::default()).await.unwrap().is_empty());
}

async fn release_and_delete_give_capacity_back(db: TestDb) {
    let t = TempStore::new(db).await;
    online_node(&t.store, "n1", 4).await;
    online_node(&t.store, "n2", 4).await;
    deployment(&t.store, "web", 3).await;
    deployment(&t.store, "db", 1).await;
    let web = t
        .store
        .place_replicas(&[placement("web", "n1", 1), placement("web", "n2", 1), placement("web", "n2", 1)])
        .await
        .unwrap();
    t.store.place_replicas(&[placement("db", "n1", 2)]).await.unwrap();

    t.store.release_replica(web[0].id).await.unwrap();
    assert_eq!(t.store.get_node(&node_name("n1")).await.unwrap().available, 2);

    let removed = t.store.delete_deployment(&deployment_name("web")).await.unwrap();
    assert_eq!(removed.iter().map(|r| r.id).collect::<Vec<_>>(), [web[1].id, web[2].id]);
    assert_eq!(t.store.get_node(&node_name("n2")).await.unwrap().available, 4);
    assert_eq!(t.store.get_node(&node_name("n1")).await.unwrap().available, 2, "db keeps its units");
    let left = t.store.list_replicas(ReplicaFilter::default()).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].deployment.as_str(), "db");
    assert!(t.store.get_deployment(&deployment_name("web")).await.is_err());
}

async fn concurrent_reservations_never_oversubscribe(db: TestDb) {
    let t = TempStore::new(db).await;
    online_node(&t.store, "n1", 100).await;
    deployment(&t.store, "web", 160).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = t.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..20 {
                match store.place_replicas(&[placement("web", "n1", 1)]).await {
                    Ok(_) => ok += 1,
                    Err(Error::InsufficientCapacity { .. }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            ok
        }));
    }
    let placed: i32 = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).sum();
    assert_eq!(placed, 100);
    assert_eq!(t.store.get_node(&node_name("n1")).await.unwrap().available, 0);
    assert_eq!(t.store.list_replicas(ReplicaFilter::default()).await.unwrap().len(), 100);
}

/// Two store values on one database stand for two processes (two servers): their writes contend
/// for the database's own lock, not just our in-process mutex.
async fn eight_concurrent_writers_never_see_database_is_locked(db: TestDb) {
    let t = TempStore::new(db).await;
    let second = Arc::new(t.reopen().await);
    let first = Arc::new(t.store.clone());
    for i in 0..8 {
        online_node(&t.store, &format!("n{i}"), 1_000).await;
        deployment(&t.store, &format!("d{i}"), 1).await;
    }
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { Arc::clone(&first) } else { Arc::clone(&second) };
        tasks.push(tokio::spawn(async move {
            let (d, n) = (format!("d{i}"), format!("n{i}"));
            let mut last = None;
            for op in 0..1_000 {
                match op % 4 {
                    0 => last = Some(store.place_replicas(&[placement(&d, &n, 1)]).await?[0].id),
                    1 => {
                        store.mark_running(last.unwrap(), "cid").await?;
                    }
                    2 => store.record_heartbeats(&[node_name(&n)], SystemTime::now()).await?,
                    _ => store.release_replica(last.take().unwrap()).await?,
                }
            }
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for node in t.store.list_nodes().await.unwrap() {
        assert_eq!(node.available, 1_000, "every reservation was released on {}", node.name);
    }
    assert!(t.store.list_replicas(ReplicaFilter::default()).await.unwrap().is_empty());
}

/// An operator's writes (a deployment created, scaled; the request's audit record) go ahead of
/// a backlog of the converges' writes: they wait for the write under way, not for the queue.
/// In arrival order, each waited for all 40 placements queued before it.
async fn an_operators_writes_go_ahead_of_the_converges_backlog(db: TestDb) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const QUEUED: usize = 40;
    let t = TempStore::new(db).await;
    online_node(&t.store, "n1", 1_000_000).await;
    deployment(&t.store, "web", 1).await;
    let placed = Arc::new(AtomicUsize::new(0));
    let mut backlog = Vec::new();
    for _ in 0..QUEUED {
        let (store, placed) = (Arc::clone(&t.store), Arc::clone(&placed));
        backlog.push(tokio::spawn(async move {
            let batch: Vec<Placement> = (0..500).map(|_| placement("web", "n1", 1)).collect();
            store.place_replicas(&batch).await.unwrap();
            placed.fetch_add(1, Ordering::SeqCst);
        }));
    }
    // The first placement written: the others are waiting their turn behind it by now.
    while placed.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    deployment(&t.store, "api", 1).await;
    let after_create = placed.load(Ordering::SeqCst);
    t.store.scale_deployment(&deployment_name("api"), 3, 1).await.unwrap();
    let entry = orchestrator_core::AuditEntry {
        at: SystemTime::now(),
        token_id: "admin".into(),
        action: "POST /v1/deployments".into(),
        status: 201,
    };
    t.store.append_audit(entry).await.unwrap();
    let after_audit = placed.load(Ordering::SeqCst);
    for task in backlog {
        task.await.unwrap();
    }
    assert!(after_create < QUEUED / 2, "the create waited for {after_create} of {QUEUED} queued placements");
    assert!(after_audit < QUEUED / 2, "scale and audit waited for {after_audit} of {QUEUED} queued placements");
    assert_eq!(t.store.list_replicas(ReplicaFilter::default()).await.unwrap().len(), QUEUED * 500);
}

async fn data_survives_reopening(db: TestDb) {
    let t = TempStore::new(db).await;
    online_node(&t.store, "n1", 5).await;
    deployment(&t.store, "web", 2).await;
    let placed = t.diesel().place_replicas(&[placement("web", "n1", 1)]).await.unwrap();
    t.diesel().mark_running(placed[0].id, "c1").await.unwrap();
    let cluster_id = t.diesel().cluster_id().to_string();
    let reopened = t.reopen_diesel().await;

    // The revision: a process sees its own writes at once, another's soon after (~100 ms).
    let seen = reopened.revision().await.unwrap();
    t.diesel().mark_running(placed[0].id, "c1").await.unwrap();
    let mut moved = seen;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        moved = reopened.revision().await.unwrap();
        if moved > seen {
            break;
        }
    }
    assert!(moved > seen, "another process's write unseen after 2 s: {seen} -> {moved}");
    reopened.release_replica(ReplicaId(u64::MAX)).await.unwrap_err(); // fails: no new revision
    assert_eq!(reopened.revision().await.unwrap(), moved);
    // Heartbeats' timestamps are no change readers wait for; a status is.
    reopened.record_heartbeats(&[node_name("n1")], SystemTime::now()).await.unwrap();
    assert_eq!(reopened.revision().await.unwrap(), moved, "a heartbeat made a revision");
    // Nor is an audit record: no view shows one, and every API mutation writes one.
    let entry = orchestrator_core::AuditEntry {
        at: SystemTime::now(),
        token_id: "t1".into(),
        action: "POST /v1/nodes/n1/drain".into(),
        status: 200,
    };
    orchestrator_core::AccessStore::append_audit(&reopened, entry).await.unwrap();
    assert_eq!(reopened.revision().await.unwrap(), moved, "an audit record made a revision");
    reopened.mark_running(placed[0].id, "c1").await.unwrap();
    assert!(reopened.revision().await.unwrap() > moved, "its own write, at once");
    drop(t.store);

    assert_eq!(reopened.cluster_id(), cluster_id);
    assert_eq!(reopened.get_node(&node_name("n1")).await.unwrap().available, 4);
    assert_eq!(
        reopened.get_deployment(&deployment_name("web")).await.unwrap().spec.template.command,
        ["sleep", "3600"]
    );
    let replicas = reopened.list_replicas(ReplicaFilter::deployment(&deployment_name("web"))).await.unwrap();
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0].container_id.as_deref(), Some("c1"));
}

async fn rejects_unknown_store_urls(_db: TestDb) {
    let err = DieselStore::open_url("mysql://localhost/db").await.unwrap_err();
    assert!(err.to_string().contains("unsupported store URL"), "{err}");
}

async fn tokens_and_audit_survive_reopening(db: TestDb) {
    use orchestrator_core::{AccessStore, ApiToken, AuditEntry, Role};
    let t = TempStore::new(db).await;
    let token = ApiToken { id: "abc".into(), role: Role::Reader, digest: "d1".into(), created_at: SystemTime::now() };
    t.diesel().add_token(token.clone()).await.unwrap();
    let dup = ApiToken { id: "other".into(), ..token.clone() };
    assert!(matches!(t.diesel().add_token(dup).await.unwrap_err(), Error::AlreadyExists { .. }));
    for (i, action) in ["POST /create", "DELETE /v1/nodes/n1"].iter().enumerate() {
        let entry = AuditEntry {
            at: SystemTime::now(),
            token_id: "abc".into(),
            action: action.to_string(),
            status: 200 + i as u16,
        };
        t.diesel().append_audit(entry).await.unwrap();
    }
    let reopened = t.reopen_diesel().await;
    drop(t.store);
    let found = reopened.token_by_digest("d1").await.unwrap().unwrap();
    assert_eq!((found.id.as_str(), found.role), ("abc", Role::Reader));
    assert!(reopened.token_by_digest("nope").await.unwrap().is_none());
    let log = reopened.list_audit(10).await.unwrap();
    assert_eq!(log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["DELETE /v1/nodes/n1", "POST /create"]);
    assert_eq!(reopened.list_audit(1).await.unwrap().len(), 1);
}

async fn the_lease_has_one_live_holder_and_terms_only_grow(db: TestDb) {
    let t = TempStore::new(db).await;
    let other = t.reopen_diesel().await; // a second server
    let ttl = Duration::from_secs(5);
    let t0 = SystemTime::now();
    assert_eq!(t.diesel().current_lease().await.unwrap(), None);

    let a = t.diesel().acquire_lease("a", t0, ttl).await.unwrap().unwrap();
    assert_eq!((a.holder.as_str(), a.term), ("a", 1));
    assert_eq!(other.acquire_lease("b", t0 + Duration::from_secs(1), ttl).await.unwrap(), None, "a's lease is live");
    let renewed = t.diesel().acquire_lease("a", t0 + Duration::from_secs(2), ttl).await.unwrap().unwrap();
    assert_eq!(renewed.term, 1, "renewal keeps the term");

    // a stops renewing: once its lease has run out, b takes it with the next term.
    let later = t0 + Duration::from_secs(2) + ttl;
    let b = other.acquire_lease("b", later, ttl).await.unwrap().unwrap();
    assert_eq!((b.holder.as_str(), b.term), ("b", 2));
    assert_eq!(t.diesel().acquire_lease("a", later, ttl).await.unwrap(), None, "a cannot renew a lease it lost");
    t.diesel().release_lease("a", 1).await.unwrap(); // a stale release changes nothing
    assert_eq!(t.diesel().current_lease().await.unwrap().unwrap().holder, "b");

    // A graceful release lets the next server lead at once.
    other.release_lease("b", 2).await.unwrap();
    let c = t.diesel().acquire_lease("c", later, ttl).await.unwrap().unwrap();
    assert_eq!((c.holder.as_str(), c.term), ("c", 3));
}

async fn a_fenced_store_writes_only_while_its_term_holds(db: TestDb) {
    let t = TempStore::new(db).await;
    let other = t.reopen_diesel().await;
    let ttl = Duration::from_secs(5);
    let t0 = SystemTime::now();
    let a = t.diesel().acquire_lease("a", t0, ttl).await.unwrap().unwrap();
    let a_writes = t.diesel().fenced("a", a.term);
    a_writes.add_node(NewNode::new("n1", "tcp://127.0.0.1:1", 4).unwrap()).await.unwrap();

    // a is paused past its lease; b takes over and writes.
    let b = other.acquire_lease("b", t0 + ttl, ttl).await.unwrap().unwrap();
    let b_writes = other.fenced("b", b.term);
    b_writes.set_node_status(&node_name("n1"), NodeStatus::Online, None).await.unwrap();

    // a wakes up: every write it still had in flight is refused, and nothing of b's changes.
    let err = a_writes.set_node_status(&node_name("n1"), NodeStatus::Offline, None).await.unwrap_err();
    assert!(matches!(&err, Error::Conflict(m) if m.contains("stale leader")), "{err}");
    let err = a_writes.add_node(NewNode::new("n2", "tcp://127.0.0.1:2", 4).unwrap()).await.unwrap_err();
    assert!(matches!(&err, Error::Conflict(m) if m.contains("stale leader")), "{err}");
    assert_eq!(t.diesel().get_node(&node_name("n1")).await.unwrap().status, NodeStatus::Online);
    assert!(matches!(t.diesel().get_node(&node_name("n2")).await.unwrap_err(), Error::NotFound { .. }));
    // Reads are not fenced, and the unfenced store (the API's) still writes.
    assert_eq!(a_writes.list_nodes().await.unwrap().len(), 1);
    t.diesel().add_node(NewNode::new("n3", "tcp://127.0.0.1:3", 4).unwrap()).await.unwrap();
}

async fn every_change_is_an_event_in_order_and_failed_writes_leave_none(db: TestDb) {
    let t = TempStore::new(db).await;
    let s = &t.store;
    assert_eq!(s.last_event_id().await.unwrap(), 0);
    online_node(s, "n1", 4).await;
    online_node(s, "n2", 4).await;
    // The heartbeat confirming a status is not news.
    s.set_node_status(&node_name("n1"), NodeStatus::Online, Some(SystemTime::now())).await.unwrap();
    deployment(s, "web", 2).await;
    let web = deployment_name("web");
    let placed = s
        .place_replicas(&[
            Placement {
                deployment: web.clone(),
                node: node_name("n1"),
                units: 1,
                revision: 1,
                claim: Default::default(),
            },
            Placement {
                deployment: web.clone(),
                node: node_name("n2"),
                units: 1,
                revision: 1,
                claim: Default::default(),
            },
        ])
        .await
        .unwrap();
    s.mark_running(placed[0].id, "c0").await.unwrap();
    let before_failures = s.last_event_id().await.unwrap();
    // Writes that fail record nothing.
    assert!(s.scale_deployment(&web, 5, 99).await.is_err());
    assert!(
        s.place_replicas(&[Placement {
            deployment: web.clone(),
            node: node_name("n1"),
            units: 50,
            revision: 1,
            claim: Default::default()
        }])
        .await
        .is_err()
    );
    assert_eq!(s.last_event_id().await.unwrap(), before_failures);
    s.scale_deployment(&web, 3, 1).await.unwrap();
    s.mark_offline(&[node_name("n2")]).await.unwrap();
    s.mark_node_lost(&node_name("n2")).await.unwrap();
    s.release_replica(placed[1].id).await.unwrap();
    s.delete_deployment(&web).await.unwrap();
    s.remove_node(&node_name("n2")).await.unwrap();
    // A lease is the database stores' (the servers' election); the memory store has none.
    if let Some(d) = &t.diesel {
        d.acquire_lease("a", SystemTime::now(), Duration::from_secs(5)).await.unwrap();
    }

    let events = s.list_events(0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let elected = if t.diesel.is_some() { &["leader.elected"][..] } else { &[] };
    assert_eq!(
        kinds,
        [
            &[
                "node.added",
                "node.online",
                "node.added",
                "node.online",
                "deployment.created",
                "replica.placed",
                "replica.placed",
                "replica.started",
                "deployment.scaled",
                "node.offline",
                "replica.lost",
                "replica.removed",
                "deployment.deleted",
                "node.removed",
            ][..],
            elected,
        ]
        .concat()
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "ids only grow");
    let lost = &events[10];
    assert_eq!(
        (lost.node.as_deref(), lost.deployment.as_deref(), lost.replica),
        (Some("n2"), Some("web"), Some(placed[1].id.0))
    );
    assert_eq!(events[8].message, "web: 2 -> 3 replicas");
    // Paging: after an id, at most a limit; another process sees the same.
    let page = t.reopen().await.list_events(events[4].id, 3).await.unwrap();
    assert_eq!(page, events[5..8].to_vec());
    assert_eq!(s.last_event_id().await.unwrap(), events.last().unwrap().id);
}

async fn old_events_are_dropped_beyond_the_retention(db: TestDb) {
    let t = TempStore::new(db).await;
    let s = &t.store;
    online_node(s, "n1", 20_000).await;
    deployment(s, "web", 0).await;
    let web = deployment_name("web");
    // 11 x 1,000 placements: 11,000 events and a few more.
    for _ in 0..11 {
        let batch = vec![
            Placement {
                deployment: web.clone(),
                node: node_name("n1"),
                units: 1,
                revision: 1,
                claim: Default::default()
            };
            1_000
        ];
        s.place_replicas(&batch).await.unwrap();
    }
    let last = s.last_event_id().await.unwrap();
    assert!(last > 11_000);
    let oldest = s.list_events(0, 1).await.unwrap()[0].id;
    let kept = last - oldest + 1;
    assert!(
        (orchestrator_core::EVENT_RETENTION..=orchestrator_core::EVENT_RETENTION + 1_000).contains(&kept),
        "kept {kept} events"
    );
}

/// SQLite under stress (k3s#8234 is what must not happen): 8 writers x 10,000 operations over
/// two store handles on one file (two connections with their own locks, as two processes
/// would have): not one error, "database is locked" or other, and not one lost write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_eight_writers_times_ten_thousand_operations_lose_nothing() {
    const WRITERS: usize = 8;
    const OPS: usize = 10_000;
    let t = TempStore::new(TestDb::sqlite()).await;
    let handles = [Arc::new(t.diesel().clone()), Arc::new(t.reopen_diesel().await)];
    for i in 0..WRITERS {
        online_node(&t.store, &format!("n{i}"), 10_000).await;
        deployment(&t.store, &format!("d{i}"), 0).await;
    }
    let events_before = t.diesel().last_event_id().await.unwrap();
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = Arc::clone(&handles[i % 2]);
            tokio::spawn(async move {
                let (d, n) = (format!("d{i}"), format!("n{i}"));
                let (mut placed, mut scaled, mut version) = (0_u32, 0_u32, 1_u64);
                let mut pending = Vec::new();
                for op in 0..OPS {
                    match op % 10 {
                        // Every tenth: a scale that must land exactly once (versions chain).
                        9 => {
                            version = store.scale_deployment(&deployment_name(&d), scaled + 1, version).await?.version;
                            scaled += 1;
                        }
                        o if o % 2 == 0 => {
                            pending.push(store.place_replicas(&[placement(&d, &n, 1)]).await?[0].id);
                            placed += 1;
                        }
                        _ => {
                            store.mark_running(pending.pop().expect("placed before"), "cid").await?;
                        }
                    }
                }
                Ok::<_, Error>((placed, scaled))
            })
        })
        .collect();
    let mut totals = Vec::new();
    for task in tasks {
        totals.push(task.await.unwrap().expect("no write failed, none saw the database locked"));
    }
    let took = started.elapsed();
    eprintln!("{} operations in {took:?} ({:.0}/s)", WRITERS * OPS, (WRITERS * OPS) as f64 / took.as_secs_f64());

    // Every write is there, read back through a third connection.
    let check = t.reopen_diesel().await;
    let mut expected_events = 0;
    for (i, (placed, scaled)) in totals.into_iter().enumerate() {
        let replicas =
            check.list_replicas(ReplicaFilter::deployment(&deployment_name(&format!("d{i}")))).await.unwrap();
        assert_eq!(replicas.len(), placed as usize);
        let running = replicas.iter().filter(|r| r.state == ReplicaState::Running).count();
        assert_eq!(running, (OPS / 10) * 5 - (OPS / 10), "d{i}: each placement but the unmatched ones marked running");
        let d = check.get_deployment(&deployment_name(&format!("d{i}"))).await.unwrap();
        assert_eq!((d.spec.replicas, d.version), (scaled, u64::from(scaled) + 1));
        let node = check.get_node(&node_name(&format!("n{i}"))).await.unwrap();
        assert_eq!(node.available, 10_000 - placed);
        expected_events += u64::from(placed) + running as u64 + u64::from(scaled);
    }
    assert_eq!(check.last_event_id().await.unwrap() - events_before, expected_events, "one event per write");
}

/// Each test, once per backend.
/// Batched starts: one transaction marks many replicas running, each with its own container;
/// lost and vanished ones are left alone and named; each started replica gets its event.
async fn many_replicas_are_marked_running_at_once_and_counted(db: TestDb) {
    let t = TempStore::new(db).await;
    online_node(&t.store, "n1", 3_000).await;
    online_node(&t.store, "n2", 10).await;
    deployment(&t.store, "web", 2_500).await;
    deployment(&t.store, "api", 2).await;
    let web: Vec<Placement> = (0..2_500).map(|_| placement("web", "n1", 1)).collect();
    let placed = t.store.place_replicas(&web).await.unwrap();
    let api = t.store.place_replicas(&[placement("api", "n2", 1), placement("api", "n2", 1)]).await.unwrap();
    t.store.mark_node_lost(&node_name("n2")).await.unwrap();
    let events_before = t.store.last_event_id().await.unwrap();

    // 2,500 of web (more than one IN list), api's two lost ones, and an id never stored.
    let mut started: Vec<(ReplicaId, String)> = placed.iter().map(|r| (r.id, format!("c{}", r.id))).collect();
    started.extend(api.iter().map(|r| (r.id, "late".to_string())));
    started.push((ReplicaId(9_999_999), "ghost".into()));
    let mut refused = t.store.mark_running_many(&started).await.unwrap();
    refused.sort();
    let mut expected: Vec<ReplicaId> = api.iter().map(|r| r.id).chain([ReplicaId(9_999_999)]).collect();
    expected.sort();
    assert_eq!(refused, expected);

    let web_now = t.store.list_replicas(ReplicaFilter::deployment(&deployment_name("web"))).await.unwrap();
    assert_eq!(web_now.len(), 2_500);
    for r in &web_now {
        assert_eq!(r.state, ReplicaState::Running);
        assert_eq!(r.container_id.as_deref(), Some(format!("c{}", r.id).as_str()));
    }
    let api_now = t.store.list_replicas(ReplicaFilter::deployment(&deployment_name("api"))).await.unwrap();
    assert!(api_now.iter().all(|r| r.state == ReplicaState::Lost && r.container_id.is_none()));
    let events = t.store.list_events(events_before, 1_000).await.unwrap();
    assert_eq!(t.store.last_event_id().await.unwrap() - events_before, 2_500, "one event per started replica");
    assert!(events.iter().all(|e| e.kind == orchestrator_core::EventKind::ReplicaStarted));
    assert_eq!(t.store.get_node(&node_name("n1")).await.unwrap().available, 500, "capacity unchanged");

    // Counted where stored: per deployment and state, none for empty states.
    let mut counts: Vec<(String, ReplicaState, u64)> = t
        .store
        .count_replicas()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.deployment.to_string(), c.state, c.count))
        .collect();
    counts.sort();
    assert_eq!(counts, [("api".into(), ReplicaState::Lost, 2), ("web".into(), ReplicaState::Running, 2_500)]);
    // An empty batch writes nothing.
    let revision = t.store.revision().await.unwrap();
    assert!(t.store.mark_running_many(&[]).await.unwrap().is_empty());
    assert_eq!(t.store.revision().await.unwrap(), revision);
}

async fn template_changes_make_revisions_and_the_newest_are_kept(db: TestDb) {
    let t = TempStore::keeping_revisions(db, 3).await;
    let store = t.store.clone();
    online_node(&store, "n1", 10).await;
    let web = deployment_name("web");
    let created = store
        .create_deployment(&web, DeploymentSpec::new(template("local/web:1"), 2), Change::by("tok-1"))
        .await
        .unwrap();
    assert_eq!((created.version, created.revision), (1, 1));

    // Replicas and units alone: a new version, the same revision.
    let scaled = DeploymentSpec::new(template("local/web:1"), 4).with_units(2);
    let v2 = store.update_deployment(&web, scaled, 1, Change::default()).await.unwrap();
    assert_eq!((v2.version, v2.revision, v2.spec.replicas, v2.spec.units), (2, 1, 4, 2));
    let placed = store.place_replicas(&[placement("web", "n1", 2)]).await.unwrap();
    assert_eq!(placed[0].revision, 1);

    // A new template: the next revision, recorded with who asked and why.
    let change = Change { by: Some("tok-2".into()), cause: Some("new image".into()), restores: None };
    let v3 = store.update_deployment(&web, DeploymentSpec::new(template("local/web:2"), 4), 2, change).await.unwrap();
    assert_eq!((v3.version, v3.revision, v3.spec.units), (3, 2, 1));
    let stale = store.update_deployment(&web, DeploymentSpec::new(template("local/web:9"), 1), 2, Change::default());
    assert!(matches!(stale.await.unwrap_err(), Error::Conflict(_)));
    assert_eq!(store.get_deployment(&web).await.unwrap(), v3, "a stale update changes nothing");
    let revisions = store.list_revisions(&web).await.unwrap();
    assert_eq!(revisions.iter().map(|r| r.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!((revisions[0].by.as_deref(), revisions[0].template.image.as_str()), (Some("tok-1"), "local/web:1"));
    assert_eq!((revisions[1].by.as_deref(), revisions[1].cause.as_deref()), (Some("tok-2"), Some("new image")));
    assert_eq!(revisions[1].template, v3.spec.template);
    // Replicas placed before keep the revision they run.
    let replicas = store.list_replicas(ReplicaFilter::deployment(&web)).await.unwrap();
    assert_eq!(replicas.iter().map(|r| (r.revision, r.units)).collect::<Vec<_>>(), [(1, 2)]);

    // Three kept: revisions 1 and 2 go as 3, 4 and 5 come.
    let mut version = v3.version;
    for tag in 3..=5 {
        let spec = DeploymentSpec::new(template(&format!("local/web:{tag}")), 4);
        version = store.update_deployment(&web, spec, version, Change::default()).await.unwrap().version;
    }
    let kept = store.list_revisions(&web).await.unwrap();
    assert_eq!(kept.iter().map(|r| r.number).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(kept[2].template, store.get_deployment(&web).await.unwrap().spec.template);
    let kinds: Vec<String> = store.list_events(0, 100).await.unwrap().into_iter().map(|e| e.kind.to_string()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "deployment.updated").count(), 4);

    // Deleted with the deployment: a new one of the name starts again at revision 1.
    store.delete_deployment(&web).await.unwrap();
    assert!(matches!(store.list_revisions(&web).await, Err(Error::NotFound { .. })));
    store.create_deployment(&web, DeploymentSpec::new(template("local/web:1"), 1), Change::default()).await.unwrap();
    assert_eq!(store.list_revisions(&web).await.unwrap().len(), 1);
}

/// What a store made before templates and revisions holds, as `check_upgraded` expects it.
async fn check_upgraded(store: &DieselStore) {
    let web = store.get_deployment(&deployment_name("web")).await.unwrap();
    assert_eq!(web.spec.template.image.as_str(), "local/httpd:1");
    assert_eq!(web.spec.template.command, ["httpd", "-f", "-p", "8080"]);
    assert_eq!((web.spec.replicas, web.spec.units, web.version, web.revision), (3, 1, 2, 1));
    let busybox = store.get_deployment(&deployment_name("busybox")).await.unwrap();
    assert_eq!(busybox.spec.template.image.as_str(), "local/busybox:1.36");
    assert!(busybox.spec.template.command.is_empty());
    assert_eq!((busybox.spec.replicas, busybox.spec.units, busybox.version, busybox.revision), (1, 3, 1, 1));
    let revisions = store.list_revisions(&web.name).await.unwrap();
    assert_eq!(revisions.len(), 1);
    assert_eq!((revisions[0].number, &revisions[0].template), (1, &web.spec.template));
    assert_eq!(revisions[0].created_at, web.created_at);
    let replicas = store.list_replicas(ReplicaFilter::default()).await.unwrap();
    let seen: Vec<(u64, &str, &str, u64, Option<&str>)> = replicas
        .iter()
        .map(|r| (r.id.0, r.deployment.as_str(), r.state.as_str(), r.revision, r.container_id.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "web", "running", 1, Some("c0ffee01")),
            (2, "web", "running", 1, Some("c0ffee02")),
            (3, "busybox", "pending", 1, None),
        ]
    );
    let available: Vec<u32> = store.list_nodes().await.unwrap().iter().map(|n| n.available).collect();
    assert_eq!(available, [98, 97]);
    // And it takes the new writes.
    let spec = DeploymentSpec::new(template("local/httpd:2"), 3);
    assert_eq!(store.update_deployment(&web.name, spec, 2, Change::default()).await.unwrap().revision, 2);
    let placed = store.place_replicas(&[Placement { revision: 2, ..placement("web", "n1", 1) }]).await.unwrap();
    assert_eq!(placed[0].id, ReplicaId(4), "replica ids go on from where they were");
}

/// A store file as `main` made it before templates and revisions (the fixture is a dump of
/// one) opens with every deployment, replica and node kept, each deployment at revision 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_store_made_before_templates_opens_with_everything_kept() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};

    let db = TestDb::sqlite();
    let path = db.url().strip_prefix("sqlite://").unwrap().to_string();
    let mut old = SqliteConnection::establish(&path).unwrap();
    old.batch_execute(include_str!("fixtures/sqlite-before-templates.sql")).unwrap();
    drop(old);
    check_upgraded(&DieselStore::open_url(db.url()).await.unwrap()).await;
}

/// The same on PostgreSQL: a database migrated as `main` did (its migrations before the
/// templates, run from their files) with the same rows.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_store_made_before_templates_opens_with_everything_kept() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection};

    let Some(db) = TestDb::postgres() else { return };
    let mut old = PgConnection::establish(db.url()).unwrap();
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    old.batch_execute(
        "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
         run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    )
    .unwrap();
    for dir in ["2026-11-24-000000_init", "2026-11-24-000001_lease", "2026-11-26-000002_events"] {
        old.batch_execute(&std::fs::read_to_string(migrations.join(dir).join("up.sql")).unwrap()).unwrap();
        let version: String = dir.split('_').next().unwrap().replace('-', "");
        old.batch_execute(&format!("INSERT INTO __diesel_schema_migrations (version) VALUES ('{version}')")).unwrap();
    }
    old.batch_execute(
        "INSERT INTO nodes VALUES ('n1', 'tcp://127.0.0.1:1', 100, 98, 'online', 1796174953400), \
             ('n2', 'tcp://127.0.0.1:2', 100, 97, 'online', 1796174953400);
         INSERT INTO deployments VALUES \
             ('web', 'local/httpd:1', '[\"httpd\",\"-f\",\"-p\",\"8080\"]', 3, 1, 2, 1796174953260, 1796174953343), \
             ('busybox', 'local/busybox:1.36', '[]', 1, 3, 1, 1796174953310, 1796174953310);
         INSERT INTO replicas (deployment, node, units, container_id, state, created_at_ms) VALUES \
             ('web', 'n1', 1, 'c0ffee01', 'running', 1796174953350), \
             ('web', 'n1', 1, 'c0ffee02', 'running', 1796174953351), \
             ('busybox', 'n2', 3, NULL, 'pending', 1796174953352);",
    )
    .unwrap();
    drop(old);
    check_upgraded(&DieselStore::open_url(db.url()).await.unwrap()).await;
}

async fn node_labels_public_host_and_engine_facts_are_kept(db: TestDb) {
    use std::collections::BTreeMap;

    use orchestrator_core::{EngineFacts, EventKind, NodeUpdate};
    let t = TempStore::new(db).await;
    let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
    let new = NewNode::new("n1", "unix:///run/n1.sock", 8).unwrap().with_labels(labels.clone()).unwrap();
    let added = t.store.add_node(new.with_public_host(Some("10.0.0.1".into())).unwrap()).await.unwrap();
    assert_eq!((&added.labels, added.public_host.as_deref(), added.engine), (&labels, Some("10.0.0.1"), None));

    let engine = EngineFacts { cpus: 2, memory_bytes: 24 << 30 };
    let facts = NodeUpdate { engine: Some(engine), ..NodeUpdate::default() };
    t.store.update_node(&node_name("n1"), facts).await.unwrap();
    let relabel = NodeUpdate { labels: Some(BTreeMap::new()), public_host: Some(None), engine: None };
    let updated = t.store.update_node(&node_name("n1"), relabel).await.unwrap();
    assert_eq!((updated.labels.is_empty(), updated.public_host.as_deref(), updated.engine), (true, None, Some(engine)));
    // Kept across a reopen, and told as one event (the facts alone are not news).
    let again = t.reopen().await.get_node(&node_name("n1")).await.unwrap();
    assert_eq!(again, updated);
    let events = t.store.list_events(0, 100).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::NodeUpdated).count(), 1, "{events:?}");
    let missing = t.store.update_node(&node_name("nope"), NodeUpdate::default()).await;
    assert!(matches!(missing, Err(Error::NotFound { kind: Kind::Node, .. })), "{missing:?}");
}

async fn health_verdicts_are_kept_and_counted(db: TestDb) {
    use orchestrator_core::Health;
    let t = TempStore::new(db).await;
    online_node(&t.store, "n1", 10).await;
    deployment(&t.store, "web", 3).await;
    let placed = t
        .store
        .place_replicas(&[placement("web", "n1", 1), placement("web", "n1", 1), placement("web", "n1", 1)])
        .await
        .unwrap();
    let started: Vec<(ReplicaId, String)> = placed.iter().map(|r| (r.id, format!("c{}", r.id))).collect();
    t.store.mark_running_many(&started).await.unwrap();
    let gone = ReplicaId(9_999);
    let changes =
        [(placed[0].id, Some(Health::Healthy)), (placed[1].id, Some(Health::Starting)), (gone, Some(Health::Healthy))];
    t.store.set_replica_health(&changes).await.unwrap();
    let replicas = t.store.list_replicas(ReplicaFilter::deployment(&deployment_name("web"))).await.unwrap();
    let health: Vec<Option<Health>> = replicas.iter().map(|r| r.health).collect();
    assert_eq!(health, [Some(Health::Healthy), Some(Health::Starting), None]);
    let mut counts: Vec<(Option<Health>, u64)> =
        t.store.count_replicas().await.unwrap().into_iter().map(|c| (c.health, c.count)).collect();
    counts.sort();
    assert_eq!(counts, [(None, 1), (Some(Health::Starting), 1), (Some(Health::Healthy), 1)]);
    t.store.set_replica_health(&[(placed[1].id, None)]).await.unwrap();
    let again = t.reopen().await.list_replicas(ReplicaFilter::deployment(&deployment_name("web"))).await.unwrap();
    assert_eq!(again[1].health, None);
    // Healthy or unhealthy is news, once; starting is not, and neither is the same verdict again.
    t.store.set_replica_health(&[(placed[0].id, Some(Health::Healthy))]).await.unwrap();
    let told = t.store.list_events(0, 1000).await.unwrap();
    let health_events: Vec<_> = told.iter().filter(|e| e.kind == orchestrator_core::EventKind::ReplicaHealth).collect();
    assert_eq!(health_events.len(), 1, "{told:?}");
    assert_eq!(health_events[0].replica, Some(placed[0].id.0));
}

async fn claims_of_memory_cpus_and_ports_are_reserved_and_given_back(db: TestDb) {
    use orchestrator_core::{Claim, EngineFacts, HostPort, NodeUpdate, Protocol};
    const MIB: u64 = 1 << 20;
    let t = TempStore::new(db).await;
    for n in ["n1", "n2"] {
        online_node(&t.store, n, 100).await;
    }
    let facts = NodeUpdate { engine: Some(EngineFacts { cpus: 2, memory_bytes: 256 * MIB }), ..NodeUpdate::default() };
    t.store.update_node(&node_name("n1"), facts).await.unwrap();
    deployment(&t.store, "web", 3).await;
    deployment(&t.store, "api", 3).await;
    let port = HostPort { protocol: Protocol::Tcp, port: 18081 };
    let web = Claim { memory_bytes: 100 * MIB, nano_cpus: 500_000_000, ports: vec![port] };
    let claimed = |d: &str, node: &str, claim: &Claim| Placement { claim: claim.clone(), ..placement(d, node, 1) };

    let placed = t.store.place_replicas(&[claimed("web", "n1", &web)]).await.unwrap();
    assert_eq!(placed[0].claim, web, "the replica keeps what it claimed");
    let n1 = t.store.get_node(&node_name("n1")).await.unwrap();
    assert_eq!((n1.reserved.memory_bytes, n1.reserved.nano_cpus), (100 * MIB, 500_000_000));
    assert!(n1.reserved.ports.contains(&port));
    assert!(t.store.list_nodes().await.unwrap()[0].reserved.ports.contains(&port), "listed with its ports");
    let udp_port = HostPort { protocol: Protocol::Udp, port: 18081 };
    assert!(t.store.list_nodes_holding(&[port]).await.unwrap()[0].reserved.ports.contains(&port));
    assert!(t.store.list_nodes_holding(&[udp_port]).await.unwrap()[0].reserved.ports.is_empty(), "only those asked");
    assert!(t.store.list_nodes_holding(&[]).await.unwrap()[0].reserved.ports.is_empty());
    let brief = &t.store.list_nodes_brief().await.unwrap()[0];
    assert!(brief.reserved.ports.is_empty() && brief.reserved.memory_bytes == 100 * MIB, "{brief:?}");

    // The port is the node's, whatever the deployment; the refusal writes nothing.
    let other = Claim { ports: vec![port], ..Claim::default() };
    let taken = t.store.place_replicas(&[claimed("api", "n2", &Claim::default()), claimed("api", "n1", &other)]).await;
    assert!(matches!(&taken, Err(Error::Conflict(m)) if m.contains("tcp/18081 taken")), "{taken:?}");
    let twice = t.store.place_replicas(&[claimed("api", "n2", &other), claimed("api", "n2", &other)]).await;
    assert!(matches!(&twice, Err(Error::Conflict(m)) if m.contains("tcp/18081 taken")), "{twice:?}");
    assert_eq!(t.store.list_replicas(ReplicaFilter::deployment(&deployment_name("api"))).await.unwrap().len(), 0);
    let udp = Claim { ports: vec![HostPort { protocol: Protocol::Udp, port: 18081 }], ..Claim::default() };
    t.store.place_replicas(&[claimed("api", "n1", &udp)]).await.unwrap();

    // Memory and CPUs: never beyond what the engine reported; a node not heard from has none.
    let big = Claim { memory_bytes: 200 * MIB, ..Claim::default() };
    let short = t.store.place_replicas(&[claimed("web", "n1", &big)]).await;
    assert!(matches!(&short, Err(Error::Conflict(m)) if m.contains("memory")), "{short:?}");
    let cpus = Claim { nano_cpus: 1_600_000_000, ..Claim::default() };
    let short = t.store.place_replicas(&[claimed("web", "n1", &cpus)]).await;
    assert!(matches!(&short, Err(Error::Conflict(m)) if m.contains("1.5 CPUs free")), "{short:?}");
    let unknown = t.store.place_replicas(&[claimed("web", "n2", &Claim { memory_bytes: 1, ..Claim::default() })]).await;
    assert!(unknown.is_err(), "{unknown:?}");

    // Lost, released or deleted: given back, and the port can be taken again.
    t.store.mark_node_lost(&node_name("n1")).await.unwrap();
    let n1 = t.store.get_node(&node_name("n1")).await.unwrap();
    assert_eq!((n1.reserved.memory_bytes, n1.reserved.nano_cpus, n1.reserved.ports.len()), (0, 0, 0), "{n1:?}");
    let again = t.store.place_replicas(&[claimed("web", "n1", &web), claimed("api", "n2", &other)]).await.unwrap();
    t.store.release_replica(again[0].id).await.unwrap();
    t.store.delete_deployment(&deployment_name("api")).await.unwrap();
    for n in t.reopen().await.list_nodes().await.unwrap() {
        assert_eq!(n.reserved, orchestrator_core::Reserved::default(), "{n:?}");
        assert_eq!(n.available, n.capacity);
    }
}

async fn a_crash_loop_is_kept_told_and_cleared(db: TestDb) {
    use orchestrator_core::{CrashLoop, EventKind, Failure};
    let t = TempStore::new(db).await;
    deployment(&t.store, "web", 1).await;
    let name = deployment_name("web");
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let first = CrashLoop::after(None, Failure::Exited(Some(3)), at);
    let second = CrashLoop::after(Some(&first), Failure::Unhealthy, at + Duration::from_secs(2));
    t.store.set_crash_loop(&name, Some(first)).await.unwrap();
    t.store.set_crash_loop(&name, Some(second.clone())).await.unwrap();
    t.store.set_crash_loop(&name, Some(second.clone())).await.unwrap();
    assert_eq!(t.reopen().await.get_deployment(&name).await.unwrap().crash_loop, Some(second));
    let told = t.store.list_events(0, 100).await.unwrap();
    let crashes: Vec<_> = told.iter().filter(|e| e.kind == EventKind::DeploymentCrashLooping).collect();
    assert_eq!(crashes.len(), 2, "one event a failure, none for the same streak again: {told:?}");
    assert!(crashes[1].message.contains("failure 2 in a row (last exit code 3)"), "{}", crashes[1].message);
    t.store.set_crash_loop(&name, None).await.unwrap();
    assert_eq!(t.store.get_deployment(&name).await.unwrap().crash_loop, None);
    t.store.set_crash_loop(&deployment_name("gone"), None).await.unwrap();
}

/// A replica that ended badly is deleted (its capacity back) and kept with its reason and last
/// lines in one write, with its events; two records a replica of the deployment are kept, the
/// newest; they go with the deployment.
async fn ended_replicas_are_kept_with_their_last_words(db: TestDb) {
    use orchestrator_core::{EndReason, EventKind, LogLine, OutputStream, ReplicaExit};
    let t = TempStore::new(db).await;
    let store = &t.store;
    online_node(store, "n1", 8).await;
    deployment(store, "web", 1).await;
    let name = deployment_name("web");
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let mut placed = Vec::new();
    for _ in 0..4 {
        placed.extend(store.place_replicas(&[placement("web", "n1", 2)]).await.unwrap());
    }
    let exit = |i: usize, reason: EndReason| ReplicaExit {
        replica: placed[i].id,
        deployment: name.clone(),
        node: node_name("n1"),
        revision: 1,
        started_at: Some(at),
        ended_at: at + Duration::from_secs(i as u64),
        reason,
        logs: vec![
            LogLine { stream: OutputStream::Stdout, time: at + Duration::from_nanos(1_500), line: "boom ✓".into() },
            LogLine { stream: OutputStream::Stderr, time: at + Duration::from_secs(1), line: String::new() },
        ],
    };
    store.retire_replica(exit(0, EndReason::Exited { code: Some(3), oom_killed: false })).await.unwrap();
    assert_eq!(store.get_node(&node_name("n1")).await.unwrap().available, 2, "its units are back");
    store.retire_replica(exit(1, EndReason::Exited { code: Some(137), oom_killed: true })).await.unwrap();
    store.retire_replica(exit(2, EndReason::Unhealthy { output: Some("wget: bad address".into()) })).await.unwrap();
    store.retire_replica(exit(3, EndReason::NotStarted { error: "port tcp/18081 taken".into() })).await.unwrap();
    store.retire_replica(exit(3, EndReason::Vanished)).await.unwrap_err(); // no longer stored
    assert_eq!(store.get_node(&node_name("n1")).await.unwrap().available, 8);
    assert!(store.list_replicas(ReplicaFilter::deployment(&name)).await.unwrap().is_empty());

    let kept = t.reopen().await.list_exits(&name, true).await.unwrap();
    assert_eq!(
        kept,
        vec![
            exit(3, EndReason::NotStarted { error: "port tcp/18081 taken".into() }),
            exit(2, EndReason::Unhealthy { output: Some("wget: bad address".into()) })
        ],
        "the newest two, newest first"
    );
    let reasons = store.list_exits(&name, false).await.unwrap();
    let without_lines: Vec<_> = kept.iter().map(|e| ReplicaExit { logs: Vec::new(), ..e.clone() }).collect();
    assert_eq!(reasons, without_lines, "the same records, their lines not read");
    let ended: Vec<String> = store
        .list_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::ReplicaExited)
        .map(|e| e.message)
        .collect();
    assert_eq!(ended.len(), 4, "{ended:?}");
    assert!(ended[1].contains("OOM-killed (exit code 137)"), "{ended:?}");

    let pulled = store.place_replicas(&[placement("web", "n1", 1)]).await.unwrap();
    let pull = ReplicaExit {
        replica: pulled[0].id,
        reason: EndReason::PullFailed { error: "r:5000/app:1 on n1: unauthorized".into() },
        logs: Vec::new(),
        ended_at: at + Duration::from_secs(9),
        ..exit(0, EndReason::Vanished)
    };
    store.retire_replica(pull.clone()).await.unwrap();
    assert_eq!(store.list_exits(&name, true).await.unwrap()[0], pull);

    store.delete_deployment(&name).await.unwrap();
    deployment(store, "web", 1).await;
    assert!(store.list_exits(&name, true).await.unwrap().is_empty(), "deleted with the deployment");
    let err = store.list_exits(&deployment_name("gone"), true).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { kind: Kind::Deployment, .. }), "{err:?}");
}

/// A registry login is kept with its password sealed: listed without it, opened only with the
/// server's key, never in the database's bytes; without a key it is refused, not kept plain.
async fn registry_passwords_are_sealed_with_a_key_outside_the_store(db: TestDb) {
    use orchestrator_core::{Password, RegistryCredential, RegistryStore};
    let t = TempStore::new(db).await;
    let secret = "correct-horse-battery-staple-0123456789";
    let credential = RegistryCredential::new("10.123.0.1:5000", "ci", Password::new(secret)).unwrap();
    let refused = t.diesel().put_registry(credential.clone()).await.unwrap_err();
    assert!(matches!(refused, Error::Conflict(_)), "no key, no password kept: {refused:?}");
    let key = [7u8; 32];
    let store = t.reopen_diesel().await.sealing_with(key);
    store.put_registry(credential.clone()).await.unwrap();
    let listed = store.list_registries().await.unwrap();
    assert_eq!((listed.len(), listed[0].server.as_str(), listed[0].username.as_str()), (1, "10.123.0.1:5000", "ci"));
    assert_eq!(store.registry_credential("10.123.0.1:5000").await.unwrap(), Some(credential.clone()));
    assert_eq!(store.registry_credential("elsewhere:5000").await.unwrap(), None);
    let other_key = t.reopen_diesel().await.sealing_with([8u8; 32]);
    let e = other_key.registry_credential("10.123.0.1:5000").await.unwrap_err();
    assert!(e.to_string().contains("does not open"), "{e}");
    if let Some(path) = t.db.url().strip_prefix("sqlite://") {
        let mut bytes = Vec::new();
        for file in [path.to_string(), format!("{path}-wal")] {
            bytes.extend(std::fs::read(&file).unwrap_or_default());
        }
        assert!(!bytes.is_empty());
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the password is in the file's bytes");
    }
    // Replaced, then removed.
    let newer = RegistryCredential::new("10.123.0.1:5000", "ci2", Password::new("other-password")).unwrap();
    store.put_registry(newer.clone()).await.unwrap();
    assert_eq!(store.registry_credential("10.123.0.1:5000").await.unwrap(), Some(newer));
    store.remove_registry("10.123.0.1:5000").await.unwrap();
    assert!(store.list_registries().await.unwrap().is_empty());
    let gone = store.remove_registry("10.123.0.1:5000").await.unwrap_err();
    assert!(matches!(gone, Error::NotFound { kind: Kind::Registry, .. }), "{gone:?}");
}

/// A server's list of nodes follows what another server sharing the store changes: nodes added,
/// removed, relabelled, placed on and marked, each read after the other's write. (A server
/// keeps what a node is between reads; a node removed and another added, same count, is the
/// change it could mistake for none.)
async fn a_servers_node_list_follows_another_servers_writes(db: TestDb) {
    use std::collections::BTreeMap;

    use orchestrator_core::NodeUpdate;
    let t = TempStore::new(db).await;
    let other = t.reopen().await;
    online_node(&t.store, "n1", 8).await;
    online_node(&t.store, "n2", 4).await;
    deployment(&t.store, "web", 1).await;
    let names = |nodes: &[orchestrator_core::Node]| -> Vec<(String, u32, u32)> {
        nodes.iter().map(|n| (n.name.to_string(), n.capacity, n.available)).collect()
    };
    let seen = t.store.list_nodes().await.unwrap();
    assert_eq!(names(&seen), [("n1".into(), 8, 8), ("n2".into(), 4, 4)]);

    other.place_replicas(&[placement("web", "n1", 3)]).await.unwrap();
    let seen = t.store.list_nodes().await.unwrap();
    assert_eq!(names(&seen), [("n1".into(), 8, 5), ("n2".into(), 4, 4)]);

    other.remove_node(&node_name("n2")).await.unwrap();
    online_node(&other, "n3", 6).await;
    let seen = t.store.list_nodes().await.unwrap();
    assert_eq!(names(&seen), [("n1".into(), 8, 5), ("n3".into(), 6, 6)]);

    let labels = BTreeMap::from([("zone".to_string(), "b".to_string())]);
    other
        .update_node(&node_name("n3"), NodeUpdate { labels: Some(labels.clone()), ..NodeUpdate::default() })
        .await
        .unwrap();
    other.mark_offline(&[node_name("n1")]).await.unwrap();
    let seen = t.store.list_nodes().await.unwrap();
    assert_eq!((seen[0].status, &seen[1].labels), (NodeStatus::Offline, &labels));
    assert_eq!(seen, other.list_nodes().await.unwrap());
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::TestDb::sqlite()).await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let Some(db) = super::TestDb::postgres() else { return };
                    super::$test(db).await;
                }
            )*
        }
    };
}

/// A new template starts a rollout in the same write; a second one supersedes it; a rollback
/// ends the one under way as rolled back; states move only from where they are; progress and
/// failures are counted with their events; the policy and replica times are kept.
async fn rollouts_start_with_their_revision_and_end_once(db: TestDb) {
    use orchestrator_core::{RolloutProgress, RolloutState, UpdateOrder};
    let t = TempStore::new(db).await;
    let store = &t.store;
    online_node(store, "n1", 8).await;
    let web = deployment_name("web");
    let mut spec = DeploymentSpec::new(template("local/web:1"), 2);
    spec.policy.update.order = UpdateOrder::StopFirst;
    spec.policy.deregister_delay = Duration::from_millis(250);
    let created = store.create_deployment(&web, spec.clone(), Change::default()).await.unwrap();
    assert_eq!((created.rollout, created.spec.policy), (None, spec.policy), "creation is no rollout");
    assert!(store.list_rollouts(&web).await.unwrap().is_empty());

    // The policy alone: a new version, no revision, no rollout.
    spec.policy.update.parallelism = 3;
    let v2 = store.update_deployment(&web, spec.clone(), 1, Change::default()).await.unwrap();
    assert_eq!((v2.revision, v2.rollout, v2.spec.policy.update.parallelism), (1, None, 3));

    spec.template = template("local/web:2");
    let v3 = store.update_deployment(&web, spec.clone(), 2, Change::by("tok")).await.unwrap();
    let first = store.get_rollout(&web, v3.rollout.expect("a rollout under way")).await.unwrap();
    assert_eq!((first.from_revision, first.to_revision, first.state), (1, 2, RolloutState::InProgress));
    assert_eq!(first.policy, spec.policy.update, "it runs with the update policy");

    let progress = RolloutProgress { updated: 1, healthy: 0 };
    let seen = store.record_rollout_progress(first.id, progress, Some("waiting for replica 3".into())).await.unwrap();
    assert_eq!((seen.updated, seen.reason.as_deref()), (1, Some("waiting for replica 3")));
    store.count_rollout_failure(&web, 1, "an old replica failed").await.unwrap();
    store.count_rollout_failure(&web, 2, "replica 3 unhealthy").await.unwrap();
    let counted = store.get_rollout(&web, first.id).await.unwrap();
    assert_eq!((counted.failed, counted.reason.as_deref()), (1, Some("replica 3 unhealthy")), "only the target's");

    let paused = store
        .set_rollout_state(first.id, &[RolloutState::InProgress], RolloutState::Paused, Some("by tok".into()))
        .await
        .unwrap();
    assert_eq!((paused.state, paused.finished_at), (RolloutState::Paused, None));
    let again = store.set_rollout_state(first.id, &[RolloutState::InProgress], RolloutState::Paused, None).await;
    assert!(matches!(again.unwrap_err(), Error::Conflict(_)), "paused already");

    // A second template supersedes the paused rollout.
    spec.template = template("local/web:3");
    let v4 = store.update_deployment(&web, spec.clone(), 3, Change::default()).await.unwrap();
    let superseded = store.get_rollout(&web, first.id).await.unwrap();
    assert_eq!(superseded.state, RolloutState::Failed);
    assert_eq!(superseded.reason.as_deref(), Some("superseded by revision 3"));
    assert!(superseded.finished_at.is_some());
    let second = v4.rollout.unwrap();
    assert_ne!(second, first.id);

    // A rollback: the rollout under way ends rolled back; the new revision says what it restores.
    let change = Change { by: None, cause: Some("replica 9 unhealthy; rolling back".into()), restores: Some(1) };
    spec.template = template("local/web:1");
    let v5 = store.update_deployment(&web, spec.clone(), 4, change).await.unwrap();
    let rolled = store.get_rollout(&web, second).await.unwrap();
    assert_eq!(
        (rolled.state, rolled.reason.as_deref()),
        (RolloutState::RolledBack, Some("replica 9 unhealthy; rolling back"))
    );
    let back = store.get_rollout(&web, v5.rollout.unwrap()).await.unwrap();
    assert_eq!((back.from_revision, back.to_revision, back.restores), (3, 4, Some(1)));
    assert_eq!(back.policy, spec.policy.rollback, "a rollback runs with the rollback policy");
    let revisions = store.list_revisions(&web).await.unwrap();
    assert_eq!(revisions.last().map(|r| (r.number, r.restores)), Some((4, Some(1))));

    let done = store
        .set_rollout_state(back.id, &[RolloutState::InProgress, RolloutState::Paused], RolloutState::Succeeded, None)
        .await
        .unwrap();
    assert!(done.finished_at.is_some());
    assert_eq!(store.get_deployment(&web).await.unwrap().rollout, None, "nothing under way");
    let late = store.record_rollout_progress(back.id, RolloutProgress::default(), None).await;
    assert!(matches!(late.unwrap_err(), Error::Conflict(_)), "a finished rollout takes no more steps");
    let ids: Vec<u64> = store.list_rollouts(&web).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(ids, [back.id, second, first.id], "newest first");
    assert!(matches!(store.get_rollout(&deployment_name("nope"), 1).await, Err(Error::NotFound { .. })));
    assert!(matches!(store.get_rollout(&web, 999).await, Err(Error::NotFound { kind: Kind::Rollout, .. })));

    let kinds: Vec<String> = store.list_events(0, 500).await.unwrap().into_iter().map(|e| e.kind.to_string()).collect();
    let rollout_kinds: Vec<&str> = kinds.iter().map(String::as_str).filter(|k| k.starts_with("rollout.")).collect();
    assert_eq!(
        rollout_kinds,
        [
            "rollout.started",
            "rollout.progressed",
            "rollout.progressed",
            "rollout.paused",
            "rollout.failed",
            "rollout.started",
            "rollout.rolled_back",
            "rollout.started",
            "rollout.succeeded"
        ]
    );

    // Replica times: started when marked running, health since its last change.
    let placed = store.place_replicas(&[placement("web", "n1", 1)]).await.unwrap();
    assert_eq!((placed[0].started_at, placed[0].health_since), (None, None));
    let before = SystemTime::now() - Duration::from_secs(1);
    let running = store.mark_running(placed[0].id, "c1").await.unwrap();
    assert!(running.started_at.is_some_and(|t| t >= before));
    store.set_replica_health(&[(placed[0].id, Some(orchestrator_core::Health::Healthy))]).await.unwrap();
    let healthy = &store.list_replicas(ReplicaFilter::deployment(&web)).await.unwrap()[0];
    assert!(healthy.health_since.is_some_and(|t| t >= before));
    assert_eq!(healthy.deregistered_at, None);
    store.deregister_replicas(&[placed[0].id, ReplicaId(999_999)]).await.unwrap();
    store.deregister_replicas(&[placed[0].id]).await.unwrap();
    let leaving = &store.list_replicas(ReplicaFilter::deployment(&web)).await.unwrap()[0];
    assert!(leaving.deregistered_at.is_some_and(|t| t >= before));
    let events = store.list_events(0, 1_000).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind.as_str() == "replica.deregistered").count(), 1, "once");

    // Kept across a reopen, and gone with the deployment.
    let reopened = t.reopen().await;
    assert_eq!(reopened.get_deployment(&web).await.unwrap().spec.policy, spec.policy);
    assert_eq!(reopened.list_rollouts(&web).await.unwrap().len(), 3);
    reopened.delete_deployment(&web).await.unwrap();
    reopened.create_deployment(&web, DeploymentSpec::new(template("local/web:1"), 1), Change::default()).await.unwrap();
    assert!(reopened.list_rollouts(&web).await.unwrap().is_empty());
}

/// A revision is pinned once (the first digest wins, and only on that revision); a new
/// template starts unpinned unless its image is the one pinned before (an env change) or it
/// restores a pinned revision; a rollout is marked pulled once, only while active; events of
/// engines' pulls are recorded in order with the store's own.
async fn image_digests_are_pinned_once_and_rollouts_marked_pulled(db: TestDb) {
    let t = TempStore::new(db).await;
    let store = &t.store;
    let web = deployment_name("web");
    let (a, b, c) = (
        "sha256:".to_string() + &"a".repeat(64),
        "sha256:".to_string() + &"b".repeat(64),
        "sha256:".to_string() + &"c".repeat(64),
    );
    let mut spec = DeploymentSpec::new(template("r:5000/app:1"), 2);
    let created = store.create_deployment(&web, spec.clone(), Change::default()).await.unwrap();
    assert_eq!(created.image_digest, None);
    store.pin_image(&web, 1, &a).await.unwrap();
    store.pin_image(&web, 1, &b).await.unwrap();
    store.pin_image(&web, 7, &c).await.unwrap();
    assert_eq!(store.get_deployment(&web).await.unwrap().image_digest, Some(a.clone()), "the first wins");
    assert_eq!(store.list_deployments().await.unwrap()[0].image_digest, Some(a.clone()));

    // An env change keeps the pin; a new image starts unpinned and is pinned on its own.
    spec.template.env.insert("K".into(), "v".into());
    let v2 = store.update_deployment(&web, spec.clone(), 1, Change::default()).await.unwrap();
    assert_eq!((v2.revision, v2.image_digest.clone()), (2, Some(a.clone())));
    let rollout = v2.rollout.unwrap();
    assert_eq!(store.get_rollout(&web, rollout).await.unwrap().pulled_at, None);
    let pulled = store.mark_rollout_pulled(rollout).await.unwrap();
    assert!(pulled.pulled_at.is_some());
    assert_eq!(store.mark_rollout_pulled(rollout).await.unwrap().pulled_at, pulled.pulled_at, "once");
    spec.template.image = ImageRef::parse("r:5000/app:2").unwrap();
    let v3 = store.update_deployment(&web, spec.clone(), 2, Change::default()).await.unwrap();
    assert_eq!(v3.image_digest, None);
    let ended = store.mark_rollout_pulled(rollout).await;
    assert!(matches!(ended.unwrap_err(), Error::Conflict(_)), "a superseded rollout pulls nothing");
    store.pin_image(&web, 3, &c).await.unwrap();
    assert_eq!(store.get_deployment(&web).await.unwrap().image_digest, Some(c.clone()));

    // A rollback to revision 2 runs revision 2's digest, whatever the tag names now.
    let second = store.list_revisions(&web).await.unwrap().into_iter().find(|r| r.number == 2).unwrap();
    assert_eq!(second.image_digest, Some(a.clone()));
    spec.template = second.template;
    let back = Change { restores: Some(2), ..Change::default() };
    let v4 = store.update_deployment(&web, spec.clone(), 3, back).await.unwrap();
    assert_eq!((v4.revision, v4.image_digest.clone()), (4, Some(a.clone())));
    let digests: Vec<Option<String>> =
        t.reopen().await.list_revisions(&web).await.unwrap().into_iter().map(|r| r.image_digest).collect();
    assert_eq!(digests, [Some(a.clone()), Some(a.clone()), Some(c), Some(a)], "kept across a reopen");

    let before = store.last_event_id().await.unwrap();
    let pulls = vec![
        orchestrator_core::NewEvent::image_pull("web", "n1", "r:5000/app:1", None),
        orchestrator_core::NewEvent::image_pull("web", "n1", "r:5000/app:1", Some(Err("unauthorized"))),
    ];
    store.record_events(pulls).await.unwrap();
    let events = store.list_events(before, 10).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["image.pulling", "image.pull_failed"]);
    assert_eq!((events[1].deployment.as_deref(), events[1].node.as_deref()), (Some("web"), Some("n1")));
}

on_both_backends!(
    image_digests_are_pinned_once_and_rollouts_marked_pulled,
    nodes_crud,
    a_servers_node_list_follows_another_servers_writes,
    duplicates_and_missing_objects_are_typed_errors,
    stale_version_is_a_conflict_not_an_overwrite,
    placement_reserves_capacity_all_or_nothing,
    a_mixed_batch_is_recorded_in_its_order,
    replica_lifecycle_keeps_capacity_consistent,
    release_and_delete_give_capacity_back,
    concurrent_reservations_never_oversubscribe,
    eight_concurrent_writers_never_see_database_is_locked,
    an_operators_writes_go_ahead_of_the_converges_backlog,
    data_survives_reopening,
    rejects_unknown_store_urls,
    tokens_and_audit_survive_reopening,
    the_lease_has_one_live_holder_and_terms_only_grow,
    a_fenced_store_writes_only_while_its_term_holds,
    every_change_is_an_event_in_order_and_failed_writes_leave_none,
    old_events_are_dropped_beyond_the_retention,
    many_replicas_are_marked_running_at_once_and_counted,
    template_changes_make_revisions_and_the_newest_are_kept,
    node_labels_public_host_and_engine_facts_are_kept,
    health_verdicts_are_kept_and_counted,
    claims_of_memory_cpus_and_ports_are_reserved_and_given_back,
    a_crash_loop_is_kept_told_and_cleared,
    rollouts_start_with_their_revision_and_end_once,
    ended_replicas_are_kept_with_their_last_words,
    registry_passwords_are_sealed_with_a_key_outside_the_store,
);

/// The fake under every scheduler and API test, held to the same contract: every test that
/// asks nothing only a database has.
macro_rules! on_the_memory_store_too {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::TestDb::memory()).await;
                }
            )*
        }
    };
}

on_the_memory_store_too!(
    image_digests_are_pinned_once_and_rollouts_marked_pulled,
    nodes_crud,
    a_servers_node_list_follows_another_servers_writes,
    duplicates_and_missing_objects_are_typed_errors,
    stale_version_is_a_conflict_not_an_overwrite,
    placement_reserves_capacity_all_or_nothing,
    a_mixed_batch_is_recorded_in_its_order,
    replica_lifecycle_keeps_capacity_consistent,
    release_and_delete_give_capacity_back,
    concurrent_reservations_never_oversubscribe,
    every_change_is_an_event_in_order_and_failed_writes_leave_none,
    old_events_are_dropped_beyond_the_retention,
    many_replicas_are_marked_running_at_once_and_counted,
    template_changes_make_revisions_and_the_newest_are_kept,
    node_labels_public_host_and_engine_facts_are_kept,
    health_verdicts_are_kept_and_counted,
    claims_of_memory_cpus_and_ports_are_reserved_and_given_back,
    a_crash_loop_is_kept_told_and_cleared,
    rollouts_start_with_their_revision_and_end_once,
    ended_replicas_are_kept_with_their_last_words,
);
