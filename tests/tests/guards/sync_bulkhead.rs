//! The node-wide bulkheads per RPC family (sync, batch): while calls of a family fill
//! its places, another is refused with RESOURCE_EXHAUSTED naming the bulkhead, before
//! any work (no ReadIndex round), and point RPCs and health are still served within
//! their deadlines. Proven by the node's counters (`/metrics`), not by wall time.

use std::time::{Duration, Instant};

use clockwise_proto::common::v1::SyncMode;
use clockwise_proto::hashring::v1 as hr;
use clockwise_tests::cluster::TestCluster;
use clockwise_tests::NodeProcess;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::metric;

fn sync_request(entries: usize) -> hr::SyncReplicasRequest {
    hr::SyncReplicasRequest {
        ring: "bulkhead".into(),
        timestamp: 1,
        requests: vec![
            hr::SyncRequest {
                source_node: "a".into(),
                dest_node: "b".into(),
            };
            entries
        ],
        max_concurrent: 1,
        mode: SyncMode::FailFast as i32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_bulkhead_refuses_sync_calls_but_not_point_rpcs() {
    let node = NodeProcess::start_with(&[
        "--sync-delay-ms",
        "300",
        "--sync-max-calls",
        "2",
        "--sync-queue-wait-ms",
        "50",
    ]);
    let metrics = node.metrics_addr();
    let mut client = node.hash_ring().await;
    for id in ["a", "b"] {
        let req = hr::AddNodeRequest {
            ring: "bulkhead".into(),
            timestamp: 1,
            node_id: id.into(),
        };
        assert!(client.add_node(req).await.unwrap().into_inner().ok);
    }

    // Two long sync calls take both places (4 entries × 300 ms each, one at a time).
    let long_calls: Vec<_> = (0..2)
        .map(|_| {
            let mut c = client.clone();
            tokio::spawn(async move { c.sync_replicas(sync_request(4)).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(metrics, "clockwise_sync_calls_in_flight").await < 2 {
        assert!(
            Instant::now() < deadline,
            "the two sync calls never both started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    assert_eq!(
        metric(metrics, "clockwise_bulkhead_in_use{family=\"sync\"}").await,
        2
    );
    assert_eq!(
        metric(metrics, "clockwise_bulkhead_capacity{family=\"sync\"}").await,
        2
    );

    // A third sync call finds no place within its bounded wait, and is refused before
    // its linearizable read: no ReadIndex round is spent on it.
    let reads = metric(metrics, "clockwise_linearizable_reads_total").await;
    let refused = client.sync_replicas(sync_request(1)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("sync bulkhead"),
        "{}",
        refused.message()
    );
    assert_eq!(metric(metrics, "clockwise_sync_rejected_total").await, 1);
    assert_eq!(
        metric(
            metrics,
            "clockwise_bulkhead_rejected_total{family=\"sync\"}"
        )
        .await,
        1
    );
    assert_eq!(
        metric(metrics, "clockwise_linearizable_reads_total").await,
        reads,
        "the refused sync call cost a ReadIndex round"
    );

    // Point RPCs and health are served within their deadlines while the sync work
    // still holds the bulkhead.
    let mut health = HealthClient::new(node.channel().await);
    for i in 0..50 {
        let mut store = tonic::Request::new(hr::StoreKeyRequest {
            ring: "bulkhead".into(),
            timestamp: 10 + i,
            key: format!("k{i}"),
            ttl_ms: 0,
        });
        store.set_timeout(Duration::from_secs(1));
        assert!(client
            .store_key(store)
            .await
            .unwrap()
            .into_inner()
            .node_id
            .is_some());
        let mut route = tonic::Request::new(hr::RouteKeyRequest {
            ring: "bulkhead".into(),
            timestamp: 10 + i,
            key: format!("k{i}"),
        });
        route.set_timeout(Duration::from_secs(1));
        assert!(client
            .route_key(route)
            .await
            .unwrap()
            .into_inner()
            .node_id
            .is_some());
        let mut check = tonic::Request::new(HealthCheckRequest::default());
        check.set_timeout(Duration::from_secs(1));
        let status = health.check(check).await.unwrap().into_inner().status;
        assert_eq!(status, ServingStatus::Serving as i32);
    }
    assert!(
        metric(metrics, "clockwise_sync_calls_in_flight").await > 0,
        "the sync calls finished before the point RPCs: nothing was shown"
    );

    for call in long_calls {
        let results = call.await.unwrap().unwrap().into_inner().results;
        assert_eq!(results, vec![true; 4]);
    }
    assert_eq!(
        metric(metrics, "clockwise_sync_calls_started_total").await,
        8
    );
    assert_eq!(metric(metrics, "clockwise_sync_calls_in_flight").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_bulkhead_refuses_batches_but_not_health_or_point_reads() {
    let mut cluster =
        TestCluster::start_with(3, &["--batch-max-calls", "1", "--batch-queue-wait-ms", "0"]);
    let leader = cluster.leader().await;
    let survivor = (leader + 1) % 3;
    for i in (0..3).filter(|&i| i != survivor) {
        cluster.kill(i);
    }
    let node = cluster.nodes[survivor].as_ref().unwrap();
    let metrics = node.metrics_addr();
    let mut client = cluster.hash_ring(survivor);
    let batch = |key: &str| hr::BatchOperationsRequest {
        ring: "batch".into(),
        timestamp: 1,
        operations: vec![hr::KeyOperation {
            r#type: "store".into(),
            key: key.into(),
        }],
    };
    assert_eq!(
        metric(metrics, "clockwise_bulkhead_capacity{family=\"batch\"}").await,
        1
    );

    // Without a quorum, a batch waits for one (the cluster's --request-timeout-ms),
    // holding the only place.
    let held = {
        let mut client = client.clone();
        let request = batch("held");
        tokio::spawn(async move { client.batch_operations(request).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(metrics, "clockwise_bulkhead_in_use{family=\"batch\"}").await < 1 {
        assert!(Instant::now() < deadline, "the batch never took its place");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Health and reads of the node's own replica answer within their deadlines (health
    // says SERVING or, once the node notices it has no quorum, NOT_SERVING).
    let mut health = HealthClient::new(cluster.channel(survivor));
    let mut check = tonic::Request::new(HealthCheckRequest::default());
    check.set_timeout(Duration::from_secs(1));
    let status = health.check(check).await.unwrap().into_inner().status;
    assert!(
        [
            ServingStatus::Serving as i32,
            ServingStatus::NotServing as i32
        ]
        .contains(&status),
        "{status}"
    );
    let mut count = tonic::Request::new(hr::GetNodeCountRequest {
        ring: "batch".into(),
        timestamp: 1,
    });
    count.set_timeout(Duration::from_secs(1));
    count
        .metadata_mut()
        .insert("x-clockwise-consistency", "stale".parse().unwrap());
    assert_eq!(
        client
            .get_node_count(count)
            .await
            .unwrap()
            .into_inner()
            .count,
        0
    );

    // Still held (its quorum wait is 3 s): the next batch is refused at once.
    let refused = client.batch_operations(batch("refused")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("batch bulkhead"),
        "{}",
        refused.message()
    );
    assert_eq!(
        metric(
            metrics,
            "clockwise_bulkhead_rejected_total{family=\"batch\"}"
        )
        .await,
        1
    );

    let held = held.await.unwrap().unwrap_err();
    assert_eq!(held.code(), Code::Unavailable, "{held:?}");
    assert_eq!(
        metric(metrics, "clockwise_bulkhead_in_use{family=\"batch\"}").await,
        0
    );
}
