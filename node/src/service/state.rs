//! The node's replicated state: the engine behind a lock, fed by the raft log.
//!
//! A mutating RPC becomes one [`Command`], proposed through the [`Replica`] (a
//! follower forwards it to the leader) and answered with the [`Outcome`] the engine
//! computed when the command was applied. Reads take the engine's read lock, after a
//! ReadIndex round unless the caller asked for a stale read. The engine never reads a
//! clock: timestamp 0 is stamped with the leader's clock when the leader proposes it.
//! Writes that carry a client id and sequence number apply once however often they are
//! retried.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clockwise_cluster::{Replica, StateMachine};

use super::error::ServiceError;
use super::validate::{Consistency, SEQ_METADATA};
use crate::codec::{self, CodecError, Session};
use clockwise_engine::{
    ChatRouter, ChatRouterOp, Command, Engine, HashRing, HashRingOp, Op, Outcome, SnapshotError,
};

static EMPTY_HASH_RING: LazyLock<HashRing> = LazyLock::new(HashRing::default);
static EMPTY_CHAT_ROUTER: LazyLock<ChatRouter> = LazyLock::new(ChatRouter::default);

/// Most clients whose last write is remembered for deduplication; beyond it the client
/// that wrote longest ago is forgotten.
pub const MAX_SESSIONS: usize = 10_000;
/// Most bytes of remembered outcomes (a batch's outcome can be large), same eviction.
pub const MAX_SESSION_BYTES: usize = 64 << 20;

/// The engine as the raft log's state machine, with the per-client sessions that make
/// retried writes apply once.
pub struct EngineMachine {
    engine: Arc<RwLock<Engine>>,
    sessions: Sessions,
    /// This node's `--max-backups-per-ring`: written into a backup command when this
    /// node leads and proposes it, so every replica keeps the same number.
    max_backups_per_ring: u32,
}

/// Backups kept per ring unless `--max-backups-per-ring` says otherwise.
pub const DEFAULT_MAX_BACKUPS_PER_RING: u32 = 16;

impl EngineMachine {
    pub fn new(engine: Arc<RwLock<Engine>>) -> Self {
        Self::with_max_backups(engine, DEFAULT_MAX_BACKUPS_PER_RING)
    }

    pub fn with_max_backups(engine: Arc<RwLock<Engine>>, max_backups_per_ring: u32) -> Self {
        EngineMachine {
            engine,
            sessions: Sessions::default(),
            max_backups_per_ring: max_backups_per_ring.max(1),
        }
    }
}

/// Per client: the last applied sequence number, its log index and its outcome. Replicated
/// by construction (it is derived from the log); evicts deterministically by log index.
#[derive(Default)]
struct Sessions {
    by_client: HashMap<String, (u64, u64, Vec<u8>)>,
    by_index: BTreeMap<u64, String>,
    /// Summed length of the remembered outcomes.
    bytes: usize,
}

impl Sessions {
    /// The answer already given to this `(client, seq)`, or the refusal of an old seq.
    fn replay(&self, session: &Session) -> Option<Vec<u8>> {
        let (seq, _, outcome) = self.by_client.get(&session.client_id)?;
        match session.seq.cmp(seq) {
            std::cmp::Ordering::Equal => Some(outcome.clone()),
            std::cmp::Ordering::Less => Some(codec::encode_stale_sequence(*seq)),
            std::cmp::Ordering::Greater => None,
        }
    }

    fn record(&mut self, session: Session, index: u64, outcome: Vec<u8>) {
        if let Some((_, old_index, old)) = self.by_client.get(&session.client_id) {
            self.by_index.remove(old_index);
            self.bytes -= old.len();
        }
        self.by_index.insert(index, session.client_id.clone());
        self.bytes += outcome.len();
        self.by_client
            .insert(session.client_id, (session.seq, index, outcome));
        while self.by_client.len() > MAX_SESSIONS || self.bytes > MAX_SESSION_BYTES {
            let Some((_, client)) = self.by_index.pop_first() else {
                break;
            };
            if let Some((_, _, outcome)) = self.by_client.remove(&client) {
                self.bytes -= outcome.len();
            }
        }
    }
}

/// Why a state-machine snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum MachineSnapshotError {
    #[error("engine: {0}")]
    Engine(#[from] SnapshotError),
    #[error("sessions: {0}")]
    Sessions(&'static str),
}

/// Version of the state-machine snapshot: the engine's snapshot, then the sessions.
const MACHINE_SNAPSHOT_VERSION: u8 = 1;

impl Sessions {
    /// Appends the sessions in log-index order (deterministic on every replica).
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.by_index.len() as u64).to_be_bytes());
        for (index, client) in &self.by_index {
            let (seq, _, outcome) = &self.by_client[client];
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&(client.len() as u64).to_be_bytes());
            out.extend_from_slice(client.as_bytes());
            out.extend_from_slice(&(outcome.len() as u64).to_be_bytes());
            out.extend_from_slice(outcome);
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, MachineSnapshotError> {
        let mut reader = Reader(bytes);
        let mut sessions = Sessions::default();
        for _ in 0..reader.u64()? {
            let index = reader.u64()?;
            let seq = reader.u64()?;
            let len = usize::try_from(reader.u64()?).map_err(|_| TRUNCATED)?;
            let client = std::str::from_utf8(reader.take(len)?)
                .map_err(|_| MachineSnapshotError::Sessions("a client id is not UTF-8"))?
                .to_owned();
            let len = usize::try_from(reader.u64()?).map_err(|_| TRUNCATED)?;
            let outcome = reader.take(len)?.to_vec();
            sessions.bytes += outcome.len();
            if sessions.by_index.insert(index, client.clone()).is_some()
                || sessions
                    .by_client
                    .insert(client, (seq, index, outcome))
                    .is_some()
            {
                return Err(MachineSnapshotError::Sessions("a session is listed twice"));
            }
        }
        if !reader.0.is_empty() {
            return Err(MachineSnapshotError::Sessions("trailing bytes"));
        }
        Ok(sessions)
    }
}

const TRUNCATED: MachineSnapshotError = MachineSnapshotError::Sessions("truncated");

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MachineSnapshotError> {
        if self.0.len() < n {
            return Err(TRUNCATED);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, MachineSnapshotError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

impl EngineMachine {
    /// The state digest (as `Cluster.Status` reports it) of a machine snapshot.
    pub fn digest_of_snapshot(snapshot: &[u8]) -> Result<String, MachineSnapshotError> {
        let mut reader = Reader(snapshot);
        if reader.take(1)? != [MACHINE_SNAPSHOT_VERSION] {
            return Err(MachineSnapshotError::Sessions(
                "unknown state-machine snapshot version",
            ));
        }
        let len = usize::try_from(reader.u64()?).map_err(|_| TRUNCATED)?;
        Ok(clockwise_engine::snapshot::digest(reader.take(len)?))
    }
}

impl StateMachine for EngineMachine {
    type Error = MachineSnapshotError;

    /// On the leader: a command sent with timestamp 0 gets the leader's clock, once, so
    /// every replica applies the same time.
    fn prepare(&self, data: Vec<u8>) -> Vec<u8> {
        let Ok((mut command, session)) = codec::decode_entry(&data) else {
            return data;
        };
        let mut changed = false;
        if command.timestamp == 0 {
            command.timestamp = resolve_timestamp(0);
            changed = true;
        }
        if let Op::HashRing(HashRingOp::Backup { max_backups })
        | Op::ChatRouter(ChatRouterOp::Backup { max_backups }) = &mut command.op
        {
            if *max_backups == 0 {
                *max_backups = self.max_backups_per_ring;
                changed = true;
            }
        }
        if changed {
            codec::encode_entry(&command, session.as_ref())
        } else {
            data
        }
    }

    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8> {
        // Every replica decodes the same bytes the same way: a command that does not
        // decode is skipped everywhere, and its proposer gets an empty answer.
        let Ok((command, session)) = codec::decode_entry(data) else {
            return Vec::new();
        };
        if let Some(answer) = session.as_ref().and_then(|s| self.sessions.replay(s)) {
            return answer;
        }
        let outcome = {
            let mut engine = self.engine.write().unwrap_or_else(PoisonError::into_inner);
            codec::encode_outcome(&engine.apply(&command))
        };
        if let Some(session) = session {
            self.sessions.record(session, index, outcome.clone());
        }
        outcome
    }

    /// Version byte, the engine's snapshot (length-prefixed), then the sessions, so a
    /// retry after a snapshot install still applies once.
    fn snapshot(&self) -> Vec<u8> {
        let engine = self
            .engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot();
        let mut out = Vec::with_capacity(1 + 8 + engine.len() + 8 + self.sessions.bytes);
        out.push(MACHINE_SNAPSHOT_VERSION);
        out.extend_from_slice(&(engine.len() as u64).to_be_bytes());
        out.extend_from_slice(&engine);
        self.sessions.encode_into(&mut out);
        out
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), MachineSnapshotError> {
        let mut reader = Reader(snapshot);
        if reader.take(1)? != [MACHINE_SNAPSHOT_VERSION] {
            return Err(MachineSnapshotError::Sessions(
                "unknown state-machine snapshot version",
            ));
        }
        let len = usize::try_from(reader.u64()?).map_err(|_| TRUNCATED)?;
        let engine = Engine::restore(reader.take(len)?)?;
        let sessions = Sessions::decode(reader.0)?;
        *self.engine.write().unwrap_or_else(PoisonError::into_inner) = engine;
        self.sessions = sessions;
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
        codec::decode_outcome(&result).map_err(|e| match e {
            CodecError::StaleSequence { last } => ServiceError::FailedPrecondition(format!(
                "{SEQ_METADATA}: older than this client's last applied write ({last}); \
                 its outcome is no longer kept"
            )),
            e => {
                ServiceError::Internal(format!("the applied command answered nothing usable: {e}"))
            }
        })
    }

    pub async fn read<T>(
        &self,
        consistency: Consistency,
        f: impl FnOnce(&Engine) -> T,
    ) -> Result<T, ServiceError> {
        if consistency == Consistency::Linearizable {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clockwise_engine::{HashRingOp, Op};

    fn command(timestamp: i64, op: HashRingOp) -> Command {
        Command {
            ring: "r".into(),
            timestamp,
            op: Op::HashRing(op),
        }
    }

    fn session(client: &str, seq: u64) -> Option<Session> {
        Some(Session {
            client_id: client.into(),
            seq,
        })
    }

    fn machine() -> (EngineMachine, Arc<RwLock<Engine>>) {
        let engine = Arc::new(RwLock::new(Engine::new()));
        (EngineMachine::new(engine.clone()), engine)
    }

    fn apply(m: &mut EngineMachine, index: u64, c: &Command, s: Option<Session>) -> Vec<u8> {
        m.apply(index, &codec::encode_entry(c, s.as_ref()))
    }

    #[test]
    fn a_repeated_session_write_is_applied_once_and_answered_the_same() {
        let (mut m, engine) = machine();
        apply(
            &mut m,
            1,
            &command(
                1,
                HashRingOp::AddNode {
                    node_id: "n".into(),
                },
            ),
            None,
        );
        for (i, key) in ["a", "b"].into_iter().enumerate() {
            apply(
                &mut m,
                2 + i as u64,
                &command(1, HashRingOp::StoreKey { key: key.into() }),
                None,
            );
        }
        let evict = command(
            2,
            HashRingOp::EvictLru {
                node_id: "n".into(),
            },
        );
        let first = apply(&mut m, 4, &evict, session("c1", 7));
        let retry = apply(&mut m, 5, &evict, session("c1", 7));
        assert_eq!(first, retry);
        assert_eq!(
            codec::decode_outcome(&first),
            Ok(Outcome::Name(Some("a".into())))
        );
        let used =
            |e: &Arc<RwLock<Engine>>| e.read().unwrap().hash_ring("r").unwrap().get_used("n");
        assert_eq!(used(&engine), 1, "the retry evicted nothing more");
        // A new sequence number applies again; an older one is refused.
        apply(&mut m, 6, &evict, session("c1", 8));
        assert_eq!(used(&engine), 0);
        assert_eq!(
            codec::decode_outcome(&apply(&mut m, 7, &evict, session("c1", 7))),
            Err(CodecError::StaleSequence { last: 8 })
        );
        // Other clients have their own sequence.
        let other = apply(&mut m, 8, &evict, session("c2", 1));
        assert_eq!(codec::decode_outcome(&other), Ok(Outcome::Name(None)));
    }

    #[test]
    fn sessions_are_bounded_and_forget_the_oldest_writer() {
        let (mut m, _) = machine();
        let add = command(
            1,
            HashRingOp::AddNode {
                node_id: "n".into(),
            },
        );
        for i in 0..=MAX_SESSIONS as u64 {
            apply(&mut m, i + 1, &add, session(&format!("c{i}"), 1));
        }
        assert_eq!(m.sessions.by_client.len(), MAX_SESSIONS);
        assert!(
            !m.sessions.by_client.contains_key("c0"),
            "the oldest writer is forgotten"
        );
        assert!(m
            .sessions
            .by_client
            .contains_key(&format!("c{MAX_SESSIONS}")));
    }

    #[test]
    fn a_snapshot_carries_the_engine_and_the_sessions() {
        let (mut m, engine) = machine();
        let add = command(
            1,
            HashRingOp::AddNode {
                node_id: "n".into(),
            },
        );
        let first = apply(&mut m, 1, &add, session("c1", 3));
        apply(
            &mut m,
            2,
            &command(2, HashRingOp::StoreKey { key: "k".into() }),
            session("c2", 9),
        );
        let snapshot = m.snapshot();

        let (mut restored, restored_engine) = machine();
        restored.restore(&snapshot).unwrap();
        assert_eq!(
            restored_engine.read().unwrap().state_digest(),
            engine.read().unwrap().state_digest()
        );
        assert_eq!(restored.snapshot(), snapshot, "the encoding is canonical");
        assert_eq!(
            EngineMachine::digest_of_snapshot(&snapshot).unwrap(),
            engine.read().unwrap().state_digest()
        );
        // A retry after the install answers the first outcome without applying again.
        assert_eq!(apply(&mut restored, 3, &add, session("c1", 3)), first);
        assert_eq!(
            restored_engine.read().unwrap().state_digest(),
            engine.read().unwrap().state_digest()
        );
        for cut in 0..snapshot.len() {
            assert!(restored.restore(&snapshot[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn the_leader_stamps_timestamp_zero_once() {
        let (m, _) = machine();
        let zero = codec::encode_entry(
            &command(0, HashRingOp::StoreKey { key: "k".into() }),
            session("c", 1).as_ref(),
        );
        let (stamped, kept_session) = codec::decode_entry(&m.prepare(zero)).unwrap();
        assert!(stamped.timestamp > 0);
        assert_eq!(kept_session, session("c", 1));
        let fixed = codec::encode(&command(5, HashRingOp::StoreKey { key: "k".into() }));
        assert_eq!(m.prepare(fixed.clone()), fixed);
    }
}
