//! A ring's saved backups: `Backup` and `Restore` of one namespace.
//!
//! Apart from `namespace` because a backup is the ring's canonical encoding
//! (`snapshot`), which itself reads namespaces: this module depends on both, neither on it.

use super::namespace::Namespace;
use super::snapshot;

impl Namespace {
    /// Saves the ring's state at `timestamp` (the caller advanced to it), keeping at most
    /// `max_backups` (the oldest saved goes first). Answers how many keys it holds.
    pub(crate) fn backup(&mut self, timestamp: i64, max_backups: usize) -> i64 {
        // Remaining TTLs as of the ring's clock: a backup at an older timestamp sees the
        // ring as of the clock, and must not lengthen anyone's life.
        let state = snapshot::ring_state_bytes(self, timestamp.max(self.latest));
        self.backups.push((timestamp, state));
        let excess = self.backups.len().saturating_sub(max_backups.max(1));
        self.backups.drain(..excess);
        self.placement.len() as i64
    }

    /// Replaces the ring's state with the latest backup saved at or before
    /// `backup_timestamp` (equal timestamps: the first saved), its items expiring their
    /// remaining TTL after `timestamp`; the caller purges afterwards. `None` (nothing changed) when there is none;
    /// otherwise how many keys it restored.
    pub(crate) fn restore(&mut self, timestamp: i64, backup_timestamp: i64) -> Option<i64> {
        let (_, state) = self
            .backups
            .iter()
            .filter(|(saved, _)| *saved <= backup_timestamp)
            .fold(
                None,
                |best: Option<&(i64, Vec<u8>)>, candidate| match best {
                    Some(b) if b.0 >= candidate.0 => Some(b),
                    _ => Some(candidate),
                },
            )?;
        let restored = snapshot::ring_state_from(state, timestamp)
            .expect("a backup this engine encoded decodes");
        let count = restored.placement.len() as i64;
        let (latest, backups) = (self.latest, std::mem::take(&mut self.backups));
        *self = restored;
        self.latest = latest;
        self.backups = backups;
        // The caller purges: what died before `timestamp` must first supersede state
        // kept outside the namespace (a ChatRouter's stale sizes).
        Some(count)
    }
}
