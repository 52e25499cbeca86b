//! The HashRing drill (levels L1–L6): keys counted one each, count-based eviction.

use super::namespace::{Eviction, Location, Namespace};
use super::{BatchResult, PositionSpace};

/// A `batch_operations` entry: the drill's `{"type": ..., "key": ...}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyOperation {
    pub kind: KeyOperationKind,
    pub key: String,
}

/// The operation types `batch_operations` knows; any other type string is `Unknown`
/// and yields an empty result, as the drill's `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOperationKind {
    Store,
    Route,
    RemoveKey,
    Unknown,
}

impl KeyOperationKind {
    pub fn parse(kind: &str) -> Self {
        match kind {
            "store" => Self::Store,
            "route" => Self::Route,
            "remove_key" => Self::RemoveKey,
            _ => Self::Unknown,
        }
    }
}

/// One HashRing namespace. Method names and results are the drill's; the `timestamp`
/// argument is dropped where the drill ignores it.
#[derive(Clone, Debug, Default)]
pub struct HashRing {
    pub(crate) ns: Namespace,
}

impl HashRing {
    pub fn position_space(&self) -> PositionSpace {
        self.ns.space
    }

    /// Sets the position space; refused (`false`) once the ring has nodes or keys.
    pub fn configure(&mut self, space: PositionSpace) -> bool {
        self.ns.set_space(space)
    }

    // L1
    pub fn add_node(&mut self, node_id: &str) -> bool {
        self.ns.add_bare(node_id)
    }

    pub fn remove_node(&mut self, node_id: &str) -> bool {
        self.ns.remove(node_id).is_some()
    }

    pub fn route_key(&self, key: &str) -> Option<&str> {
        self.ns.route(key)
    }

    pub fn get_node_count(&self) -> i64 {
        self.ns.ring.node_count() as i64
    }

    // L2
    pub fn store_key(&mut self, timestamp: i64, key: &str) -> Option<&str> {
        let node = self.ns.store(key, timestamp, Eviction::AtMostOne, || 1)?;
        Some(self.ns.ring.name(node))
    }

    pub fn list_nodes(&self) -> Vec<String> {
        self.ns
            .ring
            .nodes()
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    pub fn get_load(&self, node_id: &str) -> i64 {
        self.get_used(node_id)
    }

    pub fn top_loaded(&self, n: i64) -> Vec<String> {
        self.ns
            .top(n, |idx| self.ns.placement.load(idx).count as i64)
    }

    // L3
    pub fn add_node_with_replicas(&mut self, node_id: &str, num_replicas: i64) -> bool {
        self.ns.add_with_replicas(node_id, num_replicas)
    }

    pub fn get_replica_count(&self, node_id: &str) -> i64 {
        self.ns
            .node(node_id)
            .map_or(0, |idx| self.ns.ring.info(idx).replicas)
    }

    // L4
    pub fn set_capacity(&mut self, node_id: &str, capacity: i64) -> bool {
        self.ns.set_limit(node_id, capacity)
    }

    /// `0` for an unknown node, `-1` when never set.
    pub fn get_capacity(&self, node_id: &str) -> i64 {
        self.ns.node(node_id).map_or(0, |idx| self.ns.limit(idx))
    }

    pub fn get_used(&self, node_id: &str) -> i64 {
        self.ns
            .node(node_id)
            .map_or(0, |idx| self.ns.placement.load(idx).count as i64)
    }

    pub fn evict_lru(&mut self, node_id: &str) -> Option<String> {
        let idx = self.ns.node(node_id)?;
        self.ns.evict_lru(idx).map(|item| item.key.into())
    }

    // L5
    /// Applies the operations in input order, all at `timestamp`.
    pub fn batch_operations(
        &mut self,
        timestamp: i64,
        operations: &[KeyOperation],
    ) -> Vec<BatchResult> {
        operations
            .iter()
            .map(|op| match op.kind {
                KeyOperationKind::Store => {
                    BatchResult::from_node(self.store_key(timestamp, &op.key))
                }
                KeyOperationKind::Route => BatchResult::from_node(self.route_key(&op.key)),
                KeyOperationKind::RemoveKey => {
                    BatchResult::Ok(self.ns.remove_key(&op.key).is_some())
                }
                KeyOperationKind::Unknown => BatchResult::Empty,
            })
            .collect()
    }

    // L6
    /// Which sync requests are valid (both nodes exist). The service runs the valid
    /// ones under its semaphore; nothing here changes state.
    pub fn sync_validity<'a>(
        &self,
        requests: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<bool> {
        requests
            .into_iter()
            .map(|(source, dest)| self.ns.node(source).is_some() && self.ns.node(dest).is_some())
            .collect()
    }

    // Beyond the drill
    pub fn locate_key(&self, key: &str) -> Option<Location> {
        self.ns.locate(key)
    }
}
