//! The scheduler's behaviour with fake engines (mockall) and the in-memory store, in virtual
//! time (`start_paused`): no real sleeps.

mod fake;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::{
    ContainerState, DeploymentStore, NodeName, NodeStatus, NodeStore, ReplicaFilter, ReplicaState, ReplicaStore,
};
use scheduler::{Heartbeat, Loops, Reconciler, SchedulerConfig};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use fake::{Engines, Harness, Slow};

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

async fn running(h: &Harness, deployment: &str) -> Vec<orchestrator_core::Replica> {
    let name = orchestrator_core::DeploymentName::new(deployment).unwrap();
    h.store
        .list_replicas(ReplicaFilter::deployment(&name).active())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.state == ReplicaState::Running)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn create_spreads_replicas_and_starts_each_once() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(3, 10).await;
    h.deploy("web", "local/busybox:1", 7).await;
    assert_eq!(running(&h, "web").await.len(), 7);
    assert_eq!(h.engines.containers().len(), 7);
    let counts: Vec<usize> = ["node1", "node2", "node3"].iter().map(|n| h.engines.count_on(n)).collect();
    assert_eq!(counts, [3, 2, 2]);
    assert_eq!(h.node("node1").await.available, 7);
    // Converging again changes nothing.
    let again = h.scheduler.converge(&orchestrator_core::DeploymentName::new("web").unwrap()).await.unwrap();
    assert_eq!((again.started, again.removed), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn short_capacity_degrades_then_completes_when_room_appears() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(2, 2).await;
    let web = h.deploy("web", "local/busybox:1", 6).await;
    assert_eq!(running(&h, "web").await.len(), 4);
    h.store.add_node(orchestrator_core::NewNode::new("node9", "tcp://10.0.0.9:2375", 5).unwrap()).await.unwrap();
    h.store.set_node_status(&node("node9"), NodeStatus::Online, None).await.unwrap();
    let report = h.scheduler.converge(&web).await.unwrap();
    assert_eq!((report.started, report.unplaced), (2, 0));
    assert_eq!(h.engines.count_on("node9"), 2);
}

#[tokio::test(start_paused = true)]
async fn scale_down_removes_from_the_most_loaded_nodes_first() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(2, 10).await;
    let web = h.deploy("web", "local/busybox:1", 4).await;
    h.store.add_node(orchestrator_core::NewNode::new("node3", "tcp://10.0.0.3:2375", 10).unwrap()).await.unwrap();
    h.store.set_node_status(&node("node3"), NodeStatus::Online, None).await.unwrap();
    let d = h.store.get_deployment(&web).await.unwrap();
    h.scheduler.scale_deployment(&web, 5, d.version).await.unwrap();
    h.scheduler.converge(&web).await.unwrap();
    assert_eq!([h.engines.count_on("node1"), h.engines.count_on("node2"), h.engines.count_on("node3")], [2, 2, 1]);
    h.scheduler.scale_deployment(&web, 3, d.version + 1).await.unwrap();
    h.scheduler.converge(&web).await.unwrap();
    assert_eq!([h.engines.count_on("node1"), h.engines.count_on("node2"), h.engines.count_on("node3")], [1, 1, 1]);
    assert_eq!(h.node("node1").await.available, 9);
}

/// Heartbeat and rebalancer wired with the real hand-off; returns the heartbeat to tick by hand.
fn heartbeat_with_rebalancer(h: &Harness, shutdown: &CancellationToken) -> Heartbeat {
    let loops = Loops::new(&h.scheduler);
    tokio::spawn(loops.rebalancer.run(shutdown.clone()));
    loops.heartbeat
}

/// `nodes` online nodes of capacity 10, and their heartbeat (with a rebalancer) to tick by hand.
async fn nodes_with_heartbeat(nodes: usize) -> (Harness, CancellationToken, Heartbeat) {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(nodes, 10).await;
    let shutdown = CancellationToken::new();
    let heartbeat = heartbeat_with_rebalancer(&h, &shutdown);
    (h, shutdown, heartbeat)
}

#[tokio::test(start_paused = true)]
async fn node_down_is_handed_off_acknowledged_and_replaced() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(3, 10).await;
    h.deploy("web", "local/busybox:1", 6).await;
    let shutdown = CancellationToken::new();
    let mut heartbeat = heartbeat_with_rebalancer(&h, &shutdown);

    // Silent (pings time out): a miss per tick, offline at the K-th.
    h.engines.set_silent("node2", true);
    for _ in 0..2 {
        let tick = heartbeat.tick().await.unwrap();
        assert!(tick.went_offline.is_empty(), "K-1 misses must not mark a node offline");
    }
    assert_eq!(h.node("node2").await.status, NodeStatus::Online);
    let tick = heartbeat.tick().await.unwrap();
    assert_eq!(tick.went_offline, [node("node2")]);
    // tick() returned only after the rebalancer acknowledged: the loss is already recorded.
    assert!(h.store.list_replicas(ReplicaFilter::node(&node("node2")).active()).await.unwrap().is_empty());
    assert_eq!(h.node("node2").await.available, 10);

    tokio::time::sleep(Duration::from_millis(10)).await; // let the replacements start
    let web = running(&h, "web").await;
    assert_eq!(web.len(), 6);
    assert!(web.iter().all(|r| r.node != node("node2")));
    assert_eq!(h.scheduler.stats().rebalances(), 1);
    shutdown.cancel();
}

/// An engine that goes away between ticks ends its watch, and is checked and marked offline
/// then, not at the next tick; a watch that ends while the engine still answers changes nothing.
#[tokio::test(start_paused = true)]
async fn an_engine_whose_watch_ends_is_offline_before_the_next_tick() {
    let interval = SchedulerConfig::default().heartbeat_interval;
    let (h, shutdown, heartbeat) = nodes_with_heartbeat(3).await;
    h.deploy("web", "local/busybox:1", 6).await;
    tokio::spawn(heartbeat.run(shutdown.clone()));
    // The first tick (at once) starts the watches; kill an engine a fifth into the interval.
    tokio::time::sleep(interval / 5).await;
    h.engines.set_down("node2", true);
    let killed = tokio::time::Instant::now();
    while h.node("node2").await.status != NodeStatus::Offline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // K refusals a twentieth of the interval apart, well before the tick due at `interval`
    // (a fifth apart, as before, would take 2/5 of it).
    assert!(killed.elapsed() < interval / 5, "offline after {:?}", killed.elapsed());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(running(&h, "web").await.iter().all(|r| r.node != node("node2")), "replaced");
    assert_eq!(h.scheduler.stats().nodes_marked_offline(), 1);
    shutdown.cancel();
}

/// Past the ping budget the ticks space out to nodes / budget (6 nodes at 4 pings a second:
/// one tick each 1.5 s, not each 500 ms); a killed engine is still seen at once, by its watch.
#[tokio::test(start_paused = true)]
async fn past_the_ping_budget_ticks_space_out_and_a_kill_is_still_seen_at_once() {
    let h = Harness::new(SchedulerConfig { pings_per_second: 4, ..SchedulerConfig::default() });
    h.online_nodes(6, 10).await;
    let shutdown = CancellationToken::new();
    let heartbeat = heartbeat_with_rebalancer(&h, &shutdown);
    tokio::spawn(heartbeat.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(6_100)).await;
    let ticks = h.scheduler.stats().heartbeat_ticks();
    assert!((4..=5).contains(&ticks), "{ticks} ticks in 6.1 s (13 at one a 500 ms)");
    h.engines.set_down("node2", true);
    let killed = tokio::time::Instant::now();
    while h.node("node2").await.status != NodeStatus::Offline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(killed.elapsed() < Duration::from_millis(200), "offline after {:?}", killed.elapsed());
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_watch_that_ends_while_the_engine_answers_marks_nothing() {
    let (h, shutdown, mut heartbeat) = nodes_with_heartbeat(2).await;
    heartbeat.tick().await.unwrap();
    // A slow engine (its pings time out) and one that answers: neither is marked by a check.
    h.engines.set_silent("node1", true);
    let marked = heartbeat.check_now([node("node1"), node("node2")].into()).await.unwrap();
    assert!(marked.is_empty(), "a slow engine is the ticks' to judge");
    let marked = heartbeat.check_now([node("node2")].into()).await.unwrap();
    assert!(marked.is_empty());
    assert_eq!(h.node("node1").await.status, NodeStatus::Online);
    assert_eq!(h.node("node2").await.status, NodeStatus::Online);
    h.engines.set_down("node2", true);
    assert_eq!(heartbeat.check_now([node("node2")].into()).await.unwrap(), [node("node2")]);
    // The watches end with the heartbeat: a leader's term ending leaves no connection open.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(h.engines.watching(), 1, "node1's; node2 is offline and unwatched");
    drop(heartbeat);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(h.engines.watching(), 0);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_refusing_engine_is_offline_within_one_tick_after_k_quick_probes() {
    let interval = SchedulerConfig::default().heartbeat_interval;
    let (h, shutdown, mut heartbeat) = nodes_with_heartbeat(3).await;
    h.deploy("web", "local/busybox:1", 6).await;

    h.engines.set_down("node2", true); // connection refused: nothing listens there
    let started = tokio::time::Instant::now();
    let tick = heartbeat.tick().await.unwrap();
    assert_eq!(tick.went_offline, [node("node2")]);
    // K probes a twentieth of the interval apart: early in the one tick.
    assert!(started.elapsed() < interval / 5, "{:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(running(&h, "web").await.iter().all(|r| r.node != node("node2")));

    // One answer brings it back at once.
    h.engines.set_down("node2", false);
    heartbeat.tick().await.unwrap();
    assert_eq!(h.node("node2").await.status, NodeStatus::Online);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_flapping_node_within_k_misses_stays_online() {
    let (h, shutdown, mut heartbeat) = nodes_with_heartbeat(2).await;
    for silent in [true, true, false, true, true, false, true, true] {
        h.engines.set_silent("node1", silent);
        let tick = heartbeat.tick().await.unwrap();
        assert!(tick.went_offline.is_empty());
    }
    assert_eq!(h.node("node1").await.status, NodeStatus::Online);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_returning_partitioned_node_loses_its_surplus_copies() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(3, 10).await;
    h.deploy("web", "local/busybox:1", 6).await;
    let shutdown = CancellationToken::new();
    let mut heartbeat = heartbeat_with_rebalancer(&h, &shutdown);

    // Partition: the engine stops answering but its containers keep running.
    h.engines.set_down("node3", true);
    for _ in 0..3 {
        heartbeat.tick().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(running(&h, "web").await.len(), 6);
    assert_eq!(h.engines.count_on("node3"), 2, "the stale copies still run behind the partition");

    h.engines.set_down("node3", false);
    let tick = heartbeat.tick().await.unwrap();
    assert_eq!(tick.came_online, [node("node3")]);
    Reconciler::new(h.scheduler.clone(), Arc::new(Notify::new())).pass().await.unwrap();
    assert_eq!(h.engines.count_on("node3"), 0);
    assert_eq!(h.engines.containers().len(), 6, "exactly the required count");
    assert_eq!(running(&h, "web").await.len(), 6);
    assert!(h.store.list_replicas(ReplicaFilter::node(&node("node3"))).await.unwrap().is_empty(), "lost records gone");
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn after_a_crash_pending_replicas_are_adopted_or_started_never_duplicated() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(2, 10).await;
    let spec = orchestrator_core::DeploymentSpec::of("local/busybox:1", 4).unwrap();
    let web = h
        .store
        .create_deployment(&orchestrator_core::DeploymentName::new("web").unwrap(), spec, Default::default())
        .await
        .unwrap();
    // The crashed server had reserved 4 replicas and created containers for two of them.
    let placements: Vec<_> = ["node1", "node1", "node2", "node2"]
        .iter()
        .map(|n| orchestrator_core::Placement {
            deployment: web.name.clone(),
            node: node(n),
            units: 1,
            revision: 1,
            claim: Default::default(),
        })
        .collect();
    let placed = h.store.place_replicas(&placements).await.unwrap();
    for r in &placed[..2] {
        h.engines.with(r.node.as_str(), |e| {
            e.containers
                .insert(("web".into(), r.id.0), (format!("pre-{}", r.id), ContainerState::Running, String::new()));
        });
    }
    // And a container whose record never made it (unknown to the store): surplus.
    h.engines.with("node2", |e| {
        e.containers.insert(("web".into(), 999), ("ghost".into(), ContainerState::Running, String::new()));
    });

    Reconciler::new(h.scheduler.clone(), Arc::new(Notify::new())).pass().await.unwrap();
    let web_running = running(&h, "web").await;
    assert_eq!(web_running.len(), 4);
    assert_eq!(h.engines.containers().len(), 4);
    let adopted = web_running.iter().find(|r| r.id == placed[0].id).unwrap();
    assert_eq!(adopted.container_id.as_deref(), Some(format!("pre-{}", placed[0].id).as_str()));
}

#[tokio::test(start_paused = true)]
async fn exited_containers_are_replaced_by_the_reconciler_after_a_growing_backoff() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(1, 10).await;
    let name = h.deploy("web", "local/busybox:1", 2).await;
    let reconciler = Reconciler::new(h.scheduler.clone(), Arc::new(Notify::new()));
    let crash = |id: u64| {
        h.engines.with("node1", |e| e.containers.get_mut(&("web".into(), id)).unwrap().1 = ContainerState::Exited)
    };
    let first = running(&h, "web").await[0].clone();
    h.engines.with("node1", |e| {
        e.printed.insert(("web".into(), first.id.0), vec!["starting".into(), "boom".into()]);
        e.oom_killed.insert(("web".into(), first.id.0));
    });
    crash(first.id.0);
    reconciler.pass().await.unwrap();
    // Removed at once; its replacement waits out the first backoff (1 s).
    assert_eq!(running(&h, "web").await.len(), 1);
    // How it ended and what it said last are kept.
    let kept = h.store.list_exits(&name, true).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].replica, kept[0].revision, kept[0].started_at), (first.id, 1, first.started_at));
    assert_eq!(kept[0].reason, orchestrator_core::EndReason::Exited { code: Some(1), oom_killed: true });
    let said: Vec<&str> = kept[0].logs.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(said, ["starting", "boom"]);
    let streak = h.store.get_deployment(&name).await.unwrap().crash_loop.expect("a streak");
    assert_eq!((streak.restarts, streak.last_exit_code), (1, Some(1)));
    assert_eq!(streak.retry_at.duration_since(streak.last_failure_at).unwrap(), Duration::from_secs(1));
    reconciler.pass().await.unwrap();
    assert_eq!(running(&h, "web").await.len(), 1, "still backing off");

    std::thread::sleep(Duration::from_millis(1_100));
    reconciler.pass().await.unwrap();
    let now = running(&h, "web").await;
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|r| r.id != first.id));
    assert_eq!(h.engines.containers().len(), 2);

    // Failing again doubles the wait; an event says so.
    crash(now[1].id.0);
    reconciler.pass().await.unwrap();
    let streak = h.store.get_deployment(&name).await.unwrap().crash_loop.unwrap();
    assert_eq!(streak.restarts, 2);
    assert_eq!(streak.retry_at.duration_since(streak.last_failure_at).unwrap(), Duration::from_secs(2));
    let events = orchestrator_core::EventStore::list_events(&*h.store, 0, 1_000).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == orchestrator_core::EventKind::DeploymentCrashLooping).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn drain_moves_replicas_then_remove_forgets_the_node() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(3, 10).await;
    h.deploy("web", "local/busybox:1", 6).await;
    h.deploy("db", "local/other:1", 3).await;
    h.scheduler.remove_node(&node("node1")).await.unwrap();
    assert_eq!(h.engines.count_on("node1"), 0);
    assert_eq!(running(&h, "web").await.len(), 6);
    assert_eq!(running(&h, "db").await.len(), 3);
    assert!(h.store.get_node(&node("node1")).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn drain_without_room_keeps_replicas_and_says_so() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(2, 2).await;
    h.deploy("web", "local/busybox:1", 4).await;
    let err = h.scheduler.remove_node(&node("node1")).await.unwrap_err();
    assert!(matches!(err, orchestrator_core::Error::Conflict(_)), "{err}");
    assert_eq!(h.engines.count_on("node1"), 2, "nothing dropped below required");
    assert_eq!(h.node("node1").await.status, NodeStatus::Draining);
}

#[tokio::test(start_paused = true)]
async fn spawning_is_serialized_per_image_and_parallel_across_images() {
    let engines = Engines::default();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let runtime = Arc::new(Slow { starts: starts.clone(), ..Slow::starting_in(&engines, Duration::from_millis(100)) });
    let h = Harness::with_runtime(SchedulerConfig::default(), engines, runtime);
    h.online_nodes(2, 100).await;
    let (a, b, c) = tokio::join!(
        h.deploy("a", "local/busybox:1", 4),
        h.deploy("b", "local/busybox:1", 4),
        h.deploy("c", "local/other:1", 4),
    );
    let _ = (a, b, c);
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 12);
    let span = |d: &str| {
        let of: Vec<_> = starts.iter().filter(|(x, _, _)| x == d).collect();
        (of.iter().map(|s| s.1).min().unwrap(), of.iter().map(|s| s.2).max().unwrap())
    };
    let (a, b, c) = (span("a"), span("b"), span("c"));
    assert!(a.1 <= b.0 || b.1 <= a.0, "same image overlapped: {a:?} {b:?}");
    assert!(c.0 < a.1.max(b.1) && a.0.min(b.0) < c.1, "different images should overlap: {a:?} {b:?} {c:?}");
}

#[tokio::test(start_paused = true)]
async fn loops_run_and_stop_on_shutdown() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(2, 10).await;
    h.deploy("web", "local/busybox:1", 4).await;
    let shutdown = CancellationToken::new();
    let loops = Loops::new(&h.scheduler);
    let tasks = [
        tokio::spawn(loops.heartbeat.run(shutdown.clone())),
        tokio::spawn(loops.rebalancer.run(shutdown.clone())),
        tokio::spawn(loops.reconciler.run(shutdown.clone())),
    ];
    h.engines.set_down("node1", true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(h.node("node1").await.status, NodeStatus::Offline);
    assert_eq!(running(&h, "web").await.len(), 4);
    assert_eq!(h.engines.count_on("node2"), 4);
    assert!(h.scheduler.stats().heartbeat_ticks() >= 5);
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(!h.scheduler.stats().is_running(scheduler::Loop::Heartbeat));
}

#[tokio::test(start_paused = true)]
async fn opt_in_rebalance_moves_replicas_onto_a_new_node_one_at_a_time() {
    for enabled in [false, true] {
        let h = Harness::new(SchedulerConfig { rebalance_on_join: enabled, ..SchedulerConfig::default() });
        h.online_nodes(2, 10).await;
        h.deploy("web", "local/busybox:1", 6).await;
        h.store.add_node(orchestrator_core::NewNode::new("node3", "tcp://10.0.0.3:2375", 10).unwrap()).await.unwrap();
        h.store.set_node_status(&node("node3"), NodeStatus::Online, None).await.unwrap();
        Reconciler::new(h.scheduler.clone(), Arc::new(Notify::new())).pass().await.unwrap();
        let counts = [h.engines.count_on("node1"), h.engines.count_on("node2"), h.engines.count_on("node3")];
        assert_eq!(counts, if enabled { [2, 2, 2] } else { [3, 3, 0] }, "rebalance_on_join = {enabled}");
        assert_eq!(running(&h, "web").await.len(), 6);
        assert_eq!(
            h.node("node1").await.available + h.node("node2").await.available + h.node("node3").await.available,
            24
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_engine_is_a_miss_after_one_interval_not_after_the_runtime_timeout() {
    let engines = Engines::default();
    let runtime =
        Arc::new(Slow { ping_delay: Duration::from_secs(3_600), ..Slow::starting_in(&engines, Duration::ZERO) });
    let h = Harness::with_runtime(SchedulerConfig::default(), engines, runtime);
    h.online_nodes(1, 10).await;
    let shutdown = CancellationToken::new();
    let mut heartbeat = heartbeat_with_rebalancer(&h, &shutdown);
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        heartbeat.tick().await.unwrap();
    }
    assert_eq!(h.node("node1").await.status, NodeStatus::Offline);
    assert!(started.elapsed() <= Duration::from_millis(1_600), "3 misses took {:?}", started.elapsed());
    shutdown.cancel();
}

/// Stores `count` deployments of one replica of `image` without converging them: intents a
/// follower recorded while no server led.
async fn intents(h: &Harness, prefix: &str, image: &str, count: usize) -> Vec<orchestrator_core::DeploymentName> {
    let mut names = Vec::new();
    for i in 0..count {
        let spec = orchestrator_core::DeploymentSpec::of(image, 1).unwrap();
        let name = orchestrator_core::DeploymentName::new(format!("{prefix}{i}")).unwrap();
        names.push(h.store.create_deployment(&name, spec, Default::default()).await.unwrap().name);
    }
    names
}

fn containers_of(h: &Harness, names: &[orchestrator_core::DeploymentName]) -> Vec<(String, String, u64)> {
    h.engines.containers().into_iter().filter(|(_, d, _)| names.iter().any(|n| n.as_str() == d)).collect()
}

/// The HA test's leak: a new leader's first pass converges a backlog of intents (all of one
/// image, so one batch per node at a time) for many seconds; deployments deleted on a follower meanwhile
/// (in the store only) must still lose their containers within two reconcile intervals, not
/// after the pass and a rest proportional to it.
#[tokio::test(start_paused = true)]
async fn deletes_on_a_follower_are_carried_out_within_two_intervals_while_a_long_pass_converges() {
    let engines = Engines::default();
    // 30 starts of 2 s, one batch per node at a time (the spawn rule): 20 s in all on 3 nodes.
    let runtime = Arc::new(Slow::starting_in(&engines, Duration::from_secs(2)));
    let config = SchedulerConfig::default();
    let interval = config.reconcile_interval;
    let h = Harness::with_runtime(config, engines, runtime);
    h.online_nodes(3, 100).await;
    let backlog = intents(&h, "backlog", "local/busybox:1", 30).await;
    let shutdown = CancellationToken::new();
    let reconciler = tokio::spawn(Reconciler::new(h.scheduler.clone(), Arc::new(Notify::new())).run(shutdown.clone()));

    // Well into the first pass: some have run.
    tokio::time::sleep(interval + Duration::from_secs(5)).await;
    let started: Vec<_> = backlog.iter().filter(|n| !containers_of(&h, &[(*n).clone()]).is_empty()).cloned().collect();
    assert!(started.len() >= 4 && started.len() < 30, "the pass is under way: {} started", started.len());
    for name in &started {
        h.store.delete_deployment(name).await.unwrap();
    }
    tokio::time::sleep(2 * interval).await;
    assert_eq!(containers_of(&h, &started), vec![], "containers of deleted deployments survived two intervals");
    // And the backlog still converges in full.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let left: Vec<_> = backlog.iter().filter(|n| !started.contains(n)).cloned().collect();
    assert_eq!(containers_of(&h, &left).len(), left.len());
    shutdown.cancel();
    reconciler.await.unwrap();
}

/// The lease changes hands while the old leader's converge is starting a container; the
/// deployment is deleted on a follower before the start returns. Whatever the old leader may
/// still do, the new leader's reconciler removes that container within two intervals.
#[tokio::test(start_paused = true)]
async fn a_container_started_by_a_deposed_leader_after_the_delete_is_removed_by_the_new_one() {
    let engines = Engines::default();
    let slow = Slow::starting_in(&engines, Duration::from_secs(3));
    let deposed = slow.deposed.clone();
    let config = SchedulerConfig::default();
    let interval = config.reconcile_interval;
    let old = Harness::with_runtime(config.clone(), engines.clone(), Arc::new(slow));
    old.online_nodes(3, 100).await;
    let names = intents(&old, "web", "local/busybox:1", 1).await;
    let in_flight = {
        let scheduler = old.scheduler.clone();
        let name = names[0].clone();
        tokio::spawn(async move { scheduler.converge(&name).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The old leader's tenure ends: its start under way finishes, nothing after it reaches an
    // engine (its own removal of what it started is refused too).
    deposed.store(true, std::sync::atomic::Ordering::SeqCst);
    // The new leader, on the same store and engines, with its own (quick) runtime.
    let new = scheduler::Scheduler::new(old.store.clone(), Arc::new(engines.clone()), config);
    let shutdown = CancellationToken::new();
    let reconciler = tokio::spawn(Reconciler::new(Arc::new(new), Arc::new(Notify::new())).run(shutdown.clone()));
    old.store.delete_deployment(&names[0]).await.unwrap();
    in_flight.await.unwrap().unwrap();
    let started_at = tokio::time::Instant::now();
    tokio::time::sleep(2 * interval).await;
    assert_eq!(containers_of(&old, &names), vec![], "left running {:?} after the start", started_at.elapsed());
    shutdown.cancel();
    reconciler.await.unwrap();
}

/// A converge whose deployment is deleted while its starts are under way removes what it
/// started as soon as the store refuses the records, without waiting for the reconciler.
#[tokio::test(start_paused = true)]
async fn a_converge_removes_what_it_started_for_a_deployment_deleted_meanwhile() {
    let engines = Engines::default();
    let slow = Arc::new(Slow::starting_in(&engines, Duration::from_secs(3)));
    let h = Harness::with_runtime(SchedulerConfig::default(), engines, slow);
    h.online_nodes(2, 100).await;
    let names = intents(&h, "web", "local/busybox:1", 1).await;
    let converging = {
        let (scheduler, name) = (h.scheduler.clone(), names[0].clone());
        tokio::spawn(async move { scheduler.converge(&name).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.store.delete_deployment(&names[0]).await.unwrap();
    let report = converging.await.unwrap().unwrap();
    assert_eq!(report.failed, 1, "the start's record was refused");
    assert_eq!(containers_of(&h, &names), vec![]);
}

/// Converges of one deployment asked for from everywhere at once (the API, a drain, the
/// rebalancer, direct calls) never overlap: each would see the replicas missing and place
/// them, and the deployment would run several times its count.
#[tokio::test(start_paused = true)]
async fn converges_of_one_deployment_never_overlap_whoever_asks() {
    let engines = Engines::default();
    let slow = Arc::new(Slow::starting_in(&engines, Duration::from_secs(2)));
    let h = Harness::with_runtime(SchedulerConfig::default(), engines, slow.clone());
    h.online_nodes(3, 100).await;
    let names = intents(&h, "web", "local/busybox:1", 1).await;
    let web = names[0].clone();
    h.store.scale_deployment(&web, 3, 1).await.unwrap();
    let direct: Vec<_> = (0..4)
        .map(|_| {
            let (scheduler, name) = (h.scheduler.clone(), web.clone());
            tokio::spawn(async move { scheduler.converge(&name).await.unwrap() })
        })
        .collect();
    for _ in 0..4 {
        h.scheduler.enqueue(web.clone());
    }
    let waited = h.scheduler.converge_all(vec![web.clone(), web.clone()]).await;
    assert!(waited.iter().all(|(_, r)| r.is_ok()), "{waited:?}");
    for task in direct {
        task.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(containers_of(&h, &names).len(), 3);
    assert_eq!(h.store.list_replicas(ReplicaFilter::deployment(&web)).await.unwrap().len(), 3);
    assert_eq!(slow.starts.lock().unwrap().len(), 3, "each replica started once");
    assert!(!h.scheduler.is_converging(&web), "the queue forgets a deployment with nothing left to do");
}

/// Deployments of one image are separate work: they converge at the same time (the seed's
/// spawn rule keeps one batch of an image per engine at a time, and they are placed apart).
#[tokio::test(start_paused = true)]
async fn deployments_of_one_image_converge_side_by_side() {
    let engines = Engines::default();
    let slow = Arc::new(Slow::starting_in(&engines, Duration::from_secs(3)));
    let h = Harness::with_runtime(SchedulerConfig::default(), engines, slow.clone());
    h.online_nodes(4, 100).await;
    let names = intents(&h, "site", "local/busybox:1", 4).await;
    let began = tokio::time::Instant::now();
    let results = h.scheduler.converge_all(names.clone()).await;
    assert!(results.iter().all(|(_, r)| r.as_ref().is_ok_and(|c| c.started == 1)), "{results:?}");
    assert_eq!(began.elapsed(), Duration::from_secs(3), "one start's time for all four, not four");
    let nodes: std::collections::BTreeSet<String> = containers_of(&h, &names).into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(nodes.len(), 4, "placed one a node, each on the capacity the one before left");
}

/// A converge that fails is retried by the queue after a backoff, without a reconcile pass.
#[tokio::test(start_paused = true)]
async fn a_failed_start_is_retried_by_the_queue_after_a_backoff() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(1, 10).await;
    h.engines.set_down("node1", true);
    let names = intents(&h, "web", "local/busybox:1", 1).await;
    let first = h.scheduler.converge_all(names.clone()).await;
    assert_eq!(first[0].1.as_ref().unwrap().failed, 1);
    assert!(h.scheduler.is_converging(&names[0]), "a retry is due");
    h.engines.set_down("node1", false);
    tokio::time::sleep(SchedulerConfig::default().converge_retry.first + Duration::from_millis(10)).await;
    assert_eq!(containers_of(&h, &names).len(), 1);
}

/// The state of a deployment's newest rollout.
async fn newest_rollout(h: &Harness, name: &orchestrator_core::DeploymentName) -> orchestrator_core::Rollout {
    h.store.list_rollouts(name).await.unwrap().into_iter().next().expect("a rollout")
}

#[tokio::test]
async fn an_update_replaces_replicas_within_its_bounds_and_a_failing_one_rolls_back_by_itself() {
    use orchestrator_core::{Change, ImageRef, RolloutState};
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(2, 10).await;
    let name = h.deploy("web", "local/busybox:1", 3).await;
    let reconciler = Reconciler::new(h.scheduler.clone(), Arc::new(Notify::new()));
    let images = |h: &Harness| {
        let state = h.engines.state.lock().unwrap();
        let mut images: Vec<String> =
            state.values().flat_map(|e| e.containers.values().map(|(_, _, image)| image.clone())).collect();
        images.sort();
        images
    };

    let before = h.store.get_deployment(&name).await.unwrap();
    let mut spec = before.spec.clone();
    spec.policy.update.monitor = Duration::ZERO;
    spec.policy.rollback.monitor = Duration::ZERO;
    spec.policy.deregister_delay = Duration::from_millis(20);
    spec.template.image = ImageRef::parse("local/busybox:2").unwrap();
    let updated = h.scheduler.update_deployment(&name, spec.clone(), before.version, Change::by("tok")).await.unwrap();
    assert_eq!(updated.revision, 2);
    // Passes until it ends (one a deployment whose converge is queued, as a rollout's
    // follow-up is, skips it: give the queue its turn between passes).
    for _ in 0..300 {
        reconciler.pass().await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(h.engines.containers().len() <= 4, "never more than replicas + max_surge");
        if newest_rollout(&h, &name).await.state != RolloutState::InProgress {
            break;
        }
    }
    let done = newest_rollout(&h, &name).await;
    assert_eq!((done.state, done.updated, done.healthy, done.failed), (RolloutState::Succeeded, 3, 3, 0));
    assert_eq!(images(&h), ["local/busybox:2"; 3]);
    assert!(running(&h, "web").await.iter().all(|r| r.revision == 2));

    // A template whose replicas exit: the first failure fails the rollout, which rolls back.
    let before = h.store.get_deployment(&name).await.unwrap();
    spec.template.image = ImageRef::parse("local/busybox:broken").unwrap();
    h.scheduler.update_deployment(&name, spec.clone(), before.version, Change::default()).await.unwrap();
    h.scheduler.converge(&name).await.unwrap();
    let broken: Vec<_> = running(&h, "web").await.into_iter().filter(|r| r.revision == 3).collect();
    assert_eq!(broken.len(), 1, "one at a time");
    h.engines.with(broken[0].node.as_str(), |e| {
        e.containers.get_mut(&("web".into(), broken[0].id.0)).unwrap().1 = ContainerState::Exited
    });
    for _ in 0..300 {
        reconciler.pass().await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        if h.store.get_deployment(&name).await.unwrap().rollout.is_none() {
            break;
        }
    }
    let rollouts = h.store.list_rollouts(&name).await.unwrap();
    let (back, failed) = (&rollouts[0], &rollouts[1]);
    assert_eq!(failed.state, RolloutState::RolledBack);
    let why = failed.reason.clone().unwrap();
    assert!(why.contains("exited with code 1") && why.contains("rolled back to revision 2"), "{why}");
    assert_eq!((back.state, back.restores, back.to_revision), (RolloutState::Succeeded, Some(2), 4));
    assert_eq!(images(&h), ["local/busybox:2"; 3], "back on the last good image");
    let kinds: Vec<String> = orchestrator_core::EventStore::list_events(&*h.store, 0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.to_string())
        .filter(|k| k.starts_with("rollout.") && k != "rollout.progressed")
        .collect();
    assert_eq!(
        kinds,
        [
            "rollout.started",
            "rollout.succeeded",
            "rollout.started",
            "rollout.rolled_back",
            "rollout.started",
            "rollout.succeeded"
        ]
    );
    // Endpoints first: each old replica the update stopped left the endpoints before.
    let events = orchestrator_core::EventStore::list_events(&*h.store, 0, 1_000).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "replica.deregistered").count(), 3, "{kinds:?}");
    let first_out = kinds.iter().position(|k| *k == "replica.deregistered").unwrap();
    let first_removed = kinds.iter().position(|k| *k == "replica.removed").unwrap();
    assert!(first_out < first_removed, "out of the endpoints before it goes: {kinds:?}");
}

#[tokio::test(start_paused = true)]
async fn a_vanished_container_and_a_start_the_engine_refused_are_kept_with_their_reasons() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(1, 10).await;
    let name = h.deploy("web", "local/busybox:1", 1).await;
    let reconciler = Reconciler::new(h.scheduler.clone(), Arc::new(Notify::new()));
    let first = running(&h, "web").await[0].clone();
    h.engines.with("node1", |e| {
        e.containers.remove(&("web".into(), first.id.0));
    });
    reconciler.pass().await.unwrap();
    let kept = h.store.list_exits(&name, true).await.unwrap();
    assert_eq!(
        kept.iter().map(|e| (e.replica, e.reason.clone())).collect::<Vec<_>>(),
        [(first.id, orchestrator_core::EndReason::Vanished)]
    );

    // A second replica's engine does not answer: kept as not started, with the error.
    assert_eq!(running(&h, "web").await.len(), 1, "replaced");
    h.engines.set_down("node1", true);
    let version = h.store.get_deployment(&name).await.unwrap().version;
    h.scheduler.scale_deployment(&name, 2, version).await.unwrap();
    h.scheduler.converge(&name).await.unwrap();
    let kept = h.store.list_exits(&name, true).await.unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let orchestrator_core::EndReason::NotStarted { error } = &kept[0].reason else { panic!("{kept:?}") };
    assert!(error.contains("unreachable"), "{error}");
    assert!(kept[0].to_owned().logs.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_refused_pull_is_kept_as_such_and_waits_out_a_backoff_instead_of_pulling_again() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(1, 10).await;
    h.engines.with("node1", |e| e.pulls_refused = Some("r:5000/".into()));
    let name = h.deploy("web", "r:5000/app:1", 1).await;
    let kept = h.store.list_exits(&name, true).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let orchestrator_core::EndReason::PullFailed { error } = &kept[0].reason else { panic!("{kept:?}") };
    assert!(error.starts_with("r:5000/app:1 on node1: unauthorized"), "{error}");
    let streak = h.store.get_deployment(&name).await.unwrap().crash_loop.expect("a backoff");
    assert_eq!(streak.restarts, 1);
    // Converging again within the wait tries no pull: nothing more is kept.
    h.scheduler.converge(&name).await.unwrap();
    assert_eq!(h.store.list_exits(&name, true).await.unwrap().len(), 1, "no pull during the backoff");
    // The registry lets it in; after the wait the replica runs.
    h.engines.with("node1", |e| e.pulls_refused = None);
    std::thread::sleep(Duration::from_millis(1_100));
    h.scheduler.converge(&name).await.unwrap();
    assert_eq!(running(&h, "web").await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_update_whose_image_cannot_be_pulled_fails_its_rollout_and_rolls_back() {
    use orchestrator_core::{Change, DeploymentStore, ImageRef, RolloutState};
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(2, 10).await;
    let name = h.deploy("web", "local/busybox:1", 2).await;
    h.engines.with("node1", |e| e.pulls_refused = Some("r:5000/".into()));
    h.engines.with("node2", |e| e.pulls_refused = Some("r:5000/".into()));
    let before = h.store.get_deployment(&name).await.unwrap();
    let mut spec = before.spec.clone();
    spec.template.image = ImageRef::parse("r:5000/app:2").unwrap();
    h.scheduler.update_deployment(&name, spec, before.version, Change::default()).await.unwrap();
    let reconciler = Reconciler::new(h.scheduler.clone(), Arc::new(Notify::new()));
    for _ in 0..300 {
        h.scheduler.converge(&name).await.unwrap();
        reconciler.pass().await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        if h.store.get_deployment(&name).await.unwrap().rollout.is_none() {
            break;
        }
    }
    let rollouts = h.store.list_rollouts(&name).await.unwrap();
    let failed = rollouts.iter().find(|r| r.to_revision == 2).unwrap();
    assert_eq!(failed.state, RolloutState::RolledBack, "{rollouts:?}");
    assert!(failed.reason.as_deref().unwrap_or("").contains("unauthorized"), "{failed:?}");
    let images: Vec<String> =
        h.engines.state.lock().unwrap().values().flat_map(|e| e.containers.values().map(|c| c.2.clone())).collect();
    assert!(images.len() == 2 && images.iter().all(|i| i == "local/busybox:1"), "back on the old image: {images:?}");
    // Found before anything of the rollout ran: no new replica tried, no old one stopped.
    let calls = h.engines.calls.lock().unwrap().clone();
    assert!(!calls.iter().any(|c| c.starts_with("remove") || c.contains("r:5000")), "{calls:?}");
}

/// Changes the deployment's template with `change` and converges until its rollout ends,
/// which must be a success.
async fn roll_out(
    h: &Harness,
    reconciler: &Reconciler,
    name: &orchestrator_core::DeploymentName,
    edit: impl FnOnce(&mut orchestrator_core::ContainerTemplate),
    change: orchestrator_core::Change,
) -> orchestrator_core::Deployment {
    use orchestrator_core::{DeploymentStore, RolloutState};
    let before = h.store.get_deployment(name).await.unwrap();
    let mut spec = before.spec.clone();
    edit(&mut spec.template);
    // Monitor periods and deadlines go by the wall clock: none here.
    spec.policy.update.monitor = Duration::ZERO;
    spec.policy.rollback.monitor = Duration::ZERO;
    spec.policy.deregister_delay = Duration::from_millis(20);
    h.scheduler.update_deployment(name, spec, before.version, change).await.unwrap();
    for _ in 0..200 {
        h.scheduler.converge(name).await.unwrap();
        reconciler.pass().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if h.store.get_deployment(name).await.unwrap().rollout.is_none() {
            break;
        }
    }
    let rollout = h.store.list_rollouts(name).await.unwrap().into_iter().next().unwrap();
    assert_eq!(rollout.state, RolloutState::Succeeded, "{rollout:?}");
    assert!(rollout.pulled_at.is_some(), "{rollout:?}");
    h.store.get_deployment(name).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_revision_runs_the_digest_its_tag_named_and_a_rollout_pulls_before_it_stops() {
    use orchestrator_core::{Change, DeploymentStore, EventStore, ImageRef};
    let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(2, 10).await;
    h.engines.registry.lock().unwrap().insert("r:5000/app:1".into(), digest('a'));
    let name = h.deploy("web", "r:5000/app:1", 2).await;
    let pinned_a = format!("r:5000/app@{}", digest('a'));
    let images = |h: &Harness| -> Vec<String> {
        h.engines.state.lock().unwrap().values().flat_map(|e| e.containers.values().map(|c| c.2.clone())).collect()
    };
    assert_eq!(images(&h), [pinned_a.clone(), pinned_a.clone()]);
    let d = h.store.get_deployment(&name).await.unwrap();
    assert_eq!(d.image_digest, Some(digest('a')));
    assert_eq!(h.store.list_revisions(&name).await.unwrap()[0].image_digest, Some(digest('a')));

    // The tag moves; a replacement still runs what the revision was pinned to.
    h.engines.registry.lock().unwrap().insert("r:5000/app:1".into(), digest('b'));
    let first = running(&h, "web").await[0].clone();
    h.engines.with(first.node.as_str(), |e| {
        e.containers.get_mut(&("web".into(), first.id.0)).unwrap().1 = ContainerState::Exited
    });
    let reconciler = Reconciler::new(h.scheduler.clone(), Arc::new(Notify::new()));
    reconciler.pass().await.unwrap();
    // The crash-loop wait (1 s, by the wall clock) before the replacement.
    std::thread::sleep(Duration::from_millis(1_100));
    h.scheduler.converge(&name).await.unwrap();
    assert_eq!(running(&h, "web").await.len(), 2);
    assert!(images(&h).iter().all(|i| *i == pinned_a), "{:?}", images(&h));

    // An env change keeps the image where it is; a new image is resolved, then pulled on
    // every node before the first old replica stops.
    let d = roll_out(&h, &reconciler, &name, |t| _ = t.env.insert("K".into(), "v".into()), Change::default()).await;
    assert_eq!((d.revision, d.image_digest.clone()), (2, Some(digest('a'))));
    assert!(images(&h).iter().all(|i| *i == pinned_a), "{:?}", images(&h));

    h.engines.calls.lock().unwrap().clear();
    h.engines.registry.lock().unwrap().insert("r:5000/app:2".into(), digest('c'));
    let d = roll_out(&h, &reconciler, &name, |t| t.image = ImageRef::parse("r:5000/app:2").unwrap(), Change::default())
        .await;
    let pinned_c = format!("r:5000/app@{}", digest('c'));
    assert_eq!(d.image_digest, Some(digest('c')));
    assert!(images(&h).iter().all(|i| *i == pinned_c), "{:?}", images(&h));
    let calls = h.engines.calls.lock().unwrap().clone();
    let first_remove = calls.iter().position(|c| c.starts_with("remove")).expect("old replicas removed");
    for node in ["node1", "node2"] {
        let pull = calls.iter().position(|c| *c == format!("pull {node} {pinned_c}"));
        assert!(pull.is_some_and(|p| p < first_remove), "pulled on {node} before any stop: {calls:?}");
    }
    let events = h.store.list_events(0, 10_000).await.unwrap();
    let pulled: Vec<&str> =
        events.iter().filter(|e| e.kind.as_str() == "image.pulled").map(|e| e.message.as_str()).collect();
    assert!(pulled.iter().any(|m| m.contains("node2") && m.contains(&pinned_c)), "{pulled:?}");

    // A rollback runs exactly what the restored revision ran, wherever the tag is now.
    let second = h.store.list_revisions(&name).await.unwrap().into_iter().find(|r| r.number == 2).unwrap();
    let back = Change { restores: Some(2), ..Change::default() };
    let d = roll_out(&h, &reconciler, &name, |t| *t = second.template, back).await;
    assert_eq!(d.image_digest, Some(digest('a')));
    assert!(images(&h).iter().all(|i| *i == pinned_a), "{:?}", images(&h));
}

/// Each engine is given as many starts at once as it keeps up with: one that answers in the same
/// time however many it runs is given more than the initial 4 (up to the bound), so 300 starts
/// take well under the 7.5 s four at a time would; one that slows down with each start in flight
/// is given about what it runs at once.
#[tokio::test(start_paused = true)]
async fn the_calls_an_engine_is_given_at_once_follow_how_fast_it_starts_containers() {
    // The default floor is 4: as low as 1 here, to see a queueing engine given fewer.
    let config = SchedulerConfig { min_per_node_concurrency: 1, ..SchedulerConfig::default() };
    for (runs_at_once, fewest, most) in [(None, 8, config.max_per_node_concurrency), (Some(1), 1, 3)] {
        let engines = Engines::default();
        let slow = Arc::new(Slow { runs_at_once, ..Slow::starting_in(&engines, Duration::from_millis(100)) });
        let h = Harness::with_runtime(config.clone(), engines, slow.clone());
        h.online_nodes(1, 1_000).await;
        let began = tokio::time::Instant::now();
        h.deploy("web", "local/busybox:1", 300).await;
        let took = began.elapsed();
        assert_eq!(running(&h, "web").await.len(), 300);
        let limit = h.scheduler.engine_call_limits()[0].1 as usize;
        assert!((fewest..=most).contains(&limit), "{runs_at_once:?}: limit {limit}");
        assert!(slow.most_in_flight() <= config.max_per_node_concurrency, "{runs_at_once:?}: never above the bound");
        if runs_at_once.is_none() {
            assert!(took < Duration::from_secs(4), "took {took:?}");
        }
    }
}
