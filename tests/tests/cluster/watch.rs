//! `Watch` on real node processes, over raw gRPC: changes made through one node reach a
//! watcher on another in revision order, each revision the one its write's reply named
//! (`x-clockwise-revision`); a watch resumed on a third node from a revision gets exactly
//! the changes after it; a ChatRouter restore arrives as the whole restored topology.
//! (The SDK's `RingView` over these streams is tested in `sdk_view`.)

use std::time::Duration;

use clockwise_proto::chatrouter::v1 as cr;
use clockwise_proto::chatrouter::v1::chat_router_client::ChatRouterClient;
use clockwise_proto::common::v1::topology_change::Change;
use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::watch_response::Event;
use clockwise_tests::cluster::TestCluster;
use tonic::Streaming;

/// The revision a write's reply names.
fn revision<T>(reply: &tonic::Response<T>) -> u64 {
    reply
        .metadata()
        .get("x-clockwise-revision")
        .expect("a write's reply names its revision")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The next message within `within`, which must come.
async fn next(stream: &mut Streaming<hr::WatchResponse>, within: Duration) -> hr::WatchResponse {
    tokio::time::timeout(within, stream.message())
        .await
        .unwrap_or_else(|_| panic!("no watch message within {within:?}"))
        .expect("the stream goes on")
        .expect("a message")
}

/// The next `n` changes (progress messages skipped), as `(revision, change)`; asserts
/// every message's revision is above the one before.
async fn changes(
    stream: &mut Streaming<hr::WatchResponse>,
    after: u64,
    n: usize,
    within: Duration,
) -> Vec<(u64, Change)> {
    let deadline = tokio::time::Instant::now() + within;
    let (mut last, mut out) = (after, Vec::new());
    while out.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = next(stream, left).await;
        assert!(
            message.revision > last,
            "revision {} after {last}",
            message.revision
        );
        last = message.revision;
        match message.event {
            Some(Event::Change(change)) => out.push((message.revision, change.change.unwrap())),
            Some(Event::Progress(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// The next change on a ChatRouter watch (other messages skipped), as
/// `(revision, change)`; each message must come within 2 s.
async fn next_chat_change(stream: &mut Streaming<cr::WatchResponse>) -> (u64, Change) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(2), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Some(cr::watch_response::Event::Change(change)) = message.event {
            return (message.revision, change.change.unwrap());
        }
    }
}

fn add(node: &str) -> hr::AddNodeRequest {
    hr::AddNodeRequest {
        ring: "w".into(),
        timestamp: 0,
        node_id: node.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_one_node_reach_a_watcher_on_another_in_revision_order() {
    let cluster = TestCluster::start(3);
    cluster.leader().await;
    let request = hr::WatchRequest {
        ring: "w".into(),
        start_revision: 0,
    };
    let mut watch = cluster
        .hash_ring(2)
        .watch(request)
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut watch, Duration::from_secs(5)).await;
    let Some(Event::Topology(topology)) = &first.event else {
        panic!("the first message is the topology: {first:?}");
    };
    assert!(topology.nodes.is_empty() && !first.resync, "{first:?}");

    let mut writer = cluster.hash_ring(0);
    let a = writer.add_node(add("a")).await.unwrap();
    let b = writer
        .add_node_with_replicas(hr::AddNodeWithReplicasRequest {
            ring: "w".into(),
            timestamp: 0,
            node_id: "b".into(),
            num_replicas: 3,
        })
        .await
        .unwrap();
    let removed = writer
        .remove_node(hr::RemoveNodeRequest {
            ring: "w".into(),
            timestamp: 0,
            node_id: "a".into(),
        })
        .await
        .unwrap();
    let written = [revision(&a), revision(&b), revision(&removed)];
    assert!(
        written.is_sorted() && written[0] > first.revision,
        "{written:?}"
    );

    // Within a second of the last acknowledgement, on a node that did not take them.
    let seen = changes(&mut watch, first.revision, 3, Duration::from_secs(1)).await;
    let revisions: Vec<u64> = seen.iter().map(|(r, _)| *r).collect();
    assert_eq!(revisions, written, "each change at its write's revision");
    assert!(matches!(&seen[0].1, Change::NodeAdded(n) if n.id == "a" && n.positions.len() == 1));
    assert!(matches!(&seen[1].1, Change::NodeAdded(n) if n.id == "b" && n.positions.len() == 3));
    assert!(matches!(&seen[2].1, Change::NodeRemoved(id) if id == "a"));

    // A write that changes no topology moves no change, only progress.
    let stored = writer
        .store_key(hr::StoreKeyRequest {
            ring: "w".into(),
            timestamp: 0,
            key: "k".into(),
            ttl_ms: 0,
        })
        .await
        .unwrap();
    let progress = next(&mut watch, Duration::from_secs(2)).await;
    assert!(
        matches!(progress.event, Some(Event::Progress(_)))
            && progress.revision >= revision(&stored),
        "{progress:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_on_another_node_gets_exactly_the_changes_after_its_revision() {
    let cluster = TestCluster::start(3);
    cluster.leader().await;
    let mut writer = cluster.hash_ring(0);
    let held = revision(&writer.add_node(add("a")).await.unwrap());
    let mut missed = Vec::new();
    for node in ["b", "c"] {
        missed.push(revision(&writer.add_node(add(node)).await.unwrap()));
    }
    let request = hr::WatchRequest {
        ring: "w".into(),
        start_revision: held,
    };
    let mut resumed = cluster
        .hash_ring(2)
        .watch(request)
        .await
        .unwrap()
        .into_inner();
    let seen = changes(&mut resumed, held, 2, Duration::from_secs(5)).await;
    let ids: Vec<(u64, String)> = seen
        .into_iter()
        .map(|(r, c)| match c {
            Change::NodeAdded(n) => (r, n.id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ids,
        vec![(missed[0], "b".to_owned()), (missed[1], "c".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_router_restore_arrives_as_the_whole_restored_topology() {
    let cluster = TestCluster::start(3);
    cluster.leader().await;
    let mut writer = ChatRouterClient::new(cluster.channel(0));
    for server in ["s1", "s2"] {
        writer
            .add_server(cr::AddServerRequest {
                ring: "c".into(),
                timestamp: 0,
                server_name: server.into(),
            })
            .await
            .unwrap();
    }
    writer
        .backup(cr::BackupRequest {
            ring: "c".into(),
            timestamp: 0,
        })
        .await
        .unwrap();
    let removed = writer
        .remove_server(cr::RemoveServerRequest {
            ring: "c".into(),
            timestamp: 0,
            server_name: "s1".into(),
        })
        .await
        .unwrap();
    let removed_at = revision(&removed);
    let mut watch = ChatRouterClient::new(cluster.channel(1))
        .watch(cr::WatchRequest {
            ring: "c".into(),
            start_revision: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(cr::watch_response::Event::Topology(topology)) = &first.event else {
        panic!("{first:?}");
    };
    // Node 2 may not have applied the removal yet: then it comes as a change.
    let ids: Vec<&str> = topology.nodes.iter().map(|n| n.id.as_str()).collect();
    if first.revision >= removed_at {
        assert_eq!(ids, ["s2"]);
    } else {
        assert_eq!(ids, ["s1", "s2"]);
        let (revision, change) = next_chat_change(&mut watch).await;
        assert_eq!(revision, removed_at);
        assert!(matches!(change, Change::NodeRemoved(ref id) if id == "s1"));
    }
    let restored = writer
        .restore(cr::RestoreRequest {
            ring: "c".into(),
            timestamp: 0,
            // The latest backup at or before: the one just taken.
            backup_timestamp: i64::MAX,
        })
        .await
        .unwrap();
    let restored_at = revision(&restored);
    let (revision, change) = next_chat_change(&mut watch).await;
    assert_eq!(revision, restored_at);
    let Change::Restored(topology) = change else {
        panic!("{change:?}");
    };
    let ids: Vec<&str> = topology.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["s1", "s2"]);
}
