//! Membership: one change at a time, validated here on the leader; a new member joins
//! as a learner and the leader promotes it once its log has caught up. A committed
//! change is applied to raft, the members' addresses and the transport together.
//! Leadership transfer lives here too.

use raft::eraftpb::{ConfChange, ConfChangeType};
use raft::{ProgressState, StateRole};
use tokio::sync::oneshot;

use super::{Driver, MembershipChange, ProposeError};
use crate::member::MemberAddress;
use crate::state_machine::StateMachine;
use crate::storage::{ReadyWrite, StoreError};

/// A learner is promoted once its log is at most this many entries behind the leader's.
const PROMOTION_LAG: u64 = 64;

impl<S: StateMachine> Driver<S> {
    /// The leader's error for a request only a leader can serve.
    fn not_leader(&self) -> Option<ProposeError> {
        let raft = &self.node.raft;
        (raft.state != StateRole::Leader).then(|| ProposeError::NotLeader {
            leader: Some(raft.leader_id).filter(|&id| id != 0),
        })
    }

    /// Validates a membership change against the current configuration and proposes
    /// it; `reply` is answered when it is applied (or now, when refused).
    pub(super) fn propose_membership(
        &mut self,
        change: MembershipChange,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    ) -> Result<(), ProposeError> {
        let refused = |reply: oneshot::Sender<_>, error: ProposeError| {
            let _ = reply.send(Err(error.clone()));
            Err(error)
        };
        if let Some(error) = self.not_leader() {
            return refused(reply, error);
        }
        if self.node.raft.has_pending_conf() {
            return refused(
                reply,
                ProposeError::Conflict(
                    "another membership change is still being applied; retry shortly".into(),
                ),
            );
        }
        let conf = self.node.raft.prs().conf().to_conf_state();
        let is_member = |id: u64| conf.voters.contains(&id) || conf.learners.contains(&id);
        let mut cc = ConfChange::default();
        match change {
            MembershipChange::AddLearner { id, address } => {
                if id == 0 {
                    return refused(reply, ProposeError::Refused("id: must not be 0".into()));
                }
                if is_member(id) {
                    return refused(
                        reply,
                        ProposeError::Refused(format!("id: node {id} is already a member")),
                    );
                }
                if !address.is_valid() {
                    return refused(
                        reply,
                        ProposeError::Refused(format!(
                            "address: {:?} is not a host:port address",
                            address.encode()
                        )),
                    );
                }
                cc.set_change_type(ConfChangeType::AddLearnerNode);
                cc.node_id = id;
                // The log keeps the stored form.
                cc.context = address.encode().into_bytes().into();
            }
            MembershipChange::Remove { id } => {
                if !is_member(id) {
                    return refused(
                        reply,
                        ProposeError::Refused(format!("id: node {id} is not a member")),
                    );
                }
                if id == self.node.raft.id {
                    return refused(
                        reply,
                        ProposeError::Refused(format!(
                            "id: node {id} leads the group; transfer leadership to another \
                             member first (TransferLeader)"
                        )),
                    );
                }
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = id;
            }
        }
        let request = self.next_request;
        self.next_request += 1;
        match self.node.propose_conf_change(self.context(request), cc) {
            Ok(()) => {
                self.pending_changes.insert(request, reply);
                Ok(())
            }
            Err(e) => refused(reply, ProposeError::Conflict(e.to_string())),
        }
    }

    pub(super) fn transfer_leader(&mut self, target: u64) -> Result<(), ProposeError> {
        if let Some(error) = self.not_leader() {
            return Err(error);
        }
        if target == self.node.raft.id {
            return Ok(());
        }
        let conf = self.node.raft.prs().conf().to_conf_state();
        if !conf.voters.contains(&target) {
            return Err(ProposeError::Refused(format!(
                "target_id: node {target} is not a voting member"
            )));
        }
        self.node.transfer_leader(target);
        Ok(())
    }

    /// On the leader: promotes one learner whose log has caught up to a voter. One
    /// change at a time: nothing is proposed while another is unapplied (raft would
    /// turn the proposal into an empty entry).
    pub(super) fn promote_caught_up_learner(&mut self) {
        let raft = &self.node.raft;
        if raft.state != StateRole::Leader || raft.has_pending_conf() {
            return;
        }
        let last = raft.raft_log.last_index();
        let conf = raft.prs().conf().to_conf_state();
        // Caught up: it has acknowledged the latest membership change (its own
        // addition at the least, so a learner that never answered, with nothing matched,
        // is never promoted), it is not waiting for a snapshot, and it trails by at most
        // PROMOTION_LAG entries.
        let added_at = self.applied_conf_index;
        let caught_up = conf.learners.iter().copied().find(|&id| {
            raft.prs().get(id).is_some_and(|pr| {
                pr.recent_active
                    && pr.state != ProgressState::Snapshot
                    && pr.matched >= added_at
                    && pr.matched + PROMOTION_LAG >= last
            })
        });
        let Some(id) = caught_up else { return };
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = id;
        if let Some(address) = self.members.get(&id) {
            cc.context = address.encode().into_bytes().into();
        }
        // Not ours to answer: an empty context.
        if let Err(e) = self.node.propose_conf_change(Vec::new(), cc) {
            tracing::warn!(learner = id, error = %e, "cannot propose the promotion of a learner");
        }
    }

    /// Applies a committed membership change: raft's configuration, the members'
    /// addresses and the transport, persisted together. A change raft refuses (the
    /// same on every replica, as the configuration is) is skipped and answered.
    pub(super) fn apply_member_change(
        &mut self,
        index: u64,
        change: &ConfChange,
    ) -> Result<Result<(), ProposeError>, StoreError> {
        if index <= self.applied_conf_index {
            // Replaying the log after a restart: the stored configuration has it already.
            return Ok(Ok(()));
        }
        let conf_state = match self.node.apply_conf_change(change) {
            Ok(conf_state) => conf_state,
            Err(e) => {
                tracing::warn!(error = %e, index, "skipped a membership change raft refused");
                self.applied_conf_index = index;
                return Ok(Err(ProposeError::Refused(e.to_string())));
            }
        };
        let id = change.node_id;
        match change.get_change_type() {
            ConfChangeType::AddLearnerNode | ConfChangeType::AddNode => {
                if !change.context.is_empty() {
                    let address = MemberAddress::decode(&String::from_utf8_lossy(&change.context));
                    if id != self.node.raft.id {
                        self.transport.add_peer(id, &address);
                    }
                    self.members.insert(id, address);
                }
            }
            ConfChangeType::RemoveNode => {
                self.members.remove(&id);
                self.transport.remove_peer(id);
            }
        }
        self.applied_conf_index = index;
        self.store.write(ReadyWrite {
            conf_state: Some(&conf_state),
            conf_index: Some(index),
            members: Some(&self.members),
            sync: true,
            ..ReadyWrite::default()
        })?;
        Ok(Ok(()))
    }
}
