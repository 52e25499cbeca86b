//! Proposals: a write accepted on the leader, the request ids (in entry contexts) that
//! match an applied entry or a read answer to the caller waiting for it, and failing
//! whatever is in flight when leadership is lost or the driver stops.

use raft::StateRole;
use tokio::sync::oneshot;

use super::{Driver, ProposeError};
use crate::state_machine::StateMachine;

impl<S: StateMachine> Driver<S> {
    /// Proposes `data` on the leader; `reply` is answered when the entry is applied (or
    /// now, when refused).
    pub(super) fn propose(
        &mut self,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, ProposeError>>,
    ) {
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
        match self.node.propose(self.context(id), data) {
            Ok(()) => {
                crate::timeline!("propose", index = self.node.raft.raft_log.last_index());
                self.pending.insert(id, reply);
            }
            // A leader drops a proposal while it hands leadership over, or when
            // its uncommitted entries are at their limit (followers lagging).
            Err(_) if self.node.raft.lead_transferee.is_none() => {
                let _ = reply.send(Err(ProposeError::Busy));
            }
            Err(_) => {
                let _ = reply.send(Err(ProposeError::NotLeader { leader: None }));
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
