//! A HashRing namespace: one method per drill method, plain Rust results.

use clockwise_proto::common::v1::{PositionSpace, SyncMode};
use clockwise_proto::hashring::v1 as pb;
use tonic::transport::Channel;

use crate::call::{scoped, Namespace};
use crate::client::Client;
use crate::error::Error;
use crate::types::{BatchResult, Location};

/// The tonic client every call of the namespace goes through.
type Stub = pb::hash_ring_client::HashRingClient<Channel>;

scoped!(
    pb::AddNodeRequest,
    pb::RemoveNodeRequest,
    pb::RouteKeyRequest,
    pb::GetNodeCountRequest,
    pb::StoreKeyRequest,
    pb::ListNodesRequest,
    pb::GetLoadRequest,
    pb::TopLoadedRequest,
    pb::AddNodeWithReplicasRequest,
    pb::GetReplicaCountRequest,
    pb::SetCapacityRequest,
    pb::GetCapacityRequest,
    pb::GetUsedRequest,
    pb::EvictLruRequest,
    pb::BatchOperationsRequest,
    pb::SyncReplicasRequest,
    pb::LocateKeyRequest,
    pb::BackupRequest,
    pb::RestoreRequest,
    pb::MergeNodesRequest,
    pb::GetMergedIntoRequest,
    pb::ConfigureRingRequest,
);

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
    ns: Namespace<Stub>,
}

impl HashRing {
    pub(crate) fn new(client: Client, ring: String) -> Self {
        HashRing {
            ns: Namespace::new(client, ring, Stub::new),
        }
    }

    /// The same ring, with calls at `timestamp` (ms; 0 = the leader's clock).
    pub fn at(mut self, timestamp: i64) -> Self {
        self.ns.timestamp = timestamp;
        self
    }

    /// The same ring, reading any replica's state (which may lag) instead of
    /// confirming with the leader; reads are spread over the replicas.
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

    /// Adds a node with one position; `false` if it exists.
    pub async fn add_node(&self, node_id: &str) -> Result<bool, Error> {
        let request = pb::AddNodeRequest {
            node_id: node_id.into(),
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::add_node).await?;
        Ok(response.ok)
    }

    /// Removes a node (its keys move to the next nodes); `false` if it is unknown.
    pub async fn remove_node(&self, node_id: &str) -> Result<bool, Error> {
        let request = pb::RemoveNodeRequest {
            node_id: node_id.into(),
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::remove_node).await?;
        Ok(response.ok)
    }

    /// The node `key` routes to; `None` on an empty ring.
    pub async fn route_key(&self, key: &str) -> Result<Option<String>, Error> {
        let request = pb::RouteKeyRequest {
            key: key.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::route_key).await?;
        Ok(response.node_id)
    }

    /// How many nodes the ring has.
    pub async fn get_node_count(&self) -> Result<i64, Error> {
        let request = pb::GetNodeCountRequest::default();
        let response = self.ns.read(request, Stub::get_node_count).await?;
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
            key: key.into(),
            ttl_ms,
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::store_key).await?;
        Ok(response.node_id)
    }

    /// Every node, in ring order of first position then name.
    pub async fn list_nodes(&self) -> Result<Vec<String>, Error> {
        let request = pb::ListNodesRequest::default();
        let response = self.ns.read(request, Stub::list_nodes).await?;
        Ok(response.nodes)
    }

    /// How many keys `node_id` holds; 0 for an unknown node.
    pub async fn get_load(&self, node_id: &str) -> Result<i64, Error> {
        let request = pb::GetLoadRequest {
            node_id: node_id.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::get_load).await?;
        Ok(response.load)
    }

    /// The `n` most loaded nodes as `"node(load)"`, by load then name.
    pub async fn top_loaded(&self, n: i64) -> Result<Vec<String>, Error> {
        let request = pb::TopLoadedRequest {
            n,
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::top_loaded).await?;
        Ok(response.entries)
    }

    /// Adds a node with `num_replicas` positions; `false` if it exists.
    pub async fn add_node_with_replicas(
        &self,
        node_id: &str,
        num_replicas: i64,
    ) -> Result<bool, Error> {
        let request = pb::AddNodeWithReplicasRequest {
            node_id: node_id.into(),
            num_replicas,
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::add_node_with_replicas).await?;
        Ok(response.ok)
    }

    /// How many positions `node_id` has; 0 for an unknown node.
    pub async fn get_replica_count(&self, node_id: &str) -> Result<i64, Error> {
        let request = pb::GetReplicaCountRequest {
            node_id: node_id.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::get_replica_count).await?;
        Ok(response.replicas)
    }

    /// Caps `node_id` at `capacity` keys (-1: unlimited); `false` for an unknown node.
    pub async fn set_capacity(&self, node_id: &str, capacity: i64) -> Result<bool, Error> {
        let request = pb::SetCapacityRequest {
            node_id: node_id.into(),
            capacity,
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::set_capacity).await?;
        Ok(response.ok)
    }

    /// The capacity of `node_id`; -1 when unlimited or unknown.
    pub async fn get_capacity(&self, node_id: &str) -> Result<i64, Error> {
        let request = pb::GetCapacityRequest {
            node_id: node_id.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::get_capacity).await?;
        Ok(response.capacity)
    }

    /// How many keys `node_id` holds against its capacity.
    pub async fn get_used(&self, node_id: &str) -> Result<i64, Error> {
        let request = pb::GetUsedRequest {
            node_id: node_id.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::get_used).await?;
        Ok(response.used)
    }

    /// Evicts the least recently used key of `node_id`; answers it, `None` if none.
    pub async fn evict_lru(&self, node_id: &str) -> Result<Option<String>, Error> {
        let request = pb::EvictLruRequest {
            node_id: node_id.into(),
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::evict_lru).await?;
        Ok(response.key)
    }

    /// Runs `operations` in order as one replicated command; one result each (`None`
    /// for an unknown type or a store/route on an empty ring).
    pub async fn batch_operations(
        &self,
        operations: &[KeyOperation],
    ) -> Result<Vec<Option<BatchResult>>, Error> {
        let request = pb::BatchOperationsRequest {
            operations: operations
                .iter()
                .map(|op| pb::KeyOperation {
                    r#type: op.kind.clone(),
                    key: op.key.clone(),
                })
                .collect(),
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::batch_operations).await?;
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
            requests: requests
                .iter()
                .map(|(source, dest)| pb::SyncRequest {
                    source_node: (*source).into(),
                    dest_node: (*dest).into(),
                })
                .collect(),
            max_concurrent,
            mode: mode as i32,
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::sync_replicas).await?;
        Ok(response.results)
    }

    /// Where `key` is stored now, with its last access and size; `None` if it is not.
    pub async fn locate_key(&self, key: &str) -> Result<Option<Location>, Error> {
        let request = pb::LocateKeyRequest {
            key: key.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::locate_key).await?;
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
        let request = pb::BackupRequest::default();
        let response = self.ns.write(request, Stub::backup).await?;
        Ok(response.count)
    }

    /// Replaces the ring's state with the latest backup saved at or before
    /// `backup_timestamp`; answers the keys restored, `None` (nothing changed) when no
    /// backup qualifies.
    pub async fn restore(&self, backup_timestamp: i64) -> Result<Option<i64>, Error> {
        let request = pb::RestoreRequest {
            backup_timestamp,
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::restore).await?;
        Ok(response.count)
    }

    /// Merges `from_node` into `to_node` (the target takes over its positions, so its
    /// keys move there); `false` when either is missing or they are the same.
    pub async fn merge_nodes(&self, from_node: &str, to_node: &str) -> Result<bool, Error> {
        let request = pb::MergeNodesRequest {
            from_node: from_node.into(),
            to_node: to_node.into(),
            ..Default::default()
        };
        let response = self.ns.write(request, Stub::merge_nodes).await?;
        Ok(response.ok)
    }

    /// Where a merged node went (following later merges); `None` if it was not merged.
    pub async fn get_merged_into(&self, node_id: &str) -> Result<Option<String>, Error> {
        let request = pb::GetMergedIntoRequest {
            node_id: node_id.into(),
            ..Default::default()
        };
        let response = self.ns.read(request, Stub::get_merged_into).await?;
        Ok(response.node_id)
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
