//! A ChatRouter namespace: one method per drill method, plain Rust results.

use clockwise_proto::chatrouter::v1 as pb;
use clockwise_proto::chatrouter::v1::chat_router_client::ChatRouterClient;
use clockwise_proto::common::v1::{PositionSpace, SyncMode};
use std::future::Future;
use tonic::transport::Channel;

use crate::client::{CallKind, Client};
use crate::error::Error;
use crate::types::{BatchResult, Location};

/// One operation of [`ChatRouter::batch_requests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOperation {
    /// `"assign"`, `"route"` or `"remove"`; any other type answers `None`, as in the
    /// drill.
    pub kind: String,
    /// The chat request (session) it is about.
    pub request_id: String,
    /// Size in MB (`"assign"` only).
    pub size_mb: i64,
}

impl RequestOperation {
    /// Place session `request_id` of `size_mb`.
    pub fn assign(request_id: impl Into<String>, size_mb: i64) -> Self {
        RequestOperation {
            kind: "assign".into(),
            request_id: request_id.into(),
            size_mb,
        }
    }
    /// Where `request_id` would go.
    pub fn route(request_id: impl Into<String>) -> Self {
        Self::assign(request_id, 0).with_kind("route")
    }
    /// Remove session `request_id`.
    pub fn remove(request_id: impl Into<String>) -> Self {
        Self::assign(request_id, 0).with_kind("remove")
    }
    fn with_kind(mut self, kind: &str) -> Self {
        self.kind = kind.into();
        self
    }
}

/// One session move of [`ChatRouter::replicate_sessions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Server the sessions leave.
    pub source: String,
    /// Server they go to.
    pub destination: String,
    /// MB moved (valid only when the source holds at least that much).
    pub bandwidth_mb: i64,
}

/// The ChatRouter namespace of [`Client::chat_router`]. Cheap to clone.
///
/// Writes are replicated and applied once even when retried; reads are linearizable
/// unless [`ChatRouter::stale_reads`] was asked for. Every call carries the handle's
/// timestamp (default 0: the leader stamps its clock), which assignments use as the
/// LRU access time.
#[derive(Clone)]
pub struct ChatRouter {
    client: Client,
    ring: String,
    timestamp: i64,
    stale: bool,
}

impl ChatRouter {
    pub(crate) fn new(client: Client, ring: String) -> Self {
        ChatRouter {
            client,
            ring,
            timestamp: 0,
            stale: false,
        }
    }

    /// The same ring, with calls at `timestamp` (ms; 0 = the leader's clock).
    pub fn at(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The same ring, reading any replica's state (which may lag); reads are spread
    /// over the replicas.
    pub fn stale_reads(mut self) -> Self {
        self.stale = true;
        self
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.ring
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        kind: CallKind,
        request: Req,
        rpc: F,
    ) -> Result<Resp, Error>
    where
        Req: Clone,
        F: Fn(ChatRouterClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.client
            .call(kind, request, |channel, request| {
                rpc(ChatRouterClient::new(channel), request)
            })
            .await
    }

    fn read(&self) -> CallKind {
        if self.stale {
            CallKind::StaleRead
        } else {
            CallKind::Read
        }
    }

    /// Adds a server with one position; `false` if it exists.
    pub async fn add_server(&self, server_name: &str) -> Result<bool, Error> {
        let request = pb::AddServerRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            server_name: server_name.into(),
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.add_server(r).await
            })
            .await?;
        Ok(response.ok)
    }

    /// Removes a server (its sessions move on); `false` if it is unknown.
    pub async fn remove_server(&self, server_name: &str) -> Result<bool, Error> {
        let request = pb::RemoveServerRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            server_name: server_name.into(),
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.remove_server(r).await
            })
            .await?;
        Ok(response.ok)
    }

    /// The server `request_id` routes to; `None` on an empty ring.
    pub async fn route_request(&self, request_id: &str) -> Result<Option<String>, Error> {
        let request = pb::RouteRequestRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            request_id: request_id.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.route_request(r).await
            })
            .await?;
        Ok(response.server_name)
    }

    /// How many servers the ring has.
    pub async fn get_server_count(&self) -> Result<i64, Error> {
        let request = pb::GetServerCountRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_server_count(r).await
            })
            .await?;
        Ok(response.count)
    }

    /// Places a session of `size_mb` on the server it routes to (evicting that
    /// server's oldest sessions until it fits under its memory limit); answers the
    /// server, `None` on an empty ring.
    pub async fn assign_request(
        &self,
        request_id: &str,
        size_mb: i64,
    ) -> Result<Option<String>, Error> {
        self.assign_request_with_ttl(request_id, size_mb, 0).await
    }

    /// Places a session alive for `ttl_ms` after the call's timestamp (0: forever).
    /// Assigning it again sets the expiry anew (0 clears it).
    pub async fn assign_request_with_ttl(
        &self,
        request_id: &str,
        size_mb: i64,
        ttl_ms: i64,
    ) -> Result<Option<String>, Error> {
        let request = pb::AssignRequestRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            request_id: request_id.into(),
            size_mb,
            ttl_ms,
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.assign_request(r).await
            })
            .await?;
        Ok(response.server_name)
    }

    /// Every server, in ring order of first position then name.
    pub async fn list_servers(&self) -> Result<Vec<String>, Error> {
        let request = pb::ListServersRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.list_servers(r).await
            })
            .await?;
        Ok(response.servers)
    }

    /// MB of sessions on `server_name`; 0 for an unknown server.
    pub async fn get_server_load(&self, server_name: &str) -> Result<i64, Error> {
        let request = pb::GetServerLoadRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            server_name: server_name.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_server_load(r).await
            })
            .await?;
        Ok(response.load)
    }

    /// The `n` most loaded servers as `"server(mb)"`, by load then name.
    pub async fn top_servers(&self, n: i64) -> Result<Vec<String>, Error> {
        let request = pb::TopServersRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            n,
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.top_servers(r).await
            })
            .await?;
        Ok(response.entries)
    }

    /// Adds a server with `num_replicas` positions; `false` if it exists.
    pub async fn add_server_with_replicas(
        &self,
        server_name: &str,
        num_replicas: i64,
    ) -> Result<bool, Error> {
        let request = pb::AddServerWithReplicasRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            server_name: server_name.into(),
            num_replicas,
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.add_server_with_replicas(r).await
            })
            .await?;
        Ok(response.ok)
    }

    /// How many positions `server_name` has; 0 for an unknown server.
    pub async fn get_replica_count(&self, server_name: &str) -> Result<i64, Error> {
        let request = pb::GetReplicaCountRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            server_name: server_name.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_replica_count(r).await
            })
            .await?;
        Ok(response.replicas)
    }

    /// Caps `server_name` at `max_mb` (-1: unlimited); `false` for an unknown server.
    pub async fn set_memory_limit(&self, server_name: &str, max_mb: i64) -> Result<bool, Error> {
        let request = pb::SetMemoryLimitRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            server_name: server_name.into(),
            max_mb,
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.set_memory_limit(r).await
            })
            .await?;
        Ok(response.ok)
    }

    /// The memory limit of `server_name`; -1 when unlimited or unknown.
    pub async fn get_memory_limit(&self, server_name: &str) -> Result<i64, Error> {
        let request = pb::GetMemoryLimitRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            server_name: server_name.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_memory_limit(r).await
            })
            .await?;
        Ok(response.limit)
    }

    /// MB used on `server_name` against its limit.
    pub async fn get_memory_used(&self, server_name: &str) -> Result<i64, Error> {
        let request = pb::GetMemoryUsedRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            server_name: server_name.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_memory_used(r).await
            })
            .await?;
        Ok(response.used)
    }

    /// Evicts the least recently assigned session of `server_name`; answers its
    /// request id, `None` if none.
    pub async fn evict_oldest_session(&self, server_name: &str) -> Result<Option<String>, Error> {
        let request = pb::EvictOldestSessionRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            server_name: server_name.into(),
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.evict_oldest_session(r).await
            })
            .await?;
        Ok(response.request_id)
    }

    /// Runs `operations` in order as one replicated command; one result each (`None`
    /// for an unknown type or an assign/route on an empty ring).
    pub async fn batch_requests(
        &self,
        operations: &[RequestOperation],
    ) -> Result<Vec<Option<BatchResult>>, Error> {
        let request = pb::BatchRequestsRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            operations: operations
                .iter()
                .map(|op| pb::RequestOperation {
                    r#type: op.kind.clone(),
                    request_id: op.request_id.clone(),
                    size_mb: op.size_mb,
                })
                .collect(),
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.batch_requests(r).await
            })
            .await?;
        Ok(response
            .results
            .into_iter()
            .map(|result| match result.value {
                Some(pb::request_result::Value::ServerName(server)) => {
                    Some(BatchResult::Placed(server))
                }
                Some(pb::request_result::Value::Ok(ok)) => Some(BatchResult::Removed(ok)),
                None => None,
            })
            .collect())
    }

    /// The simulated, rate-limited session replication of level 6: one result per
    /// transfer, at most `max_concurrent` simulated calls at once.
    pub async fn replicate_sessions(
        &self,
        transfers: &[Transfer],
        max_concurrent: i32,
        mode: SyncMode,
    ) -> Result<Vec<bool>, Error> {
        let request = pb::ReplicateSessionsRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            transfers: transfers
                .iter()
                .map(|t| pb::Transfer {
                    source: t.source.clone(),
                    destination: t.destination.clone(),
                    bandwidth_mb: t.bandwidth_mb,
                })
                .collect(),
            max_concurrent,
            mode: mode as i32,
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.replicate_sessions(r).await
            })
            .await?;
        Ok(response.results)
    }

    /// Where session `request_id` lives now, with its last access and size in MB;
    /// `None` if it is not placed.
    pub async fn locate_request(&self, request_id: &str) -> Result<Option<Location>, Error> {
        let request = pb::LocateRequestRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            request_id: request_id.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.locate_request(r).await
            })
            .await?;
        Ok(response
            .server_name
            .filter(|_| response.found)
            .map(|server| Location {
                owner: server,
                last_access: response.last_access,
                size: response.size,
                expires_at: response.expires_at,
            }))
    }

    /// Saves the ring's state; answers how many live sessions it holds.
    pub async fn backup(&self) -> Result<i64, Error> {
        let request = pb::BackupRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.backup(r).await
            })
            .await?;
        Ok(response.count)
    }

    /// Restores the latest backup saved at or before `backup_timestamp`; `None` when none.
    pub async fn restore(&self, backup_timestamp: i64) -> Result<Option<i64>, Error> {
        let request = pb::RestoreRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            backup_timestamp,
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.restore(r).await
            })
            .await?;
        Ok(response.count)
    }

    /// Merges `from_server` into `to_server`; `false` when either is missing or they are
    /// the same.
    pub async fn merge_servers(&self, from_server: &str, to_server: &str) -> Result<bool, Error> {
        let request = pb::MergeServersRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            from_server: from_server.into(),
            to_server: to_server.into(),
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.merge_servers(r).await
            })
            .await?;
        Ok(response.ok)
    }

    /// Where a merged server went (following later merges); `None` if it was not merged.
    pub async fn get_merged_into(&self, server_name: &str) -> Result<Option<String>, Error> {
        let request = pb::GetMergedIntoRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            server_name: server_name.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_merged_into(r).await
            })
            .await?;
        Ok(response.server_name)
    }

    /// Chooses the ring's position space; only while the ring is empty
    /// ([`Error::FailedPrecondition`] afterwards).
    pub async fn configure_ring(&self, space: PositionSpace) -> Result<(), Error> {
        let request = pb::ConfigureRingRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            position_space: space as i32,
        };
        self.call(CallKind::Write, request, |mut c, r| async move {
            c.configure_ring(r).await
        })
        .await?;
        Ok(())
    }
}
