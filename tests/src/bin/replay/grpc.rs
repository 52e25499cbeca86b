//! The gRPC backend of `replay`: each drill call becomes one RPC to a running node.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clockwise_engine::PositionSpace;
use clockwise_proto::chatrouter::v1 as cr;
use clockwise_proto::chatrouter::v1::chat_router_client::ChatRouterClient;
use clockwise_proto::common::v1::{PositionSpace as PbSpace, SyncMode};
use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tonic::transport::Channel;

use super::view::{is_route, Revisions, Views};
use super::{arg_i64, arg_str, field, list, str_field};

/// A channel to a node that records the revisions its replies carry.
type Transport = Revisions<Channel>;

pub struct Remote {
    runtime: Runtime,
    /// One channel per node; calls go to them in turn.
    channels: Vec<Transport>,
    /// The highest `x-clockwise-revision` any reply carried.
    seen: Arc<AtomicU64>,
    /// With `--routes-from-view`: routes answered by SDK views.
    views: Option<Views>,
    next: usize,
    prefix: String,
    space: PositionSpace,
    configured: HashSet<(String, String)>,
}

impl Remote {
    /// `endpoints`: one or more `http://host:port`, comma-separated.
    /// With `routes_from_view`, routes are answered by an SDK `RingView` per ring.
    pub fn connect(
        endpoints: &str,
        prefix: &str,
        space: PositionSpace,
        routes_from_view: bool,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let channels = endpoints
            .split(',')
            .map(|endpoint| {
                let endpoint =
                    Channel::from_shared(endpoint.trim().to_owned()).map_err(|e| e.to_string())?;
                runtime
                    .block_on(endpoint.connect())
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()?;
        let seen = Arc::new(AtomicU64::new(0));
        let channels = channels
            .into_iter()
            .map(|c| Revisions::new(c, seen.clone()))
            .collect();
        let views = if routes_from_view {
            Some(runtime.block_on(Views::connect(endpoints))?)
        } else {
            None
        };
        Ok(Remote {
            runtime,
            channels,
            seen,
            views,
            next: 0,
            prefix: prefix.to_owned(),
            space,
            configured: HashSet::new(),
        })
    }

    pub fn apply(&mut self, call: &Value) -> Result<Value, String> {
        let svc = str_field(call, "svc")?.to_owned();
        let ring = format!("{}{}", self.prefix, str_field(call, "ring")?);
        let method = str_field(call, "method")?.to_owned();
        // 0 would ask the node for its clock: shift every timestamp by one.
        let ts = call["ts"].as_i64().ok_or("ts is not an integer")? + 1;
        let args = call["args"].as_array().ok_or("args is not a list")?.clone();
        if self.space == PositionSpace::U64 && self.configured.insert((svc.clone(), ring.clone())) {
            self.configure(&svc, &ring)?;
            let revision = self.seen.load(Ordering::Acquire);
            if let Some(views) = &mut self.views {
                views.after(&svc, &ring, "configure_ring", &Value::Null, revision);
            }
        }
        if let Some(views) = self.views.as_mut().filter(|_| is_route(&svc, &method)) {
            let id = arg_str(&args, 0)?;
            return self.runtime.block_on(views.route(&svc, &ring, id));
        }
        let channel = self.channels[self.next % self.channels.len()].clone();
        self.next += 1;
        let (mut h, mut c) = (
            HashRingClient::new(channel.clone()),
            ChatRouterClient::new(channel),
        );
        let result = match svc.as_str() {
            "hashring" => {
                self.runtime
                    .block_on(hash_ring(&mut h, ring.clone(), &method, ts, &args))
            }
            "chatrouter" => {
                self.runtime
                    .block_on(chat_router(&mut c, ring.clone(), &method, ts, &args))
            }
            other => Err(format!("unknown svc {other:?}")),
        };
        if let (Some(views), Ok(value)) = (&mut self.views, &result) {
            let revision = self.seen.load(Ordering::Acquire);
            views.after(&svc, &ring, &method, value, revision);
        }
        result
    }

    fn configure(&mut self, svc: &str, ring: &str) -> Result<(), String> {
        let space = PbSpace::U64 as i32;
        let ring = ring.to_owned();
        let channel = self.channels[0].clone();
        let (mut h, mut c) = (
            HashRingClient::new(channel.clone()),
            ChatRouterClient::new(channel),
        );
        self.runtime.block_on(async move {
            match svc {
                "hashring" => h
                    .configure_ring(hr::ConfigureRingRequest {
                        ring,
                        timestamp: 1,
                        position_space: space,
                    })
                    .await
                    .map(drop),
                _ => c
                    .configure_ring(cr::ConfigureRingRequest {
                        ring,
                        timestamp: 1,
                        position_space: space,
                    })
                    .await
                    .map(drop),
            }
            .map_err(status)
        })
    }
}

fn status(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

async fn hash_ring(
    client: &mut HashRingClient<Transport>,
    ring: String,
    method: &str,
    timestamp: i64,
    args: &[Value],
) -> Result<Value, String> {
    let s = |i: usize| arg_str(args, i).map(str::to_owned);
    let n = |i: usize| arg_i64(args, i);
    let r = ring;
    Ok(match method {
        "add_node" => json!(
            client
                .add_node(hr::AddNodeRequest {
                    ring: r,
                    timestamp,
                    node_id: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .ok
        ),
        "remove_node" => json!(
            client
                .remove_node(hr::RemoveNodeRequest {
                    ring: r,
                    timestamp,
                    node_id: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .ok
        ),
        "route_key" => json!(
            client
                .route_key(hr::RouteKeyRequest {
                    ring: r,
                    timestamp,
                    key: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .node_id
        ),
        "get_node_count" => json!(
            client
                .get_node_count(hr::GetNodeCountRequest { ring: r, timestamp })
                .await
                .map_err(status)?
                .into_inner()
                .count
        ),
        "store_key" => json!(
            client
                .store_key(hr::StoreKeyRequest {
                    ring: r,
                    timestamp,
                    key: s(0)?,
                    ttl_ms: 0
                })
                .await
                .map_err(status)?
                .into_inner()
                .node_id
        ),
        "list_nodes" => json!(
            client
                .list_nodes(hr::ListNodesRequest { ring: r, timestamp })
                .await
                .map_err(status)?
                .into_inner()
                .nodes
        ),
        "get_load" => json!(
            client
                .get_load(hr::GetLoadRequest {
                    ring: r,
                    timestamp,
                    node_id: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .load
        ),
        "top_loaded" => json!(
            client
                .top_loaded(hr::TopLoadedRequest {
                    ring: r,
                    timestamp,
                    n: n(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .entries
        ),
        "add_node_with_replicas" => json!(
            client
                .add_node_with_replicas(hr::AddNodeWithReplicasRequest {
                    ring: r,
                    timestamp,
                    node_id: s(0)?,
                    num_replicas: n(1)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .ok
        ),
        "get_replica_count" => json!(
            client
                .get_replica_count(hr::GetReplicaCountRequest {
                    ring: r,
                    timestamp,
                    node_id: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .replicas
        ),
        "set_capacity" => json!(
            client
                .set_capacity(hr::SetCapacityRequest {
                    ring: r,
                    timestamp,
                    node_id: s(0)?,
                    capacity: n(1)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .ok
        ),
        "get_capacity" => json!(
            client
                .get_capacity(hr::GetCapacityRequest {
                    ring: r,
                    timestamp,
                    node_id: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .capacity
        ),
        "get_used" => json!(
            client
                .get_used(hr::GetUsedRequest {
                    ring: r,
                    timestamp,
                    node_id: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .used
        ),
        "evict_lru" => json!(
            client
                .evict_lru(hr::EvictLruRequest {
                    ring: r,
                    timestamp,
                    node_id: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .key
        ),
        "batch_operations" => {
            let operations = list(args, 0)?
                .iter()
                .map(|op| {
                    Ok(hr::KeyOperation {
                        r#type: op["type"].as_str().unwrap_or("").to_owned(),
                        key: field(op, "key")?.to_owned(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let results = client
                .batch_operations(hr::BatchOperationsRequest {
                    ring: r,
                    timestamp,
                    operations,
                })
                .await
                .map_err(status)?
                .into_inner()
                .results;
            results
                .into_iter()
                .map(|res| match res.value {
                    Some(hr::key_result::Value::NodeId(node)) => json!(node),
                    Some(hr::key_result::Value::Ok(flag)) => json!(flag),
                    None => Value::Null,
                })
                .collect()
        }
        "sync_replicas" => {
            let requests = list(args, 0)?
                .iter()
                .map(|q| {
                    Ok(hr::SyncRequest {
                        source_node: field(q, "source_node")?.to_owned(),
                        dest_node: field(q, "dest_node")?.to_owned(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let max_concurrent = i32::try_from(n(1)?).map_err(|e| e.to_string())?;
            json!(
                client
                    .sync_replicas(hr::SyncReplicasRequest {
                        ring: r,
                        timestamp,
                        requests,
                        max_concurrent,
                        mode: SyncMode::FailFast as i32,
                    })
                    .await
                    .map_err(status)?
                    .into_inner()
                    .results
            )
        }
        "store_key_ttl" => json!(
            client
                .store_key(hr::StoreKeyRequest {
                    ring: r,
                    timestamp,
                    key: s(0)?,
                    ttl_ms: n(1)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .node_id
        ),
        "backup" => json!(
            client
                .backup(hr::BackupRequest { ring: r, timestamp })
                .await
                .map_err(status)?
                .into_inner()
                .count
        ),
        "restore" => json!(
            client
                .restore(hr::RestoreRequest {
                    ring: r,
                    timestamp,
                    // Backup timestamps are shifted like every other.
                    backup_timestamp: n(0)? + 1
                })
                .await
                .map_err(status)?
                .into_inner()
                .count
        ),
        "merge_nodes" => json!(
            client
                .merge_nodes(hr::MergeNodesRequest {
                    ring: r,
                    timestamp,
                    from_node: s(0)?,
                    to_node: s(1)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .ok
        ),
        "get_merged_into" => json!(
            client
                .get_merged_into(hr::GetMergedIntoRequest {
                    ring: r,
                    timestamp,
                    node_id: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .node_id
        ),
        other => return Err(format!("unknown HashRing method {other:?}")),
    })
}

async fn chat_router(
    client: &mut ChatRouterClient<Transport>,
    ring: String,
    method: &str,
    timestamp: i64,
    args: &[Value],
) -> Result<Value, String> {
    let s = |i: usize| arg_str(args, i).map(str::to_owned);
    let n = |i: usize| arg_i64(args, i);
    let r = ring;
    Ok(match method {
        "add_server" => json!(
            client
                .add_server(cr::AddServerRequest {
                    ring: r,
                    timestamp,
                    server_name: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .ok
        ),
        "remove_server" => json!(
            client
                .remove_server(cr::RemoveServerRequest {
                    ring: r,
                    timestamp,
                    server_name: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .ok
        ),
        "route_request" => json!(
            client
                .route_request(cr::RouteRequestRequest {
                    ring: r,
                    timestamp,
                    request_id: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .server_name
        ),
        "get_server_count" => json!(
            client
                .get_server_count(cr::GetServerCountRequest { ring: r, timestamp })
                .await
                .map_err(status)?
                .into_inner()
                .count
        ),
        "assign_request" => json!(
            client
                .assign_request(cr::AssignRequestRequest {
                    ring: r,
                    timestamp,
                    request_id: s(0)?,
                    size_mb: n(1)?,
                    ttl_ms: 0
                })
                .await
                .map_err(status)?
                .into_inner()
                .server_name
        ),
        "list_servers" => json!(
            client
                .list_servers(cr::ListServersRequest { ring: r, timestamp })
                .await
                .map_err(status)?
                .into_inner()
                .servers
        ),
        "get_server_load" => json!(
            client
                .get_server_load(cr::GetServerLoadRequest {
                    ring: r,
                    timestamp,
                    server_name: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .load
        ),
        "top_servers" => json!(
            client
                .top_servers(cr::TopServersRequest {
                    ring: r,
                    timestamp,
                    n: n(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .entries
        ),
        "add_server_with_replicas" => json!(
            client
                .add_server_with_replicas(cr::AddServerWithReplicasRequest {
                    ring: r,
                    timestamp,
                    server_name: s(0)?,
                    num_replicas: n(1)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .ok
        ),
        "get_replica_count" => json!(
            client
                .get_replica_count(cr::GetReplicaCountRequest {
                    ring: r,
                    timestamp,
                    server_name: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .replicas
        ),
        "set_memory_limit" => json!(
            client
                .set_memory_limit(cr::SetMemoryLimitRequest {
                    ring: r,
                    timestamp,
                    server_name: s(0)?,
                    max_mb: n(1)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .ok
        ),
        "get_memory_limit" => json!(
            client
                .get_memory_limit(cr::GetMemoryLimitRequest {
                    ring: r,
                    timestamp,
                    server_name: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .limit
        ),
        "get_memory_used" => json!(
            client
                .get_memory_used(cr::GetMemoryUsedRequest {
                    ring: r,
                    timestamp,
                    server_name: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .used
        ),
        "evict_oldest_session" => json!(
            client
                .evict_oldest_session(cr::EvictOldestSessionRequest {
                    ring: r,
                    timestamp,
                    server_name: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .request_id
        ),
        "batch_requests" => {
            let operations = list(args, 0)?
                .iter()
                .map(|op| {
                    Ok(cr::RequestOperation {
                        r#type: op["type"].as_str().unwrap_or("").to_owned(),
                        request_id: field(op, "request_id")?.to_owned(),
                        size_mb: op["size_mb"].as_i64().unwrap_or(0),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let results = client
                .batch_requests(cr::BatchRequestsRequest {
                    ring: r,
                    timestamp,
                    operations,
                })
                .await
                .map_err(status)?
                .into_inner()
                .results;
            results
                .into_iter()
                .map(|res| match res.value {
                    Some(cr::request_result::Value::ServerName(server)) => json!(server),
                    Some(cr::request_result::Value::Ok(flag)) => json!(flag),
                    None => Value::Null,
                })
                .collect()
        }
        "replicate_sessions" => {
            let transfers = list(args, 0)?
                .iter()
                .map(|t| {
                    Ok(cr::Transfer {
                        source: field(t, "source")?.to_owned(),
                        destination: field(t, "destination")?.to_owned(),
                        bandwidth_mb: t["bandwidth_mb"].as_i64().ok_or("bandwidth_mb")?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let max_concurrent = i32::try_from(n(1)?).map_err(|e| e.to_string())?;
            json!(
                client
                    .replicate_sessions(cr::ReplicateSessionsRequest {
                        ring: r,
                        timestamp,
                        transfers,
                        max_concurrent,
                        mode: SyncMode::FailFast as i32,
                    })
                    .await
                    .map_err(status)?
                    .into_inner()
                    .results
            )
        }
        "assign_request_ttl" => json!(
            client
                .assign_request(cr::AssignRequestRequest {
                    ring: r,
                    timestamp,
                    request_id: s(0)?,
                    size_mb: n(1)?,
                    ttl_ms: n(2)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .server_name
        ),
        "backup" => json!(
            client
                .backup(cr::BackupRequest { ring: r, timestamp })
                .await
                .map_err(status)?
                .into_inner()
                .count
        ),
        "restore" => json!(
            client
                .restore(cr::RestoreRequest {
                    ring: r,
                    timestamp,
                    backup_timestamp: n(0)? + 1
                })
                .await
                .map_err(status)?
                .into_inner()
                .count
        ),
        "merge_servers" => json!(
            client
                .merge_servers(cr::MergeServersRequest {
                    ring: r,
                    timestamp,
                    from_server: s(0)?,
                    to_server: s(1)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .ok
        ),
        "get_merged_into" => json!(
            client
                .get_merged_into(cr::GetMergedIntoRequest {
                    ring: r,
                    timestamp,
                    server_name: s(0)?
                })
                .await
                .map_err(status)?
                .into_inner()
                .server_name
        ),
        other => return Err(format!("unknown ChatRouter method {other:?}")),
    })
}
