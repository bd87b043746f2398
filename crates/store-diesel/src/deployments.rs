//! `DeploymentStore` on diesel (SQLite or PostgreSQL).

use std::time::SystemTime;

use async_trait::async_trait;
use diesel::prelude::*;
use orchestrator_core::error::Kind;
use orchestrator_core::{
    Change, CrashLoop, Deployment, DeploymentName, DeploymentSpec, DeploymentStore, Error as DomainError, NewEvent,
    Replica, Result, Revision, Rollout, RolloutId, RolloutProgress, RolloutState, Unplaced,
    deployment::inherited_digest,
};

use crate::connection::AnyConnection;
use crate::error::Error;
use crate::events;
use crate::replicas::release_units;
use crate::rollouts;
use crate::rows::{DeploymentRow, ReplicaRow, RevisionRow, to_i64, to_millis};
use crate::schema::{deployment_revisions, deployments, replicas};
use crate::store::{DieselStore, RevisionChange};

/// The deployment, or `None` if it is gone: for writes about a deployment that may have been
/// deleted meanwhile, which then have nothing left to do.
fn deployment_if_present(conn: &mut AnyConnection, name: &str) -> Result<Option<Deployment>, Error> {
    match load_deployment(conn, name) {
        Ok(d) => Ok(Some(d)),
        Err(Error::Domain(DomainError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deployments with their current revision's pinned digest, which is kept on the revision.
macro_rules! with_current_revision {
    () => {
        deployments::table.left_join(
            deployment_revisions::table.on(deployment_revisions::deployment
                .eq(deployments::name)
                .and(deployment_revisions::revision.eq(deployments::revision))),
        )
    };
}

type RowWithDigest = (DeploymentRow, Option<String>);

fn load_deployment(conn: &mut AnyConnection, name: &str) -> Result<Deployment, Error> {
    let row: Option<RowWithDigest> = with_current_revision!()
        .filter(deployments::name.eq(name))
        .select((DeploymentRow::as_select(), deployment_revisions::image_digest.nullable()))
        .first(conn)
        .optional()?;
    let (row, digest) = row.ok_or_else(|| Error::from(DomainError::not_found(Kind::Deployment, name)))?;
    row.into_deployment(digest)
}

#[async_trait]
impl DeploymentStore for DieselStore {
    async fn create_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        change: Change,
    ) -> Result<Deployment> {
        let now = to_millis(SystemTime::now());
        let row = DeploymentRow::new(name, &spec, 1, 1, (now, now));
        Ok(self
            .write_ahead(RevisionChange::Bump, move |conn| {
                let exists = deployments::table.find(&row.name).count().get_result::<i64>(conn)? > 0;
                if exists {
                    return Err(DomainError::already_exists(Kind::Deployment, row.name).into());
                }
                diesel::insert_into(deployments::table).values(&row).execute(conn)?;
                let created = load_deployment(conn, &row.name)?;
                diesel::insert_into(deployment_revisions::table)
                    .values(RevisionRow::of(&created, change))
                    .execute(conn)?;
                events::record(conn, &[NewEvent::deployment_created(&created)])?;
                Ok(created)
            })
            .await?)
    }

    async fn get_deployment(&self, name: &DeploymentName) -> Result<Deployment> {
        let name = name.to_string();
        Ok(self.read(move |conn| load_deployment(conn, &name)).await?)
    }

    async fn list_deployments(&self) -> Result<Vec<Deployment>> {
        Ok(self
            .read(|conn| {
                let rows: Vec<RowWithDigest> = with_current_revision!()
                    .order(deployments::name)
                    .select((DeploymentRow::as_select(), deployment_revisions::image_digest.nullable()))
                    .load(conn)?;
                rows.into_iter().map(|(row, digest)| row.into_deployment(digest)).collect()
            })
            .await?)
    }

    async fn scale_deployment(
        &self,
        name: &DeploymentName,
        replicas: u32,
        expected_version: u64,
    ) -> Result<Deployment> {
        let name = name.to_string();
        let now = to_millis(SystemTime::now());
        Ok(self
            .write_ahead(RevisionChange::Bump, move |conn| {
                let before = load_deployment(conn, &name)?;
                let expected = i64::try_from(expected_version).unwrap_or(i64::MAX);
                let changed = diesel::update(
                    deployments::table.filter(deployments::name.eq(&name)).filter(deployments::version.eq(expected)),
                )
                .set((
                    deployments::replicas.eq(i64::from(replicas)),
                    deployments::version.eq(deployments::version + 1),
                    deployments::updated_at_ms.eq(now),
                ))
                .execute(conn)?;
                if changed == 0 {
                    return Err(DomainError::stale_version(&name, before.version, expected_version).into());
                }
                events::record(conn, &[NewEvent::deployment_scaled(&name, before.spec.replicas, replicas)])?;
                load_deployment(conn, &name)
            })
            .await?)
    }

    async fn update_deployment(
        &self,
        name: &DeploymentName,
        spec: DeploymentSpec,
        expected_version: u64,
        change: Change,
    ) -> Result<Deployment> {
        let name = name.clone();
        let kept = self.revisions_kept();
        let now = SystemTime::now();
        Ok(self
            .write_ahead(RevisionChange::Bump, move |conn| {
                let before = load_deployment(conn, name.as_str())?;
                if before.version != expected_version {
                    return Err(DomainError::stale_version(name.as_str(), before.version, expected_version).into());
                }
                let new_template = before.spec.template != spec.template;
                let revision = before.revision + u64::from(new_template);
                let row = DeploymentRow::new(
                    &name,
                    &spec,
                    before.version + 1,
                    revision,
                    (to_millis(before.created_at), to_millis(now)),
                );
                let expected = i64::try_from(expected_version).unwrap_or(i64::MAX);
                // The version in the filter makes the check and the write one statement.
                let changed = diesel::update(
                    deployments::table
                        .filter(deployments::name.eq(name.as_str()))
                        .filter(deployments::version.eq(expected)),
                )
                .set((
                    deployments::replicas.eq(row.replicas),
                    deployments::units.eq(row.units),
                    deployments::template.eq(&row.template),
                    deployments::policy.eq(&row.policy),
                    deployments::revision.eq(row.revision),
                    deployments::version.eq(row.version),
                    deployments::updated_at_ms.eq(row.updated_at_ms),
                ))
                .execute(conn)?;
                if changed == 0 {
                    return Err(DomainError::stale_version(name.as_str(), before.version, expected_version).into());
                }
                let mut digest = None;
                if new_template {
                    let restored = match change.restores {
                        Some(number) => deployment_revisions::table
                            .find((name.as_str(), to_i64(number)))
                            .select(RevisionRow::as_select())
                            .first(conn)
                            .optional()?
                            .map(Revision::try_from)
                            .transpose()?,
                        None => None,
                    };
                    digest = inherited_digest(&before, &spec.template, restored.as_ref());
                }
                let mut after = load_deployment(conn, name.as_str())?;
                let mut news = Vec::new();
                if new_template {
                    let rollout_news = rollouts::start(conn, &before, &after, &change)?;
                    after = load_deployment(conn, name.as_str())?;
                    // Its revision row is written next: the digest it starts pinned to goes in it.
                    after.image_digest = digest;
                    diesel::insert_into(deployment_revisions::table)
                        .values(RevisionRow::of(&after, change))
                        .execute(conn)?;
                    let oldest_kept = i64::try_from(revision.saturating_sub(kept as u64 - 1).max(1)).unwrap_or(1);
                    diesel::delete(
                        deployment_revisions::table
                            .filter(deployment_revisions::deployment.eq(name.as_str()))
                            .filter(deployment_revisions::revision.lt(oldest_kept)),
                    )
                    .execute(conn)?;
                    news.push(NewEvent::deployment_updated(&after));
                    news.extend(rollout_news);
                }
                if before.spec.replicas != after.spec.replicas {
                    news.push(NewEvent::deployment_scaled(name.as_str(), before.spec.replicas, after.spec.replicas));
                }
                events::record(conn, &news)?;
                Ok(after)
            })
            .await?)
    }

    async fn set_unplaced(&self, name: &DeploymentName, unplaced: Option<Unplaced>) -> Result<()> {
        let name = name.to_string();
        Ok(self
            .write(move |conn| {
                let Some(before) = deployment_if_present(conn, &name)? else { return Ok(()) };
                if before.unplaced == unplaced {
                    return Ok(());
                }
                let (count, reason) =
                    unplaced.as_ref().map_or((0, None), |u| (i64::from(u.count), Some(u.reason.as_str())));
                diesel::update(deployments::table.find(&name))
                    .set((deployments::unplaced.eq(count), deployments::unplaced_reason.eq(reason)))
                    .execute(conn)?;
                if let Some(u) = &unplaced {
                    events::record(conn, &[NewEvent::deployment_unplaced(&name, u.count, &u.reason)])?;
                }
                Ok(())
            })
            .await?)
    }

    async fn pin_image(&self, name: &DeploymentName, revision: u64, digest: &str) -> Result<()> {
        let (name, digest) = (name.to_string(), digest.to_string());
        Ok(self
            .write(move |conn| {
                let revision = to_i64(revision);
                // Only where none is pinned yet: the first resolution wins. (A deployment's
                // digest is its current revision's.)
                diesel::update(
                    deployment_revisions::table
                        .find((name.as_str(), revision))
                        .filter(deployment_revisions::image_digest.is_null()),
                )
                .set(deployment_revisions::image_digest.eq(&digest))
                .execute(conn)?;
                Ok(())
            })
            .await?)
    }

    async fn mark_rollout_pulled(&self, id: RolloutId) -> Result<Rollout> {
        Ok(self.write(move |conn| rollouts::mark_pulled(conn, id)).await?)
    }

    async fn set_crash_loop(&self, name: &DeploymentName, crash: Option<CrashLoop>) -> Result<()> {
        let name = name.to_string();
        Ok(self
            .write(move |conn| {
                let Some(before) = deployment_if_present(conn, &name)? else { return Ok(()) };
                if before.crash_loop == crash {
                    return Ok(());
                }
                let c = crash.as_ref();
                diesel::update(deployments::table.find(&name))
                    .set((
                        deployments::crash_restarts.eq(c.map_or(0, |c| i64::from(c.restarts))),
                        deployments::crash_exit_code.eq(c.and_then(|c| c.last_exit_code)),
                        deployments::crash_last_ms.eq(c.map(|c| to_millis(c.last_failure_at))),
                        deployments::crash_retry_at_ms.eq(c.map(|c| to_millis(c.retry_at))),
                    ))
                    .execute(conn)?;
                if let Some(c) = &crash {
                    events::record(conn, &[NewEvent::deployment_crash_looping(&name, c)])?;
                }
                Ok(())
            })
            .await?)
    }

    async fn list_revisions(&self, name: &DeploymentName) -> Result<Vec<Revision>> {
        let name = name.to_string();
        Ok(self
            .read(move |conn| {
                load_deployment(conn, &name)?;
                let rows: Vec<RevisionRow> = deployment_revisions::table
                    .filter(deployment_revisions::deployment.eq(&name))
                    .order(deployment_revisions::revision)
                    .select(RevisionRow::as_select())
                    .load(conn)?;
                rows.into_iter().map(Revision::try_from).collect()
            })
            .await?)
    }

    async fn list_rollouts(&self, name: &DeploymentName) -> Result<Vec<Rollout>> {
        let name = name.to_string();
        Ok(self
            .read(move |conn| {
                load_deployment(conn, &name)?;
                rollouts::list(conn, &name)
            })
            .await?)
    }

    async fn get_rollout(&self, name: &DeploymentName, id: RolloutId) -> Result<Rollout> {
        let name = name.to_string();
        Ok(self
            .read(move |conn| {
                load_deployment(conn, &name)?;
                let rollout = rollouts::load(conn, id)?;
                if rollout.deployment.as_str() != name {
                    return Err(DomainError::not_found(Kind::Rollout, id.to_string()).into());
                }
                Ok(rollout)
            })
            .await?)
    }

    async fn record_rollout_progress(
        &self,
        id: RolloutId,
        progress: RolloutProgress,
        waiting_on: Option<String>,
    ) -> Result<Rollout> {
        Ok(self.write(move |conn| rollouts::record_progress(conn, id, progress, waiting_on)).await?)
    }

    async fn count_rollout_failure(&self, name: &DeploymentName, revision: u64, why: &str) -> Result<()> {
        let (name, why) = (name.to_string(), why.to_string());
        Ok(self
            .write(move |conn| {
                let Some(deployment) = deployment_if_present(conn, &name)? else { return Ok(()) };
                rollouts::count_failure(conn, &deployment, revision, &why)
            })
            .await?)
    }

    async fn set_rollout_state(
        &self,
        id: RolloutId,
        from: &[RolloutState],
        to: RolloutState,
        reason: Option<String>,
    ) -> Result<Rollout> {
        let from = from.to_vec();
        Ok(self.write(move |conn| rollouts::set_state(conn, id, &from, to, reason)).await?)
    }

    async fn delete_deployment(&self, name: &DeploymentName) -> Result<Vec<Replica>> {
        let name = name.to_string();
        Ok(self
            .write_ahead(RevisionChange::Bump, move |conn| {
                load_deployment(conn, &name)?;
                let rows: Vec<ReplicaRow> = replicas::table
                    .filter(replicas::deployment.eq(&name))
                    .select(ReplicaRow::as_select())
                    .load(conn)?;
                let removed: Vec<Replica> = rows.into_iter().map(Replica::try_from).collect::<Result<_, _>>()?;
                release_units(conn, removed.iter().filter(|r| r.state.is_active()))?;
                diesel::delete(replicas::table.filter(replicas::deployment.eq(&name))).execute(conn)?;
                diesel::delete(deployment_revisions::table.filter(deployment_revisions::deployment.eq(&name)))
                    .execute(conn)?;
                diesel::delete(crate::schema::rollouts::table.filter(crate::schema::rollouts::deployment.eq(&name)))
                    .execute(conn)?;
                crate::exits::forget(conn, &name)?;
                diesel::delete(deployments::table.find(&name)).execute(conn)?;
                events::record(conn, &[NewEvent::deployment_deleted(&name)])?;
                Ok(removed)
            })
            .await?)
    }
}
