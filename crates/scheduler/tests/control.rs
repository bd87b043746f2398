//! The API's actions on a follower and on the leader: a follower records intents and never
//! touches an engine; the leader's reconciler carries them out; the leader acts at once.

mod fake;

use std::sync::Arc;

use orchestrator_core::{ControlPlane, DeploymentStore, Error, Leadership, NodeName, NodeStatus, NodeStore};
use scheduler::{ActingLeader, Reconciler, SchedulerConfig, SchedulerControl};
use tokio::sync::{Notify, watch};

use fake::Harness;

fn follower(h: &Harness) -> SchedulerControl {
    let (_, role) = watch::channel(Leadership::Follower { id: "b".into(), leader: Some("a".into()) });
    SchedulerControl::new(Arc::clone(&h.scheduler), role, ActingLeader::default())
}

async fn leader_pass(h: &Harness) {
    Reconciler::new(h.scheduler.clone(), Arc::new(Notify::new())).pass().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_follower_deletes_in_the_store_and_the_leader_removes_the_containers() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(3, 10).await;
    let web = h.deploy("web", "local/busybox:1", 4).await;
    follower(&h).delete_deployment(&web).await.unwrap();
    assert!(matches!(h.store.get_deployment(&web).await, Err(Error::NotFound { .. })));
    assert_eq!(h.engines.containers().len(), 4, "a follower never acts on engines");
    leader_pass(&h).await;
    assert_eq!(h.engines.containers().len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_follower_marks_a_drain_and_the_leader_moves_the_replicas() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(3, 10).await;
    h.deploy("web", "local/busybox:1", 6).await;
    let on_node1 = h.engines.count_on("node1");
    assert!(on_node1 > 0);
    let left = follower(&h).drain_node(&NodeName::new("node1").unwrap()).await.unwrap();
    assert_eq!(left, on_node1);
    assert_eq!(h.node("node1").await.status, NodeStatus::Draining);
    assert_eq!(h.engines.count_on("node1"), on_node1, "a follower never acts on engines");
    leader_pass(&h).await;
    assert_eq!(h.engines.count_on("node1"), 0);
    assert_eq!(h.engines.containers().len(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_follower_removes_a_node_once_the_leader_has_drained_it() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(3, 10).await;
    h.deploy("web", "local/busybox:1", 3).await;
    let control = follower(&h);
    let node1 = NodeName::new("node1").unwrap();
    let removal = tokio::spawn({
        let (control, node1) = (control.clone(), node1.clone());
        async move { control.remove_node(&node1).await }
    });
    // The follower waits; the leader's pass moves the replica; then the removal completes.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(!removal.is_finished());
    leader_pass(&h).await;
    removal.await.unwrap().unwrap();
    assert!(matches!(h.store.get_node(&node1).await, Err(Error::NotFound { .. })));
    assert_eq!(h.engines.containers().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_follower_refuses_to_rebalance_and_names_the_leader() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(2, 10).await;
    let web = h.deploy("web", "local/busybox:1", 2).await;
    let refused = follower(&h).rebalance_deployment(&web).await.unwrap_err();
    assert_eq!(refused, Error::NotLeader { leader: Some("a".into()) });
}

#[tokio::test(start_paused = true)]
async fn the_leader_acts_at_once_with_the_scheduler_it_published() {
    let h = Harness::new(SchedulerConfig::default());
    h.online_nodes(3, 10).await;
    let web = h.deploy("web", "local/busybox:1", 4).await;
    let acting = ActingLeader::default();
    let (_, role) = watch::channel(Leadership::Leader { id: "a".into(), term: 1 });
    let control = SchedulerControl::new(Arc::clone(&h.scheduler), role, acting.clone());
    let published = acting.publish(Arc::clone(&h.scheduler));
    control.delete_deployment(&web).await.unwrap();
    // The answer comes once the store has it; the removals follow in the background.
    assert!(matches!(h.store.get_deployment(&web).await, Err(Error::NotFound { .. })));
    for _ in 0..100 {
        if h.engines.containers().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(h.engines.containers().len(), 0);
    // Once the term ends, the same control plane only records intents.
    drop(published);
    let api = h.deploy("api", "local/busybox:1", 2).await;
    control.delete_deployment(&api).await.unwrap();
    assert_eq!(h.engines.containers().len(), 2);
}
