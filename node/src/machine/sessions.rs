//! Retry deduplication: per client, the last applied sequence number and its outcome, so
//! a retried write applies once. Derived from the log, so every replica holds the same
//! sessions; kept by age on the leader's clock (each session write carries the leader's
//! `proposed_at_ms`, and the sessions' clock is the latest stamp applied, so every
//! replica drops the same sessions at the same entry); carried in snapshots.
//!
//! The guarantee (docs/api.md): a retry within [`SESSION_WINDOW_MS`] of the entry that
//! first applied its `(client, seq)` answers that outcome and applies nothing. Memory is
//! bounded by refusing, not forgetting: a write that would need a new session while
//! [`MAX_SESSIONS`] are held (or [`MAX_SESSION_BYTES`] of ids and outcomes), none old
//! enough to drop, is not applied and answers "sessions full" (`RESOURCE_EXHAUSTED`).

use std::collections::{BTreeMap, HashMap};

use super::codec::{self, Session};
use super::envelope::{MachineSnapshotError, Reader, TRUNCATED};

/// How long a session is kept after the entry that recorded it, on the leaders' clock:
/// a retry within it applies at most once.
pub const SESSION_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Most clients whose last write is remembered; beyond it, writes needing a new
/// session are refused until one ages out.
pub const MAX_SESSIONS: usize = 100_000;
/// Most bytes of remembered client ids and outcomes (a batch's outcome can be large);
/// beyond it, new writes with a session are refused until sessions age out (one
/// outcome may pass it: an outcome's size is known only once applied).
pub const MAX_SESSION_BYTES: usize = 64 << 20;

/// One client's last applied write.
struct Held {
    seq: u64,
    /// The log index that applied it.
    index: u64,
    /// The sessions' clock when it was applied (ms).
    first_seen: i64,
    outcome: Vec<u8>,
}

/// Per client: the last applied sequence number, its log index, when it was first
/// applied and its outcome. Replicated by construction (it is derived from the log).
pub(crate) struct Sessions {
    /// Looked up only, never iterated (iteration goes through `by_index`).
    by_client: HashMap<String, Held>,
    /// Clients by the index of their last write: also first-seen order, since the clock
    /// never goes back.
    by_index: BTreeMap<u64, String>,
    /// Summed length of the remembered client ids and outcomes.
    pub(crate) bytes: usize,
    /// The sessions' clock: the latest leader stamp applied (ms; 0 before any).
    now: i64,
    max_sessions: usize,
    max_bytes: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            by_client: HashMap::new(),
            by_index: BTreeMap::new(),
            bytes: 0,
            now: 0,
            max_sessions: MAX_SESSIONS,
            max_bytes: MAX_SESSION_BYTES,
        }
    }
}

impl Sessions {
    /// Sessions with other bounds (tests).
    #[cfg(test)]
    pub(crate) fn with_limits(max_sessions: usize, max_bytes: usize) -> Self {
        Sessions {
            max_sessions,
            max_bytes,
            ..Sessions::default()
        }
    }

    /// How many clients are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Whether `client`'s last write is remembered.
    #[cfg(test)]
    pub(crate) fn holds(&self, client: &str) -> bool {
        self.by_client.contains_key(client)
    }

    /// Moves the clock to a leader's stamp (never back) and drops the sessions older
    /// than the window. Sessions recorded before any stamp (an older log or snapshot)
    /// count as first seen at the first stamp.
    pub(crate) fn advance(&mut self, stamp: i64) {
        if stamp <= self.now {
            return;
        }
        if self.now == 0 {
            for held in self.by_client.values_mut() {
                held.first_seen = stamp;
            }
        }
        self.now = stamp;
        while let Some((_, client)) = self.by_index.first_key_value() {
            let held = &self.by_client[client];
            if self.now - held.first_seen <= SESSION_WINDOW_MS {
                break;
            }
            let (_, client) = self.by_index.pop_first().expect("a first entry");
            if let Some(held) = self.by_client.remove(&client) {
                self.bytes -= client.len() + held.outcome.len();
            }
        }
    }

    /// The answer already given to this `(client, seq)`, or the refusal of an old seq.
    pub(crate) fn replay(&self, session: &Session) -> Option<Vec<u8>> {
        let held = self.by_client.get(&session.client_id)?;
        match session.seq.cmp(&held.seq) {
            std::cmp::Ordering::Equal => Some(held.outcome.clone()),
            std::cmp::Ordering::Less => Some(codec::encode_stale_sequence(held.seq)),
            std::cmp::Ordering::Greater => None,
        }
    }

    /// Whether a new write of `session` may be applied and recorded: `Err` holds the
    /// refusal to answer when the sessions are at their bound.
    pub(crate) fn admit(&self, session: &Session) -> Result<(), Vec<u8>> {
        let replaced = self
            .by_client
            .get(&session.client_id)
            .map(|held| session.client_id.len() + held.outcome.len());
        let full = match replaced {
            None => self.by_client.len() >= self.max_sessions || self.bytes >= self.max_bytes,
            Some(replaced) => self.bytes - replaced >= self.max_bytes,
        };
        if full {
            Err(codec::encode_sessions_full(self.max_sessions as u64))
        } else {
            Ok(())
        }
    }

    /// Records an applied write (admitted first) as first seen now.
    pub(crate) fn record(&mut self, session: Session, index: u64, outcome: Vec<u8>) {
        if let Some(old) = self.by_client.get(&session.client_id) {
            self.by_index.remove(&old.index);
            self.bytes -= session.client_id.len() + old.outcome.len();
        }
        self.by_index.insert(index, session.client_id.clone());
        self.bytes += session.client_id.len() + outcome.len();
        self.by_client.insert(
            session.client_id,
            Held {
                seq: session.seq,
                index,
                first_seen: self.now,
                outcome,
            },
        );
    }
}

impl Sessions {
    /// Appends the clock, then the sessions in log-index order (deterministic on every
    /// replica), each with when it was first seen (layout version 2).
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.now.to_be_bytes());
        out.extend_from_slice(&(self.by_index.len() as u64).to_be_bytes());
        for (index, client) in &self.by_index {
            let held = &self.by_client[client];
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&held.seq.to_be_bytes());
            out.extend_from_slice(&held.first_seen.to_be_bytes());
            out.extend_from_slice(&(client.len() as u64).to_be_bytes());
            out.extend_from_slice(client.as_bytes());
            out.extend_from_slice(&(held.outcome.len() as u64).to_be_bytes());
            out.extend_from_slice(&held.outcome);
        }
    }

    /// Decodes sessions written by `encode_into` (`version` 2), or by version 1 (no
    /// clock, no first-seen times: every session counts as first seen at the first
    /// stamp applied after it, as on a replica that applied the same older log).
    pub(crate) fn decode(bytes: &[u8], version: u8) -> Result<Self, MachineSnapshotError> {
        let mut reader = Reader(bytes);
        let mut sessions = Sessions::default();
        let stamped = version >= 2;
        if stamped {
            sessions.now = reader.u64()? as i64;
        }
        for _ in 0..reader.u64()? {
            let index = reader.u64()?;
            let seq = reader.u64()?;
            let first_seen = if stamped { reader.u64()? as i64 } else { 0 };
            let len = usize::try_from(reader.u64()?).map_err(|_| TRUNCATED)?;
            let client = std::str::from_utf8(reader.take(len)?)
                .map_err(|_| MachineSnapshotError::Sessions("a client id is not UTF-8"))?
                .to_owned();
            let len = usize::try_from(reader.u64()?).map_err(|_| TRUNCATED)?;
            let outcome = reader.take(len)?.to_vec();
            sessions.bytes += client.len() + outcome.len();
            let held = Held {
                seq,
                index,
                first_seen,
                outcome,
            };
            if sessions.by_index.insert(index, client.clone()).is_some()
                || sessions.by_client.insert(client, held).is_some()
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
