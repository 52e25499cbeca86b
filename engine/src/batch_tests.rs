//! A batch is its operations applied one by one: the keys a batch looks up together
//! first (positions, slots) must give the same results and state even when earlier
//! operations of the batch remove, evict or re-store them, and slots are reused.

use super::{
    BatchResult, ChatRouter, HashRing, KeyOperation, KeyOperationKind, PositionSpace,
    RequestOperation, RequestOperationKind,
};

/// xorshift64: a fixed stream.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Keys from a small alphabet (duplicates within a batch), one past the inline length.
fn key(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("k{}", rng.below(40)),
        1 => format!("a-key-longer-than-fifteen-bytes-{}", rng.below(10)),
        _ => format!("r{}", rng.below(12)),
    }
}

#[test]
fn a_hashring_batch_equals_its_operations_one_by_one() {
    for space in [PositionSpace::Drill, PositionSpace::U64] {
        let mut rng = Rng(0x51_7CC1_B727_220A);
        let (mut batched, mut single) = (HashRing::default(), HashRing::default());
        for ring in [&mut batched, &mut single] {
            ring.configure(space);
            for (i, node) in ["n0", "n1", "n2"].iter().enumerate() {
                ring.add_node_with_replicas(node, 3);
                // Small capacities: stores in a batch evict keys the batch looked up.
                ring.set_capacity(node, 2 + i as i64);
            }
        }
        for ts in 1..2_000 {
            let ops: Vec<KeyOperation> = (0..rng.below(20))
                .map(|_| KeyOperation {
                    kind: match rng.below(7) {
                        0..=3 => KeyOperationKind::Store,
                        4 => KeyOperationKind::Route,
                        5 => KeyOperationKind::RemoveKey,
                        _ => KeyOperationKind::Unknown,
                    },
                    key: key(&mut rng),
                })
                .collect();
            let got = batched.batch_operations(ts, &ops);
            let want: Vec<BatchResult> = ops
                .iter()
                .map(|op| match op.kind {
                    KeyOperationKind::Store => {
                        BatchResult::from_node(single.store_key(ts, &op.key))
                    }
                    KeyOperationKind::Route => BatchResult::from_node(single.route_key(&op.key)),
                    KeyOperationKind::RemoveKey => {
                        BatchResult::Ok(single.ns.remove_key(&op.key).is_some())
                    }
                    KeyOperationKind::Unknown => BatchResult::Empty,
                })
                .collect();
            assert_eq!(got, want, "{space:?} ts {ts}: {ops:?}");
            if ts % 50 == 0 {
                assert_eq!(
                    batched.route_keys(&["k1", "r2", ""]),
                    ["k1", "r2", ""].map(|k| single.route_key(k)),
                );
                assert_eq!(batched.top_loaded(3), single.top_loaded(3));
                for node in ["n0", "n1", "n2"] {
                    assert_eq!(batched.evict_lru(node), single.evict_lru(node), "{node}");
                }
            }
        }
    }
}

#[test]
fn a_chatrouter_batch_equals_its_operations_one_by_one() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut batched, mut single) = (ChatRouter::default(), ChatRouter::default());
    for router in [&mut batched, &mut single] {
        for node in ["s0", "s1"] {
            router.add_server_with_replicas(node, 4);
            router.set_memory_limit(node, 12);
        }
    }
    for ts in 1..2_000 {
        let ops: Vec<RequestOperation> = (0..rng.below(20))
            .map(|_| RequestOperation {
                kind: match rng.below(6) {
                    0..=2 => RequestOperationKind::Assign,
                    3 => RequestOperationKind::Route,
                    4 => RequestOperationKind::Remove,
                    _ => RequestOperationKind::Unknown,
                },
                request_id: key(&mut rng),
                size_mb: 1 + rng.below(6) as i64,
            })
            .collect();
        let got = batched.batch_requests(ts, &ops);
        let want: Vec<BatchResult> = ops
            .iter()
            .map(|op| match op.kind {
                RequestOperationKind::Assign => {
                    BatchResult::from_node(single.assign_request(ts, &op.request_id, op.size_mb))
                }
                RequestOperationKind::Route => {
                    BatchResult::from_node(single.route_request(&op.request_id))
                }
                RequestOperationKind::Remove => {
                    BatchResult::Ok(single.ns.remove_key(&op.request_id).is_some())
                }
                RequestOperationKind::Unknown => BatchResult::Empty,
            })
            .collect();
        assert_eq!(got, want, "ts {ts}: {ops:?}");
        if ts % 50 == 0 {
            assert_eq!(batched.top_servers(2), single.top_servers(2));
            assert_eq!(
                batched.route_requests(&["k3", "r4"]),
                ["k3", "r4"].map(|k| single.route_request(k)),
            );
        }
    }
}
