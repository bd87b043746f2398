//! Nodes: the Docker Engines replicas run on (the seed's `node.db`).

use std::time::SystemTime;

use crate::address::EngineAddress;
use crate::error::{Error, Result};
use crate::name::NodeName;

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
}

impl Node {
    pub fn used(&self) -> u32 {
        self.capacity - self.available
    }

    /// Whether new replicas may be placed here.
    pub fn is_schedulable(&self) -> bool {
        self.status == NodeStatus::Online
    }
}

/// A node an operator asks to add (`AddNodesToCluster`). It starts `Offline` and becomes
/// eligible after its first successful heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNode {
    pub name: NodeName,
    pub address: EngineAddress,
    pub capacity: u32,
}

impl NewNode {
    pub fn new(name: &str, address: &str, capacity: i64) -> Result<Self> {
        let capacity = u32::try_from(capacity)
            .map_err(|_| Error::invalid("capacity", format!("must be 0..={}, got {capacity}", u32::MAX)))?;
        Ok(Self { name: NodeName::new(name)?, address: EngineAddress::parse(address)?, capacity })
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
