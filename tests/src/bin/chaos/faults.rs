//! The fault schedule: one fault at a time, drawn from the seed, each undone before
//! the next, and the cluster healthy again (one leader, every node a voter) before the
//! next starts. Never more than a minority is down at once.

use std::time::{Duration, Instant};

use clockwise_client::Client;

use crate::nodes::ChaosCluster;
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Kill,
    Pause,
    Partition,
    Delay,
    Cut,
    TransferLeader,
    RemoveAndReadd,
    Wipe,
    WipeRestart,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::Kill,
        Fault::Pause,
        Fault::Partition,
        Fault::Delay,
        Fault::Cut,
        Fault::TransferLeader,
        Fault::RemoveAndReadd,
        Fault::Wipe,
        Fault::WipeRestart,
    ];

    /// The name `--faults` takes.
    pub fn flag(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::Delay => "delay",
            Fault::Cut => "cut",
            Fault::TransferLeader => "transfer",
            Fault::RemoveAndReadd => "readd",
            Fault::Wipe => "wipe",
            Fault::WipeRestart => "wipe-restart",
        }
    }

    /// `--faults`: a comma-separated list of [`Fault::flag`] names.
    pub fn parse_list(text: &str) -> Result<Vec<Fault>, String> {
        let mut faults = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let fault = Fault::ALL
                .into_iter()
                .find(|f| f.flag() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = Fault::ALL.iter().map(|f| f.flag()).collect();
                    format!(
                        "--faults: unknown fault {name:?} (known: {})",
                        known.join(", ")
                    )
                })?;
            if !faults.contains(&fault) {
                faults.push(fault);
            }
        }
        if faults.is_empty() {
            return Err("--faults: name at least one fault".to_owned());
        }
        Ok(faults)
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9, restart",
            Fault::Pause => "SIGSTOP, SIGCONT",
            Fault::Partition => "partition a minority",
            Fault::Delay => "delay a node's links",
            Fault::Cut => "cut a node's connections",
            Fault::TransferLeader => "transfer leadership",
            Fault::RemoveAndReadd => "remove, re-add a member",
            Fault::Wipe => "wipe a follower, rejoin",
            Fault::WipeRestart => "wipe, restart as before (refused), rejoin",
        }
    }
}

/// One injected fault.
pub struct FaultEvent {
    pub fault: Fault,
    /// Seconds since the run started.
    pub at: f64,
    pub what: String,
    /// An admin call of the fault that failed (the fault still counts).
    pub error: Option<String>,
}

/// How long the cluster may take to recover from one fault.
pub const RECOVERY: Duration = Duration::from_secs(60);

/// Injects faults drawn from `kinds` until `until`; answers what it did, and an error
/// if the cluster did not recover from one (which ends the schedule).
pub async fn run_schedule(
    cluster: &mut ChaosCluster,
    admin: &Client,
    kinds: &[Fault],
    rng: &mut Rng,
    started: Instant,
    until: Instant,
) -> (Vec<FaultEvent>, Option<String>) {
    let mut events = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(rng.millis(300, 1500)).await;
        let leader = match cluster.wait_healthy(admin, RECOVERY).await {
            Ok(leader) => leader,
            Err(e) => {
                let last = events
                    .last()
                    .map_or("none".to_owned(), |e: &FaultEvent| e.what.clone());
                return (events, Some(format!("after fault ({last}): {e}")));
            }
        };
        if Instant::now() >= until {
            break;
        }
        let fault = kinds[rng.below(kinds.len())];
        let at = started.elapsed().as_secs_f64();
        let (what, error) = inject(cluster, admin, rng, fault, leader).await;
        events.push(FaultEvent {
            fault,
            at,
            what,
            error,
        });
    }
    (events, None)
}

/// A node to hit: the leader half of the time.
fn target(rng: &mut Rng, size: usize, leader: usize) -> usize {
    if rng.below(2) == 0 {
        leader
    } else {
        rng.below(size)
    }
}

fn follower(rng: &mut Rng, size: usize, leader: usize) -> usize {
    (leader + 1 + rng.below(size - 1)) % size
}

async fn inject(
    cluster: &mut ChaosCluster,
    admin: &Client,
    rng: &mut Rng,
    fault: Fault,
    leader: usize,
) -> (String, Option<String>) {
    let size = cluster.size();
    let role = |i: usize| if i == leader { "leader" } else { "follower" };
    match fault {
        Fault::Kill => {
            let node = target(rng, size, leader);
            let down = rng.millis(500, 3000);
            cluster.kill(node);
            tokio::time::sleep(down).await;
            cluster.start_node(node, false);
            (
                format!("node {} ({}) down {down:?}", node + 1, role(node)),
                None,
            )
        }
        Fault::Pause => {
            let node = target(rng, size, leader);
            let paused = rng.millis(500, 3000);
            cluster.pause(node);
            tokio::time::sleep(paused).await;
            cluster.resume(node);
            (
                format!("node {} ({}) stopped {paused:?}", node + 1, role(node)),
                None,
            )
        }
        Fault::Partition => {
            let minority = 1 + rng.below((size - 1) / 2);
            let mut side = vec![target(rng, size, leader)];
            while side.len() < minority {
                let node = rng.below(size);
                if !side.contains(&node) {
                    side.push(node);
                }
            }
            let lasting = rng.millis(1000, 4000);
            cluster.network.partition(&side, size);
            tokio::time::sleep(lasting).await;
            cluster.network.heal();
            let names: Vec<String> = side
                .iter()
                .map(|n| format!("{} ({})", n + 1, role(*n)))
                .collect();
            (
                format!("nodes {} cut off {lasting:?}", names.join(", ")),
                None,
            )
        }
        Fault::Delay => {
            let node = target(rng, size, leader);
            let latency = rng.millis(10, 100);
            let lasting = rng.millis(2000, 4000);
            cluster.network.delay(node, latency);
            tokio::time::sleep(lasting).await;
            cluster.network.heal();
            (
                format!(
                    "node {} ({}) +{latency:?} each way for {lasting:?}",
                    node + 1,
                    role(node)
                ),
                None,
            )
        }
        Fault::Cut => {
            let node = target(rng, size, leader);
            let refusing = rng.millis(100, 1000);
            cluster.network.cut(node);
            tokio::time::sleep(refusing).await;
            cluster.network.heal();
            (
                format!(
                    "node {} ({}) connections reset, refused {refusing:?}",
                    node + 1,
                    role(node)
                ),
                None,
            )
        }
        Fault::TransferLeader => {
            let to = follower(rng, size, leader);
            let result = admin.cluster().transfer_leader(to as u64 + 1).await;
            (
                format!("node {} → node {}", leader + 1, to + 1),
                result.err().map(|e| e.to_string()),
            )
        }
        Fault::RemoveAndReadd => {
            let node = follower(rng, size, leader);
            let out = rng.millis(300, 1500);
            let mut error = remove(admin, node).await.err();
            tokio::time::sleep(out).await;
            if let Err(e) = add(cluster, admin, node).await {
                error = Some(e);
            }
            (
                format!("node {} out of the group for {out:?}", node + 1),
                error,
            )
        }
        Fault::Wipe => {
            let node = follower(rng, size, leader);
            let mut error = cluster.wipe(node).err().map(|e| e.to_string());
            if let Err(e) = remove(admin, node).await {
                error = Some(e);
            }
            cluster.start_node(node, true);
            if let Err(e) = add(cluster, admin, node).await {
                error = Some(e);
            }
            (
                format!("node {} wiped, removed, re-added empty", node + 1),
                error,
            )
        }
        Fault::WipeRestart => {
            // The operator's mistake: the data is gone and the node is started again
            // with its original flags. It must refuse (its flags say `existing`); then
            // the documented recovery: remove, start empty with --join, re-add.
            let node = target(rng, size, leader);
            let mut error = cluster.wipe(node).err().map(|e| e.to_string());
            match cluster.try_start_node(node, false) {
                Ok(_started) => {
                    error = Some(format!(
                        "node {} started on a wiped data dir with its original flags",
                        node + 1
                    ));
                }
                Err(refusal) if !refusal.contains("its data was lost") => {
                    error = Some(format!("node {} failed otherwise: {refusal}", node + 1));
                }
                Err(_) => {}
            }
            if let Err(e) = remove(admin, node).await {
                error = Some(e);
            }
            cluster.start_node(node, true);
            if let Err(e) = add(cluster, admin, node).await {
                error = Some(e);
            }
            (
                format!(
                    "node {} ({}) wiped, refused to restart, removed, re-added empty",
                    node + 1,
                    role(node)
                ),
                error,
            )
        }
    }
}

/// Membership changes are not retried by the SDK (their outcome may be unknown):
/// retry here until the status shows the change.
const MEMBERSHIP_ATTEMPTS: usize = 20;

async fn remove(admin: &Client, node: usize) -> Result<(), String> {
    let id = node as u64 + 1;
    let mut last = String::new();
    for _ in 0..MEMBERSHIP_ATTEMPTS {
        match admin.cluster().remove_member(id).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        if let Ok(status) = admin.cluster().status().await {
            if status.members.iter().all(|m| m.id != id) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("RemoveMember {id}: {last}"))
}

async fn add(cluster: &ChaosCluster, admin: &Client, node: usize) -> Result<(), String> {
    let id = node as u64 + 1;
    let mut last = String::new();
    for _ in 0..MEMBERSHIP_ATTEMPTS {
        let added = admin
            .cluster()
            .add_member(id, &cluster.listen[node], &cluster.proxies[node])
            .await;
        match added {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        if let Ok(status) = admin.cluster().status().await {
            if status.members.iter().any(|m| m.id == id) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("AddMember {id}: {last}"))
}
