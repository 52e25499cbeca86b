//! The Ready loop: one `Ready` handled in the order raft-rs documents, with the one
//! change our rule asks for (style rule 8: the commit index is stored with or before
//! applying): send the leader's messages, install a snapshot, persist entries and hard
//! state in one synced batch, send the messages that waited for that write, apply the
//! committed entries, advance, persist the new commit index, apply what it committed; a
//! step-down fails what is still pending only after all of that was applied. Then the
//! apply of committed entries to the state machine and the membership.

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, Entry, EntryType, Message, Snapshot};
use raft::StateRole;

use super::{Driver, ProposeError};
use crate::state_machine::StateMachine;
use crate::storage::{ReadyWrite, StoreError};

/// A pass of the Ready loop at least this long is logged with its parts.
const SLOW_READY: std::time::Duration = std::time::Duration::from_millis(100);

impl<S: StateMachine> Driver<S> {
    /// Handles raft's Ready, if it has one. A storage error is returned for the run
    /// loop to stop the node: the log is never retried in place.
    pub(super) fn on_ready(&mut self) -> Result<(), StoreError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let began = std::time::Instant::now();
        let mut ready = self.node.ready();
        if !ready.messages().is_empty() {
            crate::timeline!("ready.sent", messages = ready.messages().len());
            self.send(ready.take_messages());
        }
        // Entries proposed here and not applied by the end of this Ready may be
        // overwritten by the new leader: their proposers are told "outcome unknown", but
        // only after the entries this Ready commits are applied (and answered), so a
        // write that did apply is never reported unknown (issue #17).
        let stepped_down = ready
            .ss()
            .is_some_and(|ss| ss.raft_state != StateRole::Leader);
        self.confirm_reads(ready.take_read_states());
        let installed = if ready.snapshot().is_empty() {
            None
        } else {
            Some(self.install_snapshot(ready.snapshot())?)
        };
        // The hard state (with the commit index that covers this Ready's committed
        // entries) is written before they are applied (style rule 8): nothing applied
        // here (an answer given, a membership change stored) is ever beyond the commit
        // index a restart finds. raft-rs's example applies first, overlapping the apply
        // with the fsync; the entries are already in this node's log either way.
        let persist_began = std::time::Instant::now();
        self.store.write(ReadyWrite {
            snapshot: installed.as_ref().map(Snapshot::get_metadata),
            entries: ready.entries(),
            hard_state: ready.hs(),
            members: installed.as_ref().map(|_| &self.members),
            conf_index: installed.as_ref().map(|s| s.get_metadata().index),
            sync: ready.must_sync(),
            ..ReadyWrite::default()
        })?;
        if let Some(snapshot) = installed {
            // The log now starts after it: older snapshots are of no use.
            self.store
                .prune_snapshots_later(snapshot.get_metadata().index);
        }
        let persisted = persist_began.elapsed();
        crate::timeline!("ready.persisted", entries = ready.entries().len());
        if !ready.persisted_messages().is_empty() {
            crate::timeline!(
                "ready.sent_persisted",
                messages = ready.persisted_messages().len()
            );
            self.send(ready.take_persisted_messages());
        }
        let apply_began = std::time::Instant::now();
        self.apply(ready.take_committed_entries())?;
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hard_state = self.node.raft.hard_state();
            hard_state.commit = commit;
            self.store.write(ReadyWrite {
                hard_state: Some(&hard_state),
                ..ReadyWrite::default()
            })?;
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        let applied = apply_began.elapsed();
        crate::timeline!("ready.applied");
        self.node.advance_apply();
        self.answer_reads();
        if stepped_down {
            self.fail_pending(ProposeError::Unknown);
        }
        let snapshot_began = std::time::Instant::now();
        self.maybe_snapshot()?;
        let took = began.elapsed();
        if took >= SLOW_READY {
            // Every write waits for this pass: say where its time went.
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                persist_ms = persisted.as_millis() as u64,
                apply_ms = applied.as_millis() as u64,
                snapshot_ms = snapshot_began.elapsed().as_millis() as u64,
                "a raft Ready took long"
            );
        }
        self.publish_status();
        Ok(())
    }

    /// Hands `messages` to the transport, noting the commit index each tells a follower
    /// (`commits.rs`).
    fn send(&mut self, messages: Vec<Message>) {
        if !messages.is_empty() {
            self.announcements.sent(&messages);
            self.transport.send(messages);
        }
    }

    /// Applies committed entries in log order: writes to the state machine (answering
    /// this run's proposer), membership changes to raft and the members' addresses.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), StoreError> {
        for entry in entries {
            match entry.get_entry_type() {
                // A new leader's no-op.
                EntryType::EntryNormal if entry.data.is_empty() => {
                    self.machine.applied_other(entry.index);
                }
                EntryType::EntryNormal => {
                    self.bytes_since_snapshot += entry.data.len() as u64;
                    self.retention.applied(entry.index, entry.data.len());
                    let timer = self.stats.apply_seconds.start_timer();
                    let result = self.machine.apply(entry.index, &entry.data);
                    timer.observe_duration();
                    if let Some(reply) = self
                        .request_id(&entry.context)
                        .and_then(|id| self.pending.remove(&id))
                    {
                        let _ = reply.send(Ok(result));
                    }
                }
                EntryType::EntryConfChange => {
                    let change = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(|_| StoreError::Corrupt("conf change entry"))?;
                    let outcome = self.apply_member_change(entry.index, &change)?;
                    self.machine.applied_other(entry.index);
                    // Callers read the new membership from the status.
                    self.publish_status();
                    if let Some(reply) = self
                        .request_id(&entry.context)
                        .and_then(|id| self.pending_changes.remove(&id))
                    {
                        let _ = reply.send(outcome.map(|()| entry.index));
                    }
                }
                // Only single changes (v1) are ever proposed here.
                EntryType::EntryConfChangeV2 => {
                    return Err(StoreError::Corrupt("unexpected joint membership change"));
                }
            }
        }
        Ok(())
    }
}
