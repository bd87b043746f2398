//! `ReplicaStore` on diesel: placement is a capacity reservation and a replica record written in
//! one transaction, so concurrent placements can never oversubscribe a node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use orchestrator_core::error::Kind;
use orchestrator_core::{
    Claim, DeploymentName, Error as DomainError, Health, HostPort, NewEvent, NodeName, Placement, Replica,
    ReplicaCount, ReplicaExit, ReplicaFilter, ReplicaId, ReplicaState, ReplicaStore, Result,
};

use crate::connection::AnyConnection;
use crate::error::Error;
use crate::events;
use crate::nodes::load_node;
use crate::prepared::Fixed;
#[cfg(feature = "postgres")]
use crate::rows::NewReplicaRow;
use crate::rows::{ReplicaRow, from_millis, parse_health, ports_text, replica_id, to_i64, to_millis};
use crate::schema::{deployments, node_ports, nodes, replicas};
use crate::store::{DieselStore, RevisionChange};

/// Rows per multi-row INSERT on PostgreSQL (at most 9 parameters each).
#[cfg(feature = "postgres")]
const INSERT_CHUNK: usize = 1_000;
/// Ids per `IN (...)` list.
const ID_CHUNK: usize = 1_000;

/// What placements or releases add up to on one node.
#[derive(Default)]
struct NodeTotal<'a> {
    units: i64,
    memory_bytes: i64,
    nano_cpus: i64,
    claims: Vec<&'a Claim>,
}

impl<'a> NodeTotal<'a> {
    fn add(&mut self, units: u32, claim: &'a Claim) {
        self.units += i64::from(units);
        self.memory_bytes += to_i64(claim.memory_bytes);
        self.nano_cpus += to_i64(claim.nano_cpus);
        self.claims.push(claim);
    }
}

/// Gives what `released` replicas held back to their nodes (one UPDATE per node) and frees
/// their host ports.
pub(crate) fn release_units<'a>(
    conn: &mut AnyConnection,
    released: impl IntoIterator<Item = &'a Replica>,
) -> Result<(), Error> {
    let mut per_node: BTreeMap<&str, NodeTotal<'_>> = BTreeMap::new();
    // Per port, the nodes and replicas that held it: one DELETE by key prefix a port (the
    // replicas of a deployment hold the same ports on each node).
    let mut held: BTreeMap<HostPort, (Vec<&str>, Vec<i64>)> = BTreeMap::new();
    for replica in released {
        per_node.entry(replica.node.as_str()).or_default().add(replica.units, &replica.claim);
        for port in &replica.claim.ports {
            let (nodes, ids) = held.entry(*port).or_default();
            nodes.push(replica.node.as_str());
            ids.push(replica_id(replica.id)?);
        }
    }
    for (node, total) in per_node {
        diesel::update(nodes::table.find(node))
            .set((
                nodes::available.eq(nodes::available + total.units),
                nodes::memory_reserved.eq(nodes::memory_reserved - total.memory_bytes),
                nodes::nano_cpus_reserved.eq(nodes::nano_cpus_reserved - total.nano_cpus),
            ))
            .execute(conn)?;
    }
    for (port, (nodes, ids)) in held {
        for (nodes, ids) in nodes.chunks(ID_CHUNK / 2).zip(ids.chunks(ID_CHUNK / 2)) {
            diesel::delete(
                node_ports::table
                    .filter(node_ports::port.eq(i32::from(port.port)))
                    .filter(node_ports::protocol.eq(port.protocol.as_str()))
                    .filter(node_ports::node.eq_any(nodes))
                    .filter(node_ports::replica.eq_any(ids)),
            )
            .execute(conn)?;
        }
    }
    Ok(())
}

fn load_replica(conn: &mut AnyConnection, id: i64) -> Result<Replica, Error> {
    let row: Option<ReplicaRow> = replicas::table.find(id).select(ReplicaRow::as_select()).first(conn).optional()?;
    row.ok_or_else(|| DomainError::not_found(Kind::Replica, id.to_string()).into()).and_then(Replica::try_from)
}

/// Deletes a replica's record, giving back what it held if it still held it; the record.
fn delete_replica(conn: &mut AnyConnection, id: i64) -> Result<Replica, Error> {
    let current = load_replica(conn, id)?;
    if current.state.is_active() {
        release_units(conn, [&current])?;
    }
    diesel::delete(replicas::table.find(id)).execute(conn)?;
    Ok(current)
}

/// Nodes per reservation statement on PostgreSQL: 4 parameters each, under its 65,535.
#[cfg(feature = "postgres")]
const RESERVE_CHUNK: usize = 1_000;

/// What a node must satisfy to take its share, and what taking it writes (`v` is the share):
/// online, and its units, memory and CPUs (`NANO_CPUS_PER_CPU` a CPU) enough (a unit test
/// holds the literals to the names).
macro_rules! reserve_update {
    ($from:literal) => {
        concat!(
            "UPDATE nodes SET available = nodes.available - v.units, \
                 memory_reserved = nodes.memory_reserved + v.memory, \
                 nano_cpus_reserved = nodes.nano_cpus_reserved + v.cpus \
             FROM ",
            $from,
            " WHERE nodes.name = v.name AND nodes.status = 'online' AND nodes.available >= v.units \
                 AND (v.memory = 0 OR nodes.engine_memory_bytes >= nodes.memory_reserved + v.memory) \
                 AND (v.cpus = 0 OR nodes.engine_cpus * 1000000000 >= nodes.nano_cpus_reserved + v.cpus) \
             RETURNING nodes.name"
        )
    };
}

/// Reserves what each node of a batch needs, all nodes in one conditional UPDATE (a statement
/// per node was most of a placement's cost: each one is compiled, and journaled for its
/// CHECKs). A node that cannot take its share (not online, short of units, memory or CPUs) is
/// left unchanged by the WHERE, and the CHECKs refuse any write that would oversubscribe
/// whatever the WHERE says; then the batch fails with the reason, and its transaction takes
/// back what the statement did reserve. Host ports are checked for the whole batch by
/// `hold_ports` once the replicas have ids.
fn reserve(conn: &mut AnyConnection, per_node: &BTreeMap<&str, NodeTotal<'_>>) -> Result<(), Error> {
    let nodes: Vec<(&str, &NodeTotal<'_>)> = per_node.iter().map(|(n, t)| (*n, t)).collect();
    let reserved: BTreeSet<String> = match conn {
        // One statement per share: the nodes taking the same share (a converge's batch is
        // mostly one replica a node) as one JSON array of names, the share bound once.
        AnyConnection::Sqlite(c) => {
            let mut by_share: BTreeMap<(i64, i64, i64), Vec<&str>> = BTreeMap::new();
            for (node, t) in &nodes {
                by_share.entry((t.units, t.memory_bytes, t.nano_cpus)).or_default().push(node);
            }
            let mut reserved = BTreeSet::new();
            for ((units, memory, cpus), names) in by_share {
                let rows = Fixed::new(reserve_update!(
                    "(SELECT value AS name, ? AS units, ? AS memory, ? AS cpus FROM json_each(?)) AS v"
                ))
                .big_int(units)
                .big_int(memory)
                .big_int(cpus)
                .text(serde_json::to_string(&names).expect("names always serialize"))
                .load::<NodeNameRow>(c)?;
                reserved.extend(rows.into_iter().map(|r| r.name));
            }
            reserved
        }
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => {
            let mut reserved = BTreeSet::new();
            for chunk in nodes.chunks(RESERVE_CHUNK) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let p = 4 * i + 1;
                        format!("(${p}::text, ${}::bigint, ${}::bigint, ${}::bigint)", p + 1, p + 2, p + 3)
                    })
                    .collect();
                let sql = format!(
                    "WITH v (name, units, memory, cpus) AS (VALUES {}) {}",
                    values.join(", "),
                    reserve_update!("v")
                );
                let mut query = diesel::sql_query(&sql).into_boxed();
                for (node, total) in chunk {
                    query = query
                        .bind::<Text, _>(*node)
                        .bind::<BigInt, _>(total.units)
                        .bind::<BigInt, _>(total.memory_bytes)
                        .bind::<BigInt, _>(total.nano_cpus);
                }
                reserved.extend(query.load::<NodeNameRow>(c)?.into_iter().map(|r| r.name));
            }
            reserved
        }
    };
    if reserved.len() == nodes.len() {
        return Ok(());
    }
    let (node, total) = nodes.iter().find(|(n, _)| !reserved.contains(*n)).expect("a node left out");
    Err(shortfall(conn, node, total))
}

#[derive(QueryableByName)]
struct NodeNameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Why `node` cannot take `total`, precisely (it was left unchanged).
fn shortfall(conn: &mut AnyConnection, node: &str, total: &NodeTotal<'_>) -> Error {
    let mut current = match load_node(conn, node) {
        Ok(current) => current,
        Err(e) => return e,
    };
    current.reserved.ports.clear(); // checked by `hold_ports`
    let units = u64::try_from(total.units).unwrap_or_default();
    let why = current.shortfall(units, total.claims.iter().copied());
    why.unwrap_or_else(|| DomainError::Conflict(format!("node {node:?} changed while placing; try again"))).into()
}

/// Refuses a batch asking twice for one host port of one node. (Whether another replica holds
/// it already, `hold_ports` finds out by writing the rows.)
fn check_batch_ports(per_node: &BTreeMap<&str, NodeTotal<'_>>) -> Result<(), Error> {
    let mut asked: Vec<HostPort> = Vec::new();
    for (node, total) in per_node {
        asked.clear();
        asked.extend(total.claims.iter().flat_map(|c| &c.ports));
        asked.sort_unstable();
        if let Some(twice) = asked.windows(2).find(|w| w[0] == w[1]) {
            return Err(DomainError::Conflict(format!("node {node:?} has {} taken", twice[0])).into());
        }
    }
    Ok(())
}

/// Holds the host ports of `placed` replicas (in id order) on their nodes, or refuses the batch
/// if another replica holds one of them: the rows are written skipping those whose key is
/// taken, and a row short means a port taken (no query before the write: the key answers as it
/// is kept). Per run of consecutive replicas with the same ports (a deployment's batch is one),
/// one short statement a port, its rows read back from the replicas just written by their ids:
/// nothing to send but the range.
fn hold_ports(conn: &mut AnyConnection, placed: &[Replica]) -> Result<(), Error> {
    let consecutive = |a: &Replica, b: &Replica| a.claim.ports == b.claim.ports && b.id.0 == a.id.0 + 1;
    for run in placed.chunk_by(consecutive) {
        let (first, last) = (replica_id(run[0].id)?, replica_id(run[run.len() - 1].id)?);
        for port in &run[0].claim.ports {
            let (number, protocol) = (i32::from(port.port), port.protocol.as_str());
            let held = match conn {
                AnyConnection::Sqlite(c) => Fixed::new(
                    "INSERT INTO node_ports (port, protocol, node, replica) \
                     SELECT ?, ?, node, id FROM replicas WHERE id BETWEEN ? AND ? \
                     ON CONFLICT DO NOTHING",
                )
                .integer(number)
                .text(protocol)
                .big_int(first)
                .big_int(last)
                .execute(c)?,
                #[cfg(feature = "postgres")]
                AnyConnection::Postgres(c) => diesel::sql_query(
                    "INSERT INTO node_ports (port, protocol, node, replica) \
                     SELECT $1, $2, node, id FROM replicas WHERE id BETWEEN $3 AND $4 \
                     ON CONFLICT DO NOTHING",
                )
                .bind::<diesel::sql_types::Integer, _>(number)
                .bind::<Text, _>(protocol)
                .bind::<BigInt, _>(first)
                .bind::<BigInt, _>(last)
                .execute(c)?,
            };
            if held < run.len() {
                let holders: Vec<(&str, i64)> =
                    run.iter().map(|r| Ok((r.node.as_str(), replica_id(r.id)?))).collect::<Result<_, Error>>()?;
                return Err(port_taken(conn, *port, &holders));
            }
        }
    }
    Ok(())
}

/// Which of `holders` found `port` held by another replica (`hold_ports` wrote fewer rows).
fn port_taken(conn: &mut AnyConnection, port: HostPort, holders: &[(&str, i64)]) -> Error {
    let nodes: Vec<&str> = holders.iter().map(|(node, _)| *node).collect();
    let found: Result<Vec<(String, i64)>, diesel::result::Error> = node_ports::table
        .filter(node_ports::port.eq(i32::from(port.port)))
        .filter(node_ports::protocol.eq(port.protocol.as_str()))
        .filter(node_ports::node.eq_any(&nodes))
        .select((node_ports::node, node_ports::replica))
        .load(conn);
    let found = match found {
        Ok(found) => found,
        Err(e) => return e.into(),
    };
    match found.iter().find(|(node, replica)| !holders.contains(&(node.as_str(), *replica))) {
        Some((node, _)) => DomainError::Conflict(format!("node {node:?} has {port} taken")).into(),
        None => DomainError::Conflict(format!("{port} changed hands while placing; try again")).into(),
    }
}

/// Inserts the placements as pending replicas; the records, ids given.
fn insert_pending(conn: &mut AnyConnection, placements: &[Placement], now: i64) -> Result<Vec<Replica>, Error> {
    // What was written, with its id: built from the placement, not read back and parsed.
    let written = |p: &Placement, id: i64| Replica {
        id: ReplicaId(u64::try_from(id).unwrap_or_default()),
        deployment: p.deployment.clone(),
        node: p.node.clone(),
        units: p.units,
        revision: p.revision,
        container_id: None,
        state: ReplicaState::Pending,
        created_at: from_millis(now),
        health: None,
        claim: p.claim.clone(),
        started_at: None,
        health_since: None,
        deregistered_at: None,
    };
    match conn {
        // One short statement per run of placements alike but for their node (a converge's
        // batch is one run): what they share bound once, their nodes as one JSON array of
        // names (see `hold_ports`), returning the ids alone: the rest is what was written.
        AnyConnection::Sqlite(c) => {
            let mut ids: Vec<InsertedRow> = Vec::with_capacity(placements.len());
            for run in placements.chunk_by(alike) {
                let first = &run[0];
                let nodes: Vec<&str> = run.iter().map(|p| p.node.as_str()).collect();
                ids.extend(
                    Fixed::new(
                        "INSERT INTO replicas \
                             (deployment, node, units, revision, memory_bytes, nano_cpus, ports, state, created_at_ms) \
                         SELECT ?, value, ?, ?, ?, ?, ?, ?, ? FROM json_each(?) ORDER BY key \
                         RETURNING id, node",
                    )
                    .text(first.deployment.as_str())
                    .big_int(i64::from(first.units))
                    .big_int(i64::try_from(first.revision).unwrap_or(i64::MAX))
                    .big_int(to_i64(first.claim.memory_bytes))
                    .big_int(to_i64(first.claim.nano_cpus))
                    .text(ports_text(&first.claim.ports))
                    .text(ReplicaState::Pending.as_str())
                    .big_int(now)
                    .text(serde_json::to_string(&nodes).expect("names always serialize"))
                    .load::<InsertedRow>(c)?,
                );
            }
            // The rows go in in the placements' order, each taking the next id; RETURNING
            // gives them in no promised order. The nodes check the pairing.
            ids.sort_unstable_by_key(|r| r.id);
            if ids.len() != placements.len() || ids.iter().zip(placements).any(|(r, p)| r.node != p.node.as_str()) {
                return Err(Error::Corrupt("replica ids out of the placements' order".into()));
            }
            Ok(ids.iter().zip(placements).map(|(r, p)| written(p, r.id)).collect())
        }
        #[cfg(feature = "postgres")]
        AnyConnection::Postgres(c) => {
            let mut inserted = Vec::with_capacity(placements.len());
            for chunk in placements.chunks(INSERT_CHUNK) {
                let rows: Vec<NewReplicaRow> = chunk
                    .iter()
                    .map(|p| NewReplicaRow {
                        deployment: p.deployment.as_str(),
                        node: p.node.as_str(),
                        units: i64::from(p.units),
                        state: ReplicaState::Pending.as_str(),
                        created_at_ms: now,
                        revision: i64::try_from(p.revision).unwrap_or(i64::MAX),
                        memory_bytes: to_i64(p.claim.memory_bytes),
                        nano_cpus: to_i64(p.claim.nano_cpus),
                        ports: ports_text(&p.claim.ports),
                    })
                    .collect();
                inserted.extend(
                    diesel::insert_into(replicas::table)
                        .values(&rows)
                        .returning(ReplicaRow::as_returning())
                        .get_results(c)?,
                );
            }
            inserted.into_iter().map(Replica::try_from).collect()
        }
    }
}

/// Whether two placements differ in their node alone.
fn alike(a: &Placement, b: &Placement) -> bool {
    (&a.deployment, a.units, a.revision, &a.claim) == (&b.deployment, b.units, b.revision, &b.claim)
}

#[derive(QueryableByName)]
struct InsertedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    node: String,
}

#[async_trait]
impl ReplicaStore for DieselStore {
    async fn place_replicas(&self, placements: &[Placement]) -> Result<Vec<Replica>> {
        if placements.is_empty() {
            return Ok(Vec::new());
        }
        let placements = placements.to_vec();
        Ok(self
            .write(move |conn| {
                let mut per_node: BTreeMap<&str, NodeTotal<'_>> = BTreeMap::new();
                let mut wanted_deployments = BTreeSet::new();
                for p in &placements {
                    per_node.entry(p.node.as_str()).or_default().add(p.units, &p.claim);
                    wanted_deployments.insert(p.deployment.as_str());
                }
                let found: Vec<String> = deployments::table
                    .filter(deployments::name.eq_any(&wanted_deployments))
                    .select(deployments::name)
                    .load(conn)?;
                if let Some(missing) = wanted_deployments.iter().find(|d| !found.iter().any(|f| f == *d)) {
                    return Err(DomainError::not_found(Kind::Deployment, *missing).into());
                }
                check_batch_ports(&per_node)?;
                reserve(conn, &per_node)?;
                let now = to_millis(SystemTime::now());
                let mut placed = insert_pending(conn, &placements, now)?;
                placed.sort_unstable_by_key(|r| r.id);
                hold_ports(conn, &placed)?;
                let news: Vec<NewEvent> = placed.iter().map(NewEvent::replica_placed).collect();
                events::record(conn, &news)?;
                Ok(placed)
            })
            .await?)
    }

    async fn mark_running(&self, id: ReplicaId, container_id: &str) -> Result<Replica> {
        let id = replica_id(id)?;
        let container_id = container_id.to_string();
        Ok(self
            .write(move |conn| {
                let current = load_replica(conn, id)?;
                if current.state == ReplicaState::Lost {
                    return Err(DomainError::replica_lost(id).into());
                }
                diesel::update(replicas::table.find(id))
                    .set((
                        replicas::state.eq(ReplicaState::Running.as_str()),
                        replicas::container_id.eq(container_id),
                        replicas::started_at_ms.eq(to_millis(SystemTime::now())),
                    ))
                    .execute(conn)?;
                let now = load_replica(conn, id)?;
                events::record(conn, NewEvent::replica_state(&now, current.state).as_slice())?;
                Ok(now)
            })
            .await?)
    }

    async fn mark_running_many(&self, started: &[(ReplicaId, String)]) -> Result<Vec<ReplicaId>> {
        if started.is_empty() {
            return Ok(Vec::new());
        }
        let started: Vec<(i64, String)> = started
            .iter()
            .map(|(id, container)| Ok((replica_id(*id)?, container.clone())))
            .collect::<Result<_, Error>>()?;
        Ok(self
            .write(move |conn| {
                // One SELECT per chunk for the current states, then one prepared UPDATE per
                // replica (each has its own container id) and one multi-row INSERT of events.
                let mut current: HashMap<i64, ReplicaRow> = HashMap::with_capacity(started.len());
                for chunk in started.chunks(ID_CHUNK) {
                    let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
                    let rows: Vec<ReplicaRow> =
                        replicas::table.filter(replicas::id.eq_any(&ids)).select(ReplicaRow::as_select()).load(conn)?;
                    current.extend(rows.into_iter().map(|row| (row.id, row)));
                }
                let mut refused = Vec::new();
                let mut news = Vec::with_capacity(started.len());
                let now = to_millis(SystemTime::now());
                for (id, container_id) in started {
                    let Some(row) = current.remove(&id).filter(|row| row.state != ReplicaState::Lost.as_str()) else {
                        refused.push(ReplicaId(id.unsigned_abs()));
                        continue;
                    };
                    diesel::update(replicas::table.find(id))
                        .set((
                            replicas::state.eq(ReplicaState::Running.as_str()),
                            replicas::container_id.eq(&container_id),
                            replicas::started_at_ms.eq(now),
                        ))
                        .execute(conn)?;
                    let mut replica = Replica::try_from(row)?;
                    let was = replica.state;
                    replica.state = ReplicaState::Running;
                    replica.container_id = Some(container_id);
                    news.extend(NewEvent::replica_state(&replica, was));
                }
                events::record(conn, &news)?;
                Ok(refused)
            })
            .await?)
    }

    async fn set_replica_state(&self, id: ReplicaId, state: ReplicaState) -> Result<Replica> {
        let id = replica_id(id)?;
        Ok(self
            .write(move |conn| {
                let current = load_replica(conn, id)?;
                if current.state == state {
                    return Ok(current);
                }
                if current.state == ReplicaState::Lost {
                    return Err(DomainError::replica_lost(id).into());
                }
                if state == ReplicaState::Lost {
                    release_units(conn, [&current])?;
                }
                diesel::update(replicas::table.find(id)).set(replicas::state.eq(state.as_str())).execute(conn)?;
                let now = load_replica(conn, id)?;
                events::record(conn, NewEvent::replica_state(&now, current.state).as_slice())?;
                Ok(now)
            })
            .await?)
    }

    async fn deregister_replicas(&self, ids: &[ReplicaId]) -> Result<()> {
        let ids: Vec<i64> = ids.iter().map(|id| replica_id(*id)).collect::<Result<_, Error>>()?;
        if ids.is_empty() {
            return Ok(());
        }
        Ok(self
            .write(move |conn| {
                let now = to_millis(SystemTime::now());
                let mut news = Vec::new();
                for chunk in ids.chunks(ID_CHUNK) {
                    let rows: Vec<ReplicaRow> = replicas::table
                        .filter(replicas::id.eq_any(chunk))
                        .filter(replicas::deregistered_at_ms.is_null())
                        .select(ReplicaRow::as_select())
                        .load(conn)?;
                    for row in rows {
                        news.push(NewEvent::replica_deregistered(&Replica::try_from(row)?));
                    }
                    diesel::update(
                        replicas::table
                            .filter(replicas::id.eq_any(chunk))
                            .filter(replicas::deregistered_at_ms.is_null()),
                    )
                    .set(replicas::deregistered_at_ms.eq(now))
                    .execute(conn)?;
                }
                events::record(conn, &news)?;
                Ok(())
            })
            .await?)
    }

    async fn release_replica(&self, id: ReplicaId) -> Result<()> {
        let id = replica_id(id)?;
        Ok(self
            .write(move |conn| {
                let removed = delete_replica(conn, id)?;
                events::record(conn, &[NewEvent::replica_removed(&removed)])?;
                Ok(())
            })
            .await?)
    }

    async fn retire_replica(&self, exit: ReplicaExit) -> Result<()> {
        let id = replica_id(exit.replica)?;
        Ok(self
            .write(move |conn| {
                let removed = delete_replica(conn, id)?;
                crate::exits::record(conn, &removed, &exit)?;
                events::record(
                    conn,
                    &[NewEvent::replica_ended(&removed, &exit.reason), NewEvent::replica_removed(&removed)],
                )?;
                Ok(())
            })
            .await?)
    }

    async fn list_exits(&self, deployment: &DeploymentName, logs: bool) -> Result<Vec<ReplicaExit>> {
        let name = deployment.to_string();
        Ok(self
            .read(move |conn| {
                if deployments::table.find(&name).count().get_result::<i64>(conn)? == 0 {
                    return Err(DomainError::not_found(Kind::Deployment, name.as_str()).into());
                }
                crate::exits::list(conn, &name, logs)
            })
            .await?)
    }

    async fn list_replicas(&self, filter: ReplicaFilter) -> Result<Vec<Replica>> {
        Ok(self
            .read(move |conn| {
                let mut query = replicas::table.select(ReplicaRow::as_select()).order(replicas::id).into_boxed();
                if let Some(deployment) = &filter.deployment {
                    query = query.filter(replicas::deployment.eq(deployment.as_str().to_string()));
                }
                if let Some(node) = &filter.node {
                    query = query.filter(replicas::node.eq(node.as_str().to_string()));
                }
                if filter.active_only {
                    query = query.filter(replicas::state.ne(ReplicaState::Lost.as_str()));
                }
                let rows: Vec<ReplicaRow> = query.load(conn)?;
                rows.into_iter().map(Replica::try_from).collect()
            })
            .await?)
    }

    async fn running_replica_ids(&self) -> Result<Vec<ReplicaId>> {
        Ok(self
            .read(|conn| {
                let ids: Vec<i64> = replicas::table
                    .filter(replicas::state.eq(ReplicaState::Running.as_str()))
                    .select(replicas::id)
                    .load(conn)?;
                Ok(ids.into_iter().map(|id| ReplicaId(id.unsigned_abs())).collect())
            })
            .await?)
    }

    async fn set_replica_health(&self, changes: &[(ReplicaId, Option<Health>)]) -> Result<()> {
        // One UPDATE per verdict and chunk of ids: a pass that saw many change writes few.
        let mut by_health: BTreeMap<Option<Health>, Vec<i64>> = BTreeMap::new();
        for (id, health) in changes {
            by_health.entry(*health).or_default().push(replica_id(*id)?);
        }
        if by_health.is_empty() {
            return Ok(());
        }
        Ok(self
            .write(move |conn| {
                let mut news = Vec::new();
                let now = to_millis(SystemTime::now());
                for (health, ids) in &by_health {
                    for chunk in ids.chunks(ID_CHUNK) {
                        let text = health.map(Health::as_str);
                        // A verdict to healthy or unhealthy is news (starting is not).
                        if let Some(h) = health.filter(|h| *h != Health::Starting) {
                            let rows: Vec<ReplicaRow> = replicas::table
                                .filter(replicas::id.eq_any(chunk))
                                .filter(replicas::health.is_null().or(replicas::health.ne(text.unwrap_or_default())))
                                .select(ReplicaRow::as_select())
                                .load(conn)?;
                            for row in rows {
                                news.push(NewEvent::replica_health(&Replica::try_from(row)?, h));
                            }
                        }
                        diesel::update(replicas::table.filter(replicas::id.eq_any(chunk)))
                            .set((replicas::health.eq(text), replicas::health_at_ms.eq(now)))
                            .execute(conn)?;
                    }
                }
                events::record(conn, &news)?;
                Ok(())
            })
            .await?)
    }

    async fn count_replicas(&self) -> Result<Vec<ReplicaCount>> {
        Ok(self
            .read(|conn| {
                let rows: Vec<(String, String, Option<String>, i64)> = replicas::table
                    .group_by((replicas::deployment, replicas::state, replicas::health))
                    .select((replicas::deployment, replicas::state, replicas::health, diesel::dsl::count_star()))
                    .load(conn)?;
                rows.into_iter()
                    .map(|(deployment, state, health, count)| {
                        Ok(ReplicaCount {
                            deployment: DeploymentName::new(deployment)
                                .map_err(|e| Error::Corrupt(format!("replica deployment: {e}")))?,
                            state: state.parse().map_err(|e| Error::Corrupt(format!("replica state: {e}")))?,
                            health: parse_health(health.as_deref())?,
                            count: count.unsigned_abs(),
                        })
                    })
                    .collect()
            })
            .await?)
    }

    async fn mark_node_lost(&self, node: &NodeName) -> Result<Vec<Replica>> {
        let node = node.to_string();
        Ok(self
            .write_ahead(RevisionChange::Bump, move |conn| {
                load_node(conn, &node)?;
                let rows: Vec<ReplicaRow> = replicas::table
                    .filter(replicas::node.eq(&node))
                    .filter(replicas::state.ne(ReplicaState::Lost.as_str()))
                    .select(ReplicaRow::as_select())
                    .load(conn)?;
                let lost: Vec<Replica> = rows.into_iter().map(Replica::try_from).collect::<Result<_, _>>()?;
                release_units(conn, &lost)?;
                diesel::update(
                    replicas::table
                        .filter(replicas::node.eq(&node))
                        .filter(replicas::state.ne(ReplicaState::Lost.as_str())),
                )
                .set(replicas::state.eq(ReplicaState::Lost.as_str()))
                .execute(conn)?;
                let lost: Vec<Replica> = lost
                    .into_iter()
                    .map(|mut r| {
                        r.state = ReplicaState::Lost;
                        r
                    })
                    .collect();
                let news: Vec<NewEvent> = lost.iter().map(NewEvent::replica_lost).collect();
                events::record(conn, &news)?;
                Ok(lost)
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use orchestrator_core::NodeStatus;
    use orchestrator_core::workload::NANO_CPUS_PER_CPU;

    #[test]
    fn the_reservation_says_online_and_counts_cpus_as_the_rest_of_the_code_does() {
        let sql = reserve_update!("v");
        assert!(sql.contains(&format!("nodes.status = '{}'", NodeStatus::Online.as_str())), "{sql}");
        assert!(sql.contains(&format!("nodes.engine_cpus * {NANO_CPUS_PER_CPU} ")), "{sql}");
    }
}
