//! `Watch` on both services: a ring's whole topology, then each change as this replica
//! applies it, each message with its revision (the log index it applied at), strictly
//! increasing on a stream.
//!
//! A stream is pulled by tonic as the caller reads: it holds a cursor in the
//! [`TopologyFeed`]'s broadcast ring and nothing else, so a slow watcher costs no
//! queue. One that falls more than [`LIVE_BUFFER`] changes behind, or whose node
//! installs a snapshot, gets the whole topology again marked `resync`. While other
//! writes apply, a progress message (at most one per [`PROGRESS_INTERVAL`]) says the
//! ring is unchanged up to a newer revision, so a view can tell it is current. Streams
//! end with UNAVAILABLE when the node drains, so they never hold a shutdown open.
//!
//! [`LIVE_BUFFER`]: crate::machine::topology_feed::LIVE_BUFFER

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clockwise_engine::{Engine, PositionSpace, RingKind, Topology, TopologyChange, TopologyNode};
use clockwise_proto::common::v1 as common;
use futures::Stream;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tonic::Status;

use crate::machine::topology_feed::{FeedEvent, Start, TopologyFeed};

/// Most often a watcher hears "unchanged up to revision N" while other writes apply.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// How long a watch asked to start at a revision this node has not applied yet waits
/// for it before answering UNAVAILABLE (the caller tries a node that has it).
pub const START_WAIT: Duration = Duration::from_secs(5);

/// The stream a `Watch` handler answers.
pub type WatchStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Watch figures for `/metrics`.
#[derive(Debug, Default)]
pub struct WatchCounters {
    /// Streams open now.
    pub open: AtomicU64,
    /// Streams started.
    pub started: AtomicU64,
    /// Whole topologies sent again because a stream lost changes.
    pub resyncs: AtomicU64,
}

/// What the `Watch` handlers of both services share.
#[derive(Clone)]
pub struct WatchSource {
    engine: Arc<RwLock<Engine>>,
    feed: Arc<TopologyFeed>,
    draining: watch::Receiver<bool>,
    counters: Arc<WatchCounters>,
}

/// One service's `WatchResponse`: the two packages have their own, alike.
pub trait WatchMessage: Send + 'static {
    fn topology(revision: u64, topology: common::RingTopology, resync: bool) -> Self;
    fn change(revision: u64, change: common::TopologyChange) -> Self;
    fn progress(revision: u64) -> Self;
}

impl WatchSource {
    pub fn new(
        engine: Arc<RwLock<Engine>>,
        feed: Arc<TopologyFeed>,
        draining: watch::Receiver<bool>,
        counters: Arc<WatchCounters>,
    ) -> Self {
        WatchSource {
            engine,
            feed,
            draining,
            counters,
        }
    }

    /// Opens a watch of `ring` (already validated) from `start_revision` (0: now).
    ///
    /// # Errors
    /// UNAVAILABLE when `start_revision` is ahead of this node and it does not catch
    /// up within [`START_WAIT`], or when the node is draining.
    pub async fn open<M: WatchMessage>(
        &self,
        kind: RingKind,
        ring: &str,
        start_revision: u64,
    ) -> Result<WatchStream<M>, Status> {
        if *self.draining.borrow() {
            return Err(draining());
        }
        let mut applied = self.feed.follow_applied();
        if *applied.borrow() < start_revision {
            let caught_up = tokio::time::timeout(
                START_WAIT,
                applied.wait_for(|&applied| applied >= start_revision),
            )
            .await;
            if !matches!(caught_up, Ok(Ok(_))) {
                return Err(Status::unavailable(format!(
                    "start_revision: this node has applied up to revision {}, behind {start_revision}; \
                     watch from another node",
                    self.feed.applied_index()
                )));
            }
        }
        let (start, live) = self
            .feed
            .subscribe(&self.engine, kind, ring, start_revision);
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        let mut cursor = Cursor {
            source: self.clone(),
            kind,
            ring: ring.to_owned(),
            live,
            applied,
            draining: self.draining.clone(),
            pending: VecDeque::new(),
            last_sent: start_revision,
            progress_due: None,
            ended: false,
            _open: OpenGuard::new(self.counters.clone()),
        };
        match start {
            Start::Topology {
                revision,
                topology,
                resync,
            } => {
                if resync {
                    self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
                }
                cursor.last_sent = revision;
                cursor.pending.push_back(Ok(M::topology(
                    revision,
                    topology_to_proto(&topology),
                    resync,
                )));
            }
            Start::Changes { revision, changes } => {
                for change in changes {
                    cursor.push_change(change.revision, &change.change);
                }
                cursor.push_progress(revision);
            }
        }
        Ok(Box::pin(futures::stream::unfold(
            cursor,
            |mut cursor| async move {
                let message = cursor.next().await?;
                Some((message, cursor))
            },
        )))
    }
}

fn draining() -> Status {
    Status::unavailable("this node is shutting down; watch from another node")
}

/// Counts a stream as open for as long as it lives.
struct OpenGuard(Arc<WatchCounters>);

impl OpenGuard {
    fn new(counters: Arc<WatchCounters>) -> Self {
        counters.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(counters)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One stream's place in the feed.
struct Cursor<M> {
    source: WatchSource,
    kind: RingKind,
    ring: String,
    live: broadcast::Receiver<FeedEvent>,
    applied: watch::Receiver<u64>,
    draining: watch::Receiver<bool>,
    /// Messages ready to send, in order.
    pending: VecDeque<Result<M, Status>>,
    /// The revision of the last message queued: every later one is above it.
    last_sent: u64,
    /// When a progress message is due (the applied index moved since the last one).
    progress_due: Option<Instant>,
    /// The stream sent its last message (an error).
    ended: bool,
    _open: OpenGuard,
}

impl<M: WatchMessage> Cursor<M> {
    fn push_change(&mut self, revision: u64, change: &TopologyChange) {
        if revision > self.last_sent {
            self.last_sent = revision;
            self.pending
                .push_back(Ok(M::change(revision, change_to_proto(change))));
        }
    }

    fn push_progress(&mut self, revision: u64) {
        if revision > self.last_sent {
            self.last_sent = revision;
            self.pending.push_back(Ok(M::progress(revision)));
        }
    }

    fn resync(&mut self) {
        // Skip to the newest event first: what was published before is in the topology
        // read next, what comes after is received (and skipped if the topology has it).
        self.live = self.live.resubscribe();
        let (revision, topology) =
            self.source
                .feed
                .resync(&self.source.engine, self.kind, &self.ring);
        self.source.counters.resyncs.fetch_add(1, Ordering::Relaxed);
        // Whatever was queued is superseded by the whole topology.
        self.pending.clear();
        self.last_sent = self.last_sent.max(revision);
        self.pending.push_back(Ok(M::topology(
            self.last_sent,
            topology_to_proto(&topology),
            true,
        )));
    }

    /// Handles one event from the feed; `false` when the feed is gone.
    fn on_event(&mut self, event: Result<FeedEvent, broadcast::error::RecvError>) -> bool {
        match event {
            Ok(FeedEvent::Change(change)) => {
                if change.kind == self.kind && change.ring == self.ring {
                    self.push_change(change.revision, &change.change);
                }
            }
            Ok(FeedEvent::Reset) | Err(broadcast::error::RecvError::Lagged(_)) => self.resync(),
            Err(broadcast::error::RecvError::Closed) => return false,
        }
        true
    }

    /// The next message, or `None` once the stream is over.
    async fn next(&mut self) -> Option<Result<M, Status>> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Some(message);
            }
            if self.ended {
                return None;
            }
            if *self.draining.borrow() {
                self.ended = true;
                return Some(Err(draining()));
            }
            let due = self.progress_due;
            tokio::select! {
                biased;
                changed = self.draining.changed() => {
                    if changed.is_err() {
                        self.ended = true;
                        return Some(Err(draining()));
                    }
                }
                event = self.live.recv() => {
                    if !self.on_event(event) {
                        self.ended = true;
                        return Some(Err(Status::unavailable("this node stopped applying")));
                    }
                }
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    self.progress_due = None;
                    // Changes published before the applied index moved are queued
                    // already: take them first, so progress never skips one.
                    loop {
                        match self.live.try_recv() {
                            Ok(event) => {
                                if !self.on_event(Ok(event)) {
                                    break;
                                }
                            }
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                self.on_event(Err(broadcast::error::RecvError::Lagged(n)));
                            }
                            Err(_) => break,
                        }
                    }
                    let applied = *self.applied.borrow_and_update();
                    self.push_progress(applied);
                }
                changed = self.applied.changed(), if due.is_none() => {
                    if changed.is_err() {
                        self.ended = true;
                        return Some(Err(Status::unavailable("this node stopped applying")));
                    }
                    self.progress_due = Some(Instant::now() + PROGRESS_INTERVAL);
                }
            }
        }
    }
}

fn space_to_proto(space: PositionSpace) -> i32 {
    match space {
        PositionSpace::Drill => common::PositionSpace::Drill as i32,
        PositionSpace::U64 => common::PositionSpace::U64 as i32,
    }
}

fn node_to_proto(node: &TopologyNode) -> common::TopologyNode {
    common::TopologyNode {
        id: node.id.clone(),
        replicas: node.replicas,
        positions: node.positions.clone(),
        limit: node.limit,
    }
}

pub fn topology_to_proto(topology: &Topology) -> common::RingTopology {
    common::RingTopology {
        position_space: space_to_proto(topology.space),
        nodes: topology.nodes.iter().map(node_to_proto).collect(),
        merges: topology
            .merges
            .iter()
            .map(|(from, into)| common::MergeLink {
                from: from.clone(),
                into: into.clone(),
            })
            .collect(),
    }
}

pub fn change_to_proto(change: &TopologyChange) -> common::TopologyChange {
    use common::topology_change::Change;
    let change = match change {
        TopologyChange::Configured(space) => Change::Configured(space_to_proto(*space)),
        TopologyChange::NodeAdded(node) => Change::NodeAdded(node_to_proto(node)),
        TopologyChange::NodeRemoved(id) => Change::NodeRemoved(id.clone()),
        TopologyChange::LimitSet { node, limit } => Change::LimitSet(common::LimitSet {
            node: node.clone(),
            limit: *limit,
        }),
        TopologyChange::Merged { from, into } => Change::Merged(common::MergeLink {
            from: from.clone(),
            into: into.clone(),
        }),
        TopologyChange::Restored(topology) => Change::Restored(topology_to_proto(topology)),
    };
    common::TopologyChange {
        change: Some(change),
    }
}

macro_rules! watch_message {
    ($pb:ident) => {
        impl WatchMessage for clockwise_proto::$pb::v1::WatchResponse {
            fn topology(revision: u64, topology: common::RingTopology, resync: bool) -> Self {
                use clockwise_proto::$pb::v1::watch_response::Event;
                Self {
                    revision,
                    event: Some(Event::Topology(topology)),
                    resync,
                }
            }

            fn change(revision: u64, change: common::TopologyChange) -> Self {
                use clockwise_proto::$pb::v1::watch_response::Event;
                Self {
                    revision,
                    event: Some(Event::Change(change)),
                    resync: false,
                }
            }

            fn progress(revision: u64) -> Self {
                use clockwise_proto::$pb::v1::watch_response::Event;
                Self {
                    revision,
                    event: Some(Event::Progress(common::WatchProgress {})),
                    resync: false,
                }
            }
        }
    };
}

watch_message!(hashring);
watch_message!(chatrouter);

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
