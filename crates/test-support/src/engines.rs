//! What an engine itself says runs, through the docker CLI and the labels the runtime writes,
//! so a test's view never depends on the code under test.

use std::process::Command;

use runtime_docker::{LABEL_DEPLOYMENT, LABEL_REPLICA};

/// One of our containers as an engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EngineContainer {
    pub deployment: String,
    /// The replica id label: one container per replica, ever.
    pub replica: String,
    pub id: String,
    /// Docker's state word: `running`, `exited`, `created`, ...
    pub state: String,
}

impl EngineContainer {
    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

/// Every container of ours on the engine at `address` (of `deployment` only, when given), in
/// any state; `None` when the engine does not answer.
pub fn containers(address: &str, deployment: Option<&str>) -> Option<Vec<EngineContainer>> {
    let filter = match deployment {
        Some(d) => format!("label={LABEL_DEPLOYMENT}={d}"),
        None => format!("label={LABEL_DEPLOYMENT}"),
    };
    let format =
        format!("{{{{.Label \"{LABEL_DEPLOYMENT}\"}}}} {{{{.Label \"{LABEL_REPLICA}\"}}}} {{{{.ID}}}} {{{{.State}}}}");
    let out = Command::new("docker")
        .args(["-H", address, "ps", "-a", "--no-trunc", "--filter", &filter, "--format", &format])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let listing = String::from_utf8_lossy(&out.stdout);
    Some(
        listing
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                Some(EngineContainer {
                    deployment: parts.next()?.to_string(),
                    replica: parts.next()?.to_string(),
                    id: parts.next()?.to_string(),
                    state: parts.next()?.to_string(),
                })
            })
            .collect(),
    )
}
