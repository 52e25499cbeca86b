//! Telling followers the commit index, once per pass rather than once per advance.
//!
//! raft-rs by default sends every follower an append each time the leader's commit
//! index advances, empty when the follower already has the entries, and each is
//! answered. One client writing one key at a time thus costs each follower two appends
//! and two answers per write, where the append of the next write would have carried the
//! new commit index anyway: with raft's `skip_bcast_commit` the members spent ~23% less
//! CPU per one-client write (session 11), but an idle follower then learned a commit
//! only at the next heartbeat (up to two ticks), and its watchers with it.
//!
//! So raft skips that broadcast and the driver announces the commit index itself: when
//! a pass ends with a follower that holds every committed entry (replicating, not
//! paused) but was not sent the commit index, the driver broadcasts it
//! [`ANNOUNCE_AFTER`] later unless an append or heartbeat carried it meanwhile. Under
//! load the next append always comes first; idle, a follower learns a commit at most
//! that much later than before.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raft::eraftpb::{Message, MessageType};
use raft::StateRole;

use super::Driver;
use crate::state_machine::StateMachine;

/// How long a commit index may go untold to a follower that has its entries.
pub(super) const ANNOUNCE_AFTER: Duration = Duration::from_millis(2);

/// The commit index each follower was sent, and when to broadcast it.
#[derive(Debug, Default)]
pub(super) struct Announcements {
    /// Per peer, the highest commit index an append or heartbeat sent to it carried.
    carried: BTreeMap<u64, u64>,
    /// When to broadcast the commit index, if no message carries it first.
    due: Option<Instant>,
}

impl Announcements {
    /// `messages` are being sent: notes the commit index each carries.
    pub(super) fn sent(&mut self, messages: &[Message]) {
        for message in messages {
            if matches!(
                message.get_msg_type(),
                MessageType::MsgAppend | MessageType::MsgHeartbeat
            ) {
                let carried = self.carried.entry(message.to).or_default();
                *carried = (*carried).max(message.commit);
            }
        }
    }

    /// The commit index sent to `peer` so far.
    fn carried(&self, peer: u64) -> u64 {
        self.carried.get(&peer).copied().unwrap_or(0)
    }

    /// Schedules a broadcast [`ANNOUNCE_AFTER`] `now` while `untold` (keeping one
    /// already scheduled), or cancels it.
    fn schedule(&mut self, untold: bool, now: Instant) {
        self.due = untold.then(|| self.due.unwrap_or(now + ANNOUNCE_AFTER));
    }

    /// When the run loop must wake for a broadcast, if one is scheduled.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether a broadcast is due at `now`; it is then no longer scheduled.
    fn take_due(&mut self, now: Instant) -> bool {
        self.due.take_if(|due| *due <= now).is_some()
    }
}

impl<S: StateMachine> Driver<S> {
    /// Before a pass's Ready: broadcasts the commit index if its announcement is due.
    pub(super) fn announce_commit(&mut self, now: Instant) {
        if self.announcements.take_due(now) && self.node.raft.state == StateRole::Leader {
            self.node.raft.bcast_append();
        }
    }

    /// After a pass: schedules an announcement while a follower that holds every
    /// committed entry was not sent the commit index (one lacking entries gets them in
    /// appends, which carry it; a paused one is sent nothing until it answers).
    pub(super) fn settle_commit(&mut self, now: Instant) {
        let raft = &self.node.raft;
        let committed = raft.raft_log.committed;
        let untold = raft.state == StateRole::Leader
            && raft.prs().iter().any(|(&id, progress)| {
                id != raft.id
                    && progress.matched >= committed
                    && !progress.is_paused()
                    && self.announcements.carried(id) < committed
            });
        self.announcements.schedule(untold, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: MessageType, to: u64, commit: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(kind);
        message.to = to;
        message.commit = commit;
        message
    }

    #[test]
    fn appends_and_heartbeats_carry_the_commit_index() {
        let mut announcements = Announcements::default();
        announcements.sent(&[
            message(MessageType::MsgAppend, 2, 7),
            message(MessageType::MsgHeartbeat, 3, 5),
            // Answers and votes carry nothing to a follower.
            message(MessageType::MsgAppendResponse, 2, 9),
            message(MessageType::MsgRequestVote, 3, 9),
            // An older append sent later does not lower it.
            message(MessageType::MsgAppend, 2, 6),
        ]);
        assert_eq!(
            (
                announcements.carried(2),
                announcements.carried(3),
                announcements.carried(4)
            ),
            (7, 5, 0)
        );
    }

    #[test]
    fn a_broadcast_is_due_once_after_the_delay_and_a_later_pass_does_not_push_it_back() {
        let start = Instant::now();
        let mut announcements = Announcements::default();
        announcements.schedule(true, start);
        announcements.schedule(true, start + Duration::from_millis(1));
        assert_eq!(announcements.due(), Some(start + ANNOUNCE_AFTER));
        assert!(!announcements.take_due(start + Duration::from_millis(1)));
        assert!(announcements.take_due(start + ANNOUNCE_AFTER));
        assert!(
            !announcements.take_due(start + ANNOUNCE_AFTER * 2),
            "only once"
        );
        assert_eq!(announcements.due(), None);
    }

    #[test]
    fn a_commit_carried_meanwhile_cancels_the_broadcast() {
        let start = Instant::now();
        let mut announcements = Announcements::default();
        announcements.schedule(true, start);
        announcements.schedule(false, start + Duration::from_millis(1));
        assert_eq!(announcements.due(), None);
        assert!(!announcements.take_due(start + ANNOUNCE_AFTER));
    }
}
