//! Snapshot benchmark: how long building, storing and restoring a node's snapshot takes
//! at growing states. Building runs on the raft driver thread, so its cost is the pause a
//! snapshot puts on replication. Prints a markdown table for `docs/benchmarks.md`.
//!
//! `cargo bench -p clockwise-node --bench snapshot` (add `-- --quick` for 10k/100k).
//! State: one HashRing of 64 nodes × 100 virtual nodes (`u64` space) holding N keys.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clockwise_cluster::snapshot::SnapshotData;
use clockwise_cluster::{LogStore, MemberAddress};
use clockwise_engine::{Engine, PositionSpace};
use clockwise_node::machine::EngineMachine;
use raft::eraftpb::Snapshot;

fn machine_with(keys: usize) -> EngineMachine {
    let mut engine = Engine::new();
    let ring = engine.hash_ring_mut("bench");
    assert!(ring.configure(PositionSpace::U64));
    for i in 0..64 {
        ring.add_node_with_replicas(&format!("node-{i:02}"), 100);
    }
    for i in 0..keys {
        ring.store_key(2, &format!("key-{i}"));
    }
    EngineMachine::new(Arc::new(RwLock::new(engine)))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    let dir = std::env::temp_dir().join(format!("clockwise-snapshot-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = LogStore::open(&dir).expect("snapshot store");
    println!("| keys | snapshot bytes | encode state | envelope (SHA-256) | write + fsync | pause (sum) | restore (decode + check + rebuild) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &keys in sizes {
        let mut machine = machine_with(keys);
        let started = Instant::now();
        let state = machine.snapshot();
        let encode = started.elapsed();

        let started = Instant::now();
        let data = SnapshotData {
            members: [(1, MemberAddress::decode("127.0.0.1:50051"))].into(),
            state,
        }
        .encode();
        let envelope = started.elapsed();

        let bytes = data.len();
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        snapshot.mut_metadata().index = keys as u64;
        snapshot.mut_metadata().term = 1;
        let started = Instant::now();
        store.save_snapshot(&snapshot).expect("save");
        let write = started.elapsed();

        let started = Instant::now();
        let decoded = SnapshotData::decode(&snapshot.data).expect("decode");
        machine.restore(&decoded.state).expect("restore");
        let restore = started.elapsed();

        println!(
            "| {keys} | {:.1} MB | {} | {} | {} | {} | {} |",
            bytes as f64 / 1e6,
            ms(encode),
            ms(envelope),
            ms(write),
            ms(encode + envelope + write),
            ms(restore)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
