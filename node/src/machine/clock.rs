//! The only clock of the replicated state: the leader's wall clock, stamped into a
//! command sent with timestamp 0 before it is proposed (`EngineMachine::prepare`), so
//! apply itself never reads a clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// The caller's timestamp, or the node's wall clock in ms when the caller sent 0.
pub fn resolve_timestamp(ts: i64) -> i64 {
    if ts != 0 {
        return ts;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as i64)
}
