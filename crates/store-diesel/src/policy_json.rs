//! A deployment's rollout policy as one JSON value (the `policy` column of deployments and of
//! rollouts): every key defaults, so `{}` is the default policy and a key added later reads
//! back from older rows as its default.

use std::time::Duration;

use orchestrator_core::{DeployPolicy, FailureAction, UpdateOrder, UpdatePolicy};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Serialize, Deserialize, Default)]
struct DeployJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    update: Option<UpdateJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollback: Option<UpdateJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deregister_delay_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct UpdateJson {
    parallelism: u32,
    max_surge: u32,
    max_unavailable: u32,
    order: String,
    monitor_ms: u64,
    failure_action: String,
    max_failure_permille: u16,
    progress_deadline_ms: u64,
    ready_deadline_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("rollout policy: {e}"))
}

impl UpdateJson {
    fn of(p: &UpdatePolicy) -> Self {
        Self {
            parallelism: p.parallelism,
            max_surge: p.max_surge,
            max_unavailable: p.max_unavailable,
            order: p.order.as_str().into(),
            monitor_ms: ms(p.monitor),
            failure_action: p.failure_action.as_str().into(),
            max_failure_permille: p.max_failure_permille,
            progress_deadline_ms: ms(p.progress_deadline),
            ready_deadline_ms: ms(p.ready_deadline),
        }
    }

    fn policy(self) -> Result<UpdatePolicy> {
        Ok(UpdatePolicy {
            parallelism: self.parallelism,
            max_surge: self.max_surge,
            max_unavailable: self.max_unavailable,
            order: UpdateOrder::parse(&self.order).ok_or_else(|| corrupt(format!("order {:?}", self.order)))?,
            monitor: Duration::from_millis(self.monitor_ms),
            failure_action: FailureAction::parse(&self.failure_action)
                .ok_or_else(|| corrupt(format!("failure action {:?}", self.failure_action)))?,
            max_failure_permille: self.max_failure_permille,
            progress_deadline: Duration::from_millis(self.progress_deadline_ms),
            ready_deadline: Duration::from_millis(self.ready_deadline_ms),
        })
    }
}

pub fn encode_deploy(p: &DeployPolicy) -> String {
    let default = DeployPolicy::default();
    // The default policy is stored as `{}`, so it stays the default if the defaults improve.
    let json = DeployJson {
        update: (p.update != default.update).then(|| UpdateJson::of(&p.update)),
        rollback: (p.rollback != default.rollback).then(|| UpdateJson::of(&p.rollback)),
        deregister_delay_ms: (p.deregister_delay != default.deregister_delay).then(|| ms(p.deregister_delay)),
    };
    serde_json::to_string(&json).expect("a policy always serializes")
}

pub fn decode_deploy(text: &str) -> Result<DeployPolicy> {
    let json: DeployJson = serde_json::from_str(text).map_err(corrupt)?;
    let default = DeployPolicy::default();
    Ok(DeployPolicy {
        update: json.update.map(UpdateJson::policy).transpose()?.unwrap_or(default.update),
        rollback: json.rollback.map(UpdateJson::policy).transpose()?.unwrap_or(default.rollback),
        deregister_delay: json.deregister_delay_ms.map_or(default.deregister_delay, Duration::from_millis),
    })
}

/// A rollout's own policy, written out in full: it is what that rollout ran with.
pub fn encode_update(p: &UpdatePolicy) -> String {
    serde_json::to_string(&UpdateJson::of(p)).expect("a policy always serializes")
}

pub fn decode_update(text: &str) -> Result<UpdatePolicy> {
    serde_json::from_str::<UpdateJson>(text).map_err(corrupt)?.policy()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_stored_as_nothing_and_every_field_round_trips() {
        assert_eq!(encode_deploy(&DeployPolicy::default()), "{}");
        assert_eq!(decode_deploy("{}").unwrap(), DeployPolicy::default());
        let mut p = DeployPolicy::default();
        p.update.order = UpdateOrder::StopFirst;
        p.update.max_failure_permille = 250;
        p.rollback.parallelism = 5;
        p.deregister_delay = Duration::from_millis(500);
        assert_eq!(decode_deploy(&encode_deploy(&p)).unwrap(), p);
        assert_eq!(decode_update(&encode_update(&p.update)).unwrap(), p.update);
        assert!(decode_update(r#"{"order":"sideways"}"#).is_err());
    }
}
