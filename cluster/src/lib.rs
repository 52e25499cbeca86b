//! clockwise replication: one raft-rs group over a durable log, generic over a
//! [`StateMachine`], knowing nothing of rings.
//!
//! - [`state_machine`]: what a replicated state must offer (deterministic apply,
//!   snapshot, restore).
//! - [`driver`]: the thread that owns `RawNode` and runs the Ready loop; requests and
//!   peer messages reach it through two bounded channels, results come back by request
//!   id.
//! - [`replica`]: what a node's service calls: propose from any node (followers forward
//!   to the leader), linearizable reads and membership changes, within a deadline.
//! - [`member`]: a member's client and peer addresses, and their stored form.
//! - [`transport`]: raft messages between nodes and forwarded writes, over gRPC.
//! - [`storage`]: the durable log: raft entries, hard state, membership and the
//!   truncation point in raft-engine, written in synced batches, and the latest
//!   snapshot file; implements `raft::Storage`.
//! - [`snapshot`]: the snapshot envelope (members, state, SHA-256).
//! - [`backup`]: whole-cluster backup files, and seeding a new cluster from one.

pub mod backup;
pub mod driver;
pub mod member;
pub mod replica;
pub mod snapshot;
pub mod state_machine;
pub mod storage;
pub mod transport;

pub use driver::{
    DriverConfig, MembershipChange, ProposeError, RaftHandle, RaftStatus, Role, Transport,
};
pub use member::MemberAddress;
pub use replica::{Backup, Replica, ReplicaError, CLUSTER_UNAVAILABLE_METADATA};
pub use state_machine::StateMachine;
pub use storage::{LogStore, ReadyWrite, StoreError};
pub use transport::{GrpcTransport, RaftTransportService};
