//! Issue 18's benchmark (`scripts/bench.sh --watch`): local routing from an SDK
//! `RingView` against the engine and against `RouteKey`, and how fast a topology change
//! reaches 1,000 watchers spread over three nodes. Not a test: it prints one markdown
//! section and writes it into `WATCH_DOC` when set.
//!
//! - `local`: routes per second in one thread, single and batched, with the same-process
//!   engine baseline and the RPC rate; every checked key agrees with `RouteKey`.
//! - `propagation`: acknowledgement-to-watcher delays, memory per idle watcher.
//!
//! Arguments: `--keys N` (local routes, default 1,000,000), `--watchers N` (default
//! 1,000), `--changes N` (default 40). Environment: `CLOCKWISE_BIN` (the release binary
//! `scripts/bench.sh` built), `WATCH_DOC`, `WATCH_COMMAND` (the command line to quote).

mod local;
mod propagation;

use std::fmt::Write as _;
use std::time::Duration;

use clockwise_client::{Client, PositionSpace};
use clockwise_tests::cluster::TestCluster;

#[path = "../../bench_doc.rs"]
mod bench_doc;

const SECTION: bench_doc::Section = bench_doc::Section {
    heading: "## Watch and local routing (issue 18)",
    begin:
        "<!-- written by scripts/bench.sh --watch: replaced on each run up to the end marker -->",
    end: "<!-- end of scripts/bench.sh --watch output; what follows is written by hand -->",
};

struct Args {
    keys: usize,
    watchers: usize,
    changes: usize,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        keys: 1_000_000,
        watchers: 1_000,
        changes: 40,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .map_err(|_| format!("{flag}: not a count: {value}"))?;
        match flag.as_str() {
            "--keys" => args.keys = n.max(1),
            "--watchers" => args.watchers = n.max(1),
            "--changes" => args.changes = n.max(2),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(args)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn millions(rate: f64) -> String {
    format!("{:.2} M/s", rate / 1e6)
}

fn markdown(l: &local::LocalRouting, p: &propagation::Propagation) -> String {
    let command = std::env::var("WATCH_COMMAND").unwrap_or_else(|_| "watch_bench".into());
    let machine = bench_doc::machine();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "`{command}`: 3 release nodes on loopback ({machine}, shared with the load \
         generator), default flags; one HashRing ring, `U64` space, 64 nodes × 100 \
         virtual nodes; the SDK client and the watchers in one tokio runtime of 2 threads.\n"
    );
    let _ = writeln!(out, "### Local routing (one thread, {} keys)\n", l.keys);
    let _ = writeln!(out, "| routes | one key per call | 64 keys per call |");
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(
        out,
        "| SDK `RingView` (`current()` then `route_key` / `route_keys`) | {} | {} |",
        millions(l.view_single),
        millions(l.view_batched)
    );
    let _ = writeln!(
        out,
        "| the engine's `HashRing` rebuilt from the same topology (same process) | {} | {} |",
        millions(l.engine_single),
        millions(l.engine_batched)
    );
    let _ = writeln!(
        out,
        "| view / engine | {:.2}× | {:.2}× |",
        l.view_single / l.engine_single,
        l.view_batched / l.engine_batched
    );
    let _ = writeln!(
        out,
        "| `RouteKey` over gRPC through the SDK (linearizable), one caller / 64 concurrent | {:.0}/s | {:.0}/s |",
        l.rpc_single, l.rpc_concurrent
    );
    let _ = writeln!(
        out,
        "\n{} keys' local routes checked against `RouteKey`: all agreed.\n",
        l.checked
    );
    let _ = writeln!(
        out,
        "### Propagation ({} watchers over 3 nodes, {} topology changes)\n",
        p.watchers, p.changes
    );
    let _ = writeln!(out, "| acknowledgement → watcher | p50 | p99 | max |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| every (change, watcher), {} in all | {} | {} | {} |",
        p.delays.len(),
        ms(percentile(&p.delays, 0.5)),
        ms(percentile(&p.delays, 0.99)),
        ms(percentile(&p.delays, 1.0))
    );
    let per_watcher: Vec<String> = p
        .bytes_per_watcher
        .iter()
        .map(|b| format!("{:.1} KiB", b / 1024.0))
        .collect();
    let _ = writeln!(
        out,
        "\n{} of those watchers held the revision before the writer had its answer \
         (counted as 0). Each change is an `AddNodeWithReplicas` (100 virtual nodes) or a \
         `RemoveNode` through node 1, 50 ms apart; a watcher holds a revision when a \
         message at or past it arrives. Memory per idle watcher (RSS with the streams \
         open and quiet, minus before, per stream), nodes 1–3: {}.",
        p.before_ack,
        per_watcher.join(", ")
    );
    bench_doc::wrap(&out, 90)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("watch_bench: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let args = args()?;
    let cluster = TestCluster::start(3);
    cluster.leader().await;
    let client = Client::builder()
        .endpoints(cluster.addrs.clone())
        .timeout(Duration::from_secs(30))
        .build()
        .await
        .map_err(|e| format!("client: {e}"))?;
    let ring = "bench";
    let r = client.hash_ring(ring);
    r.configure_ring(PositionSpace::U64)
        .await
        .map_err(|e| format!("ConfigureRing: {e}"))?;
    for node in 0..64 {
        r.add_node_with_replicas(&format!("node-{node:02}"), 100)
            .await
            .map_err(|e| format!("AddNodeWithReplicas: {e}"))?;
    }
    let local = local::measure(&client, ring, args.keys).await?;
    let pids: Vec<u32> = cluster
        .nodes
        .iter()
        .map(|n| n.as_ref().map_or(0, |n| n.pid()))
        .collect();
    let propagation =
        propagation::measure(&cluster.addrs, &pids, ring, args.watchers, args.changes).await?;
    let section = markdown(&local, &propagation);
    println!("{section}");
    if let Ok(path) = std::env::var("WATCH_DOC") {
        let doc = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        std::fs::write(&path, bench_doc::replace_section(&SECTION, &doc, &section))
            .map_err(|e| format!("{path}: {e}"))?;
        println!("wrote its section of {path}");
    }
    Ok(())
}
