//! How much log a snapshot leaves behind it: the last `log_retain` entries, and never
//! more than `log_retain_bytes` of them, whichever keeps less.
//!
//! Entries are kept so that a follower lagging a little catches up from the log rather
//! than a whole snapshot. A count alone does not bound that log: at 10M keys loaded in
//! batches of 5,000 stores (~125 KB per entry) the 5,000 entries kept before the
//! snapshot were the whole log (~350 MB, never compacted), and a new member replayed all
//! of it instead of taking the snapshot. The sizes come from the entries this run
//! applied; entries it never saw (before a restart's snapshot) are not counted, so the
//! cut is never later than the byte bound allows among the entries it knows.

use std::collections::VecDeque;

/// The sizes of the last applied entries, enough to place a compaction.
pub(super) struct Retention {
    entries: u64,
    bytes: u64,
    /// (index, bytes) of the latest applied entries, oldest first; at most `entries`.
    applied: VecDeque<(u64, u64)>,
}

impl Retention {
    pub(super) fn new(entries: u64, bytes: u64) -> Retention {
        Retention {
            entries,
            bytes,
            applied: VecDeque::new(),
        }
    }

    /// Entry `index` of `bytes` was applied.
    pub(super) fn applied(&mut self, index: u64, bytes: usize) {
        self.applied.push_back((index, bytes as u64));
        while self.applied.len() as u64 > self.entries {
            self.applied.pop_front();
        }
    }

    /// The index to compact the log up to (inclusive) behind a snapshot at `snapshot`:
    /// entries after it are kept. 0 keeps everything.
    pub(super) fn compact_to(&self, snapshot: u64) -> u64 {
        let by_count = snapshot.saturating_sub(self.entries);
        let mut kept = 0u64;
        // Newest first: the first entry that would take the kept bytes past the bound
        // goes, and everything before it.
        let by_bytes = self
            .applied
            .iter()
            .rev()
            .filter(|(index, _)| *index <= snapshot)
            .find(|(_, bytes)| {
                kept += bytes;
                kept > self.bytes
            })
            .map_or(0, |(index, _)| *index);
        by_count.max(by_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(entries: u64, bytes: u64, sizes: &[(u64, usize)]) -> Retention {
        let mut retention = Retention::new(entries, bytes);
        for &(index, size) in sizes {
            retention.applied(index, size);
        }
        retention
    }

    #[test]
    fn small_entries_keep_the_count() {
        let sizes: Vec<_> = (1..=100).map(|i| (i, 10)).collect();
        // 10 entries of 10 bytes: well under the byte bound.
        assert_eq!(retention(10, 1 << 20, &sizes).compact_to(100), 90);
    }

    #[test]
    fn large_entries_keep_at_most_the_bytes() {
        let sizes: Vec<_> = (1..=100).map(|i| (i, 1000)).collect();
        // 3,500 bytes allowed: entries 98..=100 (3,000 bytes) stay, 97 would pass it.
        assert_eq!(retention(50, 3500, &sizes).compact_to(100), 97);
    }

    #[test]
    fn entries_after_the_snapshot_do_not_count() {
        let sizes: Vec<_> = (1..=100).map(|i| (i, 1000)).collect();
        // Snapshot at 90, entries up to 100 applied since: 88..=90 kept.
        assert_eq!(retention(50, 3500, &sizes).compact_to(90), 87);
    }

    #[test]
    fn unknown_entries_fall_back_to_the_count() {
        // A restart applied only 95..=100 (the snapshot covered the rest): their 600
        // bytes are under the bound, so the count decides.
        let sizes: Vec<_> = (95..=100).map(|i| (i, 100)).collect();
        assert_eq!(retention(20, 1000, &sizes).compact_to(100), 80);
        assert_eq!(retention(200, 1000, &sizes).compact_to(100), 0);
    }

    #[test]
    fn only_the_last_entries_are_remembered() {
        let mut retention = Retention::new(3, 1 << 20);
        for index in 1..=1000 {
            retention.applied(index, 1);
        }
        assert_eq!(retention.applied.len(), 3);
        assert_eq!(retention.compact_to(1000), 997);
    }
}
