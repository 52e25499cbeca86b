//! Mutations as values: every state change of the engine is one [`Command`], applied by
//! [`Engine::apply`]. A replicated log of commands gives every replica the same state,
//! so a command carries everything its result depends on: the ring, the operation and
//! the timestamp already resolved (never "now").

use super::quota::{QuotaExceeded, Quotas};
use super::{
    BatchResult, ChatRouter, Engine, HashRing, KeyOperation, PositionSpace, RequestOperation,
};

/// One state change, as the replication log will carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub ring: String,
    /// The access time the operation records (ms); resolved before the command exists.
    pub timestamp: i64,
    pub op: Op,
}

/// The mutating drill operations (reads never become commands).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    HashRing(HashRingOp),
    ChatRouter(ChatRouterOp),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashRingOp {
    Configure {
        space: PositionSpace,
    },
    AddNode {
        node_id: String,
    },
    AddNodeWithReplicas {
        node_id: String,
        num_replicas: i64,
    },
    RemoveNode {
        node_id: String,
    },
    StoreKey {
        key: String,
    },
    SetCapacity {
        node_id: String,
        capacity: i64,
    },
    EvictLru {
        node_id: String,
    },
    BatchOperations {
        operations: Vec<KeyOperation>,
    },
    /// A store whose key dies `ttl_ms` after the command's timestamp.
    StoreKeyWithTtl {
        key: String,
        ttl_ms: i64,
    },
    /// `max_backups` is the leader's `--max-backups-per-ring`, the same on every replica.
    Backup {
        max_backups: u32,
    },
    Restore {
        backup_timestamp: i64,
    },
    MergeNodes {
        from_node: String,
        to_node: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatRouterOp {
    Configure {
        space: PositionSpace,
    },
    AddServer {
        server_name: String,
    },
    AddServerWithReplicas {
        server_name: String,
        num_replicas: i64,
    },
    RemoveServer {
        server_name: String,
    },
    AssignRequest {
        request_id: String,
        size_mb: i64,
    },
    SetMemoryLimit {
        server_name: String,
        max_mb: i64,
    },
    EvictOldestSession {
        server_name: String,
    },
    BatchRequests {
        operations: Vec<RequestOperation>,
    },
    AssignRequestWithTtl {
        request_id: String,
        size_mb: i64,
        ttl_ms: i64,
    },
    Backup {
        max_backups: u32,
    },
    Restore {
        backup_timestamp: i64,
    },
    MergeServers {
        from_server: String,
        to_server: String,
    },
}

/// What applying a command answered: the drill's return value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `add_*`, `remove_*`, `set_*`, `configure`.
    Done(bool),
    /// A node / server id, a key / request id, or the drill's `None`.
    Name(Option<String>),
    Batch(Vec<BatchResult>),
    /// A backup's key count; a restore's, or `None` when there was nothing to restore.
    Count(Option<i64>),
    /// Refused by a quota: nothing changed.
    Refused(QuotaExceeded),
}

impl Outcome {
    /// The `bool` of an `add_*` / `remove_*` / `set_*` / `configure` command.
    pub fn into_done(self) -> bool {
        debug_assert!(matches!(self, Outcome::Done(_)), "{self:?}");
        matches!(self, Outcome::Done(true))
    }

    /// The name a store, assign or eviction answered.
    pub fn into_name(self) -> Option<String> {
        debug_assert!(matches!(self, Outcome::Name(_)), "{self:?}");
        match self {
            Outcome::Name(name) => name,
            _ => None,
        }
    }

    pub fn into_count(self) -> Option<i64> {
        debug_assert!(matches!(self, Outcome::Count(_)), "{self:?}");
        match self {
            Outcome::Count(count) => count,
            _ => None,
        }
    }

    pub fn into_batch(self) -> Vec<BatchResult> {
        debug_assert!(matches!(self, Outcome::Batch(_)), "{self:?}");
        match self {
            Outcome::Batch(results) => results,
            _ => Vec::new(),
        }
    }
}

impl Engine {
    /// Applies one command within the default [`Quotas`] (see [`Engine::apply_within`]).
    pub fn apply(&mut self, command: &Command) -> Outcome {
        self.apply_within(command, &Quotas::default())
    }

    /// Applies one command. Deterministic: the same commands in the same order, within
    /// the same quotas, give the same outcomes and the same state on every replica.
    ///
    /// Every command first moves its ring's clock to its timestamp (dropping what is dead
    /// then) and drops what is dead after it, so expiry depends on command timestamps
    /// alone. A command on a ring that does not exist creates it only if it leaves
    /// something there (a node, a key, a backup, a merge record, a position space other
    /// than the default): a no-op on a new name leaves no ring behind, and the clock of
    /// a ring holding nothing is unobservable. A command a quota refuses changes nothing
    /// and answers [`Outcome::Refused`].
    pub fn apply_within(&mut self, command: &Command, quotas: &Quotas) -> Outcome {
        let (ts, name) = (command.timestamp, command.ring.as_str());
        match &command.op {
            Op::HashRing(op) => {
                if let Some(r) = self.hash_rings.get_mut(name) {
                    if let Err(refused) = admit_hash_ring(r, op, quotas) {
                        return Outcome::Refused(refused);
                    }
                    let outcome = apply_hash_ring(r, ts, op);
                    self.fold_ring(name);
                    return outcome;
                }
                let mut r = HashRing::default();
                if let Err(refused) = admit_hash_ring(&r, op, quotas) {
                    return Outcome::Refused(refused);
                }
                let outcome = apply_hash_ring(&mut r, ts, op);
                if r.ns.is_pristine() {
                    return outcome;
                }
                if let Err(refused) = quotas.admit_ring(self.ring_count()) {
                    return Outcome::Refused(refused);
                }
                self.hash_rings.insert(name.to_owned(), r);
                self.fold_ring(name);
                outcome
            }
            Op::ChatRouter(op) => {
                if let Some(c) = self.chat_routers.get_mut(name) {
                    if let Err(refused) = admit_chat_router(c, op, quotas) {
                        return Outcome::Refused(refused);
                    }
                    let outcome = apply_chat_router(c, ts, op);
                    self.fold_router(name);
                    return outcome;
                }
                let mut c = ChatRouter::default();
                if let Err(refused) = admit_chat_router(&c, op, quotas) {
                    return Outcome::Refused(refused);
                }
                let outcome = apply_chat_router(&mut c, ts, op);
                if c.is_pristine() {
                    return outcome;
                }
                if let Err(refused) = quotas.admit_ring(self.ring_count()) {
                    return Outcome::Refused(refused);
                }
                self.chat_routers.insert(name.to_owned(), c);
                self.fold_router(name);
                outcome
            }
        }
    }
}

/// The quota check of a HashRing command, before it changes anything.
fn admit_hash_ring(r: &HashRing, op: &HashRingOp, quotas: &Quotas) -> Result<(), QuotaExceeded> {
    let new_vnodes = match op {
        HashRingOp::AddNode { node_id } if r.ns.node(node_id).is_none() => 1,
        HashRingOp::AddNodeWithReplicas {
            node_id,
            num_replicas,
        } if r.ns.node(node_id).is_none() => (*num_replicas).max(0) as u64,
        _ => return Ok(()),
    };
    quotas.admit_node(r.ns.ring.node_count(), r.ns.ring.vnode_count(), new_vnodes)
}

fn admit_chat_router(
    c: &ChatRouter,
    op: &ChatRouterOp,
    quotas: &Quotas,
) -> Result<(), QuotaExceeded> {
    let new_vnodes = match op {
        ChatRouterOp::AddServer { server_name } if c.ns.node(server_name).is_none() => 1,
        ChatRouterOp::AddServerWithReplicas {
            server_name,
            num_replicas,
        } if c.ns.node(server_name).is_none() => (*num_replicas).max(0) as u64,
        _ => return Ok(()),
    };
    quotas.admit_node(c.ns.ring.node_count(), c.ns.ring.vnode_count(), new_vnodes)
}

/// One HashRing command on its namespace, between the two clock moves.
fn apply_hash_ring(r: &mut HashRing, ts: i64, op: &HashRingOp) -> Outcome {
    r.ns.advance(ts);
    let outcome = match op {
        HashRingOp::Configure { space } => Outcome::Done(r.configure(*space)),
        HashRingOp::AddNode { node_id } => Outcome::Done(r.add_node(node_id)),
        HashRingOp::AddNodeWithReplicas {
            node_id,
            num_replicas,
        } => Outcome::Done(r.add_node_with_replicas(node_id, *num_replicas)),
        HashRingOp::RemoveNode { node_id } => Outcome::Done(r.remove_node(node_id)),
        HashRingOp::StoreKey { key } => Outcome::Name(r.store_key(ts, key).map(str::to_owned)),
        HashRingOp::SetCapacity { node_id, capacity } => {
            Outcome::Done(r.set_capacity(node_id, *capacity))
        }
        HashRingOp::EvictLru { node_id } => Outcome::Name(r.evict_lru(node_id)),
        HashRingOp::BatchOperations { operations } => {
            Outcome::Batch(r.batch_operations(ts, operations))
        }
        HashRingOp::StoreKeyWithTtl { key, ttl_ms } => {
            Outcome::Name(r.store_key_with_ttl(ts, key, *ttl_ms).map(str::to_owned))
        }
        HashRingOp::Backup { max_backups } => {
            Outcome::Count(Some(r.backup(ts, *max_backups as usize)))
        }
        HashRingOp::Restore { backup_timestamp } => {
            Outcome::Count(r.restore(ts, *backup_timestamp))
        }
        HashRingOp::MergeNodes { from_node, to_node } => {
            Outcome::Done(r.merge_nodes(ts, from_node, to_node))
        }
    };
    r.ns.purge();
    outcome
}

fn apply_chat_router(c: &mut ChatRouter, ts: i64, op: &ChatRouterOp) -> Outcome {
    c.ns.advance(ts);
    let outcome = match op {
        ChatRouterOp::Configure { space } => Outcome::Done(c.configure(*space)),
        ChatRouterOp::AddServer { server_name } => Outcome::Done(c.add_server(server_name)),
        ChatRouterOp::AddServerWithReplicas {
            server_name,
            num_replicas,
        } => Outcome::Done(c.add_server_with_replicas(server_name, *num_replicas)),
        ChatRouterOp::RemoveServer { server_name } => Outcome::Done(c.remove_server(server_name)),
        ChatRouterOp::AssignRequest {
            request_id,
            size_mb,
        } => Outcome::Name(
            c.assign_request(ts, request_id, *size_mb)
                .map(str::to_owned),
        ),
        ChatRouterOp::SetMemoryLimit {
            server_name,
            max_mb,
        } => Outcome::Done(c.set_memory_limit(server_name, *max_mb)),
        ChatRouterOp::EvictOldestSession { server_name } => {
            Outcome::Name(c.evict_oldest_session(server_name))
        }
        ChatRouterOp::BatchRequests { operations } => {
            Outcome::Batch(c.batch_requests(ts, operations))
        }
        ChatRouterOp::AssignRequestWithTtl {
            request_id,
            size_mb,
            ttl_ms,
        } => Outcome::Name(
            c.assign_request_with_ttl(ts, request_id, *size_mb, *ttl_ms)
                .map(str::to_owned),
        ),
        ChatRouterOp::Backup { max_backups } => {
            Outcome::Count(Some(c.backup(ts, *max_backups as usize)))
        }
        ChatRouterOp::Restore { backup_timestamp } => {
            Outcome::Count(c.restore(ts, *backup_timestamp))
        }
        ChatRouterOp::MergeServers {
            from_server,
            to_server,
        } => Outcome::Done(c.merge_servers(ts, from_server, to_server)),
    };
    c.ns.purge();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{hr, sample_log as log};

    #[test]
    fn the_same_log_gives_the_same_outcomes_and_state() {
        let (mut first, mut second) = (Engine::new(), Engine::new());
        let outcomes: Vec<Outcome> = log().iter().map(|c| first.apply(c)).collect();
        let again: Vec<Outcome> = log().iter().map(|c| second.apply(c)).collect();
        assert_eq!(outcomes, again);
        assert_eq!(first.state_digest(), second.state_digest());
        // A replica restored from a snapshot mid-log converges with one that applied it all.
        let log = log();
        let (head, tail) = log.split_at(9);
        let mut third = Engine::new();
        head.iter().for_each(|c| drop(third.apply(c)));
        let mut restored = Engine::restore(&third.snapshot()).expect("snapshot");
        tail.iter().for_each(|c| drop(restored.apply(c)));
        assert_eq!(restored.state_digest(), first.state_digest());
    }

    #[test]
    fn outcomes_are_the_facades_results() {
        let mut e = Engine::new();
        let outcomes: Vec<Outcome> = log().iter().map(|c| e.apply(c)).collect();
        assert_eq!(outcomes[0], Outcome::Done(true));
        assert_eq!(outcomes[1], Outcome::Done(true));
        assert!(matches!(&outcomes[3], Outcome::Name(Some(_))));
        let Outcome::Batch(batch) = &outcomes[6] else {
            panic!("a batch answers a batch: {:?}", outcomes[6]);
        };
        assert!(matches!(
            batch[..],
            [BatchResult::Node(_), BatchResult::Ok(_), BatchResult::Empty]
        ));
        // Configuring ring "c" while it is empty succeeds; ring "a" was in use.
        assert_eq!(outcomes[17], Outcome::Done(true));
        let late = e.apply(&hr(
            "a",
            9,
            HashRingOp::Configure {
                space: PositionSpace::Drill,
            },
        ));
        assert_eq!(late, Outcome::Done(false));
    }
}
