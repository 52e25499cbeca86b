//! A view fed only the topology changes of a random command log stays equal to the
//! engine's rings: same topology, same route for every probe key, after every command.

use std::collections::BTreeMap;

use super::*;
use crate::testing::random_log;

fn routes_of_hash_ring(ring: &HashRing) -> Vec<Option<String>> {
    (0..48)
        .map(|i| ring.route_key(&format!("probe-{i}")).map(str::to_owned))
        .collect()
}

fn routes_of_chat_router(router: &ChatRouter) -> Vec<Option<String>> {
    (0..48)
        .map(|i| {
            router
                .route_request(&format!("probe-{i}"))
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn views_fed_the_changes_of_random_logs_route_as_the_engine() {
    let mut changes_seen = 0;
    for seed in 1..=16 {
        let mut engine = Engine::new();
        let mut hash_views: BTreeMap<String, HashRing> = BTreeMap::new();
        let mut chat_views: BTreeMap<String, ChatRouter> = BTreeMap::new();
        for command in random_log(seed, 400) {
            let outcome = engine.apply(&command);
            if let Some((kind, change)) = engine.topology_change(&command, &outcome) {
                changes_seen += 1;
                let applied = match kind {
                    RingKind::HashRing => hash_views
                        .entry(command.ring.clone())
                        .or_default()
                        .apply_topology_change(&change),
                    RingKind::ChatRouter => chat_views
                        .entry(command.ring.clone())
                        .or_default()
                        .apply_topology_change(&change),
                };
                applied.unwrap_or_else(|e| panic!("seed {seed}: {command:?} -> {change:?}: {e}"));
            }
            for (name, ring) in engine.hash_rings() {
                let view = hash_views.entry(name.to_owned()).or_default();
                assert_eq!(
                    view.topology(),
                    ring.topology(),
                    "seed {seed} after {command:?}"
                );
                assert_eq!(routes_of_hash_ring(view), routes_of_hash_ring(ring));
            }
            for (name, router) in engine.chat_routers() {
                let view = chat_views.entry(name.to_owned()).or_default();
                assert_eq!(
                    view.topology(),
                    router.topology(),
                    "seed {seed} after {command:?}"
                );
                assert_eq!(routes_of_chat_router(view), routes_of_chat_router(router));
            }
        }
    }
    assert!(
        changes_seen > 300,
        "the logs changed topologies: {changes_seen}"
    );
}

#[test]
fn a_ring_rebuilt_from_its_topology_routes_and_reads_back_the_same() {
    let mut engine = Engine::new();
    for command in random_log(7, 800) {
        engine.apply(&command);
        for (_, ring) in engine.hash_rings() {
            let rebuilt = HashRing::from_topology(&ring.topology()).expect("a real topology");
            assert_eq!(rebuilt.topology(), ring.topology());
            assert_eq!(routes_of_hash_ring(&rebuilt), routes_of_hash_ring(ring));
        }
    }
}

#[test]
fn changes_that_do_not_fit_the_view_are_refused_with_the_node_named() {
    let mut view = HashRing::default();
    let node = |id: &str, positions: Vec<u64>| TopologyNode {
        id: id.into(),
        replicas: positions.len() as i64,
        positions,
        limit: UNLIMITED,
    };
    view.apply_topology_change(&TopologyChange::NodeAdded(node("a", vec![3])))
        .unwrap();
    assert_eq!(
        view.apply_topology_change(&TopologyChange::NodeAdded(node("a", vec![4]))),
        Err(TopologyError::Duplicate("a".into()))
    );
    assert_eq!(
        view.apply_topology_change(&TopologyChange::NodeAdded(node("b", vec![100]))),
        Err(TopologyError::OutOfSpace("b".into())),
        "the drill space has 100 positions"
    );
    assert_eq!(
        view.apply_topology_change(&TopologyChange::NodeRemoved("zz".into())),
        Err(TopologyError::Unknown("zz".into()))
    );
    assert_eq!(
        view.apply_topology_change(&TopologyChange::Configured(PositionSpace::U64)),
        Err(TopologyError::NotEmpty)
    );
    assert_eq!(
        view.apply_topology_change(&TopologyChange::Merged {
            from: "a".into(),
            into: "nope".into()
        }),
        Err(TopologyError::Merge("a".into(), "nope".into()))
    );
    let looping = Topology {
        space: PositionSpace::Drill,
        nodes: vec![node("a", vec![1]), node("b", vec![2])],
        merges: vec![("c".into(), "d".into()), ("d".into(), "c".into())],
    };
    assert!(HashRing::from_topology(&looping).is_err());
}
