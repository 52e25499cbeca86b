//! `clockwise.hashring.v1.HashRing`: validation, then one engine call per RPC.

use std::sync::Arc;

use clockwise_proto::hashring::v1 as pb;
use clockwise_proto::hashring::v1::hash_ring_server::HashRing;
use tonic::{Request, Status};

use super::state::NodeState;
use super::sync::SyncRunner;
use super::validate::{self as v, MAX_BATCH_OPERATIONS, MAX_REPLICAS, MAX_SYNC_ENTRIES};
use super::watch::{WatchSource, WatchStream};
use super::{ok, Reply};
use crate::machine::clock::resolve_timestamp;
use crate::machine::codec::Session;
use clockwise_engine::{
    BatchResult, Command, HashRingOp, KeyOperation, KeyOperationKind, Op, Outcome, RingKind,
};

pub struct HashRingService {
    state: Arc<NodeState>,
    sync: Arc<SyncRunner>,
    watch: WatchSource,
}

impl HashRingService {
    pub fn new(state: Arc<NodeState>, sync: Arc<SyncRunner>, watch: WatchSource) -> Self {
        HashRingService { state, sync, watch }
    }

    /// Applies one mutation as a command, with its timestamp resolved.
    /// Timestamp 0 stays 0 here: the leader stamps its clock when it proposes.
    async fn apply(
        &self,
        session: Option<Session>,
        ring: &str,
        timestamp: i64,
        op: HashRingOp,
    ) -> Result<Outcome, Status> {
        let command = Command {
            ring: ring.to_owned(),
            timestamp,
            op: Op::HashRing(op),
        };
        Ok(self.state.apply(command, session).await?)
    }
}

#[tonic::async_trait]
impl HashRing for HashRingService {
    type WatchStream = WatchStream<pb::WatchResponse>;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Reply<Self::WatchStream> {
        let r = req.into_inner();
        let ring = v::ring(&r.ring)?;
        let stream = self
            .watch
            .open(RingKind::HashRing, ring, r.start_revision)
            .await?;
        Ok(tonic::Response::new(stream))
    }

    async fn add_node(&self, req: Request<pb::AddNodeRequest>) -> Reply<pb::AddNodeResponse> {
        let (session, r) = v::session(req)?;
        let (ring, node) = (v::ring(&r.ring)?, v::id("node_id", &r.node_id)?);
        v::timestamp(r.timestamp)?;
        let done = self
            .apply(
                session,
                ring,
                r.timestamp,
                HashRingOp::AddNode {
                    node_id: node.to_owned(),
                },
            )
            .await?
            .into_done();
        ok(pb::AddNodeResponse { ok: done })
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Reply<pb::RemoveNodeResponse> {
        let (session, r) = v::session(req)?;
        let (ring, node) = (v::ring(&r.ring)?, v::id("node_id", &r.node_id)?);
        v::timestamp(r.timestamp)?;
        let done = self
            .apply(
                session,
                ring,
                r.timestamp,
                HashRingOp::RemoveNode {
                    node_id: node.to_owned(),
                },
            )
            .await?
            .into_done();
        ok(pb::RemoveNodeResponse { ok: done })
    }

    async fn route_key(&self, req: Request<pb::RouteKeyRequest>) -> Reply<pb::RouteKeyResponse> {
        let (read, r) = v::split(req)?;
        let (ring, key) = (v::ring(&r.ring)?, v::id("key", &r.key)?);
        v::timestamp(r.timestamp)?;
        let node_id = self
            .state
            .read_hash_ring(ring, read, |h| h.route_key(key).map(str::to_owned))
            .await?;
        ok(pb::RouteKeyResponse { node_id })
    }

    async fn get_node_count(
        &self,
        req: Request<pb::GetNodeCountRequest>,
    ) -> Reply<pb::GetNodeCountResponse> {
        let (read, r) = v::split(req)?;
        let ring = v::ring(&r.ring)?;
        v::timestamp(r.timestamp)?;
        let count = self
            .state
            .read_hash_ring(ring, read, |h| h.get_node_count())
            .await?;
        ok(pb::GetNodeCountResponse { count })
    }

    async fn store_key(&self, req: Request<pb::StoreKeyRequest>) -> Reply<pb::StoreKeyResponse> {
        let (session, r) = v::session(req)?;
        let (ring, key) = (v::ring(&r.ring)?, v::id("key", &r.key)?);
        let ts = v::timestamp(r.timestamp)?;
        let ttl_ms = v::ttl_ms(r.ttl_ms)?;
        let op = if ttl_ms == 0 {
            HashRingOp::StoreKey {
                key: key.to_owned(),
            }
        } else {
            HashRingOp::StoreKeyWithTtl {
                key: key.to_owned(),
                ttl_ms,
            }
        };
        let node_id = self.apply(session, ring, ts, op).await?.into_name();
        ok(pb::StoreKeyResponse { node_id })
    }

    async fn list_nodes(&self, req: Request<pb::ListNodesRequest>) -> Reply<pb::ListNodesResponse> {
        let (read, r) = v::split(req)?;
        let ring = v::ring(&r.ring)?;
        v::timestamp(r.timestamp)?;
        let nodes = self
            .state
            .read_hash_ring(ring, read, |h| h.list_nodes())
            .await?;
        ok(pb::ListNodesResponse { nodes })
    }

    async fn get_load(&self, req: Request<pb::GetLoadRequest>) -> Reply<pb::GetLoadResponse> {
        let (read, r) = v::split(req)?;
        let (ring, node) = (v::ring(&r.ring)?, v::id("node_id", &r.node_id)?);
        let at = resolve_timestamp(v::timestamp(r.timestamp)?);
        let load = self
            .state
            .read_hash_ring(ring, read, |h| h.get_used_at(at, node))
            .await?;
        ok(pb::GetLoadResponse { load })
    }

    async fn top_loaded(&self, req: Request<pb::TopLoadedRequest>) -> Reply<pb::TopLoadedResponse> {
        let (read, r) = v::split(req)?;
        let ring = v::ring(&r.ring)?;
        let at = resolve_timestamp(v::timestamp(r.timestamp)?);
        let n = v::non_negative("n", r.n, i64::MAX)?;
        let entries = self
            .state
            .read_hash_ring(ring, read, |h| h.top_loaded_at(at, n))
            .await?;
        ok(pb::TopLoadedResponse { entries })
    }

    async fn add_node_with_replicas(
        &self,
        req: Request<pb::AddNodeWithReplicasRequest>,
    ) -> Reply<pb::AddNodeWithReplicasResponse> {
        let (session, r) = v::session(req)?;
        let (ring, node) = (v::ring(&r.ring)?, v::id("node_id", &r.node_id)?);
        v::timestamp(r.timestamp)?;
        let replicas = v::non_negative("num_replicas", r.num_replicas, MAX_REPLICAS)?;
        let done = self
            .apply(
                session,
                ring,
                r.timestamp,
                HashRingOp::AddNodeWithReplicas {
                    node_id: node.to_owned(),
                    num_replicas: replicas,
                },
            )
            .await?
            .into_done();
        ok(pb::AddNodeWithReplicasResponse { ok: done })
    }

    async fn get_replica_count(
        &self,
        req: Request<pb::GetReplicaCountRequest>,
    ) -> Reply<pb::GetReplicaCountResponse> {
        let (read, r) = v::split(req)?;
        let (ring, node) = (v::ring(&r.ring)?, v::id("node_id", &r.node_id)?);
        v::timestamp(r.timestamp)?;
        let replicas = self
            .state
            .read_hash_ring(ring, read, |h| h.get_replica_count(node))
            .await?;
        ok(pb::GetReplicaCountResponse { replicas })
    }

    async fn set_capacity(
        &self,
        req: Request<pb::SetCapacityRequest>,
    ) -> Reply<pb::SetCapacityResponse> {
        let (session, r) = v::session(req)?;
        let (ring, node) = (v::ring(&r.ring)?, v::id("node_id", &r.node_id)?);
        v::timestamp(r.timestamp)?;
        let capacity = v::limit("capacity", r.capacity)?;
        let done = self
            .apply(
                session,
                ring,
                r.timestamp,
                HashRingOp::SetCapacity {
                    node_id: node.to_owned(),
                    capacity,
                },
            )
            .await?
            .into_done();
        ok(pb::SetCapacityResponse { ok: done })
    }

    async fn get_capacity(
        &self,
        req: Request<pb::GetCapacityRequest>,
    ) -> Reply<pb::GetCapacityResponse> {
        let (read, r) = v::split(req)?;
        let (ring, node) = (v::ring(&r.ring)?, v::id("node_id", &r.node_id)?);
        v::timestamp(r.timestamp)?;
        let capacity = self
            .state
            .read_hash_ring(ring, read, |h| h.get_capacity(node))
            .await?;
        ok(pb::GetCapacityResponse { capacity })
    }

    async fn get_used(&self, req: Request<pb::GetUsedRequest>) -> Reply<pb::GetUsedResponse> {
        let (read, r) = v::split(req)?;
        let (ring, node) = (v::ring(&r.ring)?, v::id("node_id", &r.node_id)?);
        let at = resolve_timestamp(v::timestamp(r.timestamp)?);
        let used = self
            .state
            .read_hash_ring(ring, read, |h| h.get_used_at(at, node))
            .await?;
        ok(pb::GetUsedResponse { used })
    }

    async fn evict_lru(&self, req: Request<pb::EvictLruRequest>) -> Reply<pb::EvictLruResponse> {
        let (session, r) = v::session(req)?;
        let (ring, node) = (v::ring(&r.ring)?, v::id("node_id", &r.node_id)?);
        v::timestamp(r.timestamp)?;
        let key = self
            .apply(
                session,
                ring,
                r.timestamp,
                HashRingOp::EvictLru {
                    node_id: node.to_owned(),
                },
            )
            .await?
            .into_name();
        ok(pb::EvictLruResponse { key })
    }

    async fn batch_operations(
        &self,
        req: Request<pb::BatchOperationsRequest>,
    ) -> Reply<pb::BatchOperationsResponse> {
        let (session, r) = v::session(req)?;
        let ring = v::ring(&r.ring)?;
        let ts = v::timestamp(r.timestamp)?;
        v::list_len("operations", r.operations.len(), MAX_BATCH_OPERATIONS)?;
        let ops = r
            .operations
            .into_iter()
            .enumerate()
            .map(|(i, op)| {
                v::id(&format!("operations[{i}].key"), &op.key)?;
                Ok(KeyOperation {
                    kind: KeyOperationKind::parse(&op.r#type),
                    key: op.key,
                })
            })
            .collect::<v::Result<Vec<_>>>()?;
        let results = self
            .apply(
                session,
                ring,
                ts,
                HashRingOp::BatchOperations { operations: ops },
            )
            .await?
            .into_batch();
        let results = results
            .into_iter()
            .map(|result| pb::KeyResult {
                value: match result {
                    BatchResult::Node(node) => Some(pb::key_result::Value::NodeId(node)),
                    BatchResult::Ok(flag) => Some(pb::key_result::Value::Ok(flag)),
                    BatchResult::Empty => None,
                },
            })
            .collect();
        ok(pb::BatchOperationsResponse { results })
    }

    async fn sync_replicas(
        &self,
        req: Request<pb::SyncReplicasRequest>,
    ) -> Reply<pb::SyncReplicasResponse> {
        let (read, r) = v::split(req)?;
        let ring = v::ring(&r.ring)?;
        v::timestamp(r.timestamp)?;
        v::list_len("requests", r.requests.len(), MAX_SYNC_ENTRIES)?;
        let max_concurrent = v::max_concurrent(r.max_concurrent)?;
        let mode = v::sync_mode(r.mode)?;
        for (i, q) in r.requests.iter().enumerate() {
            v::id(&format!("requests[{i}].source_node"), &q.source_node)?;
            v::id(&format!("requests[{i}].dest_node"), &q.dest_node)?;
        }
        let validity = self
            .state
            .read_hash_ring(ring, read, |h| {
                h.sync_validity(
                    r.requests
                        .iter()
                        .map(|q| (q.source_node.as_str(), q.dest_node.as_str())),
                )
            })
            .await?;
        let results = self.sync.run(validity, max_concurrent, mode).await;
        ok(pb::SyncReplicasResponse { results })
    }

    async fn locate_key(&self, req: Request<pb::LocateKeyRequest>) -> Reply<pb::LocateKeyResponse> {
        let (read, r) = v::split(req)?;
        let (ring, key) = (v::ring(&r.ring)?, v::id("key", &r.key)?);
        let at = resolve_timestamp(v::timestamp(r.timestamp)?);
        let found = self
            .state
            .read_hash_ring(ring, read, |h| h.locate_key_at(at, key))
            .await?;
        ok(match found {
            Some(loc) => pb::LocateKeyResponse {
                found: true,
                node_id: Some(loc.node),
                last_access: loc.last_access,
                size: loc.size,
                expires_at: loc.expires_at,
            },
            None => pb::LocateKeyResponse::default(),
        })
    }

    async fn configure_ring(
        &self,
        req: Request<pb::ConfigureRingRequest>,
    ) -> Reply<pb::ConfigureRingResponse> {
        let (session, r) = v::session(req)?;
        let ring = v::ring(&r.ring)?;
        v::timestamp(r.timestamp)?;
        let space = v::position_space(r.position_space)?;
        super::configure(
            self.apply(session, ring, r.timestamp, HashRingOp::Configure { space })
                .await?
                .into_done(),
            ring,
        )?;
        ok(pb::ConfigureRingResponse { ok: true })
    }

    async fn backup(&self, req: Request<pb::BackupRequest>) -> Reply<pb::BackupResponse> {
        let (session, r) = v::session(req)?;
        let ring = v::ring(&r.ring)?;
        let ts = v::timestamp(r.timestamp)?;
        // The leader fills in its --max-backups-per-ring when it proposes.
        let op = HashRingOp::Backup { max_backups: 0 };
        let count = self.apply(session, ring, ts, op).await?.into_count();
        ok(pb::BackupResponse {
            count: count.unwrap_or(0),
        })
    }

    async fn restore(&self, req: Request<pb::RestoreRequest>) -> Reply<pb::RestoreResponse> {
        let (session, r) = v::session(req)?;
        let ring = v::ring(&r.ring)?;
        let ts = v::timestamp(r.timestamp)?;
        let backup_timestamp = v::non_negative("backup_timestamp", r.backup_timestamp, i64::MAX)?;
        let op = HashRingOp::Restore { backup_timestamp };
        let count = self.apply(session, ring, ts, op).await?.into_count();
        ok(pb::RestoreResponse { count })
    }

    async fn merge_nodes(
        &self,
        req: Request<pb::MergeNodesRequest>,
    ) -> Reply<pb::MergeNodesResponse> {
        let (session, r) = v::session(req)?;
        let ring = v::ring(&r.ring)?;
        let (from, to) = (
            v::id("from_node", &r.from_node)?,
            v::id("to_node", &r.to_node)?,
        );
        let ts = v::timestamp(r.timestamp)?;
        let op = HashRingOp::MergeNodes {
            from_node: from.to_owned(),
            to_node: to.to_owned(),
        };
        let done = self.apply(session, ring, ts, op).await?.into_done();
        ok(pb::MergeNodesResponse { ok: done })
    }

    async fn get_merged_into(
        &self,
        req: Request<pb::GetMergedIntoRequest>,
    ) -> Reply<pb::GetMergedIntoResponse> {
        let (read, r) = v::split(req)?;
        let (ring, node) = (v::ring(&r.ring)?, v::id("node_id", &r.node_id)?);
        v::timestamp(r.timestamp)?;
        let node_id = self
            .state
            .read_hash_ring(ring, read, |h| h.get_merged_into(node))
            .await?;
        ok(pb::GetMergedIntoResponse { node_id })
    }
}
