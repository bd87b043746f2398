//! `deploy create`'s workload flags, in `docker service create`'s words, as the API's fields.
//! Values are checked by the server (it names the field); only the flags' own shapes
//! (`K=V`, `PUBLISHED:TARGET[/PROTO]`) are read here.

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Map, Value, json};

#[derive(Args, Debug, Default)]
pub struct WorkloadArgs {
    /// An environment variable, KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Publish a port: PUBLISHED:TARGET[/udp], or TARGET[/udp] for a port the engine picks (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "[PUBLISHED:]TARGET[/PROTO]")]
    publish: Vec<String>,
    /// Memory limit, e.g. 64M (binary units).
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit in CPUs, e.g. 0.25.
    #[arg(long)]
    cpus: Option<f64>,
    /// A health check run by the shell in the container.
    #[arg(long)]
    health_cmd: Option<String>,
    #[arg(long, value_name = "DURATION")]
    health_interval: Option<String>,
    #[arg(long, value_name = "DURATION")]
    health_timeout: Option<String>,
    #[arg(long)]
    health_retries: Option<i64>,
    #[arg(long, value_name = "DURATION")]
    health_start_period: Option<String>,
    /// No health check, not even the image's.
    #[arg(long, conflicts_with = "health_cmd")]
    no_healthcheck: bool,
    /// A placement constraint, e.g. node.labels.zone==a (repeatable).
    #[arg(long = "constraint", value_name = "EXPR")]
    constraints: Vec<String>,
    /// At most this many replicas on one node.
    #[arg(long)]
    max_per_node: Option<i64>,
    /// A container label, KEY=VALUE (repeatable).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// SIGTERM, then this long before SIGKILL, e.g. 10s.
    #[arg(long, value_name = "DURATION")]
    stop_grace_period: Option<String>,
    /// When engines pull the image: if_not_present (default), always, never.
    #[arg(long, value_name = "POLICY", value_parser = ["if_not_present", "always", "never"])]
    pull: Option<String>,
    /// Run this instead of the image's entrypoint (one program; arguments go in the command).
    #[arg(long, value_name = "PROGRAM")]
    entrypoint: Option<String>,
}

pub fn pairs(flag: &str, values: &[String]) -> Result<Map<String, Value>> {
    let mut map = Map::new();
    for v in values {
        let Some((key, value)) = v.split_once('=') else { bail!("{flag} {v:?}: expected KEY=VALUE") };
        map.insert(key.to_string(), json!(value));
    }
    Ok(map)
}

/// `18081:8080`, `8080`, `18081:8080/udp`.
fn port(spec: &str) -> Result<Value> {
    let bad = || anyhow::anyhow!("-p {spec:?}: expected [PUBLISHED:]TARGET[/tcp|udp], e.g. 18081:8080");
    let (ports, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let number = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let mut port = match ports.split_once(':') {
        Some((published, target)) => json!({ "target": number(target)?, "published": number(published)? }),
        None => json!({ "target": number(ports)? }),
    };
    port["protocol"] = json!(protocol);
    Ok(port)
}

impl WorkloadArgs {
    /// Adds the flags given to a create body.
    pub fn fill(self, body: &mut Value) -> Result<()> {
        if let Some(entrypoint) = &self.entrypoint {
            body["entrypoint"] = json!([entrypoint]);
        }
        if !self.env.is_empty() {
            body["env"] = Value::Object(pairs("-e", &self.env)?);
        }
        if !self.publish.is_empty() {
            body["ports"] = self.publish.iter().map(|p| port(p)).collect::<Result<Vec<_>>>()?.into();
        }
        if self.memory.is_some() || self.cpus.is_some() {
            let mut resources = Map::new();
            if let Some(memory) = self.memory {
                resources.insert("memory".into(), json!(memory));
            }
            if let Some(cpus) = self.cpus {
                resources.insert("cpus".into(), json!(cpus));
            }
            body["resources"] = Value::Object(resources);
        }
        if self.no_healthcheck {
            body["healthcheck"] = json!({ "disable": true });
        } else if let Some(cmd) = self.health_cmd {
            let mut check = json!({ "test": ["CMD-SHELL", cmd] });
            for (key, value) in [
                ("interval", self.health_interval),
                ("timeout", self.health_timeout),
                ("start_period", self.health_start_period),
            ] {
                if let Some(value) = value {
                    check[key] = json!(value);
                }
            }
            if let Some(retries) = self.health_retries {
                check["retries"] = json!(retries);
            }
            body["healthcheck"] = check;
        } else if self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
        {
            bail!("--health-interval, --health-timeout, --health-retries and --health-start-period need --health-cmd");
        }
        if !self.constraints.is_empty() {
            body["constraints"] = json!(self.constraints);
        }
        if let Some(max) = self.max_per_node {
            body["max_per_node"] = json!(max);
        }
        if let Some(pull) = self.pull {
            body["pull"] = json!(pull);
        }
        if !self.labels.is_empty() {
            body["labels"] = Value::Object(pairs("--label", &self.labels)?);
        }
        if let Some(grace) = self.stop_grace_period {
            body["stop_grace_period"] = json!(grace);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_read_as_docker_writes_them() {
        assert_eq!(port("18081:8080").unwrap(), json!({"target": 8080, "published": 18081, "protocol": "tcp"}));
        assert_eq!(port("8080").unwrap(), json!({"target": 8080, "protocol": "tcp"}));
        assert_eq!(port("5353:53/udp").unwrap(), json!({"target": 53, "published": 5353, "protocol": "udp"}));
        assert!(port("web").is_err());
        assert!(port("1:2:3").is_err());
    }

    #[test]
    fn flags_become_the_api_fields() {
        let args = WorkloadArgs {
            env: vec!["GREETING=hello world".into()],
            publish: vec!["18081:8080".into()],
            memory: Some("64M".into()),
            health_cmd: Some("wget -q -O /dev/null http://127.0.0.1:8080/".into()),
            health_interval: Some("1s".into()),
            health_retries: Some(3),
            constraints: vec!["node.labels.zone==a".into()],
            max_per_node: Some(1),
            ..WorkloadArgs::default()
        };
        let mut body = json!({"image": "local/web:1"});
        args.fill(&mut body).unwrap();
        assert_eq!(body["env"], json!({"GREETING": "hello world"}));
        assert_eq!(body["resources"], json!({"memory": "64M"}));
        assert_eq!(body["healthcheck"]["test"][0], "CMD-SHELL");
        assert_eq!(body["healthcheck"]["interval"], "1s");
        assert_eq!(body["healthcheck"]["retries"], 3);
        assert_eq!(body["max_per_node"], 1);
        let lone = WorkloadArgs { health_interval: Some("1s".into()), ..WorkloadArgs::default() };
        assert!(lone.fill(&mut json!({})).is_err());
        let bad_env = WorkloadArgs { env: vec!["NOEQUALS".into()], ..WorkloadArgs::default() };
        assert!(bad_env.fill(&mut json!({})).is_err());
    }
}
