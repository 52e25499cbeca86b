//! What the fuzz targets share: a command log touching every operation of both drills,
//! and the seeds the targets write for themselves (no corpus is committed).
//!
//! Each target's `init` calls [`write_seeds`]: when `CLOCKWISE_FUZZ_SEEDS` names a
//! directory (scripts/fuzz.sh sets it to the target's corpus), the target's seeds are
//! written there before libFuzzer reads the corpus, so a fresh checkout starts from
//! well-formed inputs rather than from nothing.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use clockwise_engine::{
    ChatRouterOp, Command, Engine, HashRingOp, KeyOperation, KeyOperationKind, Op, PositionSpace,
    RequestOperation, RequestOperationKind,
};
use clockwise_node::machine::EngineMachine;

/// A snapshot the state machine wrote restores, writes itself again byte for byte, and
/// has `digest` (the digest of the state it was taken from).
pub fn check_machine_snapshot(snapshot: &[u8], digest: &str) {
    let mut restored = EngineMachine::new(Arc::new(RwLock::new(Engine::new())));
    restored
        .restore(snapshot)
        .expect("a snapshot the machine wrote restores");
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(
        EngineMachine::digest_of_snapshot(snapshot).expect("digest"),
        digest
    );
}

/// The ring every seed uses (and the one `snapshot_decoder` exercises after a restore).
pub const RING: &str = "r";

/// Every command kind of both drills on ring [`RING`], in an order that leaves state
/// behind: nodes with limits, keys with and without TTLs, backups, a merge, and a
/// ChatRouter that emptied (stale sizes).
pub fn sample_log() -> Vec<Command> {
    use ChatRouterOp as C;
    use HashRingOp as H;
    let s = |v: &str| v.to_string();
    let hash = [
        H::Configure {
            space: PositionSpace::Drill,
        },
        H::AddNode { node_id: s("n0") },
        H::AddNodeWithReplicas {
            node_id: s("node_c"),
            num_replicas: 3,
        },
        H::AddNode { node_id: s("n12") },
        H::SetCapacity {
            node_id: s("n0"),
            capacity: 2,
        },
        H::StoreKey { key: s("k14") },
        H::StoreKeyWithTtl {
            key: s("k0"),
            ttl_ms: 50,
        },
        H::BatchOperations {
            operations: [
                (KeyOperationKind::Store, "k1"),
                (KeyOperationKind::Route, "k2"),
                (KeyOperationKind::RemoveKey, "k1"),
                (KeyOperationKind::Unknown, "k3"),
            ]
            .map(|(kind, key)| KeyOperation { kind, key: s(key) })
            .to_vec(),
        },
        H::Backup { max_backups: 2 },
        H::EvictLru { node_id: s("n0") },
        H::MergeNodes {
            from_node: s("n12"),
            to_node: s("n0"),
        },
        H::Restore {
            backup_timestamp: 100,
        },
        H::RemoveNode {
            node_id: s("node_c"),
        },
    ]
    .map(Op::HashRing);
    let chat = [
        C::Configure {
            space: PositionSpace::U64,
        },
        C::AddServer {
            server_name: s("srv_a"),
        },
        C::AddServerWithReplicas {
            server_name: s("big"),
            num_replicas: 2,
        },
        C::SetMemoryLimit {
            server_name: s("srv_a"),
            max_mb: 50,
        },
        C::AssignRequest {
            request_id: s("r1"),
            size_mb: 30,
        },
        C::AssignRequestWithTtl {
            request_id: s("r2"),
            size_mb: 20,
            ttl_ms: 40,
        },
        C::BatchRequests {
            operations: [
                (RequestOperationKind::Assign, "r3", 10),
                (RequestOperationKind::Route, "r4", 0),
                (RequestOperationKind::Remove, "r3", 0),
                (RequestOperationKind::Unknown, "r5", 0),
            ]
            .map(|(kind, id, size_mb)| RequestOperation {
                kind,
                request_id: s(id),
                size_mb,
            })
            .to_vec(),
        },
        C::Backup { max_backups: 3 },
        C::EvictOldestSession {
            server_name: s("big"),
        },
        C::MergeServers {
            from_server: s("big"),
            to_server: s("srv_a"),
        },
        C::Restore {
            backup_timestamp: 100,
        },
        C::RemoveServer {
            server_name: s("srv_a"),
        },
        C::AddServer {
            server_name: s("srv_b"),
        },
    ]
    .map(Op::ChatRouter);
    hash.into_iter()
        .chain(chat)
        .zip(1..)
        .map(|(op, timestamp)| Command {
            ring: RING.into(),
            timestamp,
            op,
        })
        .collect()
}

/// The engine [`sample_log`] leaves.
pub fn sample_engine() -> Engine {
    let mut engine = Engine::new();
    for command in sample_log() {
        engine.apply(&command);
    }
    engine
}

/// Writes `seeds` as `seed-NN-label` files into `$CLOCKWISE_FUZZ_SEEDS`, if it is set.
pub fn write_seeds(seeds: impl FnOnce() -> Vec<(&'static str, Vec<u8>)>) {
    let Some(dir) = std::env::var_os("CLOCKWISE_FUZZ_SEEDS").map(PathBuf::from) else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    for (i, (label, bytes)) in seeds().into_iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}-{label}")), bytes).expect("write a seed");
    }
}
