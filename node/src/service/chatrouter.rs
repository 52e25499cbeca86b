//! `clockwise.chatrouter.v1.ChatRouter`: validation, then one engine call per RPC.

use std::sync::Arc;

use clockwise_proto::chatrouter::v1 as pb;
use clockwise_proto::chatrouter::v1::chat_router_server::ChatRouter;
use tonic::{Request, Status};

use super::state::NodeState;
use super::sync::SyncRunner;
use super::validate::{self as v, MAX_BATCH_OPERATIONS, MAX_MB, MAX_REPLICAS, MAX_SYNC_ENTRIES};
use super::watch::{WatchSource, WatchStream};
use super::{ok, Reply};
use crate::machine::clock::resolve_timestamp;
use crate::machine::codec::Session;
use clockwise_engine::{
    BatchResult, ChatRouterOp, Command, Op, Outcome, RequestOperation, RequestOperationKind,
    RingKind,
};

pub struct ChatRouterService {
    state: Arc<NodeState>,
    sync: Arc<SyncRunner>,
    watch: WatchSource,
}

impl ChatRouterService {
    pub fn new(state: Arc<NodeState>, sync: Arc<SyncRunner>, watch: WatchSource) -> Self {
        ChatRouterService { state, sync, watch }
    }

    /// Applies one mutation as a command, with its timestamp resolved.
    /// Timestamp 0 stays 0 here: the leader stamps its clock when it proposes.
    async fn apply(
        &self,
        session: Option<Session>,
        ring: &str,
        timestamp: i64,
        op: ChatRouterOp,
    ) -> Result<Outcome, Status> {
        let command = Command {
            ring: ring.to_owned(),
            timestamp,
            op: Op::ChatRouter(op),
        };
        Ok(self.state.apply(command, session).await?)
    }
}

#[tonic::async_trait]
impl ChatRouter for ChatRouterService {
    type WatchStream = WatchStream<pb::WatchResponse>;

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Reply<Self::WatchStream> {
        let r = req.into_inner();
        let ring = v::ring(&r.ring)?;
        let stream = self
            .watch
            .open(RingKind::ChatRouter, ring, r.start_revision)
            .await?;
        Ok(tonic::Response::new(stream))
    }

    async fn add_server(&self, req: Request<pb::AddServerRequest>) -> Reply<pb::AddServerResponse> {
        let (session, r) = v::session(req)?;
        let (ring, server) = (v::ring(&r.ring)?, v::id("server_name", &r.server_name)?);
        v::timestamp(r.timestamp)?;
        let done = self
            .apply(
                session,
                ring,
                r.timestamp,
                ChatRouterOp::AddServer {
                    server_name: server.to_owned(),
                },
            )
            .await?
            .into_done();
        ok(pb::AddServerResponse { ok: done })
    }

    async fn remove_server(
        &self,
        req: Request<pb::RemoveServerRequest>,
    ) -> Reply<pb::RemoveServerResponse> {
        let (session, r) = v::session(req)?;
        let (ring, server) = (v::ring(&r.ring)?, v::id("server_name", &r.server_name)?);
        v::timestamp(r.timestamp)?;
        let done = self
            .apply(
                session,
                ring,
                r.timestamp,
                ChatRouterOp::RemoveServer {
                    server_name: server.to_owned(),
                },
            )
            .await?
            .into_done();
        ok(pb::RemoveServerResponse { ok: done })
    }

    async fn route_request(
        &self,
        req: Request<pb::RouteRequestRequest>,
    ) -> Reply<pb::RouteRequestResponse> {
        let (read, r) = v::split(req)?;
        let (ring, id) = (v::ring(&r.ring)?, v::id("request_id", &r.request_id)?);
        v::timestamp(r.timestamp)?;
        let server_name = self
            .state
            .read_chat_router(ring, read, |c| c.route_request(id).map(str::to_owned))
            .await?;
        ok(pb::RouteRequestResponse { server_name })
    }

    async fn get_server_count(
        &self,
        req: Request<pb::GetServerCountRequest>,
    ) -> Reply<pb::GetServerCountResponse> {
        let (read, r) = v::split(req)?;
        let ring = v::ring(&r.ring)?;
        v::timestamp(r.timestamp)?;
        let count = self
            .state
            .read_chat_router(ring, read, |c| c.get_server_count())
            .await?;
        ok(pb::GetServerCountResponse { count })
    }

    async fn assign_request(
        &self,
        req: Request<pb::AssignRequestRequest>,
    ) -> Reply<pb::AssignRequestResponse> {
        let (session, r) = v::session(req)?;
        let (ring, id) = (v::ring(&r.ring)?, v::id("request_id", &r.request_id)?);
        let ts = v::timestamp(r.timestamp)?;
        let size_mb = v::non_negative("size_mb", r.size_mb, MAX_MB)?;
        let ttl_ms = v::ttl_ms(r.ttl_ms)?;
        let op = if ttl_ms == 0 {
            ChatRouterOp::AssignRequest {
                request_id: id.to_owned(),
                size_mb,
            }
        } else {
            ChatRouterOp::AssignRequestWithTtl {
                request_id: id.to_owned(),
                size_mb,
                ttl_ms,
            }
        };
        let server_name = self.apply(session, ring, ts, op).await?.into_name();
        ok(pb::AssignRequestResponse { server_name })
    }

    async fn list_servers(
        &self,
        req: Request<pb::ListServersRequest>,
    ) -> Reply<pb::ListServersResponse> {
        let (read, r) = v::split(req)?;
        let ring = v::ring(&r.ring)?;
        v::timestamp(r.timestamp)?;
        let servers = self
            .state
            .read_chat_router(ring, read, |c| c.list_servers())
            .await?;
        ok(pb::ListServersResponse { servers })
    }

    async fn get_server_load(
        &self,
        req: Request<pb::GetServerLoadRequest>,
    ) -> Reply<pb::GetServerLoadResponse> {
        let (read, r) = v::split(req)?;
        let (ring, server) = (v::ring(&r.ring)?, v::id("server_name", &r.server_name)?);
        let at = resolve_timestamp(v::timestamp(r.timestamp)?);
        let load = self
            .state
            .read_chat_router(ring, read, |c| c.get_memory_used_at(at, server))
            .await?;
        ok(pb::GetServerLoadResponse { load })
    }

    async fn top_servers(
        &self,
        req: Request<pb::TopServersRequest>,
    ) -> Reply<pb::TopServersResponse> {
        let (read, r) = v::split(req)?;
        let ring = v::ring(&r.ring)?;
        let at = resolve_timestamp(v::timestamp(r.timestamp)?);
        let n = v::non_negative("n", r.n, i64::MAX)?;
        let entries = self
            .state
            .read_chat_router(ring, read, |c| c.top_servers_at(at, n))
            .await?;
        ok(pb::TopServersResponse { entries })
    }

    async fn add_server_with_replicas(
        &self,
        req: Request<pb::AddServerWithReplicasRequest>,
    ) -> Reply<pb::AddServerWithReplicasResponse> {
        let (session, r) = v::session(req)?;
        let (ring, server) = (v::ring(&r.ring)?, v::id("server_name", &r.server_name)?);
        v::timestamp(r.timestamp)?;
        let replicas = v::non_negative("num_replicas", r.num_replicas, MAX_REPLICAS)?;
        let done = self
            .apply(
                session,
                ring,
                r.timestamp,
                ChatRouterOp::AddServerWithReplicas {
                    server_name: server.to_owned(),
                    num_replicas: replicas,
                },
            )
            .await?
            .into_done();
        ok(pb::AddServerWithReplicasResponse { ok: done })
    }

    async fn get_replica_count(
        &self,
        req: Request<pb::GetReplicaCountRequest>,
    ) -> Reply<pb::GetReplicaCountResponse> {
        let (read, r) = v::split(req)?;
        let (ring, server) = (v::ring(&r.ring)?, v::id("server_name", &r.server_name)?);
        v::timestamp(r.timestamp)?;
        let replicas = self
            .state
            .read_chat_router(ring, read, |c| c.get_replica_count(server))
            .await?;
        ok(pb::GetReplicaCountResponse { replicas })
    }

    async fn set_memory_limit(
        &self,
        req: Request<pb::SetMemoryLimitRequest>,
    ) -> Reply<pb::SetMemoryLimitResponse> {
        let (session, r) = v::session(req)?;
        let (ring, server) = (v::ring(&r.ring)?, v::id("server_name", &r.server_name)?);
        v::timestamp(r.timestamp)?;
        let max_mb = v::limit("max_mb", r.max_mb)?;
        let done = self
            .apply(
                session,
                ring,
                r.timestamp,
                ChatRouterOp::SetMemoryLimit {
                    server_name: server.to_owned(),
                    max_mb,
                },
            )
            .await?
            .into_done();
        ok(pb::SetMemoryLimitResponse { ok: done })
    }

    async fn get_memory_limit(
        &self,
        req: Request<pb::GetMemoryLimitRequest>,
    ) -> Reply<pb::GetMemoryLimitResponse> {
        let (read, r) = v::split(req)?;
        let (ring, server) = (v::ring(&r.ring)?, v::id("server_name", &r.server_name)?);
        v::timestamp(r.timestamp)?;
        let limit = self
            .state
            .read_chat_router(ring, read, |c| c.get_memory_limit(server))
            .await?;
        ok(pb::GetMemoryLimitResponse { limit })
    }

    async fn get_memory_used(
        &self,
        req: Request<pb::GetMemoryUsedRequest>,
    ) -> Reply<pb::GetMemoryUsedResponse> {
        let (read, r) = v::split(req)?;
        let (ring, server) = (v::ring(&r.ring)?, v::id("server_name", &r.server_name)?);
        let at = resolve_timestamp(v::timestamp(r.timestamp)?);
        let used = self
            .state
            .read_chat_router(ring, read, |c| c.get_memory_used_at(at, server))
            .await?;
        ok(pb::GetMemoryUsedResponse { used })
    }

    async fn evict_oldest_session(
        &self,
        req: Request<pb::EvictOldestSessionRequest>,
    ) -> Reply<pb::EvictOldestSessionResponse> {
        let (session, r) = v::session(req)?;
        let (ring, server) = (v::ring(&r.ring)?, v::id("server_name", &r.server_name)?);
        v::timestamp(r.timestamp)?;
        let request_id = self
            .apply(
                session,
                ring,
                r.timestamp,
                ChatRouterOp::EvictOldestSession {
                    server_name: server.to_owned(),
                },
            )
            .await?
            .into_name();
        ok(pb::EvictOldestSessionResponse { request_id })
    }

    async fn batch_requests(
        &self,
        req: Request<pb::BatchRequestsRequest>,
    ) -> Reply<pb::BatchRequestsResponse> {
        let (session, r) = v::session(req)?;
        let ring = v::ring(&r.ring)?;
        let ts = v::timestamp(r.timestamp)?;
        v::list_len("operations", r.operations.len(), MAX_BATCH_OPERATIONS)?;
        let ops = r
            .operations
            .into_iter()
            .enumerate()
            .map(|(i, op)| {
                v::id(&format!("operations[{i}].request_id"), &op.request_id)?;
                v::non_negative(&format!("operations[{i}].size_mb"), op.size_mb, MAX_MB)?;
                Ok(RequestOperation {
                    kind: RequestOperationKind::parse(&op.r#type),
                    request_id: op.request_id,
                    size_mb: op.size_mb,
                })
            })
            .collect::<v::Result<Vec<_>>>()?;
        let results = self
            .apply(
                session,
                ring,
                ts,
                ChatRouterOp::BatchRequests { operations: ops },
            )
            .await?
            .into_batch();
        let results = results
            .into_iter()
            .map(|result| pb::RequestResult {
                value: match result {
                    BatchResult::Node(server) => {
                        Some(pb::request_result::Value::ServerName(server))
                    }
                    BatchResult::Ok(flag) => Some(pb::request_result::Value::Ok(flag)),
                    BatchResult::Empty => None,
                },
            })
            .collect();
        ok(pb::BatchRequestsResponse { results })
    }

    async fn replicate_sessions(
        &self,
        req: Request<pb::ReplicateSessionsRequest>,
    ) -> Reply<pb::ReplicateSessionsResponse> {
        let (read, r) = v::split(req)?;
        let ring = v::ring(&r.ring)?;
        let at = resolve_timestamp(v::timestamp(r.timestamp)?);
        v::list_len("transfers", r.transfers.len(), MAX_SYNC_ENTRIES)?;
        let max_concurrent = v::max_concurrent(r.max_concurrent)?;
        let mode = v::sync_mode(r.mode)?;
        for (i, t) in r.transfers.iter().enumerate() {
            v::id(&format!("transfers[{i}].source"), &t.source)?;
            v::id(&format!("transfers[{i}].destination"), &t.destination)?;
            v::non_negative(
                &format!("transfers[{i}].bandwidth_mb"),
                t.bandwidth_mb,
                MAX_MB,
            )?;
        }
        let validity = self
            .state
            .read_chat_router(ring, read, |c| {
                c.replicate_validity(
                    at,
                    r.transfers
                        .iter()
                        .map(|t| (t.source.as_str(), t.destination.as_str(), t.bandwidth_mb)),
                )
            })
            .await?;
        let results = self.sync.run(validity, max_concurrent, mode).await;
        ok(pb::ReplicateSessionsResponse { results })
    }

    async fn locate_request(
        &self,
        req: Request<pb::LocateRequestRequest>,
    ) -> Reply<pb::LocateRequestResponse> {
        let (read, r) = v::split(req)?;
        let (ring, id) = (v::ring(&r.ring)?, v::id("request_id", &r.request_id)?);
        let at = resolve_timestamp(v::timestamp(r.timestamp)?);
        let found = self
            .state
            .read_chat_router(ring, read, |c| c.locate_request_at(at, id))
            .await?;
        ok(match found {
            Some(loc) => pb::LocateRequestResponse {
                found: true,
                server_name: Some(loc.node),
                last_access: loc.last_access,
                size: loc.size,
                expires_at: loc.expires_at,
            },
            None => pb::LocateRequestResponse::default(),
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
            self.apply(
                session,
                ring,
                r.timestamp,
                ChatRouterOp::Configure { space },
            )
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
        let op = ChatRouterOp::Backup { max_backups: 0 };
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
        let op = ChatRouterOp::Restore { backup_timestamp };
        let count = self.apply(session, ring, ts, op).await?.into_count();
        ok(pb::RestoreResponse { count })
    }

    async fn merge_servers(
        &self,
        req: Request<pb::MergeServersRequest>,
    ) -> Reply<pb::MergeServersResponse> {
        let (session, r) = v::session(req)?;
        let ring = v::ring(&r.ring)?;
        let from = v::id("from_server", &r.from_server)?;
        let to = v::id("to_server", &r.to_server)?;
        let ts = v::timestamp(r.timestamp)?;
        let op = ChatRouterOp::MergeServers {
            from_server: from.to_owned(),
            to_server: to.to_owned(),
        };
        let done = self.apply(session, ring, ts, op).await?.into_done();
        ok(pb::MergeServersResponse { ok: done })
    }

    async fn get_merged_into(
        &self,
        req: Request<pb::GetMergedIntoRequest>,
    ) -> Reply<pb::GetMergedIntoResponse> {
        let (read, r) = v::split(req)?;
        let (ring, server) = (v::ring(&r.ring)?, v::id("server_name", &r.server_name)?);
        v::timestamp(r.timestamp)?;
        let server_name = self
            .state
            .read_chat_router(ring, read, |c| c.get_merged_into(server))
            .await?;
        ok(pb::GetMergedIntoResponse { server_name })
    }
}
