//! Issue 15's mechanisms at a small scale, on three real node processes with a small
//! `--snapshot-entries`: snapshots are built off the raft driver thread while writes
//! go on (and the node logs `took a snapshot` with the fields the bench script
//! parses); a killed follower restarts from its snapshot file plus its log and
//! converges; a wiped follower re-added catches up from a snapshot streamed from the
//! leader's file (see also `replication::a_wiped_follower_rejoins_through_a_snapshot_
//! and_converges`, which makes it travel in several chunks).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clockwise_proto::cluster::v1::{AddMemberRequest, RemoveMemberRequest};
use clockwise_tests::cluster::{TestCluster, WAIT};

use super::replication::{add_nodes, spawn_writer, store, RING};

const FLAGS: &[&str] = &["--snapshot-entries", "50"];

/// Stores `n` keys through `node`, each acknowledged.
async fn store_all(cluster: &TestCluster, node: usize, prefix: &str, n: usize) -> Vec<String> {
    let mut client = cluster.hash_ring(node);
    let mut keys = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}{i}");
        store(&mut client, &key).await.unwrap();
        keys.push(key);
    }
    keys
}

/// A `took a snapshot` log line's fields, as `scripts/bench.sh` reads them.
fn snapshot_log_fields(log: &str) -> Vec<(u64, u64, u64)> {
    let field = |line: &str, name: &str| -> Option<u64> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    log.lines()
        .filter(|l| l.contains("took a snapshot"))
        .filter_map(|l| {
            Some((
                field(l, "index")?,
                field(l, "bytes")?,
                field(l, "build_ms")?,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_taken_while_writes_continue_and_replicas_agree() {
    let cluster = TestCluster::start_with(3, FLAGS);
    let leader = cluster.leader().await;
    add_nodes(&cluster).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(cluster.hash_ring(leader), "w", acked.clone(), stop.clone());

    // Two snapshots in a row on the leader, each while the writer keeps writing: the
    // number of acknowledged writes goes on growing across both.
    let mut last = 0;
    for round in 0..2 {
        let before = acked.lock().unwrap().len();
        cluster
            .wait_status(leader, "takes a snapshot while writes go on", |s| {
                s.snapshot_index > last && s.first_log_index > 1
            })
            .await;
        last = cluster.status(leader).await.unwrap().snapshot_index;
        let deadline = Instant::now() + WAIT;
        while acked.lock().unwrap().len() <= before + 10 {
            assert!(Instant::now() < deadline, "writes stalled in round {round}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let log = cluster.nodes[leader].as_ref().unwrap().stderr();
    let taken = snapshot_log_fields(&log);
    assert!(
        taken.len() >= 2
            && taken
                .iter()
                .all(|&(index, bytes, _)| index > 0 && bytes > 0),
        "`took a snapshot` lines carry index, bytes and build_ms: {taken:?}\n{log}"
    );
    let keys = acked.lock().unwrap().clone();
    cluster.assert_all_present(RING, &keys).await;
    cluster.assert_digests_converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_restarts_from_its_snapshot_and_log_and_converges() {
    let mut cluster = TestCluster::start_with(3, FLAGS);
    let leader = cluster.leader().await;
    add_nodes(&cluster).await;
    let follower = (leader + 1) % 3;
    let mut keys = store_all(&cluster, leader, "k", 150).await;
    // The follower builds its own snapshots from what it applied.
    cluster
        .wait_status(follower, "snapshotted and compacted its log", |s| {
            s.snapshot_index > 0 && s.first_log_index > 1
        })
        .await;
    cluster.kill(follower);
    keys.extend(store_all(&cluster, leader, "m", 30).await);

    cluster.start_node(follower);
    // Its log starts after a snapshot: the state it serves came from the snapshot
    // file, then the log after it, then the leader's newer entries.
    let restarted = cluster.status(follower).await;
    assert!(
        restarted
            .as_ref()
            .is_some_and(|s| s.snapshot_index > 0 && s.first_log_index > 1),
        "restarted from a snapshot over a compacted log: {restarted:?}"
    );
    cluster.assert_digests_converge().await;
    let leader_status = cluster.status(leader).await.unwrap();
    let follower_status = cluster.status(follower).await.unwrap();
    assert_eq!(follower_status.applied_index, leader_status.applied_index);
    keys.extend(store_all(&cluster, follower, "after", 5).await);
    cluster.assert_all_present(RING, &keys).await;
    cluster.assert_digests_converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_re_added_catches_up_from_a_streamed_snapshot() {
    let mut cluster = TestCluster::start_with(3, FLAGS);
    let leader = cluster.leader().await;
    add_nodes(&cluster).await;
    let mut keys = store_all(&cluster, leader, "k", 150).await;
    cluster
        .wait_status(leader, "snapshotted and compacted its log", |s| {
            s.snapshot_index > 0 && s.first_log_index > 2
        })
        .await;
    let wiped = (leader + 1) % 3;
    let wiped_id = wiped as u64 + 1;
    cluster.wipe(wiped);
    cluster
        .cluster_client(leader)
        .remove_member(RemoveMemberRequest { id: wiped_id })
        .await
        .unwrap();
    cluster.start_joining(wiped);
    cluster
        .cluster_client(leader)
        .add_member(AddMemberRequest {
            id: wiped_id,
            address: cluster.addrs[wiped].clone(),
            peer_address: cluster.peer_addrs[wiped].clone(),
        })
        .await
        .unwrap();
    cluster
        .wait_status(wiped, "installed the leader's snapshot", |s| {
            s.snapshot_index > 0
        })
        .await;
    let log = cluster.nodes[wiped].as_ref().unwrap().stderr();
    assert!(
        log.contains("received a snapshot") && log.contains("installed a snapshot from the leader"),
        "the snapshot came over the transport's stream:\n{log}"
    );
    // The file it received is its stored snapshot now.
    let stored: Vec<_> = std::fs::read_dir(cluster.dirs[wiped].join("raft/snapshots"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        stored
            .iter()
            .any(|n| n.to_string_lossy().ends_with(".snap")),
        "a stored snapshot file: {stored:?}"
    );
    keys.extend(store_all(&cluster, wiped, "after", 5).await);
    cluster.assert_all_present(RING, &keys).await;
    cluster.assert_digests_converge().await;
}
