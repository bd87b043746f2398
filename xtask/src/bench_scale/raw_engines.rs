//! The physical reference for "replicas running per second end to end": containers created
//! and started on hollow engines by a bare Docker API client (bollard, as runtime-docker uses),
//! no orchestrator in between, many calls in flight. The engines are served from this process,
//! as in the run they are compared with; what neither side can go faster than on this machine.

use std::time::Instant;

use anyhow::Result;
use bollard::Docker;
use futures::StreamExt;

/// Calls in flight over all engines: past this the engines' process is the limit.
const IN_FLIGHT: usize = 256;

/// Containers created and started per second on `nodes` fresh hollow engines, `count` of them
/// spread evenly, from a bare client.
pub async fn creates_and_starts(nodes: usize, count: usize) -> Result<f64> {
    let cluster = hollow_node::HollowCluster::start(nodes).await?;
    let clients: Vec<Docker> = (0..cluster.len())
        .map(|i| {
            let address = cluster.address(i)?.replace("tcp://", "http://");
            Ok(Docker::connect_with_http(&address, 60, bollard::API_DEFAULT_VERSION)?)
        })
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let results: Vec<Result<(), bollard::errors::Error>> = futures::stream::iter(0..count)
        .map(|i| {
            let docker = clients[i % clients.len()].clone();
            async move { crate::bench_e2e::create_and_start(&docker, &format!("raw-{i}")).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let took = started.elapsed();
    for r in results {
        r?;
    }
    Ok(count as f64 / took.as_secs_f64())
}
