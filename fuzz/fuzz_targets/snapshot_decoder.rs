//! Arbitrary bytes into every snapshot reader a node has: the engine snapshot
//! (`Engine::restore`), the state-machine snapshot around it (`EngineMachine::restore`:
//! engine + client sessions), the raft snapshot envelope (`SnapshotData::decode`) and the
//! backup file (`backup::decode_file`). A snapshot arrives from a peer or from a file, so
//! none of them may panic, and what they accept must behave like a real state.
//!
//! The envelope and the backup file end in a SHA-256 the fuzzer cannot forge, so each
//! input is also tried with a valid checksum added (sealed), to reach the parsers
//! behind the check.
#![no_main]

use std::sync::{Arc, RwLock};

use clockwise_cluster::backup;
use clockwise_cluster::snapshot::{sha256, SnapshotData, MAGIC as ENVELOPE_MAGIC};
use clockwise_cluster::{MemberAddress, StateMachine};
use clockwise_fuzz::RING;
use clockwise_node::machine::codec::{self, Session};
use clockwise_engine::{
    ChatRouterOp, Command, Engine, HashRingOp, KeyOperation, KeyOperationKind, Op,
};
use clockwise_node::machine::EngineMachine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: clockwise_fuzz::write_seeds(seeds), |data: &[u8]| {
    engine_snapshot(data);
    machine_snapshot(data);

    // The envelope, raw (almost always a checksum refusal) and sealed: magic, the input
    // as members + state, then the checksum.
    let _ = SnapshotData::decode(data);
    let sealed = seal(data);
    let envelope = SnapshotData::decode(&sealed);
    if let Ok(decoded) = &envelope {
        assert_eq!(SnapshotData::decode(&decoded.encode()).as_ref(), Ok(decoded));
        // A node installs the envelope's state into its state machine.
        machine_snapshot(&decoded.state);
    }

    // The backup file: raw, the input as a file body (a raft `Snapshot` message), and a
    // well-formed file around the sealed envelope, which must be accepted exactly when
    // the envelope is.
    let _ = backup::decode_file(data);
    let _ = backup::decode_file(&backup::encode_file(data));
    let snapshot = raft::eraftpb::Snapshot {
        data: sealed.into(),
        ..Default::default()
    };
    let file = backup::encode_file(&backup::encode_body(&snapshot));
    match backup::decode_file(&file) {
        Ok(read) => {
            assert!(envelope.is_ok(), "a backup with a refused envelope was accepted");
            assert_eq!(read, snapshot);
        }
        Err(e) => assert!(envelope.is_err(), "a valid envelope's backup refused: {e}"),
    }
});

/// Seeds: an engine snapshot, a machine snapshot (engine + sessions), an envelope body
/// (members and that machine snapshot, as `seal` completes it) and a backup file body.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let engine = Arc::new(RwLock::new(Engine::new()));
    let mut machine = EngineMachine::new(Arc::clone(&engine));
    for (index, command) in (1..).zip(clockwise_fuzz::sample_log()) {
        let session = Session {
            client_id: format!("c{}", index % 3),
            seq: index,
        };
        machine.apply(index, &codec::encode_entry(&command, Some(&session)));
    }
    let envelope = SnapshotData {
        members: [
            (1, MemberAddress::decode("127.0.0.1:7001")),
            (2, MemberAddress::decode("[::1]:7002")),
        ]
        .into(),
        state: machine.snapshot(),
    }
    .encode();
    let body = envelope[ENVELOPE_MAGIC.len()..envelope.len() - 32].to_vec();
    let snapshot = raft::eraftpb::Snapshot {
        data: envelope.into(),
        ..Default::default()
    };
    let engine_snapshot = engine.read().unwrap().snapshot();
    vec![
        ("engine", engine_snapshot),
        ("machine", machine.snapshot()),
        ("envelope-body", body),
        ("backup-body", backup::encode_body(&snapshot)),
    ]
}

fn seal(body: &[u8]) -> Vec<u8> {
    let mut sealed = [ENVELOPE_MAGIC.as_slice(), body].concat();
    let checksum = sha256(&sealed);
    sealed.extend_from_slice(&checksum);
    sealed
}

/// An accepted engine snapshot round-trips, and the state it gives takes commands.
fn engine_snapshot(bytes: &[u8]) {
    let Ok(engine) = Engine::restore(bytes) else {
        return;
    };
    check_round_trip(&engine);
    exercise(engine);
}

fn check_round_trip(engine: &Engine) {
    let snapshot = engine.snapshot();
    let again = Engine::restore(&snapshot).expect("a snapshot the engine wrote restores");
    assert_eq!(again.state_digest(), engine.state_digest());
    // A restored engine writes back the bytes it was restored from.
    assert_eq!(again.snapshot(), snapshot);
}

/// A restored state must survive what a replica does next. The snapshot format hides the
/// namespace names, so this drives ring "r" (the one the seeds use) of both kinds.
fn exercise(mut engine: Engine) {
    let nodes: Vec<String> = engine
        .hash_ring(RING)
        .map_or(Vec::new(), |r| r.list_nodes());
    let servers: Vec<String> = engine
        .chat_router(RING)
        .map_or(Vec::new(), |c| c.list_servers());
    let mut ops: Vec<Op> = vec![
        Op::HashRing(HashRingOp::Restore {
            backup_timestamp: i64::MAX,
        }),
        Op::ChatRouter(ChatRouterOp::Restore {
            backup_timestamp: i64::MAX,
        }),
        Op::HashRing(HashRingOp::BatchOperations {
            operations: ["k0", "k1", "k14", "k332"]
                .iter()
                .map(|k| KeyOperation {
                    kind: KeyOperationKind::Store,
                    key: (*k).into(),
                })
                .collect(),
        }),
        Op::ChatRouter(ChatRouterOp::AssignRequest {
            request_id: "k0".into(),
            size_mb: 5,
        }),
    ];
    for node in &nodes {
        ops.push(Op::HashRing(HashRingOp::EvictLru {
            node_id: node.clone(),
        }));
    }
    for server in &servers {
        ops.push(Op::ChatRouter(ChatRouterOp::EvictOldestSession {
            server_name: server.clone(),
        }));
    }
    if let [from, to, ..] = &nodes[..] {
        ops.push(Op::HashRing(HashRingOp::MergeNodes {
            from_node: from.clone(),
            to_node: to.clone(),
        }));
    }
    if let Some(first) = servers.first() {
        ops.push(Op::ChatRouter(ChatRouterOp::RemoveServer {
            server_name: first.clone(),
        }));
    }
    ops.push(Op::HashRing(HashRingOp::Backup { max_backups: 2 }));
    for op in ops {
        engine.apply(&Command {
            ring: RING.into(),
            timestamp: 1,
            op,
        });
    }
    check_round_trip(&engine);
}

/// An accepted state-machine snapshot re-encodes canonically, and its digest is the
/// engine's.
fn machine_snapshot(bytes: &[u8]) {
    let engine = Arc::new(RwLock::new(Engine::new()));
    let mut machine = EngineMachine::new(Arc::clone(&engine));
    if machine.restore(bytes).is_err() {
        return;
    }
    let digest = engine.read().unwrap().state_digest();
    clockwise_fuzz::check_machine_snapshot(&machine.snapshot(), &digest);
    check_round_trip(&engine.read().unwrap());
}
