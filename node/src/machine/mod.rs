//! The replicated state machine: the engine fed by the raft log.
//!
//! - [`codec`]: the log's wire format for commands and outcomes (prost), with the
//!   range checks every replica applies to what it decodes.
//! - `caps`: those range checks: the client port's own (`service::validate`).
//! - `sessions`: per-client retry deduplication (a retried write applies once).
//! - [`envelope`]: the byte layout of a state-machine snapshot (sessions + engine).
//! - [`clock`]: the leader's clock, stamped into commands sent with timestamp 0.
//! - [`figures`]: each ring's size and churn after every apply, for metrics.
//! - [`topology_feed`]: each applied topology change with its revision, for `Watch`.
//!
//! [`EngineMachine`] implements `clockwise_cluster::StateMachine`: `prepare` on the
//! leader (stamp time, fill defaults), `apply` on every replica (deterministic: no
//! clock, no randomness), `freeze` (a frozen engine view and the encoded sessions,
//! written on the cluster's snapshot thread) and `restore_from` (streaming) through the
//! envelope.

mod caps;
pub mod clock;
pub mod codec;
pub mod envelope;
pub mod figures;
mod sessions;
pub mod topology_feed;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use clockwise_cluster::state_machine::StateSnapshot;
use clockwise_cluster::StateMachine;
use clockwise_engine::{ChatRouterOp, Engine, EngineView, HashRingOp, Op, Quotas, StateDigest};

pub use envelope::MachineSnapshotError;
use envelope::{known_version, MACHINE_SNAPSHOT_VERSION, MAX_SESSIONS_ENCODED, TRUNCATED};
pub use figures::PublishedRings;
use figures::RingKind;
use sessions::Sessions;
pub use sessions::{MAX_SESSIONS, MAX_SESSION_BYTES, SESSION_WINDOW_MS};
pub use topology_feed::TopologyFeed;

/// The engine as the raft log's state machine, with the per-client sessions that make
/// retried writes apply once.
pub struct EngineMachine {
    engine: Arc<RwLock<Engine>>,
    sessions: Sessions,
    /// This node's `--max-backups-per-ring`: written into a backup command when this
    /// node leads and proposes it, so every replica keeps the same number.
    max_backups_per_ring: u32,
    /// This node's quotas (`--max-rings`, …): written into every entry this node
    /// proposes as leader, so every replica applies the entry within the same ones.
    quotas: Quotas,
    digest: Arc<PublishedDigest>,
    /// Each ring's figures, published after every apply (read by metrics scrapes).
    rings: Arc<PublishedRings>,
    /// Each topology change, published as it applies (read by `Watch` streams).
    feed: Arc<TopologyFeed>,
}

/// The engine's digest as of the last apply or restore, published beside the engine so
/// that `Cluster.Status` reads it without the engine lock (a batch apply holds that lock
/// for milliseconds at a time).
#[derive(Debug, Default)]
pub struct PublishedDigest(Mutex<StateDigest>);

impl PublishedDigest {
    pub fn get(&self) -> StateDigest {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, digest: StateDigest) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = digest;
    }
}

/// Backups kept per ring unless `--max-backups-per-ring` says otherwise.
pub const DEFAULT_MAX_BACKUPS_PER_RING: u32 = 16;

impl EngineMachine {
    pub fn new(engine: Arc<RwLock<Engine>>) -> Self {
        Self::with_max_backups(engine, DEFAULT_MAX_BACKUPS_PER_RING)
    }

    pub fn with_max_backups(engine: Arc<RwLock<Engine>>, max_backups_per_ring: u32) -> Self {
        let digest = Arc::new(PublishedDigest::default());
        let rings = Arc::new(PublishedRings::default());
        {
            let engine = engine.read().unwrap_or_else(PoisonError::into_inner);
            digest.set(engine.digest());
            rings.replace_all(&engine);
        }
        EngineMachine {
            engine,
            sessions: Sessions::default(),
            max_backups_per_ring: max_backups_per_ring.max(1),
            quotas: Quotas::default(),
            digest,
            rings,
            feed: Arc::default(),
        }
    }

    /// The quotas this node writes into the entries it proposes as leader.
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// Where this machine publishes its digest after every apply and restore.
    pub fn published_digest(&self) -> Arc<PublishedDigest> {
        self.digest.clone()
    }

    /// Where this machine publishes each ring's figures after every apply and restore.
    pub fn published_rings(&self) -> Arc<PublishedRings> {
        self.rings.clone()
    }

    /// Where this machine publishes each topology change as it applies.
    pub fn topology_feed(&self) -> Arc<TopologyFeed> {
        self.feed.clone()
    }
}

/// The machine frozen for a snapshot: the engine's copy-on-write view and the sessions
/// already encoded (bounded by `MAX_SESSION_BYTES`).
pub struct MachineSnapshot {
    engine: EngineView,
    sessions: Vec<u8>,
}

impl StateSnapshot for MachineSnapshot {
    /// Envelope version 3: version, sessions (length-prefixed), engine stream.
    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(&[MACHINE_SNAPSHOT_VERSION])?;
        out.write_all(&(self.sessions.len() as u64).to_be_bytes())?;
        out.write_all(&self.sessions)?;
        self.engine.write_to(out)
    }
}

fn read_error(e: std::io::Error) -> MachineSnapshotError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => TRUNCATED,
        _ => MachineSnapshotError::Read(e.to_string()),
    }
}

fn read_u64(reader: &mut dyn Read) -> Result<u64, MachineSnapshotError> {
    let mut bytes = [0u8; 8];
    reader.read_exact(&mut bytes).map_err(read_error)?;
    Ok(u64::from_be_bytes(bytes))
}

/// Reads `len` bytes (refused over `MAX_SESSIONS_ENCODED`), or with `None`, the rest.
fn read_sessions(reader: &mut dyn Read, len: Option<u64>) -> Result<Vec<u8>, MachineSnapshotError> {
    if len.is_some_and(|len| len > MAX_SESSIONS_ENCODED) {
        return Err(MachineSnapshotError::Sessions(
            "longer than sessions can be",
        ));
    }
    let limit = len.unwrap_or(MAX_SESSIONS_ENCODED + 1);
    let mut bytes = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    match len {
        Some(len) if bytes.len() as u64 != len => Err(TRUNCATED),
        None if bytes.len() as u64 > MAX_SESSIONS_ENCODED => Err(MachineSnapshotError::Sessions(
            "longer than sessions can be",
        )),
        _ => Ok(bytes),
    }
}

/// Decodes a machine snapshot of any known version from `reader` (read to its end).
fn decode(reader: &mut dyn Read) -> Result<(Engine, Sessions), MachineSnapshotError> {
    let mut version = [0u8; 1];
    reader.read_exact(&mut version).map_err(read_error)?;
    let version = known_version(version[0])?;
    let (engine, sessions) = if version >= 3 {
        let len = read_u64(reader)?;
        let sessions = read_sessions(reader, Some(len))?;
        // The engine is last: it reads to the end (where the checksum is verified).
        let engine = Engine::read_from(reader)?;
        (engine, Sessions::decode(&sessions, 2)?)
    } else {
        let len = read_u64(reader)?;
        let mut limited = reader.take(len);
        let engine = Engine::read_from(&mut limited)?;
        if limited.limit() != 0 {
            return Err(TRUNCATED);
        }
        let sessions = read_sessions(reader, None)?;
        (engine, Sessions::decode(&sessions, version)?)
    };
    let mut extra = [0u8; 1];
    if reader.read(&mut extra).map_err(read_error)? != 0 {
        return Err(MachineSnapshotError::Sessions("trailing bytes"));
    }
    Ok((engine, sessions))
}

/// The engine's bytes of a version-3 machine snapshot: after the version byte and the
/// length-prefixed sessions.
fn engine_part(snapshot: &[u8]) -> Option<&[u8]> {
    let (&version, rest) = snapshot.split_first()?;
    if version < 3 {
        return None;
    }
    let len = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    rest.get(8..)?.get(usize::try_from(len).ok()?..)
}

impl EngineMachine {
    /// The state digest (as `Cluster.Status` reports it) of a machine snapshot (any
    /// version). Version 3 carries it in the engine's header: read there, O(1), rather
    /// than rebuilding millions of keys for one string; older versions are restored.
    pub fn digest_of_snapshot(snapshot: &[u8]) -> Result<String, MachineSnapshotError> {
        if let Some(digest) = engine_part(snapshot).and_then(clockwise_engine::snapshot::digest) {
            return Ok(digest);
        }
        let (engine, _) = decode(&mut &snapshot[..])?;
        Ok(engine.state_digest())
    }

    /// The machine snapshot in memory (tests, fuzzing, benches): what
    /// [`StateSnapshot::write_to`] streams.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.freeze()
            .write_to(&mut out)
            .expect("writing to memory does not fail");
        out
    }

    /// Restores an in-memory machine snapshot (any known version).
    ///
    /// # Errors
    /// The snapshot is refused; the state is unchanged.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), MachineSnapshotError> {
        self.restore_from(&mut &snapshot[..])
    }
}

impl StateMachine for EngineMachine {
    type Error = MachineSnapshotError;

    /// On the leader: a command sent with timestamp 0 gets the leader's clock, once, so
    /// every replica applies the same time; a write with a session gets the leader's
    /// clock as `proposed_at_ms`, the clock its retry session ages by; every entry gets
    /// the leader's quotas (replacing any a forwarding peer wrote).
    /// Also refuses what the client port would have (a forwarded command skips it):
    /// every field as `caps` checks it, and a timestamp more than a day ahead of this
    /// leader's clock.
    fn prepare(&self, data: Vec<u8>) -> Result<Vec<u8>, String> {
        let (mut command, session, mut proposed_at_ms, quotas) = codec::decode_entry_within(&data)
            .map_err(|e| match e {
                codec::CodecError::Refused(why) => why,
                e => format!("command: {e}"),
            })?;
        crate::service::validate::timestamp(command.timestamp).map_err(|e| e.to_string())?;
        let mut changed = false;
        if session.is_some() {
            proposed_at_ms = clock::resolve_timestamp(0);
            changed = true;
        }
        if command.timestamp == 0 {
            command.timestamp = clock::resolve_timestamp(0);
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
        Ok(if changed || quotas != self.quotas {
            codec::encode_entry_within(&command, session.as_ref(), proposed_at_ms, &self.quotas)
        } else {
            data
        })
    }

    fn apply(&mut self, index: u64, data: &[u8]) -> Vec<u8> {
        // Every replica decodes the same bytes the same way: a command that does not
        // decode is skipped everywhere, and its proposer gets an empty answer.
        let Ok((command, session, proposed_at_ms, quotas)) = codec::decode_entry_within(data)
        else {
            self.feed.applied(index);
            return Vec::new();
        };
        // The sessions' clock is the leader's stamp in the log: the same on every replica.
        self.sessions.advance(proposed_at_ms);
        if let Some(session) = &session {
            if let Some(answer) = self.sessions.replay(session) {
                self.feed.applied(index);
                return answer;
            }
            if let Err(refusal) = self.sessions.admit(session) {
                self.feed.applied(index);
                return refusal;
            }
        }
        let outcome = {
            let mut engine = self.engine.write().unwrap_or_else(PoisonError::into_inner);
            let outcome = engine.apply_within(&command, &quotas);
            self.digest.set(engine.digest());
            self.rings
                .update(&engine, RingKind::of(&command.op), &command.ring);
            // Under the write lock: a watcher subscribing under the read lock sees
            // this change either in the topology it reads or live, never both.
            if let Some((kind, change)) = engine.topology_change(&command, &outcome) {
                self.feed.publish(index, kind, &command.ring, change);
            }
            self.feed.applied(index);
            codec::encode_outcome_at(&outcome, index)
        };
        if let Some(session) = session {
            self.sessions.record(session, index, outcome.clone());
        }
        outcome
    }

    fn applied_other(&mut self, index: u64) {
        self.feed.applied(index);
    }

    type Snapshot = MachineSnapshot;

    /// The engine's frozen view and the sessions (so a retry after a snapshot install
    /// still applies once).
    fn freeze(&self) -> MachineSnapshot {
        let engine = self
            .engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .freeze();
        let mut sessions = Vec::with_capacity(16 + self.sessions.bytes);
        self.sessions.encode_into(&mut sessions);
        MachineSnapshot { engine, sessions }
    }

    /// Decodes into a new engine and sessions (the reader verifies the checksum at its
    /// end), and swaps them in only once all of it decoded.
    fn restore_from(&mut self, reader: &mut dyn Read) -> Result<(), MachineSnapshotError> {
        let (engine, sessions) = decode(reader)?;
        let digest = engine.digest();
        self.rings.replace_all(&engine);
        let replaced = std::mem::replace(
            &mut *self.engine.write().unwrap_or_else(PoisonError::into_inner),
            engine,
        );
        self.digest.set(digest);
        // Freeing millions of items takes a while: not under the lock.
        drop(replaced);
        self.sessions = sessions;
        Ok(())
    }

    /// Every watcher starts over from the restored state.
    fn restored_at(&mut self, index: u64) {
        let _engine = self.engine.write().unwrap_or_else(PoisonError::into_inner);
        self.feed.reset(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::validate;
    use clockwise_engine::Outcome;
    use clockwise_engine::{Command, HashRingOp, Op};
    use codec::{CodecError, Session};

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
    fn the_published_digest_follows_every_apply_and_restore() {
        let (mut m, engine) = machine();
        let published = m.published_digest();
        assert_eq!(published.get(), Engine::new().digest());
        let mut seen = std::collections::HashSet::from([published.get()]);
        for (i, c) in clockwise_engine::testing::sample_log().iter().enumerate() {
            apply(&mut m, 1 + i as u64, c, None);
            assert_eq!(
                published.get(),
                engine.read().unwrap().digest(),
                "after {c:?}"
            );
            seen.insert(published.get());
        }
        assert!(
            seen.len() > 10,
            "the digest moved with the log: {}",
            seen.len()
        );
        let snapshot = m.snapshot();
        let (mut restored, restored_engine) = machine();
        restored.restore(&snapshot).unwrap();
        assert_eq!(restored.published_digest().get(), published.get());
        assert_eq!(
            restored.published_digest().get().to_string(),
            restored_engine.read().unwrap().state_digest()
        );
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

    /// A session write as the leader stamps it, `at_ms` on its clock.
    fn apply_at(
        m: &mut EngineMachine,
        index: u64,
        c: &Command,
        s: Option<Session>,
        at_ms: i64,
    ) -> Vec<u8> {
        m.apply(index, &codec::encode_stamped_entry(c, s.as_ref(), at_ms))
    }

    const MINUTE: i64 = 60_000;
    const T0: i64 = 1_800_000_000_000;

    /// Issue #17: more than 10,000 other clients (the old count bound) write between a
    /// write and its retry 4 minutes later: the retry still answers the first outcome
    /// and applies nothing.
    #[test]
    fn a_retry_within_the_window_is_applied_once_under_many_other_clients() {
        let (mut m, engine) = machine();
        let add = |n: &str| command(1, HashRingOp::AddNode { node_id: n.into() });
        let first = apply_at(&mut m, 1, &add("n"), session("retrier", 1), T0);
        for i in 0..10_050u64 {
            let at = T0 + (i as i64) * 4 * MINUTE / 10_050;
            apply_at(&mut m, 2 + i, &add("n"), session(&format!("c{i}"), 1), at);
        }
        let store = command(2, HashRingOp::StoreKey { key: "k".into() });
        apply_at(
            &mut m,
            20_000,
            &store,
            session("writer", 1),
            T0 + 4 * MINUTE,
        );
        let digest = engine.read().unwrap().state_digest();
        // The retry is the first write again: had it been forgotten, a second AddNode
        // of "n" would answer Done(false) instead of the first Done(true).
        let retry = apply_at(
            &mut m,
            20_001,
            &add("n"),
            session("retrier", 1),
            T0 + 4 * MINUTE,
        );
        assert_eq!(retry, first);
        assert_eq!(codec::decode_outcome(&first), Ok(Outcome::Done(true)));
        assert_eq!(engine.read().unwrap().state_digest(), digest);
    }

    /// Past the window a session is dropped (by the stamps in the log, so on every
    /// replica at the same entry): a retry then is a new write, applied again.
    #[test]
    fn a_session_past_the_window_is_dropped_and_a_retry_applies_again() {
        let (mut m, _) = machine();
        let add = command(
            1,
            HashRingOp::AddNode {
                node_id: "n".into(),
            },
        );
        let remove = command(
            1,
            HashRingOp::RemoveNode {
                node_id: "n".into(),
            },
        );
        apply_at(&mut m, 1, &add, None, 0);
        let first = apply_at(&mut m, 2, &remove, session("c", 1), T0);
        assert_eq!(codec::decode_outcome(&first), Ok(Outcome::Done(true)));
        apply_at(&mut m, 3, &add, session("other", 1), T0 + SESSION_WINDOW_MS);
        assert!(m.sessions.holds("c"), "kept through the whole window");
        apply_at(
            &mut m,
            4,
            &add,
            session("other", 2),
            T0 + SESSION_WINDOW_MS + 1,
        );
        assert!(!m.sessions.holds("c"), "dropped once the window has passed");
        // The retry is new now: the node was added back, so removing it applies again.
        let late = apply_at(
            &mut m,
            5,
            &remove,
            session("c", 1),
            T0 + SESSION_WINDOW_MS + 2,
        );
        assert_eq!(codec::decode_outcome(&late), Ok(Outcome::Done(true)));
        // A leader whose clock is behind does not move the sessions' clock back.
        apply_at(&mut m, 6, &add, session("d", 1), T0);
        assert!(
            m.sessions.holds("c"),
            "recorded at the sessions' clock, not the stamp"
        );
    }

    /// Memory stays bounded by refusing: with every session within its window, a write
    /// needing a new one is not applied and answers "sessions full"; known clients go
    /// on, and once the oldest ages out a new client is admitted.
    #[test]
    fn full_sessions_refuse_new_clients_until_one_ages_out() {
        let (mut m, engine) = machine();
        m.sessions = sessions::Sessions::with_limits(3, 1 << 20);
        let store = |key: &str| command(1, HashRingOp::StoreKey { key: key.into() });
        apply_at(
            &mut m,
            1,
            &command(
                1,
                HashRingOp::AddNode {
                    node_id: "n".into(),
                },
            ),
            None,
            0,
        );
        for (i, client) in ["a", "b", "c"].into_iter().enumerate() {
            apply_at(
                &mut m,
                2 + i as u64,
                &store(client),
                session(client, 1),
                T0 + i as i64,
            );
        }
        let digest = engine.read().unwrap().state_digest();
        let refused = apply_at(&mut m, 5, &store("d"), session("d", 1), T0 + MINUTE);
        assert_eq!(
            codec::decode_outcome(&refused),
            Err(CodecError::SessionsFull { limit: 3 })
        );
        assert_eq!(engine.read().unwrap().state_digest(), digest, "not applied");
        // A known client's next write replaces its own session.
        let next = apply_at(&mut m, 6, &store("a2"), session("a", 2), T0 + MINUTE);
        assert!(codec::decode_outcome(&next).is_ok());
        // "b" ages out (first seen at T0 + 1): "d" is admitted.
        let admitted = apply_at(
            &mut m,
            7,
            &store("d"),
            session("d", 1),
            T0 + 1 + SESSION_WINDOW_MS + 1,
        );
        assert!(codec::decode_outcome(&admitted).is_ok());
        assert!(!m.sessions.holds("b") && m.sessions.holds("d"));
        assert_eq!(m.sessions.len(), 3);
    }

    /// A version-1 snapshot (sessions without times) still restores; its sessions count
    /// as first seen at the first stamp applied after it.
    #[test]
    fn a_version_1_or_2_snapshot_restores_with_its_sessions() {
        let (m, _engine) = machine();
        let add = command(
            1,
            HashRingOp::AddNode {
                node_id: "n".into(),
            },
        );
        let (mut m, engine) = (m, _engine);
        let first = apply(&mut m, 1, &add, session("c1", 3));
        // Version 1: the engine bytes, then the sessions without clock or times.
        let current = m.snapshot();
        let engine_bytes = engine.read().unwrap().snapshot();
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&(engine_bytes.len() as u64).to_be_bytes());
        v1.extend_from_slice(&engine_bytes);
        // Version 2: the engine bytes, then the sessions as version 3 holds them.
        let mut v2 = vec![2u8];
        v2.extend_from_slice(&(engine_bytes.len() as u64).to_be_bytes());
        v2.extend_from_slice(&engine_bytes);
        m.sessions.encode_into(&mut v2);
        let (mut from_v2, _) = machine();
        from_v2.restore(&v2).unwrap();
        assert_eq!(
            from_v2.snapshot(),
            current,
            "version 2 restores the same state"
        );
        v1.extend_from_slice(&1u64.to_be_bytes());
        v1.extend_from_slice(&1u64.to_be_bytes()); // index
        v1.extend_from_slice(&3u64.to_be_bytes()); // seq
        v1.extend_from_slice(&2u64.to_be_bytes());
        v1.extend_from_slice(b"c1");
        v1.extend_from_slice(&(first.len() as u64).to_be_bytes());
        v1.extend_from_slice(&first);
        let (mut restored, _) = machine();
        restored.restore(&v1).unwrap();
        assert_eq!(
            restored.snapshot(),
            current,
            "the same state as the current writer's"
        );
        assert_eq!(
            apply_at(&mut restored, 2, &add, session("c1", 3), T0),
            first
        );
        assert_eq!(
            apply_at(
                &mut restored,
                3,
                &add,
                session("c1", 3),
                T0 + SESSION_WINDOW_MS
            ),
            first,
            "first seen at the first stamp"
        );
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
        assert_eq!(
            restored.snapshot(),
            snapshot,
            "a restored machine writes the same bytes"
        );
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

    /// The end of a stream whose checksum does not match: every byte, then an error.
    struct FailsAtTheEnd<'a>(&'a [u8]);

    impl std::io::Read for FailsAtTheEnd<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "checksum mismatch",
                ));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Issue 15: the state is swapped in only once the whole stream was read, so a
    /// checksum failing at its end leaves the machine as it was; a damaged sessions
    /// length cannot ask for unbounded memory.
    #[test]
    fn a_stream_failing_at_its_end_or_oversized_changes_nothing() {
        let (mut source, _) = machine();
        let add = command(
            1,
            HashRingOp::AddNode {
                node_id: "n".into(),
            },
        );
        apply(&mut source, 1, &add, session("c1", 1));
        let bytes = source.snapshot();
        assert_eq!(bytes[0], MACHINE_SNAPSHOT_VERSION);

        let (mut target, target_engine) = machine();
        let empty = target.snapshot();
        let digest = target_engine.read().unwrap().state_digest();
        assert!(target.restore_from(&mut FailsAtTheEnd(&bytes)).is_err());
        assert_eq!(target_engine.read().unwrap().state_digest(), digest);
        assert_eq!(target.snapshot(), empty, "sessions unchanged too");

        let mut oversized = bytes.clone();
        oversized[1..9].copy_from_slice(&(MAX_SESSIONS_ENCODED + 1).to_be_bytes());
        assert!(matches!(
            target.restore(&oversized),
            Err(MachineSnapshotError::Sessions(_))
        ));
        target.restore(&bytes).unwrap();
        assert_eq!(target.snapshot(), bytes);
    }

    #[test]
    fn the_leader_stamps_timestamp_zero_once() {
        let (m, _) = machine();
        let zero = codec::encode_entry(
            &command(0, HashRingOp::StoreKey { key: "k".into() }),
            session("c", 1).as_ref(),
        );
        let (stamped, kept_session) = codec::decode_entry(&m.prepare(zero).unwrap()).unwrap();
        assert!(stamped.timestamp > 0);
        assert_eq!(kept_session, session("c", 1));
        let fixed = codec::encode(&command(5, HashRingOp::StoreKey { key: "k".into() }));
        let prepared = m.prepare(fixed.clone()).unwrap();
        assert_eq!(
            codec::decode_entry(&prepared).unwrap(),
            codec::decode_entry(&fixed).unwrap(),
            "only the leader's quotas are added"
        );
        assert_eq!(m.prepare(prepared.clone()), Ok(prepared), "stamped once");
    }

    /// Issue #20: a command a peer forwards skips the client port's checks; the leader
    /// refuses what the client port would (naming the field), and a replica that finds
    /// one in its log skips it instead of applying it.
    #[test]
    fn a_command_the_client_port_refuses_is_never_proposed_nor_applied() {
        let (mut m, engine) = machine();
        let long = "k".repeat(validate::MAX_ID_BYTES + 1);
        let day_ahead = clock::resolve_timestamp(0) + 2 * validate::MAX_CLOCK_AHEAD_MS;
        let batch = |n: usize| HashRingOp::BatchOperations {
            operations: vec![
                clockwise_engine::KeyOperation {
                    kind: clockwise_engine::KeyOperationKind::Store,
                    key: "k".into(),
                };
                n
            ],
        };
        let refused = [
            (
                command(1, HashRingOp::StoreKey { key: long.clone() }),
                None,
                "key:",
            ),
            (
                command(
                    1,
                    HashRingOp::AddNode {
                        node_id: String::new(),
                    },
                ),
                None,
                "node_id:",
            ),
            (
                command(
                    1,
                    HashRingOp::AddNodeWithReplicas {
                        node_id: "n".into(),
                        num_replicas: -1,
                    },
                ),
                None,
                "num_replicas:",
            ),
            (
                command(1, batch(validate::MAX_BATCH_OPERATIONS + 1)),
                None,
                "operations:",
            ),
            (
                command(
                    1,
                    HashRingOp::SetCapacity {
                        node_id: "n".into(),
                        capacity: -2,
                    },
                ),
                None,
                "capacity:",
            ),
            (
                command(
                    1,
                    HashRingOp::StoreKeyWithTtl {
                        key: "k".into(),
                        ttl_ms: -1,
                    },
                ),
                None,
                "ttl_ms:",
            ),
            (
                command(
                    1,
                    HashRingOp::Backup {
                        max_backups: u32::MAX,
                    },
                ),
                None,
                "max_backups:",
            ),
            (
                Command {
                    ring: long.clone(),
                    ..command(1, HashRingOp::StoreKey { key: "k".into() })
                },
                None,
                "ring:",
            ),
            (
                command(-1, HashRingOp::StoreKey { key: "k".into() }),
                None,
                "timestamp:",
            ),
            (
                command(1, HashRingOp::StoreKey { key: "k".into() }),
                session(&"c".repeat(validate::MAX_CLIENT_ID_BYTES + 1), 1),
                validate::CLIENT_ID_METADATA,
            ),
        ];
        let before = engine.read().unwrap().digest();
        for (index, (c, s, field)) in refused.iter().enumerate() {
            let entry = codec::encode_entry(c, s.as_ref());
            let why = m.prepare(entry.clone()).expect_err(field);
            assert!(why.starts_with(field), "{field}: {why}");
            assert!(matches!(
                codec::decode_entry(&entry),
                Err(CodecError::Refused(_))
            ));
            assert_eq!(
                m.apply(1 + index as u64, &entry),
                Vec::<u8>::new(),
                "{field}"
            );
        }
        assert_eq!(engine.read().unwrap().digest(), before, "nothing applied");
        // The clock check is the leader's alone (replicas must decide alike).
        let ahead = codec::encode(&command(
            day_ahead,
            HashRingOp::StoreKey { key: "k".into() },
        ));
        assert!(m
            .prepare(ahead.clone())
            .unwrap_err()
            .starts_with("timestamp:"));
        assert!(codec::decode(&ahead).is_ok());
        // At the caps: accepted.
        let key = "k".repeat(validate::MAX_ID_BYTES);
        let fine = codec::encode(&command(1, HashRingOp::StoreKey { key }));
        assert!(m.prepare(fine).is_ok());
        assert!(m
            .prepare(codec::encode(&command(
                1,
                batch(validate::MAX_BATCH_OPERATIONS)
            )))
            .is_ok());
    }

    #[test]
    fn every_replica_applies_an_entry_within_the_quotas_its_leader_wrote() {
        let small = Quotas {
            max_nodes_per_ring: 1,
            ..Quotas::default()
        };
        let (leader, _) = machine();
        let leader = leader.with_quotas(small);
        // A replica configured otherwise applies what the entry says, not its own flags.
        let (mut replica, _) = machine();
        let add = |name: &str| {
            command(
                1,
                HashRingOp::AddNode {
                    node_id: name.into(),
                },
            )
        };
        // A forwarding peer's own quotas are replaced by the leader's.
        let forged = codec::encode_entry_within(&add("a"), None, 0, &Quotas::UNLIMITED);
        let (.., quotas) = codec::decode_entry_within(&leader.prepare(forged).unwrap()).unwrap();
        assert_eq!(quotas, small);
        let first = replica.apply(1, &leader.prepare(codec::encode(&add("a"))).unwrap());
        assert_eq!(codec::decode_outcome(&first), Ok(Outcome::Done(true)));
        let second = replica.apply(2, &leader.prepare(codec::encode(&add("b"))).unwrap());
        assert!(matches!(
            codec::decode_outcome(&second),
            Err(CodecError::QuotaExceeded(refused)) if refused.limit == 1
        ));
        // An entry from before quotas carries none and is applied without any.
        let old = replica.apply(3, &codec::encode(&add("c")));
        assert_eq!(codec::decode_outcome(&old), Ok(Outcome::Done(true)));
    }
}
