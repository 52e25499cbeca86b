//! clockwise replication: one raft-rs group over a durable log, generic over a
//! [`StateMachine`], knowing nothing of rings.
//!
//! - [`state_machine`]: what a replicated state must offer (deterministic apply,
//!   snapshot, restore).
//! - [`storage`]: the durable log: raft entries, hard state, membership and the
//!   truncation point in raft-engine, written in synced batches; implements
//!   `raft::Storage`.
//!
//! Still to come (issue #4): the task that owns `RawNode` and runs the Ready loop, the
//! gRPC peer transport, proposal tracking by request id, ReadIndex reads, snapshots
//! sent in chunks, membership changes.

pub mod state_machine;
pub mod storage;

pub use state_machine::StateMachine;
pub use storage::{LogStore, ReadyWrite, StoreError};
