//! `chaos`: a cluster of real node processes under a seeded schedule of faults while
//! SDK clients write and read, then three checks: the history is linearizable per key,
//! no acknowledged write is missing, and every replica reaches the same state digest.
//! Exits 1 on a violation (printing the seed and a small failing sub-history), 2
//! when the run itself could not be made.
//!
//! Usage: `chaos [--seed N] [--duration S] [--nodes N] [--clients N] [--keys N]
//! [--stale-reads] [--history FILE] [--faults LIST]` (`scripts/chaos.sh` builds and
//! runs it). `--stale-reads` makes the
//! clients read from any node without a quorum: a run that must fail, to show the
//! checker catches stale reads. `--history` writes every call as a JSON line (a failed
//! run writes it to the temp dir regardless). `--faults` draws only the named kinds.
//!
//! * `nodes`: the node processes behind their proxies; kill, pause, wipe; health.
//! * `faults`: the schedule and each fault.
//! * `workload`: the clients' calls and the recorded history.
//! * `check`: the per-key model, linearizability and lost-write checks.
//! * `rng`: the seeded generator.

mod check;
mod faults;
mod nodes;
mod rng;
mod workload;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clockwise_tests::linearizability::Verdict;

use crate::check::{check_key, lost_writes, project, KeyReport};
use crate::faults::{run_schedule, Fault, RECOVERY};
use crate::nodes::ChaosCluster;
use crate::rng::Rng;
use crate::workload::{client_loop, Answer, Call, History, Outcome, Record, RING, RING_NODES};

const USAGE: &str =
    "usage: chaos [--seed N] [--duration SECONDS] [--nodes N] [--clients N] [--keys N] [--stale-reads] [--history FILE] [--faults kill,pause,partition,delay,cut,transfer,readd,wipe,wipe-restart]";

/// Search steps allowed per key before the checker gives up (inconclusive).
const CHECK_BUDGET: u64 = 20_000_000;

struct Options {
    seed: u64,
    duration: Duration,
    nodes: usize,
    clients: usize,
    keys: usize,
    /// Read with `stale_reads()`: the checker must then find violations (a check of
    /// the checker).
    stale_reads: bool,
    /// Where to write every recorded call (JSON lines); a failed run writes it anyway.
    history: Option<std::path::PathBuf>,
    /// The kinds of fault drawn from.
    faults: Vec<Fault>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
        duration: Duration::from_secs(60),
        nodes: 5,
        clients: 6,
        keys: 12,
        stale_reads: false,
        history: None,
        faults: Fault::ALL.to_vec(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        if flag == "--stale-reads" {
            options.stale_reads = true;
            continue;
        }
        let value = args
            .next()
            .ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        if flag == "--history" {
            options.history = Some(value.into());
            continue;
        }
        if flag == "--faults" {
            options.faults = Fault::parse_list(&value)?;
            continue;
        }
        let number: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a non-negative integer"))?;
        let count = usize::try_from(number).map_err(|_| format!("{flag}: too large"))?;
        match flag.as_str() {
            "--seed" => options.seed = number,
            "--duration" => options.duration = Duration::from_secs(number),
            "--nodes" if (3..=9).contains(&count) => options.nodes = count,
            "--nodes" => return Err("--nodes: 3 to 9".to_owned()),
            "--clients" if (1..=64).contains(&count) => options.clients = count,
            "--clients" => return Err("--clients: 1 to 64".to_owned()),
            "--keys" if (1..=1000).contains(&count) => options.keys = count,
            "--keys" => return Err("--keys: 1 to 1000".to_owned()),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let seed = options.seed;
    match runtime.block_on(run(options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("FAILED: rerun with --seed {seed}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("chaos (seed {seed}): {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(options: Options) -> Result<bool, String> {
    let kinds: Vec<&str> = options.faults.iter().map(|f| f.flag()).collect();
    println!(
        "chaos: seed {}, {} nodes, {} clients, {} keys, {:?} of faults ({})",
        options.seed,
        options.nodes,
        options.clients,
        options.keys,
        options.duration,
        kinds.join(",")
    );
    let mut cluster = ChaosCluster::start(options.nodes).await?;
    let admin = cluster.client().await?;
    cluster.wait_healthy(&admin, RECOVERY).await?;

    // The ring's nodes never change during the run: every key has one owner.
    let ring = admin.hash_ring(RING);
    for i in 0..RING_NODES {
        ring.clone()
            .at(i as i64 + 1)
            .add_node(&format!("r{i}"))
            .await
            .map_err(|e| format!("AddNode: {e}"))?;
    }
    let keys: Vec<String> = (0..options.keys).map(|i| format!("k{i}")).collect();
    let mut owners = BTreeMap::new();
    for key in &keys {
        let owner = ring
            .route_key(key)
            .await
            .map_err(|e| format!("RouteKey: {e}"))?;
        owners.insert(
            key.clone(),
            owner.ok_or("RouteKey on a ring with nodes answered none")?,
        );
    }

    let mut rng = Rng::new(options.seed);
    let history = History::new(RING_NODES as i64 + 1, options.stale_reads);
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for who in 0..options.clients {
        let client = cluster.client().await?;
        clients.push(tokio::spawn(client_loop(
            who,
            client,
            history.clone(),
            keys.clone(),
            rng.fork(),
            stop.clone(),
        )));
    }
    let started = history.started();
    let (faults, mut stuck) = run_schedule(
        &mut cluster,
        &admin,
        &options.faults,
        &mut rng,
        started,
        started + options.duration,
    )
    .await;
    // A wiped member that started with its original flags could have voted with an
    // empty log: that fails the run like a stuck cluster.
    if let Some(event) = faults.iter().find(|f| {
        f.fault == Fault::WipeRestart
            && f.error
                .as_deref()
                .is_some_and(|e| e.contains("started on a wiped"))
    }) {
        stuck.get_or_insert(format!(
            "{}: {}",
            event.what,
            event.error.clone().unwrap_or_default()
        ));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client
            .await
            .map_err(|e| format!("a client task failed: {e}"))?;
    }
    let workload_end = history.now();

    // Heal everything, then read every key once more and compare the replicas.
    cluster.heal_all();
    let healthy = cluster.wait_healthy(&admin, RECOVERY).await;
    let reader = cluster.client().await?;
    let mut last = BTreeMap::new();
    for key in &keys {
        match history
            .run(options.clients, &reader, Call::Locate { key: key.clone() })
            .await
        {
            Outcome::Ok(Answer::Located(at)) => {
                last.insert(key.clone(), at.map(|(_, ts)| ts));
            }
            other => return Err(format!("final LocateKey {key} after healing: {other:?}")),
        }
    }
    let converged = cluster.wait_converged(&admin, RECOVERY).await;

    let records = history.records();
    let mut reports = Vec::new();
    let mut lost = Vec::new();
    for key in &keys {
        let ops = project(&records, key);
        reports.push(check_key(key, &owners[key], &ops, CHECK_BUDGET));
        for ts in lost_writes(&ops, last[key]) {
            lost.push(format!("{key}: the store with timestamp {ts}"));
        }
    }

    print_faults(&faults);
    print_operations(&records, options.clients);
    let (gap, gap_at) = longest_gap(&records, options.clients, workload_end);
    let during = faults
        .iter()
        .rev()
        .find(|f| f.at <= gap_at + 0.5)
        .map_or("before any fault".to_owned(), |f| {
            format!("after {}: {}", f.fault.name(), f.what)
        });
    println!("longest time without a successful call: {gap:.2} s (from {gap_at:.1} s, {during})");
    let passed = print_verdicts(&options, &reports, &lost, stuck, healthy.err(), converged);
    let keep = options.history.clone().or_else(|| {
        (!passed)
            .then(|| std::env::temp_dir().join(format!("clockwise-chaos-{}.jsonl", options.seed)))
    });
    if let Some(path) = keep {
        match workload::write_history(&path, &records) {
            Ok(()) => println!("history: {}", path.display()),
            Err(e) => eprintln!("cannot write the history to {}: {e}", path.display()),
        }
    }
    Ok(passed)
}

fn print_faults(faults: &[faults::FaultEvent]) {
    println!("\nfaults");
    for event in faults {
        let error = event
            .error
            .as_deref()
            .map_or(String::new(), |e| format!("  (admin call failed: {e})"));
        println!(
            "  {:7.1} s  {:<26} {}{error}",
            event.at,
            event.fault.name(),
            event.what
        );
    }
    println!("\n  {:<26} {:>5}", "fault", "count");
    for fault in Fault::ALL {
        let count = faults.iter().filter(|e| e.fault == fault).count();
        println!("  {:<26} {count:>5}", fault.name());
    }
}

fn print_operations(records: &[Record], clients: usize) {
    let mut table: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
    for record in records.iter().filter(|r| r.client < clients) {
        let row = table.entry(record.what.kind()).or_default();
        match record.outcome {
            Outcome::Ok(_) => row[0] += 1,
            Outcome::Unknown(_) => row[1] += 1,
            Outcome::Failed(_) => row[2] += 1,
        }
    }
    println!(
        "\n  {:<10} {:>8} {:>8} {:>8}",
        "operation", "ok", "unknown", "failed"
    );
    for (kind, [ok, unknown, failed]) in &table {
        println!("  {kind:<10} {ok:>8} {unknown:>8} {failed:>8}");
    }
}

/// The longest stretch (seconds) of the workload with no call answered successfully,
/// and when it started.
fn longest_gap(records: &[Record], clients: usize, end: u64) -> (f64, f64) {
    let mut answered: Vec<u64> = records
        .iter()
        .filter(|r| r.client < clients && matches!(r.outcome, Outcome::Ok(_)))
        .map(|r| r.ret)
        .collect();
    answered.sort_unstable();
    let first_call = records.iter().map(|r| r.call).min().unwrap_or(0);
    let mut previous = first_call;
    let (mut gap, mut at) = (0, first_call);
    for t in answered.into_iter().chain([end]) {
        if t.saturating_sub(previous) > gap {
            (gap, at) = (t - previous, previous);
        }
        previous = previous.max(t);
    }
    (gap as f64 / 1e9, at as f64 / 1e9)
}

fn print_verdicts(
    options: &Options,
    reports: &[KeyReport],
    lost: &[String],
    stuck: Option<String>,
    unhealthy: Option<String>,
    converged: Result<(u64, String), String>,
) -> bool {
    let mut passed = true;
    let checked: usize = reports.iter().map(|r| r.operations).sum();
    let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
    println!("\nchecks");
    println!(
        "  linearizability per key: {} keys, {checked} operations: {} linearizable, {} violations, {} inconclusive",
        reports.len(),
        count(Verdict::Linearizable),
        count(Verdict::Violation),
        count(Verdict::Inconclusive)
    );
    for report in reports
        .iter()
        .filter(|r| r.verdict != Verdict::Linearizable)
    {
        passed = false;
        println!(
            "\n  key {}: {:?} (seed {})",
            report.key, report.verdict, options.seed
        );
        if !report.smallest.is_empty() {
            let start = match report.from_any_state {
                true => "whatever the key's state before it",
                false => "from the key's absence",
            };
            println!(
                "  a failing sub-history of {} operations ({start}; times since the start):",
                report.smallest.len()
            );
            for op in &report.smallest {
                let answer = op
                    .ret
                    .as_ref()
                    .map_or("unknown outcome".to_owned(), |(ret, out)| {
                        format!("→ {out:?} at {:.3} s", *ret as f64 / 1e9)
                    });
                println!(
                    "    client {:>2}  {:.3} s  {:?} {answer}",
                    op.client,
                    op.call as f64 / 1e9,
                    op.input
                );
            }
        }
    }
    println!("  acknowledged writes missing at the end: {}", lost.len());
    for what in lost {
        passed = false;
        println!("    {what}");
    }
    for problem in [stuck, unhealthy].into_iter().flatten() {
        passed = false;
        println!("  the cluster did not recover: {problem}");
    }
    match converged {
        Ok((index, digest)) => println!(
            "  replicas: all {} at applied index {index} with digest {}",
            options.nodes,
            &digest[..digest.len().min(16)]
        ),
        Err(e) => {
            passed = false;
            println!("  replicas: {e}");
        }
    }
    println!("\nverdict: {}", if passed { "PASS" } else { "FAIL" });
    passed
}
