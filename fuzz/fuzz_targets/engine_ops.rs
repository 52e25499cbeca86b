//! The fuzz input as a sequence of HashRing / ChatRouter commands on one `Engine`, with
//! what the spec (shared/spec/ring-drills.md) and the engine's docs guarantee checked
//! after every call, through public API only:
//! - every stored key sits on its routed node, which is in the ring; loads (`get_load`,
//!   `get_used`, their `_at` forms, `top_*`) equal what the stored keys add up to;
//! - each call changes exactly the keys it may: topology changes and limits never evict,
//!   a store evicts the LRU victims its policy asks for (HashRing: at most one when
//!   `used >= capacity`, capacity 0 or below still stores; ChatRouter: LRU victims until
//!   the new size fits, or the node is empty), `evict_*` takes the least recently used
//!   key (ties: earliest inserted), a restore brings back exactly the saved keys;
//! - a batch equals its operations applied one by one;
//! - the snapshot round trip keeps the state digest, and a replica restored from a
//!   snapshot that then applies the same commands (through the log codec) answers and
//!   ends the same.
//!
//! Insertion order, which breaks LRU ties, is not public: the checker tracks it from the
//! calls it makes (new keys go last, a restore brings back the saved order).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use clockwise_node::machine::codec;
use clockwise_engine::{
    BatchResult, ChatRouter, ChatRouterOp, Command, Engine, HashRing, HashRingOp, KeyOperation,
    KeyOperationKind, Location, Op, Outcome, PositionSpace, RequestOperation, RequestOperationKind,
};
use libfuzzer_sys::fuzz_target;

const RING: &str = "r";
/// Small alphabets so positions collide in the drill's 100-slot space: n0, n12 and the
/// key k14 all sit at 47; srv_a, big and node_c's third replica at 16; k332 at node_a's 45.
const NODES: [&str; 6] = ["n0", "n12", "srv_a", "big", "node_a", "node_c"];
const KEYS: [&str; 10] = [
    "k0", "k1", "k2", "k14", "k332", "key1", "key2", "r1", "", "n0",
];
const CAPACITIES: [i64; 6] = [-1, 0, 1, 2, 3, -5];
const MEMORY_LIMITS: [i64; 6] = [-1, 0, 10, 25, 50, -7];
const SIZES: [i64; 6] = [0, 1, 5, 10, 40, -3];
const TTLS: [i64; 5] = [0, 1, 5, 30, -1];
const MAX_STEPS: usize = 64;

/// Where the clock may jump: the edges where timestamp arithmetic saturates.
const JUMPS: [i64; 7] = [
    i64::MIN,
    -1_000_000,
    -1,
    0,
    1_000_000,
    i64::MAX - 40,
    i64::MAX,
];

/// `CLOCKWISE_FUZZ_TRACE=1` prints every step, to read a crashing input.
static TRACE: LazyLock<bool> = LazyLock::new(|| std::env::var_os("CLOCKWISE_FUZZ_TRACE").is_some());

/// One step of the input: a call, or something the harness does.
#[derive(Debug)]
enum Step {
    Call(Call),
    /// The replica becomes a copy of the engine restored from its snapshot.
    Resync,
    /// The clock jumps (to overflow edges).
    Jump(i64),
}

/// One call with concrete arguments.
#[derive(Clone, Debug)]
enum Call {
    Add(&'static str, Option<i64>),
    Remove(&'static str),
    SetLimit(&'static str, i64),
    Store(&'static str, i64, i64),
    Evict(&'static str),
    /// A batch of one operation: how a batch is checked, one operation at a time.
    BatchOne(Kind, &'static str, i64),
    Batch(Vec<(Kind, &'static str, i64)>),
    Backup(u32),
    Restore(i64),
    Merge(&'static str, &'static str),
    Configure(PositionSpace),
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Store,
    Route,
    Remove,
    Unknown,
}

fn pick<T: Copy>(table: &[T], i: u8) -> T {
    table[usize::from(i) % table.len()]
}

/// What the checker knows of one namespace beyond its public state.
#[derive(Default)]
struct Model {
    /// The namespace's clock: the latest command timestamp (nothing dead at it is kept).
    latest: i64,
    /// Stored keys, earliest inserted first.
    order: Vec<&'static str>,
    backups: Vec<Saved>,
    /// ChatRouter: sizes kept for requests dropped when the ring emptied.
    stale: BTreeMap<&'static str, i64>,
}

struct Saved {
    timestamp: i64,
    nodes: Vec<(String, i64)>,
    /// In insertion order: key, access, size, remaining TTL (`None`: never expires).
    keys: Vec<(&'static str, i64, i64, Option<i64>)>,
}

fuzz_target!(init: clockwise_fuzz::write_seeds(seeds), |data: &[u8]| {
    let mut engine = Engine::new();
    let mut replica = Engine::new();
    let mut models = [Model::default(), Model::default()];
    let mut clock = 0i64;
    for bytes in data.chunks_exact(4).take(MAX_STEPS) {
        let (chat, dt, step) = step_of(bytes.try_into().expect("4 bytes"));
        // i64::MAX is also the engine's "never expires": a key without a TTL stored at
        // that time must still be found (a bug this target found, now a golden test).
        clock = clock.saturating_add(dt);
        if *TRACE {
            eprintln!("{} t={clock} {step:?}", if chat { "ChatRouter" } else { "HashRing" });
        }
        let model = &mut models[usize::from(chat)];
        let call = match step {
            Step::Call(call) => call,
            Step::Resync => {
                replica = Engine::restore(&engine.snapshot()).expect("restores");
                continue;
            }
            Step::Jump(to) => {
                clock = to;
                continue;
            }
        };
        let command = command(chat, clock, &call);
        // The replica applies what the log carries: the command's bytes. A command the
        // client port refuses (a negative timestamp, a field past its cap) is refused
        // again by the log decoder and never applied anywhere: nothing to compare.
        let logged = match codec::decode(&codec::encode(&command)) {
            Ok(logged) => logged,
            Err(codec::CodecError::Refused(_)) => continue,
            Err(e) => panic!("a command's own encoding does not decode: {e}"),
        };
        let outcome = match &call {
            Call::Batch(ops) => {
                // A batch is its operations one by one, at one timestamp: compared with
                // an empty batch (which only moves the clock, as any batch does, and
                // creates no ring that would hold nothing) followed by batches of one,
                // each checked.
                let mut one_by_one = engine.clone();
                one_by_one.apply(&empty_batch(chat, clock));
                model.latest = model.latest.max(clock);
                let results: Vec<BatchResult> = ops
                    .iter()
                    .flat_map(|&(kind, key, size)| {
                        let one = Call::BatchOne(kind, key, size);
                        let outcome = checked_apply(&mut one_by_one, model, chat, clock, &one);
                        outcome.into_batch()
                    })
                    .collect();
                let outcome = engine.apply(&command);
                assert_eq!(outcome, Outcome::Batch(results));
                assert_eq!(engine.state_digest(), one_by_one.state_digest());
                outcome
            }
            _ => checked_apply(&mut engine, model, chat, clock, &call),
        };
        assert_eq!(logged, command);
        assert_eq!(replica.apply(&logged), outcome, "replica answered differently");
        // Snapshots are not canonical (items in slab order, and a replica restored by a
        // resync lays its slab out afresh): replicas compare digests.
        assert_eq!(replica.state_digest(), engine.state_digest(), "replica diverged");
        let snapshot = engine.snapshot();
        let restored = Engine::restore(&snapshot).expect("a snapshot restores");
        assert_eq!(restored.snapshot(), snapshot);
        assert_eq!(restored.state_digest(), engine.state_digest());
    }
});

/// One step is 4 bytes, `[op | chat << 4 | (dt + 1) << 5, a, b, c]`: fixed-size steps keep
/// libFuzzer's byte mutations local (one changed byte changes one call). `dt` moves the
/// clock by -1..=6 (a late command's timestamp goes back); `a`, `b`, `c` pick arguments.
fn step_of([head, a, b, c]: [u8; 4]) -> (bool, i64, Step) {
    let chat = head & 0x10 != 0;
    let dt = i64::from(head >> 5) - 1;
    let limits = if chat { &MEMORY_LIMITS } else { &CAPACITIES };
    let node = |x: u8| pick(&NODES, x);
    let key = |x: u8| pick(&KEYS, x);
    let kind = |x: u8| pick(&[Kind::Store, Kind::Route, Kind::Remove, Kind::Unknown], x);
    let call = match head & 0x0f {
        0 | 15 => Call::Add(node(a), None),
        1 => Call::Add(node(a), Some(i64::from(b % 5) - 1)),
        2 => Call::Remove(node(a)),
        3 => Call::SetLimit(node(a), pick(limits, b)),
        // Stores weigh the most: they are what evicts.
        4 | 5 | 14 => Call::Store(key(a), pick(&SIZES, b), pick(&TTLS, c)),
        6 => Call::Evict(node(a)),
        7 => Call::Batch(
            [a, b, c]
                .map(|x| (kind(x), key(x >> 2), pick(&SIZES, x >> 5)))
                .to_vec(),
        ),
        8 => Call::Backup(u32::from(a % 4)),
        9 => Call::Restore(i64::from(a as i8)),
        10 => Call::Merge(node(a), node(b)),
        11 => Call::Configure(if a & 1 == 1 {
            PositionSpace::U64
        } else {
            PositionSpace::Drill
        }),
        12 => return (chat, dt, Step::Resync),
        _ => return (chat, dt, Step::Jump(pick(&JUMPS, a))),
    };
    (chat, dt, Step::Call(call))
}

/// Seeds: short scripts through eviction, replicas and collisions, TTLs, backups and
/// restores, merges and clock edges, in both drills.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Steps as (op, dt, a, b, c), for one drill.
    type Script = &'static [(u8, i8, u8, u8, u8)];
    let scripts: [(&str, Script); 4] = [
        (
            "eviction",
            &[
                (0, 1, 0, 0, 0),
                (3, 1, 0, 2, 0),
                (4, 1, 0, 3, 0),
                (4, 0, 1, 3, 0),
                (4, 1, 2, 4, 0),
                (6, 1, 0, 0, 0),
                (3, 1, 0, 1, 0),
                (4, 0, 3, 1, 0),
                (7, 1, 0x04, 0x26, 0x0a),
            ],
        ),
        (
            "topology",
            &[
                (1, 1, 5, 4, 0),
                (0, 1, 0, 0, 0),
                (0, 1, 1, 0, 0),
                (0, 1, 2, 0, 0),
                (0, 1, 3, 0, 0),
                (4, 1, 3, 2, 0),
                (4, 1, 4, 2, 0),
                (4, 1, 0, 2, 0),
                (2, 1, 0, 0, 0),
                (10, 1, 1, 2, 0),
                (12, 0, 0, 0, 0),
                (2, 1, 5, 0, 0),
                (2, 1, 2, 0, 0),
                (2, 1, 3, 0, 0),
                (0, 1, 4, 0, 0),
                (4, 1, 3, 3, 0),
            ],
        ),
        (
            "ttl-backup",
            &[
                (11, 0, 1, 0, 0),
                (0, 1, 0, 0, 0),
                (0, 1, 4, 0, 0),
                (4, 1, 0, 3, 1),
                (4, 1, 1, 3, 2),
                (4, 1, 2, 3, 3),
                (8, 1, 2, 0, 0),
                (6, 6, 0, 0, 0),
                (4, 6, 3, 1, 2),
                (8, 1, 2, 0, 0),
                (9, 1, 0xf8, 0, 0),
                (9, 6, 0, 0, 0),
                (4, -1, 4, 1, 1),
            ],
        ),
        (
            "clock-edges",
            &[
                (0, 1, 0, 0, 0),
                (13, 0, 6, 0, 0),
                (4, 0, 0, 2, 3),
                (8, 0, 1, 0, 0),
                (4, 6, 1, 2, 2),
                (9, 0, 0, 0, 0),
                (13, 0, 0, 0, 0),
                (4, 0, 2, 2, 1),
            ],
        ),
    ];
    let mut seeds = Vec::new();
    for chat in [false, true] {
        for (name, script) in scripts {
            let bytes = script.iter().flat_map(|&(op, dt, a, b, c)| {
                [op | u8::from(chat) << 4 | ((dt + 1) as u8) << 5, a, b, c]
            });
            seeds.push((name, bytes.collect()));
        }
    }
    seeds
}

fn empty_batch(chat: bool, timestamp: i64) -> Command {
    command(chat, timestamp, &Call::Batch(Vec::new()))
}

fn command(chat: bool, timestamp: i64, call: &Call) -> Command {
    let op = if chat {
        Op::ChatRouter(chat_op(call, timestamp))
    } else {
        Op::HashRing(hash_op(call, timestamp))
    };
    Command {
        ring: RING.into(),
        timestamp,
        op,
    }
}

fn hash_op(call: &Call, timestamp: i64) -> HashRingOp {
    let key_op = |&(kind, key, _): &(Kind, &str, i64)| KeyOperation {
        kind: match kind {
            Kind::Store => KeyOperationKind::Store,
            Kind::Route => KeyOperationKind::Route,
            Kind::Remove => KeyOperationKind::RemoveKey,
            Kind::Unknown => KeyOperationKind::Unknown,
        },
        key: key.into(),
    };
    let node_id = |n: &str| n.to_string();
    match *call {
        Call::Add(n, None) => HashRingOp::AddNode {
            node_id: node_id(n),
        },
        Call::Add(n, Some(num_replicas)) => HashRingOp::AddNodeWithReplicas {
            node_id: node_id(n),
            num_replicas,
        },
        Call::Remove(n) => HashRingOp::RemoveNode {
            node_id: node_id(n),
        },
        Call::SetLimit(n, capacity) => HashRingOp::SetCapacity {
            node_id: node_id(n),
            capacity,
        },
        Call::Store(key, _, 0) => HashRingOp::StoreKey { key: key.into() },
        Call::Store(key, _, ttl_ms) => HashRingOp::StoreKeyWithTtl {
            key: key.into(),
            ttl_ms,
        },
        Call::Evict(n) => HashRingOp::EvictLru {
            node_id: node_id(n),
        },
        Call::BatchOne(kind, key, size) => HashRingOp::BatchOperations {
            operations: vec![key_op(&(kind, key, size))],
        },
        Call::Batch(ref ops) => HashRingOp::BatchOperations {
            operations: ops.iter().map(key_op).collect(),
        },
        Call::Backup(max_backups) => HashRingOp::Backup { max_backups },
        Call::Restore(back) => HashRingOp::Restore {
            backup_timestamp: timestamp.saturating_add(back),
        },
        Call::Merge(from, to) => HashRingOp::MergeNodes {
            from_node: node_id(from),
            to_node: node_id(to),
        },
        Call::Configure(space) => HashRingOp::Configure { space },
    }
}

fn chat_op(call: &Call, timestamp: i64) -> ChatRouterOp {
    let request_op = |&(kind, key, size_mb): &(Kind, &str, i64)| RequestOperation {
        kind: match kind {
            Kind::Store => RequestOperationKind::Assign,
            Kind::Route => RequestOperationKind::Route,
            Kind::Remove => RequestOperationKind::Remove,
            Kind::Unknown => RequestOperationKind::Unknown,
        },
        request_id: key.into(),
        size_mb,
    };
    let name = |n: &str| n.to_string();
    match *call {
        Call::Add(n, None) => ChatRouterOp::AddServer {
            server_name: name(n),
        },
        Call::Add(n, Some(num_replicas)) => ChatRouterOp::AddServerWithReplicas {
            server_name: name(n),
            num_replicas,
        },
        Call::Remove(n) => ChatRouterOp::RemoveServer {
            server_name: name(n),
        },
        Call::SetLimit(n, max_mb) => ChatRouterOp::SetMemoryLimit {
            server_name: name(n),
            max_mb,
        },
        Call::Store(key, size_mb, 0) => ChatRouterOp::AssignRequest {
            request_id: key.into(),
            size_mb,
        },
        Call::Store(key, size_mb, ttl_ms) => ChatRouterOp::AssignRequestWithTtl {
            request_id: key.into(),
            size_mb,
            ttl_ms,
        },
        Call::Evict(n) => ChatRouterOp::EvictOldestSession {
            server_name: name(n),
        },
        Call::BatchOne(kind, key, size) => ChatRouterOp::BatchRequests {
            operations: vec![request_op(&(kind, key, size))],
        },
        Call::Batch(ref ops) => ChatRouterOp::BatchRequests {
            operations: ops.iter().map(request_op).collect(),
        },
        Call::Backup(max_backups) => ChatRouterOp::Backup { max_backups },
        Call::Restore(back) => ChatRouterOp::Restore {
            backup_timestamp: timestamp.saturating_add(back),
        },
        Call::Merge(from, to) => ChatRouterOp::MergeServers {
            from_server: name(from),
            to_server: name(to),
        },
        Call::Configure(space) => ChatRouterOp::Configure { space },
    }
}

/// The read side both drills share, under one set of names.
trait Facade {
    fn nodes(&self) -> Vec<String>;
    fn node_count(&self) -> i64;
    fn locate_at(&self, timestamp: i64, key: &str) -> Option<Location>;
    fn locate(&self, key: &str) -> Option<Location>;
    /// `get_load` and `get_used` (HashRing) / `get_server_load` and `get_memory_used`.
    fn loads(&self, node: &str) -> [i64; 2];
    fn used_at(&self, timestamp: i64, node: &str) -> i64;
    fn limit(&self, node: &str) -> i64;
    fn replicas(&self, node: &str) -> i64;
    fn route(&self, key: &str) -> Option<&str>;
    fn top(&self, n: i64) -> Vec<String>;
    fn merged_into(&self, node: &str) -> Option<String>;
    fn space(&self) -> PositionSpace;
}

impl Facade for HashRing {
    fn nodes(&self) -> Vec<String> {
        self.list_nodes()
    }
    fn node_count(&self) -> i64 {
        self.get_node_count()
    }
    fn locate_at(&self, timestamp: i64, key: &str) -> Option<Location> {
        self.locate_key_at(timestamp, key)
    }
    fn locate(&self, key: &str) -> Option<Location> {
        self.locate_key(key)
    }
    fn loads(&self, node: &str) -> [i64; 2] {
        [self.get_load(node), self.get_used(node)]
    }
    fn used_at(&self, timestamp: i64, node: &str) -> i64 {
        self.get_used_at(timestamp, node)
    }
    fn limit(&self, node: &str) -> i64 {
        self.get_capacity(node)
    }
    fn replicas(&self, node: &str) -> i64 {
        self.get_replica_count(node)
    }
    fn route(&self, key: &str) -> Option<&str> {
        self.route_key(key)
    }
    fn top(&self, n: i64) -> Vec<String> {
        self.top_loaded(n)
    }
    fn merged_into(&self, node: &str) -> Option<String> {
        self.get_merged_into(node)
    }
    fn space(&self) -> PositionSpace {
        self.position_space()
    }
}

impl Facade for ChatRouter {
    fn nodes(&self) -> Vec<String> {
        self.list_servers()
    }
    fn node_count(&self) -> i64 {
        self.get_server_count()
    }
    fn locate_at(&self, timestamp: i64, key: &str) -> Option<Location> {
        self.locate_request_at(timestamp, key)
    }
    fn locate(&self, key: &str) -> Option<Location> {
        self.locate_request(key)
    }
    fn loads(&self, node: &str) -> [i64; 2] {
        [self.get_server_load(node), self.get_memory_used(node)]
    }
    fn used_at(&self, timestamp: i64, node: &str) -> i64 {
        self.get_memory_used_at(timestamp, node)
    }
    fn limit(&self, node: &str) -> i64 {
        self.get_memory_limit(node)
    }
    fn replicas(&self, node: &str) -> i64 {
        self.get_replica_count(node)
    }
    fn route(&self, key: &str) -> Option<&str> {
        self.route_request(key)
    }
    fn top(&self, n: i64) -> Vec<String> {
        self.top_servers(n)
    }
    fn merged_into(&self, node: &str) -> Option<String> {
        self.get_merged_into(node)
    }
    fn space(&self) -> PositionSpace {
        self.position_space()
    }
}

static NO_HASH_RING: LazyLock<HashRing> = LazyLock::new(HashRing::default);
static NO_CHAT_ROUTER: LazyLock<ChatRouter> = LazyLock::new(ChatRouter::default);

fn facade(engine: &Engine, chat: bool) -> &dyn Facade {
    if chat {
        engine.chat_router(RING).unwrap_or(&NO_CHAT_ROUTER)
    } else {
        engine.hash_ring(RING).unwrap_or(&NO_HASH_RING)
    }
}

/// The public state of a namespace as seen at one time.
struct View {
    /// Each node's used count / MB and its limit.
    nodes: BTreeMap<String, (i64, i64)>,
    keys: BTreeMap<&'static str, Location>,
}

impl View {
    fn of(f: &dyn Facade, at: i64) -> Self {
        let nodes = f.nodes();
        let view = View {
            nodes: nodes
                .iter()
                .map(|n| (n.clone(), (f.used_at(at, n), f.limit(n))))
                .collect(),
            keys: KEYS
                .iter()
                .filter_map(|&k| Some((k, f.locate_at(at, k)?)))
                .collect(),
        };
        assert!(
            nodes.windows(2).all(|w| w[0] < w[1]),
            "nodes listed in name order"
        );
        assert_eq!(f.node_count(), nodes.len() as i64);
        for (key, loc) in &view.keys {
            assert!(
                view.nodes.contains_key(&loc.node),
                "{key:?} is on {:?}, which is not in the ring",
                loc.node
            );
            assert_eq!(
                f.route(key),
                Some(&*loc.node),
                "{key:?} is not on its route"
            );
            if let Some(expires_at) = loc.expires_at {
                assert!(expires_at > at, "{key:?} is dead at {at} but located");
            }
        }
        for (node, &(used, _)) in &view.nodes {
            assert_eq!(used, view.used(node), "{node}'s load is not its keys'");
        }
        view
    }

    fn key_set(&self) -> BTreeSet<&'static str> {
        self.keys.keys().copied().collect()
    }

    /// What the keys on `node` add up to (HashRing sizes are 1).
    fn used(&self, node: &str) -> i64 {
        self.keys
            .values()
            .filter(|loc| loc.node == node)
            .map(|loc| loc.size)
            .sum()
    }

    /// The keys on `node`, least recently used first (ties: earliest inserted).
    fn lru(&self, order: &[&'static str], node: &str) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = order
            .iter()
            .copied()
            .filter(|k| self.keys[k].node == node)
            .collect();
        keys.sort_by_key(|k| self.keys[k].last_access); // stable: ties stay in order
        keys
    }
}

/// The expiry `store_key_with_ttl` gives (`None`: never).
fn expiry(timestamp: i64, ttl: i64) -> Option<i64> {
    (ttl > 0).then(|| timestamp.saturating_add(ttl).min(i64::MAX - 1))
}

/// Applies one call to `engine` and checks it against what it was allowed to do.
fn checked_apply(engine: &mut Engine, m: &mut Model, chat: bool, ts: i64, call: &Call) -> Outcome {
    // Every command first moves the clock and drops what is dead then.
    m.latest = m.latest.max(ts);
    let before = View::of(facade(engine, chat), ts);
    m.order.retain(|k| before.keys.contains_key(k));
    let outcome = engine.apply(&command(chat, ts, call));
    // A command that leaves nothing on a ring never used creates no ring (issue 20), and
    // so no clock: a ring made later starts from its own first command.
    let exists = if chat {
        engine.chat_router(RING).is_some()
    } else {
        engine.hash_ring(RING).is_some()
    };
    if !exists {
        m.latest = 0;
    }
    let f = facade(engine, chat);
    let after = View::of(f, m.latest);
    let (was, is) = (before.key_set(), after.key_set());
    let done = |ok: bool| Outcome::Done(ok);

    // The keys each call may leave; the one it stores is `touched`; `restored` keys are
    // replaced wholesale. Every other key keeps its access time, size and expiry.
    let mut touched = None;
    let mut restored = false;
    let expected: BTreeSet<&'static str> = match *call {
        Call::Add(n, replicas) => {
            let added = !before.nodes.contains_key(n);
            assert_eq!(outcome, done(added));
            if added {
                assert_eq!(f.limit(n), -1, "a new node has no limit");
                assert_eq!(f.replicas(n), replicas.unwrap_or(1));
                assert_eq!(f.merged_into(n), None);
            }
            was.clone()
        }
        Call::Remove(n) => {
            assert_eq!(outcome, done(before.nodes.contains_key(n)));
            assert!(!after.nodes.contains_key(n));
            if f.route("").is_some() {
                was.clone()
            } else {
                // No position left: every key is dropped; ChatRouter keeps their sizes.
                if chat {
                    m.stale
                        .extend(before.keys.iter().map(|(k, loc)| (*k, loc.size)));
                }
                BTreeSet::new()
            }
        }
        Call::SetLimit(n, limit) => {
            let known = before.nodes.contains_key(n);
            assert_eq!(outcome, done(known));
            if known {
                assert_eq!(f.limit(n), limit);
            }
            was.clone() // setting a limit never evicts
        }
        Call::Store(key, size, ttl) => {
            touched = Some(key);
            check_store(
                f,
                m,
                chat,
                ts,
                &before,
                &after,
                key,
                size,
                ttl,
                outcome.clone(),
            )
        }
        Call::BatchOne(kind, key, size) => {
            let [result] = &outcome.clone().into_batch()[..] else {
                panic!("one operation, one result: {outcome:?}");
            };
            let route = f.route(key).map(str::to_owned);
            match kind {
                Kind::Store => {
                    let name = match result {
                        BatchResult::Node(node) => Some(node.clone()),
                        BatchResult::Empty => None,
                        BatchResult::Ok(_) => panic!("a store answers a node: {result:?}"),
                    };
                    touched = Some(key);
                    let outcome = Outcome::Name(name);
                    check_store(f, m, chat, ts, &before, &after, key, size, 0, outcome)
                }
                Kind::Route => {
                    let want = route.map_or(BatchResult::Empty, BatchResult::Node);
                    assert_eq!(result, &want);
                    assert_eq!(before.keys, after.keys, "a route touches nothing");
                    was.clone()
                }
                Kind::Remove => {
                    assert_eq!(result, &BatchResult::Ok(was.contains(key)));
                    was.iter().copied().filter(|k| *k != key).collect()
                }
                Kind::Unknown => {
                    assert_eq!(result, &BatchResult::Empty);
                    was.clone()
                }
            }
        }
        Call::Evict(n) => {
            let victim = before
                .nodes
                .contains_key(n)
                .then(|| before.lru(&m.order, n).first().copied())
                .flatten();
            assert_eq!(
                outcome,
                Outcome::Name(victim.map(str::to_owned)),
                "not the LRU key"
            );
            was.iter().copied().filter(|k| Some(*k) != victim).collect()
        }
        Call::Backup(max) => {
            assert_eq!(outcome, Outcome::Count(Some(was.len() as i64)));
            // Remaining TTLs as of the ring's clock.
            let base = m.latest;
            m.backups.push(Saved {
                timestamp: ts,
                nodes: before
                    .nodes
                    .iter()
                    .map(|(n, &(_, l))| (n.clone(), l))
                    .collect(),
                keys: m
                    .order
                    .iter()
                    .map(|&k| {
                        let loc = &before.keys[k];
                        let ttl = loc.expires_at.map(|e| e.saturating_sub(base));
                        (k, loc.last_access, loc.size, ttl)
                    })
                    .collect(),
            });
            let excess = m.backups.len().saturating_sub(max.max(1) as usize);
            m.backups.drain(..excess);
            was.clone()
        }
        Call::Restore(back) => {
            // The latest backup at or before the asked time; equal times: the first saved.
            let at = ts.saturating_add(back);
            let saved = m.backups.iter().filter(|s| s.timestamp <= at).fold(
                None,
                |best: Option<&Saved>, s| match best {
                    Some(b) if b.timestamp >= s.timestamp => Some(b),
                    _ => Some(s),
                },
            );
            match saved {
                None => {
                    assert_eq!(outcome, Outcome::Count(None));
                    was.clone()
                }
                Some(saved) => {
                    assert_eq!(outcome, Outcome::Count(Some(saved.keys.len() as i64)));
                    let nodes: Vec<(String, i64)> = after
                        .nodes
                        .iter()
                        .map(|(n, &(_, l))| (n.clone(), l))
                        .collect();
                    assert_eq!(nodes, saved.nodes, "restored nodes and limits");
                    restored = true;
                    // Remaining TTLs count from the restore; keys dead by the clock go.
                    let mut back = Vec::new();
                    for &(key, access, size, ttl) in &saved.keys {
                        let expires_at = ttl.map(|t| t.saturating_add(ts).min(i64::MAX - 1));
                        if expires_at.is_some_and(|e| e <= m.latest) {
                            continue;
                        }
                        let loc = after.keys.get(key).expect("a saved live key is restored");
                        assert_eq!(
                            (loc.last_access, loc.size, loc.expires_at),
                            (access, size, expires_at)
                        );
                        back.push(key);
                    }
                    if chat {
                        m.stale.retain(|k, _| saved.keys.iter().all(|s| s.0 != *k));
                    }
                    m.order = back;
                    m.order.iter().copied().collect()
                }
            }
        }
        Call::Merge(from, to) => {
            let merged =
                from != to && before.nodes.contains_key(from) && before.nodes.contains_key(to);
            assert_eq!(outcome, done(merged));
            if merged {
                assert!(!after.nodes.contains_key(from));
                assert_eq!(f.merged_into(from).as_deref(), Some(to));
                assert_eq!(
                    after.nodes[to].1, before.nodes[to].1,
                    "the target keeps its limit"
                );
            }
            was.clone() // a merge never evicts
        }
        Call::Configure(space) => {
            let empty = before.nodes.is_empty() && was.is_empty();
            assert_eq!(outcome, done(empty));
            if empty {
                assert_eq!(f.space(), space);
            }
            was.clone()
        }
        Call::Batch(_) => unreachable!("checked one operation at a time"),
    };

    assert_eq!(
        is, expected,
        "{call:?} left the wrong keys (before: {was:?})"
    );
    if !restored {
        for (key, loc) in &after.keys {
            if Some(*key) != touched {
                let old = &before.keys[key];
                assert_eq!(
                    (loc.last_access, loc.size, loc.expires_at),
                    (old.last_access, old.size, old.expires_at),
                    "{call:?} changed {key:?}"
                );
            }
        }
    }
    // New keys go last in insertion order.
    m.order.retain(|k| is.contains(k));
    for key in &is {
        if !m.order.contains(key) {
            m.order.push(key);
        }
    }
    check_reads(f, &after);
    outcome
}

/// A store / assign: its answer, its evictions, and what it recorded. Returns the keys
/// it must leave.
#[allow(clippy::too_many_arguments)]
fn check_store(
    f: &dyn Facade,
    m: &mut Model,
    chat: bool,
    ts: i64,
    before: &View,
    after: &View,
    key: &'static str,
    size: i64,
    ttl: i64,
    outcome: Outcome,
) -> BTreeSet<&'static str> {
    let mut keys = before.key_set();
    let node = f.route(key).map(str::to_owned);
    assert_eq!(
        outcome,
        Outcome::Name(node.clone()),
        "a store answers its route"
    );
    let Some(node) = node else {
        return keys; // no position: nothing stored
    };
    let expires_at = expiry(ts, ttl);
    if expires_at.is_some_and(|e| e <= m.latest) {
        // Dead on arrival: stores nothing, and a stored copy dies now.
        keys.remove(key);
        return keys;
    }
    let loc = after.keys.get(key).expect("a stored key is located");
    if let Some(old) = before.keys.get(key) {
        // Already stored: no eviction, same size, access and expiry refreshed.
        assert_eq!(
            (loc.last_access, loc.size, loc.expires_at),
            (ts, old.size, expires_at)
        );
        return keys;
    }
    let (used, limit) = before.nodes[&node];
    let lru = before.lru(&m.order, &node);
    let victims: &[&str] = if limit == -1 {
        &[]
    } else if chat {
        // Evict until the new size fits, or nothing is left.
        let mut used = i128::from(used);
        let mut n = 0;
        while used + i128::from(size) > i128::from(limit) && n < lru.len() {
            used -= i128::from(before.keys[lru[n]].size);
            n += 1;
        }
        &lru[..n]
    } else if used >= limit.max(0) {
        // At most one eviction, even when over capacity; capacity 0 still stores.
        &lru[..lru.len().min(1)]
    } else {
        &[]
    };
    for victim in victims {
        keys.remove(victim);
    }
    keys.insert(key);
    let stored_size = if chat {
        m.stale.remove(key).unwrap_or(size)
    } else {
        1
    };
    assert_eq!(
        (&*loc.node, loc.last_access, loc.size, loc.expires_at),
        (&*node, ts, stored_size, expires_at)
    );
    if !chat && limit >= 1 && used <= limit {
        assert!(
            after.nodes[&node].0 <= limit,
            "{node} over its capacity after a store"
        );
    }
    keys
}

/// Reads that must agree with the view at the clock.
fn check_reads(f: &dyn Facade, view: &View) {
    for (node, &(used, _)) in &view.nodes {
        assert_eq!(f.loads(node), [used, used], "{node}: get_load / get_used");
    }
    for key in KEYS {
        assert_eq!(f.locate(key).as_ref(), view.keys.get(key));
        if let Some(e) = view.keys.get(key).and_then(|loc| loc.expires_at) {
            assert_eq!(
                f.locate_at(e, key),
                None,
                "{key:?} is still there when it dies"
            );
        }
    }
    let mut top: Vec<(i64, &String)> = view.nodes.iter().map(|(n, &(u, _))| (u, n)).collect();
    top.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let top: Vec<String> = top.iter().map(|(u, n)| format!("{n}({u})")).collect();
    assert_eq!(f.top(top.len() as i64), top);
}
