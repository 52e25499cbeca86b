//! The replicated state machine: the engine fed by the raft log.
//!
//! - [`codec`]: the log's wire format for commands and outcomes (prost), with the
//!   range checks every replica applies to what it decodes.
//! - `sessions`: per-client retry deduplication (a retried write applies once).
//! - [`envelope`]: the byte layout of a state-machine snapshot (engine + sessions).
//! - [`clock`]: the leader's clock, stamped into commands sent with timestamp 0.
//!
//! [`EngineMachine`] implements `clockwise_cluster::StateMachine`: `prepare` on the
//! leader (stamp time, fill defaults), `apply` on every replica (deterministic: no
//! clock, no randomness), `snapshot`/`restore` through the envelope.

pub mod clock;
pub mod codec;
pub mod envelope;
mod sessions;

use std::sync::{Arc, PoisonError, RwLock};

use clockwise_cluster::StateMachine;
use clockwise_engine::{ChatRouterOp, Engine, HashRingOp, Op};

pub use envelope::MachineSnapshotError;
use envelope::{Reader, MACHINE_SNAPSHOT_VERSION, TRUNCATED};
use sessions::Sessions;
pub use sessions::{MAX_SESSIONS, MAX_SESSION_BYTES};

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

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(m.sessions.len(), MAX_SESSIONS);
        assert!(!m.sessions.holds("c0"), "the oldest writer is forgotten");
        assert!(m.sessions.holds(&format!("c{MAX_SESSIONS}")));
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
