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
//! Modules:
//! - [`client`](Client): the builder, endpoints, leader tracking and the retry loop.
//! - `hash_ring` / `chat_router`: the typed per-ring handles ([`HashRing`],
//!   [`ChatRouter`]); [`Cluster`]: status and membership.
//! - [`backoff`]: [`RetryPolicy`] and full-jitter [`Backoff`].
//! - [`breaker`]: the per-endpoint [`CircuitBreaker`].
//! - [`clock`]: the breaker's [`Clock`], and a [`ManualClock`] for tests.
//! - [`Error`]: retriable, exhausted, circuit-open and invalid-argument failures told apart.

#![warn(missing_docs)]

pub mod backoff;
pub mod breaker;
mod chat_router;
mod client;
pub mod clock;
mod cluster;
mod error;
mod hash_ring;
mod types;

pub use backoff::{Backoff, RetryPolicy};
pub use breaker::{BreakerConfig, BreakerState, BreakerStats, CircuitBreaker, CircuitOpen};
pub use chat_router::{ChatRouter, RequestOperation, Transfer};
pub use client::{Client, ClientBuilder, Tls};
pub use clock::{Clock, ManualClock, SystemClock};
pub use clockwise_proto::common::v1::{PositionSpace, SyncMode};
pub use cluster::{Cluster, Member, NodeStatus, Role};
pub use error::Error;
pub use hash_ring::{HashRing, KeyOperation};
pub use types::{BatchResult, Location};
