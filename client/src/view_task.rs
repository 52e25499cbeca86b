//! The task behind a [`crate::RingView`]: owns the `Watch` stream, applies each
//! message to a copy of the ring and publishes the result, resumes on another node
//! when a stream fails, re-watches from revision 0 when the view breaks. It ends when
//! the last handle is dropped (its status channel closes).
//!
//! Exactly once: on a stream revisions strictly increase, and a stream resumed from the
//! view's revision N carries only changes after N; the task still drops any change at
//! or below its revision (applying one twice would diverge), so none is applied twice
//! and, since the node sends every change after N or a whole topology, none is missed.

use std::sync::Arc;
use std::time::Duration;

use clockwise_engine::TopologyError;
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::error::Error;
use crate::view::{Published, Shared, Status, ViewRing, ViewUpdate, ViewUpdateKind};
use crate::watch::{OpenFailed, WatchEvent, WatchEventKind, WatchStream};
use crate::Client;

/// The least time between two attempts to open a stream, so a policy without delays
/// cannot spin.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(20);

/// Follows the ring until every handle of the view is gone.
pub(crate) async fn run<R: ViewRing>(
    client: Client,
    shared: Arc<Shared<R>>,
    status: watch::Sender<Status>,
) {
    let mut follower = Follower::new(client, shared, &status);
    tokio::select! {
        _ = status.closed() => {}
        _ = follower.follow() => {}
    }
}

/// Why a stream was left.
enum Left {
    /// It failed (or ended): resume elsewhere from the view's revision.
    Failed(Error),
    /// The view broke: re-watch from revision 0.
    Broken(String),
}

struct Follower<'a, R> {
    client: Client,
    shared: Arc<Shared<R>>,
    status: &'a watch::Sender<Status>,
    backoff: Backoff,
    /// Failures since a stream last delivered a message.
    failures: u32,
    /// The node the last stream failed on.
    avoid: Option<String>,
    /// The next stream must start with a whole topology (none yet, or broken).
    need_full: bool,
}

impl<'a, R: ViewRing> Follower<'a, R> {
    fn new(client: Client, shared: Arc<Shared<R>>, status: &'a watch::Sender<Status>) -> Self {
        Follower {
            backoff: Backoff::from_entropy(client.inner.retry.clone()),
            client,
            shared,
            status,
            failures: 0,
            avoid: None,
            need_full: true,
        }
    }

    async fn follow(&mut self) {
        loop {
            let start = if self.need_full {
                0
            } else {
                self.shared.published.load().snapshot.revision()
            };
            let opened = self
                .client
                .open_watch(R::KIND, &self.shared.ring, start, self.avoid.as_deref())
                .await;
            let left = match opened {
                Ok(stream) => {
                    let endpoint = stream.endpoint().to_owned();
                    self.status
                        .send_modify(|s| s.endpoint = Some(endpoint.clone()));
                    let left = self.read(stream).await;
                    if let Left::Failed(_) = left {
                        self.avoid = Some(endpoint);
                    }
                    left
                }
                Err(OpenFailed { error, endpoint }) => {
                    self.avoid = endpoint.or(self.avoid.take());
                    Left::Failed(error)
                }
            };
            self.failures = self.failures.saturating_add(1);
            match left {
                Left::Failed(error) => {
                    tracing::debug!(ring = %self.shared.ring, %error, "watch stream lost; resuming");
                    self.status.send_modify(|s| {
                        s.endpoint = None;
                        s.last_error = Some(error);
                    });
                }
                Left::Broken(reason) => {
                    tracing::warn!(ring = %self.shared.ring, %reason, "view broken; resyncing");
                    self.need_full = true;
                    self.break_view(reason);
                }
            }
            let delay = self.backoff.delay(self.failures).max(MIN_RECONNECT_DELAY);
            tokio::time::sleep(delay).await;
        }
    }

    /// Applies the stream's messages until it fails or the view breaks.
    async fn read(&mut self, mut stream: WatchStream) -> Left {
        loop {
            match stream.next().await {
                Ok(Some(event)) => {
                    self.failures = 0;
                    if let Err(reason) = self.apply(event) {
                        return Left::Broken(reason);
                    }
                }
                Ok(None) => {
                    return Left::Failed(Error::Retriable {
                        code: tonic::Code::Unavailable,
                        message: "the node ended the watch".into(),
                    })
                }
                Err(Error::MalformedWatch { message }) => return Left::Broken(message),
                Err(error) => return Left::Failed(error),
            }
        }
    }

    /// Takes one message into the view; `Err` (why) when the view is broken by it.
    fn apply(&mut self, event: WatchEvent) -> Result<(), String> {
        let WatchEvent { revision, kind } = event;
        let current = self.shared.published.load_full();
        let at = current.snapshot.revision();
        match kind {
            WatchEventKind::Topology { topology, resync } => {
                // A whole topology replaces the ring when the view needs one or the
                // node resynced; otherwise only a newer one does.
                if !(self.need_full || resync || revision > at) {
                    return Ok(());
                }
                let ring = R::build(&topology).map_err(|e| diverged(revision, &e))?;
                self.need_full = false;
                self.publish(ring, revision, ViewUpdateKind::Replaced { resync });
            }
            WatchEventKind::Change(change) => {
                if self.need_full {
                    return Err(format!(
                        "revision {revision}: a change before the stream's topology"
                    ));
                }
                if revision <= at {
                    return Ok(());
                }
                let mut ring = current.snapshot.ring().clone();
                ring.apply(&change).map_err(|e| diverged(revision, &e))?;
                self.publish(ring, revision, ViewUpdateKind::Changed(change));
            }
            WatchEventKind::Progress => {
                if self.need_full || revision <= at {
                    return Ok(());
                }
                let snapshot = Shared::advanced(&current.snapshot, revision);
                self.shared.published.store(Arc::new(Published {
                    snapshot,
                    broken: None,
                }));
                self.status.send_modify(|s| s.revision = revision);
            }
        }
        Ok(())
    }

    /// Swaps in the ring at `revision`, sends its update, then wakes the waiters: a
    /// `wait_for` that returns finds it published and its update already sent (and a
    /// view's first update is sent before `watch()` returns it).
    fn publish(&self, ring: R, revision: u64, kind: ViewUpdateKind) {
        self.shared.published.store(Arc::new(Published {
            snapshot: Shared::snapshot(ring, revision),
            broken: None,
        }));
        // No subscriber is not an error.
        let _ = self.shared.updates.send(ViewUpdate { revision, kind });
        self.status.send_modify(|s| {
            s.revision = revision;
            s.ready = true;
            s.broken = None;
        });
    }

    fn break_view(&self, reason: String) {
        let current = self.shared.published.load_full();
        let revision = current.snapshot.revision();
        self.shared.published.store(Arc::new(Published {
            snapshot: current.snapshot.clone(),
            broken: Some(reason.clone()),
        }));
        self.status.send_modify(|s| s.broken = Some(reason.clone()));
        let _ = self.shared.updates.send(ViewUpdate {
            revision,
            kind: ViewUpdateKind::Broken(reason),
        });
    }
}

fn diverged(revision: u64, error: &TopologyError) -> String {
    format!("revision {revision}: {error}")
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
