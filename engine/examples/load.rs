//! Load time per key: `cargo run --release -p clockwise-engine --example load [keys] [runs]`.
//! One `u64`-space HashRing ring of 64 nodes × 100 virtual nodes, keys `key-00000001`…,
//! no TTL, loaded through `BatchOperations` of 5,000 stores; prints ns/key per run and
//! at each quarter of the load (a cost that grows with the key count shows there).

use std::time::Instant;

use clockwise_engine::{Command, Engine, HashRingOp, KeyOperation, KeyOperationKind, Op};

const BATCH: usize = 5_000;

fn hr(timestamp: i64, op: HashRingOp) -> Command {
    Command {
        ring: "bench".into(),
        timestamp,
        op: Op::HashRing(op),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let runs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    for _ in 0..runs {
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
        // Commands are built before timing: only `apply` is measured.
        let batches: Vec<Command> = (0..keys.div_ceil(BATCH))
            .map(|b| {
                let operations = (b * BATCH..((b + 1) * BATCH).min(keys))
                    .map(|i| KeyOperation {
                        kind: KeyOperationKind::Store,
                        key: format!("key-{:08}", i + 1),
                    })
                    .collect();
                hr(2 + b as i64, HashRingOp::BatchOperations { operations })
            })
            .collect();
        let quarter = batches.len().div_ceil(4);
        let mut quarters = Vec::new();
        let start = Instant::now();
        let (mut mark, mut since) = (start, 0);
        for (b, command) in batches.iter().enumerate() {
            engine.apply(command);
            since += BATCH.min(keys - b * BATCH);
            if (b + 1) % quarter == 0 || b + 1 == batches.len() {
                let now = Instant::now();
                let n = std::mem::take(&mut since);
                quarters.push(format!(
                    "{:.0}",
                    (now - mark).as_secs_f64() * 1e9 / n as f64
                ));
                mark = now;
            }
        }
        let total = start.elapsed().as_secs_f64();
        println!(
            "{keys} keys: {:.0} ns/key ({:.0} k keys/s); by quarter: {}",
            total * 1e9 / keys as f64,
            keys as f64 / total / 1e3,
            quarters.join(" ")
        );
        // (The load's commands live on: freeing them here would leave glibc 2M small
        // chunks to consolidate at the next large allocation, timed below.)
        // The commands right after a freeze, while the view lives: each copies the
        // chunks it touches (5,000 re-stores of random keys), then one without a view.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut restores = |t: i64| {
            let operations = (0..BATCH)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    KeyOperation {
                        kind: KeyOperationKind::Store,
                        key: format!("key-{:08}", state % keys as u64 + 1),
                    }
                })
                .collect();
            hr(t, HashRingOp::BatchOperations { operations })
        };
        let start = Instant::now();
        let view = engine.freeze();
        let freeze = start.elapsed().as_secs_f64();
        let mut timed = |engine: &mut Engine, t: i64| {
            let command = restores(1_000_000 + t);
            let start = Instant::now();
            engine.apply(&command);
            format!("{:.1}", start.elapsed().as_secs_f64() * 1e3)
        };
        let mut after: Vec<String> = (0..3).map(|t| timed(&mut engine, t)).collect();
        drop(view);
        after.push(timed(&mut engine, 3));
        println!(
            "  freeze: {:.2} ms; re-store commands after it (ms, the last with no view): {}",
            freeze * 1e3,
            after.join(" ")
        );
        let start = Instant::now();
        drop(engine);
        drop(batches);
        println!(
            "  drop (engine and commands): {:.0} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}
