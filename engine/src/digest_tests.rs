//! The incremental state digest (issue 15): it never drifts from the digest recomputed
//! from scratch, it tells apart states that differ in any one fact, it survives a
//! snapshot, and a frozen view writes the state as it was when frozen.

use super::testing::{cr, hr, random_log, sample_log};
use super::{
    BatchResult, ChatRouterOp, Command, Engine, HashRingOp, KeyOperation, KeyOperationKind,
    PositionSpace,
};

fn apply_checked(engine: &mut Engine, command: &Command) {
    engine.apply(command);
    assert_eq!(
        engine.state_digest(),
        engine.recomputed_digest(),
        "after {command:?}"
    );
}

#[test]
fn the_digest_equals_the_recomputed_one_after_every_command_of_the_sample_log() {
    let mut engine = Engine::new();
    assert_eq!(engine.state_digest(), engine.recomputed_digest());
    for command in sample_log() {
        apply_checked(&mut engine, &command);
    }
}

#[test]
fn the_digest_equals_the_recomputed_one_after_every_command_of_random_logs() {
    for seed in 1..=12u64 {
        let log = random_log(seed * 0x9E37_79B9, 1_500);
        let mut engine = Engine::new();
        for (i, command) in log.iter().enumerate() {
            apply_checked(&mut engine, command);
            if i % 97 == 0 {
                // A replica restored from a snapshot here has the same digest, and
                // converges with this one over the rest of the log.
                let mut restored = Engine::restore(&engine.snapshot()).expect("restores");
                assert_eq!(restored.state_digest(), engine.state_digest());
                assert_eq!(restored.recomputed_digest(), engine.state_digest());
                let mut original = engine.clone();
                for later in &log[i + 1..(i + 60).min(log.len())] {
                    assert_eq!(original.apply(later), restored.apply(later), "{later:?}");
                    assert_eq!(restored.state_digest(), restored.recomputed_digest());
                }
                assert_eq!(restored.state_digest(), original.state_digest());
            }
        }
    }
}

#[test]
fn the_digest_tracks_changes_made_through_the_facades_directly() {
    let mut engine = Engine::new();
    let ring = engine.hash_ring_mut("x");
    ring.add_node_with_replicas("a", 3);
    ring.store_key_with_ttl(5, "k", 10);
    assert_eq!(engine.state_digest(), engine.recomputed_digest());
    engine.chat_router_mut("x").add_server("s");
    engine.chat_router_mut("x").assign_request(6, "r", 4);
    engine.chat_router_mut("x").remove_server("s");
    assert_eq!(engine.state_digest(), engine.recomputed_digest());
    engine.apply(&hr("x", 20, HashRingOp::StoreKey { key: "j".into() }));
    assert_eq!(engine.state_digest(), engine.recomputed_digest());
    let restored = Engine::restore(&engine.snapshot()).unwrap();
    assert_eq!(restored.state_digest(), engine.state_digest());
}

/// An engine built by `build`: for telling states apart.
fn digest_of(build: impl FnOnce(&mut Engine)) -> String {
    let mut e = Engine::new();
    build(&mut e);
    assert_eq!(e.state_digest(), e.recomputed_digest());
    e.state_digest()
}

#[test]
fn changing_any_one_fact_changes_the_digest() {
    use ChatRouterOp as C;
    use HashRingOp as H;
    let node = |e: &mut Engine, ring: &str, name: &str, replicas: i64| {
        e.apply(&hr(
            ring,
            1,
            H::AddNodeWithReplicas {
                node_id: name.into(),
                num_replicas: replicas,
            },
        ));
    };
    let store = |e: &mut Engine, ts: i64, key: &str, ttl_ms: i64| {
        e.apply(&hr(
            "r",
            ts,
            H::StoreKeyWithTtl {
                key: key.into(),
                ttl_ms,
            },
        ));
    };
    let base = |e: &mut Engine| {
        node(e, "r", "a", 2);
        node(e, "r", "b", 1);
        store(e, 2, "k1", 0);
        store(e, 3, "k2", 50);
    };
    let reference = digest_of(base);
    type Build<'a> = Box<dyn Fn(&mut Engine) + 'a>;
    let variants: Vec<(&str, Build)> = vec![
        (
            "an item's access",
            Box::new(|e| {
                base(e);
                store(e, 4, "k1", 0);
            }),
        ),
        (
            "an item's expiry",
            Box::new(|e| {
                base(e);
                store(e, 3, "k2", 51);
            }),
        ),
        (
            "an item's size",
            Box::new(|e| {
                node(e, "r", "a", 2);
                node(e, "r", "b", 1);
                e.apply(&cr(
                    "r",
                    1,
                    C::AddServer {
                        server_name: "a".into(),
                    },
                ));
                e.apply(&cr(
                    "r",
                    2,
                    C::AssignRequest {
                        request_id: "q".into(),
                        size_mb: 1,
                    },
                ));
                e.apply(&hr("r", 2, H::StoreKey { key: "k1".into() }));
                e.apply(&hr(
                    "r",
                    3,
                    H::StoreKeyWithTtl {
                        key: "k2".into(),
                        ttl_ms: 50,
                    },
                ));
            }),
        ),
        (
            "insertion order",
            Box::new(|e| {
                node(e, "r", "a", 2);
                node(e, "r", "b", 1);
                store(e, 3, "k2", 50);
                store(e, 2, "k1", 0);
                store(e, 3, "k2", 50);
            }),
        ),
        (
            "the seq counter",
            Box::new(|e| {
                base(e);
                store(e, 3, "gone", 0);
                e.apply(&hr(
                    "r",
                    3,
                    H::BatchOperations {
                        operations: vec![KeyOperation {
                            kind: KeyOperationKind::RemoveKey,
                            key: "gone".into(),
                        }],
                    },
                ));
            }),
        ),
        (
            "the clock",
            Box::new(|e| {
                base(e);
                e.apply(&hr(
                    "r",
                    4,
                    H::EvictLru {
                        node_id: "nobody".into(),
                    },
                ));
            }),
        ),
        (
            "the position space",
            Box::new(|e| {
                e.apply(&hr(
                    "r",
                    0,
                    H::Configure {
                        space: PositionSpace::U64,
                    },
                ));
                base(e);
            }),
        ),
        (
            "a node without positions",
            Box::new(|e| {
                base(e);
                node(e, "r", "c", 0);
            }),
        ),
        (
            "a node's replica count alone",
            Box::new(|e| {
                base(e);
                node(e, "r", "c", -1);
            }),
        ),
        (
            "a limit",
            Box::new(|e| {
                base(e);
                e.apply(&hr(
                    "r",
                    3,
                    H::SetCapacity {
                        node_id: "b".into(),
                        capacity: 9,
                    },
                ));
            }),
        ),
        (
            "a merge record",
            Box::new(|e| {
                base(e);
                node(e, "r", "c", 1);
                e.apply(&hr(
                    "r",
                    3,
                    H::MergeNodes {
                        from_node: "c".into(),
                        to_node: "a".into(),
                    },
                ));
                e.apply(&hr(
                    "r",
                    3,
                    H::MergeNodes {
                        from_node: "a".into(),
                        to_node: "b".into(),
                    },
                ));
                node(e, "r", "a", 2);
                e.apply(&hr(
                    "r",
                    3,
                    H::MergeNodes {
                        from_node: "b".into(),
                        to_node: "a".into(),
                    },
                ));
                node(e, "r", "b", 1);
            }),
        ),
        (
            "a backup",
            Box::new(|e| {
                base(e);
                e.apply(&hr("r", 3, H::Backup { max_backups: 2 }));
            }),
        ),
        (
            "the namespace's name",
            Box::new(|e| {
                node(e, "s", "a", 2);
                node(e, "s", "b", 1);
                e.apply(&hr("s", 2, H::StoreKey { key: "k1".into() }));
                e.apply(&hr(
                    "s",
                    3,
                    H::StoreKeyWithTtl {
                        key: "k2".into(),
                        ttl_ms: 50,
                    },
                ));
            }),
        ),
        (
            "another, empty namespace",
            Box::new(|e| {
                base(e);
                // A command that changes nothing creates no namespace (quota.rs tests);
                // the facade's accessor does.
                e.chat_router_mut("r");
            }),
        ),
    ];
    let mut seen = vec![reference];
    for (what, build) in variants {
        let d = digest_of(build);
        assert!(!seen.contains(&d), "{what} did not change the digest");
        seen.push(d);
    }
    // Backups differing only in their bytes, and stale sizes differing in one size.
    let backed = |ttl: i64| {
        digest_of(move |e| {
            base(e);
            store(e, 3, "k3", ttl);
            e.apply(&hr("r", 3, H::Backup { max_backups: 2 }));
            e.apply(&hr(
                "r",
                3,
                H::BatchOperations {
                    operations: vec![KeyOperation {
                        kind: KeyOperationKind::RemoveKey,
                        key: "k3".into(),
                    }],
                },
            ));
        })
    };
    assert_ne!(backed(30), backed(31));
    let stale = |size: i64| {
        digest_of(move |e| {
            e.apply(&cr(
                "c",
                1,
                C::AddServer {
                    server_name: "a".into(),
                },
            ));
            e.apply(&cr(
                "c",
                2,
                C::AssignRequest {
                    request_id: "q".into(),
                    size_mb: size,
                },
            ));
            e.apply(&cr(
                "c",
                3,
                C::RemoveServer {
                    server_name: "a".into(),
                },
            ));
        })
    };
    assert_ne!(stale(1), stale(2));
}

#[test]
fn a_snapshot_restores_to_the_same_digest_and_refuses_a_changed_one() {
    let mut e = Engine::new();
    for command in random_log(77, 800) {
        e.apply(&command);
    }
    let bytes = e.snapshot();
    let restored = Engine::restore(&bytes).unwrap();
    assert_eq!(restored.state_digest(), e.state_digest());
    assert_eq!(restored.snapshot(), bytes, "re-encoding a restored engine");
    assert_eq!(crate::snapshot::digest(&bytes), Some(e.state_digest()));
    // A flipped bit in the carried digest, or in the state, is refused.
    let mut forged = bytes.clone();
    forged[6] ^= 1;
    assert!(matches!(
        Engine::restore(&forged),
        Err(crate::SnapshotError::Corrupt(_))
    ));
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(Engine::restore(&damaged).is_err());
}

#[test]
fn a_frozen_view_writes_the_state_at_freeze_time_while_the_engine_goes_on() {
    let mut e = Engine::new();
    e.apply(&hr(
        "big",
        0,
        HashRingOp::Configure {
            space: PositionSpace::U64,
        },
    ));
    for n in 0..8 {
        e.apply(&hr(
            "big",
            1,
            HashRingOp::AddNodeWithReplicas {
                node_id: format!("n{n}"),
                num_replicas: 10,
            },
        ));
    }
    // More than two chunks of items, some expiring.
    for i in 0..10_000 {
        let op = if i % 3 == 0 {
            HashRingOp::StoreKeyWithTtl {
                key: format!("key-{i}"),
                ttl_ms: 1_000_000,
            }
        } else {
            HashRingOp::StoreKey {
                key: format!("key-{i}"),
            }
        };
        e.apply(&hr("big", 2 + i / 100, op));
    }
    for command in random_log(5, 300) {
        e.apply(&command);
    }
    let at_freeze = e.state_digest();
    let expected_bytes = e.snapshot();
    let view = e.freeze();
    assert_eq!(view.state_digest(), at_freeze);
    let before_mutations = e.clone();

    // Stores, overwrites, deletes, evictions, TTL changes, node removals, a backup.
    e.apply(&hr(
        "big",
        500,
        HashRingOp::SetCapacity {
            node_id: "n1".into(),
            capacity: 10,
        },
    ));
    for i in (0..10_000).step_by(7) {
        e.apply(&hr(
            "big",
            600 + i,
            HashRingOp::StoreKeyWithTtl {
                key: format!("key-{i}"),
                ttl_ms: (i % 5) * 100,
            },
        ));
    }
    for i in 0..3_000 {
        e.apply(&hr(
            "big",
            20_000,
            HashRingOp::StoreKey {
                key: format!("new-{i}"),
            },
        ));
    }
    e.apply(&hr(
        "big",
        20_001,
        HashRingOp::BatchOperations {
            operations: (0..5_000)
                .map(|i| KeyOperation {
                    kind: KeyOperationKind::RemoveKey,
                    key: format!("key-{i}"),
                })
                .collect(),
        },
    ));
    e.apply(&hr(
        "big",
        20_002,
        HashRingOp::EvictLru {
            node_id: "n3".into(),
        },
    ));
    e.apply(&hr(
        "big",
        20_003,
        HashRingOp::RemoveNode {
            node_id: "n2".into(),
        },
    ));
    e.apply(&hr("big", 20_004, HashRingOp::Backup { max_backups: 1 }));
    for command in random_log(6, 300) {
        e.apply(&command);
    }
    assert_ne!(e.state_digest(), at_freeze);
    assert_eq!(
        e.state_digest(),
        e.recomputed_digest(),
        "the live engine is unaffected"
    );

    // The view is written on another thread.
    let written = std::thread::spawn(move || {
        let mut out = Vec::new();
        view.write_to(&mut out).unwrap();
        out
    })
    .join()
    .unwrap();
    assert_eq!(
        written, expected_bytes,
        "the view is the state at freeze time"
    );
    let restored = Engine::read_from(&mut &written[..]).unwrap();
    assert_eq!(restored.state_digest(), at_freeze);
    assert_eq!(restored.recomputed_digest(), at_freeze);

    // And the live engine behaves as one that never was frozen.
    let mut unfrozen = before_mutations;
    let mut replay = Engine::restore(&expected_bytes).unwrap();
    for command in random_log(8, 400) {
        assert_eq!(unfrozen.apply(&command), replay.apply(&command));
    }
    assert_eq!(unfrozen.state_digest(), replay.state_digest());
    let _ = BatchResult::Empty;
}

#[test]
fn a_format_2_snapshot_still_restores_with_the_digest_of_the_same_state() {
    // Format 2, built by hand: ring "r" with node "a" (1 replica) and key "k" stored at 2.
    let mut v2 = b"CLKW".to_vec();
    v2.extend_from_slice(&2u16.to_le_bytes());
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    v2.extend_from_slice(&1u32.to_le_bytes());
    string(&mut v2, "r");
    v2.extend_from_slice(&2i64.to_le_bytes()); // latest
    v2.push(0); // drill space
    v2.extend_from_slice(&1u32.to_le_bytes());
    string(&mut v2, "a");
    v2.extend_from_slice(&1i64.to_le_bytes());
    v2.extend_from_slice(&1u32.to_le_bytes());
    v2.extend_from_slice(&PositionSpace::Drill.position("a").to_le_bytes());
    v2.push(0); // no limit
    v2.extend_from_slice(&1u64.to_le_bytes());
    string(&mut v2, "k");
    for field in [2i64, 1, i64::MAX] {
        v2.extend_from_slice(&field.to_le_bytes());
    }
    v2.extend_from_slice(&0u32.to_le_bytes()); // merged
    v2.extend_from_slice(&0u32.to_le_bytes()); // backups
    v2.extend_from_slice(&0u32.to_le_bytes()); // ChatRouter namespaces
    let restored = Engine::restore(&v2).expect("format 2 restores");
    let mut applied = Engine::new();
    applied.apply(&hr(
        "r",
        1,
        HashRingOp::AddNode {
            node_id: "a".into(),
        },
    ));
    applied.apply(&hr("r", 2, HashRingOp::StoreKey { key: "k".into() }));
    assert_eq!(restored.state_digest(), applied.state_digest());
    assert_eq!(restored.recomputed_digest(), applied.state_digest());
    let mut longer = v2;
    longer.push(0);
    assert!(Engine::restore(&longer).is_err());
}

#[test]
fn a_backup_that_does_not_decode_restores_nothing_instead_of_panicking() {
    let mut e = Engine::new();
    e.apply(&hr(
        "r",
        1,
        HashRingOp::AddNode {
            node_id: "a".into(),
        },
    ));
    e.apply(&hr("r", 2, HashRingOp::StoreKey { key: "k".into() }));
    // What a forged snapshot could carry: bytes no backup encodes, under a digest that
    // matches them.
    e.hash_ring_mut("r")
        .ns
        .backups
        .push(crate::backups::Backup::new(2, vec![9u8; 5].into()), 4);
    let mut restored = Engine::restore(&e.snapshot()).expect("backups are not decoded");
    assert_eq!(restored.state_digest(), e.state_digest());
    let before = restored.state_digest();
    let outcome = restored.apply(&hr(
        "r",
        3,
        HashRingOp::Restore {
            backup_timestamp: 2,
        },
    ));
    assert_eq!(outcome, crate::Outcome::Count(None));
    assert_ne!(restored.state_digest(), before, "only the clock moved");
    assert_eq!(restored.state_digest(), restored.recomputed_digest());
}

#[test]
fn forged_lengths_and_counts_end_in_an_error_not_a_panic_or_a_huge_allocation() {
    let header = |body: &[u8]| {
        let mut bytes = b"CLKW".to_vec();
        bytes.extend_from_slice(&3u16.to_le_bytes());
        bytes.extend_from_slice(&0u128.to_le_bytes());
        bytes.extend_from_slice(body);
        bytes
    };
    let mut namespace = 1u32.to_le_bytes().to_vec();
    namespace.extend_from_slice(&1u32.to_le_bytes());
    namespace.push(b'r');
    namespace.extend_from_slice(&0i64.to_le_bytes()); // latest
    namespace.extend_from_slice(&u64::MAX.to_le_bytes()); // next seq
    namespace.push(1); // u64 space
    let cases: Vec<Vec<u8>> = vec![
        // A namespace name of 4 GiB.
        header(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
        // 2^32 - 1 nodes, then a node with 2^32 - 1 positions.
        header(&[namespace.as_slice(), &[0xff; 4]].concat()),
        header(
            &[
                namespace.as_slice(),
                &[1, 0, 0, 0, 1, 0, 0, 0, b'a'],
                &[0; 8],
                &[0xff; 4],
            ]
            .concat(),
        ),
        // 2^64 - 1 items on a ring without nodes, and with one.
        header(&[namespace.as_slice(), &[0; 4], &[0xff; 8]].concat()),
        // A key of 4 GiB.
        header(
            &[
                namespace.as_slice(),
                &[0; 4],
                &[1, 0, 0, 0, 0, 0, 0, 0],
                &[0xff; 4],
            ]
            .concat(),
        ),
    ];
    for bytes in cases {
        assert!(Engine::restore(&bytes).is_err());
    }
}
