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
//!
//! Reads reach the driver through a [`ReadQueue`] of their own, which wakes the driver
//! thread only when it would not look at the queue anyway: while a round is in flight
//! on a leader the reads just queue (the round's end is a Ready, after which the run
//! loop takes them), instead of each waking the thread to be held there. At 64
//! concurrent reads those futex wakes were ~5% of the members' CPU.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use raft::{ReadState, StateRole};
use tokio::sync::oneshot;

use super::{Driver, ProposeError};
use crate::state_machine::StateMachine;

/// Where a read's answer goes.
pub(super) type ReadReply = oneshot::Sender<Result<(), ProposeError>>;

/// How long a ReadIndex request may go unanswered by raft before it is failed.
const READ_EXPIRY: Duration = Duration::from_millis(500);

/// Reads handed over by the handle and not yet taken by the driver; shared by both.
pub(super) struct ReadQueue {
    state: Mutex<Queued>,
    /// Reads queued before more are refused as busy.
    limit: usize,
}

#[derive(Default)]
struct Queued {
    replies: Vec<ReadReply>,
    /// The driver will take the queue without being woken: a wake is on its way, or a
    /// round is in flight on this leader.
    driver_will_look: bool,
    /// The driver has stopped: reads are refused.
    closed: bool,
}

impl ReadQueue {
    pub(super) fn new(limit: usize) -> ReadQueue {
        ReadQueue {
            state: Mutex::default(),
            limit: limit.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queued> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a read; answers whether the caller must wake the driver for it.
    pub(super) fn push(&self, reply: ReadReply) -> Result<bool, ProposeError> {
        let mut queued = self.lock();
        if queued.closed {
            return Err(ProposeError::Stopped);
        }
        if queued.replies.len() >= self.limit {
            return Err(ProposeError::Busy);
        }
        queued.replies.push(reply);
        Ok(!std::mem::replace(&mut queued.driver_will_look, true))
    }

    /// Refuses reads from now on; answers the ones still queued.
    pub(super) fn close(&self) -> Vec<ReadReply> {
        let mut queued = self.lock();
        queued.closed = true;
        std::mem::take(&mut queued.replies)
    }
}

impl<S: StateMachine> Driver<S> {
    /// Asks raft to confirm the commit index with a quorum, once for every read queued
    /// so far, unless a round is in flight on this leader (they go when it ends).
    /// Each read is answered once this node has applied up to the confirmed index (or
    /// now, when raft would drop the request). Answers whether it asked.
    pub(super) fn flush_reads(&mut self) -> bool {
        if self.holding_reads() {
            return false;
        }
        let replies = std::mem::take(&mut self.read_queue.lock().replies);
        !replies.is_empty() && self.ask_read_index(replies)
    }

    /// Before the run loop waits: marks whether the next read must wake this thread
    /// (not while a round in flight holds the reads: its end is a Ready, after which
    /// the loop flushes them), and answers whether reads are queued and free to go now.
    pub(super) fn settle_reads(&mut self) -> bool {
        let holding = self.holding_reads();
        let mut queued = self.read_queue.lock();
        let waiting = !holding && !queued.replies.is_empty();
        queued.driver_will_look = holding || waiting;
        waiting
    }

    /// Whether reads wait for the round in flight. Not on a follower (it forwards its
    /// request to the leader) nor on a node that stepped down: a round raft dropped
    /// would hold the reads until it expires.
    fn holding_reads(&self) -> bool {
        !self.reads.is_empty() && self.node.raft.state == StateRole::Leader
    }

    /// One ReadIndex request for `replies`; answers whether it was asked (no: raft
    /// would drop it, and the callers are told to retry shortly).
    fn ask_read_index(&mut self, replies: Vec<ReadReply>) -> bool {
        let raft = &self.node.raft;
        let no_leader = raft.leader_id == 0;
        let fresh_leader = raft.state == StateRole::Leader && !raft.commit_to_current_term();
        if no_leader || fresh_leader {
            let leader = Some(raft.leader_id).filter(|&id| id != 0);
            for reply in replies {
                let _ = reply.send(Err(ProposeError::NotLeader { leader }));
            }
            return false;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.node.read_index(self.context(id));
        crate::timeline!("read_index", reads = replies.len());
        self.stats.read_index_requests.inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_read_the_driver_is_not_looking_for_wakes_it() {
        let queue = ReadQueue::new(8);
        let (first, _first_answer) = oneshot::channel();
        let (second, _second_answer) = oneshot::channel();
        assert_eq!(queue.push(first), Ok(true));
        // The wake is on its way: the driver will take this one with the first.
        assert_eq!(queue.push(second), Ok(false));
        let mut queued = queue.lock();
        assert_eq!(queued.replies.len(), 2);
        // What `settle_reads` does before the driver waits with nothing held.
        queued.replies.clear();
        queued.driver_will_look = false;
        drop(queued);
        let (third, _third_answer) = oneshot::channel();
        assert_eq!(queue.push(third), Ok(true));
    }

    #[test]
    fn a_full_queue_is_busy_and_a_closed_one_stopped() {
        let queue = ReadQueue::new(1);
        let (first, mut first_answer) = oneshot::channel();
        let (second, _) = oneshot::channel();
        assert_eq!(queue.push(first), Ok(true));
        assert_eq!(queue.push(second), Err(ProposeError::Busy));
        let left = queue.close();
        assert_eq!(left.len(), 1);
        for reply in left {
            let _ = reply.send(Err(ProposeError::Stopped));
        }
        assert_eq!(first_answer.try_recv(), Ok(Err(ProposeError::Stopped)));
        let (third, _) = oneshot::channel();
        assert_eq!(queue.push(third), Err(ProposeError::Stopped));
    }
}
