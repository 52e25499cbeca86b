//! Linearizable reads (raft's ReadIndex): asked here, confirmed by a quorum through
//! raft's read states, answered once the apply index reaches the confirmed index;
//! requests raft never answers expire.
//!
//! Reads share ReadIndex requests: raft-rs broadcasts a heartbeat round per request, so
//! a leader keeps at most one round in flight, and the reads that arrive meanwhile wait
//! for it to end and share the next (etcd's read loop batches the same way): 64
//! concurrent reads cost a round or two, not 64, and a busy leader sends a round per
//! round trip, not per pass of its loop. Each read still waits for a quorum
//! confirmation that began after it arrived, so it is as linearizable as alone.

use std::time::{Duration, Instant};

use raft::{ReadState, StateRole};
use tokio::sync::oneshot;

use super::{Driver, ProposeError};

/// Where a read's answer goes.
pub(super) type ReadReply = oneshot::Sender<Result<(), ProposeError>>;
use crate::state_machine::StateMachine;

/// How long a ReadIndex request may go unanswered by raft before it is failed.
const READ_EXPIRY: Duration = Duration::from_millis(500);

impl<S: StateMachine> Driver<S> {
    /// Queues a read for this pass's ReadIndex request ([`Self::flush_reads`]); `reply`
    /// is answered once this node has applied up to the confirmed index (or now, when
    /// raft would drop the request).
    pub(super) fn read_index(&mut self, reply: ReadReply) {
        let raft = &self.node.raft;
        let no_leader = raft.leader_id == 0;
        let fresh_leader = raft.state == StateRole::Leader && !raft.commit_to_current_term();
        if no_leader || fresh_leader {
            // raft would drop it; let the caller retry shortly.
            let leader = Some(raft.leader_id).filter(|&id| id != 0);
            let _ = reply.send(Err(ProposeError::NotLeader { leader }));
            return;
        }
        self.queued_reads.push(reply);
    }

    /// Asks raft to confirm the commit index with a quorum, once for every read queued
    /// so far, unless a round is in flight on this leader (they go when it ends).
    /// Answers whether it asked.
    pub(super) fn flush_reads(&mut self) -> bool {
        if self.queued_reads.is_empty() {
            return false;
        }
        // Not on a follower (it forwards its request to the leader) nor on a node that
        // stepped down: a round raft dropped would hold the reads until it expires.
        if !self.reads.is_empty() && self.node.raft.state == StateRole::Leader {
            return false;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.node.read_index(self.context(id));
        crate::timeline!("read_index", reads = self.queued_reads.len());
        self.stats.read_index_requests.inc();
        let replies = std::mem::take(&mut self.queued_reads);
        self.reads.insert(id, (Instant::now(), replies));
        true
    }

    /// Takes raft's answers to this run's reads: each waits for its index to be applied.
    pub(super) fn confirm_reads(&mut self, states: Vec<ReadState>) {
        for state in states {
            if let Some((_, replies)) = self
                .request_id(&state.request_ctx)
                .and_then(|id| self.reads.remove(&id))
            {
                crate::timeline!("read.confirmed", index = state.index);
                self.confirmed_reads
                    .extend(replies.into_iter().map(|reply| (state.index, reply)));
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
            for reply in self.reads.remove(&id).into_iter().flat_map(|(_, r)| r) {
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
        if !ready.is_empty() {
            crate::timeline!("read.answered", reads = ready.len());
        }
        for (_, reply) in ready {
            let _ = reply.send(Ok(()));
        }
    }
}
