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
