//! The topology changes this replica applies, for `Watch` streams: published by
//! [`super::EngineMachine::apply`] while it holds the engine's write lock, so a watcher
//! that reads a ring's topology under the read lock and subscribes in the same breath
//! misses no change and sees none twice.
//!
//! Bounded: the last [`HISTORY_LEN`] changes are kept for watchers resuming from a
//! revision (older start revisions get the whole topology again, marked resync), and
//! live changes go through one broadcast ring of [`LIVE_BUFFER`]; a watcher that falls
//! further behind than that is resynced, so a slow watcher costs its cursor, not a
//! queue of its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use clockwise_engine::{Engine, RingKind, Topology, TopologyChange};
use tokio::sync::{broadcast, watch};

/// Changes kept for watchers that resume from a revision.
pub const HISTORY_LEN: usize = 4096;

/// Changes a live watcher may fall behind before it is resynced.
pub const LIVE_BUFFER: usize = 1024;

/// One applied change of one ring.
#[derive(Debug)]
pub struct FeedChange {
    /// The log index it applied at.
    pub revision: u64,
    pub kind: RingKind,
    pub ring: String,
    pub change: TopologyChange,
}

/// What live watchers receive.
#[derive(Clone, Debug)]
pub enum FeedEvent {
    Change(Arc<FeedChange>),
    /// A snapshot replaced the whole state: every watcher starts over.
    Reset,
}

#[derive(Debug, Default)]
struct History {
    changes: VecDeque<Arc<FeedChange>>,
    /// Every change after this revision is in `changes`; `None` until the first
    /// apply after a snapshot restore (or ever, for changes before this process).
    complete_after: Option<u64>,
}

/// How a watch starts.
#[derive(Debug)]
pub enum Start {
    /// The whole topology at `revision` (`resync`: the watcher asked to resume from a
    /// revision this node no longer holds the changes after).
    Topology {
        revision: u64,
        topology: Topology,
        resync: bool,
    },
    /// The retained changes after the watcher's start revision, oldest first; the
    /// watcher is current as of `revision`.
    Changes {
        revision: u64,
        changes: Vec<Arc<FeedChange>>,
    },
}

#[derive(Debug)]
pub struct TopologyFeed {
    history: Mutex<History>,
    live: broadcast::Sender<FeedEvent>,
    /// The last log index applied (or restored), for progress messages and waits.
    applied: watch::Sender<u64>,
}

impl Default for TopologyFeed {
    fn default() -> Self {
        TopologyFeed {
            history: Mutex::default(),
            live: broadcast::channel(LIVE_BUFFER).0,
            applied: watch::channel(0).0,
        }
    }
}

impl TopologyFeed {
    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the entry at `index` applied. Call under the engine's write lock
    /// when the entry changed the engine.
    pub(crate) fn applied(&self, index: u64) {
        let mut history = self.history();
        if history.complete_after.is_none() {
            history.complete_after = Some(index.saturating_sub(1));
        }
        drop(history);
        self.applied.send_if_modified(|applied| {
            let moved = index > *applied;
            *applied = (*applied).max(index);
            moved
        });
    }

    /// Publishes a change applied at `revision`. Call under the engine's write lock.
    pub(crate) fn publish(
        &self,
        revision: u64,
        kind: RingKind,
        ring: &str,
        change: TopologyChange,
    ) {
        let change = Arc::new(FeedChange {
            revision,
            kind,
            ring: ring.to_owned(),
            change,
        });
        let mut history = self.history();
        if history.changes.len() == HISTORY_LEN {
            let dropped = history.changes.pop_front().expect("full");
            history.complete_after = Some(dropped.revision);
        }
        history.changes.push_back(change.clone());
        drop(history);
        // No receiver is not an error: nobody watches.
        let _ = self.live.send(FeedEvent::Change(change));
    }

    /// A snapshot replaced the state as of `index`. Call under the engine's write lock.
    pub(crate) fn reset(&self, index: u64) {
        let mut history = self.history();
        history.changes.clear();
        history.complete_after = Some(index);
        drop(history);
        self.applied.send_replace(index);
        let _ = self.live.send(FeedEvent::Reset);
    }

    /// The last log index this replica applied.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Follows the applied index (progress messages, waits for a start revision).
    pub fn follow_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Starts a watch of one ring: where it starts, and the live changes after it.
    /// Holds the engine's read lock while it reads the topology (O(virtual nodes)) and
    /// subscribes, so no change applies in between.
    pub fn subscribe(
        &self,
        engine: &RwLock<Engine>,
        kind: RingKind,
        ring: &str,
        start_revision: u64,
    ) -> (Start, broadcast::Receiver<FeedEvent>) {
        let engine = engine.read().unwrap_or_else(PoisonError::into_inner);
        let live = self.live.subscribe();
        let revision = self.applied_index();
        let history = self.history();
        let resumable = start_revision > 0
            && history
                .complete_after
                .is_some_and(|complete| start_revision >= complete);
        let start = if resumable {
            Start::Changes {
                revision: revision.max(start_revision),
                changes: history
                    .changes
                    .iter()
                    .filter(|c| c.revision > start_revision && c.kind == kind && c.ring == ring)
                    .cloned()
                    .collect(),
            }
        } else {
            Start::Topology {
                revision,
                topology: engine.topology(kind, ring),
                resync: start_revision > 0,
            }
        };
        (start, live)
    }

    /// The whole topology of a ring now, for a watcher that lost changes.
    pub fn resync(&self, engine: &RwLock<Engine>, kind: RingKind, ring: &str) -> (u64, Topology) {
        let engine = engine.read().unwrap_or_else(PoisonError::into_inner);
        (self.applied_index(), engine.topology(kind, ring))
    }

    /// Live watchers (a metric).
    pub fn watchers(&self) -> usize {
        self.live.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clockwise_engine::TopologyNode;

    fn added(id: &str) -> TopologyChange {
        TopologyChange::NodeAdded(TopologyNode {
            id: id.into(),
            replicas: 1,
            positions: vec![1],
            limit: -1,
        })
    }

    #[test]
    fn a_watcher_resumes_from_retained_changes_and_resyncs_past_them() {
        let feed = TopologyFeed::default();
        let engine = RwLock::new(Engine::new());
        for index in 1..=(HISTORY_LEN as u64 + 10) {
            feed.applied(index);
            feed.publish(index, RingKind::HashRing, "r", added(&format!("n{index}")));
        }
        let last = HISTORY_LEN as u64 + 10;
        let (start, _) = feed.subscribe(&engine, RingKind::HashRing, "r", last - 3);
        match start {
            Start::Changes { revision, changes } => {
                assert_eq!(revision, last);
                let revisions: Vec<u64> = changes.iter().map(|c| c.revision).collect();
                assert_eq!(revisions, vec![last - 2, last - 1, last]);
            }
            other => panic!("expected the retained changes, got {other:?}"),
        }
        let (start, _) = feed.subscribe(&engine, RingKind::HashRing, "r", 5);
        assert!(
            matches!(start, Start::Topology { resync: true, revision, .. } if revision == last),
            "changes after 5 were dropped: {start:?}"
        );
        let (start, _) = feed.subscribe(&engine, RingKind::ChatRouter, "r", last - 3);
        assert!(
            matches!(start, Start::Changes { ref changes, .. } if changes.is_empty()),
            "another kind's changes are not this ring's: {start:?}"
        );
        feed.reset(last + 100);
        let (start, _) = feed.subscribe(&engine, RingKind::HashRing, "r", last);
        assert!(matches!(start, Start::Topology { resync: true, .. }));
        let (start, _) = feed.subscribe(&engine, RingKind::HashRing, "r", last + 100);
        assert!(matches!(start, Start::Changes { revision, .. } if revision == last + 100));
    }

    #[test]
    fn a_live_watcher_past_the_buffer_learns_it_lagged() {
        let feed = TopologyFeed::default();
        let engine = RwLock::new(Engine::new());
        let (_, mut live) = feed.subscribe(&engine, RingKind::HashRing, "r", 0);
        for index in 1..=(LIVE_BUFFER as u64 + 1) {
            feed.publish(index, RingKind::HashRing, "r", added(&format!("n{index}")));
        }
        assert!(matches!(
            live.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        ));
        assert_eq!(feed.watchers(), 1);
    }
}
