//! The view's follower fed synthetic messages: it routes as the engine does, drops
//! what it already holds, and refuses to route once a change does not apply, until a
//! whole topology replaces the ring. Conversions refuse malformed messages.

use std::time::Duration;

use clockwise_engine::{HashRing, PositionSpace, Topology, TopologyChange, TopologyNode};
use clockwise_proto::common::v1 as common;
use tokio::sync::watch;

use super::Follower;
use crate::view::{RingView, Status, ViewUpdateKind};
use crate::watch::{change_from_proto, topology_from_proto, WatchEvent, WatchEventKind};
use crate::{Client, Error};

async fn client() -> Client {
    Client::builder()
        .endpoints(["127.0.0.1:1"])
        .attempt_timeout(Duration::from_millis(50))
        .build()
        .await
        .unwrap()
}

fn engine_ring() -> HashRing {
    let mut ring = HashRing::default();
    ring.configure(PositionSpace::U64);
    for (i, node) in ["a", "b", "c"].iter().enumerate() {
        ring.add_node_with_replicas(node, 10 + i as i64);
    }
    ring
}

fn node(ring: &HashRing, id: &str) -> TopologyNode {
    let topology = ring.topology();
    topology.nodes.into_iter().find(|n| n.id == id).unwrap()
}

fn topology(revision: u64, topology: Topology, resync: bool) -> WatchEvent {
    WatchEvent {
        revision,
        kind: WatchEventKind::Topology { topology, resync },
    }
}

fn change(revision: u64, change: TopologyChange) -> WatchEvent {
    WatchEvent {
        revision,
        kind: WatchEventKind::Change(change),
    }
}

fn keys() -> Vec<String> {
    (0..500).map(|i| format!("key-{i}")).collect()
}

fn assert_routes_like(view: &RingView<HashRing>, engine: &HashRing) {
    let snapshot = view.current().expect("a view that is not broken routes");
    for key in keys() {
        assert_eq!(snapshot.route_key(&key), engine.route_key(&key), "{key}");
    }
    let keys = keys();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert_eq!(snapshot.route_keys(&refs), engine.route_keys(&refs));
}

#[tokio::test]
async fn a_view_follows_changes_once_and_refuses_to_route_once_broken() {
    let client = client().await;
    let (tx, rx) = watch::channel(Status::default());
    let shared = RingView::<HashRing>::empty_shared("r").unwrap();
    let view = RingView::from_parts(shared.clone(), rx, Duration::from_millis(50));
    let mut updates = view.updates();
    let mut follower = Follower::new(client, shared, &tx);

    let mut engine = engine_ring();
    follower
        .apply(topology(10, engine.topology(), false))
        .unwrap();
    assert_eq!(view.revision(), 10);
    assert_routes_like(&view, &engine);

    engine.add_node_with_replicas("d", 7);
    let added = TopologyChange::NodeAdded(node(&engine, "d"));
    follower.apply(change(12, added.clone())).unwrap();
    // The same change again (a resumed stream overlapping) is dropped, not applied twice.
    follower.apply(change(12, added.clone())).unwrap();
    follower.apply(change(11, added)).unwrap();
    assert_eq!(view.revision(), 12);
    assert_routes_like(&view, &engine);
    engine.merge_nodes(0, "a", "d");
    let merged = TopologyChange::Merged {
        from: "a".into(),
        into: "d".into(),
    };
    follower.apply(change(15, merged)).unwrap();
    follower
        .apply(WatchEvent {
            revision: 20,
            kind: WatchEventKind::Progress,
        })
        .unwrap();
    assert_eq!(view.revision(), 20);
    assert_routes_like(&view, &engine);
    let snapshot = view.wait_for_within(20, Duration::ZERO).await.unwrap();
    assert_eq!(snapshot.revision(), 20);
    assert!(matches!(
        view.wait_for_within(21, Duration::from_millis(10)).await,
        Err(Error::ViewTimeout {
            revision: 21,
            reached: 20,
            ..
        })
    ));

    // A change that does not fit: the view breaks and refuses every route.
    let unknown = TopologyChange::NodeRemoved("nobody".into());
    let reason = follower.apply(change(21, unknown)).unwrap_err();
    assert!(reason.contains("nobody"), "{reason}");
    follower.break_view(reason);
    assert!(matches!(view.current(), Err(Error::ViewBroken { .. })));
    assert!(matches!(
        view.route_key("key-1"),
        Err(Error::ViewBroken { .. })
    ));
    assert!(matches!(
        view.wait_for_within(1, Duration::from_millis(10)).await,
        Err(Error::ViewBroken { .. })
    ));
    // The resync's topology heals it.
    follower.need_full = true;
    engine.remove_node("b");
    follower
        .apply(topology(30, engine.topology(), true))
        .unwrap();
    assert_eq!(view.revision(), 30);
    assert_routes_like(&view, &engine);
    assert_eq!(
        view.route_key("key-1").unwrap(),
        engine.route_key("key-1").map(str::to_owned)
    );

    let mut seen = Vec::new();
    while let Ok(update) = updates.try_recv() {
        seen.push((update.revision, std::mem::discriminant(&update.kind)));
    }
    let revisions: Vec<u64> = seen.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        revisions,
        [10, 12, 15, 20, 30],
        "no update for a dropped duplicate"
    );
    let broken = std::mem::discriminant(&ViewUpdateKind::Broken(String::new()));
    assert_eq!(seen[3].1, broken);
}

#[tokio::test]
async fn a_change_before_the_topology_breaks_the_view() {
    let client = client().await;
    let (tx, rx) = watch::channel(Status::default());
    let shared = RingView::<HashRing>::empty_shared("r").unwrap();
    let view = RingView::from_parts(shared.clone(), rx, Duration::from_millis(50));
    let mut follower = Follower::new(client, shared, &tx);
    let removed = TopologyChange::NodeRemoved("a".into());
    assert!(follower.apply(change(3, removed)).is_err());
    assert_eq!(view.revision(), 0);
}

#[test]
fn malformed_messages_are_refused_by_name() {
    let space = common::RingTopology {
        position_space: 7,
        ..Default::default()
    };
    assert!(matches!(
        topology_from_proto(space),
        Err(Error::MalformedWatch { .. })
    ));
    assert!(matches!(
        change_from_proto(common::TopologyChange { change: None }),
        Err(Error::MalformedWatch { .. })
    ));
    let node = common::TopologyNode {
        id: "n".into(),
        replicas: 2,
        positions: vec![5, 9],
        limit: -1,
    };
    let added = change_from_proto(common::TopologyChange {
        change: Some(common::topology_change::Change::NodeAdded(node)),
    })
    .unwrap();
    assert_eq!(
        added,
        TopologyChange::NodeAdded(TopologyNode {
            id: "n".into(),
            replicas: 2,
            positions: vec![5, 9],
            limit: -1,
        })
    );
}

#[tokio::test]
async fn the_task_ends_when_the_last_handle_is_dropped() {
    let client = client().await;
    let shared = RingView::<HashRing>::empty_shared("r").unwrap();
    let (tx, rx) = watch::channel(Status::default());
    let task = tokio::spawn(super::run(client, shared.clone(), tx));
    let view = RingView::from_parts(shared, rx, Duration::from_millis(50));
    let clone = view.clone();
    drop(view);
    tokio::task::yield_now().await;
    assert!(!task.is_finished(), "a clone still holds the view");
    drop(clone);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ended")
        .unwrap();
}

#[tokio::test]
async fn watching_an_unreachable_cluster_fails_within_the_call_deadline() {
    let client = Client::builder()
        .endpoints(["127.0.0.1:1"])
        .timeout(Duration::from_millis(300))
        .attempt_timeout(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let error = client.hash_ring("r").watch().await.err().expect("no node");
    assert!(error.is_retriable(), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the deadline"
    );
}
