//! Retry deduplication: per client, the last applied sequence number and its outcome, so
//! a retried write applies once. Derived from the log, so every replica holds the same
//! sessions; evicted deterministically by log index; carried in snapshots.

use std::collections::{BTreeMap, HashMap};

use super::codec::{self, Session};
use super::envelope::{MachineSnapshotError, Reader, TRUNCATED};

/// Most clients whose last write is remembered for deduplication; beyond it the client
/// that wrote longest ago is forgotten.
pub const MAX_SESSIONS: usize = 10_000;
/// Most bytes of remembered outcomes (a batch's outcome can be large), same eviction.
pub const MAX_SESSION_BYTES: usize = 64 << 20;

/// Per client: the last applied sequence number, its log index and its outcome. Replicated
/// by construction (it is derived from the log); evicts deterministically by log index.
#[derive(Default)]
pub(crate) struct Sessions {
    by_client: HashMap<String, (u64, u64, Vec<u8>)>,
    by_index: BTreeMap<u64, String>,
    /// Summed length of the remembered outcomes.
    pub(crate) bytes: usize,
}

impl Sessions {
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

    /// The answer already given to this `(client, seq)`, or the refusal of an old seq.
    pub(crate) fn replay(&self, session: &Session) -> Option<Vec<u8>> {
        let (seq, _, outcome) = self.by_client.get(&session.client_id)?;
        match session.seq.cmp(seq) {
            std::cmp::Ordering::Equal => Some(outcome.clone()),
            std::cmp::Ordering::Less => Some(codec::encode_stale_sequence(*seq)),
            std::cmp::Ordering::Greater => None,
        }
    }

    pub(crate) fn record(&mut self, session: Session, index: u64, outcome: Vec<u8>) {
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

impl Sessions {
    /// Appends the sessions in log-index order (deterministic on every replica).
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
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

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, MachineSnapshotError> {
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
