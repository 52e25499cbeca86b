//! `clockwise cluster up`: a local cluster of `clockwise node` processes on embedded
//! defaults, for trying clockwise on one machine, kept running by a supervisor.
//!
//! Node i (1-based) serves clients on 127.0.0.1:(base port + i - 1) and its peers on
//! that port + 100 (the default --peer-listen), its HTTP port (`/metrics` and the ring
//! dashboard at `/`) on that port + 200, with its data in DATA_DIR/node-i, so a
//! second `cluster up` over the same directory restarts the same cluster with its data.
//! Each node's output is appended to DATA_DIR/node-i/node.log and its pid written to
//! node.pid. A node that exits is restarted after a backoff (0.5 s doubling to 8 s;
//! `--no-restart` leaves it down). A node whose data is gone while others have theirs
//! rejoins as a new member: removed through a running member, started with `--join`,
//! added again; it catches up from the others. Ctrl-C or SIGTERM stops every node.
//!
//! - `supervisor`: one node's start, restarts, log and pid files, and stop.

mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clockwise_client::Client;
use clockwise_cluster::Peers;
use clockwise_node::PEER_PORT_OFFSET;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use supervisor::{supervise, FirstStart, Launch, NodeSpec};

/// Node i's HTTP port (`--metrics-listen`: `/metrics`, the dashboard) is its client
/// port plus this (50251 for the first node by default).
const HTTP_PORT_OFFSET: u16 = 200;

/// How long the membership change of a node that rejoins may take.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// How many nodes (a majority of them must stay up for writes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// The first node's gRPC port; the others follow.
    #[arg(long, default_value_t = 50051)]
    base_port: u16,
    /// Parent directory of every node's data (node-1, node-2, …).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Leave a node that exits down instead of restarting it.
    #[arg(long)]
    no_restart: bool,
}

type BoxError = Box<dyn std::error::Error>;

pub async fn up(args: UpArgs) -> Result<(), BoxError> {
    let specs = node_specs(&args)?;
    let peers = Peers::new(
        specs
            .iter()
            .map(|s| (s.id, s.addr.as_str(), s.peer_addr.as_str())),
    )?
    .to_string();
    for spec in &specs {
        std::fs::create_dir_all(&spec.dir)
            .map_err(|e| format!("cannot create {}: {e}", spec.dir.display()))?;
    }
    // Nodes without a raft log rejoin when others have one; a new cluster has none.
    let (founders, rejoining): (Vec<NodeSpec>, Vec<NodeSpec>) =
        if specs.iter().any(NodeSpec::has_raft_log) {
            specs.iter().cloned().partition(NodeSpec::has_raft_log)
        } else {
            (specs.clone(), Vec::new())
        };
    eprintln!("clockwise cluster: each node's output is appended to its log:");
    for spec in &specs {
        eprintln!("  node {}: {}", spec.id, spec.log_path().display());
    }

    let launch = Arc::new(Launch {
        exe: std::env::current_exe()?,
        peers,
        founding: rejoining.is_empty() && !founders.iter().any(NodeSpec::has_raft_log),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut supervisors = JoinSet::new();
    let mut start = |spec: &NodeSpec, join: bool| -> FirstStart {
        let (tx, rx) = oneshot::channel();
        supervisors.spawn(supervise(
            launch.clone(),
            spec.clone(),
            join,
            args.no_restart,
            tx,
            stop_rx.clone(),
        ));
        rx
    };

    let signal = super::shutdown_signal();
    tokio::pin!(signal);
    let starting = async {
        let firsts: Vec<FirstStart> = founders.iter().map(|s| start(s, false)).collect();
        for first in firsts {
            first.await.map_err(|_| "a node's supervisor ended")??;
        }
        for spec in &rejoining {
            rejoin(spec, &founders, &mut start).await?;
        }
        Ok::<(), BoxError>(())
    };
    // None: a signal came while the nodes were starting.
    let started = tokio::select! {
        started = starting => Some(started),
        _ = &mut signal => None,
    };
    match started {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            stop(stop_tx, supervisors).await;
            return Err(e);
        }
        None => {
            stop(stop_tx, supervisors).await;
            return Ok(());
        }
    }

    println!(
        "clockwise cluster of {} node(s) is up (Ctrl-C stops it):",
        specs.len()
    );
    for spec in &specs {
        println!(
            "  node {}: {}  dashboard: http://{}/  data: {}  log: {}",
            spec.id,
            spec.addr,
            spec.http_addr,
            spec.dir.display(),
            spec.log_path().display()
        );
    }
    println!(
        "try: grpcurl -plaintext {} clockwise.cluster.v1.Cluster/Status",
        specs[0].addr
    );

    // Until a signal, or until every node is down for good (--no-restart).
    tokio::select! {
        _ = &mut signal => {}
        _ = async { while supervisors.join_next().await.is_some() {} } => {
            stop(stop_tx, supervisors).await;
            return Err("every node exited (--no-restart)".into());
        }
    }
    stop(stop_tx, supervisors).await;
    Ok(())
}

/// Node i's addresses and data dir.
fn node_specs(args: &UpArgs) -> Result<Vec<NodeSpec>, BoxError> {
    (0..args.nodes)
        .map(|i| {
            let port = args
                .base_port
                .checked_add(i)
                .ok_or("--base-port leaves no room for every node")?;
            let peer_port = port
                .checked_add(PEER_PORT_OFFSET)
                .ok_or("--base-port leaves no room for every node's peer port")?;
            let http_port = port
                .checked_add(HTTP_PORT_OFFSET)
                .ok_or("--base-port leaves no room for every node's HTTP port")?;
            let id = u64::from(i) + 1;
            Ok(NodeSpec {
                id,
                addr: format!("127.0.0.1:{port}"),
                peer_addr: format!("127.0.0.1:{peer_port}"),
                http_addr: format!("127.0.0.1:{http_port}"),
                dir: args.data_dir.join(format!("node-{id}")),
            })
        })
        .collect()
}

/// Node `spec` lost its data: remove it through the running members, start it empty
/// with `--join`, add it again. Membership changes are not retried by the SDK (their
/// outcome may be unknown), so each is retried here until the status shows it.
async fn rejoin(
    spec: &NodeSpec,
    members: &[NodeSpec],
    start: &mut impl FnMut(&NodeSpec, bool) -> FirstStart,
) -> Result<(), BoxError> {
    let id = spec.id;
    eprintln!(
        "clockwise cluster: node {id} has no raft log in {}; it rejoins as a new member",
        spec.dir.display()
    );
    let client = Client::builder()
        .endpoints(members.iter().map(|m| m.addr.clone()))
        .build()
        .await?;
    let cluster = client.cluster();
    let deadline = Instant::now() + REJOIN_TIMEOUT;
    let mut last = String::new();
    loop {
        if let Ok(status) = cluster.status().await {
            if status.members.iter().all(|m| m.id != id) {
                break;
            }
        }
        if let Err(e) = cluster.remove_member(id).await {
            last = e.to_string();
        }
        if Instant::now() >= deadline {
            return Err(format!("cannot remove node {id} to rejoin it: {last}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start(spec, true)
        .await
        .map_err(|_| "a node's supervisor ended")??;
    loop {
        if let Ok(status) = cluster.status().await {
            if status.members.iter().any(|m| m.id == id) {
                break;
            }
        }
        if let Err(e) = cluster.add_member(id, &spec.addr, &spec.peer_addr).await {
            last = e.to_string();
        }
        if Instant::now() >= deadline {
            return Err(format!("cannot add node {id} back: {last}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("clockwise cluster: node {id} is a member again and catches up");
    Ok(())
}

/// Tells every supervisor to stop its node and waits until all have.
async fn stop(stop: watch::Sender<bool>, mut supervisors: JoinSet<()>) {
    let _ = stop.send(true);
    while supervisors.join_next().await.is_some() {}
}
