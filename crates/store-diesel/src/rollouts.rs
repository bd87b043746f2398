//! Rollouts on diesel: started with the revision they roll out to (in `update_deployment`'s
//! transaction), advanced by the scheduler's steps, ended in one conditional write each.

use std::time::SystemTime;

use diesel::prelude::*;
use orchestrator_core::error::Kind;
use orchestrator_core::{
    Change, Deployment, Error as DomainError, NewEvent, Rollout, RolloutId, RolloutProgress, RolloutState,
};

use crate::connection::{AnyConnection, each_backend};
use crate::error::Error;
use crate::events;
use crate::rows::{NewRolloutRow, RolloutRow, to_i64, to_millis};
use crate::schema::{deployments, rollouts};

fn rollout_id(id: RolloutId) -> i64 {
    to_i64(id)
}

pub fn load(conn: &mut AnyConnection, id: RolloutId) -> Result<Rollout, Error> {
    let row: Option<RolloutRow> =
        rollouts::table.find(rollout_id(id)).select(RolloutRow::as_select()).first(conn).optional()?;
    row.ok_or_else(|| DomainError::not_found(Kind::Rollout, id.to_string()).into()).and_then(Rollout::try_from)
}

pub fn list(conn: &mut AnyConnection, deployment: &str) -> Result<Vec<Rollout>, Error> {
    let rows: Vec<RolloutRow> = rollouts::table
        .filter(rollouts::deployment.eq(deployment))
        .order(rollouts::id.desc())
        .select(RolloutRow::as_select())
        .load(conn)?;
    rows.into_iter().map(Rollout::try_from).collect()
}

/// Ends the rollout `before` had under way and starts one to `after`'s revision; returns the
/// events to record with the change.
pub fn start(
    conn: &mut AnyConnection,
    before: &Deployment,
    after: &Deployment,
    change: &Change,
) -> Result<Vec<NewEvent>, Error> {
    let now = SystemTime::now();
    let mut news = Vec::new();
    if let Some(id) = before.rollout {
        let (state, reason) = orchestrator_core::rollout::ended_by(change, after.revision);
        if let Some(ended) =
            finish(conn, id, &[RolloutState::InProgress, RolloutState::Paused], state, Some(reason), now)?
        {
            news.push(NewEvent::rollout_state(&ended));
        }
    }
    let policy = if change.restores.is_some() { after.spec.policy.rollback } else { after.spec.policy.update };
    let row = NewRolloutRow {
        deployment: after.name.to_string(),
        from_revision: to_i64(before.revision),
        to_revision: to_i64(after.revision),
        restores: change.restores.map(to_i64),
        state: RolloutState::InProgress.as_str(),
        started_at_ms: to_millis(now),
        policy: crate::policy_json::encode_update(&policy),
    };
    let inserted: RolloutRow = each_backend!(conn, |c| diesel::insert_into(rollouts::table)
        .values(&row)
        .returning(RolloutRow::as_returning())
        .get_result(c)?);
    diesel::update(deployments::table.find(after.name.as_str()))
        .set(deployments::rollout_id.eq(Some(inserted.id)))
        .execute(conn)?;
    news.push(NewEvent::rollout_started(&Rollout::try_from(inserted)?));
    Ok(news)
}

/// Moves the rollout to `to` if it is in one of `from`; `None` if it is not (nothing written).
/// A finished state clears the deployment's rollout under way.
pub fn finish(
    conn: &mut AnyConnection,
    id: RolloutId,
    from: &[RolloutState],
    to: RolloutState,
    reason: Option<String>,
    now: SystemTime,
) -> Result<Option<Rollout>, Error> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let finished = (!to.is_active()).then(|| to_millis(now));
    let changed = diesel::update(rollouts::table.find(rollout_id(id)).filter(rollouts::state.eq_any(&from)))
        .set((rollouts::state.eq(to.as_str()), rollouts::reason.eq(&reason), rollouts::finished_at_ms.eq(finished)))
        .execute(conn)?;
    if changed == 0 {
        return Ok(None);
    }
    let rollout = load(conn, id)?;
    if !to.is_active() {
        diesel::update(
            deployments::table
                .filter(deployments::name.eq(rollout.deployment.as_str()))
                .filter(deployments::rollout_id.eq(rollout_id(id))),
        )
        .set(deployments::rollout_id.eq(None::<i64>))
        .execute(conn)?;
    }
    Ok(Some(rollout))
}

pub fn set_state(
    conn: &mut AnyConnection,
    id: RolloutId,
    from: &[RolloutState],
    to: RolloutState,
    reason: Option<String>,
) -> Result<Rollout, Error> {
    match finish(conn, id, from, to, reason, SystemTime::now())? {
        Some(r) => {
            events::record(conn, &[NewEvent::rollout_state(&r)])?;
            Ok(r)
        }
        None => {
            let now = load(conn, id)?;
            Err(DomainError::Conflict(format!("rollout {id} is {}", now.state)).into())
        }
    }
}

pub fn record_progress(
    conn: &mut AnyConnection,
    id: RolloutId,
    progress: RolloutProgress,
    waiting_on: Option<String>,
) -> Result<Rollout, Error> {
    let before = load(conn, id)?;
    if !before.state.is_active() {
        return Err(DomainError::Conflict(format!("rollout {id} is {}", before.state)).into());
    }
    let reason = if before.state == RolloutState::InProgress { waiting_on } else { before.reason.clone() };
    diesel::update(rollouts::table.find(rollout_id(id)))
        .set((
            rollouts::updated.eq(i64::from(progress.updated)),
            rollouts::healthy.eq(i64::from(progress.healthy)),
            rollouts::reason.eq(&reason),
        ))
        .execute(conn)?;
    let after = load(conn, id)?;
    if (before.updated, before.healthy) != (after.updated, after.healthy) {
        events::record(conn, &[NewEvent::rollout_progressed(&after)])?;
    }
    Ok(after)
}

pub fn mark_pulled(conn: &mut AnyConnection, id: RolloutId) -> Result<Rollout, Error> {
    let before = load(conn, id)?;
    if !before.state.is_active() {
        return Err(DomainError::Conflict(format!("rollout {id} is {}", before.state)).into());
    }
    if before.pulled_at.is_none() {
        diesel::update(rollouts::table.find(rollout_id(id)))
            .set(rollouts::pulled_at_ms.eq(to_millis(SystemTime::now())))
            .execute(conn)?;
    }
    load(conn, id)
}

pub fn count_failure(conn: &mut AnyConnection, deployment: &Deployment, revision: u64, why: &str) -> Result<(), Error> {
    let Some(id) = deployment.rollout else { return Ok(()) };
    let active: Vec<&str> = [RolloutState::InProgress, RolloutState::Paused].iter().map(|s| s.as_str()).collect();
    let changed = diesel::update(
        rollouts::table
            .find(rollout_id(id))
            .filter(rollouts::to_revision.eq(to_i64(revision)))
            .filter(rollouts::state.eq_any(&active)),
    )
    .set((rollouts::failed.eq(rollouts::failed + 1), rollouts::reason.eq(why)))
    .execute(conn)?;
    if changed > 0 {
        let counted = load(conn, id)?;
        events::record(conn, &[NewEvent::rollout_progressed(&counted)])?;
    }
    Ok(())
}
