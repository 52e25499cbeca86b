//! [`RingView`]: a local replica of one ring's topology, kept current by a background
//! task that follows the ring's `Watch` stream, so routes are answered in process.
//!
//! # Consistency
//! A local route reflects the ring's topology at [`RingView::revision`] (a raft index):
//! exactly what `RouteKey` / `RouteRequest` answers on a replica that has applied up to
//! that revision, because the view rebuilds the ring with the engine's own code
//! ([`clockwise_engine::HashRing::from_topology`] and
//! [`clockwise_engine::HashRing::apply_topology_change`]). It may lag the cluster by
//! the time a change takes to stream in. Read-your-writes: a write's reply carries its
//! revision ([`Client::last_write_revision`]); after [`RingView::wait_for`] that
//! revision, the view holds the write's effect. Routing needs the topology only: key
//! state (stores, LRU, TTL) stays on the cluster.
//!
//! # Publication
//! The task publishes an immutable [`RingSnapshot`] (the engine ring and its revision)
//! on each change, copy-on-write: it clones the ring, applies the change and swaps the
//! new snapshot in. [`RingView::current`] is one lock-free load; a snapshot routes with
//! no lock and no allocation, so batch routes take one load for the whole batch.
//!
//! # Failures
//! When the stream fails (a node killed or draining), the task resumes on another node
//! from the view's revision, with backoff; meanwhile the view keeps routing from its
//! last topology (stale, not broken). A change that does not apply, or a malformed
//! message, makes the view broken: [`RingView::current`] answers
//! [`Error::ViewBroken`] until the task has re-watched from revision 0 and replaced the
//! ring. The task ends when the last handle of the view is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use clockwise_engine::{ChatRouter, HashRing, RingKind, Topology, TopologyChange, TopologyError};
use tokio::sync::{broadcast, watch};

use crate::error::Error;
use crate::Client;

/// How many [`ViewUpdate`]s a subscriber may fall behind before it misses some.
pub const UPDATES_BUFFER: usize = 64;

/// An engine ring a [`RingView`] can hold: [`clockwise_engine::HashRing`] or
/// [`clockwise_engine::ChatRouter`].
pub trait ViewRing: Clone + Send + Sync + 'static + sealed::Sealed {
    /// Which service's `Watch` feeds it.
    const KIND: RingKind;
    /// The ring of `topology`.
    fn build(topology: &Topology) -> Result<Self, TopologyError>;
    /// Applies one change as the server did.
    fn apply(&mut self, change: &TopologyChange) -> Result<(), TopologyError>;
    /// Its topology.
    fn read_topology(&self) -> Topology;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for clockwise_engine::HashRing {}
    impl Sealed for clockwise_engine::ChatRouter {}
}

macro_rules! view_ring {
    ($ring:ty, $kind:expr) => {
        impl ViewRing for $ring {
            const KIND: RingKind = $kind;
            fn build(topology: &Topology) -> Result<Self, TopologyError> {
                <$ring>::from_topology(topology)
            }
            fn apply(&mut self, change: &TopologyChange) -> Result<(), TopologyError> {
                self.apply_topology_change(change)
            }
            fn read_topology(&self) -> Topology {
                self.topology()
            }
        }
    };
}
view_ring!(HashRing, RingKind::HashRing);
view_ring!(ChatRouter, RingKind::ChatRouter);

/// A view of a HashRing namespace ([`crate::HashRing::watch`]).
pub type HashRingView = RingView<HashRing>;
/// A view of a ChatRouter namespace ([`crate::ChatRouter::watch`]).
pub type ChatRouterView = RingView<ChatRouter>;

/// The ring's topology at one revision: immutable, cheap to share, routes without a
/// lock or an allocation.
#[derive(Debug)]
pub struct RingSnapshot<R> {
    ring: Arc<R>,
    revision: u64,
}

impl<R: ViewRing> RingSnapshot<R> {
    /// The revision (raft index) this topology is at.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The topology (O(virtual nodes): built on each call).
    pub fn topology(&self) -> Topology {
        self.ring.read_topology()
    }

    /// The engine ring itself (no keys: only its topology is replicated).
    pub fn ring(&self) -> &R {
        &self.ring
    }
}

impl RingSnapshot<HashRing> {
    /// The node `key` routes to at [`RingSnapshot::revision`]; what `RouteKey` answers.
    #[inline]
    pub fn route_key(&self, key: &str) -> Option<&str> {
        self.ring.route_key(key)
    }

    /// [`RingSnapshot::route_key`] of each key, in order (hashes several keys at once).
    pub fn route_keys(&self, keys: &[&str]) -> Vec<Option<&str>> {
        self.ring.route_keys(keys)
    }
}

impl RingSnapshot<ChatRouter> {
    /// The server `request_id` routes to at [`RingSnapshot::revision`]; what
    /// `RouteRequest` answers.
    #[inline]
    pub fn route_request(&self, request_id: &str) -> Option<&str> {
        self.ring.route_request(request_id)
    }

    /// [`RingSnapshot::route_request`] of each id, in order.
    pub fn route_requests(&self, request_ids: &[&str]) -> Vec<Option<&str>> {
        self.ring.route_requests(request_ids)
    }
}

/// What the view's task did, for [`RingView::updates`] subscribers. Progress (a newer
/// revision, nothing changed) is not an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewUpdate {
    /// The revision the view is at after it.
    pub revision: u64,
    /// What happened.
    pub kind: ViewUpdateKind,
}

/// What a [`ViewUpdate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewUpdateKind {
    /// The whole topology replaced the ring: the first one, or a resync (`resync`: the
    /// stream had lost changes).
    Replaced {
        /// Whether the node marked it a resync.
        resync: bool,
    },
    /// One change applied.
    Changed(TopologyChange),
    /// The view is broken (the reason): it answers errors until the next `Replaced`.
    Broken(String),
}

/// What a view publishes for routing: the snapshot, unless the view is broken.
pub(crate) struct Published<R> {
    pub(crate) snapshot: Arc<RingSnapshot<R>>,
    /// Why the view is broken, if it is.
    pub(crate) broken: Option<String>,
}

/// The task's state as the handles see it (for [`RingView::wait_for`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Status {
    pub(crate) revision: u64,
    /// A topology has arrived.
    pub(crate) ready: bool,
    pub(crate) broken: Option<String>,
    /// The node the stream is open on, while one is.
    pub(crate) endpoint: Option<String>,
    /// The last failure to open or follow a stream.
    pub(crate) last_error: Option<Error>,
}

/// What the handles and the task share.
pub(crate) struct Shared<R> {
    pub(crate) ring: String,
    pub(crate) published: ArcSwap<Published<R>>,
    pub(crate) updates: broadcast::Sender<ViewUpdate>,
}

impl<R: ViewRing> Shared<R> {
    pub(crate) fn snapshot(ring: R, revision: u64) -> Arc<RingSnapshot<R>> {
        Arc::new(RingSnapshot {
            ring: Arc::new(ring),
            revision,
        })
    }

    /// The same ring at a newer revision (a progress message).
    pub(crate) fn advanced(snapshot: &RingSnapshot<R>, revision: u64) -> Arc<RingSnapshot<R>> {
        Arc::new(RingSnapshot {
            ring: snapshot.ring.clone(),
            revision,
        })
    }
}

/// A local replica of one ring's topology. Cheap to clone; every clone follows the
/// same stream, which stops when the last one is dropped. See the module docs for what
/// a route from it means.
pub struct RingView<R> {
    shared: Arc<Shared<R>>,
    status: watch::Receiver<Status>,
    /// The client's call deadline: what [`RingView::wait_for`] waits at most.
    timeout: Duration,
}

impl<R> Clone for RingView<R> {
    fn clone(&self) -> Self {
        RingView {
            shared: self.shared.clone(),
            status: self.status.clone(),
            timeout: self.timeout,
        }
    }
}

impl<R: ViewRing> RingView<R> {
    /// Starts the task following `ring` and waits (within the client's call deadline)
    /// for its first topology.
    pub(crate) async fn open(client: &Client, ring: &str) -> Result<Self, Error> {
        let shared = Self::empty_shared(ring)?;
        let (tx, rx) = watch::channel(Status::default());
        let view = RingView {
            shared: shared.clone(),
            status: rx,
            timeout: client.inner.timeout,
        };
        tokio::spawn(crate::view_task::run(client.clone(), shared, tx));
        let mut status = view.status.clone();
        let first = async {
            status
                .wait_for(|s| s.ready || s.last_error.as_ref().is_some_and(|e| !e.is_retriable()))
                .await
                .map(|s| s.clone())
        };
        match tokio::time::timeout(view.timeout, first).await {
            Ok(Ok(s)) if s.ready => Ok(view),
            Ok(Ok(s)) => Err(s.last_error.clone().unwrap_or_else(|| view.closed())),
            Ok(Err(_)) => Err(view.closed()),
            Err(_) => {
                let last = view.status.borrow().last_error.clone();
                Err(last.unwrap_or(Error::Retriable {
                    code: tonic::Code::DeadlineExceeded,
                    message: "no topology arrived within the call deadline".into(),
                }))
            }
        }
    }

    /// A view over `shared` and `status` with no task (tests drive the follower).
    #[cfg(test)]
    pub(crate) fn from_parts(
        shared: Arc<Shared<R>>,
        status: watch::Receiver<Status>,
        timeout: Duration,
    ) -> Self {
        RingView {
            shared,
            status,
            timeout,
        }
    }

    /// The shared state of a view of `ring` before its first topology.
    pub(crate) fn empty_shared(ring: &str) -> Result<Arc<Shared<R>>, Error> {
        let empty = R::build(&Topology::default()).map_err(|e| Error::ViewBroken {
            ring: ring.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Arc::new(Shared {
            ring: ring.to_owned(),
            published: ArcSwap::from_pointee(Published {
                snapshot: Shared::snapshot(empty, 0),
                broken: None,
            }),
            updates: broadcast::channel(UPDATES_BUFFER).0,
        }))
    }

    fn closed(&self) -> Error {
        Error::ViewBroken {
            ring: self.shared.ring.clone(),
            reason: "the view's task ended".into(),
        }
    }

    fn broken(&self, reason: &str) -> Error {
        Error::ViewBroken {
            ring: self.shared.ring.clone(),
            reason: reason.to_owned(),
        }
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.shared.ring
    }

    /// The topology to route from now: route many keys on one snapshot (one load).
    ///
    /// # Errors
    /// [`Error::ViewBroken`] while the view is known to have diverged from the server
    /// (until its resync).
    pub fn current(&self) -> Result<Arc<RingSnapshot<R>>, Error> {
        let published = self.shared.published.load();
        match &published.broken {
            Some(reason) => Err(self.broken(reason)),
            None => Ok(published.snapshot.clone()),
        }
    }

    /// The revision the view's topology is at (also while broken: the last one it
    /// reached).
    pub fn revision(&self) -> u64 {
        self.shared.published.load().snapshot.revision
    }

    /// The node the view's stream is open on now; `None` while it reconnects (the
    /// view then routes from its last topology).
    pub fn endpoint(&self) -> Option<String> {
        self.status.borrow().endpoint.clone()
    }

    /// Waits until the view holds `revision` (e.g. [`Client::last_write_revision`]
    /// after a write), within the client's call deadline; answers the snapshot.
    ///
    /// # Errors
    /// [`Error::ViewTimeout`], or [`Error::ViewBroken`] if the view was broken then.
    pub async fn wait_for(&self, revision: u64) -> Result<Arc<RingSnapshot<R>>, Error> {
        self.wait_for_within(revision, self.timeout).await
    }

    /// [`RingView::wait_for`] waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`RingView::wait_for`].
    pub async fn wait_for_within(
        &self,
        revision: u64,
        timeout: Duration,
    ) -> Result<Arc<RingSnapshot<R>>, Error> {
        let started = Instant::now();
        let mut status = self.status.clone();
        let reached = async {
            status
                .wait_for(|s| s.broken.is_none() && s.revision >= revision)
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(timeout, reached).await {
            Ok(Ok(_)) => self.current(),
            Ok(Err(_)) => Err(self.closed()),
            Err(_) => {
                let now = self.status.borrow().clone();
                if let Some(reason) = now.broken {
                    return Err(self.broken(&reason));
                }
                Err(Error::ViewTimeout {
                    ring: self.shared.ring.clone(),
                    revision,
                    reached: now.revision,
                    waited: started.elapsed(),
                })
            }
        }
    }

    /// Each later change to the view, in order (bounded: a subscriber more than
    /// [`UPDATES_BUFFER`] behind gets `Lagged` and misses some).
    pub fn updates(&self) -> broadcast::Receiver<ViewUpdate> {
        self.shared.updates.subscribe()
    }
}

impl RingView<HashRing> {
    /// The node `key` routes to now (one load, one allocation); for many keys, route
    /// on [`RingView::current`].
    ///
    /// # Errors
    /// [`Error::ViewBroken`].
    pub fn route_key(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self.current()?.route_key(key).map(str::to_owned))
    }
}

impl RingView<ChatRouter> {
    /// The server `request_id` routes to now; for many, route on [`RingView::current`].
    ///
    /// # Errors
    /// [`Error::ViewBroken`].
    pub fn route_request(&self, request_id: &str) -> Result<Option<String>, Error> {
        Ok(self.current()?.route_request(request_id).map(str::to_owned))
    }
}

impl crate::HashRing {
    /// A local view of this ring's topology, kept current from a `Watch` stream (see
    /// [`RingView`]); answers once the first topology has arrived.
    ///
    /// # Errors
    /// No node served the watch within the client's call deadline.
    pub async fn watch(&self) -> Result<HashRingView, Error> {
        RingView::open(self.client(), self.name()).await
    }
}

impl crate::ChatRouter {
    /// A local view of this ring's topology (see [`RingView`]).
    ///
    /// # Errors
    /// No node served the watch within the client's call deadline.
    pub async fn watch(&self) -> Result<ChatRouterView, Error> {
        RingView::open(self.client(), self.name()).await
    }
}
