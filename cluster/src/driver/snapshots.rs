//! Snapshots: building one, installing one from the leader, restoring one on start, and
//! raft's reports of snapshots sent to followers.
//!
//! After applying, once the log since the last snapshot passes `snapshot_entries` or
//! `snapshot_bytes` (or raft wanted to send one the stored snapshot cannot serve), the
//! driver encodes the state machine with the members' addresses ([`SnapshotData`]),
//! stores it, and compacts the log up to `log_retain` entries before it. A snapshot
//! from the leader is checked, restored into the state machine and stored before the
//! log records it. On start, the newest stored snapshot the log can continue from is
//! restored and only later entries are replayed.

use raft::eraftpb::Snapshot;
use raft::SnapshotStatus;

use super::Driver;
use crate::snapshot::SnapshotData;
use crate::state_machine::StateMachine;
use crate::storage::{LogStore, ReadyWrite, StoreError};

/// Restores the newest stored snapshot the log can continue from into `machine`;
/// answers its index (0: none, the whole log is applied).
pub(super) fn restore_latest_snapshot<S: StateMachine>(
    store: &LogStore,
    machine: &mut S,
) -> Result<u64, StoreError> {
    use raft::Storage as _;
    let truncated = store
        .first_index()
        .map_err(|e| StoreError::Raft(e.to_string()))?
        - 1;
    // A snapshot beyond the stored commit index was written just before a crash
    // interrupted its install or compaction: the log (and an older snapshot) still
    // hold everything, so it is not used.
    let commit = store.hard_state()?.commit;
    store.discard_snapshots_after(commit.max(truncated))?;
    let Some(snapshot) = store.latest_snapshot_within(truncated, commit.max(truncated))? else {
        if truncated > 0 {
            return Err(StoreError::Corrupt(
                "the log is compacted but no stored snapshot covers it",
            ));
        }
        return Ok(0);
    };
    let data = SnapshotData::decode(&snapshot.data)
        .map_err(|e| StoreError::Raft(format!("stored snapshot: {e}")))?;
    machine
        .restore(&data.state)
        .map_err(|e| StoreError::Raft(format!("restoring the stored snapshot: {e}")))?;
    Ok(snapshot.get_metadata().index)
}

impl<S: StateMachine> Driver<S> {
    /// Tells raft how a snapshot sent to `to` ended (it resumes or retries).
    pub(super) fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        self.node.report_snapshot(to, status);
    }

    /// Installs a snapshot from the leader: checks it, restores the state machine,
    /// takes its members and stores it (the caller records it in the log).
    pub(super) fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<Snapshot, StoreError> {
        // The transport checked it on arrival; a mismatch here is a bug: stop.
        let data = SnapshotData::decode(&snapshot.data)
            .map_err(|e| StoreError::Raft(format!("received snapshot: {e}")))?;
        self.machine
            .restore(&data.state)
            .map_err(|e| StoreError::Raft(format!("restoring the received snapshot: {e}")))?;
        self.store.save_snapshot(snapshot)?;
        for (&id, address) in &data.members {
            if id != self.node.raft.id && self.members.get(&id) != Some(address) {
                self.transport.add_peer(id, address);
            }
        }
        for &id in self.members.keys() {
            if !data.members.contains_key(&id) {
                self.transport.remove_peer(id);
            }
        }
        self.members = data.members;
        let index = snapshot.get_metadata().index;
        self.applied_conf_index = index;
        self.snapshot_index = index;
        self.bytes_since_snapshot = 0;
        tracing::info!(index, "installed a snapshot from the leader");
        Ok(snapshot.clone())
    }

    /// The state machine, the members' addresses and the membership as of the applied
    /// index.
    pub(super) fn current_snapshot(&self) -> Result<Snapshot, StoreError> {
        let applied = self.node.raft.raft_log.applied;
        if applied < self.applied_conf_index {
            // Still replaying entries the stored membership already reflects: a snapshot
            // now would pair this state with a later membership.
            return Err(StoreError::Raft(
                "the node is still replaying its log; retry shortly".into(),
            ));
        }
        let term = self
            .node
            .raft
            .raft_log
            .term(applied)
            .map_err(|e| StoreError::Raft(e.to_string()))?;
        let data = SnapshotData {
            members: self.members.clone(),
            state: self.machine.snapshot(),
        };
        let mut snapshot = Snapshot {
            data: data.encode().into(),
            ..Snapshot::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(self.node.raft.prs().conf().to_conf_state());
        Ok(snapshot)
    }

    /// Builds a snapshot at the applied index and compacts the log when enough was
    /// applied since the last one, or when raft wants one to send.
    pub(super) fn maybe_snapshot(&mut self) -> Result<(), StoreError> {
        let applied = self.node.raft.raft_log.applied;
        if applied < self.applied_conf_index {
            return Ok(()); // replaying: see `current_snapshot`
        }
        let wanted = self.store.take_snapshot_wanted();
        let due = applied - self.snapshot_index.min(applied) >= self.snapshot_entries
            || self.bytes_since_snapshot >= self.snapshot_bytes;
        if applied <= self.snapshot_index || !(due || wanted) {
            return Ok(());
        }
        let raft_error = |e: raft::Error| StoreError::Raft(e.to_string());
        let snapshot = self.current_snapshot()?;
        self.store.save_snapshot(&snapshot)?;
        // A restart uses a snapshot only up to the stored commit index: store it (synced)
        // with the compaction, and only then drop the older snapshot.
        let hard_state = self.node.raft.hard_state();
        let compact_to = applied.saturating_sub(self.log_retain);
        if compact_to >= self.node.raft.raft_log.first_index() {
            let term = self
                .node
                .raft
                .raft_log
                .term(compact_to)
                .map_err(raft_error)?;
            self.store.compact(compact_to, term, Some(&hard_state))?;
        } else {
            self.store.write(ReadyWrite {
                hard_state: Some(&hard_state),
                sync: true,
                ..ReadyWrite::default()
            })?;
        }
        self.store.prune_snapshots(applied)?;
        self.snapshot_index = applied;
        self.bytes_since_snapshot = 0;
        tracing::info!(
            index = applied,
            compacted_to = compact_to,
            "took a snapshot"
        );
        Ok(())
    }
}
