//! clockwise node: a consistent-hash placement service.
//!
//! - [`engine`]: the pure ring state machine (HashRing and ChatRouter drills, many
//!   namespaces, canonical snapshots). No I/O, no clock, no async.
//! - [`codec`]: the replicated log's wire format for engine commands (prost).
//! - [`service`]: the gRPC server over the engine: handlers, validation, status
//!   mapping, L6 sync runner, metrics, reflection and health.
//! - The `clockwise` binary (`src/main.rs`) is the command line.

pub mod codec;
pub mod service;
