//! A three-node cluster of real processes on loopback, each with its own fsync'd log:
//! writes through any node are visible through every other, and no acknowledged write
//! is lost when the leader, or every node, is killed with SIGKILL and restarted. A
//! wiped follower comes back through a snapshot; members join, leave and take over
//! leadership while writes continue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clockwise_proto::cluster::v1::{
    AddMemberRequest, RemoveMemberRequest, Role, StatusResponse, TransferLeaderRequest,
};
use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use clockwise_tests::cluster::{TestCluster, WAIT};
use tonic::transport::Channel;

pub(super) const RING: &str = "cluster";

pub(super) async fn store(
    client: &mut HashRingClient<Channel>,
    key: &str,
) -> Result<(), tonic::Status> {
    let req = hr::StoreKeyRequest {
        ring: RING.into(),
        timestamp: 0,
        key: key.into(),
        ttl_ms: 0,
    };
    let node = client.store_key(req).await?.into_inner().node_id;
    assert!(node.is_some(), "a ring with nodes stores every key");
    Ok(())
}

/// Nodes `a`, `b`, `c` (5 virtual nodes each), added through nodes 0, 1 and 2.
pub(super) async fn add_nodes(cluster: &TestCluster) {
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let req = hr::AddNodeWithReplicasRequest {
            ring: RING.into(),
            timestamp: 1,
            node_id: name.into(),
            num_replicas: 5,
        };
        assert!(
            cluster
                .hash_ring(i)
                .add_node_with_replicas(req)
                .await
                .unwrap()
                .into_inner()
                .ok
        );
    }
}

/// Writes keys through `client` until stopped, recording the acknowledged ones.
pub(super) fn spawn_writer(
    client: HashRingClient<Channel>,
    prefix: &'static str,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = client;
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("{prefix}{i}");
            i += 1;
            if store(&mut client, &key).await.is_ok() {
                acked.lock().unwrap().push(key);
            }
        }
    })
}

async fn wait_acked(acked: &Mutex<Vec<String>>, at_least: usize) {
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < at_least {
        assert!(
            Instant::now() < deadline,
            "writes stalled below {at_least} acknowledgements"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_each_node_are_visible_through_every_other() {
    let cluster = TestCluster::start(3);
    cluster.leader().await;
    add_nodes(&cluster).await;
    let mut keys = Vec::new();
    for i in 0..30 {
        let key = format!("k{i}");
        store(&mut cluster.hash_ring(i % 3), &key).await.unwrap();
        keys.push(key);
    }
    cluster.assert_all_present(RING, &keys).await;
    // The same answer everywhere: routing agrees on every node.
    for key in &keys {
        let mut owners = Vec::new();
        for i in 0..3 {
            let req = hr::RouteKeyRequest {
                ring: RING.into(),
                timestamp: 1,
                key: key.clone(),
            };
            owners.push(
                cluster
                    .hash_ring(i)
                    .route_key(req)
                    .await
                    .unwrap()
                    .into_inner()
                    .node_id,
            );
        }
        assert!(owners.iter().all(|o| o == &owners[0]), "{key}: {owners:?}");
    }
    cluster.assert_digests_converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_stream_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.leader().await;
    add_nodes(&cluster).await;
    let writer_node = (leader + 1) % 3;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        cluster.hash_ring(writer_node),
        "w",
        acked.clone(),
        stop.clone(),
    );

    wait_acked(&acked, 20).await;
    cluster.kill(leader);
    let before = acked.lock().unwrap().len();
    // A new leader serves writes.
    wait_acked(&acked, before + 20).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    cluster.start_node(leader);
    let keys = acked.lock().unwrap().clone();
    cluster.assert_all_present(RING, &keys).await;
    cluster.assert_digests_converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_node_mid_stream_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::start(3);
    cluster.leader().await;
    add_nodes(&cluster).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(cluster.hash_ring(0), "x", acked.clone(), stop.clone());
    wait_acked(&acked, 30).await;
    for i in 0..3 {
        cluster.kill(i);
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    for i in 0..3 {
        cluster.start_node(i);
    }
    cluster.leader().await;
    let keys = acked.lock().unwrap().clone();
    cluster.assert_all_present(RING, &keys).await;
    cluster.assert_digests_converge().await;
}

fn with_session<T>(message: T, client: &str, seq: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-clockwise-client-id", client.parse().unwrap());
    request
        .metadata_mut()
        .insert("x-clockwise-seq", seq.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_with_the_same_client_id_and_seq_is_applied_once() {
    let cluster = TestCluster::start(3);
    let leader = cluster.leader().await;
    add_nodes(&cluster).await;
    let mut client = cluster.hash_ring((leader + 1) % 3); // through a follower
    for i in 0..6 {
        store(&mut client, &format!("r{i}")).await.unwrap();
    }
    let used = |c: HashRingClient<Channel>, node: String| async move {
        let mut c = c;
        let req = hr::GetUsedRequest {
            ring: RING.into(),
            timestamp: 1,
            node_id: node,
        };
        c.get_used(req).await.unwrap().into_inner().used
    };
    // Find a node holding keys, evict from it with a session, then retry the same write.
    let mut target = None;
    for node in ["a", "b", "c"] {
        if used(client.clone(), node.into()).await > 0 {
            target = Some(node.to_owned());
            break;
        }
    }
    let node = target.expect("some node holds keys");
    let before = used(client.clone(), node.clone()).await;
    let evict = hr::EvictLruRequest {
        ring: RING.into(),
        timestamp: 2,
        node_id: node.clone(),
    };
    let first = client
        .evict_lru(with_session(evict.clone(), "client-1", "1"))
        .await
        .unwrap()
        .into_inner();
    let retry = client
        .evict_lru(with_session(evict.clone(), "client-1", "1"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.key.is_some());
    assert_eq!(first, retry, "the retry answers the first outcome");
    assert_eq!(
        used(client.clone(), node.clone()).await,
        before - 1,
        "applied once"
    );
    // Through another node, too: the dedup state is replicated.
    let mut other = cluster.hash_ring((leader + 2) % 3);
    let again = other
        .evict_lru(with_session(evict.clone(), "client-1", "1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(used(client.clone(), node.clone()).await, before - 1);
    // An older sequence number is refused; a half session is malformed.
    client
        .evict_lru(with_session(evict.clone(), "client-1", "2"))
        .await
        .unwrap();
    let stale = client
        .evict_lru(with_session(evict.clone(), "client-1", "1"))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition, "{stale:?}");
    assert!(
        stale.message().starts_with("x-clockwise-seq"),
        "{}",
        stale.message()
    );
    let mut half = tonic::Request::new(evict);
    half.metadata_mut()
        .insert("x-clockwise-client-id", "client-1".parse().unwrap());
    let refused = client.evict_lru(half).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().starts_with("x-clockwise-seq"),
        "{}",
        refused.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_calls_fail_unavailable_in_time_but_stale_reads_are_served() {
    let mut cluster = TestCluster::start(3);
    cluster.leader().await;
    add_nodes(&cluster).await;
    // The survivor has applied all three AddNodeWithReplicas before the others die.
    cluster.assert_digests_converge().await;
    cluster.kill(1);
    cluster.kill(2);
    let mut client = cluster.hash_ring(0);
    let count = |consistency: &str| {
        let mut request = tonic::Request::new(hr::GetNodeCountRequest {
            ring: RING.into(),
            timestamp: 1,
        });
        request
            .metadata_mut()
            .insert("x-clockwise-consistency", consistency.parse().unwrap());
        request
    };
    let stale = client
        .get_node_count(count("stale"))
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(
        stale, 3,
        "a stale read answers from the local replica without a quorum"
    );

    // The node's --request-timeout-ms is 3 s: both calls must give up, not hang.
    let started = Instant::now();
    let read = client
        .get_node_count(count("linearizable"))
        .await
        .unwrap_err();
    assert_eq!(read.code(), tonic::Code::Unavailable, "{read:?}");
    let write = store(&mut client, "lost").await.unwrap_err();
    assert_eq!(write.code(), tonic::Code::Unavailable, "{write:?}");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "gave up only after {:?}",
        started.elapsed()
    );

    let refused = client.get_node_count(count("eventual")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().starts_with("x-clockwise-consistency"),
        "{}",
        refused.message()
    );
}

/// The members of a status as `(id, learner)`.
fn members(status: &StatusResponse) -> Vec<(u64, bool)> {
    status.members.iter().map(|m| (m.id, m.learner)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_rejoins_through_a_snapshot_and_converges() {
    let mut cluster = TestCluster::start_with(3, &["--snapshot-entries", "40"]);
    let leader = cluster.leader().await;
    add_nodes(&cluster).await;
    let mut keys = Vec::new();
    for i in 0..120 {
        let key = format!("s{i}");
        store(&mut cluster.hash_ring(leader), &key).await.unwrap();
        keys.push(key);
    }
    // Enough state (long keys) that the snapshot travels in several 1 MiB chunks.
    for batch in 0..2 {
        let operations = (0..2500)
            .map(|i| hr::KeyOperation {
                r#type: "store".into(),
                key: format!("{batch}-{i:04}-{}", "x".repeat(240)),
            })
            .collect();
        let request = hr::BatchOperationsRequest {
            ring: RING.into(),
            timestamp: 0,
            operations,
        };
        cluster
            .hash_ring(leader)
            .batch_operations(request)
            .await
            .unwrap();
    }
    for i in 0..40 {
        let key = format!("u{i}");
        store(&mut cluster.hash_ring(leader), &key).await.unwrap();
        keys.push(key);
    }
    // Snapshots are built off the driver thread: done shortly after they were due.
    cluster
        .wait_status(
            leader,
            "the leader snapshotted and compacted its log",
            |s| s.snapshot_index > 0 && s.first_log_index > 1,
        )
        .await;

    // The follower's data is lost. Raft forbids it to come back as the member it was
    // (it would have forgotten entries it acknowledged): it is removed and added again,
    // through the other follower, and catches up from a snapshot since the leader's log
    // no longer reaches back to its start.
    let wiped = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let wiped_id = wiped as u64 + 1;
    cluster.wipe(wiped);
    let removed = cluster
        .cluster_client(other)
        .remove_member(RemoveMemberRequest { id: wiped_id })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.members.iter().all(|m| m.id != wiped_id));
    cluster.start_joining(wiped);
    let added = cluster
        .cluster_client(other)
        .add_member(AddMemberRequest {
            id: wiped_id,
            address: cluster.addrs[wiped].clone(),
            peer_address: cluster.peer_addrs[wiped].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(added.members.iter().any(|m| m.id == wiped_id));
    cluster
        .wait_status(leader, "the rejoined node is a voter", |s| {
            members(s) == [(1, false), (2, false), (3, false)]
        })
        .await;
    cluster
        .wait_status(wiped, "installed a snapshot", |s| s.snapshot_index > 0)
        .await;
    for i in 0..10 {
        let key = format!("t{i}");
        store(&mut cluster.hash_ring(wiped), &key).await.unwrap();
        keys.push(key);
    }
    cluster.assert_all_present(RING, &keys).await;
    cluster.assert_digests_converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_member_is_added_and_one_removed_while_writes_continue() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.leader().await;
    add_nodes(&cluster).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(cluster.hash_ring(leader), "m", acked.clone(), stop.clone());
    wait_acked(&acked, 20).await;

    let fourth = cluster.new_slot();
    cluster.start_joining(fourth);
    let added = cluster
        .cluster_client((leader + 1) % 3)
        .add_member(AddMemberRequest {
            id: 4,
            address: cluster.addrs[fourth].clone(),
            peer_address: cluster.peer_addrs[fourth].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        added.members.iter().any(|m| m.id == 4),
        "{:?}",
        added.members
    );
    cluster
        .wait_status(leader, "node 4 promoted to voter", |s| {
            members(s).contains(&(4, false))
        })
        .await;
    cluster
        .wait_status(fourth, "node 4 sees itself a voter", |s| {
            s.role == Role::Follower as i32
        })
        .await;
    let before = acked.lock().unwrap().len();
    wait_acked(&acked, before + 20).await;

    let leaving = (leader + 1) % 3;
    let left = cluster
        .cluster_client(leader)
        .remove_member(RemoveMemberRequest {
            id: leaving as u64 + 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.members.len(), 3, "{:?}", left.members);
    cluster.kill(leaving);
    let before = acked.lock().unwrap().len();
    wait_acked(&acked, before + 20).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let keys = acked.lock().unwrap().clone();
    cluster.assert_all_present(RING, &keys).await;
    cluster.assert_digests_converge().await;

    // Leadership moves to the newcomer, asked through a follower.
    let asked_through = (0..3).find(|&i| i != leader && i != leaving).unwrap();
    let moved = cluster
        .cluster_client(asked_through)
        .transfer_leader(TransferLeaderRequest { target_id: 4 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.leader_id, 4);
    cluster
        .wait_status(fourth, "node 4 leads", |s| s.role == Role::Leader as i32)
        .await;
    store(&mut cluster.hash_ring(fourth), "after-transfer")
        .await
        .unwrap();

    // Refusals name the problem.
    let mut client = cluster.cluster_client(fourth);
    let refused = client
        .remove_member(RemoveMemberRequest { id: 4 })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("transfer leadership"),
        "{refused:?}"
    );
    let refused = client
        .add_member(AddMemberRequest {
            id: 4,
            address: cluster.addrs[fourth].clone(),
            peer_address: cluster.peer_addrs[fourth].clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    let refused = client
        .transfer_leader(TransferLeaderRequest {
            target_id: leaving as u64 + 1,
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
}

/// Review finding: a follower cached its connection to the leader by id alone, so after
/// the leader was removed and added back at a new address, every write through that
/// follower went to the old address. It must follow the member's current address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_to_a_leader_that_came_back_at_a_new_address() {
    let mut cluster = TestCluster::start(3);
    let moving = cluster.leader().await;
    add_nodes(&cluster).await;
    let (other, follower) = ((moving + 1) % 3, (moving + 2) % 3);
    // The follower forwards a write to the leader: it now holds a connection to it.
    store(&mut cluster.hash_ring(follower), "before")
        .await
        .unwrap();

    // Leadership moves away; the old leader is removed, wiped, and added back at new
    // addresses; then it leads again.
    cluster
        .cluster_client(moving)
        .transfer_leader(TransferLeaderRequest {
            target_id: other as u64 + 1,
        })
        .await
        .unwrap();
    cluster
        .wait_status(other, "the other node leads", |s| {
            s.role == Role::Leader as i32
        })
        .await;
    let moving_id = moving as u64 + 1;
    cluster
        .cluster_client(other)
        .remove_member(RemoveMemberRequest { id: moving_id })
        .await
        .unwrap();
    cluster.wipe(moving);
    cluster.addrs[moving] = clockwise_tests::free_local_addr();
    cluster.peer_addrs[moving] = clockwise_tests::free_local_addr();
    cluster.start_joining(moving);
    cluster
        .cluster_client(other)
        .add_member(AddMemberRequest {
            id: moving_id,
            address: cluster.addrs[moving].clone(),
            peer_address: cluster.peer_addrs[moving].clone(),
        })
        .await
        .unwrap();
    cluster
        .wait_status(other, "the moved node is a voter again", |s| {
            members(s) == [(1, false), (2, false), (3, false)]
        })
        .await;
    cluster
        .cluster_client(other)
        .transfer_leader(TransferLeaderRequest {
            target_id: moving_id,
        })
        .await
        .unwrap();
    cluster
        .wait_status(moving, "the moved node leads", |s| {
            s.role == Role::Leader as i32
        })
        .await;

    // A write through the follower reaches the leader at its new address.
    store(&mut cluster.hash_ring(follower), "after")
        .await
        .unwrap();
    cluster
        .assert_all_present(RING, &["before".into(), "after".into()])
        .await;
}
