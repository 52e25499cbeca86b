//! The ChatRouter drill (levels L1–L6): requests carry a size in MB, load is the summed
//! size, and a store evicts LRU requests until the new one fits.

use std::collections::BTreeMap;

use super::digest::{self, Sum};
use super::item::expiry;
use super::namespace::{Eviction, Location, Lookup, Namespace};
use super::{BatchResult, PositionSpace};

/// A `batch_requests` entry: the drill's `{"type", "request_id", "size_mb"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestOperation {
    pub kind: RequestOperationKind,
    pub request_id: String,
    pub size_mb: i64,
}

/// The operation types `batch_requests` knows; any other is `Unknown` (empty result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOperationKind {
    Assign,
    Route,
    Remove,
    Unknown,
}

impl RequestOperationKind {
    pub fn parse(kind: &str) -> Self {
        match kind {
            "assign" => Self::Assign,
            "route" => Self::Route,
            "remove" => Self::Remove,
            _ => Self::Unknown,
        }
    }
}

/// One ChatRouter namespace.
#[derive(Clone, Debug, Default)]
pub struct ChatRouter {
    pub(crate) ns: Namespace,
    /// Sizes of requests dropped when the ring emptied. The drill keeps them, and a
    /// later assign of the same id keeps that first size.
    pub(crate) stale_sizes: StaleSizes,
    /// This namespace's share of the engine digest as last folded into it.
    pub(crate) folded: u128,
}

/// A ChatRouter's stale sizes, with the sum of their digest facts.
#[derive(Clone, Debug, Default)]
pub(crate) struct StaleSizes {
    map: BTreeMap<Box<str>, i64>,
    sum: Sum,
}

impl StaleSizes {
    pub(crate) fn insert(&mut self, key: Box<str>, size: i64) {
        if let Some(&old) = self.map.get(&*key) {
            self.sum = self.sum.wrapping_sub(digest::stale(&key, old));
        }
        self.sum = self.sum.wrapping_add(digest::stale(&key, size));
        self.map.insert(key, size);
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<i64> {
        let size = self.map.remove(key)?;
        self.sum = self.sum.wrapping_sub(digest::stale(key, size));
        Some(size)
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let sum = &mut self.sum;
        self.map.retain(|key, &mut size| {
            let kept = keep(key);
            if !kept {
                *sum = sum.wrapping_sub(digest::stale(key, size));
            }
            kept
        });
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&str, i64)> + '_ {
        self.map.iter().map(|(k, &v)| (&**k, v))
    }

    #[cfg(any(test, feature = "testing"))]
    fn recomputed(&self) -> Sum {
        self.iter()
            .fold(0, |sum: Sum, (k, v)| sum.wrapping_add(digest::stale(k, v)))
    }
}

impl ChatRouter {
    /// Holds nothing but its clock (see `Namespace::is_pristine`).
    pub(crate) fn is_pristine(&self) -> bool {
        self.ns.is_pristine() && self.stale_sizes.iter().len() == 0
    }

    /// The namespace's digest with its stale sizes (see `digest`). O(1).
    pub(crate) fn digest_sum(&self) -> Sum {
        self.ns.digest_sum().wrapping_add(self.stale_sizes.sum)
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn recomputed_digest(&self) -> Sum {
        self.ns
            .recomputed_digest()
            .wrapping_add(self.stale_sizes.recomputed())
    }
}

impl ChatRouter {
    pub fn position_space(&self) -> PositionSpace {
        self.ns.space
    }

    /// Moves the ring's clock to `timestamp` (never back), dropping what is dead then.
    /// [`super::Engine::apply`] does this before and after every command; callers of
    /// the facade's methods directly do it around their mutations.
    pub fn tick(&mut self, timestamp: i64) {
        self.ns.advance(timestamp);
    }

    pub fn configure(&mut self, space: PositionSpace) -> bool {
        self.ns.set_space(space)
    }

    // L1
    pub fn add_server(&mut self, server_name: &str) -> bool {
        self.ns.add_bare(server_name)
    }

    pub fn remove_server(&mut self, server_name: &str) -> bool {
        let Some(dropped) = self.ns.remove(server_name) else {
            return false;
        };
        for item in dropped {
            self.stale_sizes
                .insert(Box::from(item.key.as_str()), item.size);
        }
        true
    }

    pub fn route_request(&self, request_id: &str) -> Option<&str> {
        self.ns.route(request_id)
    }

    /// `route_request` of every request, in order; hashes them together, several times
    /// the rate of one call per request.
    pub fn route_requests(&self, request_ids: &[&str]) -> Vec<Option<&str>> {
        self.ns
            .positions(request_ids.iter().copied())
            .into_iter()
            .map(|pos| self.ns.route_at(pos))
            .collect()
    }

    pub fn get_server_count(&self) -> i64 {
        self.ns.ring.node_count() as i64
    }

    // L2 + L4
    pub fn assign_request(
        &mut self,
        timestamp: i64,
        request_id: &str,
        size_mb: i64,
    ) -> Option<&str> {
        self.assign_request_with_ttl(timestamp, request_id, size_mb, 0)
    }

    /// Assigns a session alive until `timestamp + ttl_ms` (0: forever). Assigning it
    /// again sets its expiry anew from this call (0 clears it).
    pub fn assign_request_with_ttl(
        &mut self,
        timestamp: i64,
        request_id: &str,
        size_mb: i64,
        ttl_ms: i64,
    ) -> Option<&str> {
        let lookup = self.ns.look_up(request_id);
        self.assign_at(timestamp, request_id, lookup, size_mb, ttl_ms)
    }

    /// `assign_request_with_ttl` of a request already looked up.
    fn assign_at(
        &mut self,
        timestamp: i64,
        request_id: &str,
        lookup: Lookup,
        size_mb: i64,
        ttl_ms: i64,
    ) -> Option<&str> {
        self.ns.advance(timestamp);
        let stale = &mut self.stale_sizes;
        let node = self.ns.store(
            request_id,
            lookup,
            timestamp,
            Eviction::UntilFits { incoming: size_mb },
            || stale.remove(request_id).unwrap_or(size_mb),
            expiry(timestamp, ttl_ms),
        )?;
        self.ns.purge();
        Some(self.ns.ring.name(node))
    }

    pub fn list_servers(&self) -> Vec<String> {
        self.ns
            .ring
            .nodes()
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    pub fn get_server_load(&self, server_name: &str) -> i64 {
        self.get_memory_used(server_name)
    }

    pub fn top_servers(&self, n: i64) -> Vec<String> {
        self.ns
            .top(n, |idx| saturate(self.ns.placement.load(idx).size))
    }

    /// `top_servers` as seen at `timestamp` (sessions dead by then do not count).
    pub fn top_servers_at(&self, timestamp: i64, n: i64) -> Vec<String> {
        let loads = self.ns.loads_at(timestamp);
        self.ns
            .top(n, |idx| loads.get(&idx).map_or(0, |l| saturate(l.1)))
    }

    // L3
    pub fn add_server_with_replicas(&mut self, server_name: &str, num_replicas: i64) -> bool {
        self.ns.add_with_replicas(server_name, num_replicas)
    }

    pub fn get_replica_count(&self, server_name: &str) -> i64 {
        self.ns
            .node(server_name)
            .map_or(0, |idx| self.ns.ring.info(idx).replicas)
    }

    // L4
    pub fn set_memory_limit(&mut self, server_name: &str, max_mb: i64) -> bool {
        self.ns.set_limit(server_name, max_mb)
    }

    pub fn get_memory_limit(&self, server_name: &str) -> i64 {
        self.ns
            .node(server_name)
            .map_or(0, |idx| self.ns.limit(idx))
    }

    pub fn get_memory_used(&self, server_name: &str) -> i64 {
        self.ns
            .node(server_name)
            .map_or(0, |idx| saturate(self.ns.placement.load(idx).size))
    }

    /// MB of live sessions on `server_name` at `timestamp`.
    pub fn get_memory_used_at(&self, timestamp: i64, server_name: &str) -> i64 {
        self.ns
            .node(server_name)
            .map_or(0, |idx| saturate(self.ns.load_at(idx, timestamp).1))
    }

    pub fn evict_oldest_session(&mut self, server_name: &str) -> Option<String> {
        let idx = self.ns.node(server_name)?;
        self.ns.evict_lru(idx).map(|item| item.key.into())
    }

    // L5
    pub fn batch_requests(
        &mut self,
        timestamp: i64,
        operations: &[RequestOperation],
    ) -> Vec<BatchResult> {
        self.ns.advance(timestamp);
        // Every request that is placed is looked up first, all together.
        let placed = |op: &&RequestOperation| {
            matches!(
                op.kind,
                RequestOperationKind::Assign | RequestOperationKind::Route
            )
        };
        let mut lookups = self
            .ns
            .look_up_many(operations.iter().filter(placed).map(|op| {
                (
                    op.request_id.as_str(),
                    op.kind == RequestOperationKind::Assign,
                )
            }))
            .into_iter();
        let results = operations
            .iter()
            .map(|op| match op.kind {
                RequestOperationKind::Assign => {
                    let lookup = lookups.next().expect("a lookup per assign");
                    BatchResult::from_node(self.assign_at(
                        timestamp,
                        &op.request_id,
                        lookup,
                        op.size_mb,
                        0,
                    ))
                }
                RequestOperationKind::Route => {
                    let lookup = lookups.next().expect("a lookup per route");
                    BatchResult::from_node(self.ns.route_at(lookup.pos))
                }
                RequestOperationKind::Remove => {
                    BatchResult::Ok(self.ns.remove_key(&op.request_id).is_some())
                }
                RequestOperationKind::Unknown => BatchResult::Empty,
            })
            .collect();
        self.ns.purge();
        results
    }

    // L6
    /// Which transfers are valid: both servers exist and the source holds at least
    /// `bandwidth_mb`. Nothing here changes state.
    pub fn replicate_validity<'a>(
        &self,
        timestamp: i64,
        transfers: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
    ) -> Vec<bool> {
        transfers
            .into_iter()
            .map(|(source, destination, bandwidth_mb)| {
                match (self.ns.node(source), self.ns.node(destination)) {
                    (Some(src), Some(_)) => {
                        self.ns.load_at(src, timestamp).1 >= i128::from(bandwidth_mb)
                    }
                    _ => false,
                }
            })
            .collect()
    }

    // Beyond the drill
    /// Where `request_id` is placed, as seen at the ring's latest timestamp.
    pub fn locate_request(&self, request_id: &str) -> Option<Location> {
        self.ns.locate(request_id, self.ns.latest)
    }

    /// Where `request_id` is placed, as seen at `timestamp`.
    pub fn locate_request_at(&self, timestamp: i64, request_id: &str) -> Option<Location> {
        self.ns.locate(request_id, timestamp.max(self.ns.latest))
    }

    /// Merges `from_server` into `to_server` (see `HashRing::merge_nodes`).
    pub fn merge_servers(&mut self, timestamp: i64, from_server: &str, to_server: &str) -> bool {
        self.ns.advance(timestamp);
        self.ns.merge(from_server, to_server)
    }

    /// The server `server_name` was merged into, following chains.
    pub fn get_merged_into(&self, server_name: &str) -> Option<String> {
        self.ns.merged_into(server_name)
    }

    /// Saves the ring's state at `timestamp`; answers the live sessions saved.
    pub fn backup(&mut self, timestamp: i64, max_backups: usize) -> i64 {
        self.ns.advance(timestamp);
        self.ns.backup(timestamp, max_backups)
    }

    /// Restores the latest backup at or before `backup_timestamp`.
    pub fn restore(&mut self, timestamp: i64, backup_timestamp: i64) -> Option<i64> {
        self.ns.advance(timestamp);
        let count = self.ns.restore(timestamp, backup_timestamp);
        // A restored session supersedes a stale size kept for its id (even if it has
        // already expired and goes with the purge below).
        let ns = &self.ns;
        self.stale_sizes
            .retain(|id| ns.placement.find(id).is_none());
        self.ns.purge();
        count
    }
}

fn saturate(mb: i128) -> i64 {
    i64::try_from(mb).unwrap_or(if mb < 0 { i64::MIN } else { i64::MAX })
}
