//! clockwise against etcd 3.4 on the same machine, driven by this one load generator:
//! replicated writes and linearizable reads at 1, 16 and 64 concurrent clients
//! (requests/s, p50, p99), and failover (SIGKILL of the leader under writes, to the
//! first acknowledged write sent after it). Prints a markdown section and writes it
//! into `COMPARE_DOC` when set (`doc.rs`).
//!
//! `scripts/bench.sh --etcd` builds and runs it. Environment (all optional):
//! - `CLOCKWISE_BIN`: the release `clockwise` binary (default: the root `target/release`).
//! - `ETCD_BIN`: etcd (default `etcd` on the PATH).
//! - `COMPARE_WORK_DIR`: an empty directory for the members' data and logs (default: a
//!   new one under the temp dir, removed at the end).
//! - `COMPARE_SECONDS` (default 10) per cell, `COMPARE_TRIALS` (default 5) failovers per
//!   system, `COMPARE_NODE_WORKERS` (default 1) tokio threads per clockwise node.
//! - `COMPARE_DOC`: the markdown file to write the section into; `COMPARE_COMMAND`: the
//!   command quoted there.
//! - `COMPARE_CELLS`: only these cells, e.g. `read:64,write:1` (for A/B runs and
//!   profiling; the section is then printed but never written into a doc).
//!
//! Both clusters run at once (the idle one only heartbeats) and each cell runs clockwise
//! then etcd back to back, so background load on the shared machine hits both alike and
//! the ratios stay meaningful when the absolute numbers do not.

mod cluster;
mod doc;
mod load;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clockwise_client::{Client, PositionSpace};
use tokio::signal::unix::{signal, SignalKind};

use cluster::{Clockwise, Etcd, System, ETCD_FAILOVER_TIMEOUT, ETCD_TIMEOUT};
use load::{Op, Outcome, Target};

const RING: &str = "etcd-compare";
/// Ring nodes × virtual nodes each: stores spread over a realistic ring.
const RING_NODES: usize = 8;
const VIRTUAL_NODES: i64 = 100;
const CONCURRENCY: [usize; 3] = [1, 16, 64];
const WARM_UP: Duration = Duration::from_secs(1);
const FAILOVER_WRITERS: usize = 16;

struct Config {
    clockwise_bin: PathBuf,
    etcd_bin: PathBuf,
    work_dir: PathBuf,
    /// The work dir was made here, so it is removed here.
    own_work_dir: bool,
    cell: Duration,
    /// `None`: every workload at every concurrency.
    cells: Option<Vec<(Op, usize)>>,
    trials: usize,
    node_workers: String,
    doc: Option<PathBuf>,
    command: String,
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str, default: u64| {
            var(name).map_or(Ok(default), |v| {
                v.parse()
                    .map_err(|_| format!("{name}={v:?}: not a whole number"))
            })
        };
        let (work_dir, own_work_dir) = match var("COMPARE_WORK_DIR") {
            Some(dir) => (PathBuf::from(dir), false),
            None => (
                std::env::temp_dir().join(format!("etcd-compare-{}", std::process::id())),
                true,
            ),
        };
        Ok(Config {
            clockwise_bin: var("CLOCKWISE_BIN").map_or_else(
                || {
                    concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/../../target/release/clockwise"
                    )
                    .into()
                },
                PathBuf::from,
            ),
            etcd_bin: var("ETCD_BIN").unwrap_or_else(|| "etcd".into()).into(),
            work_dir,
            own_work_dir,
            cell: Duration::from_secs(number("COMPARE_SECONDS", 10)?),
            cells: var("COMPARE_CELLS").map(|v| parse_cells(&v)).transpose()?,
            trials: number("COMPARE_TRIALS", 5)? as usize,
            node_workers: var("COMPARE_NODE_WORKERS").unwrap_or_else(|| "1".into()),
            doc: var("COMPARE_DOC").map(PathBuf::from),
            command: var("COMPARE_COMMAND").unwrap_or_else(|| "scripts/bench.sh --etcd".into()),
        })
    }

    fn runs(&self, op: Op, clients: usize) -> bool {
        self.cells
            .as_ref()
            .is_none_or(|cells| cells.contains(&(op, clients)))
    }
}

/// `read:64,write:1` → the cells named; each concurrency one of [`CONCURRENCY`].
fn parse_cells(text: &str) -> Result<Vec<(Op, usize)>, String> {
    text.split(',')
        .map(|cell| {
            let bad = || {
                format!(
                    "COMPARE_CELLS: {cell:?} is not `read:N` or `write:N` with N one of {CONCURRENCY:?}"
                )
            };
            let (op, clients) = cell.trim().split_once(':').ok_or_else(bad)?;
            let op = match op {
                "read" => Op::Read,
                "write" => Op::Write,
                _ => return Err(bad()),
            };
            let clients: usize = clients.parse().map_err(|_| bad())?;
            if !CONCURRENCY.contains(&clients) {
                return Err(bad());
            }
            Ok((op, clients))
        })
        .collect()
}

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("etcd-compare: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One thread for the whole load, as in tests/benches/rpc.rs: the clusters get the
    // rest of the two cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // On Ctrl-C or SIGTERM the run's future is dropped, and with it every member
    // process (each is killed when dropped).
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(&config) => outcome,
            signal = interrupted() => Err(format!("stopped by {signal}")),
        }
    });
    if config.own_work_dir {
        let _ = std::fs::remove_dir_all(&config.work_dir);
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("etcd-compare: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn interrupted() -> &'static str {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// An SDK client of the whole group, with the SDK's defaults.
async fn sdk(clockwise: &Clockwise) -> Result<Client, String> {
    Client::builder()
        .endpoints(clockwise.endpoints().to_vec())
        .build()
        .await
        .map_err(|e| e.to_string())
}

/// An etcd client balanced over every member (etcd-client's usual way), `attempt` per
/// call.
async fn etcd_kv(etcd: &Etcd, attempt: Duration) -> Result<Target, String> {
    let options = cluster::etcd_options(attempt);
    let client = etcd_client::Client::connect(etcd.urls(), Some(options))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Target::Etcd(Box::new(client.kv_client())))
}

/// One row of the table: the same cell on both systems.
struct Row {
    op: Op,
    clients: usize,
    clockwise: Outcome,
    etcd: Outcome,
}

async fn run(config: &Config) -> Result<(), String> {
    std::fs::create_dir_all(&config.work_dir).map_err(|e| e.to_string())?;
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let addresses = cluster::free_addresses(12).map_err(|e| e.to_string())?;
    let dir = &config.work_dir;
    let mut clockwise = Clockwise::start(
        &config.clockwise_bin,
        dir,
        addresses[0..3].to_vec(),
        &addresses[3..6],
        &config.node_workers,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut etcd = Etcd::start(&config.etcd_bin, dir, &addresses[6..9], &addresses[9..12])
        .await
        .map_err(|e| e.to_string())?;
    clockwise.leader().await;
    etcd.leader().await;
    eprintln!("both clusters up; data and logs in {}", dir.display());

    let ring = sdk(&clockwise).await?.hash_ring(RING);
    let sdk_error = |e: clockwise_client::Error| e.to_string();
    ring.configure_ring(PositionSpace::U64)
        .await
        .map_err(sdk_error)?;
    for n in 0..RING_NODES {
        let node = format!("node-{n}");
        ring.add_node_with_replicas(&node, VIRTUAL_NODES)
            .await
            .map_err(sdk_error)?;
    }
    let clockwise_target = Target::Clockwise(ring);
    let etcd_target = etcd_kv(&etcd, ETCD_TIMEOUT).await?;
    load::preload(&clockwise_target, 64).await?;
    load::preload(&etcd_target, 64).await?;
    eprintln!("{} keys stored in each", load::KEYS);

    let mut rows = Vec::new();
    for op in [Op::Write, Op::Read] {
        for clients in CONCURRENCY {
            if !config.runs(op, clients) {
                continue;
            }
            eprintln!("{op:?} × {clients}: clockwise from now");
            let clockwise = load::cell(
                &clockwise,
                &clockwise_target,
                op,
                clients,
                WARM_UP,
                config.cell,
            )
            .await;
            let etcd = load::cell(&etcd, &etcd_target, op, clients, WARM_UP, config.cell).await;
            eprintln!(
                "{op:?} × {clients}: clockwise {:.0}/s, etcd {:.0}/s",
                clockwise.ops_per_sec, etcd.ops_per_sec
            );
            rows.push(Row {
                op,
                clients,
                clockwise,
                etcd,
            });
        }
    }

    let (mut clockwise_failovers, mut etcd_failovers) = (Vec::new(), Vec::new());
    for trial in 1..=config.trials {
        // Fresh clients each trial: what one learned from the last kill (a breaker
        // left open) does not carry over.
        let target = Target::Clockwise(sdk(&clockwise).await?.hash_ring(RING));
        let c = load::failover(&mut clockwise, &target, FAILOVER_WRITERS).await;
        let target = etcd_kv(&etcd, ETCD_FAILOVER_TIMEOUT).await?;
        let e = load::failover(&mut etcd, &target, FAILOVER_WRITERS).await;
        eprintln!("failover trial {trial}: clockwise {c:?}, etcd {e:?}");
        clockwise_failovers.push(c);
        etcd_failovers.push(e);
    }

    let section = report(
        config,
        &load_average,
        &rows,
        &clockwise_failovers,
        &etcd_failovers,
    );
    println!("{section}");
    if let Some(path) = config.doc.as_ref().filter(|_| config.cells.is_none()) {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(path, doc::replace_section(&text, &section))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote the section into {}", path.display());
    }
    Ok(())
}

fn workload(op: Op) -> &'static str {
    match op {
        Op::Write => "write (StoreKey / Put)",
        Op::Read => "linearizable read (LocateKey / Range)",
    }
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn rate(o: &Outcome) -> String {
    match o.errors {
        0 => format!("{:.0}", o.ops_per_sec),
        n => format!("{:.0} ({n} errors)", o.ops_per_sec),
    }
}

fn millis(d: Option<Duration>) -> String {
    d.map_or("none in 30 s".into(), |d| {
        format!("{:.0}", d.as_secs_f64() * 1e3)
    })
}

/// The median of the trials that saw a write; `None` if one did not.
fn median(trials: &[Option<Duration>]) -> Option<Duration> {
    let mut seen: Vec<Duration> = trials.iter().copied().collect::<Option<_>>()?;
    seen.sort_unstable();
    seen.get(seen.len() / 2).copied()
}

/// The markdown the run answers: how it ran, the table, the failovers, the target.
fn report(
    config: &Config,
    load_average: &str,
    rows: &[Row],
    clockwise_failovers: &[Option<Duration>],
    etcd_failovers: &[Option<Duration>],
) -> String {
    let date = std::process::Command::new("date")
        .arg("+%F")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let etcd_version = std::process::Command::new(&config.etcd_bin)
        .arg("--version")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let first = text.lines().next().unwrap_or_default();
            first.replace("etcd Version: ", "etcd ")
        })
        .unwrap_or_default();
    let machine = doc::machine();
    let gomaxprocs = std::env::var("GOMAXPROCS").unwrap_or_else(|_| "unset".into());
    let seconds = config.cell.as_secs();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "`{}` on {date}: {machine}, shared with other work (load average {load_average} at \
         the start), so absolute numbers are noisy; the ratios compare cells measured back \
         to back in the same run.\n\n\
         - etcd: {etcd_version} (Debian's `etcd-server`), default flags (the WAL is fsync'd \
         on every commit; heartbeat 100 ms, election timeout 1 s), GOMAXPROCS {gomaxprocs}. \
         clockwise: the release binary, `--worker-threads {}`, default flags (every commit \
         fsync'd; tick 30 ms, elections after 10–20 ticks).\n\
         - Load: `tests/etcd-compare`, one tokio thread; per system one client object shared \
         by the concurrent callers: the clockwise SDK (a channel per node, calls to the \
         leader) and `etcd-client` 0.21 (one channel balanced over the members). Keys \
         `key-0`…`key-{}`, all stored before the cells; etcd values are empty (`StoreKey` \
         carries no value). Each cell: {} s of warm-up, then {seconds} s measured.",
        config.command,
        config.node_workers,
        load::KEYS - 1,
        WARM_UP.as_secs(),
    );
    out.push_str(
        "\n| workload | clients | clockwise ops/s | etcd ops/s | ops/s clockwise/etcd | \
         clockwise p50 | etcd p50 | clockwise p99 | etcd p99 | p99 clockwise/etcd |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let (c, e) = (&row.clockwise, &row.etcd);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2}× | {} | {} | {} | {} | {:.2}× |",
            workload(row.op),
            row.clients,
            rate(c),
            rate(e),
            c.ops_per_sec / e.ops_per_sec,
            micros(c.p50),
            micros(e.p50),
            micros(c.p99),
            micros(e.p99),
            c.p99.as_secs_f64() / e.p99.as_secs_f64(),
        );
    }
    out.push_str(
        "\nCPU time per counted call (user + system, from /proc, over the measured seconds): \
         the three members together, and the load generator's client. Once the two cores \
         are busy this is what decides throughput; it falls as batches grow, so it moves \
         with the load too.\n\n\
         | workload | clients | clockwise members | etcd members | members clockwise/etcd | \
         clockwise client (SDK) | etcd client |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let (c, e) = (&row.clockwise, &row.etcd);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2}× | {} | {} |",
            workload(row.op),
            row.clients,
            micros(c.server_cpu),
            micros(e.server_cpu),
            c.server_cpu.as_secs_f64() / e.server_cpu.as_secs_f64(),
            micros(c.client_cpu),
            micros(e.client_cpu),
        );
    }
    let list = |trials: &[Option<Duration>]| {
        trials
            .iter()
            .map(|&t| millis(t))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (c_median, e_median) = (median(clockwise_failovers), median(etcd_failovers));
    let ratio = match (c_median, e_median) {
        (Some(c), Some(e)) => format!("{:.2}×", c.as_secs_f64() / e.as_secs_f64()),
        _ => "–".into(),
    };
    let _ = writeln!(
        out,
        "\nFailover: SIGKILL of the leader while {FAILOVER_WRITERS} clients write, to the first \
         acknowledged write sent after the kill (at the kill the writers are replaced by as \
         many new ones; 10 ms pause after a failed call); the killed member restarted and \
         caught up between trials. Each client is set up as it recovers fastest: the SDK \
         with its defaults (5 s per attempt: a follower holds a write until a leader is \
         elected, then forwards it), etcd-client with {} ms per call (an etcd follower \
         forwards a write to the dead leader and it is lost, so only the client's timeout \
         gets it retried; the cells above use {} ms).\n\n\
         | failover | clockwise | etcd | clockwise/etcd |\n|---|---:|---:|---:|\n\
         | median | {} ms | {} ms | {ratio} |\n\
         | trials (ms) | {} | {} | |",
        ETCD_FAILOVER_TIMEOUT.as_millis(),
        ETCD_TIMEOUT.as_millis(),
        millis(c_median),
        millis(e_median),
        list(clockwise_failovers),
        list(etcd_failovers),
    );
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    let _ = write!(
        out,
        "\nAgainst the target (≥ 2× etcd's throughput at 64 clients with p99 no worse; \
         failover within 1 s):"
    );
    for row in rows.iter().filter(|r| r.clients == 64) {
        let (c, e) = (&row.clockwise, &row.etcd);
        let (speed, p99) = (
            c.ops_per_sec / e.ops_per_sec,
            c.p99.as_secs_f64() / e.p99.as_secs_f64(),
        );
        let _ = write!(
            out,
            " {:?}s {speed:.2}× with p99 {p99:.2}×: **{}**;",
            row.op,
            verdict(speed >= 2.0 && p99 <= 1.0)
        );
    }
    let slowest = clockwise_failovers
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|t| t.into_iter().max());
    let _ = writeln!(
        out,
        " failover: slowest clockwise trial {} ms: **{}**.",
        millis(slowest),
        verdict(slowest.is_some_and(|s| s <= Duration::from_secs(1)))
    );
    doc::wrap(&out, 90)
}
