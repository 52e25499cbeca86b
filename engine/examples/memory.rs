//! Resident memory per key at scale, and the snapshot path's costs, in release:
//! `cargo run --release -p clockwise-engine --example memory [keys]` (default 10M).
//!
//! The benchmark's shape: one `u64`-space HashRing ring of 64 nodes × 100 virtual nodes,
//! keys `key-0000001`…, no TTL, loaded through batches of 5,000 stores. Resident memory
//! is VmRSS from `/proc/self/status` (Linux), so it counts allocator slack too.

use std::time::Instant;

use clockwise_engine::{Command, Engine, HashRingOp, KeyOperation, KeyOperationKind, Op};

const BATCH: usize = 5_000;

fn rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// A `/proc/self/status` figure in bytes (`VmRSS:` now, `VmHWM:` the peak).
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// This process's CPU seconds (user + system) from `/proc/self/stat`: on a shared,
/// busy machine a steadier figure than wall time (10 ms resolution).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which is in parentheses): utime is the 12th.
            let rest = &s[s.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

fn hr(timestamp: i64, op: HashRingOp) -> Command {
    Command {
        ring: "bench".into(),
        timestamp,
        op: Op::HashRing(op),
    }
}

fn main() {
    let keys: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let base = rss_bytes();
    let mut engine = Engine::new();
    engine.apply(&hr(
        1,
        HashRingOp::Configure {
            space: clockwise_engine::PositionSpace::U64,
        },
    ));
    for i in 0..64 {
        engine.apply(&hr(
            1,
            HashRingOp::AddNodeWithReplicas {
                node_id: format!("node-{i:02}"),
                num_replicas: 100,
            },
        ));
    }
    let start = Instant::now();
    let cpu = cpu_seconds();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..keys {
        batch.push(KeyOperation {
            kind: KeyOperationKind::Store,
            key: format!("key-{:07}", i + 1),
        });
        if batch.len() == BATCH || i + 1 == keys {
            let operations = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            engine.apply(&hr(
                2 + i as i64,
                HashRingOp::BatchOperations { operations },
            ));
        }
    }
    let load = start.elapsed().as_secs_f64();
    let load_cpu = cpu_seconds() - cpu;
    let loaded = rss_bytes();
    println!("keys: {keys}");
    println!(
        "load (batches of {BATCH}): {:.0} k keys/s ({:.0} ns/key; CPU {:.0} ns/key)",
        keys as f64 / load / 1e3,
        load * 1e9 / keys as f64,
        load_cpu * 1e9 / keys as f64
    );
    println!(
        "resident after load: {:.1} B/key",
        (loaded - base) as f64 / keys as f64
    );

    let start = Instant::now();
    let digest = engine.state_digest();
    println!(
        "state_digest: {:.3} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    let start = Instant::now();
    let view = engine.freeze();
    let freeze = start.elapsed().as_secs_f64();
    println!("freeze: {:.3} ms", freeze * 1e3);

    let path = std::env::temp_dir().join(format!("clockwise-memory-{}.snap", std::process::id()));
    let start = Instant::now();
    {
        let file = std::fs::File::create(&path).expect("temp file");
        let mut out = std::io::BufWriter::new(file);
        view.write_to(&mut out).expect("writes");
        std::io::Write::flush(&mut out).expect("flushes");
    }
    let write = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!(
        "write_to (file): {:.0} ms, {:.0} MB/s, {:.0} ns/key, {:.1} B/key on disk",
        write * 1e3,
        size as f64 / write / 1e6,
        write * 1e9 / keys as f64,
        size as f64 / keys as f64
    );
    drop(view);
    println!(
        "resident after freeze + write_to: {:.1} B/key",
        (rss_bytes() - base) as f64 / keys as f64
    );

    // A snapshot while the engine applies on: the view is written on another thread
    // while commands of random re-stores touch chunks (each copied once, on write).
    let view = engine.freeze();
    let writer = std::thread::spawn(move || {
        let start = Instant::now();
        view.write_to(&mut std::io::sink())
            .expect("a sink takes it");
        start.elapsed().as_secs_f64()
    });
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let (mut worst, mut batches) = (0f64, 0);
    while !writer.is_finished() || batches == 0 {
        let operations = (0..BATCH)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                KeyOperation {
                    kind: KeyOperationKind::Store,
                    key: format!("key-{:07}", state % keys as u64 + 1),
                }
            })
            .collect();
        let start = Instant::now();
        engine.apply(&hr(
            keys as i64 + 10 + batches,
            HashRingOp::BatchOperations { operations },
        ));
        worst = worst.max(start.elapsed().as_secs_f64());
        batches += 1;
    }
    let written = writer.join().expect("the writer finishes");
    println!(
        "write_to on a thread, {batches} commands of {BATCH} random re-stores meanwhile: \
         written in {:.0} ms, slowest command {:.1} ms; resident now {:.1} B/key, peak {:.1} B/key",
        written * 1e3,
        worst * 1e3,
        (rss_bytes() - base) as f64 / keys as f64,
        (status_bytes("VmHWM:") - base) as f64 / keys as f64
    );
    drop(engine);
    let start = Instant::now();
    let cpu = cpu_seconds();
    let restored = {
        let mut file = std::fs::File::open(&path).expect("temp file");
        Engine::read_from(&mut file).expect("reads")
    };
    let read = start.elapsed().as_secs_f64();
    let read_cpu = cpu_seconds() - cpu;
    println!(
        "read_from (file): {:.0} ms, {:.0} ns/key (CPU {:.0} ns/key)",
        read * 1e3,
        read * 1e9 / keys as f64,
        read_cpu * 1e9 / keys as f64
    );
    assert_eq!(
        restored.state_digest(),
        digest,
        "the restored state is the same"
    );
    let _ = std::fs::remove_file(&path);
}
