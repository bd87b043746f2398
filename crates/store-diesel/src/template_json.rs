//! A container template as one JSON value (the `template` column of deployments and their
//! revisions): adding a template field is a field here, with a default so rows written before
//! it read back unchanged. Read back, it is validated like any other row.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_core::{
    Constraint, ContainerTemplate, HealthCheck, HealthCommand, ImageRef, PortSpec, Protocol, PullPolicy, Resources,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Serialize, Deserialize)]
struct TemplateJson {
    image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    entrypoint: Vec<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nano_cpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    healthcheck: Option<HealthJson>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    /// As their text (`node.labels.zone == a`), parsed again on reading.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_per_node: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_grace_ms: Option<u64>,
    /// Absent: `if_not_present` (templates kept before pull policies had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pull: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct PortJson {
    target: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    published: Option<u16>,
    protocol: String,
}

/// Absent: the image's own check.
#[derive(Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum HealthJson {
    Disabled,
    Command {
        test: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interval_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retries: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_period_ms: Option<u64>,
    },
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub fn encode(t: &ContainerTemplate) -> String {
    let healthcheck = match &t.healthcheck {
        HealthCheck::Image => None,
        HealthCheck::Disabled => Some(HealthJson::Disabled),
        HealthCheck::Command(c) => Some(HealthJson::Command {
            test: c.test.clone(),
            interval_ms: c.interval.map(ms),
            timeout_ms: c.timeout.map(ms),
            retries: c.retries,
            start_period_ms: c.start_period.map(ms),
        }),
    };
    let json = TemplateJson {
        image: t.image.to_string(),
        entrypoint: t.entrypoint.clone(),
        command: t.command.clone(),
        env: t.env.clone(),
        ports: t
            .ports
            .iter()
            .map(|p| PortJson { target: p.target, published: p.published, protocol: p.protocol.to_string() })
            .collect(),
        memory_bytes: t.resources.memory_bytes,
        nano_cpus: t.resources.nano_cpus,
        healthcheck,
        labels: t.labels.clone(),
        constraints: t.constraints.iter().map(ToString::to_string).collect(),
        max_per_node: t.max_per_node,
        stop_grace_ms: t.stop_grace_period.map(ms),
        pull: (t.pull != PullPolicy::IfNotPresent).then(|| t.pull.as_str().to_string()),
    };
    serde_json::to_string(&json).expect("a template always serializes")
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("deployment template {what}: {e}"))
}

pub fn decode(text: &str) -> Result<ContainerTemplate> {
    let json: TemplateJson = serde_json::from_str(text).map_err(|e| corrupt("", e))?;
    let image = ImageRef::parse(&json.image).map_err(|e| corrupt("image", e))?;
    let ports = json
        .ports
        .into_iter()
        .map(|p| {
            let protocol = Protocol::parse(&p.protocol, "protocol").map_err(|e| corrupt("port", e))?;
            Ok(PortSpec { target: p.target, published: p.published, protocol })
        })
        .collect::<Result<_>>()?;
    let constraints = json
        .constraints
        .iter()
        .map(|c| Constraint::parse(c, "constraint").map_err(|e| corrupt("constraint", e)))
        .collect::<Result<_>>()?;
    let healthcheck = match json.healthcheck {
        None => HealthCheck::Image,
        Some(HealthJson::Disabled) => HealthCheck::Disabled,
        Some(HealthJson::Command { test, interval_ms, timeout_ms, retries, start_period_ms }) => {
            HealthCheck::Command(HealthCommand {
                test,
                interval: interval_ms.map(Duration::from_millis),
                timeout: timeout_ms.map(Duration::from_millis),
                retries,
                start_period: start_period_ms.map(Duration::from_millis),
            })
        }
    };
    Ok(ContainerTemplate {
        image,
        entrypoint: json.entrypoint,
        command: json.command,
        env: json.env,
        ports,
        resources: Resources { memory_bytes: json.memory_bytes, nano_cpus: json.nano_cpus },
        healthcheck,
        labels: json.labels,
        constraints,
        max_per_node: json.max_per_node,
        stop_grace_period: json.stop_grace_ms.map(Duration::from_millis),
        pull: json
            .pull
            .as_deref()
            .map(PullPolicy::parse)
            .transpose()
            .map_err(|e| corrupt("pull", e))?
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_written_before_the_workload_fields_reads_back_with_their_defaults() {
        let old = decode(r#"{"image":"local/busybox:1","command":["sleep","1"]}"#).unwrap();
        assert_eq!(
            old,
            ContainerTemplate::new(ImageRef::parse("local/busybox:1").unwrap())
                .with_command(vec!["sleep".into(), "1".into()])
        );
        // And a plain template is written as it was.
        assert_eq!(encode(&old), r#"{"image":"local/busybox:1","command":["sleep","1"]}"#);
    }

    #[test]
    fn every_field_round_trips() {
        let mut t = ContainerTemplate::new(ImageRef::parse("local/web:2").unwrap());
        t.env.insert("GREETING".into(), "hello".into());
        t.ports =
            vec![PortSpec::tcp(8080, Some(18081)), PortSpec { target: 53, published: None, protocol: Protocol::Udp }];
        t.resources = Resources { memory_bytes: Some(64 << 20), nano_cpus: Some(250_000_000) };
        t.healthcheck = HealthCheck::Command(HealthCommand {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: Some(Duration::from_secs(1)),
            timeout: Some(Duration::from_millis(500)),
            retries: Some(3),
            start_period: None,
        });
        t.labels.insert("team".into(), "web".into());
        t.constraints = vec![Constraint::parse("node.labels.zone == a", "c").unwrap()];
        t.max_per_node = Some(1);
        t.stop_grace_period = Some(Duration::from_secs(10));
        t.entrypoint = vec!["/bin/sh".into(), "-c".into()];
        assert_eq!(decode(&encode(&t)).unwrap(), t);
        t.pull = PullPolicy::Always;
        assert_eq!(decode(&encode(&t)).unwrap(), t);
        t.healthcheck = HealthCheck::Disabled;
        assert_eq!(decode(&encode(&t)).unwrap(), t);
    }

    #[test]
    fn a_bad_constraint_in_a_row_is_corruption_not_a_panic() {
        assert!(decode(r#"{"image":"a","constraints":["nonsense"]}"#).is_err());
    }
}
