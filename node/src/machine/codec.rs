//! The log's wire format for [`Command`]s (`clockwise.command.v1.Command`) and for the
//! [`Outcome`]s carried back to proposers (`clockwise.command.v1.Outcome`), via prost.
//!
//! Decoding refuses what the engine could not apply (a missing operation, an unknown
//! enum value) instead of guessing: a replica must never apply something other than
//! what was proposed. It also refuses what the client port would have refused (every
//! field range-checked by `caps`): such an entry is skipped by every replica, and a
//! forwarded one is refused before it is proposed.

use clockwise_proto::command::v1 as pb;
use clockwise_proto::common::v1::PositionSpace as PbSpace;
use prost::Message;

use clockwise_engine::{
    BatchResult, ChatRouterOp, Command, HashRingOp, KeyOperation, KeyOperationKind, Op, Outcome,
    PositionSpace, Quota, QuotaExceeded, Quotas, RequestOperation, RequestOperationKind,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("command does not decode: {0}")]
    Malformed(String),
    #[error("command has no operation")]
    MissingOp,
    #[error("command has an unknown {0} value {1}")]
    UnknownEnum(&'static str, i32),
    /// A value no client could have sent (the service refuses it): such an entry is
    /// skipped by every replica instead of being applied.
    #[error("command has {0} = {1}, beyond what the service accepts")]
    OutOfRange(&'static str, i64),
    /// A field the client port refuses ("FIELD: reason", as the client port words it):
    /// the leader refuses such a command; a replica skips such an entry.
    #[error("{0}")]
    Refused(String),
    /// A retried write's sequence number is older than the client's last applied one.
    #[error("the sequence number is older than this client's last applied one ({last})")]
    StaleSequence { last: u64 },
    /// A write with a new session was refused: the sessions are at their bound within
    /// their window.
    #[error("the retry sessions are full ({limit}) and none is old enough to drop")]
    SessionsFull { limit: u64 },
    /// The command was refused by a quota; nothing changed.
    #[error("{0}")]
    QuotaExceeded(QuotaExceeded),
}

/// A retrying client's identity and the sequence number of one write: the state machine
/// applies each `(client_id, seq)` once and answers a repeat with the first outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub client_id: String,
    pub seq: u64,
}

/// A log entry: a command and, for deduplicated writes, its session.
pub fn encode_entry(command: &Command, session: Option<&Session>) -> Vec<u8> {
    encode_stamped_entry(command, session, 0)
}

/// A log entry with the leader's clock when it proposed it (`proposed_at_ms`, the
/// sessions' clock; 0 = not stamped).
pub fn encode_stamped_entry(
    command: &Command,
    session: Option<&Session>,
    proposed_at_ms: i64,
) -> Vec<u8> {
    stamped(command, session, proposed_at_ms).encode_to_vec()
}

fn stamped(command: &Command, session: Option<&Session>, proposed_at_ms: i64) -> pb::Command {
    let mut pb = to_proto(command);
    if let Some(session) = session {
        pb.client_id = session.client_id.clone();
        pb.seq = session.seq;
    }
    pb.proposed_at_ms = proposed_at_ms;
    pb
}

pub fn decode_entry(bytes: &[u8]) -> Result<(Command, Option<Session>), CodecError> {
    decode_stamped_entry(bytes).map(|(command, session, _)| (command, session))
}

/// [`encode_stamped_entry`] with the leader's quotas, which every replica applies the
/// entry within.
pub fn encode_entry_within(
    command: &Command,
    session: Option<&Session>,
    proposed_at_ms: i64,
    quotas: &Quotas,
) -> Vec<u8> {
    let mut pb = stamped(command, session, proposed_at_ms);
    pb.quotas = Some(pb::Quotas {
        max_rings: quotas.max_rings,
        max_nodes_per_ring: quotas.max_nodes_per_ring,
        max_vnodes_per_ring: quotas.max_vnodes_per_ring,
    });
    pb.encode_to_vec()
}

/// [`decode_stamped_entry`] with the quotas the entry is to be applied within: the
/// leader's stamp, or none at all for an entry written before quotas (so that replaying
/// it gives what it gave then).
pub fn decode_entry_within(
    bytes: &[u8],
) -> Result<(Command, Option<Session>, i64, Quotas), CodecError> {
    let mut pb = pb::Command::decode(bytes).map_err(|e| CodecError::Malformed(e.to_string()))?;
    let session = (!pb.client_id.is_empty()).then(|| Session {
        client_id: pb.client_id.clone(),
        seq: pb.seq,
    });
    let quotas = pb.quotas.take().map_or(Quotas::UNLIMITED, |q| Quotas {
        max_rings: q.max_rings,
        max_nodes_per_ring: q.max_nodes_per_ring,
        max_vnodes_per_ring: q.max_vnodes_per_ring,
    });
    let proposed_at_ms = pb.proposed_at_ms;
    let command = from_proto(pb)?;
    // Every field as the client port checks it: a forwarded or replayed command the
    // client port would refuse is never applied.
    super::caps::check(&command, session.as_ref())
        .map_err(|e| CodecError::Refused(e.to_string()))?;
    Ok((command, session, proposed_at_ms, quotas))
}

/// [`decode_entry`], with the leader's `proposed_at_ms` stamp (0: none).
pub fn decode_stamped_entry(bytes: &[u8]) -> Result<(Command, Option<Session>, i64), CodecError> {
    decode_entry_within(bytes)
        .map(|(command, session, proposed_at_ms, _)| (command, session, proposed_at_ms))
}

/// The answer to a write with a new session when the sessions are full.
pub fn encode_sessions_full(limit: u64) -> Vec<u8> {
    pb::Outcome {
        value: Some(pb::outcome::Value::SessionsFull(limit)),
        revision: 0,
    }
    .encode_to_vec()
}

/// The answer to a write whose sequence number is older than the client's last one.
pub fn encode_stale_sequence(last: u64) -> Vec<u8> {
    pb::Outcome {
        value: Some(pb::outcome::Value::StaleSequence(last)),
        revision: 0,
    }
    .encode_to_vec()
}

pub fn encode_outcome(outcome: &Outcome) -> Vec<u8> {
    encode_outcome_at(outcome, 0)
}

/// An outcome and the log index it applied at (its revision).
pub fn encode_outcome_at(outcome: &Outcome, revision: u64) -> Vec<u8> {
    let value = match outcome {
        Outcome::Done(done) => pb::outcome::Value::Done(*done),
        Outcome::Name(name) => pb::outcome::Value::Name(pb::Name {
            value: name.clone(),
        }),
        Outcome::Count(value) => pb::outcome::Value::Count(pb::Count { value: *value }),
        Outcome::Refused(refused) => pb::outcome::Value::QuotaExceeded(pb::QuotaExceeded {
            quota: refused.quota.name().to_owned(),
            limit: refused.limit,
        }),
        Outcome::Batch(results) => pb::outcome::Value::Batch(pb::BatchOutcome {
            results: results
                .iter()
                .map(|r| pb::BatchEntry {
                    value: match r {
                        BatchResult::Node(name) => Some(pb::batch_entry::Value::Name(name.clone())),
                        BatchResult::Ok(ok) => Some(pb::batch_entry::Value::Ok(*ok)),
                        BatchResult::Empty => None,
                    },
                })
                .collect(),
        }),
    };
    pb::Outcome {
        value: Some(value),
        revision,
    }
    .encode_to_vec()
}

pub fn decode_outcome(bytes: &[u8]) -> Result<Outcome, CodecError> {
    decode_outcome_at(bytes).map(|(outcome, _)| outcome)
}

/// An outcome and its revision (0 when recorded before outcomes carried one).
pub fn decode_outcome_at(bytes: &[u8]) -> Result<(Outcome, u64), CodecError> {
    let pb = pb::Outcome::decode(bytes).map_err(|e| CodecError::Malformed(e.to_string()))?;
    let revision = pb.revision;
    let outcome = match pb.value.ok_or(CodecError::MissingOp)? {
        pb::outcome::Value::Done(done) => Outcome::Done(done),
        pb::outcome::Value::Name(name) => Outcome::Name(name.value),
        pb::outcome::Value::Count(count) => Outcome::Count(count.value),
        pb::outcome::Value::StaleSequence(last) => return Err(CodecError::StaleSequence { last }),
        pb::outcome::Value::SessionsFull(limit) => return Err(CodecError::SessionsFull { limit }),
        pb::outcome::Value::QuotaExceeded(refused) => {
            let quota = [Quota::Rings, Quota::NodesPerRing, Quota::VnodesPerRing]
                .into_iter()
                .find(|q| q.name() == refused.quota)
                .ok_or(CodecError::Malformed(format!(
                    "unknown quota {:?}",
                    refused.quota
                )))?;
            return Err(CodecError::QuotaExceeded(QuotaExceeded {
                quota,
                limit: refused.limit,
            }));
        }
        pb::outcome::Value::Batch(batch) => Outcome::Batch(
            batch
                .results
                .into_iter()
                .map(|r| match r.value {
                    Some(pb::batch_entry::Value::Name(name)) => BatchResult::Node(name),
                    Some(pb::batch_entry::Value::Ok(ok)) => BatchResult::Ok(ok),
                    None => BatchResult::Empty,
                })
                .collect(),
        ),
    };
    Ok((outcome, revision))
}

pub fn encode(command: &Command) -> Vec<u8> {
    encode_entry(command, None)
}

pub fn decode(bytes: &[u8]) -> Result<Command, CodecError> {
    decode_entry(bytes).map(|(command, _)| command)
}

fn space_to_proto(space: PositionSpace) -> i32 {
    match space {
        PositionSpace::Drill => PbSpace::Drill as i32,
        PositionSpace::U64 => PbSpace::U64 as i32,
    }
}

/// Only the upper bound matters here: a negative count registers a node with no
/// positions, as the drill does, and costs nothing.
fn replicas(n: i64) -> Result<i64, CodecError> {
    if n <= clockwise_engine::MAX_REPLICAS {
        Ok(n)
    } else {
        Err(CodecError::OutOfRange("num_replicas", n))
    }
}

fn space_from_proto(value: i32) -> Result<PositionSpace, CodecError> {
    match PbSpace::try_from(value) {
        Ok(PbSpace::Drill) => Ok(PositionSpace::Drill),
        Ok(PbSpace::U64) => Ok(PositionSpace::U64),
        Err(_) => Err(CodecError::UnknownEnum("PositionSpace", value)),
    }
}

fn to_proto(command: &Command) -> pb::Command {
    use pb::chat_router_op::Op as C;
    use pb::hash_ring_op::Op as H;
    let op = match &command.op {
        Op::HashRing(op) => pb::command::Op::HashRing(pb::HashRingOp {
            op: Some(match op {
                HashRingOp::Configure { space } => H::Configure(space_to_proto(*space)),
                HashRingOp::AddNode { node_id } => H::AddNode(node_id.clone()),
                HashRingOp::AddNodeWithReplicas {
                    node_id,
                    num_replicas,
                } => H::AddNodeWithReplicas(pb::NodeReplicas {
                    name: node_id.clone(),
                    num_replicas: *num_replicas,
                }),
                HashRingOp::RemoveNode { node_id } => H::RemoveNode(node_id.clone()),
                HashRingOp::StoreKey { key } => H::StoreKey(key.clone()),
                HashRingOp::SetCapacity { node_id, capacity } => H::SetCapacity(pb::NodeLimit {
                    name: node_id.clone(),
                    limit: *capacity,
                }),
                HashRingOp::EvictLru { node_id } => H::EvictLru(node_id.clone()),
                HashRingOp::StoreKeyWithTtl { key, ttl_ms } => H::StoreKeyWithTtl(pb::KeyTtl {
                    key: key.clone(),
                    ttl_ms: *ttl_ms,
                }),
                HashRingOp::Backup { max_backups } => H::Backup(pb::Backup {
                    max_backups: *max_backups,
                }),
                HashRingOp::Restore { backup_timestamp } => H::Restore(pb::Restore {
                    backup_timestamp: *backup_timestamp,
                }),
                HashRingOp::MergeNodes { from_node, to_node } => H::MergeNodes(pb::Merge {
                    from: from_node.clone(),
                    to: to_node.clone(),
                }),
                HashRingOp::BatchOperations { operations } => {
                    H::BatchOperations(pb::KeyOperations {
                        operations: operations
                            .iter()
                            .map(|op| pb::KeyOperation {
                                kind: key_kind_to_proto(op.kind) as i32,
                                key: op.key.clone(),
                            })
                            .collect(),
                    })
                }
            }),
        }),
        Op::ChatRouter(op) => pb::command::Op::ChatRouter(pb::ChatRouterOp {
            op: Some(match op {
                ChatRouterOp::Configure { space } => C::Configure(space_to_proto(*space)),
                ChatRouterOp::AddServer { server_name } => C::AddServer(server_name.clone()),
                ChatRouterOp::AddServerWithReplicas {
                    server_name,
                    num_replicas,
                } => C::AddServerWithReplicas(pb::NodeReplicas {
                    name: server_name.clone(),
                    num_replicas: *num_replicas,
                }),
                ChatRouterOp::RemoveServer { server_name } => C::RemoveServer(server_name.clone()),
                ChatRouterOp::AssignRequest {
                    request_id,
                    size_mb,
                } => C::AssignRequest(pb::Assign {
                    request_id: request_id.clone(),
                    size_mb: *size_mb,
                    ttl_ms: 0,
                }),
                ChatRouterOp::AssignRequestWithTtl {
                    request_id,
                    size_mb,
                    ttl_ms,
                } => C::AssignRequest(pb::Assign {
                    request_id: request_id.clone(),
                    size_mb: *size_mb,
                    ttl_ms: *ttl_ms,
                }),
                ChatRouterOp::Backup { max_backups } => C::Backup(pb::Backup {
                    max_backups: *max_backups,
                }),
                ChatRouterOp::Restore { backup_timestamp } => C::Restore(pb::Restore {
                    backup_timestamp: *backup_timestamp,
                }),
                ChatRouterOp::MergeServers {
                    from_server,
                    to_server,
                } => C::MergeServers(pb::Merge {
                    from: from_server.clone(),
                    to: to_server.clone(),
                }),
                ChatRouterOp::SetMemoryLimit {
                    server_name,
                    max_mb,
                } => C::SetMemoryLimit(pb::NodeLimit {
                    name: server_name.clone(),
                    limit: *max_mb,
                }),
                ChatRouterOp::EvictOldestSession { server_name } => {
                    C::EvictOldestSession(server_name.clone())
                }
                ChatRouterOp::BatchRequests { operations } => {
                    C::BatchRequests(pb::RequestOperations {
                        operations: operations
                            .iter()
                            .map(|op| pb::RequestOperation {
                                kind: request_kind_to_proto(op.kind) as i32,
                                request_id: op.request_id.clone(),
                                size_mb: op.size_mb,
                            })
                            .collect(),
                    })
                }
            }),
        }),
    };
    pb::Command {
        ring: command.ring.clone(),
        timestamp: command.timestamp,
        op: Some(op),
        client_id: String::new(),
        seq: 0,
        proposed_at_ms: 0,
        quotas: None,
    }
}

fn from_proto(command: pb::Command) -> Result<Command, CodecError> {
    use pb::chat_router_op::Op as C;
    use pb::hash_ring_op::Op as H;
    let op = match command.op.ok_or(CodecError::MissingOp)? {
        pb::command::Op::HashRing(op) => {
            Op::HashRing(match op.op.ok_or(CodecError::MissingOp)? {
                H::Configure(space) => HashRingOp::Configure {
                    space: space_from_proto(space)?,
                },
                H::AddNode(node_id) => HashRingOp::AddNode { node_id },
                H::AddNodeWithReplicas(r) => HashRingOp::AddNodeWithReplicas {
                    node_id: r.name,
                    num_replicas: replicas(r.num_replicas)?,
                },
                H::RemoveNode(node_id) => HashRingOp::RemoveNode { node_id },
                H::StoreKey(key) => HashRingOp::StoreKey { key },
                H::StoreKeyWithTtl(k) => HashRingOp::StoreKeyWithTtl {
                    key: k.key,
                    ttl_ms: k.ttl_ms,
                },
                H::Backup(b) => HashRingOp::Backup {
                    max_backups: b.max_backups,
                },
                H::Restore(r) => HashRingOp::Restore {
                    backup_timestamp: r.backup_timestamp,
                },
                H::MergeNodes(m) => HashRingOp::MergeNodes {
                    from_node: m.from,
                    to_node: m.to,
                },
                H::SetCapacity(l) => HashRingOp::SetCapacity {
                    node_id: l.name,
                    capacity: l.limit,
                },
                H::EvictLru(node_id) => HashRingOp::EvictLru { node_id },
                H::BatchOperations(ops) => HashRingOp::BatchOperations {
                    operations: ops
                        .operations
                        .into_iter()
                        .map(|op| {
                            Ok(KeyOperation {
                                kind: key_kind_from_proto(op.kind)?,
                                key: op.key,
                            })
                        })
                        .collect::<Result<_, CodecError>>()?,
                },
            })
        }
        pb::command::Op::ChatRouter(op) => {
            Op::ChatRouter(match op.op.ok_or(CodecError::MissingOp)? {
                C::Configure(space) => ChatRouterOp::Configure {
                    space: space_from_proto(space)?,
                },
                C::AddServer(server_name) => ChatRouterOp::AddServer { server_name },
                C::AddServerWithReplicas(r) => ChatRouterOp::AddServerWithReplicas {
                    server_name: r.name,
                    num_replicas: replicas(r.num_replicas)?,
                },
                C::RemoveServer(server_name) => ChatRouterOp::RemoveServer { server_name },
                C::AssignRequest(a) if a.ttl_ms != 0 => ChatRouterOp::AssignRequestWithTtl {
                    request_id: a.request_id,
                    size_mb: a.size_mb,
                    ttl_ms: a.ttl_ms,
                },
                C::AssignRequest(a) => ChatRouterOp::AssignRequest {
                    request_id: a.request_id,
                    size_mb: a.size_mb,
                },
                C::Backup(b) => ChatRouterOp::Backup {
                    max_backups: b.max_backups,
                },
                C::Restore(r) => ChatRouterOp::Restore {
                    backup_timestamp: r.backup_timestamp,
                },
                C::MergeServers(m) => ChatRouterOp::MergeServers {
                    from_server: m.from,
                    to_server: m.to,
                },
                C::SetMemoryLimit(l) => ChatRouterOp::SetMemoryLimit {
                    server_name: l.name,
                    max_mb: l.limit,
                },
                C::EvictOldestSession(server_name) => {
                    ChatRouterOp::EvictOldestSession { server_name }
                }
                C::BatchRequests(ops) => ChatRouterOp::BatchRequests {
                    operations: ops
                        .operations
                        .into_iter()
                        .map(|op| {
                            Ok(RequestOperation {
                                kind: request_kind_from_proto(op.kind)?,
                                request_id: op.request_id,
                                size_mb: op.size_mb,
                            })
                        })
                        .collect::<Result<_, CodecError>>()?,
                },
            })
        }
    };
    Ok(Command {
        ring: command.ring,
        timestamp: command.timestamp,
        op,
    })
}

fn key_kind_to_proto(kind: KeyOperationKind) -> pb::KeyOperationKind {
    match kind {
        KeyOperationKind::Store => pb::KeyOperationKind::Store,
        KeyOperationKind::Route => pb::KeyOperationKind::Route,
        KeyOperationKind::RemoveKey => pb::KeyOperationKind::RemoveKey,
        KeyOperationKind::Unknown => pb::KeyOperationKind::Unknown,
    }
}

fn key_kind_from_proto(value: i32) -> Result<KeyOperationKind, CodecError> {
    Ok(match pb::KeyOperationKind::try_from(value) {
        Ok(pb::KeyOperationKind::Store) => KeyOperationKind::Store,
        Ok(pb::KeyOperationKind::Route) => KeyOperationKind::Route,
        Ok(pb::KeyOperationKind::RemoveKey) => KeyOperationKind::RemoveKey,
        Ok(pb::KeyOperationKind::Unknown) => KeyOperationKind::Unknown,
        Err(_) => return Err(CodecError::UnknownEnum("KeyOperationKind", value)),
    })
}

fn request_kind_to_proto(kind: RequestOperationKind) -> pb::RequestOperationKind {
    match kind {
        RequestOperationKind::Assign => pb::RequestOperationKind::Assign,
        RequestOperationKind::Route => pb::RequestOperationKind::Route,
        RequestOperationKind::Remove => pb::RequestOperationKind::Remove,
        RequestOperationKind::Unknown => pb::RequestOperationKind::Unknown,
    }
}

fn request_kind_from_proto(value: i32) -> Result<RequestOperationKind, CodecError> {
    Ok(match pb::RequestOperationKind::try_from(value) {
        Ok(pb::RequestOperationKind::Assign) => RequestOperationKind::Assign,
        Ok(pb::RequestOperationKind::Route) => RequestOperationKind::Route,
        Ok(pb::RequestOperationKind::Remove) => RequestOperationKind::Remove,
        Ok(pb::RequestOperationKind::Unknown) => RequestOperationKind::Unknown,
        Err(_) => return Err(CodecError::UnknownEnum("RequestOperationKind", value)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clockwise_engine::testing::sample_log;
    use clockwise_engine::Engine;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Found by fuzzing (fuzz/fuzz_targets/command_decoder.rs): an entry asking for 2^40
    /// virtual nodes made every replica try to allocate 8 TiB when applying it.
    #[test]
    fn an_entry_beyond_the_replica_limit_does_not_decode() {
        let huge = hex("0a017210011a0c1a0a0a017810808080808020");
        assert_eq!(
            decode_entry(&huge).map(|_| ()),
            Err(CodecError::OutOfRange("num_replicas", 1 << 40))
        );
        let at_limit = Command {
            ring: "r".into(),
            timestamp: 1,
            op: clockwise_engine::Op::HashRing(clockwise_engine::HashRingOp::AddNodeWithReplicas {
                node_id: "x".into(),
                num_replicas: clockwise_engine::MAX_REPLICAS,
            }),
        };
        assert_eq!(decode(&encode(&at_limit)), Ok(at_limit.clone()));
        let mut beyond = at_limit;
        if let clockwise_engine::Op::HashRing(clockwise_engine::HashRingOp::AddNodeWithReplicas {
            num_replicas,
            ..
        }) = &mut beyond.op
        {
            *num_replicas = clockwise_engine::MAX_REPLICAS + 1;
        }
        assert!(decode(&encode(&beyond)).is_err());
    }

    #[test]
    fn every_command_kind_survives_the_round_trip() {
        for command in sample_log() {
            assert_eq!(decode(&encode(&command)).as_ref(), Ok(&command));
        }
    }

    #[test]
    fn a_log_replayed_from_bytes_reaches_the_same_state() {
        let bytes: Vec<Vec<u8>> = sample_log().iter().map(encode).collect();
        let (mut direct, mut replayed) = (Engine::new(), Engine::new());
        for command in sample_log() {
            direct.apply(&command);
        }
        for entry in &bytes {
            replayed.apply(&decode(entry).expect("decodes"));
        }
        assert_eq!(direct.state_digest(), replayed.state_digest());
    }

    #[test]
    fn outcomes_survive_the_round_trip() {
        let mut engine = Engine::new();
        for command in sample_log() {
            let outcome = engine.apply(&command);
            assert_eq!(decode_outcome(&encode_outcome(&outcome)), Ok(outcome));
        }
        let none = Outcome::Name(None);
        assert_eq!(decode_outcome(&encode_outcome(&none)), Ok(none));
    }

    #[test]
    fn undecodable_commands_are_refused() {
        assert_eq!(decode(&[]), Err(CodecError::MissingOp));
        assert!(matches!(
            decode(&[0xff, 0xff]),
            Err(CodecError::Malformed(_))
        ));
        let bad_space = pb::Command {
            ring: "r".into(),
            timestamp: 1,
            client_id: String::new(),
            seq: 0,
            proposed_at_ms: 0,
            quotas: None,
            op: Some(pb::command::Op::HashRing(pb::HashRingOp {
                op: Some(pb::hash_ring_op::Op::Configure(7)),
            })),
        };
        assert_eq!(
            decode(&bad_space.encode_to_vec()),
            Err(CodecError::UnknownEnum("PositionSpace", 7))
        );
        let no_inner_op = pb::Command {
            ring: "r".into(),
            timestamp: 1,
            client_id: String::new(),
            seq: 0,
            proposed_at_ms: 0,
            quotas: None,
            op: Some(pb::command::Op::ChatRouter(pb::ChatRouterOp { op: None })),
        };
        assert_eq!(
            decode(&no_inner_op.encode_to_vec()),
            Err(CodecError::MissingOp)
        );
    }
}
