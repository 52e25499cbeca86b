//! The gRPC face of a node: tonic handlers over the engine, validation, status mapping,
//! the semaphored sync runner, metrics, reflection and health.
//!
//! - [`hashring`] / [`chatrouter`]: one handler per RPC: validate, call the engine.
//! - [`validate`]: the input rules and caps; every refusal names its field.
//! - [`error`]: [`ServiceError`] and its single mapping to `tonic::Status`.
//! - [`state`]: the engine fed by the raft log; replicated writes, linearizable or
//!   stale reads; timestamp-0 stamping.
//! - [`cluster`]: `clockwise.cluster.v1.Cluster`, this node's view of the raft group.
//! - [`health`]: `grpc.health.v1` from the raft status (SERVING only with a leader,
//!   a vote and applied near commit), NOT_SERVING from shutdown on.
//! - [`gate`]: the layer that answers a call itself when a check refuses it.
//! - [`deadline`]: each call's budget from its `grpc-timeout`, so a node says "no
//!   quorum" before the caller's deadline rather than time out silently.
//! - [`identity`]: the cluster id on every reply (`x-clockwise-cluster-id`).
//! - [`revision`]: a write's revision on its reply (`x-clockwise-revision`).
//! - [`watch`]: the `Watch` streams of both services: a ring's topology, then each
//!   change with its revision.
//! - [`auth`]: bearer tokens and roles, checked in one layer before any handler.
//! - [`limits`]: every limit on callers in one place; the per-client rate limit layer.
//! - [`connections`]: both ports' accept pipeline (connection caps, accept backoff, the
//!   handshake deadline), their HTTP/2 settings, the descriptor limit.
//! - [`open`]: caps on the unauthenticated streams (health watches, reflection).
//! - [`tls`]: TLS on the client port, mutual TLS on the peer port.
//! - [`trace`]: each call in a span with its method and W3C `traceparent`, which a
//!   forward to the leader carries on.
//! - [`sync`]: L6 simulated calls, per-call semaphores.
//! - [`bulkhead`]: per RPC family (sync, batch), a bound on calls at once, taken in a
//!   layer before any work.
//! - [`metrics`]: per-RPC counters and latency, sync counters, `/metrics`.

pub mod auth;
pub mod bulkhead;
pub mod chatrouter;
pub mod cluster;
pub mod connections;
pub mod deadline;
pub mod error;
pub mod gate;
pub mod hashring;
pub mod health;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod open;
pub mod revision;
pub mod state;
pub mod sync;
pub mod tls;
pub mod trace;
pub mod validate;
pub mod watch;

pub use error::ServiceError;

/// What every handler returns.
type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

fn ok<T>(message: T) -> Reply<T> {
    Ok(tonic::Response::new(message))
}

/// `ConfigureRing`'s refusal once the ring is in use.
fn configure(configured: bool, ring: &str) -> Result<(), ServiceError> {
    if configured {
        Ok(())
    } else {
        Err(ServiceError::FailedPrecondition(format!(
            "ring {ring:?} already has nodes or keys; its position space can only be set while it is empty"
        )))
    }
}
