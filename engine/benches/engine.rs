//! Engine benchmark: prints a markdown table (the source of `docs/benchmarks.md`).
//!
//! `cargo bench -p clockwise-engine --bench engine` (add `-- --quick` for 10k/100k only,
//! `-- --topology` for the topology-by-ring-size section alone).
//! The snapshot section (issue 15) runs at 1M keys, or `CLOCKWISE_BENCH_KEYS` keys.
//! Rings are 64 nodes × 100 virtual nodes in the `u64` position space. Single thread.
//! Each figure is the median of several runs; ratios compare runs of this same process
//! (the machine is noisy: compare ratios, not absolute numbers, across runs).
//! Baselines in the same run: the `hashring` crate's `get` on the same ring, and the
//! Python drill reference on the same 10k-call trace (via `scripts/bench_reference.py`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use clockwise_engine::{
    ChatRouter, Command as EngineCommand, Engine, HashRing, HashRingOp, KeyOperation,
    KeyOperationKind, Op, PositionSpace,
};

/// Counts live heap bytes, to measure memory per stored key.
struct CountingAlloc;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const NODES: usize = 64;
const REPLICAS: i64 = 100;
const RUNS: usize = 5;
/// Operations per call in the batched columns (`route_keys`, `batch_operations`).
const BATCH: usize = 64;

fn node_name(i: usize) -> String {
    format!("node-{i:02}")
}

fn key_name(i: usize) -> String {
    format!("key-{i}")
}

/// xorshift64*: a fixed, dependency-free stream of indices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

fn ring_with_nodes() -> HashRing {
    let mut ring = HashRing::default();
    ring.configure(PositionSpace::U64);
    for i in 0..NODES {
        ring.add_node_with_replicas(&node_name(i), REPLICAS);
    }
    ring
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// Median ops/s of `RUNS` runs of `ops` operations.
fn rate(ops: usize, mut run: impl FnMut()) -> f64 {
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                run();
                ops as f64 / start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn mops(rate: f64) -> String {
    format!("{:.2} M/s", rate / 1e6)
}

struct Row {
    keys: usize,
    cells: Vec<String>,
    batched: Vec<String>,
}

/// `batch_operations` calls of `BATCH` stores each.
fn store_batches(keys: &[String]) -> Vec<Vec<KeyOperation>> {
    keys.chunks(BATCH)
        .map(|chunk| {
            chunk
                .iter()
                .map(|key| KeyOperation {
                    kind: KeyOperationKind::Store,
                    key: key.clone(),
                })
                .collect()
        })
        .collect()
}

fn bench_size(keys: usize) -> Row {
    let names: Vec<String> = (0..keys).map(key_name).collect();
    // The probes are copies laid out in probe order, as requests arrive: a request's key
    // is in cache when it is routed or stored, the stored copy of it is not.
    let probe_keys: Vec<String> = {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        (0..1_000_000)
            .map(|_| names[rng.below(keys)].clone())
            .collect()
    };
    let probe: Vec<&str> = probe_keys.iter().map(String::as_str).collect();

    // Fill: store every key once into an empty (64-node) ring; memory measured here.
    let mut ring = ring_with_nodes();

    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let start = Instant::now();
    for (i, key) in names.iter().enumerate() {
        black_box(ring.store_key(i as i64, key));
    }
    let fill_rate = keys as f64 / start.elapsed().as_secs_f64();
    let key_bytes: usize = names.iter().map(String::len).sum();
    let per_key =
        (LIVE_BYTES.load(Ordering::Relaxed) - before - key_bytes as isize) as f64 / keys as f64;

    let route_rate = rate(probe.len(), || {
        for key in &probe {
            black_box(ring.route_key(key));
        }
    });
    let route_batched_rate = rate(probe.len(), || {
        for chunk in probe.chunks(BATCH) {
            black_box(ring.route_keys(chunk));
        }
    });
    let mut ts = keys as i64;
    let restore_rate = rate(probe.len(), || {
        for key in &probe {
            ts += 1;
            black_box(ring.store_key(ts, key));
        }
    });
    let probe_batches = store_batches(&probe_keys);
    let restore_batched_rate = rate(probe.len(), || {
        for batch in &probe_batches {
            ts += 1;
            black_box(ring.batch_operations(ts, batch));
        }
    });
    drop(probe_batches);

    // The same fill as above, through `batch_operations`.
    let fill_batches = store_batches(&names);
    let fill_batched_rate = median(
        (0..RUNS)
            .map(|_| {
                let mut ring = ring_with_nodes();
                let start = Instant::now();
                for (i, batch) in fill_batches.iter().enumerate() {
                    black_box(ring.batch_operations(i as i64, batch));
                }
                let rate = keys as f64 / start.elapsed().as_secs_f64();
                assert_eq!(ring.top_loaded(NODES as i64).len(), NODES);
                rate
            })
            .collect(),
    );
    drop(fill_batches);

    // Store with eviction: every node full (capacity = its load), each new key evicts one.
    for i in 0..NODES {
        let name = node_name(i);
        let used = ring.get_used(&name);
        ring.set_capacity(&name, used);
    }
    let fresh: Vec<String> = (0..200_000).map(|i| format!("new-{i}")).collect();
    let mut next = 0;
    let evict_rate = rate(fresh.len() / RUNS, || {
        for _ in 0..fresh.len() / RUNS {
            ts += 1;
            black_box(ring.store_key(ts, &fresh[next]));
            next += 1;
        }
    });
    assert_eq!(ring.top_loaded(1).len(), 1);

    // Topology: add a 65th node (100 virtual nodes), then remove it.
    let mut ring = ring_with_nodes();
    for (i, key) in names.iter().enumerate() {
        ring.store_key(i as i64, key);
    }
    let (mut add_times, mut remove_times, mut moved) = (vec![], vec![], 0);
    for _ in 0..RUNS {
        let start = Instant::now();
        ring.add_node_with_replicas("node-new", REPLICAS);
        add_times.push(start.elapsed());
        moved = ring.get_load("node-new") as usize;
        let start = Instant::now();
        ring.remove_node("node-new");
        remove_times.push(start.elapsed());
    }
    let add = median(add_times.iter().map(Duration::as_secs_f64).collect());
    let remove = median(remove_times.iter().map(Duration::as_secs_f64).collect());

    // ChatRouter: servers at their memory limit, each assign evicts until it fits.
    let mut router = ChatRouter::default();
    router.configure(PositionSpace::U64);
    for i in 0..NODES {
        router.add_server_with_replicas(&node_name(i), REPLICAS);
    }
    for (i, key) in names.iter().enumerate() {
        router.assign_request(i as i64, key, 1 + (i % 10) as i64);
    }
    for i in 0..NODES {
        let name = node_name(i);
        let used = router.get_memory_used(&name);
        router.set_memory_limit(&name, used);
    }
    let mut next = 0;
    let assign_rate = rate(fresh.len() / RUNS, || {
        for _ in 0..fresh.len() / RUNS {
            ts += 1;
            black_box(router.assign_request(ts, &fresh[next], 1 + (next % 20) as i64));
            next += 1;
        }
    });

    Row {
        keys,
        cells: vec![
            mops(route_rate),
            mops(fill_rate),
            mops(restore_rate),
            mops(evict_rate),
            mops(assign_rate),
            format!(
                "{:.2} ms / {moved} keys ({:.0} ns/key)",
                add * 1e3,
                add * 1e9 / moved.max(1) as f64
            ),
            format!("{:.2} ms", remove * 1e3),
            format!("{per_key:.0} B"),
        ],
        batched: vec![
            mops(route_batched_rate),
            mops(fill_batched_rate),
            mops(restore_batched_rate),
        ],
    }
}

/// md5 of each key alone, one by one and `BATCH` at a time: the floor under routing,
/// which must hash with md5.
fn md5_only() -> (f64, f64) {
    let keys: Vec<String> = (0..1_000_000).map(key_name).collect();
    let one_by_one = rate(keys.len(), || {
        for key in &keys {
            black_box(PositionSpace::U64.position(key));
        }
    });
    let strs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut out = Vec::with_capacity(BATCH);
    let batched = rate(keys.len(), || {
        for chunk in strs.chunks(BATCH) {
            PositionSpace::U64.positions(chunk, &mut out);
            black_box(&out);
        }
    });
    (one_by_one, batched)
}

/// The `hashring` crate's `get` on the same 64 × 100 ring, against our `route_key` and
/// `route_keys` (`BATCH` per call): (ours one by one, ours batched, theirs).
fn hashring_baseline() -> (f64, f64, f64) {
    let ring = ring_with_nodes();
    let mut theirs = hashring::HashRing::new();
    for i in 0..NODES {
        for r in 0..REPLICAS {
            theirs.add(format!("{}_{r}", node_name(i)));
        }
    }
    let keys: Vec<String> = (0..1_000_000).map(key_name).collect();
    let ours = rate(keys.len(), || {
        for key in &keys {
            black_box(ring.route_key(key));
        }
    });
    let strs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let ours_batched = rate(keys.len(), || {
        for chunk in strs.chunks(BATCH) {
            black_box(ring.route_keys(chunk));
        }
    });
    let theirs = rate(keys.len(), || {
        for key in &keys {
            black_box(theirs.get(key));
        }
    });
    (ours, ours_batched, theirs)
}

/// A 10k-call HashRing trace (16 nodes × 10 virtual nodes, 2,000 keys), run here and by
/// the Python reference. Returns (our seconds, reference seconds) or why not.
fn reference_baseline() -> Result<(f64, f64), String> {
    enum Call {
        Store(String),
        Route(String),
        Load(String),
        Evict(String),
        Add(String),
        Remove(String),
    }
    let mut rng = Rng(7);
    let mut calls = Vec::new();
    let mut trace = String::new();
    for i in 0..16 {
        let node = format!("n{i}");
        writeln!(
            trace,
            r#"{{"method":"add_node_with_replicas","ts":0,"args":["{node}",10]}}"#
        )
        .unwrap();
    }
    for ts in 1..=10_000 {
        let key = format!("k{}", rng.below(2000));
        let node = format!("n{}", rng.below(18));
        let (call, method, arg) = match rng.below(100) {
            0..=59 => (Call::Store(key.clone()), "store_key", key),
            60..=89 => (Call::Route(key.clone()), "route_key", key),
            90..=94 => (Call::Load(node.clone()), "get_load", node),
            95..=97 => (Call::Evict(node.clone()), "evict_lru", node),
            98 => (Call::Add(node.clone()), "add_node", node),
            _ => (Call::Remove(node.clone()), "remove_node", node),
        };
        writeln!(
            trace,
            r#"{{"method":"{method}","ts":{ts},"args":["{arg}"]}}"#
        )
        .unwrap();
        calls.push((ts, call));
    }
    let path = std::env::temp_dir().join(format!(
        "clockwise-bench-trace-{}.jsonl",
        std::process::id()
    ));
    std::fs::write(&path, &trace).map_err(|e| e.to_string())?;

    let ours = median(
        (0..RUNS)
            .map(|_| {
                let mut ring = HashRing::default();
                ring.configure(PositionSpace::U64);
                for i in 0..16 {
                    ring.add_node_with_replicas(&format!("n{i}"), 10);
                }
                let start = Instant::now();
                for (ts, call) in &calls {
                    match call {
                        Call::Store(k) => drop(black_box(ring.store_key(*ts, k))),
                        Call::Route(k) => drop(black_box(ring.route_key(k))),
                        Call::Load(n) => drop(black_box(ring.get_load(n))),
                        Call::Evict(n) => drop(black_box(ring.evict_lru(n))),
                        Call::Add(n) => drop(black_box(ring.add_node(n))),
                        Call::Remove(n) => drop(black_box(ring.remove_node(n))),
                    }
                }
                start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_reference.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let theirs = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or_else(|| {
            format!(
                "reference failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok((ours, theirs))
}

/// Stores per command in the snapshot section: the batches a loading client sends.
const LOAD_BATCH: usize = 5_000;

fn command(timestamp: i64, op: HashRingOp) -> EngineCommand {
    EngineCommand {
        ring: "bench".into(),
        timestamp,
        op: Op::HashRing(op),
    }
}

fn store_command(timestamp: i64, keys: &[String]) -> EngineCommand {
    command(
        timestamp,
        HashRingOp::BatchOperations {
            operations: keys
                .iter()
                .map(|key| KeyOperation {
                    kind: KeyOperationKind::Store,
                    key: key.clone(),
                })
                .collect(),
        },
    )
}

/// A `Write` that only counts: the encoder's own cost, without a destination's.
struct Counting(u64);

impl std::io::Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn millis(seconds: f64) -> String {
    format!("{:.2} ms", seconds * 1e3)
}

/// Issue 15: the digest, freeze, `write_to` and `read_from` on an engine of `keys` keys
/// loaded through commands of [`LOAD_BATCH`] stores, as a node applies them.
fn bench_snapshots(keys: usize) {
    let names: Vec<String> = (0..keys).map(|i| format!("key-{:07}", i + 1)).collect();
    let setup = |engine: &mut Engine| {
        engine.apply(&command(
            1,
            HashRingOp::Configure {
                space: PositionSpace::U64,
            },
        ));
        for i in 0..NODES {
            engine.apply(&command(
                1,
                HashRingOp::AddNodeWithReplicas {
                    node_id: node_name(i),
                    num_replicas: REPLICAS,
                },
            ));
        }
    };
    let batches: Vec<EngineCommand> = names
        .chunks(LOAD_BATCH)
        .enumerate()
        .map(|(i, chunk)| store_command(2 + i as i64, chunk))
        .collect();
    let mut engine = Engine::new();
    let load_runs: Vec<f64> = (0..3)
        .map(|_| {
            engine = Engine::new();
            setup(&mut engine);
            let start = Instant::now();
            for batch in &batches {
                black_box(engine.apply(batch));
            }
            start.elapsed().as_secs_f64() * 1e9 / keys as f64
        })
        .collect();
    let load_ns = median(load_runs);
    drop(batches);

    // What the digest adds to a store: one XXH3-128 of the item's fact (a new key; a
    // stored key again: two, the old fact out and the new one in).
    let mut fact = [7u8; 33 + 11];
    let fact_ns = {
        let n = 10_000_000;
        let start = Instant::now();
        for i in 0..n {
            fact[1] = i as u8;
            black_box(xxhash_rust::xxh3::xxh3_128(black_box(&fact)));
        }
        start.elapsed().as_secs_f64() * 1e9 / n as f64
    };
    let digest_time = median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                black_box(engine.state_digest());
                start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let freeze_time = median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                let view = black_box(engine.freeze());
                let t = start.elapsed().as_secs_f64();
                drop(view);
                t
            })
            .collect(),
    );
    let view = engine.freeze();
    let mut size = 0;
    let write_time = median(
        (0..RUNS)
            .map(|_| {
                let mut sink = Counting(0);
                let start = Instant::now();
                view.write_to(&mut sink).expect("counting never fails");
                size = sink.0;
                start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let mut bytes = Vec::with_capacity(size as usize);
    view.write_to(&mut bytes).expect("a Vec takes it");
    drop(view);
    // Applying while a view lives: the chunks a batch touches are copied once.
    let mut rng = Rng(11);
    let restores: Vec<EngineCommand> = (0..20)
        .map(|b| {
            let chunk: Vec<String> = (0..LOAD_BATCH)
                .map(|_| names[rng.below(keys)].clone())
                .collect();
            store_command(1_000_000 + b, &chunk)
        })
        .collect();
    // The engine itself frozen, as a node does: the first commands after the freeze
    // copy the chunks they touch; once the view is gone, none is copied.
    let frozen = engine.freeze();
    let worst_with_view = restores[..10]
        .iter()
        .map(|batch| {
            let start = Instant::now();
            black_box(engine.apply(batch));
            start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max);
    drop(frozen);
    let worst_without = restores[10..]
        .iter()
        .map(|batch| {
            let start = Instant::now();
            black_box(engine.apply(batch));
            start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max);
    drop(engine);
    let read_runs: Vec<f64> = (0..3)
        .map(|_| {
            let start = Instant::now();
            let restored = Engine::read_from(&mut &bytes[..]).expect("restores");
            let t = start.elapsed().as_secs_f64();
            drop(black_box(restored));
            t
        })
        .collect();
    let read_time = median(read_runs);

    println!("\n## Snapshots at {keys} keys (issue 15)\n");
    println!("| figure | value |");
    println!("|---|---:|");
    println!("| load through commands of {LOAD_BATCH} stores | {load_ns:.0} ns/key |");
    println!("| digest's share of a new store (XXH3-128 of the item's fact) | {fact_ns:.1} ns |");
    println!("| `state_digest` | {:.2} µs |", digest_time * 1e6);
    println!("| `freeze` | {} |", millis(freeze_time));
    println!(
        "| `write_to` (counting sink) | {}, {:.0} MB/s, {:.0} ns/key, {:.1} B/key |",
        millis(write_time),
        size as f64 / write_time / 1e6,
        write_time * 1e9 / keys as f64,
        size as f64 / keys as f64
    );
    println!(
        "| `read_from` (in memory) | {}, {:.0} ns/key |",
        millis(read_time),
        read_time * 1e9 / keys as f64
    );
    println!(
        "| slowest of 10 commands of {LOAD_BATCH} random re-stores, a view alive / none | {} / {} |",
        millis(worst_with_view),
        millis(worst_without)
    );
}

/// A topology change's cost by ring size (issue 20: it used to rebuild and re-sort every
/// virtual node): an empty `u64` ring of `vnodes` virtual nodes (nodes of 100), then a
/// node of 100 added and removed again, median of several runs.
fn bench_topology() {
    println!("\n## Topology changes by ring size (no keys, u64 space)\n");
    println!("| virtual nodes | add_node_with_replicas (100) | remove_node |");
    println!("|---:|---:|---:|");
    for vnodes in [10_000, 1_000_000] {
        let mut ring = HashRing::default();
        ring.configure(PositionSpace::U64);
        for i in 0..vnodes / REPLICAS as usize {
            ring.add_node_with_replicas(&format!("node-{i:06}"), REPLICAS);
        }
        let (mut adds, mut removes) = (Vec::new(), Vec::new());
        for _ in 0..RUNS * 4 {
            let start = Instant::now();
            ring.add_node_with_replicas("node-new", REPLICAS);
            adds.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            ring.remove_node("node-new");
            removes.push(start.elapsed().as_secs_f64());
        }
        println!(
            "| {vnodes} | {:.1} µs | {:.1} µs |",
            median(adds) * 1e6,
            median(removes) * 1e6
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--topology") {
        bench_topology();
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    println!("## Engine (single thread, {NODES} nodes × {REPLICAS} virtual nodes, u64 space)\n");
    println!("| keys | route_key | store_key (new) | store_key (re-store) | store_key (evicts 1) | assign_request (evicts until fits) | add_node (moved keys) | remove_node | heap per key |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rows: Vec<Row> = sizes.iter().map(|&keys| bench_size(keys)).collect();
    for row in &rows {
        println!("| {} | {} |", row.keys, row.cells.join(" | "));
    }
    println!("\nheap per key: live heap bytes after storing N keys minus the key bytes, / N.");
    println!("\n### Batched ({BATCH} keys per call)\n");
    println!("| keys | route_keys | batch_operations, stores (new) | batch_operations, stores (re-store) |");
    println!("|---:|---:|---:|---:|");
    for row in &rows {
        println!("| {} | {} |", row.keys, row.batched.join(" | "));
    }

    let (ours, ours_batched, theirs) = hashring_baseline();
    println!("\n## Baselines (same process)\n");
    println!("| comparison | clockwise | baseline | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| route, 64 × 100 ring, 1M lookups vs `hashring` 0.3 `get` | {} | {} | {:.2}× |",
        mops(ours),
        mops(theirs),
        ours / theirs
    );
    println!(
        "| `route_keys`, {BATCH} keys per call, vs `hashring` 0.3 `get` | {} | {} | {:.2}× |",
        mops(ours_batched),
        mops(theirs),
        ours_batched / theirs
    );
    let (md5, md5_batched) = md5_only();
    println!(
        "| route vs md5 of the key alone (the drill's hash; the floor under routing) | {} | {} | {:.2}× |",
        mops(ours),
        mops(md5),
        ours / md5
    );
    println!(
        "| md5 {BATCH} keys at a time (`PositionSpace::positions`) vs one by one | {} | {} | {:.2}× |",
        mops(md5_batched),
        mops(md5),
        md5_batched / md5
    );
    match reference_baseline() {
        Ok((ours, theirs)) => println!(
            "| 10k-call HashRing trace vs Python reference (`ring_reference.py`) | {:.2} ms | {:.0} ms | {:.0}× faster |",
            ours * 1e3,
            theirs * 1e3,
            theirs / ours
        ),
        Err(why) => println!("| 10k-call trace vs Python reference | — | not run: {why} | — |"),
    }
    let snapshot_keys = std::env::var("CLOCKWISE_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 100_000 } else { 1_000_000 });
    bench_snapshots(snapshot_keys);
    bench_topology();
}
