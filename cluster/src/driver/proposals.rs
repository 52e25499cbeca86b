//! Proposals: a write accepted on the leader, the request ids (in entry contexts) that
//! match an applied entry or a read answer to the caller waiting for it, and failing
//! whatever is in flight when leadership is lost or the driver stops.

use raft::eraftpb::{Entry, Message, MessageType};
use raft::StateRole;
use tokio::sync::oneshot;

use super::{Driver, ProposeError};
use crate::state_machine::StateMachine;

/// Where a write's answer goes: the state machine's result once applied.
pub(super) type ProposalReply = oneshot::Sender<Result<Vec<u8>, ProposeError>>;

impl<S: StateMachine> Driver<S> {
    /// Queues `data` for this pass's proposal on the leader ([`Self::flush_proposals`]);
    /// `reply` is answered when the entry is applied (or now, when refused).
    pub(super) fn propose(&mut self, data: Vec<u8>, reply: ProposalReply) {
        if data.is_empty() {
            // An empty entry is raft's no-op: applied, it answers no one, so the caller
            // would wait out its deadline. Refused before it reaches the log.
            let _ = reply.send(Err(ProposeError::Refused(
                "command: must not be empty".into(),
            )));
            return;
        }
        if self.node.raft.state != StateRole::Leader {
            let leader = Some(self.node.raft.leader_id).filter(|&id| id != 0);
            let _ = reply.send(Err(ProposeError::NotLeader { leader }));
            return;
        }
        let data = match self.machine.prepare(data) {
            Ok(data) => data,
            Err(why) => {
                let _ = reply.send(Err(ProposeError::Invalid(why)));
                return;
            }
        };
        let id = self.next_request;
        self.next_request += 1;
        let entry = Entry {
            data: data.into(),
            context: self.context(id).into(),
            ..Entry::default()
        };
        self.proposals.push((entry, id, reply));
    }

    /// Hands raft every write queued in this pass as one proposal. raft sends each
    /// follower an append per proposal, and each answers it: proposed one by one, 16
    /// writes in a pass were 16 appends to each follower and 16 acknowledgements back,
    /// where one of each carries them all.
    pub(super) fn flush_proposals(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        let queued = std::mem::take(&mut self.proposals);
        if self.node.raft.state != StateRole::Leader {
            // Stepped down since they were queued (a message in the same pass).
            let leader = Some(self.node.raft.leader_id).filter(|&id| id != 0);
            for (_, _, reply) in queued {
                let _ = reply.send(Err(ProposeError::NotLeader { leader }));
            }
            return;
        }
        // raft takes or drops a proposal whole, by its uncommitted-bytes limit (always
        // taking one when nothing is uncommitted). Each write is measured against it
        // here as if proposed alone, in order, so the limit refuses the same writes
        // batched or not.
        let mut uncommitted = self.node.raft.uncommitted_size();
        let mut entries = Vec::with_capacity(queued.len());
        let mut replies = Vec::with_capacity(queued.len());
        for (entry, id, reply) in queued {
            let size = entry.data.len();
            if uncommitted == 0 || uncommitted.saturating_add(size) <= self.max_uncommitted {
                uncommitted = uncommitted.saturating_add(size);
                entries.push(entry);
                replies.push((id, reply));
            } else {
                let _ = reply.send(Err(ProposeError::Busy));
            }
        }
        if entries.is_empty() {
            return;
        }
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgPropose);
        message.from = self.node.raft.id;
        message.set_entries(entries.into());
        // What `RawNode::propose` does for one entry.
        match self.node.raft.step(message) {
            Ok(()) => {
                crate::timeline!("propose", index = self.node.raft.raft_log.last_index());
                self.pending.extend(replies);
            }
            // A leader drops proposals while it hands leadership over, or when its
            // uncommitted entries are at their limit (followers lagging).
            Err(_) if self.node.raft.lead_transferee.is_none() => {
                for (_, reply) in replies {
                    let _ = reply.send(Err(ProposeError::Busy));
                }
            }
            Err(_) => {
                for (_, reply) in replies {
                    let _ = reply.send(Err(ProposeError::NotLeader { leader: None }));
                }
            }
        }
    }

    /// A request's context: this run's nonce, then its id. Ids restart with every run
    /// and differ between nodes, so an entry or read answer is ours only if it carries
    /// our nonce (another run's or another node's request must never get our reply).
    pub(super) fn context(&self, id: u64) -> Vec<u8> {
        let mut context = Vec::with_capacity(16);
        context.extend_from_slice(&self.nonce.to_be_bytes());
        context.extend_from_slice(&id.to_be_bytes());
        context
    }

    /// The id of a request this run made, from its context.
    pub(super) fn request_id(&self, context: &[u8]) -> Option<u64> {
        let bytes: [u8; 16] = context.try_into().ok()?;
        let (nonce, id) = bytes.split_at(8);
        (u64::from_be_bytes(nonce.try_into().ok()?) == self.nonce)
            .then(|| u64::from_be_bytes(id.try_into().expect("8 bytes")))
    }

    /// Answers every request in flight with `error`, except that a proposal or change
    /// already handed to raft gets `Unknown` when the driver stops.
    pub(super) fn fail_pending(&mut self, error: ProposeError) {
        // A proposal already handed to raft may still be committed: its outcome is unknown.
        let proposal_error = match error {
            ProposeError::Stopped => ProposeError::Unknown,
            ref e => e.clone(),
        };
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(proposal_error.clone()));
        }
        // Not handed to raft yet: their outcome is known.
        for (_, _, reply) in self.proposals.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, reply) in self.pending_changes.drain() {
            let _ = reply.send(Err(proposal_error.clone()));
        }
        // Reads not asked yet stay queued when this leader steps down (the next pass
        // refuses or forwards them), and are refused with the rest when it stops.
        let queued = match error {
            ProposeError::Stopped => self.read_queue.close(),
            _ => Vec::new(),
        };
        let asked = self.reads.drain().flat_map(|(_, (_, replies))| replies);
        for reply in asked.chain(queued) {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, reply) in self.confirmed_reads.drain(..) {
            let _ = reply.send(Err(error.clone()));
        }
    }
}
