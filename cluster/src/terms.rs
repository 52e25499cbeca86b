//! The log's terms in memory, as runs (issue 15): `raft::Storage::term` is asked on
//! every append check and ReadIndex, and answering it from raft-engine read and decoded
//! a whole entry each time. [`crate::storage::LogStore`] keeps this index with every
//! append, tail replacement, compaction and snapshot install, and rebuilds it on open.

use std::collections::BTreeMap;

use raft::eraftpb::Entry;
use raft::StorageError;

/// The log's terms as runs: the first index of each term present, and the truncation
/// point. O(terms) memory; `term(i)` is a range lookup.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TermIndex {
    /// First index of each run of one term, with that term.
    pub(crate) runs: BTreeMap<u64, u64>,
    /// `(index, term)` of the last entry dropped from the log.
    truncated: (u64, u64),
    /// The last index in the log (the truncation point's when empty).
    last: u64,
}

impl TermIndex {
    /// Entries appended from `entries[0].index` on (replacing any tail from there).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let _ = self.runs.split_off(&first.index);
        for entry in entries {
            if self.runs.last_key_value().map(|(_, &t)| t) != Some(entry.term) {
                self.runs.insert(entry.index, entry.term);
            }
        }
        self.last = entries.last().map_or(self.last, |e| e.index);
    }

    /// The log now starts after `index` (of `term`).
    pub fn compact(&mut self, index: u64, term: u64) {
        if index >= self.last {
            self.runs.clear();
            self.last = index;
        } else if let Some((&start, &run_term)) = self.runs.range(..=index + 1).next_back() {
            let mut rest = self.runs.split_off(&(index + 1));
            if start <= index {
                rest.insert(index + 1, run_term);
            }
            self.runs = rest;
        }
        self.truncated = (index, term);
    }

    /// A snapshot at `index` replaced the whole log.
    pub fn install(&mut self, index: u64, term: u64) {
        self.runs.clear();
        self.truncated = (index, term);
        self.last = index;
    }

    /// The term of the entry at `index`.
    pub fn term(&self, index: u64) -> raft::Result<u64> {
        if index == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        if index < self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if index > self.last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        match self.runs.range(..=index).next_back() {
            Some((_, &term)) => Ok(term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }
}
