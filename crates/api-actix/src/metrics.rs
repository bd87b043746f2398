//! `GET /metrics` in Prometheus' text format: HTTP metrics from actix-web-prom, and cluster
//! gauges and the loops' counters refreshed from the store and the scheduler at each scrape
//! (so they cost nothing between scrapes). What only grows (`*_total`) is a counter, as
//! Prometheus' conventions say, so `rate()` and `increase()` work on it.

use actix_web::{HttpResponse, web};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use orchestrator_core::NodeStatus;
use prometheus::{Encoder, Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::ApiState;
use crate::error::ApiError;
use crate::summary::cached_summary;

/// The registry and the cluster gauges. Cheap to clone (prometheus types are shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    nodes: IntGaugeVec,
    deployments: IntGauge,
    degraded: IntGauge,
    replicas_required: IntGauge,
    replicas_running: IntGauge,
    heartbeat_tick_seconds: Gauge,
    heartbeat_ticks: IntCounter,
    nodes_marked_offline: IntCounter,
    rebalances: IntCounter,
    replicas_replaced: IntCounter,
    reconcile_passes: IntCounter,
    reconcile_pass_seconds: Gauge,
    engine_call_limit: IntGaugeVec,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::with_opts(Opts::new(name, help).namespace("orchestrator"))?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::with_opts(Opts::new(name, help).namespace("orchestrator"))?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Brings a counter up to `total`, a count the scheduler keeps (it only grows in a process).
fn catch_up(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let nodes = IntGaugeVec::new(Opts::new("nodes", "Nodes by status").namespace("orchestrator"), &["status"])?;
        registry.register(Box::new(nodes.clone()))?;
        let heartbeat_tick_seconds = Gauge::with_opts(
            Opts::new("heartbeat_tick_seconds", "Duration of the last heartbeat tick").namespace("orchestrator"),
        )?;
        registry.register(Box::new(heartbeat_tick_seconds.clone()))?;
        let reconcile_pass_seconds = Gauge::with_opts(
            Opts::new("reconcile_pass_seconds", "Duration of the last reconcile sweep (engine listings, store read, removal of deleted deployments' containers; the converges it hands out run apart)").namespace("orchestrator"),
        )?;
        registry.register(Box::new(reconcile_pass_seconds.clone()))?;
        let engine_call_limit = IntGaugeVec::new(
            Opts::new(
                "engine_call_limit",
                "Container calls an engine is given at once (adapts to how fast it starts containers)",
            )
            .namespace("orchestrator"),
            &["node"],
        )?;
        registry.register(Box::new(engine_call_limit.clone()))?;
        Ok(Self {
            nodes,
            deployments: gauge(&registry, "deployments", "Deployments")?,
            degraded: gauge(&registry, "deployments_degraded", "Deployments running fewer replicas than required")?,
            replicas_required: gauge(&registry, "replicas_required", "Replicas required, all deployments")?,
            replicas_running: gauge(&registry, "replicas_running", "Replicas running, all deployments")?,
            heartbeat_tick_seconds,
            heartbeat_ticks: counter(&registry, "heartbeat_ticks_total", "Heartbeat ticks since start")?,
            nodes_marked_offline: counter(&registry, "nodes_marked_offline_total", "Times a node was marked offline")?,
            rebalances: counter(&registry, "rebalances_total", "Nodes whose replicas were replaced")?,
            replicas_replaced: counter(&registry, "replicas_replaced_total", "Replicas lost with their node")?,
            reconcile_passes: counter(&registry, "reconcile_passes_total", "Full reconcile passes")?,
            reconcile_pass_seconds,
            engine_call_limit,
            registry,
        })
    }

    /// The middleware counting requests and their durations into the same registry.
    pub fn http_middleware(&self) -> Result<PrometheusMetrics, String> {
        PrometheusMetricsBuilder::new("orchestrator_api")
            .registry(self.registry.clone())
            .mask_unmatched_patterns("UNKNOWN")
            .build()
            .map_err(|e| e.to_string())
    }

    async fn refresh(&self, state: &ApiState) -> Result<(), ApiError> {
        let summary = cached_summary(state).await?;
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (status, count) in [
            (NodeStatus::Online, summary.nodes.online),
            (NodeStatus::Offline, summary.nodes.offline),
            (NodeStatus::Draining, summary.nodes.draining),
        ] {
            self.nodes.with_label_values(&[status.as_str()]).set(as_i64(count));
        }
        self.deployments.set(as_i64(summary.deployments.total));
        self.degraded.set(as_i64(summary.deployments.degraded));
        self.replicas_required.set(as_i64(summary.replicas.required));
        self.replicas_running.set(as_i64(summary.replicas.running));
        let stats = state.control.loop_stats();
        self.heartbeat_tick_seconds.set(stats.last_heartbeat_tick.as_secs_f64());
        self.reconcile_pass_seconds.set(stats.last_reconcile_pass.as_secs_f64());
        catch_up(&self.heartbeat_ticks, stats.heartbeat_ticks);
        catch_up(&self.nodes_marked_offline, stats.nodes_marked_offline);
        catch_up(&self.rebalances, stats.rebalances);
        catch_up(&self.replicas_replaced, stats.replicas_replaced);
        catch_up(&self.reconcile_passes, stats.reconcile_passes);
        // Nodes removed since the last scrape leave the scheduler's list: reset, then set.
        self.engine_call_limit.reset();
        for (node, limit) in &stats.engine_call_limits {
            self.engine_call_limit.with_label_values(&[node.as_str()]).set(i64::from(*limit));
        }
        Ok(())
    }
}

pub async fn metrics(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let Some(metrics) = &state.metrics else {
        return Err(ApiError::NotFound("metrics are not enabled".into()));
    };
    metrics.refresh(&state).await?;
    let mut body = Vec::new();
    TextEncoder::new().encode(&metrics.registry.gather(), &mut body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().content_type(TextEncoder::new().format_type()).body(body))
}
