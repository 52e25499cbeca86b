//! The clockwise client SDK: typed async calls to a clockwise cluster, named like the
//! drill methods and answering plain Rust values.
//!
//! ```no_run
//! # async fn demo() -> Result<(), clockwise_client::Error> {
//! use clockwise_client::Client;
//!
//! let client = Client::builder()
//!     .endpoints(["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"])
//!     .build()
//!     .await?;
//! let ring = client.hash_ring("cache");
//! ring.add_node("node_a").await?;
//! let owner: Option<String> = ring.store_key("user:42").await?;
//! # Ok(()) }
//! ```
//!
//! Every call goes to the leader when the client knows it (reads with
//! [`HashRing::stale_reads`] are spread over every replica), retries only what may
//! succeed later (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`,
//! `ABORTED`) with full-jitter exponential backoff under an overall and a per-attempt
//! deadline, and skips endpoints whose circuit breaker is open. A breaker counts what
//! says its node is down or overloaded, not a node's answer that the cluster has no
//! leader or quorum (metadata `x-clockwise-cluster-unavailable`): during an election
//! every follower says that, and counting it would shut off the healthy nodes. Writes
//! carry a session id and sequence number, so a retried write is applied once.
//!
//! # Routing locally
//! [`HashRing::watch`] / [`ChatRouter::watch`] answer a [`RingView`]: a local replica of
//! the ring's topology, rebuilt from the ring's `Watch` stream with the engine's own
//! code and kept current by a background task (which ends with the view's last
//! handle). Its consistency: a local route reflects the topology at
//! [`RingView::revision`], exactly what `RouteKey` / `RouteRequest` answers at that
//! revision; read-your-writes through [`RingView::wait_for`] of
//! [`Client::last_write_revision`]. A view resumes on another node from its revision
//! when its stream fails (routing from its last topology meanwhile) and refuses to
//! route ([`Error::ViewBroken`]) while it knows it has diverged.
//!
//! ```no_run
//! # async fn demo(client: clockwise_client::Client) -> Result<(), clockwise_client::Error> {
//! let ring = client.hash_ring("cache");
//! let view = ring.watch().await?;
//! ring.add_node("node_b").await?;
//! let snapshot = view.wait_for(client.last_write_revision()).await?;
//! let owner: Option<&str> = snapshot.route_key("user:42");
//! # Ok(()) }
//! ```
//!
//! Only the endpoints given are called. The members a node's `Status` lists elsewhere
//! are called only after [`ClientBuilder::discover_members`] (at most
//! [`MAX_LEARNED_MEMBERS`]), and with a token only over TLS (`build` refuses discovery
//! with a token in clear text): a member list a compromised or mistaken node wrote
//! must not receive the application's token. The token is sent as a sensitive header
//! (never indexed by HTTP/2 header compression).
//!
//! # Layout
//! - `client`: [`Client`], its [`ClientBuilder`] and [`Tls`] settings.
//! - `call`: the one unary call path: attempts, retries, deadlines, breakers, errors.
//! - `peers`: endpoints, their channels and breakers, the leader, the peer per attempt.
//! - `session`: the session lanes that make a retried write apply once.
//! - `hash_ring`: [`HashRing`], one typed method per HashRing drill method.
//! - `chat_router`: [`ChatRouter`], one typed method per ChatRouter drill method.
//! - `cluster`: [`Cluster`]: status, membership, leader transfer, snapshots.
//! - `snapshot`: a [`Snapshot`] streaming in, its body checked against its SHA-256.
//! - `types`: [`BatchResult`] and [`Location`], plain values the typed calls answer.
//! - `watch`: one `Watch` stream from one node ([`WatchStream`], [`WatchEvent`]) and the
//!   conversions of its messages into the engine's topology values.
//! - `view`: [`RingView`], its [`RingSnapshot`]s and [`ViewUpdate`]s; `view_task`: the
//!   task that follows the stream, resumes it elsewhere and resyncs a broken view.
//! - [`backoff`]: [`RetryPolicy`] and full-jitter [`Backoff`].
//! - [`breaker`]: the per-endpoint [`CircuitBreaker`].
//! - [`clock`]: the breaker's [`Clock`], and a [`ManualClock`] for tests.
//! - `error`: [`Error`]: retriable, exhausted, circuit-open and invalid-argument
//!   failures told apart; a broken or late view.
//! - [`telemetry`]: the SDK's metrics (breakers, attempts, retries exhausted, failovers,
//!   through the `metrics` facade), its span per call and the W3C `traceparent` it sends
//!   ([`in_trace`] to join the application's trace).

#![warn(missing_docs)]

mod client;
pub use client::{Client, ClientBuilder, Tls};
mod call;
mod hash_ring;
mod peers;
pub use peers::MAX_LEARNED_MEMBERS;
mod session;
pub use hash_ring::{HashRing, KeyOperation};
mod chat_router;
pub use chat_router::{ChatRouter, RequestOperation, Transfer};
mod cluster;
pub use cluster::{Cluster, Member, NodeStatus, Role};
mod snapshot;
pub use snapshot::Snapshot;
mod types;
pub use clockwise_proto::common::v1::{PositionSpace, SyncMode};
pub use types::{BatchResult, Location};
pub mod backoff;
pub use backoff::{Backoff, RetryPolicy};
pub mod breaker;
pub use breaker::{BreakerConfig, BreakerState, BreakerStats, CircuitBreaker, CircuitOpen};
pub mod clock;
pub use clock::{Clock, ManualClock, SystemClock};
mod error;
pub use error::Error;
mod watch;
pub use watch::{WatchEvent, WatchEventKind, WatchStream};
mod view;
mod view_task;
/// The engine the views route with, and its topology values.
pub use clockwise_engine as engine;
pub use clockwise_engine::{Topology, TopologyChange, TopologyNode};
pub use view::{
    ChatRouterView, HashRingView, RingSnapshot, RingView, ViewRing, ViewUpdate, ViewUpdateKind,
    UPDATES_BUFFER,
};
pub mod telemetry;
pub use telemetry::{in_trace, TraceParent};
