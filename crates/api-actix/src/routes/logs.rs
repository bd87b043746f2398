//! `GET /v1/deployments/{name}/logs`: every replica's output merged into one NDJSON stream
//! (or text), read from the engines themselves, so a follower serves it too.
//!
//! It never hangs on an engine: opening a replica's log and each read without `follow` are
//! bounded, and with `follow` each node is pinged every second while it is read. A node that
//! does not answer gets one marker line (`{"node", "marker": "unreachable", "error"}`) and the
//! others go on; when it answers again a `reachable` marker follows and its replicas are read
//! again from the last line seen. Every reader waits for the client (a bounded channel), so a
//! slow client slows the reads and memory stays bounded.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use futures::StreamExt;
use orchestrator_core::{
    ClusterStore, ContainerRuntime, DeploymentName, Error, LogLine, LogRequest, Node, NodeName, Replica, ReplicaExit,
    ReplicaFilter, ReplicaId,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use utoipa::{IntoParams, ToSchema};

use super::{path_name, query_number};
use crate::ApiState;
use crate::error::{ApiError, ErrorBody};

/// Opening a replica's log, and (without `follow`) waiting for its next frame, take no longer.
const ENGINE_DEADLINE: Duration = Duration::from_secs(5);
/// How often a followed node is pinged, and new replicas looked for.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Lines waiting for the client, over all replicas.
const IN_FLIGHT: usize = 256;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Keep streaming new lines (and replicas that start meanwhile) until the client leaves.
    #[param(value_type = Option<bool>)]
    follow: Option<String>,
    /// Only each replica's last this many lines.
    #[param(value_type = Option<u32>, minimum = 0)]
    tail: Option<String>,
    /// Only lines from this long ago on (`10m`, `1h30m`) or from this Unix time in seconds.
    #[param(example = "10m")]
    since: Option<String>,
    /// Only this replica.
    #[param(value_type = Option<u64>, minimum = 0)]
    replica: Option<String>,
    /// `text` only: each line starts with its time.
    #[param(value_type = Option<bool>)]
    timestamps: Option<String>,
    /// `json` (default: NDJSON, one object a line) or `text` (`replica@node | line`).
    #[param(example = "text")]
    format: Option<String>,
    /// The kept last output (64 KiB) of ended replicas instead: the one `replica` names, or
    /// the newest ones, one for each replica the deployment runs. Not with `follow`.
    #[param(value_type = Option<bool>)]
    previous: Option<String>,
}

/// One line of one replica (`application/x-ndjson`, one object a line).
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLineView<'a> {
    pub replica: u64,
    pub node: &'a str,
    pub revision: u64,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// RFC 3339, nanoseconds, UTC: when the engine received the line.
    #[schema(example = "2026-12-02T19:00:01.123456789Z")]
    pub time: String,
    pub line: &'a str,
}

/// A node's engine stopped answering (`marker: "unreachable"`, with the error) or answers
/// again (`marker: "reachable"`).
#[derive(Debug, Serialize, ToSchema)]
pub struct LogMarkerView<'a> {
    pub node: &'a str,
    pub marker: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text { timestamps: bool },
}

fn flag(field: &'static str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw.map(str::trim) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(other) => Err(ApiError::BadRequest {
            code: "invalid_value",
            message: format!("invalid {field}: {other:?} is not true or false"),
            field: Some(field.into()),
        }),
    }
}

/// `10m` ago, or a Unix time in seconds.
fn since(raw: Option<&str>, now: SystemTime) -> Result<Option<SystemTime>, ApiError> {
    let Some(raw) = raw.map(str::trim) else { return Ok(None) };
    if let Ok(seconds) = raw.parse::<u64>() {
        return Ok(Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)));
    }
    let ago = humantime::parse_duration(raw).map_err(|e| ApiError::BadRequest {
        code: "invalid_value",
        message: format!("invalid since: {raw:?} is neither a duration (10m) nor Unix seconds: {e}"),
        field: Some("since".into()),
    })?;
    Ok(Some(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH)))
}

/// One NDJSON line.
fn ndjson(view: &impl Serialize) -> Bytes {
    let mut bytes = serde_json::to_vec(view).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// What every reader of one request shares.
struct Readers {
    name: DeploymentName,
    engines: Arc<dyn ContainerRuntime>,
    out: mpsc::Sender<Bytes>,
    format: Format,
    /// Nodes already given an `unreachable` marker by a reader (without `follow`).
    marked: Mutex<HashSet<NodeName>>,
}

/// Whose line it is: a replica, current or ended.
#[derive(Clone, Copy)]
struct Who<'a> {
    replica: ReplicaId,
    node: &'a NodeName,
    revision: u64,
}

impl<'a> Who<'a> {
    fn of(r: &'a Replica) -> Self {
        Who { replica: r.id, node: &r.node, revision: r.revision }
    }

    fn ended(e: &'a ReplicaExit) -> Self {
        Who { replica: e.replica, node: &e.node, revision: e.revision }
    }
}

impl Format {
    fn line(self, who: Who<'_>, line: &LogLine) -> Bytes {
        let time = humantime::format_rfc3339_nanos(line.time).to_string();
        match self {
            Format::Json => {
                let view = LogLineView {
                    replica: who.replica.0,
                    node: who.node.as_str(),
                    revision: who.revision,
                    stream: line.stream.as_str(),
                    time,
                    line: &line.line,
                };
                ndjson(&view)
            }
            Format::Text { timestamps } => {
                let stamp = if timestamps { format!("{time} ") } else { String::new() };
                Bytes::from(format!("{stamp}{}@{} | {}\n", who.replica, who.node, line.line))
            }
        }
    }
}

impl Readers {
    fn marker(&self, node: &NodeName, error: Option<&Error>) -> Bytes {
        let marker = if error.is_some() { "unreachable" } else { "reachable" };
        match self.format {
            Format::Json => {
                ndjson(&LogMarkerView { node: node.as_str(), marker, error: error.map(ToString::to_string) })
            }
            Format::Text { .. } => {
                let why = error.map(|e| format!(": {e}")).unwrap_or_default();
                Bytes::from(format!("{node} | -- {marker}{why} --\n"))
            }
        }
    }

    /// One `unreachable` marker per node (readers without `follow`).
    async fn mark_once(&self, node: &NodeName, error: &Error) {
        let first = self.marked.lock().map(|mut m| m.insert(node.clone())).unwrap_or(false);
        if first {
            let _ = self.out.send(self.marker(node, Some(error))).await;
        }
    }
}

#[utoipa::path(get, path = "/v1/deployments/{name}/logs", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name"), LogsQuery),
    responses((status = 200, description = "`application/x-ndjson`: a `LogLineView` per line, merged from every replica (in order per replica), and a `LogMarkerView` when a node stops or starts answering; `format=text`: `replica@node | line`", content_type = "application/x-ndjson", body = LogLineView),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 404, description = "No such deployment, or no such replica of it (with `previous`: no kept end of it)", body = ErrorBody),
        (status = 422, description = "A parameter out of range (the field is named)", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody)))]
pub async fn logs(
    path: web::Path<String>,
    query: web::Query<LogsQuery>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let name = path_name::<DeploymentName>(&path, "deployment")?;
    let follow = flag("follow", query.follow.as_deref())?;
    let timestamps = flag("timestamps", query.timestamps.as_deref())?;
    let format = match query.format.as_deref().map(str::trim) {
        None | Some("json") => Format::Json,
        Some("text") => Format::Text { timestamps },
        Some(other) => {
            return Err(ApiError::BadRequest {
                code: "invalid_value",
                message: format!("invalid format: {other:?} (json or text)"),
                field: Some("format".into()),
            });
        }
    };
    let request = LogRequest {
        follow,
        tail: query_number::<u32>("tail", query.tail.as_deref())?,
        since: since(query.since.as_deref(), SystemTime::now())?,
    };
    let only = query_number::<u64>("replica", query.replica.as_deref())?.map(ReplicaId);
    let deployment = state.store.get_deployment(&name).await?;
    if flag("previous", query.previous.as_deref())? {
        if follow {
            return Err(ApiError::BadRequest {
                code: "invalid_value",
                message: "follow: the output of ended replicas is complete; leave out follow or previous".into(),
                field: Some("follow".into()),
            });
        }
        let exits = state.store.list_exits(&name, true).await?;
        let chosen = ended_to_read(exits, only, deployment.spec.replicas).map_err(ApiError::NotFound)?;
        return Ok(respond(format, futures::stream::iter(previous_lines(&chosen, &request, format))));
    }
    let replicas = current_replicas(state.store.as_ref(), &name, only).await?;
    if let Some(id) = only
        && replicas.is_empty()
    {
        return Err(ApiError::NotFound(format!("replica {id} of deployment {name} not found")));
    }
    let nodes: HashMap<NodeName, Node> =
        state.store.list_nodes_brief().await?.into_iter().map(|n| (n.name.clone(), n)).collect();
    let (out, lines) = mpsc::channel::<Bytes>(IN_FLIGHT);
    let readers = Arc::new(Readers {
        name: name.clone(),
        engines: Arc::clone(&state.engines),
        out,
        format,
        marked: Mutex::default(),
    });
    if follow {
        tokio::spawn(follow_all(Arc::clone(&readers), Arc::clone(&state.store), nodes, replicas, request, only));
    } else {
        for replica in replicas {
            let Some(node) = nodes.get(&replica.node).cloned() else { continue };
            tokio::spawn(read_once(Arc::clone(&readers), node, replica, request.clone()));
        }
    }
    drop(readers);
    let body = futures::stream::unfold(lines, |mut lines| async move {
        let next = lines.recv().await?;
        Some((next, lines))
    });
    Ok(respond(format, body))
}

fn respond(format: Format, body: impl futures::Stream<Item = Bytes> + 'static) -> HttpResponse {
    let content_type = if format == Format::Json { "application/x-ndjson" } else { "text/plain; charset=utf-8" };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body.map(Ok::<_, std::convert::Infallible>))
}

/// `previous`: the ended replica named, or the deployment's newest ended ones, one for each
/// replica it runs (as many as a crash loop of all of them leaves between two looks).
fn ended_to_read(exits: Vec<ReplicaExit>, only: Option<ReplicaId>, replicas: u32) -> Result<Vec<ReplicaExit>, String> {
    match only {
        Some(id) => {
            let named: Vec<ReplicaExit> = exits.into_iter().filter(|e| e.replica == id).collect();
            if named.is_empty() {
                return Err(format!(
                    "replica {id} has no recorded end (deploy ps lists the ended replicas whose output is kept)"
                ));
            }
            Ok(named)
        }
        None => Ok(exits.into_iter().take(usize::try_from(replicas.max(1)).unwrap_or(usize::MAX)).collect()),
    }
}

/// The kept lines of ended replicas, `since` and `tail` applied to each, merged by time.
fn previous_lines(exits: &[ReplicaExit], request: &LogRequest, format: Format) -> Vec<Bytes> {
    let mut merged: Vec<(Who<'_>, &LogLine)> = Vec::new();
    for exit in exits {
        let kept: Vec<&LogLine> =
            exit.logs.iter().filter(|l| request.since.is_none_or(|since| l.time >= since)).collect();
        let tail = request.tail.map_or(kept.len(), |n| usize::try_from(n).unwrap_or(usize::MAX));
        let skip = kept.len().saturating_sub(tail);
        merged.extend(kept.into_iter().skip(skip).map(|l| (Who::ended(exit), l)));
    }
    // Stable: each replica's lines stay in their order when times tie.
    merged.sort_by_key(|(_, l)| l.time);
    merged.into_iter().map(|(who, line)| format.line(who, line)).collect()
}

async fn current_replicas(
    store: &dyn ClusterStore,
    name: &DeploymentName,
    only: Option<ReplicaId>,
) -> Result<Vec<Replica>, ApiError> {
    let replicas = store.list_replicas(ReplicaFilter::deployment(name).active()).await?;
    Ok(replicas.into_iter().filter(|r| only.is_none_or(|id| r.id == id)).collect())
}

/// One replica's lines up to now, each wait bounded.
async fn read_once(readers: Arc<Readers>, node: Node, replica: Replica, request: LogRequest) {
    let opened =
        tokio::time::timeout(ENGINE_DEADLINE, readers.engines.replica_logs(&node, &readers.name, replica.id, &request))
            .await;
    let mut lines = match opened {
        Ok(Ok(lines)) => lines,
        Ok(Err(Error::NotFound { .. })) => return, // stopped and removed meanwhile
        Ok(Err(e)) => return readers.mark_once(&node.name, &e).await,
        Err(_) => return readers.mark_once(&node.name, &timeout(&node)).await,
    };
    loop {
        match tokio::time::timeout(ENGINE_DEADLINE, lines.next()).await {
            Ok(Some(Ok(line))) => {
                if readers.out.send(readers.format.line(Who::of(&replica), &line)).await.is_err() {
                    return; // the client left
                }
            }
            Ok(None) => return,
            Ok(Some(Err(e))) => return readers.mark_once(&node.name, &e).await,
            Err(_) => return readers.mark_once(&node.name, &timeout(&node)).await,
        }
    }
}

fn timeout(node: &Node) -> Error {
    Error::Timeout { node: node.name.to_string(), operation: "logs", after: ENGINE_DEADLINE }
}

/// `follow`: a watcher per node, a reader per replica, and replicas that start later joined.
async fn follow_all(
    readers: Arc<Readers>,
    store: Arc<dyn ClusterStore>,
    mut nodes: HashMap<NodeName, Node>,
    first: Vec<Replica>,
    mut request: LogRequest,
    only: Option<ReplicaId>,
) {
    let mut watched: HashMap<NodeName, watch::Receiver<bool>> = HashMap::new();
    let mut reading: HashSet<ReplicaId> = HashSet::new();
    let mut fresh = first;
    loop {
        for replica in fresh.drain(..) {
            if !reading.insert(replica.id) {
                continue;
            }
            let Some(node) = nodes.get(&replica.node).cloned() else { continue };
            let up = watched
                .entry(node.name.clone())
                .or_insert_with(|| {
                    let (tell, up) = watch::channel(true);
                    tokio::spawn(watch_node(Arc::clone(&readers), node.clone(), tell));
                    up
                })
                .clone();
            tokio::spawn(follow_one(Arc::clone(&readers), node, replica, request.clone(), up));
        }
        // Replicas found after the first look: their whole output since they started.
        request.tail = None;
        tokio::select! {
            () = readers.out.closed() => return,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
        match current_replicas(store.as_ref(), &readers.name, only).await {
            // None left: the stream ends if the deployment is gone.
            Ok(now) if now.is_empty() => {
                if matches!(store.get_deployment(&readers.name).await, Err(Error::NotFound { .. })) {
                    return;
                }
            }
            Ok(now) => fresh = now,
            Err(_) => continue,
        }
        if fresh.iter().any(|r| !nodes.contains_key(&r.node))
            && let Ok(listed) = store.list_nodes_brief().await
        {
            nodes = listed.into_iter().map(|n| (n.name.clone(), n)).collect();
        }
    }
}

/// Pings a followed node every second; says when it stops or starts answering (a marker, and
/// `up` for its readers). Ends when the client leaves.
async fn watch_node(readers: Arc<Readers>, node: Node, up: watch::Sender<bool>) {
    loop {
        tokio::select! {
            () = readers.out.closed() => return,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let answer = match tokio::time::timeout(ENGINE_DEADLINE, readers.engines.ping(&node)).await {
            Ok(answer) => answer,
            Err(_) => Err(timeout(&node)),
        };
        let was_up = *up.borrow();
        match answer {
            Ok(()) if !was_up => {
                let _ = readers.out.send(readers.marker(&node.name, None)).await;
                up.send_replace(true);
            }
            Err(e) if was_up => {
                up.send_replace(false);
                let _ = readers.out.send(readers.marker(&node.name, Some(&e))).await;
            }
            _ => {}
        }
    }
}

/// Follows one replica until its container ends or the client leaves; while its node does not
/// answer it waits, then reads again from the last line it passed on.
async fn follow_one(
    readers: Arc<Readers>,
    node: Node,
    replica: Replica,
    mut request: LogRequest,
    mut up: watch::Receiver<bool>,
) {
    let mut last: Option<SystemTime> = None;
    let mut first = true;
    loop {
        if !*up.borrow() {
            tokio::select! {
                () = readers.out.closed() => return,
                changed = up.wait_for(|up| *up) => if changed.is_err() { return },
            }
        }
        if !first {
            // What came after the last line passed on (or, if none was, after the first read).
            request.since = Some(last.unwrap_or_else(SystemTime::now));
            request.tail = None;
        }
        first = false;
        let opened = tokio::select! {
            () = readers.out.closed() => return,
            opened = tokio::time::timeout(ENGINE_DEADLINE, readers.engines.replica_logs(&node, &readers.name, replica.id, &request)) => opened,
        };
        let mut lines = match opened {
            Ok(Ok(lines)) => lines,
            Ok(Err(Error::NotFound { .. })) => return,
            // The watcher says so (or will); wait for it to say the node is back.
            Ok(Err(_)) | Err(_) => {
                tokio::select! {
                    () = readers.out.closed() => return,
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                () = readers.out.closed() => return,
                changed = up.changed() => {
                    if changed.is_err() { return }
                    if !*up.borrow() { break } // dropped; read again when the node is back
                }
                next = lines.next() => match next {
                    Some(Ok(line)) => {
                        // Read again after an outage: what was passed on already is skipped.
                        if last.is_some_and(|last| line.time <= last) {
                            continue;
                        }
                        last = Some(line.time);
                        if readers.out.send(readers.format.line(Who::of(&replica), &line)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(_)) => break,
                    None => return, // the container stopped
                },
            }
        }
        tokio::select! {
            () = readers.out.closed() => return,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
}
