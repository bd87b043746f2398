//! `DeploymentStore` on diesel (SQLite or PostgreSQL).

use std::time::SystemTime;

use async_trait::async_trait;
use diesel::prelude::*;
use orchestrator_core::error::Kind;
use orchestrator_core::{
    Deployment, DeploymentName, DeploymentSpec, DeploymentStore, Error as DomainError, NewEvent, Replica, Result,
};

use crate::connection::AnyConnection;
use crate::error::Error;
use crate::events;
use crate::replicas::release_units;
use crate::rows::{DeploymentRow, ReplicaRow, command_json, to_millis};
use crate::schema::{deployments, replicas};
use crate::store::DieselStore;

fn load_deployment(conn: &mut AnyConnection, name: &str) -> Result<Deployment, Error> {
    let row: Option<DeploymentRow> =
        deployments::table.find(name).select(DeploymentRow::as_select()).first(conn).optional()?;
    row.ok_or_else(|| DomainError::not_found(Kind::Deployment, name).into()).and_then(Deployment::try_from)
}

#[async_trait]
impl DeploymentStore for DieselStore {
    async fn create_deployment(&self, spec: DeploymentSpec) -> Result<Deployment> {
        let now = to_millis(SystemTime::now());
        let row = DeploymentRow {
            name: spec.name.to_string(),
            image: spec.image.to_string(),
            command: command_json(&spec.command),
            replicas: i64::from(spec.replicas),
            units: i64::from(spec.units),
            version: 1,
            created_at_ms: now,
            updated_at_ms: now,
        };
        Ok(self
            .write(move |conn| {
                let exists = deployments::table.find(&row.name).count().get_result::<i64>(conn)? > 0;
                if exists {
                    return Err(DomainError::already_exists(Kind::Deployment, row.name).into());
                }
                diesel::insert_into(deployments::table).values(&row).execute(conn)?;
                let created = load_deployment(conn, &row.name)?;
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
                let rows: Vec<DeploymentRow> =
                    deployments::table.order(deployments::name).select(DeploymentRow::as_select()).load(conn)?;
                rows.into_iter().map(Deployment::try_from).collect()
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
            .write(move |conn| {
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
                events::record(conn, &[NewEvent::deployment_scaled(&name, before.replicas, replicas)])?;
                load_deployment(conn, &name)
            })
            .await?)
    }

    async fn delete_deployment(&self, name: &DeploymentName) -> Result<Vec<Replica>> {
        let name = name.to_string();
        Ok(self
            .write(move |conn| {
                load_deployment(conn, &name)?;
                let rows: Vec<ReplicaRow> = replicas::table
                    .filter(replicas::deployment.eq(&name))
                    .select(ReplicaRow::as_select())
                    .load(conn)?;
                let removed: Vec<Replica> = rows.into_iter().map(Replica::try_from).collect::<Result<_, _>>()?;
                release_units(conn, removed.iter().filter(|r| r.state.is_active()))?;
                diesel::delete(replicas::table.filter(replicas::deployment.eq(&name))).execute(conn)?;
                diesel::delete(deployments::table.find(&name)).execute(conn)?;
                events::record(conn, &[NewEvent::deployment_deleted(&name)])?;
                Ok(removed)
            })
            .await?)
    }
}
