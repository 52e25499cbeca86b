//! One `Watch` stream from one node ([`WatchStream`]), its messages read into the
//! engine's own topology values ([`WatchEvent`]), and the conversions from the wire.
//! [`crate::RingView`] follows these streams, resuming on another node when one ends;
//! `clockwise ctl … watch` prints them.
//!
//! A message that does not convert (no event, an unknown position space, a change
//! with nothing in it) is [`Error::MalformedWatch`]: the node's word is never trusted
//! to be well formed, and a view that meets one rebuilds itself rather than guess.

use std::time::{Duration, Instant};

use clockwise_engine::{PositionSpace, RingKind, Topology, TopologyChange, TopologyNode};
use clockwise_proto::chatrouter::v1 as chat;
use clockwise_proto::common::v1 as common;
use clockwise_proto::hashring::v1 as hash;
use tonic::codec::Streaming;

use crate::backoff::Backoff;
use crate::error::Error;
use crate::peers::CallKind;
use crate::Client;

/// One message of a `Watch` stream, with its revision (the raft index it applied at
/// on the serving node; strictly increasing on one stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The revision the message is at.
    pub revision: u64,
    /// What it says.
    pub kind: WatchEventKind,
}

/// What a [`WatchEvent`] says about the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEventKind {
    /// The whole topology: the first message of a stream from revision 0, and every
    /// resync (`resync`: the stream lost changes, so this replaces what came before).
    Topology {
        /// The ring's topology at the event's revision.
        topology: Topology,
        /// Whether it replaces a history the stream could not deliver.
        resync: bool,
    },
    /// One change, applied at the event's revision.
    Change(TopologyChange),
    /// Nothing changed in this ring up to the event's revision.
    Progress,
}

/// A `Watch` stream from one node: [`WatchStream::next`] answers its messages in order.
/// It does not resume on another node when this one goes away ([`crate::RingView`]
/// does); it ends with the error the node or the connection gave.
pub struct WatchStream {
    inner: Inner,
    endpoint: String,
}

enum Inner {
    HashRing(Streaming<hash::WatchResponse>),
    ChatRouter(Streaming<chat::WatchResponse>),
}

impl WatchStream {
    /// The next message; `Ok(None)` when the node ended the stream without an error.
    ///
    /// # Errors
    /// The node's status (UNAVAILABLE when it drains), a lost connection (retriable),
    /// or [`Error::MalformedWatch`].
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, Error> {
        let message = match &mut self.inner {
            Inner::HashRing(stream) => stream
                .message()
                .await?
                .map(|m| (m.revision, m.resync, m.event.map(hash_event))),
            Inner::ChatRouter(stream) => stream
                .message()
                .await?
                .map(|m| (m.revision, m.resync, m.event.map(chat_event))),
        };
        let Some((revision, resync, event)) = message else {
            return Ok(None);
        };
        let kind = match event {
            Some(Event::Topology(topology)) => WatchEventKind::Topology {
                topology: topology_from_proto(topology)?,
                resync,
            },
            Some(Event::Change(change)) => WatchEventKind::Change(change_from_proto(change)?),
            Some(Event::Progress) => WatchEventKind::Progress,
            None => return Err(malformed(revision, "a message without an event")),
        };
        Ok(Some(WatchEvent { revision, kind }))
    }

    /// The node serving the stream (`host:port`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// The two services' events, alike.
enum Event {
    Topology(common::RingTopology),
    Change(common::TopologyChange),
    Progress,
}

fn hash_event(event: hash::watch_response::Event) -> Event {
    use hash::watch_response::Event as E;
    match event {
        E::Topology(t) => Event::Topology(t),
        E::Change(c) => Event::Change(c),
        E::Progress(_) => Event::Progress,
    }
}

fn chat_event(event: chat::watch_response::Event) -> Event {
    use chat::watch_response::Event as E;
    match event {
        E::Topology(t) => Event::Topology(t),
        E::Change(c) => Event::Change(c),
        E::Progress(_) => Event::Progress,
    }
}

fn malformed(revision: u64, what: &str) -> Error {
    Error::MalformedWatch {
        message: format!("revision {revision}: {what}"),
    }
}

fn space_from_proto(space: i32) -> Result<PositionSpace, Error> {
    match common::PositionSpace::try_from(space) {
        Ok(common::PositionSpace::Drill) => Ok(PositionSpace::Drill),
        Ok(common::PositionSpace::U64) => Ok(PositionSpace::U64),
        Err(_) => Err(Error::MalformedWatch {
            message: format!("unknown position space {space}"),
        }),
    }
}

fn node_from_proto(node: common::TopologyNode) -> TopologyNode {
    TopologyNode {
        id: node.id,
        replicas: node.replicas,
        positions: node.positions,
        limit: node.limit,
    }
}

/// The engine's topology from the wire's (the reverse of the node's
/// `topology_to_proto`). Whether it describes a ring is the engine's to say
/// (`HashRing::from_topology`).
pub(crate) fn topology_from_proto(topology: common::RingTopology) -> Result<Topology, Error> {
    Ok(Topology {
        space: space_from_proto(topology.position_space)?,
        nodes: topology.nodes.into_iter().map(node_from_proto).collect(),
        merges: topology
            .merges
            .into_iter()
            .map(|link| (link.from, link.into))
            .collect(),
    })
}

/// The engine's change from the wire's (the reverse of the node's `change_to_proto`).
pub(crate) fn change_from_proto(change: common::TopologyChange) -> Result<TopologyChange, Error> {
    use common::topology_change::Change;
    Ok(match change.change {
        Some(Change::Configured(space)) => TopologyChange::Configured(space_from_proto(space)?),
        Some(Change::NodeAdded(node)) => TopologyChange::NodeAdded(node_from_proto(node)),
        Some(Change::NodeRemoved(id)) => TopologyChange::NodeRemoved(id),
        Some(Change::LimitSet(set)) => TopologyChange::LimitSet {
            node: set.node,
            limit: set.limit,
        },
        Some(Change::Merged(link)) => TopologyChange::Merged {
            from: link.from,
            into: link.into,
        },
        Some(Change::Restored(topology)) => {
            TopologyChange::Restored(topology_from_proto(topology)?)
        }
        None => {
            return Err(Error::MalformedWatch {
                message: "a change with nothing in it".into(),
            })
        }
    })
}

/// Why a watch did not open, and on which node (none: no node could be tried).
pub(crate) struct OpenFailed {
    pub(crate) error: Error,
    pub(crate) endpoint: Option<String>,
}

impl Client {
    /// Opens a `Watch` of `ring` from `start_revision` on one node: any replica, in
    /// turn, avoiding `avoid` (the node a stream just failed on) while another is
    /// there. One attempt, bounded by the attempt timeout; the stream itself has no
    /// deadline.
    pub(crate) async fn open_watch(
        &self,
        kind: RingKind,
        ring: &str,
        start_revision: u64,
        avoid: Option<&str>,
    ) -> Result<WatchStream, OpenFailed> {
        let inner = &self.inner;
        let Some((peer, permit)) = inner.peers.pick(CallKind::StaleRead, avoid) else {
            return Err(OpenFailed {
                error: Error::CircuitOpen {
                    endpoints: self.endpoints().join(", "),
                },
                endpoint: None,
            });
        };
        let failed = |error| OpenFailed {
            error,
            endpoint: Some(peer.address.clone()),
        };
        let timeout = inner.attempt_timeout;
        let channel = peer.channel.clone();
        let opened = tokio::time::timeout(timeout, async {
            match kind {
                RingKind::HashRing => {
                    let request = self.authorized(hash::WatchRequest {
                        ring: ring.to_owned(),
                        start_revision,
                    });
                    let mut stub = hash::hash_ring_client::HashRingClient::new(channel);
                    stub.watch(request)
                        .await
                        .map(|r| r.map(Inner::HashRing).into_parts())
                }
                RingKind::ChatRouter => {
                    let request = self.authorized(chat::WatchRequest {
                        ring: ring.to_owned(),
                        start_revision,
                    });
                    let mut stub = chat::chat_router_client::ChatRouterClient::new(channel);
                    stub.watch(request)
                        .await
                        .map(|r| r.map(Inner::ChatRouter).into_parts())
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(
                "the watch did not open within the attempt's deadline",
            ))
        });
        match opened {
            Ok((metadata, stream, _)) => {
                permit.success();
                inner
                    .peers
                    .check_cluster(&peer, &metadata)
                    .map_err(failed)?;
                Ok(WatchStream {
                    inner: stream,
                    endpoint: peer.address.clone(),
                })
            }
            Err(status) => {
                inner
                    .peers
                    .check_cluster(&peer, status.metadata())
                    .map_err(failed)?;
                let error = Error::from(status);
                if error.code().is_some_and(crate::error::counts_against_peer) {
                    permit.failure();
                }
                Err(failed(error))
            }
        }
    }

    /// [`Client::open_watch`], retried on other nodes with backoff while the failure
    /// may pass, within the client's call deadline.
    pub(crate) async fn open_watch_retrying(
        &self,
        kind: RingKind,
        ring: &str,
        start_revision: u64,
    ) -> Result<WatchStream, Error> {
        let deadline = Instant::now() + self.inner.timeout;
        let mut backoff = Backoff::from_entropy(self.inner.retry.clone());
        let mut avoid: Option<String> = None;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let OpenFailed { error, endpoint } = match self
                .open_watch(kind, ring, start_revision, avoid.as_deref())
                .await
            {
                Ok(stream) => return Ok(stream),
                Err(failed) => failed,
            };
            let delay = backoff.delay(attempts);
            let out_of_time = Instant::now() + delay + Duration::from_millis(5) >= deadline;
            if !error.is_retriable() || attempts >= self.inner.retry.max_attempts || out_of_time {
                return Err(if attempts > 1 && error.is_retriable() {
                    Error::RetryExhausted {
                        attempts,
                        last: Box::new(error),
                    }
                } else {
                    error
                });
            }
            avoid = endpoint.or(avoid);
            tokio::time::sleep(delay).await;
        }
    }
}

macro_rules! watch_changes {
    ($facade:ty, $kind:expr) => {
        impl $facade {
            /// The raw `Watch` stream of this ring from one node: from `start_revision`
            /// (0: the whole topology now, then each change; N: the changes after N, or
            /// the whole topology marked resync when the node no longer holds them).
            /// For routing, [`Self::watch`] keeps a local view current instead.
            ///
            /// # Errors
            /// No node opened the stream within the client's deadline (a malformed
            /// ring name is `InvalidArgument`).
            pub async fn watch_changes(&self, start_revision: u64) -> Result<WatchStream, Error> {
                self.client()
                    .open_watch_retrying($kind, self.name(), start_revision)
                    .await
            }
        }
    };
}

watch_changes!(crate::HashRing, RingKind::HashRing);
watch_changes!(crate::ChatRouter, RingKind::ChatRouter);
