//! Replicas that ended badly, on diesel: one row each, the reason as a word plus its detail
//! (exit code, health-check output, the engine's refusal), the last lines as JSON.

use std::time::{Duration, SystemTime};

use diesel::prelude::*;
use orchestrator_core::{
    DeploymentName, EndReason, LogLine, NodeName, OutputStream, Replica, ReplicaExit, ReplicaId, history,
};
use serde::{Deserialize, Serialize};

use crate::connection::{AnyConnection, each_backend};
use crate::error::Error;
use crate::rows::{from_millis, to_i64, to_millis};
use crate::schema::{deployments, replica_exits};

#[derive(Insertable, Queryable, Selectable)]
#[diesel(table_name = replica_exits, treat_none_as_default_value = false)]
struct ExitRow {
    replica: i64,
    deployment: String,
    node: String,
    revision: i64,
    started_at_ms: Option<i64>,
    ended_at_ms: i64,
    reason: String,
    exit_code: Option<i64>,
    detail: Option<String>,
    logs: String,
}

/// One kept line in the `logs` column.
#[derive(Serialize, Deserialize)]
struct LineJson {
    /// `stdout` or `stderr`.
    s: String,
    /// Nanoseconds since the Unix epoch.
    t: u64,
    l: String,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("replica exit {what}: {e}"))
}

fn encode_logs(lines: &[LogLine]) -> String {
    let lines: Vec<LineJson> = lines
        .iter()
        .map(|l| LineJson {
            s: l.stream.as_str().to_string(),
            t: l.time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0)),
            l: l.line.clone(),
        })
        .collect();
    serde_json::to_string(&lines).unwrap_or_else(|_| "[]".to_string())
}

fn decode_logs(text: &str) -> Result<Vec<LogLine>, Error> {
    let lines: Vec<LineJson> = serde_json::from_str(text).map_err(|e| corrupt("logs", e))?;
    lines
        .into_iter()
        .map(|l| {
            let stream = match l.s.as_str() {
                "stdout" => OutputStream::Stdout,
                "stderr" => OutputStream::Stderr,
                other => return Err(corrupt("stream", other)),
            };
            Ok(LogLine { stream, time: SystemTime::UNIX_EPOCH + Duration::from_nanos(l.t), line: l.l })
        })
        .collect()
}

impl ExitRow {
    fn new(exit: &ReplicaExit) -> Self {
        let (reason, exit_code, detail) = match &exit.reason {
            EndReason::Exited { code, oom_killed: false } => ("exited", *code, None),
            EndReason::Exited { code, oom_killed: true } => ("oom_killed", *code, None),
            EndReason::Unhealthy { output } => ("unhealthy", None, output.clone()),
            EndReason::Vanished => ("vanished", None, None),
            EndReason::NotStarted { error } => ("not_started", None, Some(error.clone())),
            EndReason::PullFailed { error } => ("pull_failed", None, Some(error.clone())),
        };
        ExitRow {
            replica: to_i64(exit.replica.0),
            deployment: exit.deployment.to_string(),
            node: exit.node.to_string(),
            revision: to_i64(exit.revision),
            started_at_ms: exit.started_at.map(to_millis),
            ended_at_ms: to_millis(exit.ended_at),
            reason: reason.to_string(),
            exit_code,
            detail,
            logs: encode_logs(&exit.logs),
        }
    }
}

impl TryFrom<ExitRow> for ReplicaExit {
    type Error = Error;
    fn try_from(row: ExitRow) -> Result<Self, Error> {
        let reason = match row.reason.as_str() {
            "exited" => EndReason::Exited { code: row.exit_code, oom_killed: false },
            "oom_killed" => EndReason::Exited { code: row.exit_code, oom_killed: true },
            "unhealthy" => EndReason::Unhealthy { output: row.detail },
            "vanished" => EndReason::Vanished,
            "not_started" => EndReason::NotStarted { error: row.detail.unwrap_or_default() },
            "pull_failed" => EndReason::PullFailed { error: row.detail.unwrap_or_default() },
            other => return Err(corrupt("reason", other)),
        };
        Ok(ReplicaExit {
            replica: ReplicaId(u64::try_from(row.replica).map_err(|e| corrupt("replica", e))?),
            deployment: DeploymentName::new(row.deployment).map_err(|e| corrupt("deployment", e))?,
            node: NodeName::new(row.node).map_err(|e| corrupt("node", e))?,
            revision: u64::try_from(row.revision).map_err(|e| corrupt("revision", e))?,
            started_at: row.started_at_ms.map(from_millis),
            ended_at: from_millis(row.ended_at_ms),
            reason,
            logs: decode_logs(&row.logs)?,
        })
    }
}

/// Keeps `exit` of `replica` (already deleted in this transaction), then only the deployment's
/// newest `history::kept_for(replicas)` records.
pub fn record(conn: &mut AnyConnection, replica: &Replica, exit: &ReplicaExit) -> Result<(), Error> {
    let required: Option<i64> =
        deployments::table.find(replica.deployment.as_str()).select(deployments::replicas).first(conn).optional()?;
    let Some(required) = required else { return Ok(()) };
    let row = ExitRow::new(exit);
    each_backend!(conn, |c| diesel::insert_into(replica_exits::table).values(&row).execute(c))?;
    let kept = history::kept_for(u32::try_from(required).unwrap_or(u32::MAX));
    let older: Vec<i64> = replica_exits::table
        .filter(replica_exits::deployment.eq(replica.deployment.as_str()))
        .order((replica_exits::ended_at_ms.desc(), replica_exits::replica.desc()))
        .offset(i64::try_from(kept).unwrap_or(i64::MAX))
        .select(replica_exits::replica)
        .load(conn)?;
    if !older.is_empty() {
        diesel::delete(replica_exits::table.filter(replica_exits::replica.eq_any(older))).execute(conn)?;
    }
    Ok(())
}

/// The deployment's records, newest first; without `logs`, an empty list stands for their
/// lines, which are not read.
pub fn list(conn: &mut AnyConnection, deployment: &str, logs: bool) -> Result<Vec<ReplicaExit>, Error> {
    use diesel::IntoSql;
    use diesel::sql_types::Text;
    let query = replica_exits::table
        .filter(replica_exits::deployment.eq(deployment))
        .order((replica_exits::ended_at_ms.desc(), replica_exits::replica.desc()));
    let rows: Vec<ExitRow> = if logs {
        query.select(ExitRow::as_select()).load(conn)?
    } else {
        use replica_exits as x;
        let no_lines = "[]".into_sql::<Text>();
        query
            .select((
                x::replica,
                x::deployment,
                x::node,
                x::revision,
                x::started_at_ms,
                x::ended_at_ms,
                x::reason,
                x::exit_code,
                x::detail,
                no_lines,
            ))
            .load(conn)?
    };
    rows.into_iter().map(ReplicaExit::try_from).collect()
}

/// Forgets the deployment's records (it is being deleted).
pub fn forget(conn: &mut AnyConnection, deployment: &str) -> Result<(), Error> {
    diesel::delete(replica_exits::table.filter(replica_exits::deployment.eq(deployment))).execute(conn)?;
    Ok(())
}
