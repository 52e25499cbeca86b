//! Quotas at the RPC level: a node started with small ones refuses what would go past
//! them with RESOURCE_EXHAUSTED naming the quota, and applies nothing; a write that
//! changes nothing (a `RemoveNode` on a new ring name) creates no ring.

use clockwise_engine::Quotas;
use clockwise_proto::chatrouter::v1 as cr;
use clockwise_proto::chatrouter::v1::chat_router_client::ChatRouterClient;
use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use tonic::Code;

use super::harness::TestNode;

fn add(ring: &str, node: &str, replicas: i64) -> hr::AddNodeWithReplicasRequest {
    hr::AddNodeWithReplicasRequest {
        ring: ring.into(),
        node_id: node.into(),
        num_replicas: replicas,
        timestamp: 0,
    }
}

/// The call is refused with RESOURCE_EXHAUSTED naming `quota`, and nothing changes.
async fn refused<T: std::fmt::Debug>(
    node: &TestNode,
    quota: &str,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) {
    let (_, before) = node.applied().await;
    let status = call.await.expect_err("refused by a quota");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains(quota), "{status:?} names {quota}");
    assert_eq!(
        node.applied().await.1,
        before,
        "a refused write changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_naming_the_quota_and_no_ops_create_no_ring() {
    let node = TestNode::start_with(|config| {
        config.quotas = Quotas {
            max_rings: 3,
            max_nodes_per_ring: 3,
            max_vnodes_per_ring: 10,
        };
    })
    .await;
    let mut ring = HashRingClient::new(node.channel());
    let mut router = ChatRouterClient::new(node.channel());

    // A no-op on a new ring name answers as the drill does and leaves no ring behind.
    let (_, before) = node.applied().await;
    let removed = ring
        .remove_node(hr::RemoveNodeRequest {
            ring: "never-used".into(),
            node_id: "n1".into(),
            timestamp: 0,
        })
        .await
        .expect("served")
        .into_inner();
    assert!(!removed.ok);
    assert_eq!(node.applied().await.1, before, "no ring was created");

    for (name, replicas) in [("n1", 4), ("n2", 4)] {
        assert!(
            ring.add_node_with_replicas(add("a", name, replicas))
                .await
                .unwrap()
                .into_inner()
                .ok
        );
    }
    refused(
        &node,
        "max-vnodes-per-ring",
        ring.add_node_with_replicas(add("a", "n3", 3)),
    )
    .await;
    assert!(
        ring.add_node_with_replicas(add("a", "n3", 2))
            .await
            .unwrap()
            .into_inner()
            .ok
    );
    let fourth = hr::AddNodeRequest {
        ring: "a".into(),
        node_id: "n4".into(),
        timestamp: 0,
    };
    refused(&node, "max-nodes-per-ring", ring.add_node(fourth)).await;
    // Listings are bounded by the quota, whatever `n` asks for.
    let listed = ring
        .list_nodes(hr::ListNodesRequest {
            ring: "a".into(),
            timestamp: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.nodes, ["n1", "n2", "n3"]);
    let top = ring
        .top_loaded(hr::TopLoadedRequest {
            ring: "a".into(),
            n: i64::MAX,
            timestamp: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top.entries.len(), 3);

    let server = |ring: &str| cr::AddServerRequest {
        ring: ring.into(),
        server_name: "s1".into(),
        timestamp: 0,
    };
    // Rings "a" (HashRing), "b" and "c" (ChatRouter) reach the quota of three.
    assert!(
        router
            .add_server(server("b"))
            .await
            .unwrap()
            .into_inner()
            .ok
    );
    assert!(
        router
            .add_server(server("c"))
            .await
            .unwrap()
            .into_inner()
            .ok
    );
    refused(&node, "max-rings", router.add_server(server("d"))).await;
    refused(
        &node,
        "max-rings",
        ring.add_node_with_replicas(add("e", "n1", 1)),
    )
    .await;
    node.stop().await;
}
