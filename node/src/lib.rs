//! clockwise node: a consistent-hash placement service.
//!
//! - [`engine`]: the pure ring state machine (HashRing and ChatRouter drills, many
//!   namespaces, canonical snapshots). No I/O, no clock, no async.

pub mod engine;
