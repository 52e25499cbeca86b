//! The node's engine behind a lock, and the clock that stamps timestamp-0 calls.
//!
//! Every mutating RPC runs as one closure under the write lock, so a batch is applied
//! atomically; reads take the read lock. The engine itself never reads a clock: the
//! timestamp is resolved here, before the engine is called.

use std::sync::{LazyLock, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::{ChatRouter, Engine, HashRing};

static EMPTY_HASH_RING: LazyLock<HashRing> = LazyLock::new(HashRing::default);
static EMPTY_CHAT_ROUTER: LazyLock<ChatRouter> = LazyLock::new(ChatRouter::default);

#[derive(Debug, Default)]
pub struct NodeState {
    engine: RwLock<Engine>,
}

impl NodeState {
    pub fn new(engine: Engine) -> Self {
        NodeState {
            engine: RwLock::new(engine),
        }
    }

    pub fn write<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        // The engine does not panic mid-update, so a poisoned lock holds a whole state.
        f(&mut self.engine.write().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn read<T>(&self, f: impl FnOnce(&Engine) -> T) -> T {
        f(&self.engine.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads a HashRing namespace; one never written reads as empty.
    pub fn read_hash_ring<T>(&self, ring: &str, f: impl FnOnce(&HashRing) -> T) -> T {
        self.read(|e| f(e.hash_ring(ring).unwrap_or(&EMPTY_HASH_RING)))
    }

    pub fn read_chat_router<T>(&self, ring: &str, f: impl FnOnce(&ChatRouter) -> T) -> T {
        self.read(|e| f(e.chat_router(ring).unwrap_or(&EMPTY_CHAT_ROUTER)))
    }

    pub fn state_digest(&self) -> String {
        self.read(Engine::state_digest)
    }
}

/// The caller's timestamp, or the node's wall clock in ms when the caller sent 0.
pub fn resolve_timestamp(ts: i64) -> i64 {
    if ts != 0 {
        return ts;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as i64)
}
