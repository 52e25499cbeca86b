//! The node's engine behind a lock, and the clock that stamps timestamp-0 calls.
//!
//! Every mutating RPC becomes one [`Command`] applied under the write lock, so a batch
//! is applied atomically; reads take the read lock. The engine itself never reads a
//! clock: the timestamp is resolved before the command is made. Replication will put a
//! log between `apply` and the engine; its callers already treat it as asynchronous
//! and fallible.

use std::sync::{LazyLock, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::ServiceError;
use crate::engine::{ChatRouter, Command, Engine, HashRing, Outcome};

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

    /// Applies one mutation and answers its outcome.
    pub async fn apply(&self, command: Command) -> Result<Outcome, ServiceError> {
        // The engine does not panic mid-update, so a poisoned lock holds a whole state.
        let mut engine = self.engine.write().unwrap_or_else(PoisonError::into_inner);
        Ok(engine.apply(&command))
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
