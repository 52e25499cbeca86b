//! Issue 19's timeline (`scripts/bench.sh --timeline`): where one write and one
//! linearizable read spend their time, from the client across the leader's tokio
//! worker, its raft driver thread, raft-engine, the peer transport and a follower.
//!
//! Three release nodes log every point of `clockwise_cluster::timeline` (trace events,
//! JSON lines, microsecond timestamps of the machine's one clock) straight into files:
//! `CLOCKWISE_BIN` is replaced by a wrapper script that sends the node's stderr to
//! one, since a pipe read by this process would wake it on every line, on the same two
//! cores. One SDK
//! client, talking to the leader only, makes its calls one after another, so every
//! point logged inside a call's window belongs to it (heartbeats aside: each stage
//! takes the first matching point after the stage before). The same calls against a
//! cluster logging nothing give the uninstrumented latency beside it.
//!
//! Not a test: it prints one markdown section and writes it into `TIMELINE_DOC` when
//! set. Arguments: `--calls N` per kind (default 2,000). Environment: `CLOCKWISE_BIN`,
//! `TIMELINE_DOC`, `TIMELINE_COMMAND` (the command line to quote).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clockwise_client::{Client, PositionSpace};
use clockwise_tests::cluster::TestCluster;

#[path = "../bench_doc.rs"]
mod bench_doc;

const SECTION: bench_doc::Section = bench_doc::Section {
    heading: "## One request's timeline (issue 19)",
    begin:
        "<!-- written by scripts/bench.sh --timeline: replaced on each run up to the end marker -->",
    end: "<!-- end of scripts/bench.sh --timeline output; what follows is written by hand -->",
};

/// Calls made before the measured ones (connections, allocator, page cache warm).
const WARMUP: usize = 200;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Leader,
    Follower,
}

/// One stage of a call's path: the first of `points` logged on `who` after the stage
/// before.
struct Stage {
    label: &'static str,
    who: Who,
    points: &'static [&'static str],
}

const fn stage(label: &'static str, who: Who, points: &'static [&'static str]) -> Stage {
    Stage { label, who, points }
}

const WRITE: &[Stage] = &[
    stage(
        "gRPC request reaches the server (tower layer)",
        Who::Leader,
        &["rpc.begin"],
    ),
    stage("driver thread proposes it", Who::Leader, &["propose"]),
    stage(
        "append handed to the transport",
        Who::Leader,
        &["ready.sent"],
    ),
    stage(
        "transport task sends the batch",
        Who::Leader,
        &["peer.send"],
    ),
    stage(
        "follower's transport receives it",
        Who::Follower,
        &["peer.received"],
    ),
    stage("follower's driver steps it", Who::Follower, &["step"]),
    stage(
        "follower's entry fsync'd (raft-engine)",
        Who::Follower,
        &["ready.persisted"],
    ),
    stage(
        "follower's ack handed to the transport",
        Who::Follower,
        &["ready.sent_persisted", "ready.sent"],
    ),
    stage(
        "follower's transport task sends it",
        Who::Follower,
        &["peer.send"],
    ),
    stage(
        "leader's transport receives the ack",
        Who::Leader,
        &["peer.received"],
    ),
    stage("leader's driver steps the ack", Who::Leader, &["step"]),
    stage(
        "leader applied the entry, answer sent",
        Who::Leader,
        &["ready.applied"],
    ),
    stage(
        "gRPC response done (tower layer)",
        Who::Leader,
        &["rpc.end"],
    ),
];

const READ: &[Stage] = &[
    stage(
        "gRPC request reaches the server (tower layer)",
        Who::Leader,
        &["rpc.begin"],
    ),
    stage("driver thread asks ReadIndex", Who::Leader, &["read_index"]),
    stage(
        "heartbeats handed to the transport",
        Who::Leader,
        &["ready.sent"],
    ),
    stage(
        "transport task sends the batch",
        Who::Leader,
        &["peer.send"],
    ),
    stage(
        "follower's transport receives it",
        Who::Follower,
        &["peer.received"],
    ),
    stage("follower's driver steps it", Who::Follower, &["step"]),
    stage(
        "follower's answer handed to the transport",
        Who::Follower,
        &["ready.sent_persisted", "ready.sent"],
    ),
    stage(
        "follower's transport task sends it",
        Who::Follower,
        &["peer.send"],
    ),
    stage(
        "leader's transport receives the answer",
        Who::Leader,
        &["peer.received"],
    ),
    stage("leader's driver steps it", Who::Leader, &["step"]),
    stage(
        "read confirmed by a quorum",
        Who::Leader,
        &["read.confirmed"],
    ),
    stage(
        "read answered (index applied)",
        Who::Leader,
        &["read.answered"],
    ),
    stage(
        "gRPC response done (tower layer)",
        Who::Leader,
        &["rpc.end"],
    ),
];

/// A logged point: microseconds since the epoch, and its name.
type Point = (i64, String);

/// A call's window on the client, in microseconds since the epoch.
type Window = (i64, i64);

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// `2026-12-07T18:53:30.977959Z` in microseconds since the epoch.
fn parse_timestamp(s: &str) -> Option<i64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let micros: i64 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3_600 + min * 60 + sec) * 1_000_000) + micros)
}

/// The timeline points in a node's JSON log, in time order.
fn points(log: &str) -> Vec<Point> {
    let mut points: Vec<Point> = log
        .lines()
        .filter(|l| l.contains("clockwise::timeline"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let at = parse_timestamp(v.get("timestamp")?.as_str()?)?;
            let point = v.get("fields")?.get("point")?.as_str()?.to_string();
            Some((at, point))
        })
        .collect();
    points.sort_by_key(|(at, _)| *at);
    points
}

/// The first of `names` on `log` at or after `from` and no later than `until`.
fn first_after(log: &[Point], names: &[&str], from: i64, until: i64) -> Option<i64> {
    let start = log.partition_point(|(at, _)| *at < from);
    log[start..]
        .iter()
        .take_while(|(at, _)| *at <= until)
        .find(|(_, p)| names.contains(&p.as_str()))
        .map(|(at, _)| *at)
}

/// Each stage's time for one call through `follower`, or `None` where a point is
/// missing.
fn trace(
    stages: &[Stage],
    window: Window,
    leader: &[Point],
    follower: &[Point],
) -> Option<Vec<i64>> {
    let mut at = window.0;
    let mut times = Vec::with_capacity(stages.len());
    for s in stages {
        let log = if s.who == Who::Leader {
            leader
        } else {
            follower
        };
        at = first_after(log, s.points, at, window.1)?;
        times.push(at);
    }
    Some(times)
}

/// Per stage: offsets from the call's start, and steps from the stage before.
struct Timeline {
    matched: usize,
    calls: usize,
    /// Per stage (the client's answer last): microseconds since the call began.
    since_start: Vec<Vec<i64>>,
    steps: Vec<Vec<i64>>,
    leader_fsync: Vec<i64>,
}

fn timeline(stages: &[Stage], windows: &[Window], logs: &[Vec<Point>], leader: usize) -> Timeline {
    let n = stages.len() + 1;
    let mut t = Timeline {
        matched: 0,
        calls: windows.len(),
        since_start: vec![Vec::new(); n],
        steps: vec![Vec::new(); n],
        leader_fsync: Vec::new(),
    };
    for &window in windows {
        // The follower whose part ended first is the one that made the quorum.
        let best = (0..logs.len())
            .filter(|&i| i != leader)
            .filter_map(|f| trace(stages, window, &logs[leader], &logs[f]))
            .min_by_key(|times| {
                let last_follower = stages.iter().rposition(|s| s.who == Who::Follower);
                last_follower.map_or(0, |k| times[k])
            });
        let Some(mut times) = best else { continue };
        t.matched += 1;
        if let Some(propose) = first_after(&logs[leader], &["propose"], window.0, window.1) {
            if let Some(p) = first_after(&logs[leader], &["ready.persisted"], propose, window.1) {
                t.leader_fsync.push(p - window.0);
            }
        }
        times.push(window.1);
        let mut before = window.0;
        for (k, at) in times.into_iter().enumerate() {
            t.since_start[k].push(at - window.0);
            t.steps[k].push(at - before);
            before = at;
        }
    }
    t
}

fn median(values: &[i64]) -> i64 {
    quantile(values, 0.5)
}

fn quantile(values: &[i64], q: f64) -> i64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn table(out: &mut String, title: &str, stages: &[Stage], t: &Timeline, plain: &[i64]) {
    let _ = writeln!(
        out,
        "### {title} ({} of {} calls matched)\n",
        t.matched, t.calls
    );
    let _ = writeln!(
        out,
        "| # | point | where | since the call, p50 | p90 | step, p50 |"
    );
    let _ = writeln!(out, "|---:|---|---|---:|---:|---:|");
    let last = ("client has the answer (SDK)", "client");
    for k in 0..=stages.len() {
        let (label, who) = stages.get(k).map_or(last, |s| {
            (
                s.label,
                if s.who == Who::Leader {
                    "leader"
                } else {
                    "follower"
                },
            )
        });
        let _ = writeln!(
            out,
            "| {} | {label} | {who} | {} µs | {} µs | {} µs |",
            k + 1,
            median(&t.since_start[k]),
            quantile(&t.since_start[k], 0.9),
            median(&t.steps[k]),
        );
    }
    if !t.leader_fsync.is_empty() {
        let _ = writeln!(
            out,
            "\nThe leader's own fsync (in parallel, after it handed the append over) ended \
             {} µs after the call began (p50).",
            median(&t.leader_fsync)
        );
    }
    let _ = writeln!(
        out,
        "\nThe same calls against nodes logging nothing: p50 {} µs, p90 {} µs, p99 {} µs \
         (logged: p50 {} µs).\n",
        median(plain),
        quantile(plain, 0.9),
        quantile(plain, 0.99),
        median(t.since_start.last().map_or(&[][..], Vec::as_slice)),
    );
}

struct Args {
    calls: usize,
}

fn args() -> Result<Args, String> {
    let mut args = Args { calls: 2_000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--calls" => {
                args.calls = value
                    .parse::<usize>()
                    .map_err(|_| format!("--calls: not a count: {value}"))?
                    .max(1)
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(args)
}

/// The windows of `calls` writes then `calls` reads, one at a time, to the leader.
async fn run_calls(
    cluster: &TestCluster,
    calls: usize,
) -> Result<(Vec<Window>, Vec<Window>), String> {
    let leader = cluster.leader().await;
    let client = Client::builder()
        .endpoints(vec![cluster.addrs[leader].clone()])
        .timeout(Duration::from_secs(10))
        .build()
        .await
        .map_err(|e| format!("client: {e}"))?;
    let ring = client.hash_ring("timeline");
    ring.configure_ring(PositionSpace::U64)
        .await
        .map_err(|e| format!("ConfigureRing: {e}"))?;
    for node in ["a", "b", "c"] {
        ring.add_node_with_replicas(node, 100)
            .await
            .map_err(|e| format!("AddNodeWithReplicas: {e}"))?;
    }
    let mut writes = Vec::with_capacity(calls);
    for i in 0..WARMUP + calls {
        let began = now_us();
        ring.store_key(&format!("key-{i}"))
            .await
            .map_err(|e| format!("StoreKey: {e}"))?;
        if i >= WARMUP {
            writes.push((began, now_us()));
        }
    }
    let mut reads = Vec::with_capacity(calls);
    for i in 0..WARMUP + calls {
        let began = now_us();
        ring.locate_key(&format!("key-{i}"))
            .await
            .map_err(|e| format!("LocateKey: {e}"))?
            .ok_or(format!("key-{i} not stored"))?;
        if i >= WARMUP {
            reads.push((began, now_us()));
        }
    }
    Ok((writes, reads))
}

fn durations(windows: &[Window]) -> Vec<i64> {
    windows.iter().map(|(a, b)| b - a).collect()
}

// One thread: `log_to_files` changes the environment before any other thread exists.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("timeline: {e}");
        std::process::exit(1);
    }
}

/// Points `CLOCKWISE_BIN` at a script that runs the real binary (`$CLOCKWISE_BIN`) with
/// its stderr appended to `dir/node-<pid>.log`. Must run before the first node starts.
fn log_to_files(dir: &Path) -> Result<(), String> {
    let real = std::env::var("CLOCKWISE_BIN")
        .map_err(|_| "CLOCKWISE_BIN: the release binary to run (scripts/bench.sh sets it)")?;
    let real = std::fs::canonicalize(&real).map_err(|e| format!("{real}: {e}"))?;
    let script = dir.join("clockwise.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\" 2>>'{}'/node-$$.log\n",
            real.display(),
            dir.display()
        ),
    )
    .map_err(|e| format!("{}: {e}", script.display()))?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", script.display()))?;
    std::env::set_var("CLOCKWISE_BIN", &script);
    Ok(())
}

async fn run() -> Result<(), String> {
    let args = args()?;
    let logs_dir = clockwise_tests::unique_temp_dir();
    log_to_files(&logs_dir)?;
    let (plain_writes, plain_reads) = {
        let cluster = TestCluster::start(3);
        run_calls(&cluster, args.calls).await?
    };
    let cluster = TestCluster::start_with_env(
        3,
        &["--log-format", "json"],
        &[("RUST_LOG", "info,clockwise::timeline=trace")],
    );
    let (writes, reads) = run_calls(&cluster, args.calls).await?;
    let leader = cluster.leader().await;
    let logs: Vec<Vec<Point>> = cluster
        .nodes
        .iter()
        .map(|n| {
            let pid = n.as_ref().map_or(0, |n| n.pid());
            let log = std::fs::read_to_string(logs_dir.join(format!("node-{pid}.log")));
            points(&log.unwrap_or_default())
        })
        .collect();
    drop(cluster);
    let _ = std::fs::remove_dir_all(&logs_dir);
    let command = std::env::var("TIMELINE_COMMAND").unwrap_or_else(|_| "timeline".into());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "`{command}` on {}: 3 release nodes on loopback (flags as the integration tests start \
         them: 20 ms ticks), one SDK client in one thread making one call at a time to \
         the leader; {} writes (`StoreKey`) then {} linearizable reads (`LocateKey`), \
         after {WARMUP} of each to warm up. Each node logs its `clockwise::timeline` \
         points (trace events as JSON lines); a call's points are the first of each \
         stage after the stage before, inside its window on the client. The follower \
         shown is the one whose part ended first (the quorum's). Logging costs time \
         itself, so the uninstrumented latency of the same calls is given under each \
         table.\n",
        bench_doc::machine(),
        args.calls,
        args.calls
    );
    let write = timeline(WRITE, &writes, &logs, leader);
    table(
        &mut out,
        "A write",
        WRITE,
        &write,
        &durations(&plain_writes),
    );
    let read = timeline(READ, &reads, &logs, leader);
    table(
        &mut out,
        "A linearizable read",
        READ,
        &read,
        &durations(&plain_reads),
    );
    let section = bench_doc::wrap(&out, 90);
    println!("{section}");
    if let Ok(path) = std::env::var("TIMELINE_DOC") {
        let doc = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        std::fs::write(&path, bench_doc::replace_section(&SECTION, &doc, &section))
            .map_err(|e| format!("{path}: {e}"))?;
        println!("wrote its section of {path}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_microseconds_since_the_epoch() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_timestamp("2026-12-07T18:53:30.977959Z"),
            Some(1_796_669_610_977_959)
        );
        assert_eq!(
            parse_timestamp("2000-03-01T00:00:01.5Z"),
            Some(951_868_801_500_000)
        );
        assert_eq!(parse_timestamp("not a time"), None);
    }
}
