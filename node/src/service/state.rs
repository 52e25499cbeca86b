//! The node's replicated state: the engine behind a lock, fed by the raft log.
//!
//! A mutating RPC becomes one [`Command`], proposed through the [`Replica`] (a
//! follower forwards it to the leader) and answered with the [`Outcome`] the engine
//! computed when the command was applied. Reads take the engine's read lock, after a
//! ReadIndex round unless the caller asked for a stale read. The engine never reads a
//! clock: timestamp 0 is resolved to this node's clock before the command exists.

use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clockwise_cluster::{Replica, StateMachine};

use super::error::ServiceError;
use super::validate::Consistency;
use crate::codec;
use crate::engine::{ChatRouter, Command, Engine, HashRing, Outcome, SnapshotError};

static EMPTY_HASH_RING: LazyLock<HashRing> = LazyLock::new(HashRing::default);
static EMPTY_CHAT_ROUTER: LazyLock<ChatRouter> = LazyLock::new(ChatRouter::default);

/// The engine as the raft log's state machine.
pub struct EngineMachine(pub Arc<RwLock<Engine>>);

impl StateMachine for EngineMachine {
    type Error = SnapshotError;

    fn apply(&mut self, _index: u64, data: &[u8]) -> Vec<u8> {
        // Every replica decodes the same bytes the same way: a command that does not
        // decode is skipped everywhere, and its proposer gets an empty answer.
        let Ok(command) = codec::decode(data) else {
            return Vec::new();
        };
        let mut engine = self.0.write().unwrap_or_else(PoisonError::into_inner);
        codec::encode_outcome(&engine.apply(&command))
    }

    fn snapshot(&self) -> Vec<u8> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotError> {
        let engine = Engine::restore(snapshot)?;
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = engine;
        Ok(())
    }
}

pub struct NodeState {
    engine: Arc<RwLock<Engine>>,
    replica: Replica,
    /// How long a write or a linearizable read may wait for a quorum.
    timeout: Duration,
}

impl NodeState {
    pub fn new(engine: Arc<RwLock<Engine>>, replica: Replica, timeout: Duration) -> Self {
        NodeState {
            engine,
            replica,
            timeout,
        }
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Replicates one mutation and answers its outcome.
    pub async fn apply(&self, command: Command) -> Result<Outcome, ServiceError> {
        let result = self
            .replica
            .propose(codec::encode(&command), self.timeout)
            .await?;
        codec::decode_outcome(&result).map_err(|e| {
            ServiceError::Internal(format!("the applied command answered nothing usable: {e}"))
        })
    }

    pub async fn read<T>(
        &self,
        consistency: Consistency,
        f: impl FnOnce(&Engine) -> T,
    ) -> Result<T, ServiceError> {
        if consistency == Consistency::Linearizable {
            self.replica.read_index(self.timeout).await?;
        }
        Ok(f(&self
            .engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)))
    }

    /// Reads a HashRing namespace; one never written reads as empty.
    pub async fn read_hash_ring<T>(
        &self,
        ring: &str,
        consistency: Consistency,
        f: impl FnOnce(&HashRing) -> T,
    ) -> Result<T, ServiceError> {
        self.read(consistency, |e| {
            f(e.hash_ring(ring).unwrap_or(&EMPTY_HASH_RING))
        })
        .await
    }

    pub async fn read_chat_router<T>(
        &self,
        ring: &str,
        consistency: Consistency,
        f: impl FnOnce(&ChatRouter) -> T,
    ) -> Result<T, ServiceError> {
        self.read(consistency, |e| {
            f(e.chat_router(ring).unwrap_or(&EMPTY_CHAT_ROUTER))
        })
        .await
    }

    /// The digest of this replica's state as it is now.
    pub fn state_digest(&self) -> String {
        self.engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .state_digest()
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
