//! `orchestrator serve`: opens the store, wires runtime, scheduler, loops and API, and stops
//! them in order on SIGINT/SIGTERM (stop accepting, finish requests, stop loops).

use std::sync::Arc;

use actix_web::{App, HttpServer};
use anyhow::{Context, Result};
use api_actix::{ApiState, Role, Tokens};
use orchestrator_core::{AccessStore, ClusterStore, ContainerRuntime, Error, LeaseStore, NodeUpdate, RegistryStore};
use runtime_docker::{DockerRuntime, DockerRuntimeConfig};
use scheduler::{ActingLeader, Election, Lead, Loops, Scheduler, SchedulerControl, Tenure};
use store_diesel::DieselStore;
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_actix_web::TracingLogger;

use crate::access_log::AccessLog;
use crate::config::ServeArgs;
use crate::{logging, tokens};

pub async fn run(args: ServeArgs) -> Result<()> {
    let settings = args.resolve()?;
    logging::init(settings.log_format);
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data dir {}", settings.data_dir.display()))?;
    let admin = tokens::admin_token(settings.admin_token, settings.admin_token_file.as_deref(), &settings.data_dir)?;
    if let Some(reader) = &settings.reader_token {
        tokens::check_strength("the reader token", reader)?;
    }

    let registry_key = crate::registry_key::load(settings.registry_key_file.as_deref(), &settings.data_dir)?;
    let db = DieselStore::open_url(&settings.store_url)
        .await
        .context("cannot open the store")?
        .keeping_revisions(settings.revisions_kept)
        .sealing_with(registry_key);
    let mut runtime_config = DockerRuntimeConfig::new(db.cluster_id());
    runtime_config.ping_timeout = settings.ping_timeout;
    runtime_config.request_timeout = settings.engine_timeout;
    runtime_config.stop_grace = settings.stop_grace;
    runtime_config.tls = settings.tls.clone();
    // The API's reads of engines get a runtime (and connection pool) of their own: a pooled
    // connection is driven on the tokio runtime that opened it, and actix's workers run their
    // own; the scheduler's connections stay on the main runtime.
    let db = Arc::new(db);
    let registries: Arc<dyn RegistryStore> = Arc::clone(&db) as _;
    let engines: Arc<dyn ContainerRuntime> = Arc::new(DockerRuntime::new(runtime_config.clone()));
    let runtime = Arc::new(DockerRuntime::new(runtime_config).with_registries(Arc::clone(&registries)));
    let access: Arc<dyn AccessStore> = Arc::clone(&db) as _;
    let store: Arc<dyn ClusterStore> = Arc::clone(&db) as _;

    // The seed's "cluster already has some nodes": added once, kept across restarts.
    for node in settings.nodes {
        let (name, labels) = (node.name.clone(), node.labels.clone());
        match store.add_node(node).await {
            Ok(n) => info!(node = %n.name, address = %n.address, "node registered"),
            // Known already: the labels given on this start go over its own.
            Err(Error::AlreadyExists { .. }) if !labels.is_empty() => {
                let mut merged = store.get_node(&name).await.context("cannot read a node")?.labels;
                merged.extend(labels);
                let update = NodeUpdate { labels: Some(merged), ..NodeUpdate::default() };
                store.update_node(&name, update).await.context("cannot label a node")?;
            }
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e).context("cannot register a node"),
        }
    }

    let scheduler = Arc::new(Scheduler::new(Arc::clone(&store), runtime, settings.scheduler));
    // Every server takes part in the election; the leader runs the loops on a store fenced by
    // its term. Alone on its store, a server leads from its first renewal.
    let acting = ActingLeader::default();
    let election = Election::new(
        Arc::clone(&db) as Arc<dyn LeaseStore>,
        settings.server_id.clone(),
        settings.election,
        lead(Arc::clone(&scheduler), Arc::clone(&db), settings.server_id.clone(), acting.clone()),
    );
    let leadership = election.watch();
    let shutdown = CancellationToken::new();
    let tasks = vec![tokio::spawn(election.run(shutdown.clone()))];

    let mut tokens = Tokens::new().with(&admin, Role::Admin);
    if let Some(reader) = &settings.reader_token {
        tokens = tokens.with(reader, Role::Reader);
    }
    let metrics = api_actix::Metrics::new().context("cannot set up metrics")?;
    let http_metrics = metrics.http_middleware().map_err(anyhow::Error::msg)?;
    let control = Arc::new(SchedulerControl::new(scheduler, leadership, acting));
    let mut state = ApiState::new(store, access, control, engines);
    state.limits = settings.limits;
    state.metrics = Some(metrics);
    state.metrics_public = settings.metrics_public;
    state.registries = Some(registries);
    let server = HttpServer::new(move || {
        let (state, tokens) = (state.clone(), tokens.clone());
        App::new()
            .wrap(http_metrics.clone())
            .wrap(TracingLogger::<AccessLog>::new())
            .configure(move |cfg| api_actix::configure(cfg, state, tokens))
    })
    // Responses go out in several writes (see api-actix's /status): without NODELAY, Nagle's
    // algorithm meeting the client's delayed ACK stalled some responses by 40 ms.
    .on_connect(|connection, _| {
        if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .shutdown_timeout(10)
    .bind(settings.listen)
    .with_context(|| format!("cannot listen on {}", settings.listen))?;
    for addr in server.addrs() {
        // On stdout, for people and for scripts that started us on port 0.
        println!("orchestrator listening on http://{addr}");
    }
    // actix stops on SIGINT/SIGTERM: no new connections, in-flight requests finish.
    server.run().await.context("HTTP server failed")?;
    info!("API stopped; stopping loops and handing over the lease");
    shutdown.cancel();
    for task in tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "a background loop ended abnormally");
        }
    }
    info!("stopped");
    Ok(())
}

/// What this server runs while it leads: the three loops, on a scheduler sharing the API's
/// locks and counters but writing through a store fenced by the term and changing containers
/// only while the tenure lasts; the API's actions use the same scheduler for the term.
fn lead(scheduler: Arc<Scheduler>, store: Arc<DieselStore>, id: String, acting: ActingLeader) -> Lead {
    Box::new(move |tenure: Tenure| {
        let fenced: Arc<dyn ClusterStore> = Arc::new(store.fenced(&id, tenure.term));
        let stop = tenure.stop.clone();
        let scheduler = Arc::new(scheduler.for_tenure(fenced, tenure));
        let acting = acting.clone();
        Box::pin(async move {
            let _published = acting.publish(Arc::clone(&scheduler));
            scheduler.stats().clear_running();
            let loops = Loops::new(&scheduler);
            // One task: stopping leadership drops all three at once.
            tokio::join!(
                loops.heartbeat.run(stop.clone()),
                loops.rebalancer.run(stop.clone()),
                loops.reconciler.run(stop),
            );
            scheduler.stats().clear_running();
        })
    })
}
