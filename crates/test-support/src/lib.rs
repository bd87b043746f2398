//! What the test trees, benches and xtask would otherwise each copy: where the workspace is,
//! whether a missing real component fails or skips a test, the local cluster's node list, what
//! the engines themselves say runs, HAProxy's config, and engines in memory (`fake_engines`, a
//! plain `ContainerRuntime` for tests without Docker).

#![forbid(unsafe_code)]

pub mod engines;
pub mod fake_engines;
pub mod haproxy;
pub mod local_cluster;

use std::path::PathBuf;

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Under CI (`CI=true`) or with `ORCH_REQUIRE_DOCKER=1` a missing real component (engines,
/// PostgreSQL, HAProxy, Chromium) fails a test instead of skipping it.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true") || std::env::var("ORCH_REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}
