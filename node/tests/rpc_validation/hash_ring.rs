//! `clockwise.hashring.v1.HashRing`: every RPC against the table of bad input, then
//! tables of answers: the boundaries that answer values, and the drill results (false,
//! None, 0) that stay results; and `ConfigureRing` on a ring in use.

use clockwise_engine::{DEFAULT_RING, MAX_REPLICAS};
use clockwise_node::service::validate::{
    CLIENT_ID_METADATA, CONSISTENCY_METADATA, MAX_BATCH_OPERATIONS, MAX_CLOCK_AHEAD_MS,
    MAX_CONCURRENT_CAP, MAX_ID_BYTES, MAX_MB, MAX_SYNC_ENTRIES, MAX_TTL_MS, SEQ_METADATA,
};
use clockwise_proto::common::v1::{PositionSpace, SyncMode};
use clockwise_proto::hashring::v1 as hr;
use clockwise_proto::hashring::v1::hash_ring_client::HashRingClient;
use clockwise_proto::hashring::v1::key_result::Value;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::harness::TestNode;
use crate::table::{
    self, refused, refused_only_by, served, Answer, Expected, Item, Outcome, Row, Service,
};
use crate::{long, now_ms, wide};

type Client = HashRingClient<Channel>;

/// The RPCs with a `node_id`.
const NODE_ID: &[&str] = &[
    "AddNode",
    "RemoveNode",
    "GetLoad",
    "AddNodeWithReplicas",
    "GetReplicaCount",
    "SetCapacity",
    "GetCapacity",
    "GetUsed",
    "EvictLru",
    "GetMergedInto",
];
/// The RPCs with a `key`.
const KEY: &[&str] = &["RouteKey", "StoreKey", "LocateKey"];
/// Writes: they read the session metadata (`x-clockwise-client-id`, `x-clockwise-seq`).
const WRITES: &[&str] = &[
    "ConfigureRing",
    "AddNode",
    "RemoveNode",
    "StoreKey",
    "AddNodeWithReplicas",
    "SetCapacity",
    "EvictLru",
    "BatchOperations",
    "Backup",
    "Restore",
    "MergeNodes",
];
/// Reads: they read the consistency metadata (`x-clockwise-consistency`).
const READS: &[&str] = &[
    "RouteKey",
    "GetNodeCount",
    "ListNodes",
    "GetLoad",
    "TopLoaded",
    "GetReplicaCount",
    "GetCapacity",
    "GetUsed",
    "SyncReplicas",
    "LocateKey",
    "GetMergedInto",
];
/// Streams: no timestamp, no consistency or session metadata (a watch is served from
/// the node's own replica).
const STREAMS: &[&str] = &["Watch"];
/// Every RPC with a `timestamp`: all but the streams.
const TIMESTAMPED: &[&str] = &[
    "ConfigureRing",
    "AddNode",
    "RemoveNode",
    "RouteKey",
    "GetNodeCount",
    "StoreKey",
    "ListNodes",
    "GetLoad",
    "TopLoaded",
    "AddNodeWithReplicas",
    "GetReplicaCount",
    "SetCapacity",
    "GetCapacity",
    "GetUsed",
    "EvictLru",
    "BatchOperations",
    "SyncReplicas",
    "LocateKey",
    "Backup",
    "Restore",
    "MergeNodes",
    "GetMergedInto",
];

/// Every field of every HashRing request.
#[derive(Clone)]
pub struct Input {
    ring: String,
    timestamp: i64,
    node_id: String,
    key: String,
    num_replicas: i64,
    capacity: i64,
    n: i64,
    ttl_ms: i64,
    position_space: i32,
    operations: Vec<hr::KeyOperation>,
    requests: Vec<hr::SyncRequest>,
    max_concurrent: i32,
    mode: i32,
    backup_timestamp: i64,
    from_node: String,
    to_node: String,
    metadata: Vec<(&'static str, String)>,
}

fn key_op(kind: &str, key: &str) -> hr::KeyOperation {
    hr::KeyOperation {
        r#type: kind.to_owned(),
        key: key.to_owned(),
    }
}

fn sync_req(source: &str, dest: &str) -> hr::SyncRequest {
    hr::SyncRequest {
        source_node: source.to_owned(),
        dest_node: dest.to_owned(),
    }
}

impl Input {
    /// Valid input on `ring`. The batch has an unknown type (a result, not an error).
    fn on(ring: &str) -> Input {
        Input {
            ring: ring.to_owned(),
            timestamp: 1,
            node_id: "n1".into(),
            key: "k1".into(),
            num_replicas: 3,
            capacity: 5,
            n: 3,
            ttl_ms: 0,
            position_space: PositionSpace::U64 as i32,
            operations: vec![
                key_op("store", "k1"),
                key_op("store", "k2"),
                key_op("frobnicate", "k3"),
            ],
            requests: vec![
                sync_req("n1", "n2"),
                sync_req("n2", "n1"),
                sync_req("n1", "n1"),
            ],
            max_concurrent: 2,
            mode: SyncMode::FailFast as i32,
            backup_timestamp: 0,
            from_node: "n1".into(),
            to_node: "n2".into(),
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
    const NAME: &'static str = "HashRing";
    const RPCS: &'static [&'static str] = &[
        "ConfigureRing",
        "AddNode",
        "RemoveNode",
        "RouteKey",
        "GetNodeCount",
        "StoreKey",
        "ListNodes",
        "GetLoad",
        "TopLoaded",
        "AddNodeWithReplicas",
        "GetReplicaCount",
        "SetCapacity",
        "GetCapacity",
        "GetUsed",
        "EvictLru",
        "BatchOperations",
        "SyncReplicas",
        "LocateKey",
        "Backup",
        "Restore",
        "MergeNodes",
        "GetMergedInto",
        "Watch",
    ];

    async fn call(&mut self, rpc: &str, i: &Input) -> Outcome {
        let (ring, timestamp) = (i.ring.clone(), i.timestamp);
        let (node_id, key) = (i.node_id.clone(), i.key.clone());
        Ok(match rpc {
            "ConfigureRing" => {
                let position_space = i.position_space;
                let m = hr::ConfigureRingRequest {
                    ring,
                    timestamp,
                    position_space,
                };
                Answer::Ok(self.configure_ring(i.request(m)).await?.into_inner().ok)
            }
            "AddNode" => {
                let m = hr::AddNodeRequest {
                    ring,
                    timestamp,
                    node_id,
                };
                Answer::Ok(self.add_node(i.request(m)).await?.into_inner().ok)
            }
            "RemoveNode" => {
                let m = hr::RemoveNodeRequest {
                    ring,
                    timestamp,
                    node_id,
                };
                Answer::Ok(self.remove_node(i.request(m)).await?.into_inner().ok)
            }
            "RouteKey" => {
                let m = hr::RouteKeyRequest {
                    ring,
                    timestamp,
                    key,
                };
                Answer::Name(self.route_key(i.request(m)).await?.into_inner().node_id)
            }
            "GetNodeCount" => {
                let m = hr::GetNodeCountRequest { ring, timestamp };
                Answer::Count(self.get_node_count(i.request(m)).await?.into_inner().count)
            }
            "StoreKey" => {
                let ttl_ms = i.ttl_ms;
                let m = hr::StoreKeyRequest {
                    ring,
                    timestamp,
                    key,
                    ttl_ms,
                };
                Answer::Name(self.store_key(i.request(m)).await?.into_inner().node_id)
            }
            "ListNodes" => {
                let m = hr::ListNodesRequest { ring, timestamp };
                Answer::Names(self.list_nodes(i.request(m)).await?.into_inner().nodes)
            }
            "GetLoad" => {
                let m = hr::GetLoadRequest {
                    ring,
                    timestamp,
                    node_id,
                };
                Answer::Count(self.get_load(i.request(m)).await?.into_inner().load)
            }
            "TopLoaded" => {
                let m = hr::TopLoadedRequest {
                    ring,
                    timestamp,
                    n: i.n,
                };
                Answer::Names(self.top_loaded(i.request(m)).await?.into_inner().entries)
            }
            "AddNodeWithReplicas" => {
                let num_replicas = i.num_replicas;
                let m = hr::AddNodeWithReplicasRequest {
                    ring,
                    timestamp,
                    node_id,
                    num_replicas,
                };
                Answer::Ok(
                    self.add_node_with_replicas(i.request(m))
                        .await?
                        .into_inner()
                        .ok,
                )
            }
            "GetReplicaCount" => {
                let m = hr::GetReplicaCountRequest {
                    ring,
                    timestamp,
                    node_id,
                };
                Answer::Count(
                    self.get_replica_count(i.request(m))
                        .await?
                        .into_inner()
                        .replicas,
                )
            }
            "SetCapacity" => {
                let capacity = i.capacity;
                let m = hr::SetCapacityRequest {
                    ring,
                    timestamp,
                    node_id,
                    capacity,
                };
                Answer::Ok(self.set_capacity(i.request(m)).await?.into_inner().ok)
            }
            "GetCapacity" => {
                let m = hr::GetCapacityRequest {
                    ring,
                    timestamp,
                    node_id,
                };
                Answer::Count(self.get_capacity(i.request(m)).await?.into_inner().capacity)
            }
            "GetUsed" => {
                let m = hr::GetUsedRequest {
                    ring,
                    timestamp,
                    node_id,
                };
                Answer::Count(self.get_used(i.request(m)).await?.into_inner().used)
            }
            "EvictLru" => {
                let m = hr::EvictLruRequest {
                    ring,
                    timestamp,
                    node_id,
                };
                Answer::Name(self.evict_lru(i.request(m)).await?.into_inner().key)
            }
            "BatchOperations" => {
                let operations = i.operations.clone();
                let m = hr::BatchOperationsRequest {
                    ring,
                    timestamp,
                    operations,
                };
                let results = self
                    .batch_operations(i.request(m))
                    .await?
                    .into_inner()
                    .results;
                let item = |result: hr::KeyResult| match result.value {
                    Some(Value::NodeId(node)) => Item::Name(node),
                    Some(Value::Ok(ok)) => Item::Ok(ok),
                    None => Item::Empty,
                };
                Answer::Batch(results.into_iter().map(item).collect())
            }
            "SyncReplicas" => {
                let m = hr::SyncReplicasRequest {
                    ring,
                    timestamp,
                    requests: i.requests.clone(),
                    max_concurrent: i.max_concurrent,
                    mode: i.mode,
                };
                Answer::Results(self.sync_replicas(i.request(m)).await?.into_inner().results)
            }
            "LocateKey" => {
                let m = hr::LocateKeyRequest {
                    ring,
                    timestamp,
                    key,
                };
                let found = self.locate_key(i.request(m)).await?.into_inner();
                Answer::Located {
                    found: found.found,
                    at: found.node_id,
                    expires_at: found.expires_at,
                }
            }
            "Backup" => {
                let m = hr::BackupRequest { ring, timestamp };
                Answer::Count(self.backup(i.request(m)).await?.into_inner().count)
            }
            "Restore" => {
                let backup_timestamp = i.backup_timestamp;
                let m = hr::RestoreRequest {
                    ring,
                    timestamp,
                    backup_timestamp,
                };
                Answer::Restored(self.restore(i.request(m)).await?.into_inner().count)
            }
            "MergeNodes" => {
                let (from_node, to_node) = (i.from_node.clone(), i.to_node.clone());
                let m = hr::MergeNodesRequest {
                    ring,
                    timestamp,
                    from_node,
                    to_node,
                };
                Answer::Ok(self.merge_nodes(i.request(m)).await?.into_inner().ok)
            }
            "GetMergedInto" => {
                let m = hr::GetMergedIntoRequest {
                    ring,
                    timestamp,
                    node_id,
                };
                Answer::Name(
                    self.get_merged_into(i.request(m))
                        .await?
                        .into_inner()
                        .node_id,
                )
            }
            "Watch" => {
                // Its first message: the ring's whole topology.
                let m = hr::WatchRequest {
                    ring,
                    start_revision: 0,
                };
                let mut stream = self.watch(i.request(m)).await?.into_inner();
                let first = stream.message().await?.expect("a first message");
                match first.event {
                    Some(hr::watch_response::Event::Topology(topology)) => {
                        Answer::Count(topology.nodes.len() as i64)
                    }
                    other => panic!("Watch began with {other:?}"),
                }
            }
            other => panic!("no HashRing RPC {other}"),
        })
    }
}

/// The table: one row per bad (or boundary) value of each field.
fn rows() -> Vec<Row<Input>> {
    let (fits, over) = (long(MAX_ID_BYTES), long(MAX_ID_BYTES + 1));
    let (fits_wide, over_wide) = (wide(MAX_ID_BYTES / 2), wide(MAX_ID_BYTES / 2 + 1));
    let bad_ids = || [String::new(), over.clone(), over_wide.clone()];
    let good_ids = || [fits.clone(), fits_wide.clone()];
    let now = now_ms();
    let batch: &[&str] = &["BatchOperations"];
    let sync: &[&str] = &["SyncReplicas"];
    let md = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|&(k, v)| (k, v.to_owned())).collect()
    };
    let unknown_sources = |n: usize| (0..n).map(|i| sync_req(&format!("x{i}"), "n2")).collect();
    let routes = |n: usize| (0..n).map(|i| key_op("route", &format!("k{i}"))).collect();

    let mut rows: Vec<Vec<Row<Input>>> = vec![
        refused("node_id", NODE_ID, |i, v| i.node_id = v, bad_ids()),
        served("node_id", |i, v| i.node_id = v, good_ids()),
        refused("key", KEY, |i, v| i.key = v, bad_ids()),
        served("key", |i, v| i.key = v, good_ids()),
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
        refused("n", &["TopLoaded"], |i, v| i.n = v, [-1, i64::MIN]),
        served("n", |i, v| i.n = v, [0, i64::MAX]),
        refused(
            "capacity",
            &["SetCapacity"],
            |i, v| i.capacity = v,
            [-2, -100, i64::MIN, MAX_MB + 1, i64::MAX],
        ),
        served("capacity", |i, v| i.capacity = v, [-1, 0, MAX_MB]),
        refused(
            "num_replicas",
            &["AddNodeWithReplicas"],
            |i, v| i.num_replicas = v,
            [-1, i64::MIN, MAX_REPLICAS + 1, i64::MAX],
        ),
        served("num_replicas", |i, v| i.num_replicas = v, [0, MAX_REPLICAS]),
        refused(
            "ttl_ms",
            &["StoreKey"],
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
            "from_node",
            &["MergeNodes"],
            |i, v| i.from_node = v,
            bad_ids(),
        ),
        refused("to_node", &["MergeNodes"], |i, v| i.to_node = v, bad_ids()),
        refused(
            "operations",
            batch,
            |i, v| i.operations = v,
            [routes(MAX_BATCH_OPERATIONS + 1)],
        ),
        refused(
            "requests",
            sync,
            |i, v| i.requests = v,
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
    for (at, id) in [
        (1, String::new()),
        (2, String::new()),
        (0, over.clone()),
        (2, over_wide.clone()),
    ] {
        let field = format!("operations[{at}].key");
        let set = |i: &mut Input, (at, id): (usize, String)| i.operations[at].key = id;
        rows.push(refused(&field, batch, set, [(at, id)]));
    }
    for (at, id) in [(1, String::new()), (0, over.clone())] {
        let field = format!("requests[{at}].source_node");
        let set = |i: &mut Input, (at, id): (usize, String)| i.requests[at].source_node = id;
        rows.push(refused(&field, sync, set, [(at, id)]));
    }
    for (at, id) in [(2, String::new()), (1, over_wide.clone())] {
        let field = format!("requests[{at}].dest_node");
        let set = |i: &mut Input, (at, id): (usize, String)| i.requests[at].dest_node = id;
        rows.push(refused(&field, sync, set, [(at, id)]));
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
    let base = |row| Input::on(&format!("hash-ring-row-{row}"));
    table::run(&mut c, node, base, rows()).await;
    let boundaries = "HashRing boundaries";
    table::answers(
        &mut c,
        boundaries,
        Input::on("boundaries"),
        &boundaries_answer(),
    )
    .await;
    table::answers(&mut c, "HashRing TTLs", Input::on("ttl"), &ttl_expires()).await;
    table::answers(
        &mut c,
        "HashRing drill results",
        Input::on("drill"),
        &drill_results(),
    )
    .await;
    configure_a_ring_in_use(&mut c, node).await;
}

/// A node whose id is as long as an id may be.
fn big(i: &mut Input) {
    i.node_id = long(MAX_ID_BYTES);
}

fn v(i: &mut Input) {
    i.node_id = "v".into();
}

/// Accepted values at the edges answer what they should, in order on one ring.
fn boundaries_answer() -> Vec<Expected<Input>> {
    use Answer::*;
    let both = vec!["v(0)".to_owned(), format!("{}(0)", long(MAX_ID_BYTES))];
    vec![
        // An id of MAX_ID_BYTES is kept whole.
        ("AddNode", big, Ok(true)),
        ("ListNodes", |_| {}, Names(vec![long(MAX_ID_BYTES)])),
        // Never set reads -1; each accepted capacity reads back.
        ("GetCapacity", big, Count(-1)),
        (
            "SetCapacity",
            |i| {
                big(i);
                i.capacity = 0;
            },
            Ok(true),
        ),
        ("GetCapacity", big, Count(0)),
        (
            "SetCapacity",
            |i| {
                big(i);
                i.capacity = MAX_MB;
            },
            Ok(true),
        ),
        ("GetCapacity", big, Count(MAX_MB)),
        (
            "SetCapacity",
            |i| {
                big(i);
                i.capacity = -1;
            },
            Ok(true),
        ),
        ("GetCapacity", big, Count(-1)),
        (
            "AddNodeWithReplicas",
            |i| {
                v(i);
                i.num_replicas = MAX_REPLICAS;
            },
            Ok(true),
        ),
        ("GetReplicaCount", v, Count(MAX_REPLICAS)),
        // max_concurrent at both ends, and ALL_SLEEP, run the entry.
        (
            "SyncReplicas",
            |i| i.requests = vec![sync_req("v", &long(MAX_ID_BYTES))],
            Results(vec![true]),
        ),
        (
            "SyncReplicas",
            |i| {
                i.requests = vec![sync_req("v", &long(MAX_ID_BYTES))];
                i.max_concurrent = MAX_CONCURRENT_CAP;
            },
            Results(vec![true]),
        ),
        (
            "SyncReplicas",
            |i| {
                i.requests = vec![sync_req("v", &long(MAX_ID_BYTES))];
                i.mode = SyncMode::AllSleep as i32;
            },
            Results(vec![true]),
        ),
        // Unknown nodes answer false at once in FAIL_FAST: a full list is cheap.
        (
            "SyncReplicas",
            |i| {
                i.requests = (0..MAX_SYNC_ENTRIES)
                    .map(|n| sync_req(&format!("x{n}"), "v"))
                    .collect()
            },
            Results(vec![false; MAX_SYNC_ENTRIES]),
        ),
        ("TopLoaded", |i| i.n = 0, Names(Vec::new())),
        ("TopLoaded", |i| i.n = i64::MAX, Names(both)),
        // A full batch answers every operation (false: no such key).
        (
            "BatchOperations",
            |i| {
                i.operations = (0..MAX_BATCH_OPERATIONS)
                    .map(|n| key_op("remove_key", &format!("k{n}")))
                    .collect()
            },
            Batch(vec![Item::Ok(false); MAX_BATCH_OPERATIONS]),
        ),
        // The empty ring name is the ring named DEFAULT_RING.
        (
            "AddNodeWithReplicas",
            |i| {
                i.ring.clear();
                i.node_id = "d".into();
                i.num_replicas = 7;
            },
            Ok(true),
        ),
        (
            "GetReplicaCount",
            |i| {
                i.ring = DEFAULT_RING.into();
                i.node_id = "d".into();
            },
            Count(7),
        ),
    ]
}

/// A TTL is kept and expires at timestamp + ttl_ms. Explicit timestamps: 0 would move
/// the ring's clock to the leader's wall clock.
fn ttl_expires() -> Vec<Expected<Input>> {
    use Answer::*;
    let at = |expires_at| Located {
        found: true,
        at: Some("a".into()),
        expires_at,
    };
    let gone = Located {
        found: false,
        at: None,
        expires_at: None,
    };
    vec![
        ("AddNode", |i| i.node_id = "a".into(), Ok(true)),
        ("StoreKey", |i| i.ttl_ms = 5_000, Name(Some("a".into()))),
        ("LocateKey", |i| i.timestamp = 5_000, at(Some(5_001))),
        ("LocateKey", |i| i.timestamp = 5_001, gone.clone()),
        (
            "StoreKey",
            |i| {
                i.key = "forever".into();
                i.ttl_ms = MAX_TTL_MS;
            },
            Name(Some("a".into())),
        ),
        (
            "LocateKey",
            |i| {
                i.key = "forever".into();
                i.timestamp = 5_001;
            },
            at(Some(1 + MAX_TTL_MS)),
        ),
    ]
}

fn ghost(i: &mut Input) {
    i.node_id = "ghost".into();
}

fn a(i: &mut Input) {
    i.node_id = "a".into();
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
        ("RouteKey", |_| {}, Name(None)),
        ("StoreKey", |_| {}, Name(None)),
        ("TopLoaded", |_| {}, Names(Vec::new())),
        ("LocateKey", |_| {}, nowhere),
        ("Restore", |i| i.backup_timestamp = 5, Restored(None)),
        // An unknown node.
        ("RemoveNode", ghost, Ok(false)),
        ("SetCapacity", ghost, Ok(false)),
        ("GetCapacity", ghost, Count(0)),
        ("GetUsed", ghost, Count(0)),
        ("GetLoad", ghost, Count(0)),
        ("GetReplicaCount", ghost, Count(0)),
        ("EvictLru", ghost, Name(None)),
        ("GetMergedInto", ghost, Name(None)),
        ("MergeNodes", |i| i.from_node = "ghost".into(), Ok(false)),
        (
            "SyncReplicas",
            |i| i.requests = vec![sync_req("ghost", "ghost")],
            Results(vec![false]),
        ),
        // Duplicates and empty nodes.
        ("AddNode", a, Ok(true)),
        ("AddNode", a, Ok(false)),
        ("AddNodeWithReplicas", a, Ok(false)),
        ("EvictLru", a, Name(None)),
        (
            "BatchOperations",
            |i| i.operations = vec![key_op("remove_key", "nope"), key_op("frobnicate", "k")],
            Batch(vec![Item::Ok(false), Item::Empty]),
        ),
    ]
}

/// A ring with nodes keeps its position space: FAILED_PRECONDITION naming the ring,
/// and nothing changes.
async fn configure_a_ring_in_use(c: &mut Client, node: &TestNode) {
    let used = Input::on("in-use");
    assert_eq!(c.call("AddNode", &used).await.ok(), Some(Answer::Ok(true)));
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
    let nodes = c.call("ListNodes", &used).await.ok();
    assert_eq!(nodes, Some(Answer::Names(vec!["n1".to_owned()])));
}
