//! The golden vectors of `spec/ring-drills.md` §8, call for call.

use super::*;

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn key_op(kind: &str, key: &str) -> KeyOperation {
    KeyOperation {
        kind: KeyOperationKind::parse(kind),
        key: key.into(),
    }
}

/// `(key, node, access)` in insertion order.
fn items(ns: &namespace::Namespace) -> Vec<(String, String, i64, i64)> {
    ns.placement
        .in_insertion_order()
        .into_iter()
        .map(|item| {
            (
                item.key.to_string(),
                ns.ring.name(item.node).to_owned(),
                item.access,
                item.size,
            )
        })
        .collect()
}

#[test]
fn hashring_trace() {
    let mut r = HashRing::default();
    assert_eq!(r.route_key("key1"), None);
    assert!(r.add_node("node_a"));
    assert!(r.add_node("node_b"));
    assert!(!r.add_node("node_a"));
    assert_eq!(r.get_node_count(), 2);
    assert_eq!(r.route_key("key1"), Some("node_b"));
    assert_eq!(r.route_key("k0"), Some("node_b"));
    for (ts, key) in [(6, "key1"), (7, "key2"), (8, "key3"), (9, "k1")] {
        assert_eq!(r.store_key(ts, key), Some("node_b"));
    }
    assert_eq!(r.get_load("node_a"), 0);
    assert_eq!(r.get_load("node_b"), 4);
    assert_eq!(r.get_load("ghost"), 0);
    assert_eq!(r.top_loaded(1), strings(&["node_b(4)"]));
    assert_eq!(r.top_loaded(5), strings(&["node_b(4)", "node_a(0)"]));
    assert_eq!(r.top_loaded(0), Vec::<String>::new());
    assert!(r.add_node_with_replicas("node_c", 3));
    assert!(!r.add_node_with_replicas("node_c", 2));
    assert_eq!(r.get_replica_count("node_c"), 3);
    assert_eq!(r.get_replica_count("node_a"), 1);
    assert_eq!(r.get_replica_count("ghost"), 0);
    assert_eq!(
        r.top_loaded(5),
        strings(&["node_b(3)", "node_c(1)", "node_a(0)"])
    );
    assert_eq!(r.list_nodes(), strings(&["node_a", "node_b", "node_c"]));
    assert!(!r.set_capacity("ghost", 1));
    assert_eq!(r.get_capacity("node_b"), -1);
    assert!(r.set_capacity("node_b", 2));
    assert_eq!(r.get_capacity("node_b"), 2);
    assert_eq!(r.get_capacity("ghost"), 0);
    assert_eq!(r.get_used("node_b"), 3);
    assert_eq!(r.store_key(17, "key4"), Some("node_c"));
    assert_eq!(r.route_key("key4"), Some("node_c"));
    assert_eq!(r.evict_lru("ghost"), None);
    assert!(r.remove_node("node_b"));
    assert_eq!(r.get_capacity("node_b"), 0);
    assert_eq!(r.top_loaded(5), strings(&["node_a(3)", "node_c(2)"]));
    let ops = [
        key_op("store", "a"),
        key_op("route", "b"),
        key_op("remove_key", "a"),
        key_op("remove_key", "a"),
        key_op("nope", "c"),
    ];
    assert_eq!(
        r.batch_operations(20, &ops),
        vec![
            BatchResult::Node("node_c".into()),
            BatchResult::Node("node_a".into()),
            BatchResult::Ok(true),
            BatchResult::Ok(false),
            BatchResult::Empty,
        ]
    );
    assert_eq!(
        r.sync_validity([
            ("node_a", "node_c"),
            ("node_b", "node_c"),
            ("node_a", "node_a")
        ]),
        vec![true, false, true]
    );
    let want = [
        ("key1", "node_a", 6),
        ("key2", "node_c", 7),
        ("key3", "node_a", 8),
        ("k1", "node_a", 9),
        ("key4", "node_c", 17),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|&(k, n, t)| (k.to_owned(), n.to_owned(), t, 1))
        .collect();
    assert_eq!(items(&r.ns), want);
    assert_eq!(r.ns.digest_sum(), r.ns.recomputed_digest(), "digest kept");
}

#[test]
fn hashring_position_tie_goes_to_the_smaller_name() {
    let mut r = HashRing::default();
    assert!(r.add_node("n12"));
    assert!(r.add_node("n0"));
    assert_eq!(r.route_key("k14"), Some("n0"));
    assert_eq!(r.route_key("k0"), Some("n0"));
}

#[test]
fn hashring_lru_tie_evicts_the_earliest_inserted() {
    let mut r = HashRing::default();
    r.add_node("node_a");
    for key in ["zz", "aa", "mm"] {
        assert_eq!(r.store_key(7, key), Some("node_a"));
    }
    assert_eq!(r.evict_lru("node_a"), s("zz"));
    assert_eq!(r.store_key(9, "aa"), Some("node_a"));
    assert_eq!(r.evict_lru("node_a"), s("mm"));
}

#[test]
fn hashring_capacity_zero_still_stores_one() {
    let mut r = HashRing::default();
    r.add_node("node_a");
    assert!(r.set_capacity("node_a", 0));
    assert_eq!(r.store_key(1, "x"), Some("node_a"));
    assert_eq!(r.get_used("node_a"), 1);
    assert_eq!(r.store_key(2, "y"), Some("node_a"));
    assert_eq!(r.get_used("node_a"), 1);
    assert_eq!(r.store_key(3, "y"), Some("node_a"));
    assert_eq!(r.get_used("node_a"), 1);
}

#[test]
fn hashring_lowered_capacity_evicts_one_per_new_store() {
    let mut r = HashRing::default();
    r.add_node("node_a");
    for (ts, key) in [(1, "a"), (2, "b"), (3, "c")] {
        r.store_key(ts, key);
    }
    assert!(r.set_capacity("node_a", 1));
    assert_eq!(r.get_used("node_a"), 3);
    assert_eq!(r.store_key(5, "a"), Some("node_a"));
    assert_eq!(r.get_used("node_a"), 3);
    assert_eq!(r.store_key(6, "d"), Some("node_a"));
    assert_eq!(r.get_used("node_a"), 3);
    assert_eq!(r.top_loaded(3), strings(&["node_a(3)"]));
    let keys: Vec<_> = items(&r.ns)
        .into_iter()
        .map(|(k, _, t, _)| (k, t))
        .collect();
    assert_eq!(
        keys,
        vec![("a".into(), 5), ("c".into(), 3), ("d".into(), 6)]
    );
}

#[test]
fn hashring_emptied_ring_drops_keys_and_zero_replica_node_routes_nothing() {
    let mut r = HashRing::default();
    r.add_node("node_a");
    assert_eq!(r.store_key(1, "a"), Some("node_a"));
    assert!(r.remove_node("node_a"));
    assert_eq!(r.store_key(3, "b"), None);
    assert!(r.add_node_with_replicas("z", 0));
    assert_eq!(r.get_node_count(), 1);
    assert_eq!(r.route_key("a"), None);
    assert_eq!(r.get_replica_count("z"), 0);
    assert!(items(&r.ns).is_empty());
}

#[test]
fn hashring_batch_capacity_one() {
    let mut r = HashRing::default();
    r.add_node("node_a");
    r.set_capacity("node_a", 1);
    let ops = [
        key_op("store", "a"),
        key_op("store", "b"),
        key_op("remove_key", "a"),
        key_op("remove_key", "b"),
    ];
    assert_eq!(
        r.batch_operations(1, &ops),
        vec![
            BatchResult::Node("node_a".into()),
            BatchResult::Node("node_a".into()),
            BatchResult::Ok(false),
            BatchResult::Ok(true),
        ]
    );
}

fn assign_op(kind: &str, id: &str, size_mb: i64) -> RequestOperation {
    RequestOperation {
        kind: RequestOperationKind::parse(kind),
        request_id: id.into(),
        size_mb,
    }
}

#[test]
fn chatrouter_trace() {
    let mut c = ChatRouter::default();
    assert_eq!(c.route_request("r1"), None);
    assert!(c.add_server("srv_a"));
    assert!(c.add_server("srv_b"));
    assert!(!c.add_server("srv_a"));
    assert_eq!(c.get_server_count(), 2);
    assert_eq!(c.assign_request(4, "r1", 30), Some("srv_b"));
    assert_eq!(c.assign_request(5, "r2", 50), Some("srv_b"));
    assert_eq!(c.assign_request(6, "r3", 20), Some("srv_b"));
    assert_eq!(c.assign_request(7, "r4", 40), Some("srv_a"));
    assert_eq!(c.get_server_load("srv_a"), 40);
    assert_eq!(c.get_server_load("srv_b"), 100);
    assert_eq!(c.get_server_load("ghost"), 0);
    assert_eq!(c.top_servers(5), strings(&["srv_b(100)", "srv_a(40)"]));
    assert_eq!(c.list_servers(), strings(&["srv_a", "srv_b"]));
    assert_eq!(c.assign_request(9, "r1", 999), Some("srv_b"));
    assert!(c.add_server_with_replicas("srv_c", 3));
    assert_eq!(c.get_replica_count("srv_c"), 3);
    assert_eq!(
        c.top_servers(5),
        strings(&["srv_b(100)", "srv_a(40)", "srv_c(0)"])
    );
    assert_eq!(c.get_memory_limit("srv_b"), -1);
    assert_eq!(c.get_memory_limit("ghost"), 0);
    assert!(!c.set_memory_limit("ghost", 5));
    assert!(c.set_memory_limit("srv_b", 60));
    assert_eq!(c.get_memory_used("srv_b"), 100);
    assert_eq!(c.evict_oldest_session("ghost"), None);
    assert!(c.remove_server("srv_b"));
    assert_eq!(c.get_memory_limit("srv_b"), 0);
    assert_eq!(c.top_servers(5), strings(&["srv_c(100)", "srv_a(40)"]));
    let ops = [
        assign_op("assign", "x1", 5),
        assign_op("route", "x2", 0),
        assign_op("remove", "x1", 0),
        assign_op("remove", "x1", 0),
        assign_op("nope", "x3", 0),
    ];
    assert_eq!(
        c.batch_requests(14, &ops),
        vec![
            BatchResult::Node("srv_c".into()),
            BatchResult::Node("srv_c".into()),
            BatchResult::Ok(true),
            BatchResult::Ok(false),
            BatchResult::Empty,
        ]
    );
    let want = [
        ("r1", "srv_c", 9, 30),
        ("r2", "srv_c", 5, 50),
        ("r3", "srv_c", 6, 20),
        ("r4", "srv_a", 7, 40),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|&(k, n, t, size)| (k.to_owned(), n.to_owned(), t, size))
        .collect();
    assert_eq!(items(&c.ns), want);
    assert_eq!(c.digest_sum(), c.recomputed_digest(), "digest kept");
}

#[test]
fn chatrouter_evicts_until_the_request_fits() {
    let mut c = ChatRouter::default();
    c.add_server("srv_a");
    assert_eq!(c.assign_request(1, "r1", 30), Some("srv_a"));
    assert_eq!(c.assign_request(2, "r2", 50), Some("srv_a"));
    assert!(c.set_memory_limit("srv_a", 120));
    assert_eq!(c.get_memory_used("srv_a"), 80);
    assert_eq!(c.assign_request(3, "r3", 100), Some("srv_a"));
    assert_eq!(c.get_memory_used("srv_a"), 100);
    assert_eq!(items(&c.ns), vec![("r3".into(), "srv_a".into(), 3, 100)]);
}

#[test]
fn chatrouter_oversized_request_and_stale_size() {
    let mut c = ChatRouter::default();
    c.add_server("srv_a");
    assert_eq!(c.assign_request(1, "a", 10), Some("srv_a"));
    assert!(c.set_memory_limit("srv_a", 50));
    assert_eq!(c.assign_request(2, "big", 100), Some("srv_a"));
    assert_eq!(c.get_memory_used("srv_a"), 100);
    assert_eq!(c.assign_request(3, "big", 1), Some("srv_a"));
    assert_eq!(c.get_memory_used("srv_a"), 100);
    assert_eq!(c.assign_request(4, "c", 1), Some("srv_a"));
    assert_eq!(c.get_memory_used("srv_a"), 1);
    assert!(c.remove_server("srv_a"));
    assert!(c.add_server("srv_a"));
    assert_eq!(c.get_memory_used("srv_a"), 0);
    assert_eq!(c.assign_request(7, "c", 7), Some("srv_a"));
    assert_eq!(c.get_memory_used("srv_a"), 1);
    assert_eq!(items(&c.ns), vec![("c".into(), "srv_a".into(), 7, 1)]);
}

#[test]
fn chatrouter_replicate_validity_gates_on_source_bandwidth() {
    let mut c = ChatRouter::default();
    c.add_server("srv_a");
    c.add_server("srv_b");
    assert_eq!(c.assign_request(1, "r1", 30), Some("srv_b"));
    let transfers = [
        ("srv_b", "srv_a", 30),
        ("srv_b", "srv_a", 31),
        ("srv_a", "srv_b", 0),
        ("srv_a", "srv_b", 1),
        ("ghost", "srv_b", 0),
        ("srv_b", "srv_b", 0),
    ];
    assert_eq!(
        c.replicate_validity(0, transfers),
        vec![true, false, true, false, false, true]
    );
}

#[test]
fn locate_reports_node_access_and_size() {
    let mut c = ChatRouter::default();
    c.add_server("srv_a");
    c.assign_request(4, "r1", 30);
    assert_eq!(
        c.locate_request("r1"),
        Some(Location {
            node: "srv_a".into(),
            last_access: 4,
            size: 30,
            expires_at: None,
        })
    );
    assert_eq!(c.locate_request("nope"), None);
}

#[test]
fn position_space_is_fixed_once_the_ring_is_used() {
    let mut r = HashRing::default();
    assert!(r.configure(PositionSpace::U64));
    r.add_node("a");
    assert!(!r.configure(PositionSpace::Drill));
    assert_eq!(r.position_space(), PositionSpace::U64);
}

#[test]
fn snapshot_round_trip_is_canonical() {
    let mut e = Engine::new();
    {
        let r = e.hash_ring_mut(DEFAULT_RING);
        r.add_node_with_replicas("node_a", 3);
        r.add_node("node_b");
        r.set_capacity("node_b", 2);
        for (ts, key) in [(1, "k1"), (1, "k2"), (0, "k3"), (5, "k1")] {
            r.store_key(ts, key);
        }
    }
    {
        let c = e.chat_router_mut("chat");
        c.configure(PositionSpace::U64);
        c.add_server("srv_a");
        c.assign_request(1, "r1", 10);
        c.remove_server("srv_a");
        c.add_server("srv_b");
        c.assign_request(2, "r2", 20);
    }
    let bytes = e.snapshot();
    let restored = Engine::restore(&bytes).expect("decodes");
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.state_digest(), e.state_digest());
    // The restored engine behaves the same: LRU order and stale sizes survived.
    let (mut a, mut b) = (e.clone(), restored);
    for engine in [&mut a, &mut b] {
        engine.hash_ring_mut(DEFAULT_RING).evict_lru("node_a");
        engine.chat_router_mut("chat").assign_request(3, "r1", 99);
    }
    assert_eq!(a.snapshot(), b.snapshot());
    assert_eq!(
        b.chat_router("chat")
            .unwrap()
            .locate_request("r1")
            .unwrap()
            .size,
        10
    );
}

#[test]
fn snapshot_decoding_rejects_damage() {
    let mut e = Engine::new();
    e.hash_ring_mut("x").add_node("a");
    e.hash_ring_mut("x").store_key(1, "k");
    let bytes = e.snapshot();
    assert_eq!(
        Engine::restore(b"nope").unwrap_err(),
        SnapshotError::BadMagic
    );
    for cut in 0..bytes.len() {
        assert!(
            Engine::restore(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Engine::restore(&longer).unwrap_err(),
        SnapshotError::TrailingBytes(1)
    );
    let mut newer = bytes;
    newer[4] = 9;
    assert!(matches!(
        Engine::restore(&newer).unwrap_err(),
        SnapshotError::UnsupportedVersion(_)
    ));
}
