//! The HashRing drill (levels L1–L6): keys counted one each, count-based eviction.

use super::item::expiry;
use super::namespace::{Eviction, Location, Lookup, Namespace};
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
    /// This namespace's share of the engine digest as last folded into it.
    pub(crate) folded: u128,
}

impl HashRing {
    pub fn position_space(&self) -> PositionSpace {
        self.ns.space
    }

    /// Moves the ring's clock to `timestamp` (never back), dropping what is dead then.
    /// [`super::Engine::apply`] does this before and after every command; callers of
    /// the facade's methods directly do it around their mutations.
    pub fn tick(&mut self, timestamp: i64) {
        self.ns.advance(timestamp);
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

    /// `route_key` of every key, in order; hashes the keys together, several times the
    /// rate of one call per key.
    pub fn route_keys(&self, keys: &[&str]) -> Vec<Option<&str>> {
        self.ns
            .positions(keys.iter().copied())
            .into_iter()
            .map(|pos| self.ns.route_at(pos))
            .collect()
    }

    pub fn get_node_count(&self) -> i64 {
        self.ns.ring.node_count() as i64
    }

    // L2
    pub fn store_key(&mut self, timestamp: i64, key: &str) -> Option<&str> {
        self.store_key_with_ttl(timestamp, key, 0)
    }

    /// Stores `key` alive until `timestamp + ttl_ms` (0: forever). Storing a key again
    /// sets its expiry anew from this call (0 clears it).
    pub fn store_key_with_ttl(&mut self, timestamp: i64, key: &str, ttl_ms: i64) -> Option<&str> {
        let lookup = self.ns.look_up(key);
        self.store_at(timestamp, key, lookup, ttl_ms)
    }

    /// `store_key_with_ttl` of a key already looked up.
    fn store_at(&mut self, timestamp: i64, key: &str, lookup: Lookup, ttl_ms: i64) -> Option<&str> {
        self.ns.advance(timestamp);
        let node = self.ns.store(
            key,
            lookup,
            timestamp,
            Eviction::AtMostOne,
            || 1,
            expiry(timestamp, ttl_ms),
        )?;
        self.ns.purge();
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

    /// `top_loaded` as seen at `timestamp` (keys dead by then do not count).
    pub fn top_loaded_at(&self, timestamp: i64, n: i64) -> Vec<String> {
        let loads = self.ns.loads_at(timestamp);
        self.ns.top(n, |idx| loads.get(&idx).map_or(0, |l| l.0))
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

    /// Live keys on `node_id` at `timestamp` (`get_load` and `get_used` at a time).
    pub fn get_used_at(&self, timestamp: i64, node_id: &str) -> i64 {
        self.ns
            .node(node_id)
            .map_or(0, |idx| self.ns.load_at(idx, timestamp).0)
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
        self.ns.advance(timestamp);
        // Every key that is placed is looked up first, all together.
        let placed = |op: &&KeyOperation| {
            matches!(op.kind, KeyOperationKind::Store | KeyOperationKind::Route)
        };
        let mut lookups = self
            .ns
            .look_up_many(
                operations
                    .iter()
                    .filter(placed)
                    .map(|op| (op.key.as_str(), op.kind == KeyOperationKind::Store)),
            )
            .into_iter();
        let results = operations
            .iter()
            .map(|op| match op.kind {
                KeyOperationKind::Store => {
                    let lookup = lookups.next().expect("a lookup per store");
                    BatchResult::from_node(self.store_at(timestamp, &op.key, lookup, 0))
                }
                KeyOperationKind::Route => {
                    let lookup = lookups.next().expect("a lookup per route");
                    BatchResult::from_node(self.ns.route_at(lookup.pos))
                }
                KeyOperationKind::RemoveKey => {
                    BatchResult::Ok(self.ns.remove_key(&op.key).is_some())
                }
                KeyOperationKind::Unknown => BatchResult::Empty,
            })
            .collect();
        self.ns.purge();
        results
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
    /// Where `key` is stored, as seen at the ring's latest timestamp.
    pub fn locate_key(&self, key: &str) -> Option<Location> {
        self.ns.locate(key, self.ns.latest)
    }

    /// Where `key` is stored, as seen at `timestamp` (a key dead by then is not).
    pub fn locate_key_at(&self, timestamp: i64, key: &str) -> Option<Location> {
        self.ns.locate(key, timestamp.max(self.ns.latest))
    }

    /// Merges `from_node` into `to_node`: the target takes over its positions, so
    /// exactly its keys move there (but at positions it shared with a third node, where
    /// the name tie-break decides); its capacity goes with it; nothing is evicted.
    /// `false` when either is missing or they are the same.
    pub fn merge_nodes(&mut self, timestamp: i64, from_node: &str, to_node: &str) -> bool {
        self.ns.advance(timestamp);
        self.ns.merge(from_node, to_node)
    }

    /// The node `node_id` was merged into, following chains; `None` if it was not.
    pub fn get_merged_into(&self, node_id: &str) -> Option<String> {
        self.ns.merged_into(node_id)
    }

    /// Saves the ring's state (nodes, limits, live keys with their remaining TTL, merge
    /// records) at `timestamp`; keeps at most `max_backups`. Answers the live keys saved.
    pub fn backup(&mut self, timestamp: i64, max_backups: usize) -> i64 {
        self.ns.advance(timestamp);
        self.ns.backup(timestamp, max_backups)
    }

    /// Restores the latest backup at or before `backup_timestamp` (ties: the first
    /// saved), expiries counted from `timestamp`; `None` (no change) when there is none.
    pub fn restore(&mut self, timestamp: i64, backup_timestamp: i64) -> Option<i64> {
        self.ns.advance(timestamp);
        let count = self.ns.restore(timestamp, backup_timestamp);
        self.ns.purge();
        count
    }
}
