//! A stack on the wire: a Compose file's parsed form (JSON), read strictly. The subset a
//! service may use is `image, command, entrypoint, environment, ports, healthcheck, labels,
//! stop_grace_period, deploy.{replicas, resources, placement, update_config, rollback_config,
//! restart_policy}`; anything else is refused naming its path (`services.web.networks: not
//! supported here: ...`), so a file never runs other than it reads. Each service becomes the
//! body of a create, parsed by the create's own parser; its errors are named by the path in the
//! file (`ports[1]` of a create is `services.web.ports[1]`).

use std::collections::BTreeMap;

use orchestrator_core::stack::{STACK_LABEL, StackService, deployment_name};
use orchestrator_core::{Error, Limits, StackName};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::dto::CreateDeployment;

/// `PUT /v1/stacks/{name}`: a Compose file as JSON, after the client's interpolation
/// (`${VAR:-default}`) and `env_file`s (read by the client, sent as `environment`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct StackFile {
    /// The project name; the stack's name (the path's) when absent, which it must equal.
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub name: Option<String>,
    /// Obsolete in Compose, read and ignored (many files still carry it): a string or a number.
    #[schema(schema_with = version_schema)]
    pub version: Option<Value>,
    /// Each service by name (lowercase letters, digits, '-' and '_'): `image`, `command`,
    /// `entrypoint`, `environment`, `ports`, `healthcheck`, `labels`, `stop_grace_period`,
    /// `deploy.{replicas, resources, placement, update_config, rollback_config,
    /// restart_policy}`.
    #[schema(value_type = Object, example = json!({"web": {"image": "local/busybox:1", "command": "httpd -f -p 8080", "ports": ["18081:8080"], "deploy": {"replicas": 2}}}))]
    pub services: Map<String, Value>,
    /// Any other top-level key is refused with its path.
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: BTreeMap<String, Value>,
}

/// `"3.8"` or `3.8`, as files write it.
fn version_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Number, Type::Null])).build()
}

/// Why a Compose key a file may well have is not taken here.
fn unsupported(key: &str) -> &'static str {
    match key {
        "build" => "images are pulled, not built: push it to a registry and name it in `image`",
        "networks" | "network_mode" => "replicas use their engine's default network; publish ports to reach them",
        "volumes" | "tmpfs" => "volumes are not supported yet",
        "depends_on" => "services start independently; use a health check and retries in the client",
        "container_name" => "containers are named by the orchestrator (one per replica)",
        "restart" => "use deploy.restart_policy (replicas are always replaced, with a backoff)",
        "secrets" | "configs" => "not supported yet",
        "env_file" => "env files are read by the client (`orchestrator apply`): send their variables in `environment`",
        "mode" => "only replicated services are supported",
        "delay" | "max_attempts" | "window" => {
            "failed replicas are replaced after a backoff of 1 s doubling to 5 min, for as long as it takes"
        }
        "start_interval" => "not supported: give interval",
        _ => "not supported here",
    }
}

/// The keys a mapping at `path` may have; anything else is an error naming it.
fn only(path: &str, map: &Map<String, Value>, allowed: &[&str]) -> Result<(), Error> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(Error::invalid(format!("{path}.{key}"), format!("not supported here: {}", unsupported(key)))),
    }
}

fn object<'a>(path: &str, value: &'a Value) -> Result<&'a Map<String, Value>, Error> {
    value.as_object().ok_or_else(|| Error::invalid(path, "must be a mapping"))
}

/// A scalar as Compose reads one into a string (`8080`, `true`, `"x"`).
fn scalar(path: &str, value: &Value) -> Result<String, Error> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(Error::invalid(path, "must be a string or a number")),
    }
}

/// A list of strings, or one string split as a shell would (Compose's `command` and
/// `entrypoint`).
fn words(path: &str, value: &Value) -> Result<Vec<String>, Error> {
    match value {
        Value::String(s) => {
            shlex::split(s).ok_or_else(|| Error::invalid(path, format!("{s:?} has an unclosed quote or escape")))
        }
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| scalar(&format!("{path}[{i}]"), v)).collect(),
        _ => Err(Error::invalid(path, "must be a string or a list of strings")),
    }
}

/// `KEY: value` or `["KEY=value"]`: Compose's two ways to write environment and labels. A
/// variable without a value (`KEY`, `KEY: null`) is left unset.
fn key_values(path: &str, value: &Value) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if !v.is_null() {
                    out.insert(k.clone(), scalar(&format!("{path}.{k}"), v)?);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let text = scalar(&format!("{path}[{i}]"), item)?;
                if let Some((k, v)) = text.split_once('=') {
                    out.insert(k.to_string(), v.to_string());
                }
            }
        }
        _ => return Err(Error::invalid(path, "must be a mapping or a list of KEY=VALUE")),
    }
    Ok(out)
}

/// A port of the short syntax (`"8080"`, `"18081:8080"`, `"18081:8080/udp"`) or the long one
/// (`{target, published, protocol, mode: host}`), as a create takes it.
fn port(path: &str, value: &Value) -> Result<Value, Error> {
    let number = |text: &str| -> Result<u64, Error> {
        text.parse::<u64>().map_err(|_| {
            let why = if text.contains('-') { "port ranges are not supported" } else { "not a port number" };
            Error::invalid(path, format!("{text:?}: {why}"))
        })
    };
    match value {
        Value::Number(n) => Ok(json!({"target": n})),
        Value::String(text) => {
            let (ports, protocol) = match text.split_once('/') {
                Some((ports, protocol)) => (ports, Some(protocol)),
                None => (text.as_str(), None),
            };
            let parts: Vec<&str> = ports.split(':').collect();
            let (published, target) = match parts.as_slice() {
                [target] => (None, number(target)?),
                [published, target] => (Some(number(published)?), number(target)?),
                _ => {
                    return Err(Error::invalid(
                        path,
                        format!(
                            "{text:?}: a host address is not supported (ports are published on every address of the node)"
                        ),
                    ));
                }
            };
            Ok(json!({"target": target, "published": published, "protocol": protocol}))
        }
        Value::Object(map) => {
            only(path, map, &["target", "published", "protocol", "mode"])?;
            if let Some(mode) = map.get("mode")
                && mode != "host"
            {
                return Err(Error::invalid(
                    format!("{path}.mode"),
                    "only host mode: a published port is on each node that runs a replica (there is no routing mesh)",
                ));
            }
            let target = map.get("target").ok_or_else(|| Error::invalid(format!("{path}.target"), "required"))?;
            let published = match map.get("published") {
                None | Some(Value::Null) => None,
                Some(v) => Some(number(&scalar(&format!("{path}.published"), v)?)?),
            };
            let target = number(&scalar(&format!("{path}.target"), target)?)?;
            Ok(json!({"target": target, "published": published, "protocol": map.get("protocol")}))
        }
        _ => Err(Error::invalid(path, "must be a port (\"18081:8080/udp\") or a mapping")),
    }
}

fn healthcheck(path: &str, value: &Value) -> Result<Value, Error> {
    let map = object(path, value)?;
    only(path, map, &["test", "interval", "timeout", "retries", "start_period", "disable", "start_interval"])?;
    if map.contains_key("start_interval") {
        return Err(Error::invalid(format!("{path}.start_interval"), unsupported("start_interval")));
    }
    let mut out = map.clone();
    if let Some(test) = map.get("test") {
        let test = match test {
            Value::String(command) => vec!["CMD-SHELL".to_string(), command.clone()],
            other => words(&format!("{path}.test"), other)?,
        };
        if test.first().map(String::as_str) == Some("NONE") {
            return Ok(json!({"disable": true}));
        }
        out.insert("test".into(), json!(test));
    }
    Ok(Value::Object(out))
}

/// Compose's update_config / rollback_config as a create's `update` / `rollback`.
fn update_policy(path: &str, value: &Value) -> Result<Value, Error> {
    let map = object(path, value)?;
    only(path, map, &["parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"])?;
    if let Some(delay) = map.get("delay")
        && !matches!(delay.as_str(), Some("0" | "0s"))
        && delay.as_u64() != Some(0)
    {
        return Err(Error::invalid(
            format!("{path}.delay"),
            "not supported here: a step waits until its new replicas are ready for `monitor`, not a fixed delay",
        ));
    }
    let mut out = map.clone();
    out.remove("delay");
    Ok(Value::Object(out))
}

/// `limits` and `reservations` as one `resources`: placement reserves the limit, so a
/// reservation is taken when the same resource has a limit too.
fn resources(path: &str, value: &Value) -> Result<Option<Value>, Error> {
    let map = object(path, value)?;
    only(path, map, &["limits", "reservations"])?;
    let part = |key: &str| -> Result<Map<String, Value>, Error> {
        let sub = format!("{path}.{key}");
        match map.get(key) {
            None => Ok(Map::new()),
            Some(v) => {
                let m = object(&sub, v)?;
                only(&sub, m, &["cpus", "memory"])?;
                Ok(m.clone())
            }
        }
    };
    let (mut limits, reservations) = (part("limits")?, part("reservations")?);
    for key in reservations.keys() {
        if !limits.contains_key(key) {
            return Err(Error::invalid(
                format!("{path}.reservations.{key}"),
                format!(
                    "give {path}.limits.{key} too: here placement reserves a replica's limit, which must be at least its reservation"
                ),
            ));
        }
    }
    if let Some(cpus) = limits.get("cpus").filter(|c| c.is_string()) {
        let text = cpus.as_str().unwrap_or_default();
        let parsed: f64 = text
            .trim()
            .parse()
            .map_err(|_| Error::invalid(format!("{path}.limits.cpus"), format!("{text:?} is not a number of CPUs")))?;
        limits.insert("cpus".into(), json!(parsed));
    }
    Ok((!limits.is_empty()).then_some(Value::Object(limits)))
}

/// One service as the body of a create (in the create's words), checked on the way.
fn create_body(stack: &StackName, service: &str, value: &Value) -> Result<Value, Error> {
    let path = format!("services.{service}");
    let map = object(&path, value)?;
    only(
        &path,
        map,
        &[
            "image",
            "command",
            "entrypoint",
            "environment",
            "ports",
            "healthcheck",
            "labels",
            "stop_grace_period",
            "deploy",
        ],
    )?;
    let image = map.get("image").ok_or_else(|| Error::invalid(format!("{path}.image"), "required"))?;
    let mut body = Map::new();
    body.insert("image".into(), json!(scalar(&format!("{path}.image"), image)?));
    for key in ["command", "entrypoint"] {
        if let Some(v) = map.get(key) {
            body.insert(key.into(), json!(words(&format!("{path}.{key}"), v)?));
        }
    }
    if let Some(v) = map.get("environment") {
        body.insert("env".into(), json!(key_values(&format!("{path}.environment"), v)?));
    }
    if let Some(v) = map.get("ports") {
        let list = v.as_array().ok_or_else(|| Error::invalid(format!("{path}.ports"), "must be a list"))?;
        let ports: Vec<Value> =
            list.iter().enumerate().map(|(i, p)| port(&format!("{path}.ports[{i}]"), p)).collect::<Result<_, _>>()?;
        body.insert("ports".into(), Value::Array(ports));
    }
    if let Some(v) = map.get("healthcheck") {
        body.insert("healthcheck".into(), healthcheck(&format!("{path}.healthcheck"), v)?);
    }
    let mut labels = match map.get("labels") {
        Some(v) => key_values(&format!("{path}.labels"), v)?,
        None => BTreeMap::new(),
    };
    match labels.insert(STACK_LABEL.into(), stack.to_string()) {
        Some(other) if other != stack.as_str() => {
            return Err(Error::invalid(
                format!("{path}.labels.{STACK_LABEL}"),
                format!("names stack {other:?}; the orchestrator sets it to the stack's name"),
            ));
        }
        _ => {}
    }
    body.insert("labels".into(), json!(labels));
    if let Some(v) = map.get("stop_grace_period") {
        body.insert("stop_grace_period".into(), json!(scalar(&format!("{path}.stop_grace_period"), v)?));
    }
    body.insert("replicas".into(), json!(1));
    if let Some(deploy) = map.get("deploy") {
        let dpath = format!("{path}.deploy");
        let d = object(&dpath, deploy)?;
        only(
            &dpath,
            d,
            &["mode", "replicas", "resources", "placement", "update_config", "rollback_config", "restart_policy"],
        )?;
        if let Some(mode) = d.get("mode")
            && mode != "replicated"
        {
            return Err(Error::invalid(format!("{dpath}.mode"), unsupported("mode")));
        }
        if let Some(r) = d.get("replicas") {
            body.insert("replicas".into(), r.clone());
        }
        if let Some(r) = d.get("resources")
            && let Some(limits) = resources(&format!("{dpath}.resources"), r)?
        {
            body.insert("resources".into(), limits);
        }
        if let Some(p) = d.get("placement") {
            let ppath = format!("{dpath}.placement");
            let pm = object(&ppath, p)?;
            only(&ppath, pm, &["constraints", "max_replicas_per_node"])?;
            if let Some(c) = pm.get("constraints") {
                body.insert("constraints".into(), c.clone());
            }
            if let Some(m) = pm.get("max_replicas_per_node") {
                body.insert("max_per_node".into(), m.clone());
            }
        }
        if let Some(u) = d.get("update_config") {
            body.insert("update".into(), update_policy(&format!("{dpath}.update_config"), u)?);
        }
        if let Some(u) = d.get("rollback_config") {
            body.insert("rollback".into(), update_policy(&format!("{dpath}.rollback_config"), u)?);
        }
        if let Some(r) = d.get("restart_policy") {
            let rpath = format!("{dpath}.restart_policy");
            let rm = object(&rpath, r)?;
            only(&rpath, rm, &["condition"])?;
            if let Some(c) = rm.get("condition")
                && c != "any"
                && c != "on-failure"
            {
                return Err(Error::invalid(
                    format!("{rpath}.condition"),
                    "`any` or `on-failure`: a service's replicas are always replaced when they end",
                ));
            }
        }
    }
    body.insert("name".into(), json!(deployment_name(stack, service, &path)?.as_str()));
    Ok(Value::Object(body))
}

/// A create's field as the file names it, for service `service`.
fn file_path(service: &str, field: &str) -> String {
    let base = format!("services.{service}");
    let (head, rest) = match field.find(['.', '[']) {
        Some(i) => (&field[..i], &field[i..]),
        None => (field, ""),
    };
    match head {
        "" | "name" => base,
        "replicas" => format!("{base}.deploy.replicas"),
        "env" => format!("{base}.environment{rest}"),
        // The short syntax is one string: the port, not its part.
        "ports" => format!("{base}.ports{}", rest.find(']').map_or("", |i| &rest[..=i])),
        "resources" => format!("{base}.deploy.resources.limits{rest}"),
        "constraints" => format!("{base}.deploy.placement.constraints{rest}"),
        "max_per_node" => format!("{base}.deploy.placement.max_replicas_per_node"),
        "update" => format!("{base}.deploy.update_config{rest}"),
        "rollback" => format!("{base}.deploy.rollback_config{rest}"),
        other => format!("{base}.{other}{rest}"),
    }
}

fn at_file_path(service: &str, e: Error) -> Error {
    match e {
        Error::Invalid { field, message } => Error::Invalid { field: file_path(service, &field), message },
        other => other,
    }
}

impl StackFile {
    /// Each service as the deployment it makes, checked against `limits`; an error names the
    /// path in the file.
    pub fn into_services(self, stack: &StackName, limits: &Limits) -> Result<Vec<StackService>, Error> {
        if let Some(v) = &self.version
            && !(v.is_string() || v.is_number() || v.is_null())
        {
            return Err(Error::invalid("version", "a string or a number (it is read and ignored)"));
        }
        if let Some(key) = self.other.keys().next() {
            return Err(Error::invalid(key.clone(), format!("not supported here: {}", unsupported(key))));
        }
        if let Some(name) = &self.name
            && name != stack.as_str()
        {
            return Err(Error::invalid("name", format!("the file is project {name:?}; applied as stack {stack}")));
        }
        let mut services = Vec::with_capacity(self.services.len());
        for (service, value) in &self.services {
            let body = create_body(stack, service, value)?;
            let create: CreateDeployment = serde_path_to_error::deserialize(body).map_err(|e| {
                let field = e.path().to_string();
                Error::invalid(file_path(service, &field), e.into_inner().to_string())
            })?;
            let (deployment, spec) = create.into_spec(limits).map_err(|e| at_file_path(service, e))?;
            services.push(StackService { service: service.clone(), deployment, spec });
        }
        Ok(services)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(file: Value) -> Result<Vec<StackService>, Error> {
        let file: StackFile = serde_json::from_value(file).unwrap();
        file.into_services(&StackName::new("shop").unwrap(), &Limits::default())
    }

    fn refused(file: Value) -> (String, String) {
        match services(file) {
            Err(Error::Invalid { field, message }) => (field, message),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_service_reads_as_the_deployment_swarm_would_run() {
        let file = json!({"services": {"web": {
            "image": "local/busybox:1",
            "command": "sh -c 'exec httpd -f -p 8080'",
            "entrypoint": ["/bin/busybox"],
            "environment": ["GREETING=hello", "UNSET"],
            "ports": ["18081:8080", {"target": 53, "published": "5353", "protocol": "udp", "mode": "host"}, 9090],
            "healthcheck": {"test": "wget -q -O /dev/null http://127.0.0.1:8080/", "interval": "1s", "retries": 3},
            "labels": {"team": "web"},
            "stop_grace_period": "5s",
            "deploy": {"replicas": 3,
                       "resources": {"limits": {"cpus": "0.25", "memory": "64M"}, "reservations": {"memory": "32M"}},
                       "placement": {"constraints": ["node.labels.zone == a"], "max_replicas_per_node": 1},
                       "update_config": {"parallelism": 2, "order": "stop-first", "monitor": "2s", "delay": "0s"},
                       "restart_policy": {"condition": "on-failure"}}
        }}});
        let s = services(file).unwrap().remove(0);
        assert_eq!((s.service.as_str(), s.deployment.as_str()), ("web", "shop_web"));
        let t = &s.spec.template;
        assert_eq!(t.command, ["sh", "-c", "exec httpd -f -p 8080"]);
        assert_eq!(t.entrypoint, ["/bin/busybox"]);
        assert_eq!(t.env.len(), 1, "an unset variable is left out");
        let ports: Vec<String> =
            t.ports.iter().map(|p| format!("{:?}/{}/{}", p.published, p.target, p.protocol)).collect();
        assert_eq!(ports, ["Some(18081)/8080/tcp", "Some(5353)/53/udp", "None/9090/tcp"]);
        assert_eq!((t.resources.memory_bytes, t.resources.nano_cpus), (Some(64 << 20), Some(250_000_000)));
        assert_eq!(t.labels[STACK_LABEL], "shop");
        assert_eq!((s.spec.replicas, t.max_per_node), (3, Some(1)));
        assert_eq!(s.spec.policy.update.parallelism, 2);
        let orchestrator_core::HealthCheck::Command(check) = &t.healthcheck else { panic!("{:?}", t.healthcheck) };
        assert_eq!(check.test[0], "CMD-SHELL");
    }

    #[test]
    fn what_is_not_taken_is_named_by_its_path_in_the_file() {
        let svc = |extra: Value| {
            let mut s = json!({"image": "local/busybox:1"});
            s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            json!({"services": {"web": s}})
        };
        for (file, field) in [
            (svc(json!({"networks": ["front"]})), "services.web.networks"),
            (svc(json!({"ports": ["18081:8080", "70000:80"]})), "services.web.ports[1]"),
            (svc(json!({"ports": ["127.0.0.1:80:80"]})), "services.web.ports[0]"),
            (svc(json!({"ports": ["8000-8001:80"]})), "services.web.ports[0]"),
            (svc(json!({"ports": [{"target": 80, "mode": "ingress"}]})), "services.web.ports[0].mode"),
            (svc(json!({"environment": {"1BAD": "x"}})), "services.web.environment.1BAD"),
            (
                svc(json!({"deploy": {"resources": {"limits": {"memory": "lots"}}}})),
                "services.web.deploy.resources.limits.memory",
            ),
            (
                svc(json!({"deploy": {"resources": {"reservations": {"cpus": "1"}}}})),
                "services.web.deploy.resources.reservations.cpus",
            ),
            (svc(json!({"deploy": {"replicas": "three"}})), "services.web.deploy.replicas"),
            (svc(json!({"deploy": {"mode": "global"}})), "services.web.deploy.mode"),
            (
                svc(json!({"deploy": {"placement": {"constraints": ["node.role == manager"]}}})),
                "services.web.deploy.placement.constraints[0]",
            ),
            (svc(json!({"deploy": {"update_config": {"delay": "10s"}}})), "services.web.deploy.update_config.delay"),
            (
                svc(json!({"deploy": {"update_config": {"order": "sideways"}}})),
                "services.web.deploy.update_config.order",
            ),
            (
                svc(json!({"deploy": {"restart_policy": {"condition": "none"}}})),
                "services.web.deploy.restart_policy.condition",
            ),
            (
                svc(json!({"deploy": {"restart_policy": {"max_attempts": 3}}})),
                "services.web.deploy.restart_policy.max_attempts",
            ),
            (svc(json!({"healthcheck": {"interval": "soon", "test": "true"}})), "services.web.healthcheck.interval"),
            (svc(json!({"stop_grace_period": "a while"})), "services.web.stop_grace_period"),
            (svc(json!({"command": "sh -c 'unclosed"})), "services.web.command"),
            (svc(json!({"env_file": ".env"})), "services.web.env_file"),
            (json!({"services": {"web": {"image": "Not An Image"}}}), "services.web.image"),
            (json!({"services": {"web": {}}}), "services.web.image"),
            (json!({"services": {"Web": {"image": "local/busybox:1"}}}), "services.Web"),
            (json!({"services": {}, "volumes": {}}), "volumes"),
            (json!({"services": {}, "version": {}}), "version"),
        ] {
            let (got, message) = refused(file);
            assert_eq!(got, field, "{message}");
        }
        let (_, why) = refused(svc(json!({"networks": ["front"]})));
        assert!(why.starts_with("not supported here: "), "{why}");
    }
}
