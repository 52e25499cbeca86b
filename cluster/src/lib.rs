//! clockwise replication: one raft-rs group over a durable log, generic over a
//! [`StateMachine`], knowing nothing of rings.
//!
//! # Layout
//!
//! - [`state_machine`]: what a replicated state offers (deterministic apply, frozen
//!   snapshot views, streaming restore).
//! - [`driver`]: the thread that owns `RawNode`; its handle, config and run loop.
//!   - `driver/ready.rs`: one Ready in raft-rs's order; applying committed entries.
//!   - `driver/proposals.rs`: writes on the leader; request ids; failing what is in flight.
//!   - `driver/reads.rs`: linearizable reads (ReadIndex).
//!   - `driver/membership.rs`: membership changes, learner promotion, leader transfer.
//!   - `driver/snapshots.rs`: the snapshot-writer thread; installing, restoring.
//!   - `driver/raft_log.rs`: raft-rs's logs (slog) into `tracing`, with the node id.
//! - [`identity`]: the cluster id: made at founding, stored, checked on every peer call.
//! - [`peer_cert`]: the node id a peer certificate names (URI SAN `clockwise://node/<id>`).
//! - [`replica`]: a node's calls: propose anywhere, linearizable reads, membership.
//! - [`member`]: a member's addresses, their stored form, and `--peers` lists.
//! - [`transport`]: raft messages between nodes and forwarded writes, over gRPC.
//!   `transport/service.rs`: its server side (caller identity, snapshot rules).
//! - [`storage`]: the durable log in raft-engine, its term index, the snapshot files;
//!   `log_cleaner`: its file deletions, off the driver thread.
//! - [`terms`]: the log's term runs in memory, so `term()` never decodes an entry.
//! - [`snapshot`]: snapshot files (streamed write, receive, verified read), the
//!   descriptor raft carries, the in-memory envelope of backups.
//!   `snapshot_io`: its writers (hashing; syncing every 8 MiB so a big file never
//!   stalls the log's fsyncs).
//! - [`backup`]: whole-cluster backup files, and seeding a new cluster from one.
//! - [`trace_context`]: a call's W3C `traceparent`, carried on when a follower forwards.
//! - [`timeline`]: trace events at the points of a request's path (`timeline!`).

pub mod backup;
pub mod driver;
pub mod identity;
mod log_cleaner;
pub mod member;
pub mod peer_cert;
pub mod replica;
pub mod snapshot;
mod snapshot_io;
pub mod state_machine;
pub mod storage;
pub mod terms;
pub mod timeline;
pub mod trace_context;
pub mod transport;

pub use driver::{
    DriverConfig, MembershipChange, ProposeError, RaftHandle, RaftStatus, Role, Transport,
};
pub use identity::{ClusterIdentity, CLUSTER_ID_METADATA};
pub use member::{MemberAddress, Peers, PeersError};
pub use replica::{Backup, Replica, ReplicaError, CLUSTER_UNAVAILABLE_METADATA};
pub use state_machine::{StateMachine, StateSnapshot};
pub use storage::{LogStore, ReadyWrite, StoreError};
pub use transport::{GrpcTransport, RaftTransportService};
