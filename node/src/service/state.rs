//! The services' view of the replicated state: the engine behind a lock (fed by the raft
//! log through `crate::machine`), and the replica that proposes and confirms reads.
//!
//! A mutating RPC becomes one [`Command`], proposed through the [`Replica`] (a
//! follower forwards it to the leader) and answered with the [`Outcome`] the engine
//! computed when the command was applied. Reads take the engine's read lock, after a
//! ReadIndex round unless the caller asked for a stale read. The engine never reads a
//! clock: timestamp 0 is stamped with the leader's clock when the leader proposes it.
//! Writes that carry a client id and sequence number apply once however often they are
//! retried.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Duration;

use clockwise_cluster::Replica;

use super::error::ServiceError;
use super::validate::{Consistency, SEQ_METADATA};
use crate::machine::codec::{self, CodecError, Session};
use crate::machine::PublishedDigest;
use clockwise_engine::{ChatRouter, Command, Engine, HashRing, Outcome};

static EMPTY_HASH_RING: LazyLock<HashRing> = LazyLock::new(HashRing::default);
static EMPTY_CHAT_ROUTER: LazyLock<ChatRouter> = LazyLock::new(ChatRouter::default);

pub struct NodeState {
    engine: Arc<RwLock<Engine>>,
    digest: Arc<PublishedDigest>,
    replica: Replica,
    /// How long a write or a linearizable read may wait for a quorum.
    timeout: Duration,
    /// Counts the ReadIndex rounds of linearizable reads (`/metrics`).
    linearizable_reads: Arc<AtomicU64>,
}

impl NodeState {
    pub fn new(
        engine: Arc<RwLock<Engine>>,
        digest: Arc<PublishedDigest>,
        replica: Replica,
        timeout: Duration,
    ) -> Self {
        NodeState {
            engine,
            digest,
            replica,
            timeout,
            linearizable_reads: Arc::default(),
        }
    }

    /// Counts each linearizable read's ReadIndex round in `counter`.
    pub fn counting_reads(mut self, counter: Arc<AtomicU64>) -> Self {
        self.linearizable_reads = counter;
        self
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// How long the current call may wait for a quorum: the node's request timeout, or
    /// less if the caller's deadline is nearer (see [`super::deadline`]).
    pub fn timeout(&self) -> Duration {
        super::deadline::budget(self.timeout)
    }

    /// Replicates one mutation and answers its outcome. With a session, a repeat of the
    /// same `(client_id, seq)` answers the first outcome without applying again.
    pub async fn apply(
        &self,
        command: Command,
        session: Option<Session>,
    ) -> Result<Outcome, ServiceError> {
        let entry = codec::encode_entry(&command, session.as_ref());
        let result = self.replica.propose(entry, self.timeout()).await?;
        let (outcome, revision) = codec::decode_outcome_at(&result).map_err(|e| match e {
            CodecError::StaleSequence { last } => ServiceError::FailedPrecondition(format!(
                "{SEQ_METADATA}: older than this client's last applied write ({last}); \
                 its outcome is no longer kept"
            )),
            CodecError::SessionsFull { limit } => ServiceError::ResourceExhausted(format!(
                "{SEQ_METADATA}: the cluster keeps {limit} retry sessions and all are within \
                 their retry window; not applied, retry later"
            )),
            CodecError::QuotaExceeded(refused) => ServiceError::ResourceExhausted(format!(
                "{refused}: not applied; the quota is the leader's --{}",
                refused.quota.name()
            )),
            e => {
                ServiceError::Internal(format!("the applied command answered nothing usable: {e}"))
            }
        })?;
        super::revision::record(revision);
        Ok(outcome)
    }

    pub async fn read<T>(
        &self,
        consistency: Consistency,
        f: impl FnOnce(&Engine) -> T,
    ) -> Result<T, ServiceError> {
        if consistency == Consistency::Linearizable {
            self.linearizable_reads.fetch_add(1, Ordering::Relaxed);
            self.replica.read_index(self.timeout()).await?;
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

    /// The digest of this replica's state as of its last apply: O(1), and without the
    /// engine lock.
    pub fn state_digest(&self) -> String {
        self.digest.get().to_string()
    }
}
