//! One simulated engine's containers, and the Docker Engine API answers about them: the
//! status codes, JSON shapes and messages dockerd gives for the calls the orchestrator makes.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The API version the simulated engines speak (dockerd 28's).
pub const API_VERSION: &str = "1.49";

#[derive(Debug, Clone)]
struct Container {
    id: String,
    name: String,
    image: String,
    command: Vec<String>,
    labels: BTreeMap<String, String>,
    created: u64,
    running: bool,
    exit_code: i64,
    /// Started at least once (a created-only container is "created", not "exited").
    started: bool,
    /// Asked for, as `PortBindings` has them: (target, protocol, fixed host port or none).
    wanted_ports: Vec<(u16, String, Option<u16>)>,
    /// Bound while running: (target, protocol, host port).
    ports: Vec<(u16, String, u16)>,
    /// With a health check (`Healthcheck.Test` other than `NONE`): what it reports; a hollow
    /// engine runs no check, so it says healthy once started unless told otherwise.
    health: Option<&'static str>,
    stop_timeout: Option<i64>,
}

impl Container {
    fn state(&self) -> &'static str {
        match (self.running, self.started) {
            (true, _) => "running",
            (false, true) => "exited",
            (false, false) => "created",
        }
    }
}

/// An HTTP answer: status and JSON body (`None`: no body).
pub type Answer = (u16, Option<Value>);

fn message(status: u16, text: impl Into<String>) -> Answer {
    (status, Some(json!({ "message": text.into() })))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Debug, Default)]
pub struct Engine {
    name: String,
    containers: Vec<Container>,
    next_id: u64,
    /// Images this engine does not have (every other reference is "present").
    pub missing_images: Vec<String>,
}

impl Engine {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }

    /// Makes a container with a health check report `health` (`starting`, `healthy` or
    /// `unhealthy`), as if its check said so.
    pub fn set_health(&mut self, id_or_name: &str, health: &'static str) -> bool {
        match self.find_mut(id_or_name) {
            Some(c) if c.health.is_some() => {
                c.health = Some(health);
                true
            }
            _ => false,
        }
    }

    /// Host ports in use on this engine, as (port, protocol).
    fn bound(&self) -> impl Iterator<Item = (u16, &str)> {
        self.containers.iter().filter(|c| c.running).flat_map(|c| c.ports.iter().map(|(_, p, h)| (*h, p.as_str())))
    }

    pub fn container_count(&self) -> usize {
        self.containers.len()
    }

    pub fn running_count(&self) -> usize {
        self.containers.iter().filter(|c| c.running).count()
    }

    /// Makes a running container exit with `code`, as if its process ended.
    pub fn exit(&mut self, id_or_name: &str, code: i64) -> bool {
        match self.find_mut(id_or_name) {
            Some(c) if c.running => {
                c.running = false;
                c.exit_code = code;
                true
            }
            _ => false,
        }
    }

    fn find(&self, id_or_name: &str) -> Option<usize> {
        let wanted = id_or_name.trim_start_matches('/');
        self.containers
            .iter()
            .position(|c| c.name == wanted || c.id == wanted)
            .or_else(|| (wanted.len() >= 12).then(|| self.containers.iter().position(|c| c.id.starts_with(wanted)))?)
    }

    fn find_mut(&mut self, id_or_name: &str) -> Option<&mut Container> {
        let i = self.find(id_or_name)?;
        Some(&mut self.containers[i])
    }

    /// Answers one request; `path` has no `/vX.Y` prefix, `query` is decoded.
    pub fn answer(&mut self, method: &str, path: &str, query: &BTreeMap<String, String>, body: &[u8]) -> Answer {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET" | "HEAD", ["_ping"]) => (200, None),
            ("GET", ["version"]) => (
                200,
                Some(json!({
                    "ApiVersion": API_VERSION, "MinAPIVersion": "1.24", "Version": "28.2.2-hollow",
                    "Os": "linux", "Arch": "amd64", "KernelVersion": "hollow", "GoVersion": "none"
                })),
            ),
            ("GET", ["info"]) => (
                200,
                Some(json!({
                    "ID": format!("hollow-{}", self.name), "Name": self.name,
                    "Containers": self.containers.len(), "ContainersRunning": self.running_count(),
                    "ContainersStopped": self.containers.len() - self.running_count(), "ContainersPaused": 0,
                    "Images": 1, "NCPU": 2, "MemTotal": 1_u64 << 33, "ServerVersion": "28.2.2-hollow",
                    "OperatingSystem": "hollow node", "OSType": "linux", "Architecture": "x86_64"
                })),
            ),
            // An image name may hold slashes: everything between `images` and `json`.
            ("GET", ["images", name @ .., "json"]) if !name.is_empty() => {
                let image = name.join("/");
                if self.missing_images.contains(&image) {
                    message(404, format!("No such image: {image}"))
                } else {
                    (200, Some(json!({ "Id": format!("sha256:{:064x}", crc(&image)), "RepoTags": [image] })))
                }
            }
            ("POST", ["containers", "create"]) => self.create(query, body),
            ("GET", ["containers", "json"]) => self.list(query),
            ("GET", ["containers", id, "json"]) => self.inspect(id),
            ("POST", ["containers", id, "start"]) => self.start(id),
            ("POST", ["containers", id, "stop"]) => self.stop(id),
            ("POST", ["containers", id, "kill"]) => self.stop(id),
            ("DELETE", ["containers", id]) => {
                self.remove(id, query.get("force").is_some_and(|f| f == "true" || f == "1"))
            }
            _ => message(404, "page not found"),
        }
    }

    fn create(&mut self, query: &BTreeMap<String, String>, body: &[u8]) -> Answer {
        let Ok(spec) = serde_json::from_slice::<Value>(body) else {
            return message(400, "invalid JSON body");
        };
        let Some(image) = spec["Image"].as_str().filter(|i| !i.is_empty()) else {
            return message(400, "config cannot be empty in order to create a container");
        };
        if self.missing_images.iter().any(|m| m == image) {
            return message(404, format!("No such image: {image}"));
        }
        self.next_id += 1;
        let id = format!("{:064x}", (u128::from(self.next_id) << 64) | u128::from(crc(&self.name)));
        let name = query.get("name").cloned().unwrap_or_else(|| format!("hollow_{}", self.next_id));
        if let Some(existing) = self.find(&name).map(|i| &self.containers[i]) {
            return message(
                409,
                format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    existing.id
                ),
            );
        }
        let labels = spec["Labels"]
            .as_object()
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
            .unwrap_or_default();
        let command = spec["Cmd"]
            .as_array()
            .map(|c| c.iter().filter_map(|a| a.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        // {"8080/tcp": [{"HostPort": "18081"}]}: an empty host port is the engine's to pick.
        let mut wanted_ports = Vec::new();
        for (key, bindings) in spec["HostConfig"]["PortBindings"].as_object().into_iter().flatten() {
            let (target, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
            let Ok(target) = target.parse::<u16>() else { return message(400, format!("invalid port {key}")) };
            for b in bindings.as_array().into_iter().flatten() {
                let host = b["HostPort"].as_str().and_then(|h| h.parse::<u16>().ok());
                wanted_ports.push((target, protocol.to_string(), host));
            }
        }
        let health = match spec["Healthcheck"]["Test"].as_array() {
            Some(test) if test.first().and_then(Value::as_str) != Some("NONE") && !test.is_empty() => Some("starting"),
            _ => None,
        };
        let stop_timeout = spec["StopTimeout"].as_i64();
        self.containers.push(Container {
            id: id.clone(),
            name,
            image: image.to_string(),
            command,
            labels,
            created: now(),
            running: false,
            exit_code: 0,
            started: false,
            wanted_ports,
            ports: Vec::new(),
            health,
            stop_timeout,
        });
        (201, Some(json!({ "Id": id, "Warnings": [] })))
    }

    fn start(&mut self, id: &str) -> Answer {
        let Some(i) = self.find(id) else { return message(404, format!("No such container: {id}")) };
        if self.containers[i].running {
            return (304, None);
        }
        // Host ports: a fixed one held by another running container is refused as dockerd
        // refuses it; the others get the next free port from 32768, as dockerd's range starts.
        let mut taken: Vec<(u16, String)> = self.bound().map(|(h, p)| (h, p.to_string())).collect();
        let mut ports = Vec::new();
        for (target, protocol, host) in self.containers[i].wanted_ports.clone() {
            let host = match host {
                Some(h) if taken.contains(&(h, protocol.clone())) => {
                    return message(
                        500,
                        format!(
                            "driver failed programming external connectivity on endpoint {}: Bind for 0.0.0.0:{h} failed: port is already allocated",
                            self.containers[i].name
                        ),
                    );
                }
                Some(h) => h,
                None => (32768..=u16::MAX).find(|h| !taken.contains(&(*h, protocol.clone()))).unwrap_or(0),
            };
            taken.push((host, protocol.clone()));
            ports.push((target, protocol, host));
        }
        let c = &mut self.containers[i];
        c.ports = ports;
        if c.health.is_some() {
            c.health = Some("healthy");
        }
        c.started = true;
        // Nothing runs, except the one program a test needs to end by itself:
        // `sh -c "exit N"` exits at once with N, as it does on dockerd.
        match exits_with(&c.command) {
            Some(code) => (c.running, c.exit_code) = (false, code),
            None => (c.running, c.exit_code) = (true, 0),
        }
        (204, None)
    }

    fn stop(&mut self, id: &str) -> Answer {
        match self.find_mut(id) {
            None => message(404, format!("No such container: {id}")),
            Some(c) if !c.running => (304, None),
            Some(c) => {
                c.running = false;
                c.exit_code = 143;
                (204, None)
            }
        }
    }

    fn remove(&mut self, id: &str, force: bool) -> Answer {
        match self.find(id) {
            None => message(404, format!("No such container: {id}")),
            Some(i) if self.containers[i].running && !force => message(
                409,
                format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    self.containers[i].name
                ),
            ),
            Some(i) => {
                self.containers.remove(i);
                (204, None)
            }
        }
    }

    fn list(&self, query: &BTreeMap<String, String>) -> Answer {
        let all = query.get("all").is_some_and(|a| a == "true" || a == "1");
        let filters: Value = query.get("filters").and_then(|f| serde_json::from_str(f).ok()).unwrap_or(Value::Null);
        // {"label": ["key=value", "key"]} (a list) or {"label": {"key=value": true}} (a map).
        let wanted: Vec<String> = match &filters["label"] {
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Value::Object(m) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let matches = |c: &Container| {
            wanted.iter().all(|w| match w.split_once('=') {
                Some((k, v)) => c.labels.get(k).is_some_and(|have| have == v),
                None => c.labels.contains_key(w),
            })
        };
        let listed: Vec<Value> = self
            .containers
            .iter()
            .filter(|c| (all || c.running) && matches(c))
            .map(|c| {
                json!({
                    "Id": c.id, "Names": [format!("/{}", c.name)], "Image": c.image, "ImageID": "sha256:hollow",
                    "Command": c.command.join(" "), "Created": c.created, "Labels": c.labels, "State": c.state(),
                    "Status": match (c.running, c.health) {
                        (true, Some("starting")) => "Up (health: starting)".to_string(),
                        (true, Some(health)) => format!("Up ({health})"),
                        (true, None) => "Up".to_string(),
                        (false, _) => format!("Exited ({})", c.exit_code),
                    },
                    "Ports": c.ports.iter().filter(|_| c.running).map(|(target, protocol, host)| json!({
                        "IP": "0.0.0.0", "PrivatePort": target, "PublicPort": host, "Type": protocol
                    })).collect::<Vec<_>>(),
                    "Mounts": []
                })
            })
            .collect();
        (200, Some(Value::Array(listed)))
    }

    fn inspect(&self, id: &str) -> Answer {
        let Some(c) = self.find(id).map(|i| &self.containers[i]) else {
            return message(404, format!("No such container: {id}"));
        };
        (
            200,
            Some(json!({
                "Id": c.id, "Name": format!("/{}", c.name), "Created": "2026-01-01T00:00:00Z", "Image": "sha256:hollow",
                "State": {
                    "Status": c.state(), "Running": c.running, "Paused": false, "Restarting": false,
                    "OOMKilled": false, "Dead": false, "Pid": if c.running { 1 } else { 0 }, "ExitCode": c.exit_code,
                    "Error": "", "StartedAt": "2026-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z",
                    "Health": c.health.filter(|_| c.running).map(|h| json!({"Status": h, "FailingStreak": 0, "Log": []}))
                },
                "Config": { "Image": c.image, "Labels": c.labels, "Cmd": c.command, "StopTimeout": c.stop_timeout },
                "HostConfig": {}, "Mounts": [],
                "NetworkSettings": {
                    "Ports": c.ports.iter().filter(|_| c.running).map(|(target, protocol, host)| (
                        format!("{target}/{protocol}"), json!([{"HostIp": "0.0.0.0", "HostPort": host.to_string()}])
                    )).collect::<serde_json::Map<String, Value>>()
                }
            })),
        )
    }
}

/// A small hash of the engine name, so ids differ across engines.
/// `Some(N)` for a command `sh -c "exit N"`.
fn exits_with(command: &[String]) -> Option<i64> {
    match command {
        [sh, c, script] if sh == "sh" && c == "-c" => script.trim().strip_prefix("exit")?.trim().parse().ok(),
        _ => None,
    }
}

fn crc(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn answers_like_dockerd() {
        let mut e = Engine::new("n1");
        let body = br#"{"Image": "local/busybox:1", "Labels": {"a": "1"}, "Cmd": ["sleep", "1"]}"#;
        let (code, created) = e.answer("POST", "/containers/create", &q(&[("name", "c1")]), body);
        assert_eq!(code, 201);
        let id = created.unwrap()["Id"].as_str().unwrap().to_string();
        assert_eq!(e.answer("POST", "/containers/create", &q(&[("name", "c1")]), body).0, 409);
        assert_eq!(e.answer("POST", "/containers/c1/start", &q(&[]), b"").0, 204);
        assert_eq!(e.answer("POST", &format!("/containers/{id}/start"), &q(&[]), b"").0, 304);
        let (_, listed) = e.answer("GET", "/containers/json", &q(&[("filters", r#"{"label":["a=1"]}"#)]), b"");
        assert_eq!(listed.unwrap().as_array().unwrap().len(), 1);
        let (_, none) = e.answer("GET", "/containers/json", &q(&[("filters", r#"{"label":["a=2"]}"#)]), b"");
        assert!(none.unwrap().as_array().unwrap().is_empty());
        assert!(e.exit("c1", 3));
        let (_, inspected) = e.answer("GET", "/containers/c1/json", &q(&[]), b"");
        assert_eq!(inspected.unwrap()["State"]["ExitCode"], 3);
        assert_eq!(e.answer("DELETE", "/containers/c1", &q(&[("force", "true")]), b"").0, 204);
        assert_eq!(e.answer("DELETE", "/containers/c1", &q(&[]), b"").0, 404);
        e.missing_images.push("nope:1".into());
        assert_eq!(e.answer("POST", "/containers/create", &q(&[]), br#"{"Image": "nope:1"}"#).0, 404);
        assert_eq!(e.answer("GET", "/images/nope:1/json", &q(&[]), b"").0, 404);
        assert_eq!(e.answer("GET", "/images/local/busybox:1/json", &q(&[]), b"").0, 200);
    }
}
