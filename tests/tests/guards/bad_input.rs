//! Malformed input against a real node: every refusal is `INVALID_ARGUMENT` (or the
//! documented other code) with a message that starts with the field it refuses, and
//! what the drill defines as a result (false, None, 0) stays a result. Every test
//! ends by checking that the node still serves a good call.
//!
//! One node per test; the rules and caps are `node/src/service/validate.rs`.

use clockwise_proto::chatrouter::v1 as cr;
use clockwise_proto::chatrouter::v1::chat_router_client::ChatRouterClient;
use clockwise_proto::common::v1::{PositionSpace, SyncMode};
use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use clockwise_tests::NodeProcess;
use tonic::transport::Channel;
use tonic::{Code, Status};

type Hr = HashRingClient<Channel>;
type Cr = ChatRouterClient<Channel>;

/// One RPC's name and whether it was served.
type Outcome = (&'static str, Result<(), Status>);

const MAX_ID: usize = 256;
const MAX_BATCH: usize = 10_000;
const MAX_SYNC: usize = 1_000;
const MAX_CONCURRENT: i32 = 1_024;
const MAX_REPLICAS: i64 = 10_000;
const MAX_MB: i64 = 1 << 40;
const MAX_TTL_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// Awaits one call and keeps only whether it was served.
macro_rules! rpc {
    ($name:literal, $call:expr) => {
        ($name, $call.await.map(drop))
    };
}

// ---------------------------------------------------------------------------------
// Assertions
// ---------------------------------------------------------------------------------

/// Checks a refusal: the code, and a message that starts with `"<field>:"`.
fn check_refusal(
    rpc: &str,
    result: &Result<(), Status>,
    code: Code,
    field: &str,
) -> Option<String> {
    match result {
        Ok(()) => Some(format!("{rpc}: served; expected {code:?} naming `{field}`")),
        Err(status) if status.code() != code => Some(format!(
            "{rpc}: {:?} {:?}; expected {code:?} naming `{field}`",
            status.code(),
            status.message()
        )),
        Err(status) if !status.message().starts_with(&format!("{field}:")) => Some(format!(
            "{rpc}: message {:?} does not start with `{field}:`",
            status.message()
        )),
        Err(_) => None,
    }
}

/// Every outcome is `code` naming `field`; all problems are reported at once.
#[track_caller]
fn assert_refused(outcomes: &[Outcome], code: Code, field: &str) {
    assert!(!outcomes.is_empty(), "no calls to check");
    let problems: Vec<String> = outcomes
        .iter()
        .filter_map(|(rpc, result)| check_refusal(rpc, result, code, field))
        .collect();
    assert!(
        problems.is_empty(),
        "{} of {} calls:\n  {}",
        problems.len(),
        outcomes.len(),
        problems.join("\n  ")
    );
}

#[track_caller]
fn assert_invalid(outcomes: &[Outcome], field: &str) {
    assert_refused(outcomes, Code::InvalidArgument, field);
}

/// A single call's refusal: `INVALID_ARGUMENT` naming `field`.
#[track_caller]
fn assert_invalid_one<T>(rpc: &'static str, result: Result<T, Status>, field: &str) {
    assert_invalid(&[(rpc, result.map(drop))], field);
}

/// Every outcome was served.
#[track_caller]
fn assert_served(outcomes: &[Outcome]) {
    let problems: Vec<String> = outcomes
        .iter()
        .filter_map(|(rpc, result)| {
            result
                .as_ref()
                .err()
                .map(|s| format!("{rpc}: {:?} {:?}", s.code(), s.message()))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "refused calls that must be served:\n  {}",
        problems.join("\n  ")
    );
}

/// Unwraps a call that must be served, naming it on failure.
#[track_caller]
fn served<T>(rpc: &str, result: Result<tonic::Response<T>, Status>) -> T {
    match result {
        Ok(response) => response.into_inner(),
        Err(s) => panic!(
            "{rpc}: {:?} {:?}; expected it to be served",
            s.code(),
            s.message()
        ),
    }
}

fn long(n: usize) -> String {
    "x".repeat(n)
}

// ---------------------------------------------------------------------------------
// HashRing calls
// ---------------------------------------------------------------------------------

/// The HashRing RPCs with a `node_id` field, each with `node` and otherwise valid input.
async fn hr_node_rpcs(c: &mut Hr, ring: &str, timestamp: i64, node: &str) -> Vec<Outcome> {
    let (ring, node_id) = (ring.to_owned(), node.to_owned());
    vec![
        rpc!(
            "AddNode",
            c.add_node(hr::AddNodeRequest {
                ring: ring.clone(),
                timestamp,
                node_id: node_id.clone()
            })
        ),
        rpc!(
            "AddNodeWithReplicas",
            c.add_node_with_replicas(hr::AddNodeWithReplicasRequest {
                ring: ring.clone(),
                timestamp,
                node_id: node_id.clone(),
                num_replicas: 3,
            })
        ),
        rpc!(
            "GetLoad",
            c.get_load(hr::GetLoadRequest {
                ring: ring.clone(),
                timestamp,
                node_id: node_id.clone()
            })
        ),
        rpc!(
            "GetReplicaCount",
            c.get_replica_count(hr::GetReplicaCountRequest {
                ring: ring.clone(),
                timestamp,
                node_id: node_id.clone()
            })
        ),
        rpc!(
            "SetCapacity",
            c.set_capacity(hr::SetCapacityRequest {
                ring: ring.clone(),
                timestamp,
                node_id: node_id.clone(),
                capacity: 5
            })
        ),
        rpc!(
            "GetCapacity",
            c.get_capacity(hr::GetCapacityRequest {
                ring: ring.clone(),
                timestamp,
                node_id: node_id.clone()
            })
        ),
        rpc!(
            "GetUsed",
            c.get_used(hr::GetUsedRequest {
                ring: ring.clone(),
                timestamp,
                node_id: node_id.clone()
            })
        ),
        rpc!(
            "EvictLru",
            c.evict_lru(hr::EvictLruRequest {
                ring: ring.clone(),
                timestamp,
                node_id: node_id.clone()
            })
        ),
        rpc!(
            "GetMergedInto",
            c.get_merged_into(hr::GetMergedIntoRequest {
                ring: ring.clone(),
                timestamp,
                node_id: node_id.clone()
            })
        ),
        rpc!(
            "RemoveNode",
            c.remove_node(hr::RemoveNodeRequest {
                ring,
                timestamp,
                node_id
            })
        ),
    ]
}

/// The HashRing RPCs with a `key` field, each with `key` and otherwise valid input.
async fn hr_key_rpcs(c: &mut Hr, ring: &str, timestamp: i64, key: &str) -> Vec<Outcome> {
    let (ring, key) = (ring.to_owned(), key.to_owned());
    vec![
        rpc!(
            "RouteKey",
            c.route_key(hr::RouteKeyRequest {
                ring: ring.clone(),
                timestamp,
                key: key.clone()
            })
        ),
        rpc!(
            "StoreKey",
            c.store_key(hr::StoreKeyRequest {
                ring: ring.clone(),
                timestamp,
                key: key.clone(),
                ttl_ms: 0
            })
        ),
        rpc!(
            "LocateKey",
            c.locate_key(hr::LocateKeyRequest {
                ring,
                timestamp,
                key
            })
        ),
    ]
}

/// The HashRing RPCs with neither (ConfigureRing first, so it finds a fresh ring empty).
async fn hr_ring_rpcs(c: &mut Hr, ring: &str, timestamp: i64) -> Vec<Outcome> {
    let ring = ring.to_owned();
    vec![
        rpc!(
            "ConfigureRing",
            c.configure_ring(hr::ConfigureRingRequest {
                ring: ring.clone(),
                timestamp,
                position_space: PositionSpace::U64 as i32,
            })
        ),
        rpc!(
            "GetNodeCount",
            c.get_node_count(hr::GetNodeCountRequest {
                ring: ring.clone(),
                timestamp
            })
        ),
        rpc!(
            "ListNodes",
            c.list_nodes(hr::ListNodesRequest {
                ring: ring.clone(),
                timestamp
            })
        ),
        rpc!(
            "TopLoaded",
            c.top_loaded(hr::TopLoadedRequest {
                ring: ring.clone(),
                timestamp,
                n: 3
            })
        ),
        rpc!(
            "BatchOperations",
            c.batch_operations(hr::BatchOperationsRequest {
                ring: ring.clone(),
                timestamp,
                operations: vec![key_op("store", "k1"), key_op("route", "k2")],
            })
        ),
        rpc!(
            "Backup",
            c.backup(hr::BackupRequest {
                ring: ring.clone(),
                timestamp
            })
        ),
        rpc!(
            "Restore",
            c.restore(hr::RestoreRequest {
                ring: ring.clone(),
                timestamp,
                backup_timestamp: 0
            })
        ),
        rpc!(
            "MergeNodes",
            c.merge_nodes(hr::MergeNodesRequest {
                ring: ring.clone(),
                timestamp,
                from_node: "n1".into(),
                to_node: "n2".into()
            })
        ),
        rpc!(
            "SyncReplicas",
            c.sync_replicas(hr::SyncReplicasRequest {
                ring,
                timestamp,
                requests: vec![sync_req("n1", "n2")],
                max_concurrent: 1,
                mode: SyncMode::FailFast as i32,
            })
        ),
    ]
}

/// Every HashRing RPC, on `ring` at `timestamp`, with valid ids.
async fn hr_every_rpc(c: &mut Hr, ring: &str, timestamp: i64) -> Vec<Outcome> {
    let mut all = hr_ring_rpcs(c, ring, timestamp).await;
    all.extend(hr_node_rpcs(c, ring, timestamp, "n1").await);
    all.extend(hr_key_rpcs(c, ring, timestamp, "k1").await);
    assert_eq!(all.len(), 22, "every HashRing RPC is exercised");
    all
}

fn key_op(kind: &str, key: &str) -> hr::KeyOperation {
    hr::KeyOperation {
        r#type: kind.to_owned(),
        key: key.to_owned(),
    }
}

fn sync_req(source: &str, dest: &str) -> hr::SyncRequest {
    hr::SyncRequest {
        source_node: source.to_owned(),
        dest_node: dest.to_owned(),
    }
}

fn sync_replicas(
    requests: Vec<hr::SyncRequest>,
    max_concurrent: i32,
    mode: i32,
) -> hr::SyncReplicasRequest {
    hr::SyncReplicasRequest {
        ring: String::new(),
        timestamp: 0,
        requests,
        max_concurrent,
        mode,
    }
}

async fn hr_add_node(c: &mut Hr, ring: &str, node: &str) -> bool {
    let req = hr::AddNodeRequest {
        ring: ring.to_owned(),
        timestamp: 0,
        node_id: node.to_owned(),
    };
    served("AddNode", c.add_node(req).await).ok
}

/// A good call after the bad ones: the node neither panicked nor hangs.
async fn hr_still_serves(c: &mut Hr) {
    assert!(hr_add_node(c, "after-bad-input", "healthy").await);
    let stored = served(
        "StoreKey",
        c.store_key(hr::StoreKeyRequest {
            ring: "after-bad-input".into(),
            timestamp: 1,
            key: "k".into(),
            ttl_ms: 0,
        })
        .await,
    );
    assert_eq!(stored.node_id.as_deref(), Some("healthy"));
}

// ---------------------------------------------------------------------------------
// ChatRouter calls
// ---------------------------------------------------------------------------------

/// The ChatRouter RPCs with a `server_name` field.
async fn cr_server_rpcs(c: &mut Cr, ring: &str, timestamp: i64, server: &str) -> Vec<Outcome> {
    let (ring, server_name) = (ring.to_owned(), server.to_owned());
    vec![
        rpc!(
            "AddServer",
            c.add_server(cr::AddServerRequest {
                ring: ring.clone(),
                timestamp,
                server_name: server_name.clone()
            })
        ),
        rpc!(
            "AddServerWithReplicas",
            c.add_server_with_replicas(cr::AddServerWithReplicasRequest {
                ring: ring.clone(),
                timestamp,
                server_name: server_name.clone(),
                num_replicas: 3,
            })
        ),
        rpc!(
            "GetServerLoad",
            c.get_server_load(cr::GetServerLoadRequest {
                ring: ring.clone(),
                timestamp,
                server_name: server_name.clone()
            })
        ),
        rpc!(
            "GetReplicaCount",
            c.get_replica_count(cr::GetReplicaCountRequest {
                ring: ring.clone(),
                timestamp,
                server_name: server_name.clone()
            })
        ),
        rpc!(
            "SetMemoryLimit",
            c.set_memory_limit(cr::SetMemoryLimitRequest {
                ring: ring.clone(),
                timestamp,
                server_name: server_name.clone(),
                max_mb: 100,
            })
        ),
        rpc!(
            "GetMemoryLimit",
            c.get_memory_limit(cr::GetMemoryLimitRequest {
                ring: ring.clone(),
                timestamp,
                server_name: server_name.clone()
            })
        ),
        rpc!(
            "GetMemoryUsed",
            c.get_memory_used(cr::GetMemoryUsedRequest {
                ring: ring.clone(),
                timestamp,
                server_name: server_name.clone()
            })
        ),
        rpc!(
            "EvictOldestSession",
            c.evict_oldest_session(cr::EvictOldestSessionRequest {
                ring: ring.clone(),
                timestamp,
                server_name: server_name.clone(),
            })
        ),
        rpc!(
            "GetMergedInto",
            c.get_merged_into(cr::GetMergedIntoRequest {
                ring: ring.clone(),
                timestamp,
                server_name: server_name.clone()
            })
        ),
        rpc!(
            "RemoveServer",
            c.remove_server(cr::RemoveServerRequest {
                ring,
                timestamp,
                server_name
            })
        ),
    ]
}

/// The ChatRouter RPCs with a `request_id` field.
async fn cr_request_rpcs(c: &mut Cr, ring: &str, timestamp: i64, id: &str) -> Vec<Outcome> {
    let (ring, request_id) = (ring.to_owned(), id.to_owned());
    vec![
        rpc!(
            "RouteRequest",
            c.route_request(cr::RouteRequestRequest {
                ring: ring.clone(),
                timestamp,
                request_id: request_id.clone()
            })
        ),
        rpc!(
            "AssignRequest",
            c.assign_request(cr::AssignRequestRequest {
                ring: ring.clone(),
                timestamp,
                request_id: request_id.clone(),
                size_mb: 10,
                ttl_ms: 0,
            })
        ),
        rpc!(
            "LocateRequest",
            c.locate_request(cr::LocateRequestRequest {
                ring,
                timestamp,
                request_id
            })
        ),
    ]
}

/// The ChatRouter RPCs with neither (ConfigureRing first).
async fn cr_ring_rpcs(c: &mut Cr, ring: &str, timestamp: i64) -> Vec<Outcome> {
    let ring = ring.to_owned();
    vec![
        rpc!(
            "ConfigureRing",
            c.configure_ring(cr::ConfigureRingRequest {
                ring: ring.clone(),
                timestamp,
                position_space: PositionSpace::U64 as i32,
            })
        ),
        rpc!(
            "GetServerCount",
            c.get_server_count(cr::GetServerCountRequest {
                ring: ring.clone(),
                timestamp
            })
        ),
        rpc!(
            "ListServers",
            c.list_servers(cr::ListServersRequest {
                ring: ring.clone(),
                timestamp
            })
        ),
        rpc!(
            "TopServers",
            c.top_servers(cr::TopServersRequest {
                ring: ring.clone(),
                timestamp,
                n: 3
            })
        ),
        rpc!(
            "BatchRequests",
            c.batch_requests(cr::BatchRequestsRequest {
                ring: ring.clone(),
                timestamp,
                operations: vec![request_op("assign", "r1", 5), request_op("route", "r2", 0)],
            })
        ),
        rpc!(
            "Backup",
            c.backup(cr::BackupRequest {
                ring: ring.clone(),
                timestamp
            })
        ),
        rpc!(
            "Restore",
            c.restore(cr::RestoreRequest {
                ring: ring.clone(),
                timestamp,
                backup_timestamp: 0
            })
        ),
        rpc!(
            "MergeServers",
            c.merge_servers(cr::MergeServersRequest {
                ring: ring.clone(),
                timestamp,
                from_server: "s1".into(),
                to_server: "s2".into()
            })
        ),
        rpc!(
            "ReplicateSessions",
            c.replicate_sessions(cr::ReplicateSessionsRequest {
                ring,
                timestamp,
                transfers: vec![transfer("s1", "s2", 0)],
                max_concurrent: 1,
                mode: SyncMode::FailFast as i32,
            })
        ),
    ]
}

/// Every ChatRouter RPC, on `ring` at `timestamp`, with valid ids.
async fn cr_every_rpc(c: &mut Cr, ring: &str, timestamp: i64) -> Vec<Outcome> {
    let mut all = cr_ring_rpcs(c, ring, timestamp).await;
    all.extend(cr_server_rpcs(c, ring, timestamp, "s1").await);
    all.extend(cr_request_rpcs(c, ring, timestamp, "r1").await);
    assert_eq!(all.len(), 22, "every ChatRouter RPC is exercised");
    all
}

fn request_op(kind: &str, id: &str, size_mb: i64) -> cr::RequestOperation {
    cr::RequestOperation {
        r#type: kind.to_owned(),
        request_id: id.to_owned(),
        size_mb,
    }
}

fn transfer(source: &str, destination: &str, bandwidth_mb: i64) -> cr::Transfer {
    cr::Transfer {
        source: source.to_owned(),
        destination: destination.to_owned(),
        bandwidth_mb,
    }
}

fn replicate(
    transfers: Vec<cr::Transfer>,
    max_concurrent: i32,
    mode: i32,
) -> cr::ReplicateSessionsRequest {
    cr::ReplicateSessionsRequest {
        ring: String::new(),
        timestamp: 0,
        transfers,
        max_concurrent,
        mode,
    }
}

async fn cr_add_server(c: &mut Cr, ring: &str, server: &str) -> bool {
    let req = cr::AddServerRequest {
        ring: ring.to_owned(),
        timestamp: 0,
        server_name: server.to_owned(),
    };
    served("AddServer", c.add_server(req).await).ok
}

fn assign(request_id: &str, size_mb: i64, ttl_ms: i64) -> cr::AssignRequestRequest {
    cr::AssignRequestRequest {
        ring: String::new(),
        timestamp: 1,
        request_id: request_id.to_owned(),
        size_mb,
        ttl_ms,
    }
}

async fn cr_still_serves(c: &mut Cr) {
    assert!(cr_add_server(c, "after-bad-input", "healthy").await);
    let mut req = assign("r", 7, 0);
    req.ring = "after-bad-input".into();
    let assigned = served("AssignRequest", c.assign_request(req).await);
    assert_eq!(assigned.server_name.as_deref(), Some("healthy"));
}

// ---------------------------------------------------------------------------------
// HashRing tests
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn hash_ring_empty_ids_are_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    assert_invalid(&hr_node_rpcs(&mut c, "", 0, "").await, "node_id");
    assert_invalid(&hr_key_rpcs(&mut c, "", 0, "").await, "key");
    // An empty ring name is the default ring, not an error.
    assert_served(&hr_every_rpc(&mut c, "", 0).await);
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_over_long_ids_are_invalid_argument_and_256_bytes_are_accepted() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    // 257 ASCII bytes, and 129 two-byte characters (258 bytes): the limit is in bytes.
    for bad in [long(MAX_ID + 1), "é".repeat(129)] {
        assert_invalid(&hr_node_rpcs(&mut c, "", 0, &bad).await, "node_id");
        assert_invalid(&hr_key_rpcs(&mut c, "", 0, &bad).await, "key");
    }
    for good in [long(MAX_ID), "é".repeat(128)] {
        assert_served(&hr_node_rpcs(&mut c, "", 0, &good).await);
        assert_served(&hr_key_rpcs(&mut c, "", 0, &good).await);
    }
    assert!(hr_add_node(&mut c, "", &long(MAX_ID)).await);
    let nodes = served(
        "ListNodes",
        c.list_nodes(hr::ListNodesRequest::default()).await,
    )
    .nodes;
    assert_eq!(nodes, vec![long(MAX_ID)]);
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_over_long_ring_name_is_invalid_argument_on_every_rpc() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    assert_invalid(&hr_every_rpc(&mut c, &long(MAX_ID + 1), 0).await, "ring");
    assert_served(&hr_every_rpc(&mut c, &long(MAX_ID), 0).await);
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_negative_timestamp_is_invalid_argument_on_every_rpc() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    // Negative, or so far ahead of the node's clock (microseconds, say) that it would
    // freeze the ring's clock in the future.
    for ts in [-1, i64::MIN, i64::MAX, 1_000_000 * 1_800_000_000_000] {
        assert_invalid(&hr_every_rpc(&mut c, "neg", ts).await, "timestamp");
    }
    // Nothing was applied by the refused writes: the ring is still empty, so it can
    // still be configured.
    let count = served(
        "GetNodeCount",
        c.get_node_count(hr::GetNodeCountRequest {
            ring: "neg".into(),
            timestamp: 0,
        })
        .await,
    );
    assert_eq!(count.count, 0);
    assert_served(&hr_every_rpc(&mut c, "neg", 1).await);
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_top_loaded_negative_n_is_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    assert!(hr_add_node(&mut c, "", "a").await);
    for n in [-1, i64::MIN] {
        let r = c
            .top_loaded(hr::TopLoadedRequest {
                n,
                ..Default::default()
            })
            .await;
        assert_invalid_one("TopLoaded", r, "n");
    }
    let zero = served(
        "TopLoaded",
        c.top_loaded(hr::TopLoadedRequest {
            n: 0,
            ..Default::default()
        })
        .await,
    );
    assert!(zero.entries.is_empty());
    let all = served(
        "TopLoaded",
        c.top_loaded(hr::TopLoadedRequest {
            n: i64::MAX,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(all.entries, vec!["a(0)".to_owned()]);
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_set_capacity_below_minus_one_or_over_cap_is_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    assert!(hr_add_node(&mut c, "", "a").await);
    let set = |capacity| hr::SetCapacityRequest {
        node_id: "a".into(),
        capacity,
        ..Default::default()
    };
    for capacity in [-2, -100, i64::MIN, MAX_MB + 1, i64::MAX] {
        assert_invalid_one(
            "SetCapacity",
            c.set_capacity(set(capacity)).await,
            "capacity",
        );
    }
    let get = || hr::GetCapacityRequest {
        node_id: "a".into(),
        ..Default::default()
    };
    // The refusals changed nothing: never set reads -1.
    assert_eq!(
        served("GetCapacity", c.get_capacity(get()).await).capacity,
        -1
    );
    for capacity in [-1, 0, 3, MAX_MB] {
        assert!(
            served("SetCapacity", c.set_capacity(set(capacity)).await).ok,
            "capacity {capacity}"
        );
        assert_eq!(
            served("GetCapacity", c.get_capacity(get()).await).capacity,
            capacity
        );
    }
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_add_node_with_replicas_negative_or_over_cap_is_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    let add = |num_replicas| hr::AddNodeWithReplicasRequest {
        node_id: "v".into(),
        num_replicas,
        ..Default::default()
    };
    for n in [-1, i64::MIN, MAX_REPLICAS + 1, i64::MAX] {
        assert_invalid_one(
            "AddNodeWithReplicas",
            c.add_node_with_replicas(add(n)).await,
            "num_replicas",
        );
    }
    let count = served(
        "GetNodeCount",
        c.get_node_count(hr::GetNodeCountRequest::default()).await,
    )
    .count;
    assert_eq!(count, 0, "a refused AddNodeWithReplicas added nothing");
    assert!(
        served(
            "AddNodeWithReplicas",
            c.add_node_with_replicas(add(MAX_REPLICAS)).await
        )
        .ok
    );
    let req = hr::GetReplicaCountRequest {
        node_id: "v".into(),
        ..Default::default()
    };
    assert_eq!(
        served("GetReplicaCount", c.get_replica_count(req).await).replicas,
        MAX_REPLICAS
    );
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_batch_operations_over_cap_or_bad_key_is_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    assert!(hr_add_node(&mut c, "", "a").await);
    let batch = |operations| hr::BatchOperationsRequest {
        ring: String::new(),
        timestamp: 5,
        operations,
    };

    let over: Vec<_> = (0..=MAX_BATCH)
        .map(|i| key_op("route", &format!("k{i}")))
        .collect();
    assert_invalid_one(
        "BatchOperations",
        c.batch_operations(batch(over)).await,
        "operations",
    );
    let full: Vec<_> = (0..MAX_BATCH)
        .map(|i| key_op("route", &format!("k{i}")))
        .collect();
    let results = served("BatchOperations", c.batch_operations(batch(full)).await).results;
    assert_eq!(results.len(), MAX_BATCH);

    // A bad key anywhere refuses the whole batch, naming its index; the valid
    // operations before it are not applied.
    let with_bad = |i: usize, bad: &str| {
        let mut ops = vec![
            key_op("store", "a1"),
            key_op("store", "a2"),
            key_op("unknown", "a3"),
        ];
        ops[i] = key_op("store", bad);
        ops
    };
    for (i, bad) in [
        (1, String::new()),
        (2, String::new()),
        (0, long(MAX_ID + 1)),
        (2, long(MAX_ID + 1)),
    ] {
        let r = c.batch_operations(batch(with_bad(i, &bad))).await;
        assert_invalid_one("BatchOperations", r, &format!("operations[{i}].key"));
    }
    for key in ["a1", "a2"] {
        let found = served(
            "LocateKey",
            c.locate_key(hr::LocateKeyRequest {
                key: key.into(),
                ..Default::default()
            })
            .await,
        );
        assert!(!found.found, "{key} was stored by a refused batch");
    }
    let used = served(
        "GetUsed",
        c.get_used(hr::GetUsedRequest {
            node_id: "a".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(used.used, 0);

    // An unknown type is a result (None), not an error.
    let ok = served(
        "BatchOperations",
        c.batch_operations(batch(with_bad(0, &long(MAX_ID)))).await,
    )
    .results;
    assert_eq!(ok.len(), 3);
    assert_eq!(ok[0].value, Some(hr::key_result::Value::NodeId("a".into())));
    assert_eq!(ok[2].value, None);
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_sync_replicas_bad_limits_mode_list_or_ids_are_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    assert!(hr_add_node(&mut c, "", "a").await);
    assert!(hr_add_node(&mut c, "", "b").await);
    let fail_fast = SyncMode::FailFast as i32;
    let one = || vec![sync_req("a", "b")];

    for mc in [0, -1, i32::MIN, MAX_CONCURRENT + 1, i32::MAX] {
        let r = c.sync_replicas(sync_replicas(one(), mc, fail_fast)).await;
        assert_invalid_one("SyncReplicas", r, "max_concurrent");
    }
    for mc in [1, MAX_CONCURRENT] {
        let r = served(
            "SyncReplicas",
            c.sync_replicas(sync_replicas(one(), mc, fail_fast)).await,
        );
        assert_eq!(r.results, vec![true], "max_concurrent {mc}");
    }

    for mode in [7, 2, -1] {
        let r = c.sync_replicas(sync_replicas(one(), 1, mode)).await;
        assert_invalid_one("SyncReplicas", r, "mode");
    }
    let r = served(
        "SyncReplicas",
        c.sync_replicas(sync_replicas(one(), 1, SyncMode::AllSleep as i32))
            .await,
    );
    assert_eq!(r.results, vec![true]);

    // Unknown nodes answer false at once in FAIL_FAST: a full list is cheap.
    let list = |n: usize| {
        (0..n)
            .map(|i| sync_req(&format!("x{i}"), "b"))
            .collect::<Vec<_>>()
    };
    let r = c
        .sync_replicas(sync_replicas(list(MAX_SYNC + 1), 8, fail_fast))
        .await;
    assert_invalid_one("SyncReplicas", r, "requests");
    let r = served(
        "SyncReplicas",
        c.sync_replicas(sync_replicas(list(MAX_SYNC), 8, fail_fast))
            .await,
    );
    assert_eq!(r.results, vec![false; MAX_SYNC]);

    let cases = [
        (1, sync_req("", "b"), "requests[1].source_node"),
        (2, sync_req("a", ""), "requests[2].dest_node"),
        (
            0,
            sync_req(&long(MAX_ID + 1), "b"),
            "requests[0].source_node",
        ),
        (1, sync_req("a", &long(MAX_ID + 1)), "requests[1].dest_node"),
    ];
    for (i, bad, field) in cases {
        let mut requests = vec![sync_req("a", "b"), sync_req("b", "a"), sync_req("a", "a")];
        requests[i] = bad;
        let r = c.sync_replicas(sync_replicas(requests, 2, fail_fast)).await;
        assert_invalid_one("SyncReplicas", r, field);
    }
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_configure_ring_unknown_space_or_used_ring_is_refused() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    let configure = |ring: &str, position_space| hr::ConfigureRingRequest {
        ring: ring.into(),
        timestamp: 0,
        position_space,
    };
    for space in [9, 2, -1] {
        assert_invalid_one(
            "ConfigureRing",
            c.configure_ring(configure("fresh", space)).await,
            "position_space",
        );
    }
    assert!(
        served(
            "ConfigureRing",
            c.configure_ring(configure("fresh", PositionSpace::U64 as i32))
                .await
        )
        .ok
    );

    assert!(hr_add_node(&mut c, "used", "a").await);
    for space in [PositionSpace::U64, PositionSpace::Drill] {
        let r = c.configure_ring(configure("used", space as i32)).await;
        let status = r.expect_err("ConfigureRing on a ring with a node must be refused");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains("\"used\""),
            "message should name the ring: {:?}",
            status.message()
        );
    }
    // The refusal changed nothing.
    let nodes = served(
        "ListNodes",
        c.list_nodes(hr::ListNodesRequest {
            ring: "used".into(),
            timestamp: 0,
        })
        .await,
    );
    assert_eq!(nodes.nodes, vec!["a".to_owned()]);
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_store_key_ttl_ms_out_of_range_is_invalid_and_positive_expires() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    // Explicit timestamps throughout: the ring's clock is the latest command timestamp,
    // and a timestamp of 0 would move it to the leader's wall clock.
    let add = hr::AddNodeRequest {
        ring: String::new(),
        timestamp: 1,
        node_id: "a".into(),
    };
    assert!(served("AddNode", c.add_node(add).await).ok);
    let store = |key: &str, ttl_ms| hr::StoreKeyRequest {
        ring: String::new(),
        timestamp: 1,
        key: key.into(),
        ttl_ms,
    };
    for ttl in [-1, i64::MIN, MAX_TTL_MS + 1, i64::MAX] {
        assert_invalid_one("StoreKey", c.store_key(store("t", ttl)).await, "ttl_ms");
    }
    let locate = |timestamp| hr::LocateKeyRequest {
        key: "t".into(),
        timestamp,
        ..Default::default()
    };
    assert!(
        !served("LocateKey", c.locate_key(locate(1)).await).found,
        "a refused StoreKey stored its key"
    );
    let stored = served("StoreKey", c.store_key(store("t", 5_000)).await);
    assert_eq!(stored.node_id.as_deref(), Some("a"));
    let found = served("LocateKey", c.locate_key(locate(5_000)).await);
    assert_eq!((found.found, found.expires_at), (true, Some(5_001)));
    assert!(
        !served("LocateKey", c.locate_key(locate(5_001)).await).found,
        "dead at its expiry"
    );
    served("StoreKey", c.store_key(store("t", MAX_TTL_MS)).await);
    hr_still_serves(&mut c).await;
}

#[tokio::test]
async fn hash_ring_drill_results_stay_results() {
    let node = NodeProcess::start();
    let mut c = node.hash_ring().await;
    let ghost = || "ghost".to_owned();

    // Empty ring.
    let route = served(
        "RouteKey",
        c.route_key(hr::RouteKeyRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(route.node_id, None);
    let store = served(
        "StoreKey",
        c.store_key(hr::StoreKeyRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(store.node_id, None);
    let top = served(
        "TopLoaded",
        c.top_loaded(hr::TopLoadedRequest {
            n: 5,
            ..Default::default()
        })
        .await,
    );
    assert!(top.entries.is_empty());
    let located = served(
        "LocateKey",
        c.locate_key(hr::LocateKeyRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await,
    );
    assert!(!located.found);
    assert_eq!(located.node_id, None);

    // Unknown node.
    let removed = served(
        "RemoveNode",
        c.remove_node(hr::RemoveNodeRequest {
            node_id: ghost(),
            ..Default::default()
        })
        .await,
    );
    assert!(!removed.ok);
    let set = hr::SetCapacityRequest {
        node_id: ghost(),
        capacity: 3,
        ..Default::default()
    };
    assert!(!served("SetCapacity", c.set_capacity(set).await).ok);
    let cap = served(
        "GetCapacity",
        c.get_capacity(hr::GetCapacityRequest {
            node_id: ghost(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(cap.capacity, 0);
    let used = served(
        "GetUsed",
        c.get_used(hr::GetUsedRequest {
            node_id: ghost(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(used.used, 0);
    let load = served(
        "GetLoad",
        c.get_load(hr::GetLoadRequest {
            node_id: ghost(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(load.load, 0);
    let replicas = hr::GetReplicaCountRequest {
        node_id: ghost(),
        ..Default::default()
    };
    assert_eq!(
        served("GetReplicaCount", c.get_replica_count(replicas).await).replicas,
        0
    );
    let evicted = served(
        "EvictLru",
        c.evict_lru(hr::EvictLruRequest {
            node_id: ghost(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(evicted.key, None);
    let sync = served(
        "SyncReplicas",
        c.sync_replicas(sync_replicas(
            vec![sync_req("ghost", "ghost")],
            1,
            SyncMode::FailFast as i32,
        ))
        .await,
    );
    assert_eq!(sync.results, vec![false]);

    // Duplicates and empty nodes.
    assert!(hr_add_node(&mut c, "", "a").await);
    assert!(
        !hr_add_node(&mut c, "", "a").await,
        "a duplicate AddNode answers false"
    );
    let dup = hr::AddNodeWithReplicasRequest {
        node_id: "a".into(),
        num_replicas: 3,
        ..Default::default()
    };
    assert!(!served("AddNodeWithReplicas", c.add_node_with_replicas(dup).await).ok);
    let evicted = served(
        "EvictLru",
        c.evict_lru(hr::EvictLruRequest {
            node_id: "a".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(
        evicted.key, None,
        "evicting from an empty node answers None"
    );
    let ops = vec![key_op("remove_key", "nope"), key_op("frobnicate", "k")];
    let batch = served(
        "BatchOperations",
        c.batch_operations(hr::BatchOperationsRequest {
            operations: ops,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(
        batch.results[0].value,
        Some(hr::key_result::Value::Ok(false))
    );
    assert_eq!(batch.results[1].value, None);
    hr_still_serves(&mut c).await;
}

// ---------------------------------------------------------------------------------
// ChatRouter tests
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn chat_router_empty_ids_are_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    assert_invalid(&cr_server_rpcs(&mut c, "", 0, "").await, "server_name");
    assert_invalid(&cr_request_rpcs(&mut c, "", 0, "").await, "request_id");
    assert_served(&cr_every_rpc(&mut c, "", 0).await);
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_over_long_ids_are_invalid_argument_and_256_bytes_are_accepted() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    for bad in [long(MAX_ID + 1), "é".repeat(129)] {
        assert_invalid(&cr_server_rpcs(&mut c, "", 0, &bad).await, "server_name");
        assert_invalid(&cr_request_rpcs(&mut c, "", 0, &bad).await, "request_id");
    }
    for good in [long(MAX_ID), "é".repeat(128)] {
        assert_served(&cr_server_rpcs(&mut c, "", 0, &good).await);
        assert_served(&cr_request_rpcs(&mut c, "", 0, &good).await);
    }
    assert!(cr_add_server(&mut c, "", &long(MAX_ID)).await);
    let servers = served(
        "ListServers",
        c.list_servers(cr::ListServersRequest::default()).await,
    )
    .servers;
    assert_eq!(servers, vec![long(MAX_ID)]);
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_over_long_ring_name_is_invalid_argument_on_every_rpc() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    assert_invalid(&cr_every_rpc(&mut c, &long(MAX_ID + 1), 0).await, "ring");
    assert_served(&cr_every_rpc(&mut c, &long(MAX_ID), 0).await);
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_negative_timestamp_is_invalid_argument_on_every_rpc() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    for ts in [-1, i64::MIN] {
        assert_invalid(&cr_every_rpc(&mut c, "neg", ts).await, "timestamp");
    }
    let count = served(
        "GetServerCount",
        c.get_server_count(cr::GetServerCountRequest {
            ring: "neg".into(),
            timestamp: 0,
        })
        .await,
    );
    assert_eq!(count.count, 0);
    assert_served(&cr_every_rpc(&mut c, "neg", 1).await);
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_top_servers_negative_n_is_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    assert!(cr_add_server(&mut c, "", "s").await);
    for n in [-1, i64::MIN] {
        let r = c
            .top_servers(cr::TopServersRequest {
                n,
                ..Default::default()
            })
            .await;
        assert_invalid_one("TopServers", r, "n");
    }
    let zero = served(
        "TopServers",
        c.top_servers(cr::TopServersRequest {
            n: 0,
            ..Default::default()
        })
        .await,
    );
    assert!(zero.entries.is_empty());
    let all = served(
        "TopServers",
        c.top_servers(cr::TopServersRequest {
            n: i64::MAX,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(all.entries, vec!["s(0)".to_owned()]);
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_set_memory_limit_below_minus_one_or_over_cap_is_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    assert!(cr_add_server(&mut c, "", "s").await);
    let set = |max_mb| cr::SetMemoryLimitRequest {
        server_name: "s".into(),
        max_mb,
        ..Default::default()
    };
    for max_mb in [-2, -100, i64::MIN, MAX_MB + 1, i64::MAX] {
        assert_invalid_one(
            "SetMemoryLimit",
            c.set_memory_limit(set(max_mb)).await,
            "max_mb",
        );
    }
    let get = || cr::GetMemoryLimitRequest {
        server_name: "s".into(),
        ..Default::default()
    };
    assert_eq!(
        served("GetMemoryLimit", c.get_memory_limit(get()).await).limit,
        -1
    );
    for max_mb in [-1, 0, 100, MAX_MB] {
        assert!(
            served("SetMemoryLimit", c.set_memory_limit(set(max_mb)).await).ok,
            "max_mb {max_mb}"
        );
        assert_eq!(
            served("GetMemoryLimit", c.get_memory_limit(get()).await).limit,
            max_mb
        );
    }
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_add_server_with_replicas_negative_or_over_cap_is_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    let add = |num_replicas| cr::AddServerWithReplicasRequest {
        server_name: "v".into(),
        num_replicas,
        ..Default::default()
    };
    for n in [-1, i64::MIN, MAX_REPLICAS + 1, i64::MAX] {
        assert_invalid_one(
            "AddServerWithReplicas",
            c.add_server_with_replicas(add(n)).await,
            "num_replicas",
        );
    }
    let count = served(
        "GetServerCount",
        c.get_server_count(cr::GetServerCountRequest::default())
            .await,
    )
    .count;
    assert_eq!(count, 0, "a refused AddServerWithReplicas added nothing");
    assert!(
        served(
            "AddServerWithReplicas",
            c.add_server_with_replicas(add(MAX_REPLICAS)).await
        )
        .ok
    );
    let req = cr::GetReplicaCountRequest {
        server_name: "v".into(),
        ..Default::default()
    };
    assert_eq!(
        served("GetReplicaCount", c.get_replica_count(req).await).replicas,
        MAX_REPLICAS
    );
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_assign_request_negative_or_over_cap_size_mb_is_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    assert!(cr_add_server(&mut c, "", "s").await);
    for size in [-1, i64::MIN, MAX_MB + 1, i64::MAX] {
        assert_invalid_one(
            "AssignRequest",
            c.assign_request(assign("r", size, 0)).await,
            "size_mb",
        );
    }
    let used = || cr::GetMemoryUsedRequest {
        server_name: "s".into(),
        ..Default::default()
    };
    assert_eq!(
        served("GetMemoryUsed", c.get_memory_used(used()).await).used,
        0
    );
    for (id, size) in [("zero", 0), ("max", MAX_MB)] {
        let r = served("AssignRequest", c.assign_request(assign(id, size, 0)).await);
        assert_eq!(r.server_name.as_deref(), Some("s"));
    }
    assert_eq!(
        served("GetMemoryUsed", c.get_memory_used(used()).await).used,
        MAX_MB
    );
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_batch_requests_over_cap_bad_id_or_size_is_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    assert!(cr_add_server(&mut c, "", "s").await);
    let batch = |operations| cr::BatchRequestsRequest {
        ring: String::new(),
        timestamp: 5,
        operations,
    };

    let over: Vec<_> = (0..=MAX_BATCH)
        .map(|i| request_op("route", &format!("r{i}"), 0))
        .collect();
    assert_invalid_one(
        "BatchRequests",
        c.batch_requests(batch(over)).await,
        "operations",
    );
    let full: Vec<_> = (0..MAX_BATCH)
        .map(|i| request_op("route", &format!("r{i}"), 0))
        .collect();
    let results = served("BatchRequests", c.batch_requests(batch(full)).await).results;
    assert_eq!(results.len(), MAX_BATCH);

    let with_bad = |i: usize, bad: cr::RequestOperation| {
        let mut ops = vec![
            request_op("assign", "a1", 10),
            request_op("assign", "a2", 20),
            request_op("?", "a3", 0),
        ];
        ops[i] = bad;
        ops
    };
    let cases = [
        (1, request_op("assign", "", 1), "operations[1].request_id"),
        (2, request_op("route", "", 0), "operations[2].request_id"),
        (
            0,
            request_op("assign", &long(MAX_ID + 1), 1),
            "operations[0].request_id",
        ),
        (2, request_op("assign", "neg", -1), "operations[2].size_mb"),
        (
            1,
            request_op("route", "neg", i64::MIN),
            "operations[1].size_mb",
        ),
        (
            1,
            request_op("assign", "big", MAX_MB + 1),
            "operations[1].size_mb",
        ),
    ];
    for (i, bad, field) in cases {
        let r = c.batch_requests(batch(with_bad(i, bad))).await;
        assert_invalid_one("BatchRequests", r, field);
    }
    let used = served(
        "GetMemoryUsed",
        c.get_memory_used(cr::GetMemoryUsedRequest {
            server_name: "s".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(
        used.used, 0,
        "a refused batch applied some of its operations"
    );

    let ok = served(
        "BatchRequests",
        c.batch_requests(batch(with_bad(2, request_op("remove", "nope", 0))))
            .await,
    )
    .results;
    assert_eq!(ok.len(), 3);
    assert_eq!(
        ok[0].value,
        Some(cr::request_result::Value::ServerName("s".into()))
    );
    assert_eq!(ok[2].value, Some(cr::request_result::Value::Ok(false)));
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_replicate_sessions_bad_limits_mode_list_or_entries_are_invalid_argument() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    assert!(cr_add_server(&mut c, "", "a").await);
    assert!(cr_add_server(&mut c, "", "b").await);
    let fail_fast = SyncMode::FailFast as i32;
    let one = || vec![transfer("a", "b", 0)];

    for mc in [0, -1, i32::MIN, MAX_CONCURRENT + 1, i32::MAX] {
        let r = c.replicate_sessions(replicate(one(), mc, fail_fast)).await;
        assert_invalid_one("ReplicateSessions", r, "max_concurrent");
    }
    for mc in [1, MAX_CONCURRENT] {
        let r = served(
            "ReplicateSessions",
            c.replicate_sessions(replicate(one(), mc, fail_fast)).await,
        );
        assert_eq!(r.results, vec![true], "max_concurrent {mc}");
    }

    for mode in [7, 2, -1] {
        let r = c.replicate_sessions(replicate(one(), 1, mode)).await;
        assert_invalid_one("ReplicateSessions", r, "mode");
    }
    let r = served(
        "ReplicateSessions",
        c.replicate_sessions(replicate(one(), 1, SyncMode::AllSleep as i32))
            .await,
    );
    assert_eq!(r.results, vec![true]);

    let list = |n: usize| {
        (0..n)
            .map(|i| transfer(&format!("x{i}"), "b", 0))
            .collect::<Vec<_>>()
    };
    let r = c
        .replicate_sessions(replicate(list(MAX_SYNC + 1), 8, fail_fast))
        .await;
    assert_invalid_one("ReplicateSessions", r, "transfers");
    let r = served(
        "ReplicateSessions",
        c.replicate_sessions(replicate(list(MAX_SYNC), 8, fail_fast))
            .await,
    );
    assert_eq!(r.results, vec![false; MAX_SYNC]);

    let cases = [
        (1, transfer("", "b", 0), "transfers[1].source"),
        (2, transfer("a", "", 0), "transfers[2].destination"),
        (
            0,
            transfer(&long(MAX_ID + 1), "b", 0),
            "transfers[0].source",
        ),
        (
            1,
            transfer("a", &long(MAX_ID + 1), 0),
            "transfers[1].destination",
        ),
        (2, transfer("a", "b", -1), "transfers[2].bandwidth_mb"),
        (0, transfer("a", "b", i64::MIN), "transfers[0].bandwidth_mb"),
        (
            1,
            transfer("a", "b", MAX_MB + 1),
            "transfers[1].bandwidth_mb",
        ),
    ];
    for (i, bad, field) in cases {
        let mut transfers = vec![
            transfer("a", "b", 0),
            transfer("b", "a", 0),
            transfer("a", "a", 0),
        ];
        transfers[i] = bad;
        let r = c
            .replicate_sessions(replicate(transfers, 2, fail_fast))
            .await;
        assert_invalid_one("ReplicateSessions", r, field);
    }
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_configure_ring_unknown_space_or_used_ring_is_refused() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    let configure = |ring: &str, position_space| cr::ConfigureRingRequest {
        ring: ring.into(),
        timestamp: 0,
        position_space,
    };
    for space in [9, 2, -1] {
        assert_invalid_one(
            "ConfigureRing",
            c.configure_ring(configure("fresh", space)).await,
            "position_space",
        );
    }
    assert!(
        served(
            "ConfigureRing",
            c.configure_ring(configure("fresh", PositionSpace::U64 as i32))
                .await
        )
        .ok
    );

    assert!(cr_add_server(&mut c, "used", "s").await);
    for space in [PositionSpace::U64, PositionSpace::Drill] {
        let r = c.configure_ring(configure("used", space as i32)).await;
        let status = r.expect_err("ConfigureRing on a ring with a server must be refused");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains("\"used\""),
            "message should name the ring: {:?}",
            status.message()
        );
    }
    let servers = served(
        "ListServers",
        c.list_servers(cr::ListServersRequest {
            ring: "used".into(),
            timestamp: 0,
        })
        .await,
    );
    assert_eq!(servers.servers, vec!["s".to_owned()]);
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_assign_request_ttl_ms_out_of_range_is_invalid_and_positive_expires() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    assert!(cr_add_server(&mut c, "", "s").await);
    for ttl in [-1, i64::MIN, MAX_TTL_MS + 1, i64::MAX] {
        assert_invalid_one(
            "AssignRequest",
            c.assign_request(assign("t", 5, ttl)).await,
            "ttl_ms",
        );
    }
    let located = cr::LocateRequestRequest {
        request_id: "t".into(),
        ..Default::default()
    };
    assert!(
        !served("LocateRequest", c.locate_request(located).await).found,
        "a refused AssignRequest stored its request"
    );
    let r = served("AssignRequest", c.assign_request(assign("t", 5, 10)).await);
    assert_eq!(r.server_name.as_deref(), Some("s"));
    cr_still_serves(&mut c).await;
}

#[tokio::test]
async fn chat_router_drill_results_stay_results() {
    let node = NodeProcess::start();
    let mut c = node.chat_router().await;
    let ghost = || "ghost".to_owned();

    let route = cr::RouteRequestRequest {
        request_id: "r".into(),
        ..Default::default()
    };
    assert_eq!(
        served("RouteRequest", c.route_request(route).await).server_name,
        None
    );
    assert_eq!(
        served("AssignRequest", c.assign_request(assign("r", 5, 0)).await).server_name,
        None
    );
    let top = served(
        "TopServers",
        c.top_servers(cr::TopServersRequest {
            n: 5,
            ..Default::default()
        })
        .await,
    );
    assert!(top.entries.is_empty());
    let located = cr::LocateRequestRequest {
        request_id: "r".into(),
        ..Default::default()
    };
    let located = served("LocateRequest", c.locate_request(located).await);
    assert!(!located.found);
    assert_eq!(located.server_name, None);

    let removed = cr::RemoveServerRequest {
        server_name: ghost(),
        ..Default::default()
    };
    assert!(!served("RemoveServer", c.remove_server(removed).await).ok);
    let set = cr::SetMemoryLimitRequest {
        server_name: ghost(),
        max_mb: 3,
        ..Default::default()
    };
    assert!(!served("SetMemoryLimit", c.set_memory_limit(set).await).ok);
    let limit = cr::GetMemoryLimitRequest {
        server_name: ghost(),
        ..Default::default()
    };
    assert_eq!(
        served("GetMemoryLimit", c.get_memory_limit(limit).await).limit,
        0
    );
    let used = cr::GetMemoryUsedRequest {
        server_name: ghost(),
        ..Default::default()
    };
    assert_eq!(
        served("GetMemoryUsed", c.get_memory_used(used).await).used,
        0
    );
    let load = cr::GetServerLoadRequest {
        server_name: ghost(),
        ..Default::default()
    };
    assert_eq!(
        served("GetServerLoad", c.get_server_load(load).await).load,
        0
    );
    let replicas = cr::GetReplicaCountRequest {
        server_name: ghost(),
        ..Default::default()
    };
    assert_eq!(
        served("GetReplicaCount", c.get_replica_count(replicas).await).replicas,
        0
    );
    let evict = cr::EvictOldestSessionRequest {
        server_name: ghost(),
        ..Default::default()
    };
    assert_eq!(
        served("EvictOldestSession", c.evict_oldest_session(evict).await).request_id,
        None
    );
    let rep = served(
        "ReplicateSessions",
        c.replicate_sessions(replicate(
            vec![transfer("ghost", "ghost", 0)],
            1,
            SyncMode::FailFast as i32,
        ))
        .await,
    );
    assert_eq!(rep.results, vec![false]);

    assert!(cr_add_server(&mut c, "", "s").await);
    assert!(
        !cr_add_server(&mut c, "", "s").await,
        "a duplicate AddServer answers false"
    );
    let dup = cr::AddServerWithReplicasRequest {
        server_name: "s".into(),
        num_replicas: 3,
        ..Default::default()
    };
    assert!(
        !served(
            "AddServerWithReplicas",
            c.add_server_with_replicas(dup).await
        )
        .ok
    );
    let evict = cr::EvictOldestSessionRequest {
        server_name: "s".into(),
        ..Default::default()
    };
    assert_eq!(
        served("EvictOldestSession", c.evict_oldest_session(evict).await).request_id,
        None
    );
    // Bandwidth above what the source holds is a false result, not an error.
    let rep = served(
        "ReplicateSessions",
        c.replicate_sessions(replicate(
            vec![transfer("s", "s", 1)],
            1,
            SyncMode::FailFast as i32,
        ))
        .await,
    );
    assert_eq!(rep.results, vec![false]);
    let ops = vec![
        request_op("remove", "nope", 0),
        request_op("frobnicate", "r", 0),
    ];
    let batch = served(
        "BatchRequests",
        c.batch_requests(cr::BatchRequestsRequest {
            operations: ops,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(
        batch.results[0].value,
        Some(cr::request_result::Value::Ok(false))
    );
    assert_eq!(batch.results[1].value, None);
    cr_still_serves(&mut c).await;
}

// ---------------------------------------------------------------------------------
// Cluster calls
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn cluster_membership_bad_input_is_refused_with_the_field_named() {
    use clockwise_proto::cluster::v1 as cl;
    use clockwise_proto::cluster::v1::cluster_client::ClusterClient;

    let node = NodeProcess::start();
    let mut c = ClusterClient::new(node.channel().await);
    let add = |id: u64, address: &str, peer_address: &str| cl::AddMemberRequest {
        id,
        address: address.into(),
        peer_address: peer_address.into(),
    };
    let ok = "127.0.0.1:1";
    assert_invalid_one("AddMember", c.add_member(add(0, ok, ok)).await, "id");
    for bad in [
        "",
        "nohost",
        ":80",
        "h:0",
        "h:99999",
        "h:x",
        "http://h:1",
        "h 1:2",
        "h:1|h:2",
    ] {
        assert_invalid_one("AddMember", c.add_member(add(2, bad, ok)).await, "address");
        assert_invalid_one(
            "AddMember",
            c.add_member(add(2, ok, bad)).await,
            "peer_address",
        );
    }
    assert_invalid_one(
        "RemoveMember",
        c.remove_member(cl::RemoveMemberRequest { id: 0 }).await,
        "id",
    );
    assert_invalid_one(
        "TransferLeader",
        c.transfer_leader(cl::TransferLeaderRequest { target_id: 0 })
            .await,
        "target_id",
    );
    // Well-formed but impossible: FAILED_PRECONDITION naming the field.
    let outcomes = [
        rpc!("AddMember", c.add_member(add(1, ok, ok))),
        rpc!(
            "RemoveMember",
            c.remove_member(cl::RemoveMemberRequest { id: 7 })
        ),
        rpc!(
            "TransferLeader",
            c.transfer_leader(cl::TransferLeaderRequest { target_id: 7 })
        ),
    ];
    let (rpcs, fields) = (
        ["AddMember", "RemoveMember", "TransferLeader"],
        ["id", "id", "target_id"],
    );
    for ((outcome, rpc), field) in outcomes.iter().zip(rpcs).zip(fields) {
        assert_eq!(outcome.0, rpc);
        assert_refused(
            std::slice::from_ref(outcome),
            Code::FailedPrecondition,
            field,
        );
    }
    // The leader of a group of one cannot remove itself.
    let own = c
        .remove_member(cl::RemoveMemberRequest { id: 1 })
        .await
        .map(drop);
    assert_refused(&[("RemoveMember", own)], Code::FailedPrecondition, "id");
    // Still serving, and still a group of one.
    let status = served("Status", c.status(cl::StatusRequest {}).await);
    assert_eq!(status.members.len(), 1);
    assert_eq!(
        served(
            "TransferLeader",
            c.transfer_leader(cl::TransferLeaderRequest { target_id: 1 })
                .await
        )
        .leader_id,
        1
    );
}

#[tokio::test]
async fn merges_and_restores_refuse_bad_ids_and_timestamps_naming_the_field() {
    let node = NodeProcess::start();
    let mut h = node.hash_ring().await;
    let merge = |from: &str, to: &str| hr::MergeNodesRequest {
        ring: String::new(),
        timestamp: 1,
        from_node: from.into(),
        to_node: to.into(),
    };
    assert_invalid_one(
        "MergeNodes",
        h.merge_nodes(merge("", "b")).await,
        "from_node",
    );
    assert_invalid_one("MergeNodes", h.merge_nodes(merge("a", "")).await, "to_node");
    assert_invalid_one(
        "MergeNodes",
        h.merge_nodes(merge(&long(MAX_ID + 1), "b")).await,
        "from_node",
    );
    let restore = hr::RestoreRequest {
        ring: String::new(),
        timestamp: 1,
        backup_timestamp: -1,
    };
    assert_invalid_one("Restore", h.restore(restore).await, "backup_timestamp");
    // Well-formed but impossible: results, not errors.
    assert!(!served("MergeNodes", h.merge_nodes(merge("a", "b")).await).ok);
    let none = hr::RestoreRequest {
        ring: String::new(),
        timestamp: 1,
        backup_timestamp: 5,
    };
    assert_eq!(served("Restore", h.restore(none).await).count, None);
    hr_still_serves(&mut h).await;

    let mut c = node.chat_router().await;
    let merge = |from: &str, to: &str| cr::MergeServersRequest {
        ring: String::new(),
        timestamp: 1,
        from_server: from.into(),
        to_server: to.into(),
    };
    assert_invalid_one(
        "MergeServers",
        c.merge_servers(merge("", "b")).await,
        "from_server",
    );
    assert_invalid_one(
        "MergeServers",
        c.merge_servers(merge("a", "")).await,
        "to_server",
    );
    let restore = cr::RestoreRequest {
        ring: String::new(),
        timestamp: 1,
        backup_timestamp: -1,
    };
    assert_invalid_one("Restore", c.restore(restore).await, "backup_timestamp");
    let merged = cr::GetMergedIntoRequest {
        server_name: String::new(),
        ..Default::default()
    };
    assert_invalid_one(
        "GetMergedInto",
        c.get_merged_into(merged).await,
        "server_name",
    );
    cr_still_serves(&mut c).await;
}
