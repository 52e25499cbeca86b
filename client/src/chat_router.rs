//! A ChatRouter namespace: one method per drill method, plain Rust results.

use clockwise_proto::chatrouter::v1 as pb;
use clockwise_proto::common::v1::{PositionSpace, SyncMode};
use tonic::transport::Channel;

use crate::call::{scoped, Namespace};
use crate::client::Client;
use crate::error::Error;
use crate::types::{BatchResult, Location};

/// The tonic client every call of the namespace goes through.
type Stub = pb::chat_router_client::ChatRouterClient<Channel>;

scoped!(
    pb::AddServerRequest,
    pb::RemoveServerRequest,
    pb::RouteRequestRequest,
    pb::GetServerCountRequest,
    pb::AssignRequestRequest,
    pb::ListServersRequest,
    pb::GetServerLoadRequest,
    pb::TopServersRequest,
    pb::AddServerWithReplicasRequest,
    pb::GetReplicaCountRequest,
    pb::SetMemoryLimitRequest,
    pb::GetMemoryLimitRequest,
    pb::GetMemoryUsedRequest,
    pb::EvictOldestSessionRequest,
    pb::BatchRequestsRequest,
    pb::ReplicateSessionsRequest,
    pb::LocateRequestRequest,
    pb::BackupRequest,
    pb::RestoreRequest,
    pb::MergeServersRequest,
    pb::GetMergedIntoRequest,
    pb::ConfigureRingRequest,
);

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
    ns: Namespace<Stub>,
}

impl ChatRouter {
    pub(crate) fn new(client: Client, ring: String) -> Self {
        ChatRouter {
            ns: Namespace::new(client, ring, Stub::new),
        }
    }

    /// The same ring, with calls at `timestamp` (ms; 0 = the leader's clock).
    pub fn at(mut self, timestamp: i64) -> Self {
        self.ns.timestamp = timestamp;
        self
    }

    /// The same ring, reading any replica's state (which may lag); reads are spread
    /// over the replicas.
    pub fn stale_reads(mut self) -> Self {
        self.ns.stale = true;
        self
    }

    /// The client the namespace calls through.
    pub(crate) fn client(&self) -> &Client {
        &self.ns.client
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.ns.ring
    }

    /// Adds a server with one position; `false` if it exists.
    pub async fn add_server(&self, server_name: &str) -> Result<bool, Error> {
        let request = pb::AddServerRequest {
            server_name: server_name.into(),
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::add_server).await?;
        Ok(response.ok)
    }

    /// Removes a server (its sessions move on); `false` if it is unknown.
    pub async fn remove_server(&self, server_name: &str) -> Result<bool, Error> {
        let request = pb::RemoveServerRequest {
            server_name: server_name.into(),
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::remove_server).await?;
        Ok(response.ok)
    }

    /// The server `request_id` routes to; `None` on an empty ring.
    pub async fn route_request(&self, request_id: &str) -> Result<Option<String>, Error> {
        let request = pb::RouteRequestRequest {
            request_id: request_id.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::route_request).await?;
        Ok(response.server_name)
    }

    /// How many servers the ring has.
    pub async fn get_server_count(&self) -> Result<i64, Error> {
        let request = pb::GetServerCountRequest::default();
        let response = self.ns.read(request, Stub::get_server_count).await?;
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
            request_id: request_id.into(),
            size_mb,
            ttl_ms,
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::assign_request).await?;
        Ok(response.server_name)
    }

    /// Every server, in ring order of first position then name.
    pub async fn list_servers(&self) -> Result<Vec<String>, Error> {
        let request = pb::ListServersRequest::default();
        let response = self.ns.read(request, Stub::list_servers).await?;
        Ok(response.servers)
    }

    /// MB of sessions on `server_name`; 0 for an unknown server.
    pub async fn get_server_load(&self, server_name: &str) -> Result<i64, Error> {
        let request = pb::GetServerLoadRequest {
            server_name: server_name.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::get_server_load).await?;
        Ok(response.load)
    }

    /// The `n` most loaded servers as `"server(mb)"`, by load then name.
    pub async fn top_servers(&self, n: i64) -> Result<Vec<String>, Error> {
        let request = pb::TopServersRequest {
            n,
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::top_servers).await?;
        Ok(response.entries)
    }

    /// Adds a server with `num_replicas` positions; `false` if it exists.
    pub async fn add_server_with_replicas(
        &self,
        server_name: &str,
        num_replicas: i64,
    ) -> Result<bool, Error> {
        let request = pb::AddServerWithReplicasRequest {
            server_name: server_name.into(),
            num_replicas,
            ..Default::default()
        };
        let response = self
            .ns
            .write(request, Stub::add_server_with_replicas)
            .await?;
        Ok(response.ok)
    }

    /// How many positions `server_name` has; 0 for an unknown server.
    pub async fn get_replica_count(&self, server_name: &str) -> Result<i64, Error> {
        let request = pb::GetReplicaCountRequest {
            server_name: server_name.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::get_replica_count).await?;
        Ok(response.replicas)
    }

    /// Caps `server_name` at `max_mb` (-1: unlimited); `false` for an unknown server.
    pub async fn set_memory_limit(&self, server_name: &str, max_mb: i64) -> Result<bool, Error> {
        let request = pb::SetMemoryLimitRequest {
            server_name: server_name.into(),
            max_mb,
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::set_memory_limit).await?;
        Ok(response.ok)
    }

    /// The memory limit of `server_name`; -1 when unlimited or unknown.
    pub async fn get_memory_limit(&self, server_name: &str) -> Result<i64, Error> {
        let request = pb::GetMemoryLimitRequest {
            server_name: server_name.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::get_memory_limit).await?;
        Ok(response.limit)
    }

    /// MB used on `server_name` against its limit.
    pub async fn get_memory_used(&self, server_name: &str) -> Result<i64, Error> {
        let request = pb::GetMemoryUsedRequest {
            server_name: server_name.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::get_memory_used).await?;
        Ok(response.used)
    }

    /// Evicts the least recently assigned session of `server_name`; answers its
    /// request id, `None` if none.
    pub async fn evict_oldest_session(&self, server_name: &str) -> Result<Option<String>, Error> {
        let request = pb::EvictOldestSessionRequest {
            server_name: server_name.into(),
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::evict_oldest_session).await?;
        Ok(response.request_id)
    }

    /// Runs `operations` in order as one replicated command; one result each (`None`
    /// for an unknown type or an assign/route on an empty ring).
    pub async fn batch_requests(
        &self,
        operations: &[RequestOperation],
    ) -> Result<Vec<Option<BatchResult>>, Error> {
        let request = pb::BatchRequestsRequest {
            operations: operations
                .iter()
                .map(|op| pb::RequestOperation {
                    r#type: op.kind.clone(),
                    request_id: op.request_id.clone(),
                    size_mb: op.size_mb,
                })
                .collect(),
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::batch_requests).await?;
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
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::replicate_sessions).await?;
        Ok(response.results)
    }

    /// Where session `request_id` lives now, with its last access and size in MB;
    /// `None` if it is not placed.
    pub async fn locate_request(&self, request_id: &str) -> Result<Option<Location>, Error> {
        let request = pb::LocateRequestRequest {
            request_id: request_id.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::locate_request).await?;
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
        let request = pb::BackupRequest::default();
        let response = self.ns.write(request, Stub::backup).await?;
        Ok(response.count)
    }

    /// Restores the latest backup saved at or before `backup_timestamp`; `None` when none.
    pub async fn restore(&self, backup_timestamp: i64) -> Result<Option<i64>, Error> {
        let request = pb::RestoreRequest {
            backup_timestamp,
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::restore).await?;
        Ok(response.count)
    }

    /// Merges `from_server` into `to_server`; `false` when either is missing or they are
    /// the same.
    pub async fn merge_servers(&self, from_server: &str, to_server: &str) -> Result<bool, Error> {
        let request = pb::MergeServersRequest {
            from_server: from_server.into(),
            to_server: to_server.into(),
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::merge_servers).await?;
        Ok(response.ok)
    }

    /// Where a merged server went (following later merges); `None` if it was not merged.
    pub async fn get_merged_into(&self, server_name: &str) -> Result<Option<String>, Error> {
        let request = pb::GetMergedIntoRequest {
            server_name: server_name.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::get_merged_into).await?;
        Ok(response.server_name)
    }

    /// Chooses the ring's position space; only while the ring is empty
    /// ([`Error::FailedPrecondition`] afterwards).
    pub async fn configure_ring(&self, space: PositionSpace) -> Result<(), Error> {
        let request = pb::ConfigureRingRequest {
            position_space: space as i32,
            ..Default::default()
        };
        self.ns.write(request, Stub::configure_ring).await?;
        Ok(())
    }
}
