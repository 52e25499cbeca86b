//! The node-wide sync bulkhead: while sync calls fill it, another sync call is refused
//! with RESOURCE_EXHAUSTED after the bounded wait, and point RPCs are still served.
//! Proven by the node's counters (`/metrics`), not by wall time.

use std::time::{Duration, Instant};

use clockwise_proto::common::v1::SyncMode;
use clockwise_proto::hashring::v1 as hr;
use clockwise_tests::NodeProcess;
use tonic::Code;

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

    // A third sync call finds no place within its bounded wait.
    let refused = client.sync_replicas(sync_request(1)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("sync"), "{}", refused.message());
    assert_eq!(metric(metrics, "clockwise_sync_rejected_total").await, 1);

    // Point RPCs are served while the sync work still holds the bulkhead.
    for i in 0..50 {
        let req = hr::StoreKeyRequest {
            ring: "bulkhead".into(),
            timestamp: 10 + i,
            key: format!("k{i}"),
            ttl_ms: 0,
        };
        assert!(client
            .store_key(req)
            .await
            .unwrap()
            .into_inner()
            .node_id
            .is_some());
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
