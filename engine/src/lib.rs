//! clockwise-engine: the ring state machine, pure and deterministic (no I/O, no clock,
//! no async, no tonic or tokio in its dependency tree). The node applies its commands
//! under raft; the SDK routes locally with the same code; fuzz targets, `replay` and the
//! benches drive it directly.
//!
//! # Layout
//! - [`position`]: where a string sits on the ring (`drill` mod-100 or `u64` space);
//!   `md5_batch`: the drill's md5, eight short strings at a time.
//! - `ring`: nodes and their virtual nodes in `(position, name)` order; routing.
//! - `item`: one stored key or request, its slot and expiry;
//!   `slab`: the items' storage, in chunks shared copy-on-write with frozen views;
//!   `index`: the hash index from key to slot;
//!   `placement`: per-node loads and LRU order over them;
//!   `expiry_sums`: a node's expiring items summed by expiry (reads ahead of the clock).
//! - `namespace`: one ring with its items and limits; the semantics both drills share.
//!   `merges`: its merge records, each with its final target kept (`GetMergedInto`).
//!   `backups`: a namespace's saved backups (`Backup`, `Restore`).
//! - [`hashring`] / [`chatrouter`]: the two drill facades, method for method.
//! - [`command`]: every mutation as a value, applied by [`Engine::apply`] (what a
//!   replicated log carries).
//! - [`quota`]: the rings, nodes and virtual nodes a command may grow the state to.
//! - `digest`: the state digest, a sum of per-fact hashes kept as commands apply.
//! - [`snapshot`]: the versioned, streamed encoding of an [`Engine`] (and the canonical
//!   encoding of a ring that backups store); [`EngineView`], a frozen state to write.
//!   Its files: `mod.rs` (format, errors, freezing), `writer`/`reader` (format 3),
//!   `format2` (the legacy format, still read), `ring_state` (a backup's ring bytes),
//!   `codec` (the byte readers and writers).
//! - [`topology`]: a ring's topology (space, nodes with positions, limits, merges) as
//!   values, each command's change to it, and rings rebuilt from them (`Watch`, the
//!   SDK's `RingView`).
//! - `view`: read-only views for observers (rings by name, virtual nodes in ring
//!   order, key counts, LRU evictions), none of them part of the state.
//! - `testing` (tests and the `testing` feature): a sample command log and a seeded
//!   random one, for the crates over the engine.
//!
//! Module dependencies point one way: facades → namespace → placement → {index, slab} →
//! item → ring → position; `backups` → {namespace, snapshot}; everything that changes
//! state → `digest`.
//!
//! An [`Engine`] holds many independent namespaces; HashRing and ChatRouter namespaces
//! are separate even when they share a name. Every operation takes the caller's
//! timestamp; identical call sequences give identical states and results.

mod backups;
pub mod chatrouter;
pub mod command;
mod digest;
mod expiry_sums;
pub mod hashring;
mod index;
mod item;
mod md5_batch;
mod merges;
mod namespace;
mod placement;
pub mod position;
pub mod quota;
mod ring;
mod slab;
pub mod snapshot;
pub mod topology;
mod view;

use std::collections::{BTreeMap, BTreeSet};

use digest::Sum;

pub use chatrouter::{ChatRouter, RequestOperation, RequestOperationKind};
pub use command::{ChatRouterOp, Command, HashRingOp, Op, Outcome};
pub use digest::StateDigest;
pub use hashring::{HashRing, KeyOperation, KeyOperationKind};
pub use namespace::{Location, UNLIMITED};
pub use position::PositionSpace;
pub use quota::{Quota, QuotaExceeded, Quotas};
pub use snapshot::{EngineView, SnapshotError};
pub use topology::{RingKind, Topology, TopologyChange, TopologyError, TopologyNode};

/// The namespace used when a request names none.
pub const DEFAULT_RING: &str = "default";

/// Most virtual nodes per node. The service refuses more; the log codec refuses a
/// command with more, so no entry (forwarded or forged) makes every replica allocate
/// without bound.
pub const MAX_REPLICAS: i64 = 10_000;

/// One entry of a batch result: the drill's `str`, `bool` or `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchResult {
    Node(String),
    Ok(bool),
    /// A store or route that found no node, or an unknown operation type.
    Empty,
}

impl BatchResult {
    fn from_node(node: Option<&str>) -> Self {
        node.map_or(BatchResult::Empty, |n| BatchResult::Node(n.to_owned()))
    }
}

/// One namespace's size and churn, for metrics: O(1) to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingFigures {
    /// Nodes (HashRing) or servers (ChatRouter) on the ring.
    pub nodes: u64,
    /// Keys (HashRing) or requests (ChatRouter) stored.
    pub keys: u64,
    /// Items evicted (LRU, to make room, or asked for) since this replica built the
    /// namespace (its start or the last snapshot installed): not replicated state.
    pub evictions: u64,
    /// Items that expired (TTL) since then.
    pub expirations: u64,
}

impl RingFigures {
    fn of(ns: &namespace::Namespace) -> Self {
        RingFigures {
            nodes: ns.ring.node_count() as u64,
            keys: ns.placement.len() as u64,
            evictions: ns.churn.evictions,
            expirations: ns.churn.expirations,
        }
    }
}

impl HashRing {
    /// This ring's size and churn: O(1).
    pub fn figures(&self) -> RingFigures {
        RingFigures::of(&self.ns)
    }
}

impl ChatRouter {
    /// This router's size and churn: O(1).
    pub fn figures(&self) -> RingFigures {
        RingFigures::of(&self.ns)
    }
}

/// Every namespace of one node's state.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    hash_rings: BTreeMap<String, HashRing>,
    chat_routers: BTreeMap<String, ChatRouter>,
    /// The sum over namespaces of their digest share as last folded (see `digest`);
    /// each facade keeps its share as folded, so a fold is O(1).
    digest: Sum,
    /// Namespaces handed out by `*_mut` (their changes not folded yet); `apply` folds the
    /// one it changes, so these are empty unless the facades were used directly.
    dirty_rings: BTreeSet<String>,
    dirty_routers: BTreeSet<String>,
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// A HashRing namespace, if anything ever wrote to it.
    pub fn hash_ring(&self, ring: &str) -> Option<&HashRing> {
        self.hash_rings.get(ring)
    }

    /// A HashRing namespace, created empty on first use.
    pub fn hash_ring_mut(&mut self, ring: &str) -> &mut HashRing {
        if !self.dirty_rings.contains(ring) {
            self.dirty_rings.insert(ring.to_owned());
        }
        self.ring_entry(ring)
    }

    fn ring_entry(&mut self, ring: &str) -> &mut HashRing {
        if !self.hash_rings.contains_key(ring) {
            self.hash_rings.insert(ring.to_owned(), HashRing::default());
        }
        self.hash_rings.get_mut(ring).expect("inserted above")
    }

    /// How many namespaces exist, HashRing and ChatRouter together (the rings quota).
    pub fn ring_count(&self) -> usize {
        self.hash_rings.len() + self.chat_routers.len()
    }

    pub fn chat_router(&self, ring: &str) -> Option<&ChatRouter> {
        self.chat_routers.get(ring)
    }

    pub fn chat_router_mut(&mut self, ring: &str) -> &mut ChatRouter {
        if !self.dirty_routers.contains(ring) {
            self.dirty_routers.insert(ring.to_owned());
        }
        self.router_entry(ring)
    }

    fn router_entry(&mut self, ring: &str) -> &mut ChatRouter {
        if !self.chat_routers.contains_key(ring) {
            self.chat_routers
                .insert(ring.to_owned(), ChatRouter::default());
        }
        self.chat_routers.get_mut(ring).expect("inserted above")
    }

    /// Every HashRing namespace's figures, by name: O(namespaces).
    pub fn hash_ring_figures(&self) -> impl Iterator<Item = (&str, RingFigures)> {
        self.hash_rings
            .iter()
            .map(|(name, ring)| (name.as_str(), RingFigures::of(&ring.ns)))
    }

    /// Every ChatRouter namespace's figures, by name: O(namespaces).
    pub fn chat_router_figures(&self) -> impl Iterator<Item = (&str, RingFigures)> {
        self.chat_routers
            .iter()
            .map(|(name, router)| (name.as_str(), RingFigures::of(&router.ns)))
    }

    /// Folds a HashRing namespace's current digest into the engine's: O(1).
    fn fold_ring(&mut self, name: &str) {
        let Some(ring) = self.hash_rings.get_mut(name) else {
            return;
        };
        let share = digest::namespace(digest::HASH_RING, name, ring.ns.digest_sum());
        self.digest = self
            .digest
            .wrapping_sub(std::mem::replace(&mut ring.folded, share))
            .wrapping_add(share);
        if !self.dirty_rings.is_empty() {
            self.dirty_rings.remove(name);
        }
    }

    fn fold_router(&mut self, name: &str) {
        let Some(router) = self.chat_routers.get_mut(name) else {
            return;
        };
        let share = digest::namespace(digest::CHAT_ROUTER, name, router.digest_sum());
        self.digest = self
            .digest
            .wrapping_sub(std::mem::replace(&mut router.folded, share))
            .wrapping_add(share);
        if !self.dirty_routers.is_empty() {
            self.dirty_routers.remove(name);
        }
    }

    /// The engine sum with the namespaces not folded yet counted as they are now:
    /// O(1) after `apply`, O(namespaces handed out by `*_mut`) otherwise.
    fn digest_sum(&self) -> Sum {
        let mut sum = self.digest;
        for name in &self.dirty_rings {
            if let Some(ring) = self.hash_rings.get(name) {
                let share = digest::namespace(digest::HASH_RING, name, ring.ns.digest_sum());
                sum = sum.wrapping_sub(ring.folded).wrapping_add(share);
            }
        }
        for name in &self.dirty_routers {
            if let Some(router) = self.chat_routers.get(name) {
                let share = digest::namespace(digest::CHAT_ROUTER, name, router.digest_sum());
                sum = sum.wrapping_sub(router.folded).wrapping_add(share);
            }
        }
        sum
    }

    /// The snapshot encoding of the whole state (see [`snapshot`]), in memory: for
    /// small states and tests; a node streams [`Engine::freeze`] instead.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.freeze()
            .write_to(&mut bytes)
            .expect("writing to a Vec does not fail");
        bytes
    }

    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        Self::read_from(&mut &bytes[..])
    }

    /// A digest of the whole replicated state, 64 lowercase hex digits: equal on
    /// replicas with equal state (and only then, but for hash collisions). Kept up to
    /// date as commands apply, so this is O(1) (see `digest`); it is not a hash of
    /// [`Engine::snapshot`].
    pub fn state_digest(&self) -> String {
        self.digest().to_string()
    }

    /// [`Engine::state_digest`] in its raw, `Copy` form (formatting it costs a SHA-256).
    pub fn digest(&self) -> StateDigest {
        StateDigest(self.digest_sum())
    }

    /// [`Engine::state_digest`] computed from scratch, from every fact (tests check that
    /// the incremental one never drifts from it).
    #[cfg(any(test, feature = "testing"))]
    pub fn recomputed_digest(&self) -> String {
        let mut sum: Sum = 0;
        for (name, ring) in &self.hash_rings {
            let share = digest::namespace(digest::HASH_RING, name, ring.ns.recomputed_digest());
            sum = sum.wrapping_add(share);
        }
        for (name, router) in &self.chat_routers {
            let share = digest::namespace(digest::CHAT_ROUTER, name, router.recomputed_digest());
            sum = sum.wrapping_add(share);
        }
        digest::hex(sum)
    }

    /// A frozen copy of the whole state, for a snapshot written elsewhere while this
    /// engine goes on applying. O(item chunks + namespaces + nodes + backups + stale
    /// sizes): the items' chunks and the backups are shared, and copied on write by the
    /// live engine only if it changes them while the view lives (see `slab`).
    pub fn freeze(&self) -> EngineView {
        snapshot::freeze(self, self.digest_sum())
    }

    /// Decodes a snapshot written by [`EngineView::write_to`]: `reader` holds exactly it
    /// (read to its end; trailing bytes are refused). The state's digest is recomputed
    /// as it is rebuilt and must equal the one the snapshot carries.
    ///
    /// # Errors
    /// [`SnapshotError`] for a damaged, forged or truncated snapshot, or a read error.
    pub fn read_from(reader: &mut dyn std::io::Read) -> Result<Self, SnapshotError> {
        snapshot::read_from(reader)
    }
}

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod digest_tests;
#[cfg(test)]
mod golden;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod figures_tests {
    use super::*;

    #[test]
    fn a_ring_counts_its_nodes_keys_evictions_and_expirations() {
        let mut engine = Engine::new();
        let ring = engine.hash_ring_mut("r");
        ring.add_node("a");
        ring.set_capacity("a", 2);
        for (ts, key) in [(1, "k1"), (2, "k2"), (3, "k3")] {
            ring.store_key(ts, key);
        }
        ring.store_key_with_ttl(4, "k4", 10);
        assert_eq!(ring.evict_lru("a").as_deref(), Some("k3"));
        ring.tick(100);
        let figures = ring.figures();
        assert_eq!(
            figures,
            RingFigures {
                nodes: 1,
                keys: 0,
                evictions: 3,
                expirations: 1,
            }
        );
        let digest = engine.state_digest();
        assert_eq!(digest, engine.recomputed_digest(), "churn is not state");
        let listed: Vec<_> = engine.hash_ring_figures().collect();
        assert_eq!(listed, vec![("r", figures)]);
    }
}
