//! Linearizable reads (raft's ReadIndex): asked here, confirmed by a quorum through
//! raft's read states, answered once the apply index reaches the confirmed index;
//! requests raft never answers expire.

use std::time::{Duration, Instant};

use raft::{ReadState, StateRole};
use tokio::sync::oneshot;

use super::{Driver, ProposeError};
use crate::state_machine::StateMachine;

/// How long a ReadIndex request may go unanswered by raft before it is failed.
const READ_EXPIRY: Duration = Duration::from_millis(500);

impl<S: StateMachine> Driver<S> {
    /// Asks raft to confirm the commit index with a quorum; `reply` is answered once
    /// this node has applied up to it (or now, when raft would drop the request).
    pub(super) fn read_index(&mut self, reply: oneshot::Sender<Result<(), ProposeError>>) {
        let raft = &self.node.raft;
        let no_leader = raft.leader_id == 0;
        let fresh_leader = raft.state == StateRole::Leader && !raft.commit_to_current_term();
        if no_leader || fresh_leader {
            // raft would drop it; let the caller retry shortly.
            let leader = Some(raft.leader_id).filter(|&id| id != 0);
            let _ = reply.send(Err(ProposeError::NotLeader { leader }));
            return;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.node.read_index(self.context(id));
        self.reads.insert(id, (Instant::now(), reply));
    }

    /// Takes raft's answers to this run's reads: each waits for its index to be applied.
    pub(super) fn confirm_reads(&mut self, states: Vec<ReadState>) {
        for state in states {
            if let Some((_, reply)) = self
                .request_id(&state.request_ctx)
                .and_then(|id| self.reads.remove(&id))
            {
                self.confirmed_reads.push((state.index, reply));
            }
        }
    }

    /// Fails ReadIndex requests raft never answered, so callers ask again.
    pub(super) fn expire_reads(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, (asked, _))| now.duration_since(*asked) > READ_EXPIRY)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some((_, reply)) = self.reads.remove(&id) {
                let _ = reply.send(Err(ProposeError::Unknown));
            }
        }
    }

    /// Answers the confirmed reads whose index is applied.
    pub(super) fn answer_reads(&mut self) {
        let applied = self.node.raft.raft_log.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.confirmed_reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.confirmed_reads = waiting;
        for (_, reply) in ready {
            let _ = reply.send(Ok(()));
        }
    }
}
