//! Fixtures for tests of the engine and of the crates over it (the log codec, fuzz
//! seeds): compiled for this crate's tests and with the `testing` feature.

use crate::{
    ChatRouterOp, Command, HashRingOp, KeyOperation, KeyOperationKind, Op, PositionSpace,
    RequestOperation, RequestOperationKind,
};

/// A HashRing command.
pub fn hr(ring: &str, timestamp: i64, op: HashRingOp) -> Command {
    Command {
        ring: ring.into(),
        timestamp,
        op: Op::HashRing(op),
    }
}

/// A ChatRouter command.
pub fn cr(ring: &str, timestamp: i64, op: ChatRouterOp) -> Command {
    Command {
        ring: ring.into(),
        timestamp,
        op: Op::ChatRouter(op),
    }
}

/// A command log touching every command kind, both facades and three namespaces.
pub fn sample_log() -> Vec<Command> {
    use ChatRouterOp as C;
    use HashRingOp as H;
    let key_op = |kind, key: &str| KeyOperation {
        kind,
        key: key.into(),
    };
    vec![
        hr(
            "a",
            1,
            H::Configure {
                space: PositionSpace::U64,
            },
        ),
        hr(
            "a",
            1,
            H::AddNodeWithReplicas {
                node_id: "n1".into(),
                num_replicas: 8,
            },
        ),
        hr(
            "a",
            2,
            H::AddNode {
                node_id: "n2".into(),
            },
        ),
        hr("a", 3, H::StoreKey { key: "k1".into() }),
        hr("a", 3, H::StoreKey { key: "k2".into() }),
        hr(
            "a",
            4,
            H::SetCapacity {
                node_id: "n1".into(),
                capacity: 1,
            },
        ),
        hr(
            "a",
            5,
            H::BatchOperations {
                operations: vec![
                    key_op(KeyOperationKind::Store, "k3"),
                    key_op(KeyOperationKind::RemoveKey, "k1"),
                    key_op(KeyOperationKind::Unknown, "k9"),
                ],
            },
        ),
        hr(
            "b",
            6,
            H::AddNode {
                node_id: "n1".into(),
            },
        ),
        hr(
            "a",
            7,
            H::EvictLru {
                node_id: "n2".into(),
            },
        ),
        hr(
            "a",
            8,
            H::RemoveNode {
                node_id: "n1".into(),
            },
        ),
        cr(
            "a",
            1,
            C::AddServer {
                server_name: "s1".into(),
            },
        ),
        cr(
            "a",
            2,
            C::AddServerWithReplicas {
                server_name: "s2".into(),
                num_replicas: 3,
            },
        ),
        cr(
            "a",
            3,
            C::AssignRequest {
                request_id: "r1".into(),
                size_mb: 30,
            },
        ),
        cr(
            "a",
            4,
            C::SetMemoryLimit {
                server_name: "s1".into(),
                max_mb: 40,
            },
        ),
        cr(
            "a",
            5,
            C::BatchRequests {
                operations: vec![RequestOperation {
                    kind: RequestOperationKind::Assign,
                    request_id: "r2".into(),
                    size_mb: 20,
                }],
            },
        ),
        cr(
            "a",
            6,
            C::EvictOldestSession {
                server_name: "s2".into(),
            },
        ),
        cr(
            "a",
            7,
            C::RemoveServer {
                server_name: "s1".into(),
            },
        ),
        cr(
            "c",
            7,
            C::Configure {
                space: PositionSpace::Drill,
            },
        ),
    ]
}

/// xorshift64*: a fixed, dependency-free stream for generated logs.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// `len` commands from `seed`: both drills over two namespaces each, small alphabets of
/// keys and nodes (so keys are stored again, evicted, moved and expire), timestamps
/// that mostly go forward and sometimes back, TTLs, capacities, node adds, removals and
/// merges, backups and restores, and batches.
pub fn random_log(seed: u64, len: usize) -> Vec<Command> {
    use ChatRouterOp as C;
    use HashRingOp as H;
    let mut rng = Rng(seed | 1);
    let mut ts = 0i64;
    let mut log = Vec::with_capacity(len);
    for _ in 0..len {
        ts += rng.below(40) as i64 - 5;
        let ring = ["a", "b"][rng.below(2) as usize];
        let node = format!("n{}", rng.below(6));
        let other = format!("n{}", rng.below(6));
        let key = |rng: &mut Rng| format!("k{}", rng.below(60));
        let command = if rng.below(2) == 0 {
            let op = match rng.below(100) {
                0 => H::Configure {
                    space: [PositionSpace::Drill, PositionSpace::U64][rng.below(2) as usize],
                },
                1..=4 => H::AddNode { node_id: node },
                5..=9 => H::AddNodeWithReplicas {
                    node_id: node,
                    num_replicas: rng.below(5) as i64,
                },
                10..=12 => H::RemoveNode { node_id: node },
                13..=40 => H::StoreKey { key: key(&mut rng) },
                41..=44 => H::SetCapacity {
                    node_id: node,
                    capacity: rng.below(8) as i64 - 1,
                },
                45..=47 => H::EvictLru { node_id: node },
                48..=60 => H::BatchOperations {
                    operations: (0..rng.below(12))
                        .map(|_| KeyOperation {
                            kind: [
                                KeyOperationKind::Store,
                                KeyOperationKind::Store,
                                KeyOperationKind::Route,
                                KeyOperationKind::RemoveKey,
                                KeyOperationKind::Unknown,
                            ][rng.below(5) as usize],
                            key: key(&mut rng),
                        })
                        .collect(),
                },
                61..=80 => H::StoreKeyWithTtl {
                    key: key(&mut rng),
                    ttl_ms: rng.below(200) as i64 - 20,
                },
                81..=85 => H::Backup {
                    max_backups: 1 + rng.below(3) as u32,
                },
                86..=89 => H::Restore {
                    backup_timestamp: ts - rng.below(300) as i64,
                },
                _ => H::MergeNodes {
                    from_node: node,
                    to_node: other,
                },
            };
            hr(ring, ts, op)
        } else {
            let size = rng.below(30) as i64;
            let op = match rng.below(100) {
                0 => C::Configure {
                    space: [PositionSpace::Drill, PositionSpace::U64][rng.below(2) as usize],
                },
                1..=4 => C::AddServer { server_name: node },
                5..=9 => C::AddServerWithReplicas {
                    server_name: node,
                    num_replicas: rng.below(5) as i64,
                },
                10..=13 => C::RemoveServer { server_name: node },
                14..=40 => C::AssignRequest {
                    request_id: key(&mut rng),
                    size_mb: size,
                },
                41..=44 => C::SetMemoryLimit {
                    server_name: node,
                    max_mb: rng.below(120) as i64 - 1,
                },
                45..=47 => C::EvictOldestSession { server_name: node },
                48..=60 => C::BatchRequests {
                    operations: (0..rng.below(12))
                        .map(|_| RequestOperation {
                            kind: [
                                RequestOperationKind::Assign,
                                RequestOperationKind::Assign,
                                RequestOperationKind::Route,
                                RequestOperationKind::Remove,
                                RequestOperationKind::Unknown,
                            ][rng.below(5) as usize],
                            request_id: key(&mut rng),
                            size_mb: rng.below(30) as i64,
                        })
                        .collect(),
                },
                61..=80 => C::AssignRequestWithTtl {
                    request_id: key(&mut rng),
                    size_mb: size,
                    ttl_ms: rng.below(200) as i64 - 20,
                },
                81..=85 => C::Backup {
                    max_backups: 1 + rng.below(3) as u32,
                },
                86..=89 => C::Restore {
                    backup_timestamp: ts - rng.below(300) as i64,
                },
                _ => C::MergeServers {
                    from_server: node,
                    to_server: other,
                },
            };
            cr(ring, ts, op)
        };
        log.push(command);
    }
    log
}
