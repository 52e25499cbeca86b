//! clockwise replication (issue #4, not built yet): a raft-rs `RawNode` driver over a
//! durable raft-engine log, generic over a state-machine trait. This crate is empty
//! until then; `design.md` describes what goes here.
