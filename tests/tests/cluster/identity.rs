//! One cluster identity; founding is explicit; amnesia cannot vote (issue #17, 1–2).
//!
//! - A founder whose data dir was lost, restarted with its original command, refuses to
//!   start (it could otherwise vote with an empty log and let a lagging node lead
//!   without the acknowledged writes); the others keep every acknowledged write.
//! - A cluster grown from a lone node: that node, wiped and restarted with its
//!   original command, founds a new cluster with a new id; the others refuse it, the
//!   SDK refuses it (`Error::WrongCluster`) and never reads from it.

use std::time::{Duration, Instant};

use clockwise_client::{Client, Error};
use clockwise_proto::cluster::v1::{AddMemberRequest, RemoveMemberRequest, Role};
use clockwise_proto::hashring::v1 as hr;
use clockwise_tests::cluster::{TestCluster, WAIT};
use clockwise_tests::{free_local_addr, unique_temp_dir, NodeProcess};

const RING: &str = "identity";

async fn add_ring_node(cluster: &TestCluster, i: usize) {
    let added = cluster
        .hash_ring(i)
        .add_node_with_replicas(hr::AddNodeWithReplicasRequest {
            ring: RING.into(),
            timestamp: 1,
            node_id: "a".into(),
            num_replicas: 5,
        })
        .await
        .expect("AddNodeWithReplicas");
    assert!(added.into_inner().ok);
}

async fn store_keys(cluster: &TestCluster, leader: usize, prefix: &str, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for k in 0..n {
        let key = format!("{prefix}-{k}");
        cluster
            .hash_ring(leader)
            .store_key(hr::StoreKeyRequest {
                ring: RING.into(),
                timestamp: 0,
                key: key.clone(),
                ttl_ms: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("store {key}: {e}"));
        keys.push(key);
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_founder_started_again_refuses_and_no_acknowledged_write_is_lost() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.leader().await;
    add_ring_node(&cluster, leader).await;
    // Node 3 lags: down while writes are acknowledged by nodes 1 and 2.
    let lagging = 2;
    cluster.kill(lagging);
    let leader = cluster.leader().await;
    let keys = store_keys(&cluster, leader, "acked", 20).await;
    // Node 1 loses its data and node 2 is down: only node 3 (without the writes) and
    // an empty node 1 are left, which must not make a quorum.
    cluster.wipe(0);
    cluster.kill(1);
    cluster.start_node(lagging);
    // Node 1's original command (no --initial-cluster-state, as before this rule):
    // an empty dir with --peers naming others founds nothing.
    let refused = cluster
        .try_start_node_as(0, None)
        .err()
        .expect("a wiped founder started with its original flags must not start");
    assert!(refused.contains("--initial-cluster-state"), "{refused}");
    // Its restart flags say it is a member: it refuses, and says how to recover.
    let refused = cluster
        .try_start_node_as(0, Some("existing"))
        .err()
        .expect("an empty member must not start");
    assert!(refused.contains("its data was lost"), "{refused}");
    assert!(refused.contains("remove-member 1"), "{refused}");
    // Node 3 alone: never a leader (no quorum) while node 2 is down.
    let status = cluster.status(lagging).await.expect("node 3 answers");
    assert_ne!(status.role, Role::Leader as i32, "{status:?}");
    // Node 2 comes back: every acknowledged write is there.
    cluster.start_node(1);
    let leader = cluster.leader().await;
    assert_ne!(leader, 0, "node 1 is not running");
    cluster.assert_all_present(RING, &keys).await;
    // The recovery it printed: remove, start empty with --join, add back.
    let removed = cluster
        .cluster_client(leader)
        .remove_member(RemoveMemberRequest { id: 1 })
        .await
        .expect("RemoveMember 1")
        .into_inner();
    assert!(removed.members.iter().all(|m| m.id != 1));
    cluster.start_joining(0);
    cluster
        .cluster_client(leader)
        .add_member(AddMemberRequest {
            id: 1,
            address: cluster.addrs[0].clone(),
            peer_address: cluster.peer_addrs[0].clone(),
        })
        .await
        .expect("AddMember 1");
    let cluster_id = cluster.status(leader).await.expect("status").cluster_id;
    assert_eq!(cluster_id.len(), 32, "{cluster_id:?}");
    cluster
        .wait_status(0, "rejoined the cluster", |s| {
            s.cluster_id == cluster_id && s.applied_index > 0
        })
        .await;
    cluster.assert_digests_converge().await;
    cluster.assert_all_present(RING, &keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_lone_founder_is_a_new_cluster_that_peers_and_clients_refuse() {
    // `clockwise node --id 1`, grown with AddMember: the README's way.
    let (addr, peer, dir) = (free_local_addr(), free_local_addr(), unique_temp_dir());
    let original = ["--id", "1", "--peer-listen", &peer, "--raft-tick-ms", "20"];
    let first = NodeProcess::start_at(&addr, &dir, &original);
    let mut cluster = TestCluster::adopt(vec![first]);
    cluster.leader().await;
    for _ in 0..2 {
        let i = cluster.new_slot();
        cluster.start_joining(i);
        cluster
            .cluster_client(0)
            .add_member(AddMemberRequest {
                id: i as u64 + 1,
                address: cluster.addrs[i].clone(),
                peer_address: cluster.peer_addrs[i].clone(),
            })
            .await
            .expect("AddMember");
        cluster
            .wait_status(0, "the new member is a voter", |s| {
                s.members.iter().any(|m| m.id == i as u64 + 1 && !m.learner)
            })
            .await;
    }
    add_ring_node(&cluster, cluster.leader().await).await;
    let keys = store_keys(&cluster, cluster.leader().await, "grown", 12).await;
    let old_id = cluster.status(1).await.expect("status").cluster_id;
    assert_eq!(cluster.status(0).await.expect("status").cluster_id, old_id);

    // A client pinned to the cluster.
    let client = Client::builder()
        .endpoints(cluster.addrs.clone())
        .timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("client");
    let ring = client.hash_ring(RING);
    assert_eq!(
        ring.route_key("grown-0").await.expect("route").as_deref(),
        Some("a")
    );
    assert_eq!(client.cluster_id().as_deref(), Some(old_id.as_str()));

    // Node 1 loses its data and is started again with its original command.
    cluster.wipe(0);
    cluster.nodes[0] = Some(NodeProcess::start_at(&addr, &dir, &original));
    cluster
        .wait_status(0, "leads a cluster of its own", |s| {
            s.role == Role::Leader as i32
        })
        .await;
    let new_id = cluster.status(0).await.expect("status").cluster_id;
    assert_ne!(
        new_id, old_id,
        "a refounded node must not take the old identity"
    );

    // Nodes 2 and 3 still make a quorum of the old cluster, and refuse node 1.
    let deadline = Instant::now() + WAIT;
    loop {
        let s2 = cluster.status(1).await;
        if s2
            .as_ref()
            .is_some_and(|s| s.leader_id == 2 || s.leader_id == 3)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no leader among nodes 2, 3: {s2:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The pinned client: node 1 is another cluster's; every read comes from the old
    // cluster and finds every acknowledged write, however the calls are spread.
    let statuses = client.cluster().statuses().await;
    let node1 = statuses
        .iter()
        .find(|(endpoint, _)| endpoint.ends_with(&addr))
        .expect("node 1 is a known endpoint");
    assert!(
        matches!(&node1.1, Err(Error::WrongCluster { expected, found, .. })
            if *expected == old_id && *found == new_id),
        "{node1:?}"
    );
    for key in &keys {
        let owner = ring
            .route_key(key)
            .await
            .unwrap_or_else(|e| panic!("route {key}: {e}"));
        assert_eq!(
            owner.as_deref(),
            Some("a"),
            "{key} read from another cluster"
        );
    }
    // Writes keep going to the old cluster.
    assert!(ring.store_key("after-wipe").await.expect("store").is_some());
    let status = cluster.status(0).await.expect("node 1 answers");
    assert_eq!(status.cluster_id, new_id);
    cluster.kill(0);
    cluster.assert_all_present(RING, &keys).await;
}
