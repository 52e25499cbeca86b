//! `scale`: issue 15's benchmark, "ten million keys: costs that stay flat". Three
//! release nodes on loopback; one HashRing ring (`U64` space, 64 nodes × 100 virtual
//! nodes) loaded with N keys by `BatchOperations` while a background writer, a Status
//! poller and an RSS sampler run; a row per milestone; then a follower SIGKILLed and
//! restarted on its data, and a follower wiped, removed and added again, each timed to
//! catch-up; the snapshots the nodes logged; a verdict per target. Prints a markdown
//! section and writes it into `SCALE_DOC` when set (`doc.rs`).
//!
//! Usage: `scale [--keys N]` (default 10,000,000); `scripts/bench.sh --scale [--keys N]`
//! builds and runs it. Environment (all optional):
//! - `CLOCKWISE_BIN`: the release `clockwise` binary (default: the workspace's
//!   `target/release/clockwise`).
//! - `SCALE_WORK_DIR`: an empty directory for the nodes' data and logs (default: a new
//!   one under the temp dir); removed at the end either way unless `SCALE_KEEP=1`.
//! - `SCALE_DOC`: the markdown file to write the section into; `SCALE_COMMAND`: the
//!   command quoted there.
//!
//! A benchmark, not a test: targets missed are reported, not failed. It exits non-zero
//! when the run itself broke (a node died, a step did not finish within its bound).
//! The nodes die with it: killed when dropped, and by the kernel if this program dies
//! (PR_SET_PDEATHSIG, which fires when the *thread* that spawned a node ends: nodes are
//! spawned from the runtime's worker threads, which live as long as the runtime).
//! The writer and the poller run on a thread and a runtime of their own (`probes`), so
//! they are not held behind a loader building or encoding a batch of 5,000 keys: their
//! latencies are the cluster's.
//!
//! * `nodes`: the node processes; Status, leader, catch-up, RSS.
//! * `probes`: the loaders, the background writer, the poller.
//! * `snapshots`: the snapshot lines of the nodes' logs.
//! * `report`: the markdown and the verdicts; `doc`: its section in the doc.

mod doc;
mod nodes;
mod probes;
mod report;
mod snapshots;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clockwise_client::{Client, HashRing, PositionSpace};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use nodes::Nodes;
use probes::Probes;
use report::{Milestone, Recovery, Run, StatusCounts};

const USAGE: &str = "usage: scale [--keys N]";
const RING: &str = "scale";
const RING_NODES: usize = 64;
const VIRTUAL_NODES: i64 = 100;
/// A load that acknowledges no batch for this long is broken (a little over the time a
/// loader keeps retrying one batch).
const LOAD_STALL: Duration = Duration::from_secs(150);
/// How long a restarted or re-added follower may take to catch up; past it the step
/// is reported as not done (and the target as not met).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a membership change may take to show in the leader's Status.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two catch-up checks.
const CHECK_EVERY: Duration = Duration::from_millis(50);

struct Config {
    keys: u64,
    clockwise_bin: PathBuf,
    work_dir: PathBuf,
    keep: bool,
    doc: Option<PathBuf>,
    command: String,
}

impl Config {
    fn parse() -> Result<Config, String> {
        let mut keys = 10_000_000;
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "--keys" => {
                    let value = args.next().ok_or(USAGE)?;
                    keys = value
                        .replace('_', "")
                        .parse()
                        .ok()
                        .filter(|&n| n >= probes::BATCH)
                        .ok_or_else(|| {
                            format!("--keys {value:?}: a whole number ≥ {}", probes::BATCH)
                        })?;
                }
                _ => return Err(USAGE.into()),
            }
        }
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Config {
            keys,
            clockwise_bin: var("CLOCKWISE_BIN").map_or_else(
                || concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/clockwise").into(),
                PathBuf::from,
            ),
            work_dir: var("SCALE_WORK_DIR").map_or_else(
                || std::env::temp_dir().join(format!("clockwise-scale-{}", std::process::id())),
                PathBuf::from,
            ),
            keep: var("SCALE_KEEP").is_some_and(|v| v == "1"),
            doc: var("SCALE_DOC").map(PathBuf::from),
            command: var("SCALE_COMMAND").unwrap_or_else(|| format!("scale --keys {keys}")),
        })
    }
}

fn main() -> ExitCode {
    let config = match Config::parse() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("scale: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // On Ctrl-C or SIGTERM the run's future is dropped, and with it the nodes (each is
    // killed when dropped; tasks holding them go with the runtime, just below).
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(&config) => outcome,
            signal = interrupted() => Err(format!("stopped by {signal}")),
        }
    });
    drop(runtime);
    if config.keep {
        eprintln!("scale: data and logs kept in {}", config.work_dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&config.work_dir);
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
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

async fn run(config: &Config) -> Result<(), String> {
    std::fs::create_dir_all(&config.work_dir)
        .map_err(|e| format!("{}: {e}", config.work_dir.display()))?;
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let nodes = Arc::new(Nodes::start(&config.clockwise_bin, &config.work_dir).await?);
    eprintln!(
        "scale: 3 nodes up; data and logs in {}",
        config.work_dir.display()
    );
    let client = Client::builder()
        .endpoints(nodes.addresses())
        .build()
        .await
        .map_err(|e| format!("SDK client: {e}"))?;
    let ring = client.hash_ring(RING);
    let sdk = |what: &str| {
        let what = what.to_owned();
        move |e: clockwise_client::Error| format!("{what}: {e}")
    };
    ring.configure_ring(PositionSpace::U64)
        .await
        .map_err(sdk("ConfigureRing"))?;
    for n in 0..RING_NODES {
        ring.add_node_with_replicas(&format!("node-{n:02}"), VIRTUAL_NODES)
            .await
            .map_err(sdk("AddNodeWithReplicas"))?;
    }
    let probes = Arc::new(Probes::new());
    let _tasks = probes::start(&nodes, RING, &probes);
    // Every step below gives way to a broken run (a node died).
    tokio::select! {
        run = steps(config, load_average, &nodes, &client, &ring, &probes) => run,
        why = probes.broken() => Err(why),
    }
}

/// Every node's own Status counts so far.
async fn status_inside(nodes: &Nodes) -> Result<Vec<StatusCounts>, String> {
    let mut counts = Vec::new();
    for i in 0..nodes.len() {
        counts.push(nodes.status_inside(i).await?);
    }
    Ok(counts)
}

async fn steps(
    config: &Config,
    load_average: String,
    nodes: &Arc<Nodes>,
    client: &Client,
    ring: &HashRing,
    probes: &Arc<Probes>,
) -> Result<(), String> {
    // A node's metrics count from its start: the load's Status calls are the difference
    // of two scrapes (both before any restart).
    let before = status_inside(nodes).await?;
    let (milestones, load_time) = load(config.keys, nodes, ring, probes).await?;
    let status_inside: Vec<StatusCounts> = status_inside(nodes)
        .await?
        .into_iter()
        .zip(before)
        .map(|(after, before)| after.since(before))
        .collect();
    let restart = restart(nodes, probes).await?;
    eprintln!("scale: {}: {:?}", restart.what, restart.caught_up);
    let rejoin = rejoin(nodes, client, probes).await?;
    eprintln!("scale: {}: {:?}", rejoin.what, rejoin.caught_up);
    let mut snapshots = Vec::new();
    for (id, log) in nodes.logs() {
        snapshots.extend(snapshots::read(id, &log)?);
    }
    let run = Run {
        keys: config.keys,
        command: config.command.clone(),
        load_average,
        milestones,
        load_time,
        status_inside,
        recoveries: vec![restart, rejoin],
        snapshots,
        recovery_timeout: RECOVERY_TIMEOUT,
    };
    let section = run.markdown();
    println!("{section}");
    if let Some(path) = &config.doc {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(path, doc::replace_section(&text, &section))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("scale: wrote the section into {}", path.display());
    }
    Ok(())
}

/// Every 1M keys, or every tenth of a smaller load (whole batches).
fn milestone_step(keys: u64) -> u64 {
    let tenth = keys.div_ceil(10).div_ceil(probes::BATCH) * probes::BATCH;
    tenth.min(1_000_000)
}

/// Loads the keys; a row per milestone; the whole load's time.
async fn load(
    keys: u64,
    nodes: &Nodes,
    ring: &HashRing,
    probes: &Arc<Probes>,
) -> Result<(Vec<Milestone>, Duration), String> {
    let step = milestone_step(keys);
    let (loaded, mut progress) = watch::channel(0u64);
    probes.take(); // what the probes saw while the ring was made
    let began = Instant::now();
    let mut loaders = Box::pin(probes::load(ring.clone(), keys, loaded, probes.clone()));
    let mut milestones = Vec::new();
    let (mut next, mut previous) = (step.min(keys), (0, began));
    let changes_before = probes.leader_changes.load(Ordering::Relaxed);
    let mut loaders_done = false;
    loop {
        tokio::select! {
            // The loaders ended: all stored, or one failed. (The sender is dropped with
            // them, so `changed` fails after this.)
            done = &mut loaders, if !loaders_done => {
                done?;
                loaders_done = true;
            }
            changed = tokio::time::timeout(LOAD_STALL, progress.changed()) => {
                match changed {
                    Err(_) => return Err(format!(
                        "load stalled: no batch acknowledged within {LOAD_STALL:?} at {} keys",
                        *progress.borrow()
                    )),
                    Ok(Err(_)) => {} // the loaders are done; the last milestone below
                    Ok(Ok(())) => {}
                }
            }
        }
        let stored = *progress.borrow_and_update();
        if stored < next {
            continue;
        }
        let now = Instant::now();
        probes.sample_rss(nodes);
        let milestone = Milestone {
            keys: stored,
            keys_before: previous.0,
            interval: now - previous.1,
            records: probes.take(),
            leader_changes: probes.leader_changes.load(Ordering::Relaxed) - changes_before,
        };
        if milestones.is_empty() {
            eprintln!("{}", report::MILESTONE_HEADER);
        }
        eprintln!("{}", milestone.row());
        milestones.push(milestone);
        previous = (stored, now);
        if stored >= keys {
            return Ok((milestones, now - began));
        }
        while next <= stored {
            next = (next + step).min(keys);
        }
    }
}

/// A follower other than the leader (the highest-numbered one).
async fn follower(nodes: &Nodes) -> Result<usize, String> {
    let leader = nodes.leader().await?;
    Ok((0..nodes.len()).rev().find(|&i| i != leader).unwrap_or(0))
}

/// How far node `i` got, from `began`: its first Status answer, then caught up with
/// the leader; a stage not reached within [`RECOVERY_TIMEOUT`] stays `None`. Progress
/// goes to stderr each second (applied indexes: is it replaying, or waiting?).
///
/// Caught up: its applied index ≥ the leader's as read at the previous check that
/// found a leader (one [`CHECK_EVERY`] plus the calls' time before). Not the leader's of the same instant: a follower learns an
/// entry is committed from the leader's next message, so while the writer runs it
/// trails the leader by an entry nearly all the time, and "≥ the leader's now" holds
/// only when a check falls in a gap between writes (seconds apart, by chance).
async fn catch_up(nodes: &Nodes, i: usize, began: Instant) -> CaughtUp {
    let deadline = began + RECOVERY_TIMEOUT;
    let mut out = CaughtUp::default();
    let mut shown = began;
    let mut leader_before = None;
    while Instant::now() < deadline {
        // Both at once: either may be slow (today's Status costs time with the state).
        let (leader, node) = tokio::join!(nodes.leader_status(), nodes.status(i));
        let leader = leader.ok();
        if let Ok((node, _)) = node {
            if out.answered.is_none() {
                out.answered = Some(began.elapsed());
                out.first_applied = node.applied_index;
            }
            if let Some(target) = leader_before.filter(|&t| node.applied_index >= t) {
                out.caught_up = Some(began.elapsed());
                out.leader_applied = target;
                return out;
            }
            if let Some(leader) = &leader {
                if shown.elapsed() >= Duration::from_secs(1) {
                    shown = Instant::now();
                    eprintln!(
                        "  {:.1} s: node {} applied {} (commit {}), leader {} applied {}",
                        began.elapsed().as_secs_f64(),
                        i + 1,
                        node.applied_index,
                        node.commit_index,
                        leader.id,
                        leader.applied_index
                    );
                }
            }
        }
        // Kept when no leader answered (an election): the target stays the last known.
        if let Some(leader) = leader {
            leader_before = Some(leader.applied_index);
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
    out
}

/// What [`catch_up`] saw.
#[derive(Default)]
struct CaughtUp {
    answered: Option<Duration>,
    /// The node's applied index at its first answer.
    first_applied: u64,
    caught_up: Option<Duration>,
    /// The leader's applied index when the node had caught up.
    leader_applied: u64,
}

/// SIGKILL of a follower, started again at once over the same data dir.
async fn restart(nodes: &Nodes, probes: &Probes) -> Result<Recovery, String> {
    let i = follower(nodes).await?;
    probes.take();
    let changes = probes.leader_changes.load(Ordering::Relaxed);
    nodes.kill(i);
    nodes.start_founder(i, "existing")?;
    let began = Instant::now();
    let caught = catch_up(nodes, i, began).await;
    Ok(Recovery {
        what: "SIGKILL of a follower, restarted on its data",
        node: i as u64 + 1,
        answered: caught.answered,
        first_applied: caught.first_applied,
        caught_up: caught.caught_up,
        leader_applied: caught.leader_applied,
        records: probes.take(),
        leader_changes: probes.leader_changes.load(Ordering::Relaxed) - changes,
    })
}

/// Retries `change` until the leader's membership satisfies `done`, within
/// [`MEMBERSHIP_TIMEOUT`] (the SDK does not retry membership changes: their outcome may
/// be unknown).
async fn change_membership(
    nodes: &Nodes,
    what: &str,
    done: impl Fn(&[u64]) -> bool,
    change: impl AsyncFn() -> Result<(), clockwise_client::Error>,
) -> Result<(), String> {
    let deadline = Instant::now() + MEMBERSHIP_TIMEOUT;
    let mut last = String::from("no leader answered");
    loop {
        if let Ok(leader) = nodes.leader_status().await {
            let ids: Vec<u64> = leader.members.iter().map(|m| m.id).collect();
            if done(&ids) {
                return Ok(());
            }
            if let Err(e) = change().await {
                last = e.to_string();
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {MEMBERSHIP_TIMEOUT:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A follower whose data is lost, brought back as docs/api.md says ("Replacing a node
/// whose data was lost"): `RemoveMember`, SIGKILL, its data dir deleted, started empty
/// with `--join`, `AddMember`; timed from its start to caught up.
async fn rejoin(nodes: &Nodes, client: &Client, probes: &Probes) -> Result<Recovery, String> {
    let i = follower(nodes).await?;
    let (id, address, peer_address) = nodes.identity(i);
    let cluster = client.cluster();
    probes.take();
    let changes = probes.leader_changes.load(Ordering::Relaxed);
    nodes.expect_down(i);
    change_membership(
        nodes,
        &format!("RemoveMember {id}"),
        |ids| !ids.contains(&id),
        async || cluster.remove_member(id).await.map(drop),
    )
    .await?;
    nodes.wipe(i)?;
    nodes.start_joining(i)?;
    let began = Instant::now();
    change_membership(
        nodes,
        &format!("AddMember {id}"),
        |ids| ids.contains(&id),
        async || {
            cluster
                .add_member(id, &address, &peer_address)
                .await
                .map(drop)
        },
    )
    .await?;
    let caught = catch_up(nodes, i, began).await;
    Ok(Recovery {
        what: "follower wiped: RemoveMember, data deleted, --join, AddMember",
        node: id,
        answered: caught.answered,
        first_applied: caught.first_applied,
        caught_up: caught.caught_up,
        leader_applied: caught.leader_applied,
        records: probes.take(),
        leader_changes: probes.leader_changes.load(Ordering::Relaxed) - changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_are_every_million_or_every_tenth() {
        assert_eq!(milestone_step(10_000_000), 1_000_000);
        assert_eq!(milestone_step(50_000_000), 1_000_000);
        assert_eq!(milestone_step(1_000_000), 100_000);
        assert_eq!(milestone_step(200_000), 20_000);
        // Whole batches, so a milestone is a batch boundary.
        assert_eq!(milestone_step(123_456), 15_000);
    }
}
