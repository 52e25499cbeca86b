//! The client SDK against real node processes: a write loop rides out a SIGKILL of the
//! leader with nothing applied twice; dead endpoints trip their breakers while calls
//! go elsewhere; refusals are not retried; a dead cluster exhausts retries in time.

use std::time::{Duration, Instant};

use clockwise_client::{BreakerConfig, BreakerState, Client, Error, RetryPolicy};
use clockwise_tests::cluster::TestCluster;
use clockwise_tests::{free_local_addr, NodeProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_loop_survives_a_kill_of_the_leader_and_applies_each_write_once() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.leader().await;
    let client = Client::builder()
        .endpoints(cluster.addrs.clone())
        .timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    assert_eq!(
        client.leader(),
        Some(leader as u64 + 1),
        "the builder learned the leader"
    );
    let ring = client.hash_ring("sdk");
    assert!(ring.add_node("n").await.unwrap());

    // Every second iteration evicts the least recently stored key: the evictions must
    // come out as k000, k001, … exactly, so an eviction or a store applied twice shows.
    let mut evicted = Vec::new();
    for i in 0..120 {
        if i == 40 {
            cluster.kill(leader);
        }
        let owner = ring
            .store_key(&format!("k{i:03}"))
            .await
            .unwrap_or_else(|e| panic!("store {i}: an error reached the caller: {e}"));
        assert_eq!(owner.as_deref(), Some("n"));
        if i % 2 == 1 {
            let key = ring
                .evict_lru("n")
                .await
                .unwrap_or_else(|e| panic!("evict {i}: an error reached the caller: {e}"));
            evicted.push(key.expect("a key to evict"));
        }
    }
    let expected: Vec<String> = (0..60).map(|j| format!("k{j:03}")).collect();
    assert_eq!(evicted, expected);
    assert_eq!(ring.get_used("n").await.unwrap(), 60);
    assert_ne!(
        client.leader(),
        Some(leader as u64 + 1),
        "it learned the new leader"
    );

    cluster.start_node(leader);
    cluster.assert_digests_converge().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_trips_its_breaker_while_calls_go_to_the_live_one() {
    let node = NodeProcess::start();
    let dead = free_local_addr();
    let live = node.grpc_addr().to_string();
    let client = Client::builder()
        .endpoints([dead.clone(), live.clone()])
        .retry(RetryPolicy {
            max_attempts: 4,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        })
        .breaker(BreakerConfig {
            failure_threshold: 2,
            open_timeout: Duration::from_secs(600),
            ..BreakerConfig::default()
        })
        .build()
        .await
        .unwrap();
    let ring = client.hash_ring("breaker");
    assert!(ring.add_node("a").await.unwrap());
    // Stale reads go round-robin over every endpoint, the dead one included.
    for _ in 0..10 {
        assert_eq!(
            ring.clone().stale_reads().get_node_count().await.unwrap(),
            1
        );
    }
    let stats: std::collections::HashMap<String, _> = client.breaker_stats().into_iter().collect();
    let dead_stats = &stats[&dead];
    assert_eq!(dead_stats.state, BreakerState::Open);
    assert_eq!(
        dead_stats.failures, 2,
        "opened at the threshold, then skipped"
    );
    assert_eq!(dead_stats.calls, 2);
    assert!(stats[&live].successes >= 11);

    // A refusal is answered at once: one attempt, no retry, nothing against the breaker.
    let calls_before = stats[&live].calls;
    let refused = ring.add_node("").await.unwrap_err();
    assert!(
        matches!(&refused, Error::InvalidArgument { message } if message.starts_with("node_id")),
        "{refused:?}"
    );
    assert!(!refused.is_retriable());
    let live_after = client
        .breaker_stats()
        .into_iter()
        .find(|(a, _)| *a == live)
        .unwrap()
        .1;
    assert_eq!(live_after.calls, calls_before + 1);
    assert_eq!(live_after.consecutive_failures, 0);

    client.reset_breakers();
    let reset = client.breaker_stats();
    assert!(reset.iter().all(|(_, s)| s.state == BreakerState::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_node_up_calls_exhaust_their_retries_within_the_deadline() {
    let client = Client::builder()
        .endpoints([free_local_addr(), free_local_addr()])
        .timeout(Duration::from_secs(3))
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        })
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let error = client.hash_ring("r").store_key("k").await.unwrap_err();
    assert!(
        matches!(error, Error::RetryExhausted { attempts: 3, .. }),
        "{error:?}"
    );
    assert!(error.is_retriable());
    assert_eq!(error.code(), Some(tonic::Code::Unavailable));
    assert!(started.elapsed() < Duration::from_secs(3));

    // Past the failure threshold every breaker is open: no call is even made.
    for _ in 0..3 {
        let _ = client.hash_ring("r").get_node_count().await;
    }
    let error = client.hash_ring("r").get_node_count().await.unwrap_err();
    assert!(matches!(error, Error::CircuitOpen { .. }), "{error:?}");
}
