//! Whole-cluster backups with real processes: a snapshot saved from a 3-node cluster
//! under writes, restored into a fresh data dir and started, has the state digest
//! recorded at the snapshot's index, serves writes, and grows with AddMember; a
//! corrupt or truncated file is refused with a clear message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clockwise_client::Client;
use clockwise_tests::cluster::{TestCluster, WAIT};
use clockwise_tests::{free_local_addr, unique_temp_dir, NodeProcess};

use crate::clockwise;

/// `index N` and `state digest D` from `backup save`'s report.
fn saved_index_and_digest(report: &str) -> (u64, String) {
    let word_after = |marker: &str| {
        let rest = &report[report.find(marker).expect(marker) + marker.len()..];
        rest.split([' ', ')', ',']).next().unwrap().to_owned()
    };
    (
        word_after("at index ").parse().unwrap(),
        word_after("state digest "),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_saved_under_writes_restores_into_a_new_cluster_with_its_digest() {
    let cluster = TestCluster::start(3);
    cluster.leader().await;
    let client = Client::builder()
        .endpoints(cluster.addrs.clone())
        .build()
        .await
        .unwrap();
    let ring = client.hash_ring("backup");
    ring.add_node_with_replicas("n1", 10).await.unwrap();
    ring.add_node_with_replicas("n2", 10).await.unwrap();

    // Writes keep going while the snapshot is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(0u64));
    let writer = {
        let (ring, stop, written) = (ring.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                ring.store_key(&format!("k{i}")).await.unwrap();
                i += 1;
                *written.lock().unwrap() = i;
            }
        })
    };
    let deadline = Instant::now() + WAIT;
    while *written.lock().unwrap() < 50 {
        assert!(Instant::now() < deadline, "writes stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = unique_temp_dir();
    let file = dir.join("cluster.backup");
    let file = file.to_str().unwrap();
    let endpoints = cluster.addrs.join(",");
    let (code, report, err) = clockwise(&["backup", "save", file, "--endpoints", &endpoints], &[]);
    assert_eq!(code, 0, "backup save: {err}");
    let (index, digest) = saved_index_and_digest(&report);
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(index > 0 && digest.len() == 64, "{report}");

    // A damaged file is refused before anything is written.
    let contents = std::fs::read(file).unwrap();
    let cut = dir.join("cut.backup");
    std::fs::write(&cut, &contents[..contents.len() / 2]).unwrap();
    let mut flipped = contents.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let corrupt = dir.join("corrupt.backup");
    std::fs::write(&corrupt, &flipped).unwrap();
    for (bad, expected) in [(&cut, "truncated"), (&corrupt, "checksum")] {
        let target = dir.join("refused");
        let (code, _, err) = clockwise(
            &[
                "backup",
                "restore",
                bad.to_str().unwrap(),
                "--data-dir",
                target.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 1);
        assert!(err.contains(expected), "{err}");
        assert!(!target.join("raft").join("log").exists(), "nothing written");
    }

    // Restored into a fresh directory and started: the digest recorded at the index.
    let address = free_local_addr();
    let peer_address = free_local_addr();
    let restored_dir = dir.join("restored");
    let (code, out, err) = clockwise(
        &[
            "backup",
            "restore",
            file,
            "--data-dir",
            restored_dir.to_str().unwrap(),
            "--id",
            "1",
            "--address",
            &address,
            "--peer-address",
            &peer_address,
        ],
        &[],
    );
    assert_eq!(code, 0, "backup restore: {err}");
    assert!(out.contains(&format!("index {index}")), "{out}");
    let mut restored = TestCluster::adopt(vec![NodeProcess::start_at(
        &address,
        &restored_dir,
        &[
            "--id",
            "1",
            "--peer-listen",
            &peer_address,
            "--raft-tick-ms",
            "20",
        ],
    )]);
    restored
        .wait_status(0, "the restored node leads, at the snapshot's state", |s| {
            s.role == clockwise_proto::cluster::v1::Role::Leader as i32 && s.applied_index >= index
        })
        .await;
    let status = restored.status(0).await.unwrap();
    assert_eq!(status.state_digest, digest, "{status:?}");
    assert_eq!(status.members.len(), 1);

    // It serves, and grows with AddMember.
    let restored_client = Client::builder()
        .endpoints([address.clone()])
        .build()
        .await
        .unwrap();
    let restored_ring = restored_client.hash_ring("backup");
    assert_eq!(restored_ring.get_node_count().await.unwrap(), 2);
    restored_ring.store_key("after-restore").await.unwrap();
    let second = restored.new_slot();
    restored.start_joining(second);
    restored_client
        .cluster()
        .add_member(2, &restored.addrs[second], &restored.peer_addrs[second])
        .await
        .unwrap();
    restored
        .wait_status(0, "node 2 joined as a voter", |s| {
            s.members.iter().any(|m| m.id == 2 && !m.learner)
        })
        .await;
    restored.assert_digests_converge().await;
    let _ = std::fs::remove_dir_all(&dir);
}
