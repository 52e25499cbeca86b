//! Operability against real processes (issue 16): raft-rs's own election lines reach
//! the node's log with its id; `grpc.health.v1` turns NOT_SERVING on a node cut off
//! from its quorum and back when the quorum returns; SIGTERM turns it NOT_SERVING
//! before calls in flight drain, and `--shutdown-timeout-ms` bounds the drain; the
//! SDK's W3C `traceparent` sent to a follower is logged by the leader it forwards to.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clockwise_proto::common::v1::SyncMode;
use clockwise_proto::hashring::v1 as hr;
use clockwise_tests::cluster::{TestCluster, WAIT};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const HASH_RING: &str = "clockwise.hashring.v1.HashRing";

/// Node `i`'s health for `service` (`""`: the node as a whole); `None` when it does not
/// answer.
async fn health(cluster: &TestCluster, i: usize, service: &str) -> Option<i32> {
    let mut client = HealthClient::new(cluster.channel(i));
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.into(),
    });
    request.set_timeout(Duration::from_secs(2));
    Some(client.check(request).await.ok()?.into_inner().status)
}

/// Waits (bounded) until node `i` reports `want` for the node and for HashRing.
async fn wait_health(cluster: &TestCluster, i: usize, want: ServingStatus) {
    let deadline = Instant::now() + WAIT;
    loop {
        let whole = health(cluster, i, "").await;
        let named = health(cluster, i, HASH_RING).await;
        if whole == Some(want as i32) && named == Some(want as i32) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {}: health never {want:?} (\"\": {whole:?}, {HASH_RING}: {named:?})",
            i + 1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_election_lines_reach_the_node_log_with_the_node_id() {
    let cluster = TestCluster::start(3);
    let leader = cluster.leader().await;
    let term = cluster.status(leader).await.expect("status").term;
    let id = leader + 1;
    let want = format!("became leader at term {term}");
    let deadline = Instant::now() + WAIT;
    loop {
        let log = cluster.nodes[leader].as_ref().unwrap().stderr();
        let line = log.lines().find(|line| line.contains(&want));
        if let Some(line) = line {
            assert!(line.contains(" INFO "), "{line}");
            assert!(line.contains(&format!("node={id}")), "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no {want:?} in node {id}'s log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Followers log raft's own lines too (each became a follower at start, at least).
    for i in (0..3).filter(|&i| i != leader) {
        let log = cluster.nodes[i].as_ref().unwrap().stderr();
        assert!(
            log.lines()
                .any(|l| l.contains("became follower") && l.contains(&format!("node={}", i + 1))),
            "node {}:\n{log}",
            i + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_without_a_quorum_and_serving_when_it_returns() {
    let mut cluster = TestCluster::start(3);
    cluster.leader().await;
    for i in 0..3 {
        wait_health(&cluster, i, ServingStatus::Serving).await;
    }
    // Node 1 alone, whether it led or followed: no leader it can reach.
    cluster.kill(1);
    cluster.kill(2);
    wait_health(&cluster, 0, ServingStatus::NotServing).await;
    cluster.start_node(1);
    cluster.start_node(2);
    wait_health(&cluster, 0, ServingStatus::Serving).await;
}

/// Waits (bounded) until the node whose metrics are at `metrics` runs a sync call.
async fn wait_sync_in_flight(metrics: SocketAddr) {
    const NAME: &str = "clockwise_sync_calls_in_flight ";
    let deadline = Instant::now() + WAIT;
    loop {
        let text = clockwise_tests::http_get(metrics, "/metrics")
            .await
            .unwrap();
        let running = text
            .lines()
            .find_map(|line| line.strip_prefix(NAME)?.parse::<f64>().ok());
        if running.is_some_and(|n| n > 0.0) {
            return;
        }
        assert!(Instant::now() < deadline, "no sync call started:\n{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn long_sync_call(entries: usize) -> hr::SyncReplicasRequest {
    hr::SyncReplicasRequest {
        ring: "drain".into(),
        timestamp: 1,
        requests: vec![
            hr::SyncRequest {
                source_node: "a".into(),
                dest_node: "b".into(),
            };
            entries
        ],
        max_concurrent: 1,
        mode: SyncMode::AllSleep as i32,
    }
}

/// Nodes `a` and `b` on ring `drain`, through node `i`.
async fn add_sync_nodes(cluster: &TestCluster, i: usize) {
    for id in ["a", "b"] {
        let request = hr::AddNodeRequest {
            ring: "drain".into(),
            timestamp: 1,
            node_id: id.into(),
        };
        assert!(
            cluster
                .hash_ring(i)
                .add_node(request)
                .await
                .unwrap()
                .into_inner()
                .ok
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_health_not_serving_then_drains_calls_in_flight() {
    let mut cluster = TestCluster::start_with(3, &["--sync-delay-ms", "400"]);
    cluster.leader().await;
    wait_health(&cluster, 0, ServingStatus::Serving).await;
    add_sync_nodes(&cluster, 0).await;

    let mut watch = HealthClient::new(cluster.channel(0))
        .watch(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    // A call that runs for about 1.2 s (3 × 400 ms, one at a time), started first.
    let in_flight = {
        let mut client = cluster.hash_ring(0);
        tokio::spawn(async move { client.sync_replicas(long_sync_call(3)).await })
    };
    wait_sync_in_flight(cluster.nodes[0].as_ref().unwrap().metrics_addr()).await;

    cluster.nodes[0].as_ref().unwrap().terminate();
    let drained = watch.message().await.expect("the watch delivers the drain");
    assert_eq!(
        drained.map(|r| r.status),
        Some(ServingStatus::NotServing as i32)
    );
    assert!(
        !in_flight.is_finished(),
        "health turned NOT_SERVING only after the call in flight had ended"
    );
    // The watch then ends, and the call in flight finishes rather than being cut.
    assert!(matches!(watch.message().await, Ok(None) | Err(_)));
    let results = in_flight
        .await
        .unwrap()
        .expect("the call drains")
        .into_inner();
    assert_eq!(results.results, vec![true; 3]);
    let node = cluster.nodes[0].as_mut().unwrap();
    let status = tokio::task::block_in_place(|| node.wait_exit(WAIT))
        .expect("the node exits after the drain");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded_by_the_shutdown_timeout() {
    let mut cluster = TestCluster::start_with(
        3,
        &["--sync-delay-ms", "20000", "--shutdown-timeout-ms", "300"],
    );
    cluster.leader().await;
    add_sync_nodes(&cluster, 0).await;
    let in_flight = {
        let mut client = cluster.hash_ring(0);
        tokio::spawn(async move { client.sync_replicas(long_sync_call(1)).await })
    };
    wait_sync_in_flight(cluster.nodes[0].as_ref().unwrap().metrics_addr()).await;
    let node = cluster.nodes[0].as_mut().unwrap();
    node.terminate();
    // Well before the call's 20 s: the drain was cut at --shutdown-timeout-ms.
    let status = tokio::task::block_in_place(|| node.wait_exit(Duration::from_secs(10)))
        .expect("the node exits once --shutdown-timeout-ms has passed");
    assert!(status.success(), "{status}");
    assert!(in_flight.await.unwrap().is_err(), "the cut call fails");
    let log = cluster.nodes[0].as_ref().unwrap().stderr();
    assert!(
        log.contains("calls still running after --shutdown-timeout-ms: cut"),
        "{log}"
    );
}

/// Polls (bounded) node `i`'s log for a line holding every one of `words`.
async fn wait_log_line(cluster: &TestCluster, i: usize, words: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = cluster.nodes[i].as_ref().unwrap().stderr();
        if let Some(line) = log.lines().find(|l| words.iter().all(|w| l.contains(w))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "node {}: no line with {words:?} in:\n{log}",
            i + 1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_sent_to_a_follower_is_logged_by_the_leader_it_forwards_to() {
    let cluster = TestCluster::start_with_env(
        3,
        &[],
        &[("RUST_LOG", "info,clockwise_node::service::trace=debug")],
    );
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    // The SDK knows only the follower, which forwards the write to the leader.
    let client = clockwise_client::Client::builder()
        .endpoints([cluster.addrs[follower].clone()])
        .timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let app = clockwise_client::TraceParent::parse(&format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .unwrap();
    let ring = client.hash_ring("traced");
    clockwise_client::in_trace(app, async { ring.add_node("a").await.unwrap() }).await;

    let at_follower = wait_log_line(&cluster, follower, &[trace_id, "AddNode"]).await;
    assert!(at_follower.contains("traceparent=00-"), "{at_follower}");
    let at_leader = wait_log_line(&cluster, leader, &[trace_id, "RaftTransport/Forward"]).await;
    assert!(at_leader.contains("traceparent=00-"), "{at_leader}");
}
