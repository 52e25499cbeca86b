//! Issue 15: a snapshot is written by the snapshot-writer thread, never the raft
//! driver's. A state machine whose frozen state blocks while it is written shows it: a
//! single node keeps applying proposals while its snapshot is stuck, and records the
//! snapshot (and compacts its log) only once the writer finished. The log it leaves
//! behind is bounded in bytes as well as entries.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clockwise_cluster::driver::{self, DriverConfig, RaftHandle, RaftStatus, Role};
use clockwise_cluster::state_machine::StateSnapshot;
use clockwise_cluster::{LogStore, MemberAddress, StateMachine};
use raft::eraftpb::Message;

/// Opened by the test: until then, every snapshot write waits.
type Gate = Arc<(Mutex<bool>, std::sync::Condvar)>;

/// Counts applied entries; its frozen state waits at the gate while written.
struct Counter {
    applied: u64,
    gate: Gate,
}

struct Frozen {
    applied: u64,
    gate: Gate,
}

impl StateSnapshot for Frozen {
    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let (open, opened) = &*self.gate;
        let mut open = open.lock().unwrap();
        while !*open {
            open = opened.wait(open).unwrap();
        }
        out.write_all(&self.applied.to_be_bytes())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed counter snapshot")]
struct Malformed;

impl StateMachine for Counter {
    type Error = Malformed;
    type Snapshot = Frozen;
    fn apply(&mut self, _index: u64, _data: &[u8]) -> Vec<u8> {
        self.applied += 1;
        self.applied.to_be_bytes().to_vec()
    }
    fn freeze(&self) -> Frozen {
        Frozen {
            applied: self.applied,
            gate: self.gate.clone(),
        }
    }
    fn restore_from(&mut self, reader: &mut dyn Read) -> Result<(), Malformed> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|_| Malformed)?;
        self.applied = u64::from_be_bytes(bytes.try_into().map_err(|_| Malformed)?);
        Ok(())
    }
}

struct Nowhere;

impl driver::Transport for Nowhere {
    fn send(&self, _messages: Vec<Message>) {}
}

async fn wait_status(handle: &RaftHandle, what: &str, done: impl Fn(&RaftStatus) -> bool) {
    let mut status = handle.watch_status();
    tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| done(s)))
        .await
        .unwrap_or_else(|_| panic!("{what}: {:?}", handle.status()))
        .expect("the driver runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_keep_applying_while_a_snapshot_is_being_written() {
    let dir =
        std::env::temp_dir().join(format!("clockwise-snapshot-thread-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = LogStore::open(&dir).unwrap();
    let gate: Gate = Arc::default();
    let config = DriverConfig {
        initial_members: BTreeMap::from([(1, MemberAddress::decode("127.0.0.1:1"))]),
        snapshot_entries: 10,
        snapshot_growth_percent: 0,
        log_retain: 2,
        ..DriverConfig::default()
    };
    let machine = Counter {
        applied: 0,
        gate: gate.clone(),
    };
    let (handle, _thread) = driver::spawn(config, store, machine, Arc::new(Nowhere)).unwrap();
    wait_status(&handle, "leads", |s| s.role == Role::Leader).await;

    // Past the threshold: a snapshot is due, and its write is stuck at the gate.
    for i in 0..15u8 {
        handle.propose(vec![i + 1]).await.unwrap();
    }
    // Were the snapshot written on the driver thread, these would wait forever.
    tokio::time::timeout(Duration::from_secs(15), async {
        for i in 0..200u8 {
            handle.propose(vec![i.max(1)]).await.unwrap();
        }
    })
    .await
    .expect("200 proposals applied while the snapshot was stuck");
    let stuck = handle.status();
    assert_eq!(
        (stuck.snapshot_index, stuck.first_index),
        (0, 1),
        "nothing recorded or compacted while the snapshot is unwritten"
    );

    // Released: the snapshot lands, the log is compacted behind it, and the next one,
    // due meanwhile, follows without another proposal.
    {
        let (open, opened) = &*gate;
        *open.lock().unwrap() = true;
        opened.notify_all();
    }
    wait_status(&handle, "records the snapshot and compacts", |s| {
        s.snapshot_index >= 200 && s.first_index > 1
    })
    .await;
    let files: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().all(|f| f.ends_with(".snap")) && !files.is_empty(),
        "stored files only, no temporary one left: {files:?}"
    );
    handle.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Large entries: the log a snapshot leaves behind it is bounded in bytes, not only in
/// entries (at 10M keys loaded in batches, 5,000 entries were the whole log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_leaves_at_most_the_retained_bytes_of_log() {
    let dir = std::env::temp_dir().join(format!(
        "clockwise-snapshot-retention-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let store = LogStore::open(&dir).unwrap();
    let gate: Gate = Arc::new((Mutex::new(true), std::sync::Condvar::new()));
    let config = DriverConfig {
        initial_members: BTreeMap::from([(1, MemberAddress::decode("127.0.0.1:1"))]),
        snapshot_entries: 10,
        snapshot_growth_percent: 0,
        // The count alone would keep the whole log.
        log_retain: 1000,
        log_retain_bytes: 2000,
        ..DriverConfig::default()
    };
    let machine = Counter { applied: 0, gate };
    let (handle, _thread) = driver::spawn(config, store, machine, Arc::new(Nowhere)).unwrap();
    wait_status(&handle, "leads", |s| s.role == Role::Leader).await;

    for _ in 0..30 {
        handle.propose(vec![7; 500]).await.unwrap();
    }
    wait_status(&handle, "snapshots and compacts", |s| {
        s.snapshot_index >= 20 && s.first_index > 1
    })
    .await;
    let status = handle.status();
    // Four entries of 500 bytes fit in 2,000; the fifth would not.
    assert_eq!(
        status.first_index,
        status.snapshot_index - 3,
        "the log kept behind the snapshot: {status:?}"
    );
    handle.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
