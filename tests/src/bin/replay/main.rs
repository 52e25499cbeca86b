//! Replays drill calls, one JSON object per line, for the differential test
//! `tests/conformance/ring_diff.py`: in process against the engine, or over gRPC
//! against a running node.
//!
//! In:  `{"svc": "hashring"|"chatrouter", "ring": "r0", "method": "store_key", "ts": 5, "args": [...]}`
//!      (args: the Python method's positional arguments after the timestamp).
//! Out: `{"result": <the drill's value>}` or `{"error": "<why>"}`.
//!
//! Usage: `replay [--position-space drill|u64] [--grpc http://ADDR[,http://ADDR…] --ring-prefix P
//! [--routes-from-view]]`.
//! With several addresses (the nodes of one cluster) calls go to them in turn.
//! `--position-space u64` puts every ring in the `u64` space. Over gRPC every ring name
//! gets the prefix (so each run starts from fresh rings) and every timestamp is shifted
//! by +1, because 0 asks the node for its clock; LRU depends only on timestamp order.
//! `--routes-from-view` answers routes from the SDK's local `RingView` of each ring
//! (see `view`), so the differential test checks local routing too.

use std::io::{self, BufRead, BufWriter, Write};

use clockwise_engine::{
    BatchResult, ChatRouter, Engine, HashRing, KeyOperation, KeyOperationKind, PositionSpace,
    RequestOperation, RequestOperationKind,
};
use serde_json::{json, Value};

mod grpc;
mod view;

const USAGE: &str =
    "usage: replay [--position-space drill|u64] [--grpc http://ADDR --ring-prefix P \
     [--routes-from-view]]";

struct Options {
    space: PositionSpace,
    /// `(endpoint, ring prefix)` when replaying against a node.
    grpc: Option<(String, String)>,
    /// Routes from SDK views (with `--grpc`).
    routes_from_view: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let (mut space, mut endpoint, mut prefix) = (PositionSpace::Drill, None, String::new());
    let mut routes_from_view = false;
    while let Some(flag) = args.next() {
        if flag == "--routes-from-view" {
            routes_from_view = true;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--position-space" => {
                space = match value.as_str() {
                    "drill" => PositionSpace::Drill,
                    "u64" => PositionSpace::U64,
                    other => return Err(format!("unknown position space {other:?}")),
                }
            }
            "--grpc" => endpoint = Some(value),
            "--ring-prefix" => prefix = value,
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if routes_from_view && endpoint.is_none() {
        return Err("--routes-from-view needs --grpc".into());
    }
    Ok(Options {
        space,
        grpc: endpoint.map(|e| (e, prefix)),
        routes_from_view,
    })
}

enum Backend {
    Engine(Engine),
    Grpc(Box<grpc::Remote>),
}

fn main() -> io::Result<()> {
    let options = parse_options().unwrap_or_else(|why| {
        eprintln!("replay: {why}\n{USAGE}");
        std::process::exit(2);
    });
    let mut backend = match &options.grpc {
        None => Backend::Engine(Engine::new()),
        Some((endpoint, prefix)) => {
            match grpc::Remote::connect(endpoint, prefix, options.space, options.routes_from_view) {
                Ok(remote) => Backend::Grpc(Box::new(remote)),
                Err(why) => {
                    eprintln!("replay: cannot connect to {endpoint}: {why}");
                    std::process::exit(1);
                }
            }
        }
    };
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    for line in stdin.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let result = serde_json::from_str::<Value>(&line)
            .map_err(|e| format!("bad JSON: {e}"))
            .and_then(|call| match &mut backend {
                Backend::Engine(engine) => apply(engine, options.space, &call),
                Backend::Grpc(remote) => remote.apply(&call),
            });
        let reply = match result {
            Ok(result) => json!({ "result": result }),
            Err(error) => json!({ "error": error }),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}

fn apply(engine: &mut Engine, space: PositionSpace, call: &Value) -> Result<Value, String> {
    let ring = str_field(call, "ring")?;
    let method = str_field(call, "method")?;
    let ts = call["ts"].as_i64().ok_or("ts is not an integer")?;
    let args = call["args"].as_array().ok_or("args is not a list")?;
    match str_field(call, "svc")? {
        "hashring" => {
            let r = engine.hash_ring_mut(ring);
            if r.get_node_count() == 0 {
                r.configure(space);
            }
            // As a node applies a command: the ring's clock moves first and after.
            let mutates = HASH_RING_WRITES.contains(&method);
            if mutates {
                r.tick(ts);
            }
            let result = hash_ring(r, method, ts, args);
            if mutates {
                r.tick(ts);
            }
            result
        }
        "chatrouter" => {
            let c = engine.chat_router_mut(ring);
            if c.get_server_count() == 0 {
                c.configure(space);
            }
            let mutates = CHAT_ROUTER_WRITES.contains(&method);
            if mutates {
                c.tick(ts);
            }
            let result = chat_router(c, method, ts, args);
            if mutates {
                c.tick(ts);
            }
            result
        }
        other => Err(format!("unknown svc {other:?}")),
    }
}

/// The methods that are replicated commands on a node.
const HASH_RING_WRITES: &[&str] = &[
    "add_node",
    "remove_node",
    "store_key",
    "store_key_ttl",
    "add_node_with_replicas",
    "set_capacity",
    "evict_lru",
    "batch_operations",
    "backup",
    "restore",
    "merge_nodes",
];
const CHAT_ROUTER_WRITES: &[&str] = &[
    "add_server",
    "remove_server",
    "assign_request",
    "assign_request_ttl",
    "add_server_with_replicas",
    "set_memory_limit",
    "evict_oldest_session",
    "batch_requests",
    "backup",
    "restore",
    "merge_servers",
];

/// Backups kept per ring, as a node's default `--max-backups-per-ring`.
const MAX_BACKUPS: usize = 16;

fn hash_ring(r: &mut HashRing, method: &str, ts: i64, args: &[Value]) -> Result<Value, String> {
    let s = |i: usize| arg_str(args, i);
    let n = |i: usize| arg_i64(args, i);
    Ok(match method {
        "add_node" => json!(r.add_node(s(0)?)),
        "remove_node" => json!(r.remove_node(s(0)?)),
        "route_key" => json!(r.route_key(s(0)?)),
        "get_node_count" => json!(r.get_node_count()),
        "store_key" => json!(r.store_key(ts, s(0)?)),
        "store_key_ttl" => json!(r.store_key_with_ttl(ts, s(0)?, n(1)?)),
        "list_nodes" => json!(r.list_nodes()),
        "get_load" => json!(r.get_used_at(ts, s(0)?)),
        "top_loaded" => json!(r.top_loaded_at(ts, n(0)?)),
        "add_node_with_replicas" => json!(r.add_node_with_replicas(s(0)?, n(1)?)),
        "get_replica_count" => json!(r.get_replica_count(s(0)?)),
        "set_capacity" => json!(r.set_capacity(s(0)?, n(1)?)),
        "get_capacity" => json!(r.get_capacity(s(0)?)),
        "get_used" => json!(r.get_used_at(ts, s(0)?)),
        "backup" => json!(r.backup(ts, MAX_BACKUPS)),
        "restore" => json!(r.restore(ts, n(0)?)),
        "merge_nodes" => json!(r.merge_nodes(ts, s(0)?, s(1)?)),
        "get_merged_into" => json!(r.get_merged_into(s(0)?)),
        "evict_lru" => json!(r.evict_lru(s(0)?)),
        "batch_operations" => {
            let ops = list(args, 0)?
                .iter()
                .map(|op| {
                    Ok(KeyOperation {
                        kind: KeyOperationKind::parse(op["type"].as_str().unwrap_or("")),
                        key: op["key"].as_str().ok_or("op key")?.to_owned(),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            batch_json(r.batch_operations(ts, &ops))
        }
        "sync_replicas" => {
            let reqs = list(args, 0)?;
            let pairs = reqs
                .iter()
                .map(|q| Ok((field(q, "source_node")?, field(q, "dest_node")?)))
                .collect::<Result<Vec<_>, String>>()?;
            json!(r.sync_validity(pairs))
        }
        "locate_key" => json!(r
            .locate_key_at(ts, s(0)?)
            .map(|l| (l.node, l.last_access, l.size))),
        other => return Err(format!("unknown HashRing method {other:?}")),
    })
}

fn chat_router(c: &mut ChatRouter, method: &str, ts: i64, args: &[Value]) -> Result<Value, String> {
    let s = |i: usize| arg_str(args, i);
    let n = |i: usize| arg_i64(args, i);
    Ok(match method {
        "add_server" => json!(c.add_server(s(0)?)),
        "remove_server" => json!(c.remove_server(s(0)?)),
        "route_request" => json!(c.route_request(s(0)?)),
        "get_server_count" => json!(c.get_server_count()),
        "assign_request" => json!(c.assign_request(ts, s(0)?, n(1)?)),
        "assign_request_ttl" => json!(c.assign_request_with_ttl(ts, s(0)?, n(1)?, n(2)?)),
        "list_servers" => json!(c.list_servers()),
        "get_server_load" => json!(c.get_memory_used_at(ts, s(0)?)),
        "top_servers" => json!(c.top_servers_at(ts, n(0)?)),
        "add_server_with_replicas" => json!(c.add_server_with_replicas(s(0)?, n(1)?)),
        "get_replica_count" => json!(c.get_replica_count(s(0)?)),
        "set_memory_limit" => json!(c.set_memory_limit(s(0)?, n(1)?)),
        "get_memory_limit" => json!(c.get_memory_limit(s(0)?)),
        "get_memory_used" => json!(c.get_memory_used_at(ts, s(0)?)),
        "backup" => json!(c.backup(ts, MAX_BACKUPS)),
        "restore" => json!(c.restore(ts, n(0)?)),
        "merge_servers" => json!(c.merge_servers(ts, s(0)?, s(1)?)),
        "get_merged_into" => json!(c.get_merged_into(s(0)?)),
        "evict_oldest_session" => json!(c.evict_oldest_session(s(0)?)),
        "batch_requests" => {
            let ops = list(args, 0)?
                .iter()
                .map(|op| {
                    Ok(RequestOperation {
                        kind: RequestOperationKind::parse(op["type"].as_str().unwrap_or("")),
                        request_id: op["request_id"].as_str().ok_or("op request_id")?.to_owned(),
                        size_mb: op["size_mb"].as_i64().unwrap_or(0),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            batch_json(c.batch_requests(ts, &ops))
        }
        "replicate_sessions" => {
            let transfers = list(args, 0)?
                .iter()
                .map(|t| {
                    let bandwidth = t["bandwidth_mb"].as_i64().ok_or("bandwidth_mb")?;
                    Ok((field(t, "source")?, field(t, "destination")?, bandwidth))
                })
                .collect::<Result<Vec<_>, String>>()?;
            json!(c.replicate_validity(ts, transfers))
        }
        "locate_request" => {
            json!(c
                .locate_request_at(ts, s(0)?)
                .map(|l| (l.node, l.last_access, l.size)))
        }
        other => return Err(format!("unknown ChatRouter method {other:?}")),
    })
}

fn batch_json(results: Vec<BatchResult>) -> Value {
    results
        .into_iter()
        .map(|r| match r {
            BatchResult::Node(node) => json!(node),
            BatchResult::Ok(ok) => json!(ok),
            BatchResult::Empty => Value::Null,
        })
        .collect()
}

pub(crate) fn str_field<'a>(v: &'a Value, name: &str) -> Result<&'a str, String> {
    v[name]
        .as_str()
        .ok_or_else(|| format!("{name} is not a string"))
}

pub(crate) fn field<'a>(v: &'a Value, name: &str) -> Result<&'a str, String> {
    str_field(v, name)
}

pub(crate) fn arg_str(args: &[Value], i: usize) -> Result<&str, String> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("argument {i} is not a string"))
}

pub(crate) fn arg_i64(args: &[Value], i: usize) -> Result<i64, String> {
    args.get(i)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("argument {i} is not an integer"))
}

pub(crate) fn list(args: &[Value], i: usize) -> Result<&Vec<Value>, String> {
    args.get(i)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("argument {i} is not a list"))
}
