//! Host ports something other than our replicas holds on an engine: a container started by
//! hand, a process on the host. The store cannot know them; an engine says so when it refuses
//! a start. Such a port is kept out of placement on that node for a while, then the node is
//! tried again (the holder may have gone), so a refusal never turns into a hot loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use orchestrator_core::{Claim, Error, HostPort, Node, NodeName};

/// How long a refused port keeps a node out of placement for it.
pub const FOREIGN_HOLD: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct ForeignPorts {
    held: Mutex<HashMap<(NodeName, HostPort), Instant>>,
}

impl ForeignPorts {
    /// Remembers that the engine of `node` refused `port`.
    pub fn hold(&self, node: &NodeName, port: HostPort) {
        self.held.lock().expect("foreign ports lock").insert((node.clone(), port), Instant::now() + FOREIGN_HOLD);
    }

    /// Adds the ports still held by others to the nodes' reserved ports, as placement reads
    /// them, and forgets those whose hold ran out.
    pub fn apply(&self, nodes: &mut BTreeMap<NodeName, Node>) {
        let mut held = self.held.lock().expect("foreign ports lock");
        if held.is_empty() {
            return;
        }
        let now = Instant::now();
        held.retain(|_, until| *until > now);
        for (node, port) in held.keys() {
            if let Some(n) = nodes.get_mut(node) {
                n.reserved.ports.insert(*port);
            }
        }
    }
}

/// The port of `claim` an engine refused a start for, if that is why it failed: the one the
/// message names, or the first when it names none (dockerd: "Bind for 0.0.0.0:18081 failed:
/// port is already allocated"; a host process: "bind: address already in use").
pub fn refused_port(error: &Error, claim: &Claim) -> Option<HostPort> {
    let Error::Engine { message, .. } = error else { return None };
    if !(message.contains("port is already allocated") || message.contains("address already in use")) {
        return None;
    }
    let names = |p: &HostPort| {
        let needle = format!(":{}", p.port);
        message
            .match_indices(&needle)
            .any(|(at, _)| !message[at + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
    };
    claim.ports.iter().find(|p| names(p)).or(claim.ports.first()).copied()
}

#[cfg(test)]
mod tests {
    use orchestrator_core::Protocol;

    use super::*;

    fn port(n: u16) -> HostPort {
        HostPort { protocol: Protocol::Tcp, port: n }
    }

    #[test]
    fn the_refused_port_is_the_one_the_engine_names() {
        let claim = Claim { ports: vec![port(8080), port(18081)], ..Claim::default() };
        let engine = |m: &str| Error::Engine { node: "n1".into(), message: m.into() };
        let taken = engine(
            "driver failed programming external connectivity: Bind for 0.0.0.0:18081 failed: port is already allocated",
        );
        assert_eq!(refused_port(&taken, &claim), Some(port(18081)));
        let host = engine("listen tcp4 0.0.0.0:80801: bind: address already in use");
        assert_eq!(refused_port(&host, &claim), Some(port(8080)), "unnamed: the first");
        assert_eq!(refused_port(&engine("no such image"), &claim), None);
        assert_eq!(refused_port(&Error::Conflict("port is already allocated".into()), &claim), None);
    }

    #[test]
    fn a_hold_shows_as_reserved_until_it_runs_out() {
        let foreign = ForeignPorts::default();
        let name = NodeName::new("n1").unwrap();
        let mut nodes = BTreeMap::from([(
            name.clone(),
            orchestrator_core::NewNode::new("n1", "tcp://127.0.0.1:2375", 10).unwrap().into_node(),
        )]);
        foreign.hold(&name, port(18081));
        foreign.apply(&mut nodes);
        assert!(nodes[&name].reserved.ports.contains(&port(18081)));
        foreign.held.lock().unwrap().values_mut().for_each(|until| *until = Instant::now());
        let mut fresh = BTreeMap::from([(name.clone(), nodes[&name].clone())]);
        fresh.get_mut(&name).unwrap().reserved.ports.clear();
        foreign.apply(&mut fresh);
        assert!(fresh[&name].reserved.ports.is_empty());
        assert!(foreign.held.lock().unwrap().is_empty(), "expired holds are forgotten");
    }
}
