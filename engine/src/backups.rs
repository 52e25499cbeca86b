//! A ring's saved backups: `Backup` and `Restore` of one namespace.
//!
//! Apart from `namespace` because a backup is the ring's canonical encoding
//! (`snapshot`), which itself reads namespaces: this module depends on both, neither on it.

use std::sync::Arc;

use super::digest;
use super::namespace::Namespace;
use super::snapshot;

/// One saved backup: its timestamp and the ring state (remaining TTLs in place of
/// expiries), canonically encoded: it is replicated state, equal on every replica.
#[derive(Clone, Debug)]
pub(crate) struct Backup {
    pub(crate) timestamp: i64,
    /// Shared, so that freezing the engine for a snapshot copies no backup.
    pub(crate) state: Arc<[u8]>,
    /// The digest hash of `state`, computed once when the backup is made or read.
    hash: u128,
}

impl Backup {
    pub(crate) fn new(timestamp: i64, state: Arc<[u8]>) -> Self {
        let hash = digest::bytes(&state);
        Backup {
            timestamp,
            state,
            hash,
        }
    }
}

/// A namespace's backups, oldest first, with their digest fact.
#[derive(Clone, Debug)]
pub(crate) struct Backups {
    list: Vec<Backup>,
    /// The digest fact of the whole list (O(backups) to recompute, on a change only).
    fact: u128,
}

impl Default for Backups {
    fn default() -> Self {
        Backups {
            list: Vec::new(),
            fact: digest::backups(std::iter::empty()),
        }
    }
}

impl Backups {
    pub(crate) fn list(&self) -> &[Backup] {
        &self.list
    }

    pub(crate) fn fact(&self) -> u128 {
        self.fact
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn recomputed_fact(&self) -> u128 {
        digest::backups(
            self.list
                .iter()
                .map(|b| (b.timestamp, digest::bytes(&b.state))),
        )
    }

    /// Appends `backup`, then keeps only the newest `keep` (at least one).
    pub(crate) fn push(&mut self, backup: Backup, keep: usize) {
        self.list.push(backup);
        let excess = self.list.len().saturating_sub(keep.max(1));
        self.list.drain(..excess);
        self.fact = digest::backups(self.list.iter().map(|b| (b.timestamp, b.hash)));
    }
}

impl Namespace {
    /// Saves the ring's state at `timestamp` (the caller advanced to it), keeping at most
    /// `max_backups` (the oldest saved goes first). Answers how many keys it holds.
    pub(crate) fn backup(&mut self, timestamp: i64, max_backups: usize) -> i64 {
        // Remaining TTLs as of the ring's clock: a backup at an older timestamp sees the
        // ring as of the clock, and must not lengthen anyone's life.
        let state = snapshot::ring_state_bytes(self, timestamp.max(self.latest));
        self.backups
            .push(Backup::new(timestamp, state.into()), max_backups);
        self.placement.len() as i64
    }

    /// Replaces the ring's state with the latest backup saved at or before
    /// `backup_timestamp` (equal timestamps: the first saved), its items expiring their
    /// remaining TTL after `timestamp`; the caller purges afterwards. `None` (nothing
    /// changed) when there is none, or it does not decode; otherwise how many keys it
    /// restored.
    pub(crate) fn restore(&mut self, timestamp: i64, backup_timestamp: i64) -> Option<i64> {
        let chosen = self
            .backups
            .list()
            .iter()
            .filter(|b| b.timestamp <= backup_timestamp)
            .fold(None, |best: Option<&Backup>, candidate| match best {
                Some(b) if b.timestamp >= candidate.timestamp => Some(b),
                _ => Some(candidate),
            })?;
        // A backup this engine made always decodes; one that came in a forged snapshot
        // may not (snapshots do not decode backups, to keep restarts fast): it restores
        // nothing, alike on every replica, rather than panic.
        let restored = snapshot::ring_state_from(&chosen.state, timestamp).ok()?;
        let count = restored.placement.len() as i64;
        let (latest, backups) = (self.latest, std::mem::take(&mut self.backups));
        // This replica's counts go on across a restore (they are not ring state).
        let churn = self.churn;
        // The restored namespace's digest facts were kept as it was decoded.
        *self = restored;
        self.latest = latest;
        self.backups = backups;
        self.churn = churn;
        // The caller purges: what died before `timestamp` must first supersede state
        // kept outside the namespace (a ChatRouter's stale sizes).
        Some(count)
    }
}
