//! The client SDK against real node processes: a write loop rides out a SIGKILL of the
//! leader with nothing applied twice; dead endpoints trip their breakers while calls
//! go elsewhere; refusals are not retried; a dead cluster exhausts retries in time; a
//! node without quorum says so before the caller's deadline and keeps its breaker closed;
//! a member added at a rogue address never receives a call or the token.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clockwise_client::{BreakerConfig, BreakerState, Client, Error, RetryPolicy};
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use clockwise_proto::hashring::v1::{GetNodeCountRequest, StoreKeyRequest};
use clockwise_tests::cluster::TestCluster;
use clockwise_tests::{free_local_addr, unique_temp_dir, NodeProcess};

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

/// With two of three nodes down the last one has no quorum. Asked with a short deadline,
/// it answers UNAVAILABLE marked "no quorum" before the deadline (not a silent time-out),
/// and the SDK does not count that against it: its breaker stays closed, so the first
/// call after quorum returns goes through. Without the mark, two failures would open the
/// breaker for ten minutes and the last loop below would never succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_quorum_says_so_in_time_and_its_breaker_stays_closed() {
    let mut cluster = TestCluster::start(3);
    cluster.leader().await;
    cluster.kill(0);
    cluster.kill(1);
    let survivor = cluster.addrs[2].clone();

    let mut raw = HashRingClient::connect(format!("http://{survivor}"))
        .await
        .unwrap();
    let mut write = tonic::Request::new(StoreKeyRequest {
        ring: "q".into(),
        key: "k".into(),
        ..Default::default()
    });
    write.set_timeout(Duration::from_millis(400));
    let mut read = tonic::Request::new(GetNodeCountRequest {
        ring: "q".into(),
        ..Default::default()
    });
    read.set_timeout(Duration::from_millis(400));
    let write = raw.store_key(write).await.unwrap_err();
    let read = raw.get_node_count(read).await.unwrap_err();
    for status in [write, read] {
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(
            status
                .metadata()
                .get("x-clockwise-cluster-unavailable")
                .map(|v| v.to_str().unwrap()),
            Some("1"),
            "{status:?}"
        );
    }

    let client = Client::builder()
        .endpoints([survivor.clone()])
        .discover_members(true)
        .timeout(Duration::from_secs(2))
        .attempt_timeout(Duration::from_millis(300))
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        })
        .breaker(BreakerConfig {
            failure_threshold: 2,
            open_timeout: Duration::from_secs(600),
            ..BreakerConfig::default()
        })
        .build()
        .await
        .unwrap();
    let ring = client.hash_ring("q");
    for _ in 0..2 {
        let error = ring.store_key("k").await.unwrap_err();
        assert!(error.is_retriable(), "{error:?}");
        assert_eq!(error.code(), Some(tonic::Code::Unavailable), "{error:?}");
    }
    // The client learned the other members from the survivor; their breakers count
    // refused connections, the survivor's counts nothing.
    let stats = client.breaker_stats();
    let (_, survivor_stats) = stats.iter().find(|(a, _)| *a == survivor).unwrap();
    assert_eq!(survivor_stats.state, BreakerState::Closed, "{stats:?}");
    assert_eq!(survivor_stats.failures, 0, "{stats:?}");
    assert!(survivor_stats.calls >= 2, "it was asked: {stats:?}");

    // Quorum again: the same client gets through once a leader is elected.
    cluster.start_node(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ring.add_node("n").await {
            Ok(added) => {
                assert!(added);
                break;
            }
            Err(e) => {
                assert!(!matches!(e, Error::CircuitOpen { .. }), "{e:?}");
                assert!(Instant::now() < deadline, "no write within 30 s: {e:?}");
            }
        }
    }
    assert_eq!(ring.store_key("k").await.unwrap().as_deref(), Some("n"));
}

/// What a rogue member saw: the `authorization` header of each call it got (`None`:
/// the call carried none).
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// A gRPC server standing for a member at a rogue address: it records every call's
/// `authorization` header and refuses the call.
async fn rogue_member() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen = Seen::default();
    let record = seen.clone();
    let recorder = tonic::service::InterceptorLayer::new(move |call: tonic::Request<()>| {
        let token = call
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned());
        record.lock().unwrap().push(token);
        Err(tonic::Status::unavailable("a rogue member"))
    });
    let (_, health) = tonic_health::server::health_reporter();
    let server = tonic::transport::Server::builder()
        .layer(recorder)
        .add_service(health)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    (address, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_at_a_rogue_address_never_receives_a_call_or_the_token() {
    const ADMIN: &str = "admin-token-0123456789abcdef0123456789";
    const PEER: &str = "peer-token-0123456789abcdef0123456789ab";
    let tokens = unique_temp_dir().join("tokens");
    std::fs::write(&tokens, format!("{ADMIN} admin\n{PEER} peer\n")).unwrap();
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let node = NodeProcess::start_with(&["--auth-token-file", tokens.to_str().unwrap()]);
    let endpoint = node.grpc_addr().to_string();
    let (rogue, seen) = rogue_member().await;

    // The recorder works: a call straight to it is seen.
    let mut direct = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{rogue}"))
            .unwrap()
            .connect_lazy(),
    );
    let _ = direct
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert_eq!(seen.lock().unwrap().drain(..).collect::<Vec<_>>(), [None]);

    let client = Client::builder()
        .endpoints([endpoint.clone()])
        .token(ADMIN)
        .build()
        .await
        .unwrap();
    let members = client
        .cluster()
        .add_member(2, &rogue, &free_local_addr())
        .await
        .unwrap();
    assert!(members.iter().any(|m| m.address == rogue), "{members:?}");

    // Everything that learns members or spreads calls over them: every known node's
    // status, stale reads (any replica), writes, linearizable reads.
    let statuses = client.cluster().statuses().await;
    assert_eq!(statuses.len(), 1, "only the given endpoint: {statuses:?}");
    let ring = client.hash_ring("rogue");
    assert!(ring.add_node("n").await.unwrap());
    let stale = client.hash_ring("rogue").stale_reads();
    for _ in 0..10 {
        assert_eq!(stale.get_node_count().await.unwrap(), 1);
        assert_eq!(ring.route_key("k").await.unwrap().as_deref(), Some("n"));
    }
    assert_eq!(client.endpoints(), [endpoint]);
    assert!(
        seen.lock().unwrap().is_empty(),
        "the rogue member was called: {:?}",
        seen.lock().unwrap()
    );

    // Opting into discovery with a token but no TLS is refused, not silently unsafe.
    let refused = Client::builder()
        .endpoints([node.grpc_addr().to_string()])
        .token(ADMIN)
        .discover_members(true)
        .build()
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::InvalidConfig {
                setting: "discover_members",
                ..
            })
        ),
        "discovery with a clear-text token was accepted"
    );
}
