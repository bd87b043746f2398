//! A replica's container as the Docker Engine API takes it (`POST /containers/create`), and
//! what the engine reports back about health and bound ports.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, HealthConfig, HealthStatusEnum, HostConfig, PortBinding, PortSummary, PortSummaryTypeEnum,
};
use orchestrator_core::{BoundPort, HealthCheck, Protocol, ReplicaContainer};

use crate::labels::replica_labels;

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn port_key(target: u16, protocol: Protocol) -> String {
    format!("{target}/{protocol}")
}

/// The create body: the template's command, env, ports, limits, health check and labels, our
/// labels on top, and `default_grace` as the stop timeout when the template sets none (a stop
/// without its own timeout then honours it).
pub fn create_body(cluster_id: &str, container: &ReplicaContainer, default_grace: Duration) -> ContainerCreateBody {
    let t = &container.template;
    let mut labels: HashMap<String, String> = t.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    labels.extend(replica_labels(cluster_id, container));
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &t.ports {
        // An empty host port: the engine picks a free one.
        let host_port = port.published.map_or_else(String::new, |p| p.to_string());
        port_bindings
            .entry(port_key(port.target, port.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding { host_ip: None, host_port: Some(host_port) });
    }
    let exposed: Vec<String> = port_bindings.keys().cloned().collect();
    let healthcheck = match &t.healthcheck {
        HealthCheck::Image => None,
        HealthCheck::Disabled => Some(HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() }),
        HealthCheck::Command(c) => Some(HealthConfig {
            test: Some(c.test.clone()),
            interval: c.interval.map(nanos),
            timeout: c.timeout.map(nanos),
            retries: c.retries.map(i64::from),
            start_period: c.start_period.map(nanos),
            start_interval: None,
        }),
    };
    let grace = t.stop_grace_period.unwrap_or(default_grace);
    ContainerCreateBody {
        image: Some(container.image().to_string()),
        entrypoint: (!t.entrypoint.is_empty()).then(|| t.entrypoint.clone()),
        cmd: (!t.command.is_empty()).then(|| t.command.clone()),
        env: (!t.env.is_empty()).then(|| t.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        stop_timeout: Some(i64::try_from(grace.as_secs()).unwrap_or(i64::MAX)),
        host_config: Some(HostConfig {
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            memory: t.resources.memory_bytes.map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
            nano_cpus: t.resources.nano_cpus.map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
            log_config: Some(log_config()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every replica logs through the engine's `local` driver, rotated (5 files of 20 MB, the
/// driver's own defaults made explicit): the engine's default `json-file` keeps growing until
/// the disk is full, and, storing JSON strings, it replaces the bytes of a character it cut
/// at its 16 KiB boundary with U+FFFD; `local` keeps the bytes, so the character is whole
/// once the frames are joined.
fn log_config() -> bollard::models::HostConfigLogConfig {
    let config = [("max-size", "20m"), ("max-file", "5")].map(|(k, v)| (k.to_string(), v.to_string()));
    bollard::models::HostConfigLogConfig { typ: Some("local".into()), config: Some(config.into_iter().collect()) }
}

/// The health in a list entry's status text: `Up 5 seconds (healthy)`, `(health: starting)`.
pub fn health_from_status(status: &str) -> Option<orchestrator_core::Health> {
    use orchestrator_core::Health;
    if status.contains("(healthy)") {
        Some(Health::Healthy)
    } else if status.contains("(unhealthy)") {
        Some(Health::Unhealthy)
    } else if status.contains("(health: starting)") {
        Some(Health::Starting)
    } else {
        None
    }
}

pub fn health_from_inspect(status: Option<HealthStatusEnum>) -> Option<orchestrator_core::Health> {
    use orchestrator_core::Health;
    match status? {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::EMPTY | HealthStatusEnum::NONE => None,
    }
}

/// A list entry's ports, host-bound ones only, each once.
pub fn bound_ports(ports: &[PortSummary]) -> Vec<BoundPort> {
    let mut bound: Vec<BoundPort> = ports
        .iter()
        .filter_map(|p| {
            let protocol = match p.typ {
                Some(PortSummaryTypeEnum::UDP) => Protocol::Udp,
                Some(PortSummaryTypeEnum::TCP) | None => Protocol::Tcp,
                Some(_) => return None,
            };
            Some(BoundPort { target: p.private_port, published: p.public_port?, protocol })
        })
        .collect();
    bound.sort();
    bound.dedup();
    bound
}

/// An inspect answer's `NetworkSettings.Ports` (`"8080/tcp": [{"HostIp", "HostPort"}]`).
pub fn bound_ports_of_map(ports: &HashMap<String, Option<Vec<PortBinding>>>) -> Vec<BoundPort> {
    let mut bound: Vec<BoundPort> = ports
        .iter()
        .flat_map(|(key, bindings)| {
            let (target, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let target: Option<u16> = target.parse().ok();
            let protocol = Protocol::parse(protocol, "protocol").ok();
            bindings.iter().flatten().filter_map(move |b| {
                Some(BoundPort {
                    target: target?,
                    published: b.host_port.as_deref()?.parse().ok()?,
                    protocol: protocol?,
                })
            })
        })
        .collect();
    bound.sort();
    bound.dedup();
    bound
}

#[cfg(test)]
mod tests {
    use orchestrator_core::{
        ContainerTemplate, DeploymentName, Health, HealthCommand, ImageRef, PortSpec, ReplicaId, Resources,
    };

    use super::*;

    fn container(template: ContainerTemplate) -> ReplicaContainer {
        ReplicaContainer {
            deployment: DeploymentName::new("web").unwrap(),
            replica: ReplicaId(7),
            revision: 2,
            template,
            image_digest: None,
        }
    }

    #[test]
    fn every_template_field_reaches_the_create_body() {
        let mut t = ContainerTemplate::new(ImageRef::parse("local/web:1").unwrap());
        t.env.insert("GREETING".into(), "hello".into());
        t.ports =
            vec![PortSpec::tcp(8080, Some(18081)), PortSpec { target: 53, published: None, protocol: Protocol::Udp }];
        t.resources = Resources { memory_bytes: Some(64 << 20), nano_cpus: Some(250_000_000) };
        t.healthcheck = HealthCheck::Command(HealthCommand {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: Some(Duration::from_secs(1)),
            timeout: None,
            retries: Some(3),
            start_period: Some(Duration::from_secs(2)),
        });
        t.labels.insert("team".into(), "web".into());
        t.stop_grace_period = Some(Duration::from_secs(10));
        let body = create_body("c1", &container(t), Duration::from_secs(2));
        assert_eq!(body.env, Some(vec!["GREETING=hello".to_string()]));
        let host = body.host_config.unwrap();
        let bindings = host.port_bindings.unwrap();
        assert_eq!(bindings["8080/tcp"].as_ref().unwrap()[0].host_port.as_deref(), Some("18081"));
        assert_eq!(bindings["53/udp"].as_ref().unwrap()[0].host_port.as_deref(), Some(""));
        let mut exposed = body.exposed_ports.unwrap();
        exposed.sort();
        assert_eq!(exposed, ["53/udp", "8080/tcp"]);
        assert_eq!((host.memory, host.nano_cpus), (Some(64 << 20), Some(250_000_000)));
        let health = body.healthcheck.unwrap();
        assert_eq!(health.interval, Some(1_000_000_000));
        assert_eq!(health.timeout, None);
        assert_eq!(health.start_period, Some(2_000_000_000));
        assert_eq!(body.stop_timeout, Some(10));
        let labels = body.labels.unwrap();
        assert_eq!(labels["team"], "web");
        assert_eq!(labels[crate::LABEL_REPLICA], "7");
        assert_eq!(body.image.as_deref(), Some("local/web:1"));
        assert_eq!(body.entrypoint, None, "the image's own");
    }

    #[test]
    fn a_pinned_revision_runs_its_digest_not_its_tag() {
        let mut t = ContainerTemplate::new(ImageRef::parse("10.123.0.1:5000/app:2").unwrap());
        t.entrypoint = vec!["/bin/sh".into(), "-c".into()];
        let digest = format!("sha256:{}", "0f".repeat(32));
        let pinned = ReplicaContainer { image_digest: Some(digest.clone()), ..container(t) };
        let body = create_body("c1", &pinned, Duration::from_secs(2));
        assert_eq!(body.image, Some(format!("10.123.0.1:5000/app@{digest}")));
        assert_eq!(body.entrypoint, Some(vec!["/bin/sh".to_string(), "-c".to_string()]));
    }

    #[test]
    fn a_plain_template_asks_for_nothing_extra() {
        let body = create_body(
            "c1",
            &container(ContainerTemplate::new(ImageRef::parse("a").unwrap())),
            Duration::from_secs(2),
        );
        assert_eq!((body.env, body.exposed_ports, body.healthcheck), (None, None, None));
        assert_eq!(body.stop_timeout, Some(2));
        let mut disabled = ContainerTemplate::new(ImageRef::parse("a").unwrap());
        disabled.healthcheck = HealthCheck::Disabled;
        let body = create_body("c1", &container(disabled), Duration::from_secs(2));
        assert_eq!(body.healthcheck.unwrap().test, Some(vec!["NONE".to_string()]));
    }

    #[test]
    fn reads_health_from_status_text() {
        assert_eq!(health_from_status("Up 5 seconds (healthy)"), Some(Health::Healthy));
        assert_eq!(health_from_status("Up 1 minute (unhealthy)"), Some(Health::Unhealthy));
        assert_eq!(health_from_status("Up 2 seconds (health: starting)"), Some(Health::Starting));
        assert_eq!(health_from_status("Up 2 seconds"), None);
    }

    #[test]
    fn ports_bound_on_v4_and_v6_count_once() {
        let p = |public| PortSummary {
            ip: Some("0.0.0.0".into()),
            private_port: 8080,
            public_port: public,
            typ: Some(PortSummaryTypeEnum::TCP),
        };
        let bound = bound_ports(&[p(Some(32768)), p(Some(32768)), p(None)]);
        assert_eq!(bound, [BoundPort { target: 8080, published: 32768, protocol: Protocol::Tcp }]);
    }
}
