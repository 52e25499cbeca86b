//! Golden tests of what goes beyond the drill: expiring keys, backups and restores,
//! merges. Each drives the engine through replicated commands, as a node does.

use super::command::{ChatRouterOp, Command, HashRingOp, Op, Outcome};
use super::{Engine, Location, PositionSpace};

/// Applies a command and checks the incremental digest against the recomputed one.
fn checked(engine: &mut Engine, command: Command) -> Outcome {
    let outcome = engine.apply(&command);
    assert_eq!(
        engine.state_digest(),
        engine.recomputed_digest(),
        "after {command:?}"
    );
    outcome
}

fn hr(engine: &mut Engine, ts: i64, op: HashRingOp) -> Outcome {
    checked(
        engine,
        Command {
            ring: "r".into(),
            timestamp: ts,
            op: Op::HashRing(op),
        },
    )
}

fn cr(engine: &mut Engine, ts: i64, op: ChatRouterOp) -> Outcome {
    checked(
        engine,
        Command {
            ring: "c".into(),
            timestamp: ts,
            op: Op::ChatRouter(op),
        },
    )
}

fn add(engine: &mut Engine, node: &str) {
    hr(
        engine,
        0,
        HashRingOp::AddNode {
            node_id: node.into(),
        },
    );
}

fn store(engine: &mut Engine, ts: i64, key: &str, ttl_ms: i64) -> Option<String> {
    hr(
        engine,
        ts,
        HashRingOp::StoreKeyWithTtl {
            key: key.into(),
            ttl_ms,
        },
    )
    .into_name()
}

fn ring(engine: &Engine) -> &super::HashRing {
    engine.hash_ring("r").expect("ring exists")
}

#[test]
fn a_key_is_alive_before_its_expiry_and_dead_at_it() {
    let mut e = Engine::new();
    add(&mut e, "n");
    assert_eq!(store(&mut e, 100, "k", 10).as_deref(), Some("n"));
    let r = ring(&e);
    assert_eq!(
        r.locate_key_at(109, "k").map(|l| l.expires_at),
        Some(Some(110))
    );
    assert_eq!(r.get_used_at(109, "n"), 1);
    assert_eq!(
        r.locate_key_at(110, "k"),
        None,
        "dead at the expiry instant"
    );
    assert_eq!(r.get_used_at(110, "n"), 0, "dead keys do not count");
    assert_eq!(r.top_loaded_at(110, 1), vec!["n(0)".to_owned()]);
    assert_eq!(r.top_loaded_at(109, 1), vec!["n(1)".to_owned()]);
    // A command at or after the expiry reclaims it; reads at the latest time agree.
    hr(&mut e, 110, HashRingOp::Backup { max_backups: 16 });
    assert_eq!(ring(&e).get_used("n"), 0);
    assert_eq!(ring(&e).locate_key("k"), None);
}

#[test]
fn restoring_a_key_sets_its_expiry_anew_and_zero_clears_it() {
    let mut e = Engine::new();
    add(&mut e, "n");
    store(&mut e, 0, "k", 10);
    store(&mut e, 5, "k", 100);
    let at = |e: &Engine| ring(e).locate_key_at(6, "k").unwrap();
    assert_eq!((at(&e).last_access, at(&e).expires_at), (5, Some(105)));
    store(&mut e, 7, "k", 0);
    assert_eq!(
        ring(&e).locate_key_at(1_000_000, "k").unwrap().expires_at,
        None
    );
}

#[test]
fn eviction_never_removes_a_live_key_for_room_a_dead_key_holds() {
    let mut e = Engine::new();
    add(&mut e, "n");
    hr(
        &mut e,
        0,
        HashRingOp::SetCapacity {
            node_id: "n".into(),
            capacity: 2,
        },
    );
    store(&mut e, 0, "live", 0);
    store(&mut e, 1, "short", 5);
    // At 10 "short" is dead: the node holds one live key, so nothing is evicted.
    store(&mut e, 10, "new", 0);
    let r = ring(&e);
    assert!(r.locate_key("live").is_some(), "the live key stays");
    assert!(r.locate_key("new").is_some());
    assert_eq!(r.get_used("n"), 2);
}

#[test]
fn chat_sessions_expire_and_free_their_memory() {
    let mut e = Engine::new();
    cr(
        &mut e,
        0,
        ChatRouterOp::AddServer {
            server_name: "s".into(),
        },
    );
    cr(
        &mut e,
        0,
        ChatRouterOp::SetMemoryLimit {
            server_name: "s".into(),
            max_mb: 100,
        },
    );
    cr(
        &mut e,
        0,
        ChatRouterOp::AssignRequest {
            request_id: "long".into(),
            size_mb: 40,
        },
    );
    cr(
        &mut e,
        1,
        ChatRouterOp::AssignRequestWithTtl {
            request_id: "short".into(),
            size_mb: 60,
            ttl_ms: 9,
        },
    );
    let c = e.chat_router("c").unwrap();
    assert_eq!(c.get_memory_used_at(9, "s"), 100);
    assert_eq!(c.get_memory_used_at(10, "s"), 40);
    // 60 MB arrive at 10: the dead session's memory is free, so "long" stays.
    cr(
        &mut e,
        10,
        ChatRouterOp::AssignRequest {
            request_id: "next".into(),
            size_mb: 60,
        },
    );
    let c = e.chat_router("c").unwrap();
    assert!(c.locate_request("long").is_some());
    assert_eq!(c.get_memory_used("s"), 100);
}

#[test]
fn a_backup_saves_live_keys_with_their_remaining_ttl() {
    let mut e = Engine::new();
    add(&mut e, "n");
    store(&mut e, 10, "keeps", 100); // expires at 110
    store(&mut e, 10, "gone", 5); // dead at 15
    store(&mut e, 10, "forever", 0);
    let saved = hr(&mut e, 50, HashRingOp::Backup { max_backups: 16 }).into_count();
    assert_eq!(saved, Some(2), "a key dead at the backup is not saved");
    store(&mut e, 60, "later", 0);
    // Restored at 1000: 60 ms were left at the backup (110 - 50), so it expires at 1060.
    let restored = hr(
        &mut e,
        1000,
        HashRingOp::Restore {
            backup_timestamp: 50,
        },
    )
    .into_count();
    assert_eq!(restored, Some(2));
    let r = ring(&e);
    assert_eq!(r.locate_key("keeps").unwrap().expires_at, Some(1060));
    assert_eq!(r.locate_key("forever").unwrap().expires_at, None);
    assert_eq!(
        r.locate_key("later"),
        None,
        "restore replaces the whole ring"
    );
    assert_eq!(r.locate_key("gone"), None);
}

#[test]
fn restore_picks_the_latest_backup_at_or_before_and_the_first_of_equals() {
    let mut e = Engine::new();
    add(&mut e, "n");
    let backup = |e: &mut Engine, ts| hr(e, ts, HashRingOp::Backup { max_backups: 16 });
    store(&mut e, 10, "a", 0);
    backup(&mut e, 10);
    store(&mut e, 20, "b", 0);
    backup(&mut e, 20); // a, b
    store(&mut e, 20, "c", 0);
    backup(&mut e, 20); // a, b, c: saved second at the same time
    store(&mut e, 30, "d", 0);
    backup(&mut e, 30);
    let restore = |e: &mut Engine, backup_timestamp| {
        hr(e, 40, HashRingOp::Restore { backup_timestamp }).into_count()
    };
    assert_eq!(restore(&mut e, 25), Some(2), "the first of the two at 20");
    assert_eq!(ring(&e).get_used("n"), 2);
    assert_eq!(restore(&mut e, 30), Some(4));
    let before = e.state_digest();
    assert_eq!(restore(&mut e, 9), None, "nothing at or before 9");
    assert_eq!(e.state_digest(), before, "state unchanged");
}

#[test]
fn only_the_newest_backups_are_kept() {
    let mut e = Engine::new();
    add(&mut e, "n");
    for ts in 1..=5 {
        store(&mut e, ts, &format!("k{ts}"), 0);
        hr(&mut e, ts, HashRingOp::Backup { max_backups: 3 });
    }
    let restore = |e: &mut Engine, backup_timestamp| {
        hr(e, 10, HashRingOp::Restore { backup_timestamp }).into_count()
    };
    assert_eq!(
        restore(&mut e, 2),
        None,
        "the backups at 1 and 2 were dropped"
    );
    assert_eq!(restore(&mut e, 3), Some(3));
}

fn merge(e: &mut Engine, from: &str, to: &str) -> bool {
    hr(
        e,
        0,
        HashRingOp::MergeNodes {
            from_node: from.into(),
            to_node: to.into(),
        },
    )
    .into_done()
}

#[test]
fn a_merge_moves_exactly_the_sources_keys_and_the_source_is_gone() {
    let mut e = Engine::new();
    hr(
        &mut e,
        0,
        HashRingOp::Configure {
            space: PositionSpace::U64,
        },
    );
    for (node, replicas) in [("a", 20), ("b", 20), ("c", 20)] {
        hr(
            &mut e,
            0,
            HashRingOp::AddNodeWithReplicas {
                node_id: node.into(),
                num_replicas: replicas,
            },
        );
    }
    hr(
        &mut e,
        0,
        HashRingOp::SetCapacity {
            node_id: "a".into(),
            capacity: 1000,
        },
    );
    let keys: Vec<String> = (0..500).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        store(&mut e, 1, key, 0);
    }
    let before: Vec<String> = keys
        .iter()
        .map(|k| ring(&e).locate_key(k).unwrap().node)
        .collect();
    assert!(merge(&mut e, "a", "b"));
    let r = ring(&e);
    for (key, owner) in keys.iter().zip(&before) {
        let now = r.locate_key(key).expect("no key is lost").node;
        let expected = if owner == "a" { "b" } else { owner.as_str() };
        assert_eq!(now, expected, "{key}");
    }
    assert_eq!(r.get_replica_count("b"), 40);
    assert_eq!(r.get_node_count(), 2);
    assert_eq!(r.get_capacity("a"), 0, "the source is a missing node");
    assert_eq!(r.get_capacity("b"), -1, "the target keeps its own limit");
    assert_eq!(r.get_used("b") + r.get_used("c"), 500, "nothing evicted");
    assert!(!merge(&mut e, "a", "c"), "a missing source");
    assert!(!merge(&mut e, "b", "b"), "the same node");
    assert!(!merge(&mut e, "b", "zz"), "a missing target");
}

#[test]
fn at_a_position_shared_with_a_third_node_the_name_tie_break_decides() {
    // In the drill space n0 and n12 share position 47, and n0 wins it (smaller name).
    let mut e = Engine::new();
    for node in ["n0", "n12", "z"] {
        add(&mut e, node);
    }
    let owner = |e: &Engine, key: &str| ring(e).route_key(key).map(str::to_owned);
    assert_eq!(owner(&e, "k14").as_deref(), Some("n0"), "k14 hashes to 47");
    store(&mut e, 1, "k14", 0);
    assert!(merge(&mut e, "n0", "z"));
    // Position 47 is now z's and n12's: n12 < z, so n12 takes it, not the target.
    assert_eq!(owner(&e, "k14").as_deref(), Some("n12"));
    assert_eq!(ring(&e).locate_key("k14").unwrap().node, "n12");
}

#[test]
fn merge_records_follow_chains_survive_backups_and_clear_on_re_add() {
    let mut e = Engine::new();
    for node in ["a", "b", "c"] {
        add(&mut e, node);
    }
    assert!(merge(&mut e, "a", "b"));
    assert!(merge(&mut e, "b", "c"));
    let into = |e: &Engine, n: &str| ring(e).get_merged_into(n);
    assert_eq!(into(&e, "a").as_deref(), Some("c"), "a chain is followed");
    assert_eq!(into(&e, "b").as_deref(), Some("c"));
    assert_eq!(into(&e, "c"), None);
    hr(&mut e, 5, HashRingOp::Backup { max_backups: 16 });
    add(&mut e, "a");
    assert_eq!(into(&e, "a"), None, "a node added again is not merged");
    hr(
        &mut e,
        6,
        HashRingOp::Restore {
            backup_timestamp: 5,
        },
    );
    assert_eq!(
        into(&e, "a").as_deref(),
        Some("c"),
        "the backup carried the record"
    );
    assert_eq!(ring(&e).get_node_count(), 1);
}

#[test]
fn everything_beyond_the_drill_survives_a_snapshot() {
    let mut e = Engine::new();
    for node in ["a", "b"] {
        add(&mut e, node);
    }
    store(&mut e, 1, "ttl", 50);
    store(&mut e, 1, "plain", 0);
    hr(&mut e, 2, HashRingOp::Backup { max_backups: 4 });
    merge(&mut e, "a", "b");
    let restored = Engine::restore(&e.snapshot()).unwrap();
    assert_eq!(restored.state_digest(), e.state_digest());
    let r = restored.hash_ring("r").unwrap();
    assert_eq!(r.get_merged_into("a").as_deref(), Some("b"));
    assert_eq!(
        r.locate_key("ttl"),
        Some(Location {
            node: "b".into(),
            last_access: 1,
            size: 1,
            expires_at: Some(51),
        })
    );
    let mut restored = restored;
    let count = hr(
        &mut restored,
        3,
        HashRingOp::Restore {
            backup_timestamp: 2,
        },
    );
    assert_eq!(
        count,
        Outcome::Count(Some(2)),
        "the backup came through the snapshot"
    );
}

#[test]
fn a_store_already_dead_by_the_rings_clock_takes_no_room() {
    let mut e = Engine::new();
    add(&mut e, "n");
    hr(
        &mut e,
        0,
        HashRingOp::SetCapacity {
            node_id: "n".into(),
            capacity: 1,
        },
    );
    store(&mut e, 100, "a", 0);
    // At 50 with 10 ms to live it is dead by the ring's clock (100): it evicts nothing.
    assert_eq!(store(&mut e, 50, "b", 10).as_deref(), Some("n"));
    let r = ring(&e);
    assert!(r.locate_key("a").is_some(), "the live key was not evicted");
    assert_eq!(r.locate_key("b"), None);
    // Refreshing a stored key with a TTL already run out removes it.
    store(&mut e, 60, "a", 5);
    assert_eq!(ring(&e).locate_key("a"), None);
}

#[test]
fn a_backup_at_an_older_timestamp_counts_remaining_ttl_from_the_rings_clock() {
    let mut e = Engine::new();
    add(&mut e, "n");
    store(&mut e, 100, "k", 50); // expires at 150
    hr(&mut e, 20, HashRingOp::Backup { max_backups: 16 }); // an old timestamp
    hr(
        &mut e,
        200,
        HashRingOp::Restore {
            backup_timestamp: 20,
        },
    );
    // 50 ms remained at the clock (100), not 130 at the backup's timestamp.
    assert_eq!(ring(&e).locate_key("k").unwrap().expires_at, Some(250));
}

/// Found by fuzzing (fuzz/fuzz_targets/engine_ops.rs): at a ring clock of `i64::MAX`, a
/// key that never expires was stored but could not be found.
#[test]
fn a_key_without_ttl_is_alive_even_at_the_last_timestamp() {
    let mut e = Engine::new();
    add(&mut e, "n");
    assert_eq!(store(&mut e, i64::MAX, "k", 0).as_deref(), Some("n"));
    let found = ring(&e).locate_key_at(i64::MAX, "k");
    assert_eq!(
        found.map(|l| (l.node, l.expires_at)),
        Some(("n".to_owned(), None))
    );
    assert_eq!(ring(&e).get_used_at(i64::MAX, "n"), 1);
}

/// Found by fuzzing (fuzz/fuzz_targets/snapshot_decoder.rs): a snapshot naming a drill
/// position of 100 or more made the restore index past the routing table. (Rebuilt for
/// format 3: the node's position, then a stored key's, is moved out of the space.)
#[test]
fn a_snapshot_with_a_position_outside_the_space_is_refused_not_a_panic() {
    let mut e = Engine::new();
    hr(
        &mut e,
        1,
        HashRingOp::AddNode {
            node_id: "b".into(),
        },
    );
    store(&mut e, 2, "k", 0);
    let bytes = e.snapshot();
    assert!(Engine::restore(&bytes).is_ok());
    let drill = crate::PositionSpace::Drill;
    // Node `b`: its name, 1 replica (i64), 1 position (u32), then the position (u64).
    let mut node_b = vec![b'b', 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    node_b.extend_from_slice(&drill.position("b").to_le_bytes());
    // Key `k`: its name, access, size, expiry, seq, then the position.
    let mut key_k = vec![b'k'];
    for field in [2i64, 1, i64::MAX, 0] {
        key_k.extend_from_slice(&field.to_le_bytes());
    }
    key_k.extend_from_slice(&drill.position("k").to_le_bytes());
    for record in [node_b, key_k] {
        let at = bytes
            .windows(record.len())
            .position(|w| w == record)
            .expect("the record is in the snapshot")
            + record.len()
            - 8;
        let mut forged = bytes.clone();
        forged[at] = 100;
        let refused = Engine::restore(&forged).map(|_| ()).unwrap_err();
        assert!(refused.to_string().contains("space"), "{refused}");
    }
}
