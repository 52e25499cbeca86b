//! `clockwise.chatrouter.v1.ChatRouter`: every RPC against the table of bad input,
//! then tables of answers: the boundaries that answer values, and the drill results
//! (false, None, 0) that stay results; and `ConfigureRing` on a ring in use.

use clockwise_engine::{DEFAULT_RING, MAX_REPLICAS};
use clockwise_node::service::validate::{
    CLIENT_ID_METADATA, CONSISTENCY_METADATA, MAX_BATCH_OPERATIONS, MAX_CLOCK_AHEAD_MS,
    MAX_CONCURRENT_CAP, MAX_ID_BYTES, MAX_MB, MAX_SYNC_ENTRIES, MAX_TTL_MS, SEQ_METADATA,
};
use clockwise_proto::chatrouter::v1 as cr;
use clockwise_proto::chatrouter::v1::chat_router_client::ChatRouterClient;
use clockwise_proto::chatrouter::v1::request_result::Value;
use clockwise_proto::common::v1::{PositionSpace, SyncMode};
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::harness::TestNode;
use crate::table::{
    self, refused, refused_only_by, served, Answer, Expected, Item, Outcome, Row, Service,
};
use crate::{long, now_ms, wide};

type Client = ChatRouterClient<Channel>;

/// The RPCs with a `server_name`.
const SERVER_NAME: &[&str] = &[
    "AddServer",
    "RemoveServer",
    "GetServerLoad",
    "AddServerWithReplicas",
    "GetReplicaCount",
    "SetMemoryLimit",
    "GetMemoryLimit",
    "GetMemoryUsed",
    "EvictOldestSession",
    "GetMergedInto",
];
/// The RPCs with a `request_id`.
const REQUEST_ID: &[&str] = &["RouteRequest", "AssignRequest", "LocateRequest"];
/// Writes: they read the session metadata.
const WRITES: &[&str] = &[
    "ConfigureRing",
    "AddServer",
    "RemoveServer",
    "AssignRequest",
    "AddServerWithReplicas",
    "SetMemoryLimit",
    "EvictOldestSession",
    "BatchRequests",
    "Backup",
    "Restore",
    "MergeServers",
];
/// Reads: they read the consistency metadata.
const READS: &[&str] = &[
    "RouteRequest",
    "GetServerCount",
    "ListServers",
    "GetServerLoad",
    "TopServers",
    "GetReplicaCount",
    "GetMemoryLimit",
    "GetMemoryUsed",
    "ReplicateSessions",
    "LocateRequest",
    "GetMergedInto",
];
/// Streams: no timestamp, no consistency or session metadata (a watch is served from
/// the node's own replica).
const STREAMS: &[&str] = &["Watch"];
/// Every RPC with a `timestamp`: all but the streams.
const TIMESTAMPED: &[&str] = &[
    "ConfigureRing",
    "AddServer",
    "RemoveServer",
    "RouteRequest",
    "GetServerCount",
    "AssignRequest",
    "ListServers",
    "GetServerLoad",
    "TopServers",
    "AddServerWithReplicas",
    "GetReplicaCount",
    "SetMemoryLimit",
    "GetMemoryLimit",
    "GetMemoryUsed",
    "EvictOldestSession",
    "BatchRequests",
    "ReplicateSessions",
    "LocateRequest",
    "Backup",
    "Restore",
    "MergeServers",
    "GetMergedInto",
];

/// Every field of every ChatRouter request.
#[derive(Clone)]
pub struct Input {
    ring: String,
    timestamp: i64,
    server_name: String,
    request_id: String,
    size_mb: i64,
    ttl_ms: i64,
    num_replicas: i64,
    max_mb: i64,
    n: i64,
    position_space: i32,
    operations: Vec<cr::RequestOperation>,
    transfers: Vec<cr::Transfer>,
    max_concurrent: i32,
    mode: i32,
    backup_timestamp: i64,
    from_server: String,
    to_server: String,
    metadata: Vec<(&'static str, String)>,
}

fn request_op(kind: &str, id: &str, size_mb: i64) -> cr::RequestOperation {
    cr::RequestOperation {
        r#type: kind.to_owned(),
        request_id: id.to_owned(),
        size_mb,
    }
}

fn transfer(source: &str, destination: &str, bandwidth_mb: i64) -> cr::Transfer {
    cr::Transfer {
        source: source.to_owned(),
        destination: destination.to_owned(),
        bandwidth_mb,
    }
}

impl Input {
    /// Valid input on `ring`. The batch has an unknown type (a result, not an error).
    fn on(ring: &str) -> Input {
        Input {
            ring: ring.to_owned(),
            timestamp: 1,
            server_name: "s1".into(),
            request_id: "r1".into(),
            size_mb: 10,
            ttl_ms: 0,
            num_replicas: 3,
            max_mb: 100,
            n: 3,
            position_space: PositionSpace::U64 as i32,
            operations: vec![
                request_op("assign", "a1", 10),
                request_op("assign", "a2", 20),
                request_op("frobnicate", "a3", 0),
            ],
            transfers: vec![
                transfer("s1", "s2", 0),
                transfer("s2", "s1", 0),
                transfer("s1", "s1", 0),
            ],
            max_concurrent: 2,
            mode: SyncMode::FailFast as i32,
            backup_timestamp: 0,
            from_server: "s1".into(),
            to_server: "s2".into(),
            metadata: Vec::new(),
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        for (key, value) in &self.metadata {
            let value = value.parse().expect("ASCII metadata");
            request.metadata_mut().insert(*key, value);
        }
        request
    }
}

impl Service for Client {
    type Input = Input;
    const NAME: &'static str = "ChatRouter";
    const RPCS: &'static [&'static str] = &[
        "ConfigureRing",
        "AddServer",
        "RemoveServer",
        "RouteRequest",
        "GetServerCount",
        "AssignRequest",
        "ListServers",
        "GetServerLoad",
        "TopServers",
        "AddServerWithReplicas",
        "GetReplicaCount",
        "SetMemoryLimit",
        "GetMemoryLimit",
        "GetMemoryUsed",
        "EvictOldestSession",
        "BatchRequests",
        "ReplicateSessions",
        "LocateRequest",
        "Backup",
        "Restore",
        "MergeServers",
        "GetMergedInto",
        "Watch",
    ];

    async fn call(&mut self, rpc: &str, i: &Input) -> Outcome {
        let (ring, timestamp) = (i.ring.clone(), i.timestamp);
        let (server_name, request_id) = (i.server_name.clone(), i.request_id.clone());
        Ok(match rpc {
            "ConfigureRing" => {
                let position_space = i.position_space;
                let m = cr::ConfigureRingRequest {
                    ring,
                    timestamp,
                    position_space,
                };
                Answer::Ok(self.configure_ring(i.request(m)).await?.into_inner().ok)
            }
            "AddServer" => {
                let m = cr::AddServerRequest {
                    ring,
                    timestamp,
                    server_name,
                };
                Answer::Ok(self.add_server(i.request(m)).await?.into_inner().ok)
            }
            "RemoveServer" => {
                let m = cr::RemoveServerRequest {
                    ring,
                    timestamp,
                    server_name,
                };
                Answer::Ok(self.remove_server(i.request(m)).await?.into_inner().ok)
            }
            "RouteRequest" => {
                let m = cr::RouteRequestRequest {
                    ring,
                    timestamp,
                    request_id,
                };
                Answer::Name(
                    self.route_request(i.request(m))
                        .await?
                        .into_inner()
                        .server_name,
                )
            }
            "GetServerCount" => {
                let m = cr::GetServerCountRequest { ring, timestamp };
                Answer::Count(
                    self.get_server_count(i.request(m))
                        .await?
                        .into_inner()
                        .count,
                )
            }
            "AssignRequest" => {
                let (size_mb, ttl_ms) = (i.size_mb, i.ttl_ms);
                let m = cr::AssignRequestRequest {
                    ring,
                    timestamp,
                    request_id,
                    size_mb,
                    ttl_ms,
                };
                Answer::Name(
                    self.assign_request(i.request(m))
                        .await?
                        .into_inner()
                        .server_name,
                )
            }
            "ListServers" => {
                let m = cr::ListServersRequest { ring, timestamp };
                Answer::Names(self.list_servers(i.request(m)).await?.into_inner().servers)
            }
            "GetServerLoad" => {
                let m = cr::GetServerLoadRequest {
                    ring,
                    timestamp,
                    server_name,
                };
                Answer::Count(self.get_server_load(i.request(m)).await?.into_inner().load)
            }
            "TopServers" => {
                let m = cr::TopServersRequest {
                    ring,
                    timestamp,
                    n: i.n,
                };
                Answer::Names(self.top_servers(i.request(m)).await?.into_inner().entries)
            }
            "AddServerWithReplicas" => {
                let num_replicas = i.num_replicas;
                let m = cr::AddServerWithReplicasRequest {
                    ring,
                    timestamp,
                    server_name,
                    num_replicas,
                };
                Answer::Ok(
                    self.add_server_with_replicas(i.request(m))
                        .await?
                        .into_inner()
                        .ok,
                )
            }
            "GetReplicaCount" => {
                let m = cr::GetReplicaCountRequest {
                    ring,
                    timestamp,
                    server_name,
                };
                Answer::Count(
                    self.get_replica_count(i.request(m))
                        .await?
                        .into_inner()
                        .replicas,
                )
            }
            "SetMemoryLimit" => {
                let max_mb = i.max_mb;
                let m = cr::SetMemoryLimitRequest {
                    ring,
                    timestamp,
                    server_name,
                    max_mb,
                };
                Answer::Ok(self.set_memory_limit(i.request(m)).await?.into_inner().ok)
            }
            "GetMemoryLimit" => {
                let m = cr::GetMemoryLimitRequest {
                    ring,
                    timestamp,
                    server_name,
                };
                Answer::Count(
                    self.get_memory_limit(i.request(m))
                        .await?
                        .into_inner()
                        .limit,
                )
            }
            "GetMemoryUsed" => {
                let m = cr::GetMemoryUsedRequest {
                    ring,
                    timestamp,
                    server_name,
                };
                Answer::Count(self.get_memory_used(i.request(m)).await?.into_inner().used)
            }
            "EvictOldestSession" => {
                let m = cr::EvictOldestSessionRequest {
                    ring,
                    timestamp,
                    server_name,
                };
                let evicted = self.evict_oldest_session(i.request(m)).await?;
                Answer::Name(evicted.into_inner().request_id)
            }
            "BatchRequests" => {
                let operations = i.operations.clone();
                let m = cr::BatchRequestsRequest {
                    ring,
                    timestamp,
                    operations,
                };
                let results = self
                    .batch_requests(i.request(m))
                    .await?
                    .into_inner()
                    .results;
                let item = |result: cr::RequestResult| match result.value {
                    Some(Value::ServerName(server)) => Item::Name(server),
                    Some(Value::Ok(ok)) => Item::Ok(ok),
                    None => Item::Empty,
                };
                Answer::Batch(results.into_iter().map(item).collect())
            }
            "ReplicateSessions" => {
                let m = cr::ReplicateSessionsRequest {
                    ring,
                    timestamp,
                    transfers: i.transfers.clone(),
                    max_concurrent: i.max_concurrent,
                    mode: i.mode,
                };
                let results = self.replicate_sessions(i.request(m)).await?;
                Answer::Results(results.into_inner().results)
            }
            "LocateRequest" => {
                let m = cr::LocateRequestRequest {
                    ring,
                    timestamp,
                    request_id,
                };
                let found = self.locate_request(i.request(m)).await?.into_inner();
                Answer::Located {
                    found: found.found,
                    at: found.server_name,
                    expires_at: found.expires_at,
                }
            }
            "Backup" => {
                let m = cr::BackupRequest { ring, timestamp };
                Answer::Count(self.backup(i.request(m)).await?.into_inner().count)
            }
            "Restore" => {
                let backup_timestamp = i.backup_timestamp;
                let m = cr::RestoreRequest {
                    ring,
                    timestamp,
                    backup_timestamp,
                };
                Answer::Restored(self.restore(i.request(m)).await?.into_inner().count)
            }
            "MergeServers" => {
                let (from_server, to_server) = (i.from_server.clone(), i.to_server.clone());
                let m = cr::MergeServersRequest {
                    ring,
                    timestamp,
                    from_server,
                    to_server,
                };
                Answer::Ok(self.merge_servers(i.request(m)).await?.into_inner().ok)
            }
            "GetMergedInto" => {
                let m = cr::GetMergedIntoRequest {
                    ring,
                    timestamp,
                    server_name,
                };
                let merged = self.get_merged_into(i.request(m)).await?;
                Answer::Name(merged.into_inner().server_name)
            }
            "Watch" => {
                // Its first message: the ring's whole topology.
                let m = cr::WatchRequest {
                    ring,
                    start_revision: 0,
                };
                let mut stream = self.watch(i.request(m)).await?.into_inner();
                let first = stream.message().await?.expect("a first message");
                match first.event {
                    Some(cr::watch_response::Event::Topology(topology)) => {
                        Answer::Count(topology.nodes.len() as i64)
                    }
                    other => panic!("Watch began with {other:?}"),
                }
            }
            other => panic!("no ChatRouter RPC {other}"),
        })
    }
}

/// The table: one row per bad (or boundary) value of each field.
fn rows() -> Vec<Row<Input>> {
    let (fits, over) = (long(MAX_ID_BYTES), long(MAX_ID_BYTES + 1));
    let (fits_wide, over_wide) = (wide(MAX_ID_BYTES / 2), wide(MAX_ID_BYTES / 2 + 1));
    let bad_ids = || [String::new(), over.clone(), over_wide.clone()];
    let good_ids = || [fits.clone(), fits_wide.clone()];
    let bad_mb = [-1, i64::MIN, MAX_MB + 1, i64::MAX];
    let now = now_ms();
    let batch: &[&str] = &["BatchRequests"];
    let sync: &[&str] = &["ReplicateSessions"];
    let md = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|&(k, v)| (k, v.to_owned())).collect()
    };
    let unknown_sources = |n: usize| {
        (0..n)
            .map(|i| transfer(&format!("x{i}"), "s2", 0))
            .collect()
    };
    let routes = |n: usize| {
        (0..n)
            .map(|i| request_op("route", &format!("r{i}"), 0))
            .collect()
    };

    let mut rows: Vec<Vec<Row<Input>>> = vec![
        refused(
            "server_name",
            SERVER_NAME,
            |i, v| i.server_name = v,
            bad_ids(),
        ),
        served("server_name", |i, v| i.server_name = v, good_ids()),
        refused("request_id", REQUEST_ID, |i, v| i.request_id = v, bad_ids()),
        served("request_id", |i, v| i.request_id = v, good_ids()),
        refused(
            "ring",
            Client::RPCS,
            |i, v| i.ring = v,
            [over.clone(), over_wide.clone()],
        ),
        // The empty name is the default ring: the only row on it.
        served("ring", |i, v| i.ring = v, [fits.clone(), String::new()]),
        refused(
            "timestamp",
            TIMESTAMPED,
            |i, v| i.timestamp = v,
            [
                -1,
                i64::MIN,
                now + MAX_CLOCK_AHEAD_MS + 60_000,
                now * 1000,
                i64::MAX,
            ],
        ),
        served("timestamp", |i, v| i.timestamp = v, [0, now]),
        refused("n", &["TopServers"], |i, v| i.n = v, [-1, i64::MIN]),
        served("n", |i, v| i.n = v, [0, i64::MAX]),
        refused(
            "max_mb",
            &["SetMemoryLimit"],
            |i, v| i.max_mb = v,
            [-2, -100, i64::MIN, MAX_MB + 1, i64::MAX],
        ),
        served("max_mb", |i, v| i.max_mb = v, [-1, 0, MAX_MB]),
        refused(
            "num_replicas",
            &["AddServerWithReplicas"],
            |i, v| i.num_replicas = v,
            [-1, i64::MIN, MAX_REPLICAS + 1, i64::MAX],
        ),
        served("num_replicas", |i, v| i.num_replicas = v, [0, MAX_REPLICAS]),
        refused("size_mb", &["AssignRequest"], |i, v| i.size_mb = v, bad_mb),
        served("size_mb", |i, v| i.size_mb = v, [0, MAX_MB]),
        refused(
            "ttl_ms",
            &["AssignRequest"],
            |i, v| i.ttl_ms = v,
            [-1, i64::MIN, MAX_TTL_MS + 1, i64::MAX],
        ),
        served("ttl_ms", |i, v| i.ttl_ms = v, [1, MAX_TTL_MS]),
        refused(
            "position_space",
            &["ConfigureRing"],
            |i, v| i.position_space = v,
            [2, 9, -1],
        ),
        served(
            "position_space",
            |i, v| i.position_space = v,
            [PositionSpace::Drill as i32],
        ),
        refused(
            "backup_timestamp",
            &["Restore"],
            |i, v| i.backup_timestamp = v,
            [-1, i64::MIN],
        ),
        served(
            "backup_timestamp",
            |i, v| i.backup_timestamp = v,
            [i64::MAX],
        ),
        refused(
            "from_server",
            &["MergeServers"],
            |i, v| i.from_server = v,
            bad_ids(),
        ),
        refused(
            "to_server",
            &["MergeServers"],
            |i, v| i.to_server = v,
            bad_ids(),
        ),
        refused(
            "operations",
            batch,
            |i, v| i.operations = v,
            [routes(MAX_BATCH_OPERATIONS + 1)],
        ),
        refused(
            "transfers",
            sync,
            |i, v| i.transfers = v,
            [unknown_sources(MAX_SYNC_ENTRIES + 1)],
        ),
        refused(
            "max_concurrent",
            sync,
            |i, v| i.max_concurrent = v,
            [0, -1, i32::MIN, MAX_CONCURRENT_CAP + 1, i32::MAX],
        ),
        served(
            "max_concurrent",
            |i, v| i.max_concurrent = v,
            [1, MAX_CONCURRENT_CAP],
        ),
        refused("mode", sync, |i, v| i.mode = v, [2, 7, -1]),
        served("mode", |i, v| i.mode = v, [SyncMode::AllSleep as i32]),
        refused_only_by(
            CONSISTENCY_METADATA,
            READS,
            |i, v| i.metadata = v,
            [
                md(&[(CONSISTENCY_METADATA, "eventual")]),
                md(&[(CONSISTENCY_METADATA, "")]),
            ],
        ),
        served(
            "metadata",
            |i, v| i.metadata = v,
            [md(&[(CONSISTENCY_METADATA, "stale")])],
        ),
        refused_only_by(
            SEQ_METADATA,
            WRITES,
            |i, v| i.metadata = v,
            [
                md(&[(CLIENT_ID_METADATA, "app")]),
                md(&[(CLIENT_ID_METADATA, "app"), (SEQ_METADATA, "0")]),
            ],
        ),
        refused_only_by(
            CLIENT_ID_METADATA,
            WRITES,
            |i, v| i.metadata = v,
            [
                md(&[(SEQ_METADATA, "1")]),
                md(&[(CLIENT_ID_METADATA, &long(129)), (SEQ_METADATA, "1")]),
            ],
        ),
    ];
    // A bad entry anywhere refuses the whole call, naming its index.
    let bad_operations = [
        (1, request_op("assign", "", 1), "request_id"),
        (2, request_op("route", "", 0), "request_id"),
        (0, request_op("assign", &over, 1), "request_id"),
        (2, request_op("assign", "neg", -1), "size_mb"),
        (1, request_op("route", "neg", i64::MIN), "size_mb"),
        (1, request_op("assign", "big", MAX_MB + 1), "size_mb"),
    ];
    for (at, op, name) in bad_operations {
        let field = format!("operations[{at}].{name}");
        let set = |i: &mut Input, (at, op): (usize, cr::RequestOperation)| i.operations[at] = op;
        rows.push(refused(&field, batch, set, [(at, op)]));
    }
    let bad_transfers = [
        (1, transfer("", "s2", 0), "source"),
        (0, transfer(&over, "s2", 0), "source"),
        (2, transfer("s1", "", 0), "destination"),
        (1, transfer("s1", &over_wide, 0), "destination"),
        (2, transfer("s1", "s2", -1), "bandwidth_mb"),
        (0, transfer("s1", "s2", i64::MIN), "bandwidth_mb"),
        (1, transfer("s1", "s2", MAX_MB + 1), "bandwidth_mb"),
    ];
    for (at, t, name) in bad_transfers {
        let field = format!("transfers[{at}].{name}");
        let set = |i: &mut Input, (at, t): (usize, cr::Transfer)| i.transfers[at] = t;
        rows.push(refused(&field, sync, set, [(at, t)]));
    }
    rows.into_iter().flatten().collect()
}

pub async fn check(node: &TestNode) {
    let mut c = Client::new(node.channel());
    for rpc in Client::RPCS {
        assert!(
            [WRITES, READS, STREAMS]
                .iter()
                .filter(|kind| kind.contains(rpc))
                .count()
                == 1,
            "{rpc} is a write, a read or a stream"
        );
    }
    let base = |row| Input::on(&format!("chat-router-row-{row}"));
    table::run(&mut c, node, base, rows()).await;
    let boundaries = "ChatRouter boundaries";
    table::answers(
        &mut c,
        boundaries,
        Input::on("boundaries"),
        &boundaries_answer(),
    )
    .await;
    table::answers(&mut c, "ChatRouter TTLs", Input::on("ttl"), &ttl_expires()).await;
    let drill = "ChatRouter drill results";
    table::answers(&mut c, drill, Input::on("drill"), &drill_results()).await;
    configure_a_ring_in_use(&mut c, node).await;
}

/// A server whose name is as long as a name may be.
fn big(i: &mut Input) {
    i.server_name = long(MAX_ID_BYTES);
}

fn v(i: &mut Input) {
    i.server_name = "v".into();
}

/// Accepted values at the edges answer what they should, in order on one ring.
fn boundaries_answer() -> Vec<Expected<Input>> {
    use Answer::*;
    let big_name = || Some(long(MAX_ID_BYTES));
    let top = vec![format!("{}({MAX_MB})", long(MAX_ID_BYTES))];
    vec![
        // A name of MAX_ID_BYTES is kept whole.
        ("AddServer", big, Ok(true)),
        ("ListServers", |_| {}, Names(vec![long(MAX_ID_BYTES)])),
        // Never set reads -1; each accepted limit reads back.
        ("GetMemoryLimit", big, Count(-1)),
        (
            "SetMemoryLimit",
            |i| {
                big(i);
                i.max_mb = 0;
            },
            Ok(true),
        ),
        ("GetMemoryLimit", big, Count(0)),
        (
            "SetMemoryLimit",
            |i| {
                big(i);
                i.max_mb = MAX_MB;
            },
            Ok(true),
        ),
        ("GetMemoryLimit", big, Count(MAX_MB)),
        (
            "SetMemoryLimit",
            |i| {
                big(i);
                i.max_mb = -1;
            },
            Ok(true),
        ),
        ("GetMemoryLimit", big, Count(-1)),
        // Sizes 0 and MAX_MB are stored and counted.
        (
            "AssignRequest",
            |i| {
                i.request_id = "zero".into();
                i.size_mb = 0;
            },
            Name(big_name()),
        ),
        (
            "AssignRequest",
            |i| {
                i.request_id = "max".into();
                i.size_mb = MAX_MB;
            },
            Name(big_name()),
        ),
        ("GetMemoryUsed", big, Count(MAX_MB)),
        ("TopServers", |i| i.n = 0, Names(Vec::new())),
        ("TopServers", |i| i.n = i64::MAX, Names(top)),
        (
            "AddServerWithReplicas",
            |i| {
                v(i);
                i.num_replicas = MAX_REPLICAS;
            },
            Ok(true),
        ),
        ("GetReplicaCount", v, Count(MAX_REPLICAS)),
        // max_concurrent at both ends, and ALL_SLEEP, run the entry.
        (
            "ReplicateSessions",
            |i| i.transfers = vec![transfer("v", &long(MAX_ID_BYTES), 0)],
            Results(vec![true]),
        ),
        (
            "ReplicateSessions",
            |i| {
                i.transfers = vec![transfer("v", &long(MAX_ID_BYTES), 0)];
                i.max_concurrent = MAX_CONCURRENT_CAP;
            },
            Results(vec![true]),
        ),
        (
            "ReplicateSessions",
            |i| {
                i.transfers = vec![transfer("v", &long(MAX_ID_BYTES), 0)];
                i.mode = SyncMode::AllSleep as i32;
            },
            Results(vec![true]),
        ),
        // Unknown servers answer false at once in FAIL_FAST: a full list is cheap.
        (
            "ReplicateSessions",
            |i| {
                i.transfers = (0..MAX_SYNC_ENTRIES)
                    .map(|n| transfer(&format!("x{n}"), "v", 0))
                    .collect()
            },
            Results(vec![false; MAX_SYNC_ENTRIES]),
        ),
        // A full batch answers every operation.
        (
            "BatchRequests",
            |i| {
                i.operations = (0..MAX_BATCH_OPERATIONS)
                    .map(|n| request_op("remove", &format!("r{n}"), 0))
                    .collect()
            },
            Batch(vec![Item::Ok(false); MAX_BATCH_OPERATIONS]),
        ),
        // The empty ring name is the ring named DEFAULT_RING.
        (
            "AddServerWithReplicas",
            |i| {
                i.ring.clear();
                i.server_name = "d".into();
                i.num_replicas = 7;
            },
            Ok(true),
        ),
        (
            "GetReplicaCount",
            |i| {
                i.ring = DEFAULT_RING.into();
                i.server_name = "d".into();
            },
            Count(7),
        ),
    ]
}

/// A TTL is kept and expires at timestamp + ttl_ms.
fn ttl_expires() -> Vec<Expected<Input>> {
    use Answer::*;
    let at = |expires_at| Located {
        found: true,
        at: Some("s".into()),
        expires_at,
    };
    let gone = Located {
        found: false,
        at: None,
        expires_at: None,
    };
    vec![
        ("AddServer", |i| i.server_name = "s".into(), Ok(true)),
        (
            "AssignRequest",
            |i| i.ttl_ms = 5_000,
            Name(Some("s".into())),
        ),
        ("LocateRequest", |i| i.timestamp = 5_000, at(Some(5_001))),
        ("LocateRequest", |i| i.timestamp = 5_001, gone),
        (
            "AssignRequest",
            |i| {
                i.request_id = "forever".into();
                i.ttl_ms = MAX_TTL_MS;
            },
            Name(Some("s".into())),
        ),
        (
            "LocateRequest",
            |i| {
                i.request_id = "forever".into();
                i.timestamp = 5_001;
            },
            at(Some(1 + MAX_TTL_MS)),
        ),
    ]
}

fn ghost(i: &mut Input) {
    i.server_name = "ghost".into();
}

fn s(i: &mut Input) {
    i.server_name = "s".into();
}

/// What the drill defines as a result (false, None, 0) is a result, never a status.
fn drill_results() -> Vec<Expected<Input>> {
    use Answer::*;
    let nowhere = Located {
        found: false,
        at: None,
        expires_at: None,
    };
    vec![
        // An empty ring.
        ("RouteRequest", |_| {}, Name(None)),
        ("AssignRequest", |_| {}, Name(None)),
        ("TopServers", |_| {}, Names(Vec::new())),
        ("LocateRequest", |_| {}, nowhere),
        ("Restore", |i| i.backup_timestamp = 5, Restored(None)),
        // An unknown server.
        ("RemoveServer", ghost, Ok(false)),
        ("SetMemoryLimit", ghost, Ok(false)),
        ("GetMemoryLimit", ghost, Count(0)),
        ("GetMemoryUsed", ghost, Count(0)),
        ("GetServerLoad", ghost, Count(0)),
        ("GetReplicaCount", ghost, Count(0)),
        ("EvictOldestSession", ghost, Name(None)),
        ("GetMergedInto", ghost, Name(None)),
        (
            "MergeServers",
            |i| i.from_server = "ghost".into(),
            Ok(false),
        ),
        (
            "ReplicateSessions",
            |i| i.transfers = vec![transfer("ghost", "ghost", 0)],
            Results(vec![false]),
        ),
        // Duplicates and empty servers.
        ("AddServer", s, Ok(true)),
        ("AddServer", s, Ok(false)),
        ("AddServerWithReplicas", s, Ok(false)),
        ("EvictOldestSession", s, Name(None)),
        // Bandwidth above what the source holds is a false result, not an error.
        (
            "ReplicateSessions",
            |i| i.transfers = vec![transfer("s", "s", 1)],
            Results(vec![false]),
        ),
        (
            "BatchRequests",
            |i| {
                i.operations = vec![
                    request_op("remove", "nope", 0),
                    request_op("frobnicate", "r", 0),
                ]
            },
            Batch(vec![Item::Ok(false), Item::Empty]),
        ),
    ]
}

/// A ring with servers keeps its position space: FAILED_PRECONDITION naming the ring,
/// and nothing changes.
async fn configure_a_ring_in_use(c: &mut Client, node: &TestNode) {
    let used = Input::on("in-use");
    assert_eq!(
        c.call("AddServer", &used).await.ok(),
        Some(Answer::Ok(true))
    );
    let (_, digest) = node.applied().await;
    for space in [PositionSpace::U64, PositionSpace::Drill] {
        let mut configure = used.clone();
        configure.position_space = space as i32;
        let status = c
            .call("ConfigureRing", &configure)
            .await
            .expect_err("a ring in use");
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains("\"in-use\""),
            "names the ring: {status:?}"
        );
    }
    assert_eq!(
        node.applied().await.1,
        digest,
        "the refusal changed nothing"
    );
    let servers = c.call("ListServers", &used).await.ok();
    assert_eq!(servers, Some(Answer::Names(vec!["s1".to_owned()])));
}
