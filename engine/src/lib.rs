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
//!   `slab`: the items' storage; `index`: the hash index from key to slot;
//!   `placement`: per-node loads and LRU order over them.
//! - `namespace`: one ring with its items and limits; the semantics both drills share.
//!   `backups`: a namespace's saved backups (`Backup`, `Restore`).
//! - [`hashring`] / [`chatrouter`]: the two drill facades, method for method.
//! - [`command`]: every mutation as a value, applied by [`Engine::apply`] (what a
//!   replicated log carries).
//! - [`snapshot`]: the versioned, canonical encoding of an [`Engine`] and its digest.
//! - `testing` (tests and the `testing` feature): a sample command log for the crates
//!   over the engine.
//!
//! Module dependencies point one way: facades → namespace → placement → {index, slab} →
//! item → ring → position; `backups` → {namespace, snapshot}.
//!
//! An [`Engine`] holds many independent namespaces; HashRing and ChatRouter namespaces
//! are separate even when they share a name. Every operation takes the caller's
//! timestamp; identical call sequences give identical states and results.

mod backups;
pub mod chatrouter;
pub mod command;
pub mod hashring;
mod index;
mod item;
mod md5_batch;
mod namespace;
mod placement;
pub mod position;
mod ring;
mod slab;
pub mod snapshot;

use std::collections::BTreeMap;

pub use chatrouter::{ChatRouter, RequestOperation, RequestOperationKind};
pub use command::{ChatRouterOp, Command, HashRingOp, Op, Outcome};
pub use hashring::{HashRing, KeyOperation, KeyOperationKind};
pub use namespace::{Location, UNLIMITED};
pub use position::PositionSpace;
pub use snapshot::SnapshotError;

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

/// Every namespace of one node's state.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    hash_rings: BTreeMap<String, HashRing>,
    chat_routers: BTreeMap<String, ChatRouter>,
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
        if !self.hash_rings.contains_key(ring) {
            self.hash_rings.insert(ring.to_owned(), HashRing::default());
        }
        self.hash_rings.get_mut(ring).expect("inserted above")
    }

    pub fn chat_router(&self, ring: &str) -> Option<&ChatRouter> {
        self.chat_routers.get(ring)
    }

    pub fn chat_router_mut(&mut self, ring: &str) -> &mut ChatRouter {
        if !self.chat_routers.contains_key(ring) {
            self.chat_routers
                .insert(ring.to_owned(), ChatRouter::default());
        }
        self.chat_routers.get_mut(ring).expect("inserted above")
    }

    /// The canonical encoding of the whole state (see [`snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        snapshot::encode(self)
    }

    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        snapshot::decode(bytes)
    }

    /// Hex SHA-256 of [`Engine::snapshot`]: equal on replicas with equal state.
    pub fn state_digest(&self) -> String {
        snapshot::digest(&self.snapshot())
    }

    /// A frozen copy of the whole state, for a snapshot written elsewhere while this
    /// engine goes on applying.
    // STUB (issue 15): a full clone; to become cheap (shared chunks, copy on write).
    pub fn freeze(&self) -> EngineView {
        EngineView {
            engine: self.clone(),
        }
    }

    /// Decodes a snapshot written by [`EngineView::write_to`]: `reader` holds exactly it
    /// (read to its end; trailing bytes are refused).
    // STUB (issue 15): reads the snapshot into memory first.
    pub fn read_from(reader: &mut dyn std::io::Read) -> Result<Self, SnapshotError> {
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| SnapshotError::Io(e.to_string()))?;
        Self::restore(&bytes)
    }
}

/// A frozen copy of an [`Engine`]'s state (see [`Engine::freeze`]): `Send + Sync +
/// 'static`, so a snapshot is encoded on another thread.
#[derive(Debug)]
pub struct EngineView {
    engine: Engine,
}

impl EngineView {
    /// Streams the snapshot encoding of the frozen state into `writer`.
    pub fn write_to(&self, writer: &mut dyn std::io::Write) -> std::io::Result<()> {
        writer.write_all(&self.engine.snapshot())
    }

    /// The frozen state's digest (as [`Engine::state_digest`] gave when frozen).
    pub fn state_digest(&self) -> String {
        self.engine.state_digest()
    }
}

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod golden;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
