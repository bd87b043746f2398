//! Nodes: the Docker Engines replicas run on (the seed's `node.db`).

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::address::{EngineAddress, is_hostname};
use crate::error::{Error, Result};
use crate::name::NodeName;
use crate::workload::{Claim, NANO_CPUS_PER_CPU, Reserved};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Answering heartbeats; eligible for new replicas.
    Online,
    /// Missed too many heartbeats (or not yet seen); its replicas are moved elsewhere.
    Offline,
    /// Being emptied by an operator; keeps running what it has, gets nothing new.
    Draining,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Online => "online",
            NodeStatus::Offline => "offline",
            NodeStatus::Draining => "draining",
        }
    }
}

impl std::str::FromStr for NodeStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "online" => Ok(NodeStatus::Online),
            "offline" => Ok(NodeStatus::Offline),
            "draining" => Ok(NodeStatus::Draining),
            other => Err(Error::invalid("status", format!("{other:?} is not online, offline or draining"))),
        }
    }
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: NodeName,
    pub address: EngineAddress,
    /// Total units of work the node accepts (the seed's `nodeCapacity`).
    pub capacity: u32,
    /// Units not reserved by a replica (the seed's `nodeAvailCapacity`).
    pub available: u32,
    pub status: NodeStatus,
    pub last_heartbeat: Option<SystemTime>,
    /// What constraints (`node.labels.K == V`) look at.
    pub labels: BTreeMap<String, String>,
    /// Where its published ports are reached, when not the host of its engine address.
    pub public_host: Option<String>,
    /// What its engine reported at first contact.
    pub engine: Option<EngineFacts>,
    /// Memory, CPUs and host ports its active replicas hold.
    pub reserved: Reserved,
}

/// A node's engine as it described itself (`NCPU`, `MemTotal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineFacts {
    pub cpus: u32,
    pub memory_bytes: u64,
}

impl EngineFacts {
    pub fn nano_cpus(&self) -> u64 {
        u64::from(self.cpus) * NANO_CPUS_PER_CPU
    }
}

/// A change to a node's labels, public host or engine facts; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUpdate {
    pub labels: Option<BTreeMap<String, String>>,
    /// `Some(None)` clears it.
    pub public_host: Option<Option<String>>,
    pub engine: Option<EngineFacts>,
}

/// Checks node labels (keys as container labels are; values without NUL), naming the field.
pub fn check_node_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > 256 {
        return Err(Error::invalid("labels", "at most 256 labels"));
    }
    for (key, value) in labels {
        crate::workload::check_label_key(key).map_err(|why| Error::invalid(format!("labels.{key}"), why))?;
        if value.is_empty() || value.chars().count() > 256 || value.contains('\0') || value.trim() != value {
            return Err(Error::invalid(
                format!("labels.{key}"),
                "a value is 1 to 256 characters, no NUL, no leading or trailing space",
            ));
        }
    }
    Ok(())
}

/// A host name or an IPv4 address (an IPv6 one in brackets) clients reach the node at.
pub fn check_public_host(host: &str) -> Result<()> {
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        // In hex groups only: the document's pattern has no dotted-quad tail.
        Some(v6) => !v6.contains('.') && v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => is_hostname(host),
    };
    if ok { Ok(()) } else { Err(Error::invalid("public_host", format!("{host:?} is not a host name or IP address"))) }
}

impl Node {
    /// An online node with all of `capacity` free, no labels and nothing reserved: what a tool
    /// or a test holds for an engine before any store has recorded it.
    pub fn online(name: NodeName, address: EngineAddress, capacity: u32) -> Node {
        Node {
            name,
            address,
            capacity,
            available: capacity,
            status: NodeStatus::Online,
            last_heartbeat: None,
            labels: BTreeMap::new(),
            public_host: None,
            engine: None,
            reserved: Reserved::default(),
        }
    }

    /// Where its published ports are reached: `public_host`, else the engine address's host;
    /// `None` for a unix-socket node without one (it cannot take replicas that publish).
    pub fn reachable_host(&self) -> Option<&str> {
        self.public_host.as_deref().or_else(|| self.address.host())
    }

    pub fn used(&self) -> u32 {
        self.capacity - self.available
    }

    /// Whether new replicas may be placed here.
    pub fn is_schedulable(&self) -> bool {
        self.status == NodeStatus::Online
    }

    /// Why `units` and the `claims` of placements all at once do not fit what the node has
    /// free, if they do not: the check both stores make before they reserve.
    pub fn shortfall<'a>(&self, units: u64, claims: impl IntoIterator<Item = &'a Claim>) -> Option<Error> {
        let name = self.name.as_str();
        if self.status != NodeStatus::Online {
            return Some(Error::node_not_online(name, self.status));
        }
        if u64::from(self.available) < units {
            return Some(Error::InsufficientCapacity {
                node: name.to_string(),
                needed: units,
                available: u64::from(self.available),
            });
        }
        let claims: Vec<&Claim> = claims.into_iter().collect();
        if let Some(taken) = self.port_conflict(claims.iter().copied()) {
            return Some(taken);
        }
        let memory: u64 = claims.iter().map(|c| c.memory_bytes).sum();
        let nano_cpus: u64 = claims.iter().map(|c| c.nano_cpus).sum();
        let short = |what: &str, free: String, needed: String| {
            Some(Error::Conflict(format!("node {name:?} has {free} {what} free, {needed} needed")))
        };
        if memory > 0 {
            let total = self.engine.map_or(0, |e| e.memory_bytes);
            let free = total.saturating_sub(self.reserved.memory_bytes);
            if free < memory {
                return short("bytes of memory", free.to_string(), memory.to_string());
            }
        }
        if nano_cpus > 0 {
            let total = self.engine.map_or(0, |e| e.nano_cpus());
            let free = total.saturating_sub(self.reserved.nano_cpus);
            if free < nano_cpus {
                return short("CPUs", crate::workload::cpus_text(free), crate::workload::cpus_text(nano_cpus));
            }
        }
        None
    }

    /// A host port the `claims` ask for that a replica here holds, or that two of them ask for.
    pub fn port_conflict<'a>(&self, claims: impl IntoIterator<Item = &'a Claim>) -> Option<Error> {
        let mut asked = std::collections::BTreeSet::new();
        for port in claims.into_iter().flat_map(|c| &c.ports) {
            if self.reserved.ports.contains(port) || !asked.insert(*port) {
                return Some(Error::Conflict(format!("node {:?} has {port} taken", self.name.as_str())));
            }
        }
        None
    }

    /// What a planner counts once it puts a replica of `units` and `claim` here (the store
    /// reserves the same when the placement is recorded).
    pub fn hold(&mut self, units: u32, claim: &Claim) {
        self.available = self.available.saturating_sub(units);
        self.reserved.memory_bytes += claim.memory_bytes;
        self.reserved.nano_cpus += claim.nano_cpus;
        self.reserved.ports.extend(claim.ports.iter().copied());
    }

    /// `hold` undone: a replica of `units` and `claim` leaves.
    pub fn release(&mut self, units: u32, claim: &Claim) {
        self.available = (self.available + units).min(self.capacity);
        self.reserved.memory_bytes = self.reserved.memory_bytes.saturating_sub(claim.memory_bytes);
        self.reserved.nano_cpus = self.reserved.nano_cpus.saturating_sub(claim.nano_cpus);
        for p in &claim.ports {
            self.reserved.ports.remove(p);
        }
    }

    /// How many more replicas claiming `claim` each its memory, CPUs and ports leave room for
    /// (units aside). A claim of memory or CPUs needs the engine's facts: a node not yet heard
    /// from has no room for one.
    pub fn room_for(&self, claim: &Claim) -> u32 {
        if claim.ports.iter().any(|p| self.reserved.ports.contains(p)) {
            return 0;
        }
        let mut room = if claim.ports.is_empty() { u32::MAX } else { 1 };
        let fit =
            |total: u64, used: u64, each: u64| u32::try_from(total.saturating_sub(used) / each).unwrap_or(u32::MAX);
        if claim.memory_bytes > 0 {
            let Some(engine) = self.engine else { return 0 };
            room = room.min(fit(engine.memory_bytes, self.reserved.memory_bytes, claim.memory_bytes));
        }
        if claim.nano_cpus > 0 {
            let Some(engine) = self.engine else { return 0 };
            room = room.min(fit(engine.nano_cpus(), self.reserved.nano_cpus, claim.nano_cpus));
        }
        room
    }
}

/// A node an operator asks to add (`AddNodesToCluster`). It starts `Offline` and becomes
/// eligible after its first successful heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNode {
    pub name: NodeName,
    pub address: EngineAddress,
    pub capacity: u32,
    pub labels: BTreeMap<String, String>,
    pub public_host: Option<String>,
}

impl NewNode {
    pub fn new(name: &str, address: &str, capacity: i64) -> Result<Self> {
        let capacity = u32::try_from(capacity)
            .map_err(|_| Error::invalid("capacity", format!("must be 0..={}, got {capacity}", u32::MAX)))?;
        Ok(Self {
            name: NodeName::new(name)?,
            address: EngineAddress::parse(address)?,
            capacity,
            labels: BTreeMap::new(),
            public_host: None,
        })
    }

    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Result<Self> {
        check_node_labels(&labels)?;
        self.labels = labels;
        Ok(self)
    }

    pub fn with_public_host(mut self, host: Option<String>) -> Result<Self> {
        if let Some(host) = &host {
            check_public_host(host)?;
        }
        self.public_host = host;
        Ok(self)
    }

    /// The node as first stored: offline, all capacity free, not yet heard from.
    pub fn into_node(self) -> Node {
        Node {
            name: self.name,
            address: self.address,
            capacity: self.capacity,
            available: self.capacity,
            status: NodeStatus::Offline,
            last_heartbeat: None,
            labels: self.labels,
            public_host: self.public_host,
            engine: None,
            reserved: Reserved::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_node_validates_every_field() {
        assert!(NewNode::new("n1", "tcp://127.0.0.1:2375", 10).is_ok());
        let field = |r: Result<NewNode>| match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field(NewNode::new("N1", "tcp://127.0.0.1:2375", 1)), "name");
        assert_eq!(field(NewNode::new("n1", "nope", 1)), "address");
        assert_eq!(field(NewNode::new("n1", "tcp://127.0.0.1:2375", -1)), "capacity");
    }

    #[test]
    fn status_round_trips_through_text() {
        for s in [NodeStatus::Online, NodeStatus::Offline, NodeStatus::Draining] {
            assert_eq!(s.as_str().parse::<NodeStatus>().unwrap(), s);
        }
        assert!("up".parse::<NodeStatus>().is_err());
    }
}
