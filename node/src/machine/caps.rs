//! The client port's field checks (`service::validate`), applied again to every command
//! the log decoder reads (issue #20): a command forwarded by a peer or replayed from the
//! log that the client port would refuse is refused on the forward path and never
//! applied. The same functions and caps as the client port, so the two cannot drift.
//!
//! Only what needs no clock: every replica must decide alike. The leader also refuses a
//! timestamp more than a day ahead of its clock when it proposes
//! (`EngineMachine::prepare`), as the client port does.

use clockwise_engine::{ChatRouterOp, Command, HashRingOp, Op};

use super::codec::Session;
use crate::config::range::MAX_BACKUPS_PER_RING;
use crate::service::validate::{self as v, MAX_BATCH_OPERATIONS, MAX_MB, MAX_REPLICAS};

/// Checks every field of `command` (and its session) as the client port does.
///
/// # Errors
/// The first field out of range, named as the client port names it.
pub fn check(command: &Command, session: Option<&Session>) -> v::Result<()> {
    v::ring(&command.ring)?;
    v::non_negative("timestamp", command.timestamp, i64::MAX)?;
    if let Some(session) = session {
        v::session_id(&session.client_id, session.seq)?;
    }
    match &command.op {
        Op::HashRing(op) => hash_ring(op),
        Op::ChatRouter(op) => chat_router(op),
    }
}

fn backups(max_backups: u32) -> v::Result<()> {
    // 0: the leader fills in its own --max-backups-per-ring.
    let max = i64::from(*MAX_BACKUPS_PER_RING.end());
    v::non_negative("max_backups", i64::from(max_backups), max).map(|_| ())
}

fn hash_ring(op: &HashRingOp) -> v::Result<()> {
    match op {
        HashRingOp::Configure { .. } => {}
        HashRingOp::AddNode { node_id }
        | HashRingOp::RemoveNode { node_id }
        | HashRingOp::EvictLru { node_id } => {
            v::id("node_id", node_id)?;
        }
        HashRingOp::AddNodeWithReplicas {
            node_id,
            num_replicas,
        } => {
            v::id("node_id", node_id)?;
            v::non_negative("num_replicas", *num_replicas, MAX_REPLICAS)?;
        }
        HashRingOp::StoreKey { key } => {
            v::id("key", key)?;
        }
        HashRingOp::StoreKeyWithTtl { key, ttl_ms } => {
            v::id("key", key)?;
            v::ttl_ms(*ttl_ms)?;
        }
        HashRingOp::SetCapacity { node_id, capacity } => {
            v::id("node_id", node_id)?;
            v::limit("capacity", *capacity)?;
        }
        HashRingOp::Backup { max_backups } => backups(*max_backups)?,
        HashRingOp::Restore { backup_timestamp } => {
            v::non_negative("backup_timestamp", *backup_timestamp, i64::MAX)?;
        }
        HashRingOp::MergeNodes { from_node, to_node } => {
            v::id("from_node", from_node)?;
            v::id("to_node", to_node)?;
        }
        HashRingOp::BatchOperations { operations } => {
            v::list_len("operations", operations.len(), MAX_BATCH_OPERATIONS)?;
            for (i, op) in operations.iter().enumerate() {
                if op.key.is_empty() || op.key.len() > v::MAX_ID_BYTES {
                    v::id(&format!("operations[{i}].key"), &op.key)?;
                }
            }
        }
    }
    Ok(())
}

fn chat_router(op: &ChatRouterOp) -> v::Result<()> {
    match op {
        ChatRouterOp::Configure { .. } => {}
        ChatRouterOp::AddServer { server_name }
        | ChatRouterOp::RemoveServer { server_name }
        | ChatRouterOp::EvictOldestSession { server_name } => {
            v::id("server_name", server_name)?;
        }
        ChatRouterOp::AddServerWithReplicas {
            server_name,
            num_replicas,
        } => {
            v::id("server_name", server_name)?;
            v::non_negative("num_replicas", *num_replicas, MAX_REPLICAS)?;
        }
        ChatRouterOp::AssignRequest {
            request_id,
            size_mb,
        } => {
            v::id("request_id", request_id)?;
            v::non_negative("size_mb", *size_mb, MAX_MB)?;
        }
        ChatRouterOp::AssignRequestWithTtl {
            request_id,
            size_mb,
            ttl_ms,
        } => {
            v::id("request_id", request_id)?;
            v::non_negative("size_mb", *size_mb, MAX_MB)?;
            v::ttl_ms(*ttl_ms)?;
        }
        ChatRouterOp::SetMemoryLimit {
            server_name,
            max_mb,
        } => {
            v::id("server_name", server_name)?;
            v::limit("max_mb", *max_mb)?;
        }
        ChatRouterOp::Backup { max_backups } => backups(*max_backups)?,
        ChatRouterOp::Restore { backup_timestamp } => {
            v::non_negative("backup_timestamp", *backup_timestamp, i64::MAX)?;
        }
        ChatRouterOp::MergeServers {
            from_server,
            to_server,
        } => {
            v::id("from_server", from_server)?;
            v::id("to_server", to_server)?;
        }
        ChatRouterOp::BatchRequests { operations } => {
            v::list_len("operations", operations.len(), MAX_BATCH_OPERATIONS)?;
            for (i, op) in operations.iter().enumerate() {
                // Field names formatted only for the one refused.
                if op.request_id.is_empty() || op.request_id.len() > v::MAX_ID_BYTES {
                    v::id(&format!("operations[{i}].request_id"), &op.request_id)?;
                }
                if !(0..=MAX_MB).contains(&op.size_mb) {
                    v::non_negative(&format!("operations[{i}].size_mb"), op.size_mb, MAX_MB)?;
                }
            }
        }
    }
    Ok(())
}
