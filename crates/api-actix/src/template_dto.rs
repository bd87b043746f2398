//! The container template on the wire: the workload fields of a create (env, ports, resources,
//! health check, labels, constraints, max_per_node, stop_grace_period) and their view. Sizes
//! and durations are strings as Compose writes them; a view writes them back so that a client
//! can send what it read.

use std::collections::BTreeMap;

use orchestrator_core::{
    Constraint, ContainerTemplate, Error, HealthCheck, HealthCommand, PortSpec, Protocol, PullPolicy, Resources,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::optional_integer;
use crate::grammar::{
    MAX_HEALTH_TIMING, MIN_HEALTH_TIMING, format_duration, parse_duration, parse_duration_within, parse_memory,
};

/// The template's fields besides image and command, as a request body carries them (each
/// body lists them itself, documented there: serde's `flatten` would let unknown fields in).
#[derive(Debug, Default)]
pub struct WorkloadFields {
    pub env: BTreeMap<String, String>,
    pub ports: Vec<PortRequest>,
    pub resources: Option<ResourcesRequest>,
    pub healthcheck: Option<HealthcheckRequest>,
    pub labels: BTreeMap<String, String>,
    pub constraints: Vec<String>,
    pub max_per_node: Option<i64>,
    pub stop_grace_period: Option<String>,
    pub pull: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRequest {
    /// The port inside the container.
    #[schema(minimum = 1, maximum = 65535)]
    #[serde(deserialize_with = "crate::dto::integer")]
    pub target: i64,
    /// The port on the node; the engine picks a free one when absent.
    #[schema(minimum = 1, maximum = 65535)]
    #[serde(default, deserialize_with = "optional_integer")]
    pub published: Option<i64>,
    /// `tcp` (default) or `udp`.
    #[schema(example = "tcp", pattern = "^(tcp|udp)$")]
    pub protocol: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesRequest {
    /// A memory limit: `"64M"` (binary units, as Docker reads them: 64 MiB), 6 MiB to 1 PiB.
    #[schema(schema_with = crate::grammar::memory_schema_or_null)]
    pub memory: Option<String>,
    /// A CPU limit in CPUs, above 0.
    #[schema(example = 0.25, minimum = 0.01, maximum = 1_000_000.0)]
    pub cpus: Option<f64>,
}

/// `{"disable": true}` alone, or a `test` with its timings (each 1ms to 24h).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckRequest {
    /// `["CMD", program, args..]` or `["CMD-SHELL", command]`.
    #[schema(schema_with = crate::grammar::health_test_schema_or_null)]
    pub test: Option<Vec<String>>,
    #[schema(schema_with = crate::grammar::health_timing_schema)]
    pub interval: Option<String>,
    #[schema(schema_with = crate::grammar::health_timing_schema)]
    pub timeout: Option<String>,
    #[serde(default, deserialize_with = "optional_integer")]
    #[schema(minimum = 0, maximum = 1000)]
    pub retries: Option<i64>,
    #[schema(schema_with = crate::grammar::health_timing_schema)]
    pub start_period: Option<String>,
    /// No health check, not even the image's.
    pub disable: Option<bool>,
}

fn port_number(field: String, value: i64) -> Result<u16, Error> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| Error::invalid(field, format!("must be 1..=65535, got {value}")))
}

impl WorkloadFields {
    /// Sets these fields on `template`; an error names the field's path.
    pub fn apply(self, template: &mut ContainerTemplate) -> Result<(), Error> {
        template.env = self.env;
        template.ports = self
            .ports
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let protocol = match p.protocol.as_deref() {
                    None => Protocol::Tcp,
                    Some(text) => Protocol::parse(text, format!("ports[{i}].protocol"))?,
                };
                Ok(PortSpec {
                    target: port_number(format!("ports[{i}].target"), p.target)?,
                    published: p.published.map(|v| port_number(format!("ports[{i}].published"), v)).transpose()?,
                    protocol,
                })
            })
            .collect::<Result<_, Error>>()?;
        if let Some(r) = self.resources {
            template.resources = Resources {
                memory_bytes: r.memory.as_deref().map(|m| parse_memory("resources.memory", m)).transpose()?,
                nano_cpus: r.cpus.map(nano_cpus).transpose()?,
            };
        }
        if let Some(h) = self.healthcheck {
            template.healthcheck = h.into_check()?;
        }
        template.labels = self.labels;
        template.constraints = self
            .constraints
            .iter()
            .enumerate()
            .map(|(i, c)| Constraint::parse(c, format!("constraints[{i}]")))
            .collect::<Result<_, Error>>()?;
        template.max_per_node = self
            .max_per_node
            .map(|m| {
                u32::try_from(m)
                    .ok()
                    .filter(|m| *m >= 1)
                    .ok_or_else(|| Error::invalid("max_per_node", format!("must be at least 1, got {m}")))
            })
            .transpose()?;
        template.stop_grace_period =
            self.stop_grace_period.as_deref().map(|d| parse_duration("stop_grace_period", d)).transpose()?;
        template.pull = self.pull.as_deref().map(PullPolicy::parse).transpose()?.unwrap_or_default();
        Ok(())
    }
}

fn nano_cpus(cpus: f64) -> Result<u64, Error> {
    // The engine's own range starts at 0.01 CPUs.
    if !cpus.is_finite() || !(0.01..=1_000_000.0).contains(&cpus) {
        return Err(Error::invalid("resources.cpus", format!("must be 0.01..=1000000 CPUs, got {cpus}")));
    }
    Ok((cpus * 1e9).round() as u64)
}

impl HealthcheckRequest {
    fn into_check(self) -> Result<HealthCheck, Error> {
        if self.disable == Some(true) {
            let others = self.test.is_some()
                || self.interval.is_some()
                || self.timeout.is_some()
                || self.retries.is_some()
                || self.start_period.is_some();
            if others {
                return Err(Error::invalid("healthcheck.disable", "a disabled health check takes no other field"));
            }
            return Ok(HealthCheck::Disabled);
        }
        let test = self.test.ok_or_else(|| Error::invalid("healthcheck.test", "required (or {\"disable\": true})"))?;
        let duration = |field: &str, v: Option<String>| {
            v.as_deref().map(|d| parse_duration_within(field, d, MIN_HEALTH_TIMING, MAX_HEALTH_TIMING)).transpose()
        };
        Ok(HealthCheck::Command(HealthCommand {
            test,
            interval: duration("healthcheck.interval", self.interval)?,
            timeout: duration("healthcheck.timeout", self.timeout)?,
            retries: self
                .retries
                .map(|r| {
                    u32::try_from(r)
                        .ok()
                        .filter(|r| *r <= 1000)
                        .ok_or_else(|| Error::invalid("healthcheck.retries", format!("must be 0..=1000, got {r}")))
                })
                .transpose()?,
            start_period: duration("healthcheck.start_period", self.start_period)?,
        }))
    }
}

/// A size written back as a create takes it: whole binary units where they fit.
fn format_memory(bytes: u64) -> String {
    for (unit, size) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// What a deployment's containers run, in the create's own words.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthcheckView>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_node: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<String>,
    /// `always` or `never`; absent: `if_not_present`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PortView {
    pub target: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<u16>,
    pub protocol: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourcesView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthcheckView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable: Option<bool>,
}

impl TemplateView {
    pub fn new(t: &ContainerTemplate) -> Self {
        let healthcheck = match &t.healthcheck {
            HealthCheck::Image => None,
            HealthCheck::Disabled => Some(HealthcheckView {
                test: None,
                interval: None,
                timeout: None,
                retries: None,
                start_period: None,
                disable: Some(true),
            }),
            HealthCheck::Command(c) => Some(HealthcheckView {
                test: Some(c.test.clone()),
                interval: c.interval.map(format_duration),
                timeout: c.timeout.map(format_duration),
                retries: c.retries,
                start_period: c.start_period.map(format_duration),
                disable: None,
            }),
        };
        Self {
            image: t.image.to_string(),
            entrypoint: t.entrypoint.clone(),
            command: t.command.clone(),
            env: t.env.clone(),
            ports: t
                .ports
                .iter()
                .map(|p| PortView { target: p.target, published: p.published, protocol: p.protocol.as_str() })
                .collect(),
            resources: (!t.resources.is_empty()).then(|| ResourcesView {
                memory: t.resources.memory_bytes.map(format_memory),
                cpus: t.resources.nano_cpus.map(|n| n as f64 / 1e9),
            }),
            healthcheck,
            labels: t.labels.clone(),
            constraints: t.constraints.iter().map(ToString::to_string).collect(),
            max_per_node: t.max_per_node,
            stop_grace_period: t.stop_grace_period.map(format_duration),
            pull: (t.pull != orchestrator_core::PullPolicy::IfNotPresent).then(|| t.pull.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fields(mut json: serde_json::Value) -> Result<ContainerTemplate, Error> {
        json["image"] = "a".into();
        json["replicas"] = 1.into();
        let create: crate::dto::CreateDeployment = serde_json::from_value(json).unwrap();
        Ok(create.into_spec(&orchestrator_core::Limits::default())?.1.template)
    }

    fn field(json: serde_json::Value) -> String {
        match fields(json) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn the_issue_example_parses() {
        let t = fields(serde_json::json!({
            "env": {"GREETING": "hello"},
            "ports": [{"target": 8080, "published": 18081, "protocol": "tcp"}],
            "resources": {"memory": "64M", "cpus": 0.25},
            "healthcheck": {"test": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"],
                            "interval": "1s", "timeout": "1s", "retries": 3, "start_period": "2s"},
            "labels": {"team": "web"},
            "constraints": ["node.labels.zone == a"],
            "max_per_node": 1,
            "stop_grace_period": "1m30s"
        }))
        .unwrap();
        assert_eq!(t.ports, [PortSpec::tcp(8080, Some(18081))]);
        assert_eq!(t.resources, Resources { memory_bytes: Some(64 << 20), nano_cpus: Some(250_000_000) });
        assert_eq!(t.stop_grace_period, Some(Duration::from_secs(90)));
        let HealthCheck::Command(check) = &t.healthcheck else { panic!("{:?}", t.healthcheck) };
        assert_eq!(check.start_period, Some(Duration::from_secs(2)));
        let view = serde_json::to_value(TemplateView::new(&t)).unwrap();
        assert_eq!(view["resources"], serde_json::json!({"memory": "64M", "cpus": 0.25}));
        assert_eq!(view["stop_grace_period"], "1m30s");
        assert_eq!(view["healthcheck"]["interval"], "1s");
        assert_eq!(view["constraints"][0], "node.labels.zone == a");
    }

    #[test]
    fn a_view_read_back_is_the_same_template() {
        let t = fields(serde_json::json!({
            "ports": [{"target": 53, "protocol": "udp"}],
            "resources": {"memory": "7680K"},
            "healthcheck": {"test": ["CMD", "true"], "interval": "1m30s500ms"},
            "stop_grace_period": "10s"
        }))
        .unwrap();
        let mut view = serde_json::to_value(TemplateView::new(&t)).unwrap();
        view.as_object_mut().unwrap().remove("image");
        view.as_object_mut().unwrap().remove("command");
        assert_eq!(fields(view).unwrap(), t);
    }

    #[test]
    fn bad_values_name_their_path() {
        use serde_json::json;
        assert_eq!(field(json!({"ports": [{"target": 80}, {"target": 80, "published": 70000}]})), "ports[1].published");
        assert_eq!(field(json!({"ports": [{"target": 0}]})), "ports[0].target");
        assert_eq!(field(json!({"ports": [{"target": 80, "protocol": "sctp"}]})), "ports[0].protocol");
        assert_eq!(field(json!({"resources": {"memory": "lots"}})), "resources.memory");
        assert_eq!(field(json!({"resources": {"cpus": 0.0}})), "resources.cpus");
        assert_eq!(field(json!({"resources": {"cpus": -1.0}})), "resources.cpus");
        assert_eq!(
            field(json!({"healthcheck": {"test": ["CMD", "true"], "interval": "soon"}})),
            "healthcheck.interval"
        );
        assert_eq!(field(json!({"healthcheck": {"interval": "1s"}})), "healthcheck.test");
        assert_eq!(field(json!({"healthcheck": {"disable": true, "interval": "1s"}})), "healthcheck.disable");
        assert_eq!(field(json!({"constraints": ["node.labels.zone == a", "zone = b"]})), "constraints[1]");
        assert_eq!(field(json!({"max_per_node": 0})), "max_per_node");
        assert_eq!(field(json!({"stop_grace_period": "10"})), "stop_grace_period");
        assert_eq!(field(json!({"pull": "sometimes"})), "pull");
    }
}
