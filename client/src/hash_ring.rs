//! A HashRing namespace: one method per drill method, plain Rust results.

use clockwise_proto::common::v1::{PositionSpace, SyncMode};
use clockwise_proto::hashring::v1 as pb;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use std::future::Future;
use tonic::transport::Channel;

use crate::client::{CallKind, Client};
use crate::error::Error;
use crate::types::{BatchResult, Location};

/// One operation of [`HashRing::batch_operations`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOperation {
    /// `"store"`, `"route"` or `"remove_key"`; any other type answers `None`, as in the
    /// drill.
    pub kind: String,
    /// The key it is about.
    pub key: String,
}

impl KeyOperation {
    /// Store `key`.
    pub fn store(key: impl Into<String>) -> Self {
        Self::new("store", key)
    }
    /// Where `key` would go.
    pub fn route(key: impl Into<String>) -> Self {
        Self::new("route", key)
    }
    /// Remove `key`.
    pub fn remove_key(key: impl Into<String>) -> Self {
        Self::new("remove_key", key)
    }
    /// An operation of any type (unknown types answer `None`).
    pub fn new(kind: impl Into<String>, key: impl Into<String>) -> Self {
        KeyOperation {
            kind: kind.into(),
            key: key.into(),
        }
    }
}

/// The HashRing namespace of [`Client::hash_ring`]. Cheap to clone.
///
/// Writes are replicated and applied once even when retried; reads are linearizable
/// unless [`HashRing::stale_reads`] was asked for. Every call carries the handle's
/// timestamp (default 0: the leader stamps its clock), which stores use as the LRU
/// access time.
#[derive(Clone)]
pub struct HashRing {
    client: Client,
    ring: String,
    timestamp: i64,
    stale: bool,
}

impl HashRing {
    pub(crate) fn new(client: Client, ring: String) -> Self {
        HashRing {
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

    /// The same ring, reading any replica's state (which may lag) instead of
    /// confirming with the leader; reads are spread over the replicas.
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
        F: Fn(HashRingClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.client
            .call(kind, request, |channel, request| {
                rpc(HashRingClient::new(channel), request)
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

    /// Adds a node with one position; `false` if it exists.
    pub async fn add_node(&self, node_id: &str) -> Result<bool, Error> {
        let request = pb::AddNodeRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            node_id: node_id.into(),
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.add_node(r).await
            })
            .await?;
        Ok(response.ok)
    }

    /// Removes a node (its keys move to the next nodes); `false` if it is unknown.
    pub async fn remove_node(&self, node_id: &str) -> Result<bool, Error> {
        let request = pb::RemoveNodeRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            node_id: node_id.into(),
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.remove_node(r).await
            })
            .await?;
        Ok(response.ok)
    }

    /// The node `key` routes to; `None` on an empty ring.
    pub async fn route_key(&self, key: &str) -> Result<Option<String>, Error> {
        let request = pb::RouteKeyRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            key: key.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.route_key(r).await
            })
            .await?;
        Ok(response.node_id)
    }

    /// How many nodes the ring has.
    pub async fn get_node_count(&self) -> Result<i64, Error> {
        let request = pb::GetNodeCountRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_node_count(r).await
            })
            .await?;
        Ok(response.count)
    }

    /// Stores `key` on the node it routes to (evicting that node's least recently used
    /// key when it is full); answers the node, `None` on an empty ring.
    pub async fn store_key(&self, key: &str) -> Result<Option<String>, Error> {
        self.store_key_with_ttl(key, 0).await
    }

    /// Stores `key` alive for `ttl_ms` after the call's timestamp (0: forever); a key is
    /// dead at its expiry instant. Storing it again sets the expiry anew (0 clears it).
    pub async fn store_key_with_ttl(
        &self,
        key: &str,
        ttl_ms: i64,
    ) -> Result<Option<String>, Error> {
        let request = pb::StoreKeyRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            key: key.into(),
            ttl_ms,
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.store_key(r).await
            })
            .await?;
        Ok(response.node_id)
    }

    /// Every node, in ring order of first position then name.
    pub async fn list_nodes(&self) -> Result<Vec<String>, Error> {
        let request = pb::ListNodesRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.list_nodes(r).await
            })
            .await?;
        Ok(response.nodes)
    }

    /// How many keys `node_id` holds; 0 for an unknown node.
    pub async fn get_load(&self, node_id: &str) -> Result<i64, Error> {
        let request = pb::GetLoadRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            node_id: node_id.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_load(r).await
            })
            .await?;
        Ok(response.load)
    }

    /// The `n` most loaded nodes as `"node(load)"`, by load then name.
    pub async fn top_loaded(&self, n: i64) -> Result<Vec<String>, Error> {
        let request = pb::TopLoadedRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            n,
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.top_loaded(r).await
            })
            .await?;
        Ok(response.entries)
    }

    /// Adds a node with `num_replicas` positions; `false` if it exists.
    pub async fn add_node_with_replicas(
        &self,
        node_id: &str,
        num_replicas: i64,
    ) -> Result<bool, Error> {
        let request = pb::AddNodeWithReplicasRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            node_id: node_id.into(),
            num_replicas,
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.add_node_with_replicas(r).await
            })
            .await?;
        Ok(response.ok)
    }

    /// How many positions `node_id` has; 0 for an unknown node.
    pub async fn get_replica_count(&self, node_id: &str) -> Result<i64, Error> {
        let request = pb::GetReplicaCountRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            node_id: node_id.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_replica_count(r).await
            })
            .await?;
        Ok(response.replicas)
    }

    /// Caps `node_id` at `capacity` keys (-1: unlimited); `false` for an unknown node.
    pub async fn set_capacity(&self, node_id: &str, capacity: i64) -> Result<bool, Error> {
        let request = pb::SetCapacityRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            node_id: node_id.into(),
            capacity,
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.set_capacity(r).await
            })
            .await?;
        Ok(response.ok)
    }

    /// The capacity of `node_id`; -1 when unlimited or unknown.
    pub async fn get_capacity(&self, node_id: &str) -> Result<i64, Error> {
        let request = pb::GetCapacityRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            node_id: node_id.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_capacity(r).await
            })
            .await?;
        Ok(response.capacity)
    }

    /// How many keys `node_id` holds against its capacity.
    pub async fn get_used(&self, node_id: &str) -> Result<i64, Error> {
        let request = pb::GetUsedRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            node_id: node_id.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_used(r).await
            })
            .await?;
        Ok(response.used)
    }

    /// Evicts the least recently used key of `node_id`; answers it, `None` if none.
    pub async fn evict_lru(&self, node_id: &str) -> Result<Option<String>, Error> {
        let request = pb::EvictLruRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            node_id: node_id.into(),
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.evict_lru(r).await
            })
            .await?;
        Ok(response.key)
    }

    /// Runs `operations` in order as one replicated command; one result each (`None`
    /// for an unknown type or a store/route on an empty ring).
    pub async fn batch_operations(
        &self,
        operations: &[KeyOperation],
    ) -> Result<Vec<Option<BatchResult>>, Error> {
        let request = pb::BatchOperationsRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            operations: operations
                .iter()
                .map(|op| pb::KeyOperation {
                    r#type: op.kind.clone(),
                    key: op.key.clone(),
                })
                .collect(),
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.batch_operations(r).await
            })
            .await?;
        Ok(response
            .results
            .into_iter()
            .map(|result| match result.value {
                Some(pb::key_result::Value::NodeId(node)) => Some(BatchResult::Placed(node)),
                Some(pb::key_result::Value::Ok(ok)) => Some(BatchResult::Removed(ok)),
                None => None,
            })
            .collect())
    }

    /// The simulated, rate-limited replica sync of level 6: one result per
    /// `(source_node, dest_node)`, at most `max_concurrent` simulated calls at once.
    pub async fn sync_replicas(
        &self,
        requests: &[(&str, &str)],
        max_concurrent: i32,
        mode: SyncMode,
    ) -> Result<Vec<bool>, Error> {
        let request = pb::SyncReplicasRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            requests: requests
                .iter()
                .map(|(source, dest)| pb::SyncRequest {
                    source_node: (*source).into(),
                    dest_node: (*dest).into(),
                })
                .collect(),
            max_concurrent,
            mode: mode as i32,
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.sync_replicas(r).await
            })
            .await?;
        Ok(response.results)
    }

    /// Where `key` is stored now, with its last access and size; `None` if it is not.
    pub async fn locate_key(&self, key: &str) -> Result<Option<Location>, Error> {
        let request = pb::LocateKeyRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            key: key.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.locate_key(r).await
            })
            .await?;
        Ok(response
            .node_id
            .filter(|_| response.found)
            .map(|node| Location {
                owner: node,
                last_access: response.last_access,
                size: response.size,
                expires_at: response.expires_at,
            }))
    }

    /// Saves the ring's state (nodes, limits, live keys with their remaining TTL, merge
    /// records); answers how many live keys it holds.
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

    /// Replaces the ring's state with the latest backup saved at or before
    /// `backup_timestamp`; answers the keys restored, `None` (nothing changed) when no
    /// backup qualifies.
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

    /// Merges `from_node` into `to_node` (the target takes over its positions, so its
    /// keys move there); `false` when either is missing or they are the same.
    pub async fn merge_nodes(&self, from_node: &str, to_node: &str) -> Result<bool, Error> {
        let request = pb::MergeNodesRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            from_node: from_node.into(),
            to_node: to_node.into(),
        };
        let response = self
            .call(CallKind::Write, request, |mut c, r| async move {
                c.merge_nodes(r).await
            })
            .await?;
        Ok(response.ok)
    }

    /// Where a merged node went (following later merges); `None` if it was not merged.
    pub async fn get_merged_into(&self, node_id: &str) -> Result<Option<String>, Error> {
        let request = pb::GetMergedIntoRequest {
            ring: self.ring.clone(),
            timestamp: self.timestamp,
            node_id: node_id.into(),
        };
        let response = self
            .call(self.read(), request, |mut c, r| async move {
                c.get_merged_into(r).await
            })
            .await?;
        Ok(response.node_id)
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
