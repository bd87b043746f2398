//! What a replica's container is given besides its image and command: environment, published
//! ports, resource limits, a health check, labels, where it may run and how it stops. All of it
//! is part of the `ContainerTemplate`, so a change makes a new revision.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn parse(text: &str, field: impl Into<String>) -> Result<Self> {
        match text {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(Error::invalid(field, format!("{other:?} is not tcp or udp"))),
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host port one replica holds on its node while it is active: no other replica of any
/// deployment gets it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub protocol: Protocol,
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.protocol, self.port)
    }
}

/// What one replica takes from its node besides units: the memory and CPUs its limits ask
/// for, and its fixed published ports. Reserved with the placement, released with the replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Claim {
    pub memory_bytes: u64,
    pub nano_cpus: u64,
    pub ports: Vec<HostPort>,
}

impl Claim {
    pub fn is_empty(&self) -> bool {
        self.memory_bytes == 0 && self.nano_cpus == 0 && self.ports.is_empty()
    }
}

/// What the replicas on a node hold of it besides units: the sums of their claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reserved {
    pub memory_bytes: u64,
    pub nano_cpus: u64,
    pub ports: std::collections::BTreeSet<HostPort>,
}

/// CPUs in Docker's billionths.
pub const NANO_CPUS_PER_CPU: u64 = 1_000_000_000;

/// A number of CPUs given in billionths, as an operator writes it: `0.25`, `2`.
pub fn cpus_text(nano_cpus: u64) -> String {
    let whole = nano_cpus / NANO_CPUS_PER_CPU;
    let frac = nano_cpus % NANO_CPUS_PER_CPU;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A container port reachable from outside: on `published` of the node's host, or on a port
/// the engine picks when `published` is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    pub target: u16,
    pub published: Option<u16>,
    pub protocol: Protocol,
}

impl PortSpec {
    /// A TCP port published on the same number.
    pub fn tcp(target: u16, published: Option<u16>) -> Self {
        Self { target, published, protocol: Protocol::Tcp }
    }
}

/// Limits given to the engine; they count against a node's memory and CPUs in placement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub memory_bytes: Option<u64>,
    /// CPUs in billionths (Docker's `NanoCpus`): 0.25 CPUs = 250,000,000.
    pub nano_cpus: Option<u64>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.memory_bytes.is_none() && self.nano_cpus.is_none()
    }
}

/// How the engine checks that a container is healthy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum HealthCheck {
    /// Whatever the image says (its `HEALTHCHECK`, or none).
    #[default]
    Image,
    /// None, even if the image has one.
    Disabled,
    Command(HealthCommand),
}

/// A health check of our own. Unset durations and retries are the engine's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCommand {
    /// `["CMD", prog, args..]` or `["CMD-SHELL", "a shell command"]`, as Docker takes it.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_period: Option<Duration>,
}

/// The engine's defaults for what a health check leaves unset (Docker: 30 s, 30 s, 3, 0 s).
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_HEALTH_RETRIES: u32 = 3;

impl HealthCommand {
    /// How long a replica may stay unhealthy before it is replaced: what the check allows
    /// (its retries, each an interval plus a timeout).
    pub fn unhealthy_allowance(&self) -> Duration {
        let each = self.interval.unwrap_or(DEFAULT_HEALTH_INTERVAL) + self.timeout.unwrap_or(DEFAULT_HEALTH_TIMEOUT);
        each * self.retries.unwrap_or(DEFAULT_HEALTH_RETRIES).max(1)
    }
}

/// The engine's verdict of a container's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Within its start period, or not yet checked.
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "starting" => Some(Health::Starting),
            "healthy" => Some(Health::Healthy),
            "unhealthy" => Some(Health::Unhealthy),
            _ => None,
        }
    }
}

/// What a constraint looks at on a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConstraintKey {
    NodeName,
    NodeLabel(String),
}

/// `node.labels.K == V`, `node.labels.K != V`, `node.name == N`, `node.name != N` (Swarm's words).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    pub key: ConstraintKey,
    pub equal: bool,
    pub value: String,
}

impl Constraint {
    /// Parses one constraint; `field` names it in the error (`constraints[0]`).
    pub fn parse(text: &str, field: impl Into<String>) -> Result<Self> {
        let field = field.into();
        let bad = |why: &str| {
            Error::invalid(
                field.clone(),
                format!("{text:?}: {why} (expected node.labels.KEY == VALUE, node.name != NAME, ...)"),
            )
        };
        // One operator; the key's and the value's characters hold no '=' or '!', so the first
        // such character starts it. Spaces around it (and the ends) are ASCII spaces.
        let Some(at) = text.find(['=', '!']) else { return Err(bad("no == or !=")) };
        let equal = match &text[at..] {
            rest if rest.starts_with("==") => true,
            rest if rest.starts_with("!=") => false,
            _ => return Err(bad("no == or !=")),
        };
        let (left, value) = (text[..at].trim_matches(' '), text[at + 2..].trim_matches(' '));
        let value_char = |c: char| !(c <= ' ' || c == '\u{7f}' || c == '=' || c == '!');
        if value.is_empty() || value.chars().count() > 256 || !value.chars().all(value_char) {
            return Err(bad(
                "one value after the operator: 1 to 256 characters, no space, control character, '=' or '!'",
            ));
        }
        let key = if left == "node.name" {
            ConstraintKey::NodeName
        } else if let Some(label) = left.strip_prefix("node.labels.") {
            check_label_key(label).map_err(|why| bad(&why))?;
            ConstraintKey::NodeLabel(label.to_string())
        } else {
            return Err(bad("only node.name and node.labels.KEY can be constrained"));
        };
        Ok(Self { key, equal, value: value.to_string() })
    }

    /// Whether a node with this name and these labels meets the constraint.
    pub fn admits(&self, node: &str, labels: &BTreeMap<String, String>) -> bool {
        let actual = match &self.key {
            ConstraintKey::NodeName => Some(node),
            ConstraintKey::NodeLabel(key) => labels.get(key).map(String::as_str),
        };
        (actual == Some(self.value.as_str())) == self.equal
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            ConstraintKey::NodeName => f.write_str("node.name")?,
            ConstraintKey::NodeLabel(key) => write!(f, "node.labels.{key}")?,
        }
        write!(f, " {} {}", if self.equal { "==" } else { "!=" }, self.value)
    }
}

/// A label key: not empty, at most 128 bytes, letters, digits and `._-/`.
pub fn check_label_key(key: &str) -> std::result::Result<(), String> {
    if key.is_empty() || key.len() > 128 {
        return Err("a label key is 1 to 128 characters".into());
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b)) {
        return Err(format!("label key {key:?} may hold only letters, digits and . _ - /"));
    }
    Ok(())
}

/// Whether `key` is an environment variable name a shell accepts: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Docker's floor for a memory limit.
pub const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;
/// Durations below this are refused (Docker's floor for health check timings).
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// Labels under this prefix are the orchestrator's own.
pub const RESERVED_LABEL_PREFIX: &str = "io.orchestrator.";

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn constraints_parse_with_or_without_spaces_and_match_nodes() {
        let zone_a = Constraint::parse("node.labels.zone == a", "c").unwrap();
        assert_eq!(zone_a, Constraint::parse("node.labels.zone==a", "c").unwrap());
        assert!(zone_a.admits("n1", &labels(&[("zone", "a")])));
        assert!(!zone_a.admits("n1", &labels(&[("zone", "b")])));
        assert!(!zone_a.admits("n1", &labels(&[])));
        let not_n1 = Constraint::parse("node.name != n1", "c").unwrap();
        assert!(!not_n1.admits("n1", &labels(&[])));
        assert!(not_n1.admits("n2", &labels(&[])));
        // A missing label is not equal to anything.
        assert!(Constraint::parse("node.labels.zone != a", "c").unwrap().admits("n1", &labels(&[])));
        assert_eq!(zone_a.to_string(), "node.labels.zone == a");
    }

    #[test]
    fn bad_constraints_name_their_field() {
        for bad in ["zone == a", "node.labels.zone", "node.labels. == a", "node.name ==", "node.id == x", "a == b == c"]
        {
            match Constraint::parse(bad, "constraints[3]") {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "constraints[3]", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn env_keys_are_shell_names() {
        for good in ["A", "_", "GREETING", "a_1"] {
            assert!(is_env_key(good), "{good}");
        }
        for bad in ["", "1BAD", "A-B", "A B", "Ä"] {
            assert!(!is_env_key(bad), "{bad}");
        }
    }

    #[test]
    fn an_unhealthy_replica_is_allowed_its_retries() {
        let check = HealthCommand {
            test: vec!["CMD".into(), "true".into()],
            interval: Some(Duration::from_secs(1)),
            timeout: Some(Duration::from_secs(1)),
            retries: Some(3),
            start_period: None,
        };
        assert_eq!(check.unhealthy_allowance(), Duration::from_secs(6));
    }
}
